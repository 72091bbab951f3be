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
            let message = match serde_json::from_str::<RunFeed>(text.as_str()) {
                Ok(message) => message,
                Err(e) if of_a_known_type(text.as_str())? => {
                    return Err(fail(
                        Exit::Failed,
                        format!("the feed sent a bad message: {e}"),
                    ));
                }
                // A message this client does not know (a newer server's):
                // what follows still tells the run.
                Err(_) => continue,
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

/// Whether a message the feed sent, and this client could not read, names
/// a type it knows; a message that is not JSON is an error.
fn of_a_known_type(text: &str) -> anyhow::Result<bool> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| fail(Exit::Failed, format!("the feed sent bad JSON: {e}")))?;
    Ok(matches!(
        value.get("type").and_then(Value::as_str),
        Some("run" | "log" | "end")
    ))
}
