//! Artifacts' bytes: the object store that keeps blobs (`store.rs`), the
//! signed URLs of the local store (`local_urls.rs`) and its transfers
//! (`local.rs`; its disk work: `local_disk.rs`), the answers to agents'
//! requests about files (`service.rs`), and the built-in agent's file
//! channel (`channel.rs`).
//! The records (manifests, blob rows, pins) are storage's
//! (`storage/artifacts.rs`).

pub mod channel;
pub mod local;
mod local_disk;
pub mod local_urls;
pub mod service;
pub mod store;

pub use store::BlobStore;

use crate::config::Args;
use crate::storage::Db;
use crate::vault::Vault;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("artifact store: reading the key of its URLs: {0}")]
    Key(#[from] crate::storage::secrets::SecretsError),
}

/// Opens the artifact store the flags name, its local URLs keyed from the
/// token-signing key every replica shares.
pub async fn open(args: &Args, db: &Db, vault: &Vault) -> Result<BlobStore, FilesError> {
    let secret = crate::storage::access::signing_key(db, vault).await?;
    Ok(BlobStore::open(&args.artifacts, &args.data_dir(), &secret)?)
}
