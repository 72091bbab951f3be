//! Artifacts: `artifacts ls RUN` (what a run's tasks published) and
//! `artifacts get RUN NAME` (its files, written under a destination
//! directory and checked against their digests), and `runs pin|unpin`.

use std::path::Path;

use xene_api::artifacts::{ArtifactInfo, Pinned, RunArtifacts, short_digest, size_text};
use xene_api::paths;

use super::Ctx;
use crate::error::{Exit, fail};
use crate::extract::{SingleFile, Untar};
use crate::output;

pub async fn list(ctx: &Ctx, run: i64) -> anyhow::Result<Exit> {
    let Some(list) = ctx
        .get_for_table::<RunArtifacts>(&paths::run_artifacts(run))
        .await?
    else {
        return Ok(Exit::Ok);
    };
    let wide = ctx.format == crate::args::Format::Wide;
    let rows: Vec<Vec<String>> = list
        .artifacts
        .iter()
        .map(|a| {
            // A one-file artifact's digest is its file's; several have none.
            let digest = a.single_file().map_or(output::text(None), |f| {
                if wide {
                    f.digest.clone()
                } else {
                    short_digest(&f.digest).to_string()
                }
            });
            vec![
                a.task.clone(),
                a.name.clone(),
                a.files.to_string(),
                size_text(a.bytes).replace(' ', ""),
                digest,
            ]
        })
        .collect();
    if rows.is_empty() {
        eprintln!("run/{run} has no artifacts");
    }
    output::table(&["TASK", "NAME", "FILES", "SIZE", "DIGEST"], &rows);
    Ok(Exit::Ok)
}

/// Downloads an artifact (or one file of it, `path`) under `dest`.
pub async fn get(
    ctx: &Ctx,
    run: i64,
    name: &str,
    dest: &Path,
    path: Option<&str>,
) -> anyhow::Result<Exit> {
    let list: RunArtifacts = ctx.client.get(&paths::run_artifacts(run)).await?;
    let Some(artifact) = list.artifacts.iter().find(|a| a.name == name) else {
        // Quoted: the names come from the server, escapes and all.
        let names: Vec<String> = list
            .artifacts
            .iter()
            .map(|a| format!("{:?}", a.name))
            .collect();
        return Err(fail(
            Exit::NotFound,
            if names.is_empty() {
                format!("run/{run} has no artifacts")
            } else {
                format!(
                    "run/{run} has no artifact named {name:?}; it has {}",
                    names.join(", ")
                )
            },
        ));
    };
    std::fs::create_dir_all(dest)
        .map_err(|e| fail(Exit::Failed, format!("{}: {e}", dest.display())))?;
    let (files, bytes) = match path {
        Some(path) => {
            let Some(file) = artifact.entries.iter().find(|f| f.path == path) else {
                return Err(fail(
                    Exit::NotFound,
                    format!("artifact {name:?} of run/{run} has no file {path:?}"),
                ));
            };
            let url = paths::artifact(run, name, Some(path));
            one_file(ctx, &url, dest, file).await?;
            (1, file.size)
        }
        // One entry shown is one file only if the artifact holds one: a
        // listing may show just the first of many, which come as a tar.
        None => match artifact.single_file().filter(|_| artifact.files == 1) {
            Some(file) => {
                one_file(ctx, &paths::artifact(run, name, None), dest, file).await?;
                (1, file.size)
            }
            None => (all_files(ctx, run, artifact, dest).await?, artifact.bytes),
        },
    };
    eprintln!(
        "artifact {name} of run/{run}: {files} file{}, {} in {}",
        if files == 1 { "" } else { "s" },
        size_text(bytes),
        dest.display()
    );
    Ok(Exit::Ok)
}

async fn one_file(
    ctx: &Ctx,
    url: &str,
    dest: &Path,
    file: &xene_api::artifacts::ArtifactFile,
) -> anyhow::Result<()> {
    // The request first: a refusal (404, 403, 5xx) touches no file.
    let mut response = ctx.client.download(url).await?;
    let mut writer = SingleFile::new(dest, file).map_err(refused)?;
    while let Some(chunk) = ctx.client.next_chunk(&mut response).await? {
        writer.feed(chunk.as_ref()).map_err(refused)?;
    }
    writer.finish().map_err(refused)
}

async fn all_files(
    ctx: &Ctx,
    run: i64,
    artifact: &ArtifactInfo,
    dest: &Path,
) -> anyhow::Result<u64> {
    let mut untar = Untar::new(dest, &artifact.entries, artifact.files);
    let mut response = ctx
        .client
        .download(&paths::artifact(run, &artifact.name, None))
        .await?;
    while let Some(chunk) = ctx.client.next_chunk(&mut response).await? {
        untar.feed(chunk.as_ref()).map_err(refused)?;
    }
    untar.finish().map_err(refused)
}

fn refused(e: crate::extract::ExtractError) -> anyhow::Error {
    fail(Exit::Failed, e.to_string())
}

/// Pins a run (retention keeps its artifacts) or unpins it.
pub async fn pin(ctx: &Ctx, run: i64, on: bool) -> anyhow::Result<Exit> {
    let path = paths::run_pin(run);
    let answer = if on {
        ctx.client.put(&path, &serde_json::Value::Null).await?
    } else {
        ctx.client
            .send(reqwest::Method::DELETE, &path, None, &[])
            .await?
    };
    if let Some(pinned) = ctx.for_table::<Pinned>(&answer)? {
        println!(
            "run/{run} {}",
            if pinned.pinned { "pinned" } else { "unpinned" }
        );
    }
    Ok(Exit::Ok)
}
