//! Workflows: `validate` (offline, with `core`), `apply` with a diff,
//! `get workflows|pipelines`, `describe workflow`, `delete workflow`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::Ctx;
use crate::client::{Body, encode};
use crate::error::{Exit, fail};
use crate::output;

/// The most files one `apply` takes from a directory.
const MAX_FILES: usize = 1000;

/// A workflow file's text and how to name it in messages.
struct Source {
    label: String,
    text: String,
}

fn read(path: &Path) -> anyhow::Result<Source> {
    let limit = xene_core::parse::MAX_SPEC_BYTES as u64 + 1;
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(limit)
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        return Ok(Source {
            label: "<stdin>".into(),
            text,
        });
    }
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_string(&mut text))
        .map_err(|e| fail(Exit::Usage, format!("cannot read {}: {e}", path.display())))?;
    Ok(Source {
        label: path.display().to_string(),
        text,
    })
}

/// A file, the workflow files of a directory (sorted), or stdin.
fn sources(path: &Path) -> anyhow::Result<Vec<Source>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| fail(Exit::Usage, format!("cannot read {}: {e}", path.display())))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(fail(
                Exit::Usage,
                format!("{} holds no .yaml, .yml or .json file", path.display()),
            ));
        }
        if files.len() > MAX_FILES {
            return Err(fail(
                Exit::Usage,
                format!("{} holds more than {MAX_FILES} files", path.display()),
            ));
        }
        return files.iter().map(|p| read(p)).collect();
    }
    Ok(vec![read(path)?])
}

/// Prints every fault of a file with its path and line.
fn report(label: &str, faults: &xene_core::Diagnostics) {
    for fault in faults.iter() {
        eprintln!("{label}: {fault}");
    }
    eprintln!("{label}: {} fault(s)", faults.len());
}

pub fn validate(path: &Path) -> anyhow::Result<Exit> {
    let source = read(path)?;
    match xene_core::parse_workflow(&source.text) {
        Ok(workflow) => {
            println!(
                "{}: workflow {:?} is valid ({} pipeline(s))",
                source.label,
                workflow.name,
                workflow.pipelines.len()
            );
            Ok(Exit::Ok)
        }
        Err(faults) => {
            report(&source.label, &faults);
            Ok(Exit::Usage)
        }
    }
}

/// How `apply` stores what it reads.
#[derive(Debug, Clone, Copy)]
pub struct ApplyHow {
    pub dry_run: bool,
    /// Approve the versions applied for protected secrets (admins).
    pub approve: bool,
    pub accept_run_time_choices: bool,
}

pub async fn apply(ctx: &Ctx, path: &Path, how: ApplyHow) -> anyhow::Result<Exit> {
    let dry_run = how.dry_run;
    let mut exit = Exit::Ok;
    if dry_run {
        eprintln!("dry run: the server validates; nothing is applied");
    }
    let mut query = Vec::new();
    if dry_run {
        query.push("dry_run=true");
    }
    if how.approve {
        query.push("approve=true");
    }
    if how.accept_run_time_choices {
        query.push("accept_run_time_choices=true");
    }
    let target = if query.is_empty() {
        "/api/v1/workflows".to_string()
    } else {
        format!("/api/v1/workflows?{}", query.join("&"))
    };
    for source in sources(path)? {
        // The diff needs the name; the server's checks decide the rest and
        // answer with every fault.
        if let Ok(workflow) = xene_core::parse_workflow(&source.text) {
            show_diff(ctx, &workflow.name, &source).await?;
        }
        let answer = ctx
            .client
            .send(
                Method::POST,
                &target,
                Some(Body::Text(source.text.clone())),
                &[StatusCode::UNPROCESSABLE_ENTITY],
            )
            .await?;
        if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
            for fault in answer.body["diagnostics"].as_array().into_iter().flatten() {
                let path = fault["path"].as_str().unwrap_or_default();
                let message = fault["message"].as_str().unwrap_or_default();
                let line = fault["line"]
                    .as_i64()
                    .map(|l| format!(" (line {l})"))
                    .unwrap_or_default();
                let path = if path.is_empty() {
                    String::new()
                } else {
                    format!("{path}: ")
                };
                eprintln!("{}: {path}{message}{line}", source.label);
            }
            exit = Exit::Usage;
            continue;
        }
        let body = &answer.body;
        let name = body["name"].as_str().unwrap_or_default();
        let version = body["version"].as_i64().unwrap_or_default();
        for warning in body["warnings"].as_array().into_iter().flatten() {
            eprintln!("{}: warning: {}", source.label, output::cell(warning));
        }
        let changed = body["changed"].as_bool().unwrap_or(true);
        match (dry_run, changed) {
            (false, true) => println!("workflow/{name} applied: version {version}"),
            (false, false) => println!("workflow/{name} unchanged: version {version}"),
            (true, true) => println!("workflow/{name} would be applied: version {version}"),
            (true, false) => println!("workflow/{name} unchanged: version {version}"),
        }
        if how.approve && !dry_run {
            println!("workflow/{name} version {version} approved for protected secrets");
        }
    }
    Ok(exit)
}

