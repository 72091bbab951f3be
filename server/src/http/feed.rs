//! Live feeds over WebSocket: one run's status changes and log chunks, in
//! order and resumable (`/api/v1/runs/{id}/events?after=CURSOR`), and every
//! run's status changes (`/api/v1/runs/feed`) for the runs list.
//!
//! A feed never holds anything up: it is woken by the database's change
//! news (NOTIFY across replicas on PostgreSQL) and reads what is new from
//! storage by its cursor. A client that reads slowly only falls behind on
//! its own, in storage: a run's feed reads on from its cursor, and the runs
//! list is told to `resync`.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::storage::{Change, Db, access as people, attempt_views, logs, now_ms, runs};
use xene_api::feed::{ListFeed, RunFeed};

/// How often an open feed checks that its client may still read it (a
/// revoked token, a disabled user): the feed closes within this.
const RECHECK_EVERY_MS: i64 = 30_000;

/// Whether the one who opened a feed may still read: their token is not
/// revoked or expired, they are not disabled.
async fn still_allowed(db: &Db, principal: &Principal) -> anyhow::Result<bool> {
    if let Some(jti) = &principal.token {
        let Some(token) = people::token(db, jti).await? else {
            return Ok(false);
        };
        if token.revoked_at.is_some() || token.expires_at.is_some_and(|e| e < now_ms()) {
            return Ok(false);
        }
    }
    Ok(people::user(db, &principal.user_id)
        .await?
        .is_some_and(|u| !u.disabled))
}

/// Closes the feed when its reader lost the right to it.
struct Recheck {
    principal: Principal,
    checked_at: i64,
}

impl Recheck {
    async fn ensure(&mut self, db: &Db) -> anyhow::Result<()> {
        if now_ms() - self.checked_at < RECHECK_EVERY_MS {
            return Ok(());
        }
        self.checked_at = now_ms();
        anyhow::ensure!(
            still_allowed(db, &self.principal).await?,
            "the reader's credential no longer works"
        );
        Ok(())
    }
}

/// A client that takes longer than this to accept a message is gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle feed pings this often, so dead connections are noticed.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Log bytes read from storage per message batch.
const READ_BYTES: i64 = 256 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run_events))
        .routes(routes!(runs_feed))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Resume after this log cursor (the last `cursor` received).
    pub after: Option<i64>,
}

/// A run's live feed (WebSocket). Messages, as JSON text:
/// `{"type":"run","run":RUN}` with the run's state (tasks and steps
/// included) whenever it changes; `{"type":"log","cursor":N,"attempt":A,
/// "task":T,"step":S,"stream":"stdout","offset":BYTES,"data":"lines\n"}` for
/// each log chunk, in order; `{"type":"end"}` once
/// the run is over and every chunk was sent.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}/events", tag = "runs",
    params(("id" = i64, Path, description = "Run id"), FeedQuery),
    responses((status = 101, description = "Switching to the WebSocket feed"), (status = 404))
)]
async fn run_events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<i64>, PathRejection>,
    query: Result<Query<FeedQuery>, QueryRejection>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let Query(query) = query?;
    if runs::get_run(&state.db, id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no run with id {id}")));
    }
    let db = state.db.clone();
    let metrics = state.ctx.metrics.clone();
    Ok(ws
        .max_message_size(4096)
        .on_upgrade(move |socket| async move {
            let _counted = metrics.feed_client();
            let recheck = Recheck {
                principal,
                checked_at: now_ms(),
            };
            if let Err(e) = follow_run(db, id, query.after.unwrap_or(0), socket, recheck).await {
                tracing::debug!(run_id = id, error = %e, "a run feed ended");
            }
        }))
}

