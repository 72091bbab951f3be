//! A session's requests about files: each answered on a task of its own by
//! `files::service`, its answer sent back when ready, a bounded number at
//! once.

use futures::Sink;
use xene_core::protocol::{AttemptRef, FilesAnswer, FilesRequest, ServerMessage};

use super::limits::{self, MAX_ANSWER_BYTES};
use super::{Session, SessionEnd};

/// Requests about files one agent may have answered at once: an agent
/// asks one at a time per attempt, so as many as the attempts it may
/// report holding; more are refused.
pub const MAX_FILES_IN_FLIGHT: usize = limits::MAX_RUNNING;

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
                    "the agent asked about files more than {MAX_FILES_IN_FLIGHT} times at once"
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
        if let Err(error) = limits::check_files(&request) {
            let answer = FilesAnswer::Refused { error };
            return self
                .send(ServerMessage::Files {
                    attempt,
                    id,
                    answer,
                })
                .await;
        }
        let service = crate::controllers::files_service(self.ctx);
        let agent = self.agent.id.clone();
        self.files.spawn(async move {
            let answer = crate::files::service::answer(&service, &agent, attempt, request).await;
            let message = ServerMessage::Files {
                attempt,
                id,
                answer,
            };
            within(message, MAX_ANSWER_BYTES)
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

/// `message`, or a refusal when it is over `bound` bytes: what an agent
/// reads is bounded as what it sends is (an answer listing many files with
/// long paths could pass it).
fn within(message: ServerMessage, bound: usize) -> ServerMessage {
    let bytes = serde_json::to_vec(&message).map_or(usize::MAX, |b| b.len());
    let ServerMessage::Files { attempt, id, .. } = &message else {
        return message;
    };
    if bytes <= bound {
        return message;
    }
    let error = format!(
        "the answer about this artifact's files is {bytes} bytes, over the {bound} one message may \
         carry: publish fewer files, or shorter paths (a tar of them is one file)"
    );
    ServerMessage::Files {
        attempt: *attempt,
        id: *id,
        answer: FilesAnswer::Refused { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_past_the_message_bound_are_refusals() {
        let answer = |files: usize| ServerMessage::Files {
            attempt: AttemptRef { id: 1 },
            id: 9,
            answer: FilesAnswer::Downloads {
                files: (0..files)
                    .map(|i| xene_core::artifact::ManifestEntry {
                        path: format!("dir/file-{i}"),
                        size: 1,
                        mode: 0o644,
                        digest: xene_core::artifact::Digest::from_sha256(&[0; 32]),
                    })
                    .collect(),
                downloads: Vec::new(),
            },
        };
        let small = answer(2);
        assert_eq!(within(small.clone(), 4096), small);
        match within(answer(100), 4096) {
            ServerMessage::Files {
                id: 9,
                answer: FilesAnswer::Refused { error },
                ..
            } => assert!(error.contains("over the 4096"), "{error}"),
            other => panic!("{other:?}"),
        }
    }
}
