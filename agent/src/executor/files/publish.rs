//! One artifact published: its files collected and hashed, the server asked
//! which blobs it lacks, those uploaded (in the parts it says), and the
//! manifest committed, staged for the attempt.

use futures::{StreamExt, TryStreamExt};
use xene_core::artifact::ManifestEntry;
use xene_core::protocol::{BlobUpload, CompletedUpload, FilesAnswer, FilesRequest};
use xene_core::spec::Publish;

use super::archive::collect_archive;
use super::collect::{Collected, collect_dir};
use super::{FileChannel, Spool, size_text};
use crate::runtime::Workspace;

/// How many blobs (or parts) go up at once.
const UPLOADS_AT_ONCE: usize = 4;

/// Publishes `publish` from `workspace`; the log line that says so.
pub(crate) async fn publish(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    publish: &Publish,
    spool: &Spool,
) -> Result<String, String> {
    let name = &publish.name;
    let files = match workspace {
        Workspace::Dir { root, .. } => {
            let root = root.to_path_buf();
            let spec = publish.clone();
            tokio::task::spawn_blocking(move || collect_dir(&root, &spec))
                .await
                .map_err(|e| format!("artifact {name}: collecting its files failed: {e}"))??
        }
        Workspace::Archive(archive) => collect_archive(archive, publish, spool).await?,
    };
    let manifest: Vec<ManifestEntry> = files.iter().map(|f| f.entry.clone()).collect();
    let refused = |error: String| format!("artifact {name}: {error}");
    let (completed, uploaded) = upload_files(channel, Uploads::Artifact, name, &files).await?;
    match channel
        .ask(FilesRequest::Commit {
            name: name.clone(),
            files: manifest.clone(),
            completed,
        })
        .await
        .map_err(refused)?
    {
        FilesAnswer::Committed => {}
        FilesAnswer::Refused { error } => return Err(refused(error)),
        other => return Err(unexpected(name, &other)),
    }
    let bytes: u64 = manifest.iter().map(|f| f.size).sum();
    Ok(format!(
        "staged {name}: {}, {} ({} uploaded)",
        files_text(manifest.len() as u64),
        size_text(bytes),
        size_text(uploaded)
    ))
}

