//! A session's requests about files: each answered on a task of its own by
//! `files::service`, its answer sent back when ready, a few at once.

use futures::Sink;
use xene_core::protocol::{AttemptRef, FilesAnswer, FilesRequest, ServerMessage};

use super::{Session, SessionEnd};

/// Requests about files one agent may have answered at once; more are
/// refused (an agent asks one at a time per attempt).
pub const MAX_FILES_IN_FLIGHT: usize = 16;

impl<S> Session<'_, S>
where
    S: Sink<super::Outgoing> + Unpin,
    S::Error: std::fmt::Display,
{
    pub(super) async fn answer_files(
        &mut self,
        attempt: AttemptRef,
        id: u64,
        request: FilesRequest,
    ) -> Result<(), SessionEnd> {
        if self.files.len() >= MAX_FILES_IN_FLIGHT {
            let answer = FilesAnswer::Refused {
                error: format!(
                    "the agent asked about files {MAX_FILES_IN_FLIGHT} times at once; ask again"
                ),
            };
            return self
                .send(ServerMessage::Files {
                    attempt,
                    id,
                    answer,
                })
                .await;
        }
        let ctx = self.ctx.clone();
        let agent = self.agent.id.clone();
        self.files.spawn(async move {
            let answer = crate::files::service::answer(&ctx, &agent, attempt, request).await;
            ServerMessage::Files {
                attempt,
                id,
                answer,
            }
        });
        Ok(())
    }

    pub(super) async fn files_answered(
        &mut self,
        answered: Result<ServerMessage, tokio::task::JoinError>,
    ) -> Result<(), SessionEnd> {
        match answered {
            Ok(message) => self.send(message).await,
            // The agent's bounded wait for the answer ends its request.
            Err(e) => {
                tracing::error!(agent = %self.agent.id, error = %e, "answering a files request failed");
                Ok(())
            }
        }
    }
}
