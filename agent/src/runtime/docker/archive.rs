//! Tar archives in and out of a task's `/workspace`, for artifacts: the
//! engine's archive API (`GET`/`PUT /containers/{id}/archive`), streamed.

use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::{DockerContext, WORKSPACE, docker_error, is_not_found};
use crate::runtime::{RuntimeError, WorkspaceArchive};

impl WorkspaceArchive for DockerContext {
    fn export<'a>(&'a self, path: &'a str) -> BoxStream<'a, Result<Bytes, RuntimeError>> {
        let full = if path.is_empty() {
            WORKSPACE.to_string()
        } else {
            format!("{WORKSPACE}/{path}")
        };
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(&full)
            .build();
        self.docker
            .download_from_container(self.container(), Some(options))
            .map(move |chunk| match chunk {
                Ok(bytes) => Ok(bytes),
                Err(e) if is_not_found(&e) => Err(RuntimeError::NotInWorkspace(path.to_string())),
                Err(e) => Err(docker_error(e)),
            })
            .boxed()
    }

    fn import(
        &self,
        archive: BoxStream<'static, Result<Bytes, std::io::Error>>,
    ) -> BoxFuture<'_, Result<(), RuntimeError>> {
        async move {
            // Owned by the container's user, as if its steps had made them;
            // a directory is never replaced by a file (nor a file by a
            // directory), as the shell runtime refuses it too.
            let options = UploadToContainerOptionsBuilder::new()
                .path(WORKSPACE)
                .copy_uidgid("true")
                .no_overwrite_dir_non_dir("true")
                .build();
            self.docker
                .upload_to_container(
                    self.container(),
                    Some(options),
                    bollard::body_try_stream(archive),
                )
                .await
                .map_err(docker_error)
        }
        .boxed()
    }
}