/// Prints a unified diff of the current version against the file.
async fn show_diff(ctx: &Ctx, name: &str, source: &Source) -> anyhow::Result<()> {
    let current = ctx
        .client
        .send(
            Method::GET,
            &format!("/api/v1/workflows/{}", encode(name)),
            None,
            &[StatusCode::NOT_FOUND],
        )
        .await?;
    if current.status == StatusCode::NOT_FOUND {
        eprintln!("workflow/{name} is new");
        return Ok(());
    }
    let old = current.body["source"].as_str().unwrap_or_default();
    let version = current.body["version"].as_i64().unwrap_or_default();
    if old == source.text {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(old, &source.text);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (version {version})"), &source.label)
        .to_string();
    for line in text.lines() {
        let code = match line.as_bytes().first() {
            _ if line.starts_with("+++") || line.starts_with("---") => "1",
            Some(b'+') => "32",
            Some(b'-') => "31",
            Some(b'@') => "36",
            _ => "0",
        };
        println!("{}", output::paint(ctx.colour && code != "0", code, line));
    }
    Ok(())
}

pub async fn list(ctx: &Ctx) -> anyhow::Result<Exit> {
    let body = ctx.client.get("/api/v1/workflows").await?;
    if output::structured(ctx.format, &body) {
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = body["workflows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            vec![
                output::cell(&w["name"]),
                output::cell(&w["version"]),
                output::cell(&w["pipelines"]),
                output::time(w["updated_at"].as_i64()),
                output::cell(&w["description"]),
            ]
        })
        .collect();
    output::table(
        &["NAME", "VERSION", "PIPELINES", "UPDATED", "DESCRIPTION"],
        &rows,
    );
    Ok(Exit::Ok)
}

pub async fn pipelines(ctx: &Ctx) -> anyhow::Result<Exit> {
    let list = ctx.client.get("/api/v1/workflows").await?;
    let mut all = Vec::new();
    for workflow in list["workflows"].as_array().into_iter().flatten() {
        let name = workflow["name"].as_str().unwrap_or_default();
        let detail = ctx
            .client
            .get(&format!("/api/v1/workflows/{}", encode(name)))
            .await?;
        for pipeline in detail["pipelines"].as_array().into_iter().flatten() {
            let mut p = pipeline.clone();
            p["workflow"] = Value::String(name.to_string());
            all.push(p);
        }
    }
    let all = Value::Array(all);
    if output::structured(ctx.format, &serde_json::json!({ "pipelines": all })) {
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = all
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                output::cell(&p["workflow"]),
                output::cell(&p["name"]),
                trigger(&p["trigger"]),
                output::cell(&p["scheduler_status"]),
                output::cell(&p["scheduler_reason"]),
            ]
        })
        .collect();
    output::table(
        &["WORKFLOW", "PIPELINE", "TRIGGER", "SCHEDULER", "REASON"],
        &rows,
    );
    Ok(Exit::Ok)
}

