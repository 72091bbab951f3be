//! How an attempt talks about files: the one seam between the staging of
//! artifacts (this module's parent) and whoever answers for the server (a
//! connected agent's WebSocket, the built-in agent's direct calls, or the
//! directory store of `xene-agent run`).

use std::path::Path;

use futures::future::BoxFuture;
use xene_core::artifact::Digest;
use xene_core::protocol::{FilesAnswer, FilesRequest, Transfer};

pub trait FileChannel: Send + Sync {
    /// One request about files for this attempt; an Err is a transport failure (the task fails with it).
    fn ask(&self, request: FilesRequest) -> BoxFuture<'_, Result<FilesAnswer, String>>;
    /// PUT `len` bytes of `file` from `offset` to `transfer`; returns the ETag header if any.
    fn upload<'a>(
        &'a self,
        transfer: &'a Transfer,
        file: &'a Path,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// GET `transfer` into `dest` (created/truncated), returning the SHA-256 digest of what was written.
    fn download<'a>(
        &'a self,
        transfer: &'a Transfer,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<Digest, String>>;
}
