//! A run's live feed, followed to the end across dropped connections and
//! server restarts: each reconnect asks for what came after the last log
//! cursor received, so no chunk is missed or shown twice.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use xene_api::feed::RunFeed;
use xene_api::paths;

use crate::client::Client;
use crate::error::{Exit, Failure, fail};

/// How long the feed keeps trying to reconnect before giving up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// The server pings an idle feed every 20 s: a connection silent for longer
/// than this is dead (a lost network rarely says so) and is opened again.
pub const SILENCE: Duration = Duration::from_secs(60);

/// Follows run `id` until it ends, calling `on` for each message but the
/// end: the run whenever it changes, and each log chunk once.
pub async fn follow(
    client: &Client,
    id: i64,
    mut on: impl FnMut(RunFeed) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut cursor = 0i64;
    let mut backoff = Duration::from_millis(200);
    let mut failing_since: Option<Instant> = None;
    loop {
        let mut ws = match client.websocket(&paths::run_events(id, Some(cursor))).await {
            Ok(ws) => ws,
            Err(e) => {
                // Only an unreachable server is worth waiting for; a refusal
                // (no such run, a revoked token) will not change.
                let transient = e
                    .downcast_ref::<Failure>()
                    .is_some_and(|f| f.exit == Exit::Unreachable || f.exit == Exit::Failed);
                let since = *failing_since.get_or_insert_with(Instant::now);
                if !transient || since.elapsed() > GIVE_UP_AFTER {
                    return Err(e);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        failing_since = None;
        backoff = Duration::from_millis(200);
        while let Ok(Some(message)) = tokio::time::timeout(SILENCE, ws.next()).await {
            let Ok(message) = message else { break };
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some(message) = decode(text.as_str())? else {
                continue;
            };
            match message {
                RunFeed::Log(chunk) => {
                    // A chunk at or before the cursor was already shown.
                    if chunk.cursor > cursor {
                        cursor = chunk.cursor;
                        on(RunFeed::Log(chunk))?;
                    }
                }
                RunFeed::End => return Ok(()),
                run @ RunFeed::Run { .. } => on(run)?,
            }
        }
        // The connection dropped before the end: reconnect from the cursor.
    }
}

/// One message of the feed: `None` for one to pass over. A run message
/// this client cannot read (a newer server's) is passed over: only the run
/// view misses it, and the next one, the log and the end still tell the
/// run. A log or end message it cannot read, or a message that is not JSON,
/// is an error; a message of an unknown type is passed over.
fn decode(text: &str) -> anyhow::Result<Option<RunFeed>> {
    let error = match serde_json::from_str::<RunFeed>(text) {
        Ok(message) => return Ok(Some(message)),
        Err(e) => e,
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| fail(Exit::Failed, format!("the feed sent bad JSON: {e}")))?;
    match value.get("type").and_then(Value::as_str) {
        Some("run") => {
            tracing::debug!(%error, "passed over a run message this client cannot read");
            Ok(None)
        }
        Some("log") => Err(fail(
            Exit::Failed,
            format!("the feed sent a bad log chunk: {error}"),
        )),
        Some("end") => Err(fail(
            Exit::Failed,
            format!("the feed sent a bad message: {error}"),
        )),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(result: anyhow::Result<Option<RunFeed>>) -> Exit {
        let error = result.expect_err("an error");
        error.downcast_ref::<Failure>().expect("a failure").exit
    }

    #[test]
    fn a_run_message_it_cannot_read_is_passed_over() {
        assert!(
            decode(r#"{"type":"run","run":{"id":"not a number"}}"#)
                .unwrap()
                .is_none()
        );
        assert!(decode(r#"{"type":"run"}"#).unwrap().is_none());
    }

    #[test]
    fn a_log_message_it_cannot_read_ends_the_feed() {
        assert_eq!(exit(decode(r#"{"type":"log","cursor":"x"}"#)), Exit::Failed);
        assert_eq!(exit(decode("not json")), Exit::Failed);
    }

    #[test]
    fn log_and_end_messages_are_read_and_unknown_ones_passed_over() {
        let chunk = xene_api::feed::LogChunk {
            cursor: 3,
            attempt: 1,
            task: "t".into(),
            step: "s".into(),
            stream: "stdout".into(),
            offset: 0,
            data: "hi\n".into(),
            at: 1,
        };
        let text = RunFeed::Log(chunk.clone()).to_text();
        assert_eq!(decode(&text).unwrap(), Some(RunFeed::Log(chunk)));
        assert_eq!(decode(r#"{"type":"end"}"#).unwrap(), Some(RunFeed::End));
        assert!(decode(r#"{"type":"gate","name":"g"}"#).unwrap().is_none());
    }
}
