//! The connected agent's side of artifacts: its attempts' requests about
//! files go to the server on the session's WebSocket (`AgentMessage::Files`,
//! answered by `ServerMessage::Files` of the same id), and their bytes move
//! over HTTP ([`BlobHttp`]).
//!
//! Requests outlive connections as attempts do: one sent on a connection
//! that dropped before its answer came is asked again, once, on the next.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Notify, oneshot};
use xene_core::artifact::Digest;
use xene_core::protocol::{AgentMessage, AttemptRef, FilesAnswer, FilesRequest, Transfer};

use super::blobs::BlobHttp;
use crate::executor::files::FileChannel;

/// How long a request waits for its answer, reconnects included.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// The slowest the server is expected to assemble a multipart upload a
/// Commit completes (read and hashed whole, or S3's copy of its parts):
/// the wait for that answer grows by one second per this many bytes.
pub const ASSEMBLE_RATE: u64 = 50_000_000;
/// The most requests waiting for an answer at once (all attempts
/// together; each attempt asks one at a time).
pub const MAX_OPEN: usize = 1024;
/// The most bytes of one request as sent: the server takes 8 MiB in one
/// message and closes the connection (every attempt's) on a larger one.
pub const MAX_REQUEST_BYTES: usize = 7 << 20;
/// A request goes out at most this many times (once, and again after a
/// reconnect).
const MAX_SENDS: u8 = 2;

type Answer = Result<FilesAnswer, String>;

struct Waiter {
    attempt: AttemptRef,
    request: FilesRequest,
    answer: Option<oneshot::Sender<Answer>>,
    /// The connection it was last sent on.
    sent_on: Option<u64>,
    sends: u8,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Counts connections: a request sent on an earlier one lost its answer.
    connection: u64,
    waiters: BTreeMap<u64, Waiter>,
    /// Ids to send on the current connection, in order.
    queue: VecDeque<u64>,
}

/// The requests about files waiting for the server, shared by the session
/// (which sends them and routes the answers) and the attempts (which ask).
pub struct FilesHub {
    state: Mutex<State>,
    wanted: Notify,
    timeout: Duration,
}

impl Default for FilesHub {
    fn default() -> Self {
        Self::new(ANSWER_TIMEOUT)
    }
}

impl FilesHub {
    pub fn new(timeout: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            wanted: Notify::new(),
            timeout,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves nothing half-done worth refusing.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the server `request` for `attempt`, and waits for its answer.
    /// An `Err` is a transport failure: no answer in time, or the
    /// connection dropped twice while waiting.
    pub async fn ask(&self, attempt: AttemptRef, request: FilesRequest) -> Answer {
        let bytes = serde_json::to_vec(&request).map_or(0, |json| json.len());
        if bytes > MAX_REQUEST_BYTES {
            return Err(format!(
                "the list of files is {:.1} MiB as sent to the server, more than the {} MiB \
                 it takes: publish fewer files, or shorter paths",
                bytes as f64 / (1 << 20) as f64,
                MAX_REQUEST_BYTES >> 20
            ));
        }
        let wait = self.timeout + assembling(&request);
        let (id, answer) = {
            let mut state = self.state();
            if state.waiters.len() >= MAX_OPEN {
                return Err(format!(
                    "{MAX_OPEN} requests about files already wait for the server"
                ));
            }
            let id = state.next_id;
            state.next_id += 1;
            let (tx, rx) = oneshot::channel();
            state.waiters.insert(
                id,
                Waiter {
                    attempt,
                    request,
                    answer: Some(tx),
                    sent_on: None,
                    sends: 0,
                },
            );
            state.queue.push_back(id);
            (id, rx)
        };
        // Removed however the wait ends, a cancelled attempt's included.
        let _forget = Forget { hub: self, id };
        self.wanted.notify_one();
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err("the request about files was dropped".into()),
            Err(_) => Err(format!(
                "the server did not answer a request about files within {} s",
                wait.as_secs()
            )),
        }
    }