async fn send(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    text: String,
) -> anyhow::Result<()> {
    tokio::time::timeout(
        SEND_TIMEOUT,
        sink.send(Message::Text(Utf8Bytes::from(text))),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the client stopped reading"))??;
    Ok(())
}

async fn follow_run(
    db: Db,
    id: i64,
    mut cursor: i64,
    socket: WebSocket,
    mut recheck: Recheck,
) -> anyhow::Result<()> {
    // Following before the first read, so no change falls between the two.
    let mut following = db.news().follow(id);
    let mut versions = following.now();
    let (mut sink, mut incoming) = socket.split();
    let mut ping = ping_timer();
    let mut last_state = String::new();
    let mut finished = false;
    let mut state_changed = true;
    loop {
        recheck.ensure(&db).await?;
        if state_changed {
            let Some(run) = runs::get(&db, id).await? else {
                return Ok(());
            };
            finished = runs::is_final(run.run.status);
            let text = RunFeed::Run { run }.to_text();
            if text != last_state {
                send(&mut sink, text.clone()).await?;
                last_state = text;
            }
        }
        loop {
            let filter = logs::Filter {
                after: cursor,
                max_bytes: READ_BYTES,
                ..Default::default()
            };
            let chunks = logs::chunks(&db, id, &filter).await?;
            if chunks.is_empty() {
                break;
            }
            for chunk in chunks {
                cursor = chunk.cursor;
                send(&mut sink, RunFeed::Log(chunk).to_text()).await?;
            }
        }
        // Logs are stored before the event that ends the run, so a run seen
        // over here has nothing left to send.
        if finished {
            send(&mut sink, RunFeed::End.to_text()).await?;
            let _ = sink.close().await;
            return Ok(());
        }
        // However much news came meanwhile, one read above or below takes
        // all of it: a slow client falls behind only in storage.
        state_changed = loop {
            tokio::select! {
                changed = following.changed(&mut versions) => {
                    break changed.map_err(|_| anyhow::anyhow!("the server is stopping"))?;
                }
                message = incoming.next() => match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => anyhow::bail!("the client left"),
                    Some(Ok(_)) => {}
                },
                _ = ping.tick() => ping_client(&mut sink).await?,
            }
        };
    }
}

async fn ping_client(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
) -> anyhow::Result<()> {
    tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Ping(Default::default())))
        .await
        .map_err(|_| anyhow::anyhow!("the client stopped reading"))??;
    Ok(())
}

/// A feed's timer for pinging an idle client. One timer per feed, so news
/// for other runs does not put off the ping that finds a dead client.
fn ping_timer() -> tokio::time::Interval {
    let mut timer = tokio::time::interval(PING_EVERY);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer.reset();
    timer
}

/// Waits for news of runs' states (or that news was lost), answering the
/// client's pings and pinging an idle one. Errors when the client leaves.
async fn wait_for(
    changes: &mut tokio::sync::broadcast::Receiver<Change>,
    incoming: &mut futures::stream::SplitStream<WebSocket>,
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    ping: &mut tokio::time::Interval,
) -> anyhow::Result<Vec<Change>> {
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(change) => {
                    seen.push(change);
                    // Take what else is waiting, so one read serves them all.
                    loop {
                        match changes.try_recv() {
                            Ok(more) => seen.push(more),
                            Err(TryRecvError::Lagged(_)) => return Ok(vec![Change::All]),
                            Err(_) => return Ok(seen),
                        }
                    }
                }
                // News was missed: the list reads everything again.
                Err(RecvError::Lagged(_)) => return Ok(vec![Change::All]),
                Err(RecvError::Closed) => anyhow::bail!("the server is stopping"),
            },
            message = incoming.next() => match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => anyhow::bail!("the client left"),
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => ping_client(sink).await?,
        }
    }
}

/// Every run's status changes (WebSocket), for lists: `{"type":"run",
/// "run":RUN}` (the run without its tasks) for each run that changes, and
/// `{"type":"resync"}` when news may have been missed and the list should
/// be read again.
#[utoipa::path(
    get, path = "/api/v1/runs/feed", tag = "runs",
    responses((status = 101, description = "Switching to the WebSocket feed"))
)]
async fn runs_feed(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ws: WebSocketUpgrade,
) -> Response {
    let db = state.db.clone();
    let metrics = state.ctx.metrics.clone();
    ws.max_message_size(4096)
        .on_upgrade(move |socket| async move {
            let _counted = metrics.feed_client();
            let recheck = Recheck {
                principal,
                checked_at: now_ms(),
            };
            if let Err(e) = follow_runs(db, socket, recheck).await {
                tracing::debug!(error = %e, "a runs feed ended");
            }
        })
}

async fn follow_runs(db: Db, socket: WebSocket, mut recheck: Recheck) -> anyhow::Result<()> {
    let mut changes = db.news().list();
    let (mut sink, mut incoming) = socket.split();
    let mut ping = ping_timer();
    loop {
        let seen = wait_for(&mut changes, &mut incoming, &mut sink, &mut ping).await?;
        recheck.ensure(&db).await?;
        if seen.contains(&Change::All) {
            send(&mut sink, ListFeed::Resync.to_text()).await?;
            continue;
        }
        let ids: BTreeSet<i64> = seen
            .into_iter()
            .filter_map(|c| match c {
                Change::Run(id) => Some(id),
                Change::Logs(_) | Change::All => None,
            })
            .collect();
        let mut changed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(run) = runs::get_run(&db, id).await? {
                changed.push(run);
            }
        }
        // One query for the agents of every run in the batch.
        attempt_views::fill_runs(&db, &mut changed).await?;
        for run in changed {
            send(&mut sink, ListFeed::Run { run }.to_text()).await?;
        }
    }
}