/// A trigger as one word: `manual`, `cron`, `webhook`.
fn trigger(value: &Value) -> String {
    match value {
        Value::Object(m) => m
            .get("type")
            .or_else(|| m.get("kind"))
            .map(output::cell)
            .unwrap_or_else(|| m.keys().cloned().collect::<Vec<_>>().join(",")),
        other => output::cell(other),
    }
}

pub async fn describe(ctx: &Ctx, name: &str) -> anyhow::Result<Exit> {
    let body = ctx
        .client
        .get(&format!("/api/v1/workflows/{}", encode(name)))
        .await?;
    if output::structured(ctx.format, &body) {
        return Ok(Exit::Ok);
    }
    println!("Name:        {}", output::cell(&body["name"]));
    println!("Version:     {}", output::cell(&body["version"]));
    println!("Applied:     {}", output::time(body["created_at"].as_i64()));
    let protected: Vec<String> = body["protected_secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(output::cell)
        .collect();
    if !protected.is_empty() {
        println!("Protected:   {}", protected.join(", "));
        match body["approved_by"].as_str() {
            Some(by) => println!(
                "Approved:    {} by {by}",
                output::time(body["approved_at"].as_i64())
            ),
            None => println!(
                "Approved:    no: its runs are refused until an admin runs `xenectl approve {name} --version {}`",
                output::cell(&body["version"])
            ),
        }
    }
    if let Some(description) = body["spec"]["description"].as_str() {
        println!("Description: {description}");
    }
    println!("Pipelines:");
    let rows: Vec<Vec<String>> = body["pipelines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                format!("  {}", output::cell(&p["name"])),
                trigger(&p["trigger"]),
                output::time(p["next_fires"][0].as_i64()),
                output::cell(&p["scheduler_status"]),
                output::cell(&p["scheduler_reason"]),
            ]
        })
        .collect();
    output::table(
        &[
            "  NAME",
            "TRIGGER",
            "NEXT FIRE (UTC)",
            "SCHEDULER",
            "REASON",
        ],
        &rows,
    );
    let runs = ctx
        .client
        .get(&format!("/api/v1/runs?workflow={}&limit=5", encode(name)))
        .await?;
    let runs = runs["runs"].as_array().cloned().unwrap_or_default();
    if !runs.is_empty() {
        println!("Recent runs:");
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    format!("  {}", output::cell(&r["id"])),
                    output::cell(&r["pipeline"]),
                    output::status(ctx.colour, r["status"].as_str().unwrap_or("-")),
                    output::time(r["requested_at"].as_i64()),
                ]
            })
            .collect();
        output::table(&["  ID", "PIPELINE", "STATUS", "REQUESTED"], &rows);
    }
    Ok(Exit::Ok)
}

/// Approves a version for the protected secrets it uses.
pub async fn approve(ctx: &Ctx, name: &str, version: i64, accept: bool) -> anyhow::Result<Exit> {
    let accept = if accept {
        "?accept_run_time_choices=true"
    } else {
        ""
    };
    let body = ctx
        .client
        .post(
            &format!(
                "/api/v1/workflows/{}/versions/{version}/approve{accept}",
                encode(name)
            ),
            serde_json::json!({}),
        )
        .await?;
    if output::structured(ctx.format, &body) {
        return Ok(Exit::Ok);
    }
    let secrets: Vec<String> = body["protected_secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(output::cell)
        .collect();
    let uses = if secrets.is_empty() {
        "it uses no protected secret now".to_string()
    } else {
        format!("protected secrets: {}", secrets.join(", "))
    };
    for warning in body["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", output::cell(warning));
    }
    if body["changed"] == true {
        println!("workflow/{name} version {version} approved ({uses})");
    } else {
        println!(
            "workflow/{name} version {version} was approved already by {} at {} ({uses})",
            output::cell(&body["approved_by"]),
            output::time(body["approved_at"].as_i64())
        );
    }
    Ok(Exit::Ok)
}