    /// Resolves once a request is waiting to be sent (or was, since the
    /// last call).
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// The next request to send on the current connection.
    pub fn next_message(&self) -> Option<AgentMessage> {
        let mut state = self.state();
        let connection = state.connection;
        while let Some(id) = state.queue.pop_front() {
            // Defensive: ids leave the queue with their waiters.
            let Some(waiter) = state.waiters.get_mut(&id) else {
                continue;
            };
            waiter.sent_on = Some(connection);
            waiter.sends += 1;
            return Some(AgentMessage::Files {
                attempt: waiter.attempt,
                id,
                request: waiter.request.clone(),
            });
        }
        None
    }

    /// The server's answer to request `id`.
    pub fn answer(&self, attempt: AttemptRef, id: u64, answer: FilesAnswer) {
        let mut state = self.state();
        let Some(waiter) = state.waiters.get_mut(&id) else {
            tracing::debug!(id, "an answer about files nobody waits for");
            return;
        };
        if waiter.attempt != attempt {
            tracing::warn!(
                id,
                attempt = attempt.id,
                "an answer about files for another attempt: ignored"
            );
            return;
        }
        if let Some(tx) = waiter.answer.take() {
            let _ = tx.send(Ok(answer));
        }
        state.waiters.remove(&id);
    }

    /// A new connection: requests sent on an earlier one lost their
    /// answer. Each is asked again once (its answers do not change: the
    /// server answers a repeated request as the first); one that was
    /// already asked again fails.
    pub fn reconnected(&self) {
        let mut state = self.state();
        state.connection += 1;
        let mut again = Vec::new();
        let mut failed = Vec::new();
        for (id, waiter) in &mut state.waiters {
            if waiter.sent_on.is_none() {
                continue;
            }
            if waiter.sends < MAX_SENDS {
                waiter.sent_on = None;
                again.push(*id);
            } else {
                failed.push(*id);
            }
        }
        for id in failed {
            let waiter = state.waiters.remove(&id).expect("listed");
            if let Some(tx) = waiter.answer {
                let _ = tx.send(Err("the connection to the server dropped twice while \
                     waiting for an answer about files"
                    .into()));
            }
        }
        // Before what was never sent: they were asked first.
        for id in again.into_iter().rev() {
            state.queue.push_front(id);
        }
        if !state.queue.is_empty() {
            self.wanted.notify_one();
        }
    }

    /// Requests waiting for an answer.
    pub fn open(&self) -> usize {
        self.state().waiters.len()
    }
}

/// The extra wait for a request that makes the server assemble multipart
/// uploads: a Commit of 10 GiB takes minutes to check, more than
/// [`ANSWER_TIMEOUT`] on its own.
pub fn assembling(request: &FilesRequest) -> Duration {
    let (entries, completed) = match request {
        FilesRequest::Commit {
            files, completed, ..
        } => (files, completed),
        FilesRequest::CacheSave {
            chunks, completed, ..
        } => (chunks, completed),
        _ => return Duration::ZERO,
    };
    let sizes: BTreeMap<&Digest, u64> = entries.iter().map(|e| (&e.digest, e.size)).collect();
    let bytes: u64 = completed
        .iter()
        .filter(|done| done.upload_id.is_some())
        .filter_map(|done| sizes.get(&done.digest))
        .fold(0, |sum, size| sum.saturating_add(*size));
    Duration::from_secs(bytes / ASSEMBLE_RATE)
}

/// Forgets a request when its asker stops waiting.
struct Forget<'a> {
    hub: &'a FilesHub,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut state = self.hub.state();
        if state.waiters.remove(&self.id).is_some() {
            // Unsent (while disconnected): the queue holds only live ids,
            // so it is bounded as the waiters are.
            state.queue.retain(|id| *id != self.id);
        }
    }
}

/// The file channel of one attempt of a connected agent.
pub struct ConnectedFiles {
    pub attempt: AttemptRef,
    pub hub: Arc<FilesHub>,
    pub http: Arc<BlobHttp>,
}

impl FileChannel for ConnectedFiles {
    fn ask(&self, request: FilesRequest) -> BoxFuture<'_, Answer> {
        Box::pin(self.hub.ask(self.attempt, request))
    }

    fn upload<'a>(
        &'a self,
        transfer: &'a Transfer,
        file: &'a Path,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(self.http.upload(transfer, file, offset, len))
    }

    fn download<'a>(
        &'a self,
        transfer: &'a Transfer,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<Digest, String>> {
        Box::pin(self.http.download(transfer, dest))
    }
}

#[cfg(test)]
mod tests;