/// `1,204`.
pub(crate) fn number(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 file`, `1,204 files`.
pub(crate) fn files_text(n: u64) -> String {
    match n {
        1 => "1 file".into(),
        n => format!("{} files", number(n)),
    }
}

/// What files go up for: an artifact's (asked for by `Publish`), or a
/// cache entry's chunks (`CacheUpload`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Uploads<'a> {
    Artifact,
    Cache { key: &'a str },
}

impl Uploads<'_> {
    fn request(&self, name: &str, files: Vec<ManifestEntry>) -> FilesRequest {
        match self {
            Uploads::Artifact => FilesRequest::Publish {
                name: name.to_string(),
                files,
            },
            Uploads::Cache { key } => FilesRequest::CacheUpload {
                name: name.to_string(),
                key: key.to_string(),
                chunks: files,
            },
        }
    }

    /// How errors name what is uploaded.
    pub(crate) fn label(&self, name: &str) -> String {
        match self {
            Uploads::Artifact => format!("artifact {name}"),
            Uploads::Cache { .. } => format!("cache {name}"),
        }
    }
}

/// Asks the server which blobs of `files` it lacks and uploads those (in
/// the parts it says): the multipart uploads to complete, and the bytes
/// sent.
pub(crate) async fn upload_files(
    channel: &dyn FileChannel,
    kind: Uploads<'_>,
    name: &str,
    files: &[Collected],
) -> Result<(Vec<CompletedUpload>, u64), String> {
    let label = kind.label(name);
    let refused = |error: String| format!("{label}: {error}");
    let manifest: Vec<ManifestEntry> = files.iter().map(|f| f.entry.clone()).collect();
    let uploads = match channel
        .ask(kind.request(name, manifest))
        .await
        .map_err(refused)?
    {
        FilesAnswer::Uploads { uploads } => uploads,
        FilesAnswer::Refused { error } => return Err(refused(error)),
        other => return Err(unexpected_for(&label, &other)),
    };
    let uploaded: u64 = uploads.iter().map(|u| u.size).sum();
    // Collected first: a stream holding the closure would not be `Send`.
    let pending: Vec<_> = uploads
        .iter()
        .map(|u| upload(channel, kind, files, u, name))
        .collect();
    // The first failure stops the other uploads.
    let completed: Vec<CompletedUpload> = futures::stream::iter(pending)
        .buffer_unordered(UPLOADS_AT_ONCE)
        .try_filter_map(|done| async move { Ok(done) })
        .try_collect()
        .await?;
    Ok((completed, uploaded))
}

pub(crate) fn unexpected(name: &str, answer: &FilesAnswer) -> String {
    unexpected_for(&format!("artifact {name}"), answer)
}

/// An answer that is not one to the request made; `label` names what the
/// request was about ("artifact NAME", "cache NAME").
pub(crate) fn unexpected_for(label: &str, answer: &FilesAnswer) -> String {
    format!("{label}: {}", unexpected_text(answer))
}

/// [`unexpected_for`] without the label.
pub(crate) fn unexpected_text(answer: &FilesAnswer) -> String {
    let kind = match answer {
        FilesAnswer::Uploads { .. } => "uploads",
        FilesAnswer::Committed => "committed",
        FilesAnswer::Downloads { .. } => "downloads",
        FilesAnswer::CacheEntry { .. } => "cache entry",
        FilesAnswer::Refused { .. } => "refused",
    };
    format!("the server answered {kind:?} out of turn")
}

/// Uploads one blob in the parts the server gave; the multipart upload to
/// complete, when it is one. URLs signed for a while may have expired by
/// the time a blob's turn comes (a large artifact takes long): refused so,
/// the blob is asked for again, once, and sent whole with the new ones.
async fn upload(
    channel: &dyn FileChannel,
    kind: Uploads<'_>,
    files: &[Collected],
    upload: &BlobUpload,
    name: &str,
) -> Result<Option<CompletedUpload>, String> {
    let label = kind.label(name);
    let Some(file) = files.iter().find(|f| f.entry.digest == upload.digest) else {
        return Err(format!(
            "{label}: the server asked for blob {}, which is none of its files",
            upload.digest
        ));
    };
    let error = match upload_parts(channel, file, upload, &label).await {
        Ok(done) => return Ok(done),
        Err(e) if is_expired(&e) => e,
        Err(e) => return Err(e),
    };
    let refused = |e: String| format!("{label}: asking again for {}: {e}", file.entry.path);
    let again = match channel
        .ask(kind.request(name, vec![file.entry.clone()]))
        .await
        .map_err(refused)?
    {
        FilesAnswer::Uploads { uploads } => uploads,
        FilesAnswer::Refused { error } => return Err(refused(error)),
        other => return Err(unexpected_for(&label, &other)),
    };
    match again.iter().find(|u| u.digest == upload.digest) {
        Some(renewed) => upload_parts(channel, file, renewed, &label)
            .await
            .map_err(|e| format!("{e} (after new URLs were asked for: {error})")),
        // Stored meanwhile (another attempt's upload): nothing to send.
        None => Ok(None),
    }
}

/// A transfer refused because its signed URL expired (or no longer
/// holds): S3 and the server both answer 403.
pub(crate) fn is_expired(error: &str) -> bool {
    error.contains("HTTP 403") || error.contains("URL expired")
}

async fn upload_parts(
    channel: &dyn FileChannel,
    file: &Collected,
    upload: &BlobUpload,
    label: &str,
) -> Result<Option<CompletedUpload>, String> {
    let parts = plan_parts(upload, file.entry.size).map_err(|e| format!("{label}: {e}"))?;
    let mut pending = Vec::new();
    for (transfer, (offset, len)) in upload.parts.iter().zip(parts) {
        pending.push(async move {
            channel
                .upload(transfer, &file.source, offset, len)
                .await
                .map_err(|e| format!("{label}: uploading {}: {e}", file.entry.path))
        });
    }
    // In part order (the etags are); the first failure stops the rest.
    let etags: Vec<Option<String>> = futures::stream::iter(pending)
        .buffered(UPLOADS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(upload.upload_id.as_ref().map(|id| CompletedUpload {
        digest: upload.digest.clone(),
        upload_id: Some(id.clone()),
        etags: etags.into_iter().map(Option::unwrap_or_default).collect(),
    }))
}

/// The (offset, length) of each part of a blob of `size` bytes, checked
/// against what the server gave.
pub(crate) fn plan_parts(upload: &BlobUpload, size: u64) -> Result<Vec<(u64, u64)>, String> {
    if upload.size != size {
        return Err(format!(
            "the server gave blob {} a size of {} bytes, not {size}",
            upload.digest, upload.size
        ));
    }
    let count = upload.parts.len() as u64;
    if count == 1 {
        return Ok(vec![(0, size)]);
    }
    let part = upload.part_size;
    if part == 0 || count != size.div_ceil(part) {
        return Err(format!(
            "the server split blob {} into {count} parts of {part} bytes, which does not fit {size} bytes",
            upload.digest
        ));
    }
    Ok((0..count)
        .map(|i| (i * part, part.min(size - i * part)))
        .collect())
}
