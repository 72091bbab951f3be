//! The local store's transfers, for the blob route and the built-in agent
//! alike: an upload is written to a temporary file while it is hashed and
//! renamed into place only when its size and digest are the URL's; the
//! parts of a multipart upload are written at their offsets into one
//! temporary file, checked whole when the upload completes; a download
//! streams the stored file.

use std::path::Path;

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use xene_core::artifact::{Digest, PART_SIZE};

use super::local_disk::{Writer, make_parent};
use super::local_urls::{BlobMethod, Grant, Part, UrlError};
use super::store::{BlobStore, LOCAL_TEMP_DIR, StoreError, fs_path, parts_file, random_suffix};

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The bytes are not what the URL names: nothing was kept.
    #[error("{0}")]
    Rejected(String),
    #[error("the blob {0} is not in the store")]
    Missing(Digest),
    /// The sender's stream failed (it went away): nothing was kept.
    #[error("the upload broke off: {0}")]
    Broken(String),
    #[error("this server's artifact store is not local: blob URLs are the object store's")]
    NotLocal,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Receives an upload `grant` allows: kept only when its size and digest
/// are the grant's (a part: once its upload completes). Returns the ETag
/// to answer.
pub async fn receive<S, E>(
    store: &BlobStore,
    grant: &Grant,
    body: S,
) -> Result<String, TransferError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if grant.method != BlobMethod::Put {
        return Err(UrlError::WrongMethod {
            signed: grant.method.as_str(),
            asked: "PUT".into(),
        }
        .into());
    }
    let root = store.local_root().ok_or(TransferError::NotLocal)?;
    if let Some(part) = &grant.part {
        write_part(
            &parts_file(root, &grant.digest, &part.upload),
            grant,
            part,
            body,
        )
        .await?;
        return Ok(format!("\"{}-{}\"", part.upload, part.number));
    }
    let temp =
        root.join(LOCAL_TEMP_DIR)
            .join(format!("{}.{}.part", grant.digest.hex(), random_suffix()));
    let written = write_temp(&temp, grant, body).await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e);
    }
    let dest = fs_path(root, &grant.digest);
    let placed = async {
        make_parent(&dest).await?;
        // Atomic: a reader sees no blob or the whole blob; an identical
        // upload racing this one replaces it with the same bytes.
        tokio::fs::rename(&temp, &dest).await
    }
    .await;
    if let Err(e) = placed {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(StoreError::Io(e).into());
    }
    Ok(format!("\"{}\"", grant.digest.hex()))
}

/// Writes one part at its offset (a part sent again overwrites itself),
/// in large chunks on blocking threads (`local_disk`).
async fn write_part<S, E>(
    file: &Path,
    grant: &Grant,
    part: &Part,
    mut body: S,
) -> Result<(), TransferError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let offset = (part.number - 1)
        .checked_mul(PART_SIZE)
        .ok_or_else(|| TransferError::Rejected("the part number is out of range".into()))?;
    let mut out = Writer::part(file.to_path_buf(), offset)
        .await
        .map_err(rejected)?;
    let mut got: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| TransferError::Broken(e.to_string()))?;
        got += chunk.len() as u64;
        if got > grant.size {
            return Err(TransferError::Rejected(format!(
                "the part is longer than the {} bytes its URL allows",
                grant.size
            )));
        }
        out.write(&chunk).await.map_err(rejected)?;
    }
    if got != grant.size {
        return Err(TransferError::Rejected(format!(
            "the part has {got} bytes, not the {} its URL names",
            grant.size
        )));
    }
    out.finish().await.map_err(rejected)?;
    Ok(())
}

/// A store error, refusals kept as such.
fn rejected(e: impl Into<StoreError>) -> TransferError {
    match e.into() {
        StoreError::Rejected(why) => TransferError::Rejected(why),
        other => TransferError::Store(other),
    }
}

async fn write_temp<S, E>(temp: &Path, grant: &Grant, mut body: S) -> Result<(), TransferError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = Writer::create(temp.to_path_buf()).await.map_err(rejected)?;
    let mut got: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| TransferError::Broken(e.to_string()))?;
        got += chunk.len() as u64;
        // Never more than was signed: the size bounds the disk it takes.
        if got > grant.size {
            return Err(TransferError::Rejected(format!(
                "the upload is longer than the {} bytes its URL allows",
                grant.size
            )));
        }
        file.write(&chunk).await.map_err(rejected)?;
    }
    if got != grant.size {
        return Err(TransferError::Rejected(format!(
            "the upload has {got} bytes, not the {} its URL names",
            grant.size
        )));
    }
    // Hashed while written, and on disk before it is named: a blob row may
    // soon point at it.
    let Some(digest) = file.finish().await.map_err(rejected)? else {
        return Err(StoreError::Io(std::io::Error::other("a new file without its digest")).into());
    };
    if digest != grant.digest {
        return Err(TransferError::Rejected(format!(
            "the uploaded bytes hash to {digest}, not {}",
            grant.digest
        )));
    }
    Ok(())
}

/// The stored blob's size and bytes, for a download `grant` allows.
pub async fn serve(
    store: &BlobStore,
    grant: &Grant,
) -> Result<(u64, impl Stream<Item = Result<Bytes, StoreError>> + use<>), TransferError> {
    if grant.method != BlobMethod::Get {
        return Err(UrlError::WrongMethod {
            signed: grant.method.as_str(),
            asked: "GET".into(),
        }
        .into());
    }
    if store.local_root().is_none() {
        return Err(TransferError::NotLocal);
    }
    let Some(size) = store.size_of(&grant.digest).await? else {
        return Err(TransferError::Missing(grant.digest.clone()));
    };
    Ok((size, store.read(&grant.digest).await?))
}