/// Withdraws a version's approval.
pub async fn revoke(ctx: &Ctx, name: &str, version: i64) -> anyhow::Result<Exit> {
    let answer = ctx
        .client
        .send(
            Method::DELETE,
            &format!(
                "/api/v1/workflows/{}/versions/{version}/approve",
                encode(name)
            ),
            None,
            &[],
        )
        .await?;
    if output::structured(ctx.format, &answer.body) {
        return Ok(Exit::Ok);
    }
    if answer.body["changed"] == true {
        println!(
            "workflow/{name} version {version}: approval revoked; its runs are refused protected secrets"
        );
    } else {
        println!("workflow/{name} version {version} was not approved");
    }
    Ok(Exit::Ok)
}

pub async fn delete(ctx: &Ctx, name: &str) -> anyhow::Result<Exit> {
    ctx.client
        .delete(&format!("/api/v1/workflows/{}", encode(name)))
        .await?;
    println!("workflow/{name} deleted");
    Ok(Exit::Ok)
}

/// One pipeline: its trigger and next fires, params with their types, its
/// tasks with what they depend on, and its hook's URL.
pub async fn describe_pipeline(ctx: &Ctx, target: &str) -> anyhow::Result<Exit> {
    let Some((workflow, pipeline)) = target.split_once('/') else {
        return Err(crate::error::fail(
            Exit::Usage,
            format!("{target:?} is not WORKFLOW/PIPELINE"),
        ));
    };
    let body = ctx
        .client
        .get(&format!("/api/v1/workflows/{}", encode(workflow)))
        .await?;
    let spec = &body["spec"]["pipelines"][pipeline];
    let state = body["pipelines"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == pipeline)
        .cloned()
        .unwrap_or(Value::Null);
    if spec.is_null() {
        return Err(crate::error::fail(
            Exit::NotFound,
            format!("workflow {workflow:?} has no pipeline {pipeline:?}"),
        ));
    }
    let hook = if state["trigger"] == "webhook" {
        ctx.client
            .get(&format!(
                "/api/v1/workflows/{}/pipelines/{}/hook",
                encode(workflow),
                encode(pipeline)
            ))
            .await
            .ok()
    } else {
        None
    };
    let whole = serde_json::json!({ "spec": spec, "state": state, "hook": hook });
    if output::structured(ctx.format, &whole) {
        return Ok(Exit::Ok);
    }
    println!(
        "Pipeline:   {target} (version {})",
        output::cell(&body["version"])
    );
    println!("Trigger:    {}", trigger(&spec["trigger"]));
    for (i, fire) in state["next_fires"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let label = if i == 0 { "Next fires:" } else { "" };
        println!("{label:<11} {} UTC", output::time(fire.as_i64()));
    }
    if let Some(hook) = &hook {
        println!(
            "Hook URL:   {}",
            ctx.client.url(&output::cell(&hook["path"]))
        );
    }
    println!("Scheduler:  {}", output::cell(&state["scheduler_status"]));
    if let Some(params) = spec["params"].as_object().filter(|p| !p.is_empty()) {
        println!("Params:");
        let rows: Vec<Vec<String>> = params
            .iter()
            .map(|(name, p)| {
                let (kind, default) = match p {
                    Value::Object(o) => (
                        o.get("type").map_or("string".into(), output::cell),
                        if o.get("required") == Some(&Value::Bool(true)) {
                            "(required)".to_string()
                        } else {
                            o.get("default").map_or("-".into(), output::cell)
                        },
                    ),
                    other => ("string".to_string(), output::cell(other)),
                };
                vec![format!("  {name}"), kind, default]
            })
            .collect();
        output::table(&["  NAME", "TYPE", "DEFAULT"], &rows);
    }
    println!("Tasks:");
    let rows: Vec<Vec<String>> = spec["tasks"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, t)| {
            vec![
                format!("  {name}"),
                t["image"].as_str().unwrap_or("shell").to_string(),
                t["steps"].as_array().map_or(0, Vec::len).to_string(),
                output::cell(&t["depends_on"]),
            ]
        })
        .collect();
    output::table(&["  NAME", "RUNTIME", "STEPS", "DEPENDS ON"], &rows);
    Ok(Exit::Ok)
}
