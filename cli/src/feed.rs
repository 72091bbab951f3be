//! A run's live feed, followed to the end across dropped connections and
//! server restarts: each reconnect asks for what came after the last log
//! cursor received, so no chunk is missed or shown twice.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Client;
use crate::error::{Exit, Failure, fail};

/// How long the feed keeps trying to reconnect before giving up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// The server pings an idle feed every 20 s: a connection silent for longer
/// than this is dead (a lost network rarely says so) and is opened again.
pub const SILENCE: Duration = Duration::from_secs(60);

/// One log chunk of the feed: whole lines of one step.
#[derive(Debug, Clone, Deserialize)]
pub struct Chunk {
    pub cursor: i64,
    pub task: String,
    pub step: String,
    #[serde(default)]
    pub stream: String,
    pub data: String,
    #[serde(default)]
    pub at: i64,
}

pub enum Event {
    /// The run's state (tasks and steps included), on every change.
    Run(Value),
    Log(Chunk),
}

/// Follows run `id` until it ends, calling `on` for each event.
pub async fn follow(
    client: &Client,
    id: i64,
    mut on: impl FnMut(Event) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut cursor = 0i64;
    let mut backoff = Duration::from_millis(200);
    let mut failing_since: Option<Instant> = None;
    loop {
        let path = format!("/api/v1/runs/{id}/events?after={cursor}");
        let mut ws = match client.websocket(&path).await {
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
            let value: Value = serde_json::from_str(text.as_str())
                .map_err(|e| fail(Exit::Failed, format!("the feed sent bad JSON: {e}")))?;
            match value.get("type").and_then(Value::as_str) {
                Some("run") => on(Event::Run(value["run"].clone()))?,
                Some("log") => {
                    let chunk: Chunk = serde_json::from_value(value).map_err(|e| {
                        fail(Exit::Failed, format!("the feed sent a bad log chunk: {e}"))
                    })?;
                    // A chunk at or before the cursor was already shown.
                    if chunk.cursor > cursor {
                        cursor = chunk.cursor;
                        on(Event::Log(chunk))?;
                    }
                }
                Some("end") => return Ok(()),
                // Nothing is lost when the feed lags: what follows catches up.
                _ => {}
            }
        }
        // The connection dropped before the end: reconnect from the cursor.
    }
}
