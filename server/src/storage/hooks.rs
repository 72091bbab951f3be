//! Webhooks: one hook per webhook pipeline (an unguessable id and a signing
//! secret), and the log of deliveries, accepted or refused, with why.

use base64::Engine;
use sqlx::Row;

use super::runs::{self, Prepared, RunError};
use super::{Db, StorageError, now_ms, secrets};
use crate::vault::Vault;

/// Refused deliveries kept per hook; older ones are pruned as new ones arrive.
pub const KEEP_DELIVERIES: i64 = 500;
/// Refused deliveries are kept at most this long.
pub const KEEP_DELIVERIES_MS: i64 = 7 * 24 * 3600 * 1000;
/// Accepted deliveries carry the keys that refuse their replays, so neither
/// a flood of refused ones nor the week above pushes them out: they stay
/// this long (each started a run, so only the secret's holder makes them).
pub const KEEP_ACCEPTED_MS: i64 = 90 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub struct Hook {
    pub id: String,
    pub workflow: String,
    pub pipeline: String,
    pub secret: String,
    pub created_at: i64,
    pub rotated_at: i64,
}

pub use xene_api::hooks::HookInfo;

impl Hook {
    pub fn info(&self) -> HookInfo {
        HookInfo {
            id: self.id.clone(),
            workflow: self.workflow.clone(),
            pipeline: self.pipeline.clone(),
            path: format!("/api/v1/hooks/{}", self.id),
            url: None,
            created_at: self.created_at,
            rotated_at: self.rotated_at,
        }
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS provides randomness");
    bytes
}

/// A fresh hook id: 24 random bytes, URL-safe.
fn new_id() -> String {
    format!(
        "xh_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<24>())
    )
}

/// A fresh secret in the Standard Webhooks form, `whsec_` and 32 random
/// bytes in base64 (GitHub takes the whole text as its secret).
fn new_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
    )
}

/// A hook row with its secret opened: the database holds it sealed under
/// the master key (it must be recoverable to check signatures).
fn hook_from(r: &sqlx::any::AnyRow, vault: &Vault) -> Result<Hook, StorageError> {
    let workflow: String = r.get(1);
    let pipeline: String = r.get(2);
    let stored: String = r.get(3);
    let secret =
        secrets::open_stored(vault, &secrets::hook_scope(&workflow), &pipeline, &stored)
            .map_err(|e| StorageError::Corrupt(format!("a webhook's secret does not open: {e}")))?;
    Ok(Hook {
        id: r.get(0),
        workflow,
        pipeline,
        secret,
        created_at: r.get(4),
        rotated_at: r.get(5),
    })
}

const HOOK_COLUMNS: &str = "id, workflow, pipeline, secret, created_at, rotated_at";

pub async fn by_id(db: &Db, vault: &Vault, id: &str) -> Result<Option<Hook>, StorageError> {
    let row = sqlx::query(&format!(
        "SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(|r| hook_from(r, vault)).transpose()
}

pub async fn of_pipeline(
    db: &Db,
    vault: &Vault,
    workflow: &str,
    pipeline: &str,
) -> Result<Option<Hook>, StorageError> {
    let row = sqlx::query(&format!(
        "SELECT {HOOK_COLUMNS} FROM webhooks WHERE workflow = $1 AND pipeline = $2"
    ))
    .bind(workflow)
    .bind(pipeline)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(|r| hook_from(r, vault)).transpose()
}

/// Gives the pipeline a hook, or its hook a new secret (the id stays, so
/// the URL configured elsewhere keeps working). The secret is returned once.
pub async fn create_or_rotate(
    db: &Db,
    vault: &Vault,
    workflow: &str,
    pipeline: &str,
) -> Result<(Hook, bool), StorageError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let secret = secrets::seal_stored(
        &mut tx,
        db.backend(),
        vault,
        &secrets::hook_scope(workflow),
        pipeline,
        &new_secret(),
    )
    .await
    .map_err(|e| StorageError::Corrupt(format!("sealing a webhook's secret: {e}")))?;
    let rotated = sqlx::query(
        "UPDATE webhooks SET secret = $1, rotated_at = $2 WHERE workflow = $3 AND pipeline = $4",
    )
    .bind(&secret)
    .bind(now)
    .bind(workflow)
    .bind(pipeline)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !rotated {
        sqlx::query(
            "INSERT INTO webhooks (id, workflow, pipeline, secret, created_at, rotated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(new_id())
        .bind(workflow)
        .bind(pipeline)
        .bind(&secret)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let hook = of_pipeline(db, vault, workflow, pipeline)
        .await?
        .ok_or_else(|| StorageError::Corrupt("the hook just written is gone".into()))?;
    Ok((hook, !rotated))
}

pub use xene_api::hooks::Delivery;

/// What a delivery came to, to be recorded.
pub struct Record<'a> {
    pub hook_id: &'a str,
    pub scheme: &'a str,
    pub replay_key: Option<&'a str>,
    pub status: u16,
    pub reason: &'a str,
}

/// Records a refused delivery.
pub async fn refused(db: &Db, record: &Record<'_>) -> Result<(), StorageError> {
    let mut tx = db.begin_write().await?;
    insert(&mut tx, record, false, None).await?;
    prune(&mut tx, record.hook_id).await?;
    tx.commit().await?;
    Ok(())
}

/// Records an accepted delivery and starts its run, in one transaction;
/// `Ok(None)` when the same delivery was accepted before (a replay).
pub async fn accepted(
    db: &Db,
    record: &Record<'_>,
    prepared: &Prepared,
) -> Result<Option<i64>, RunError> {
    let mut tx = db.begin_write().await?;
    let replayed: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries WHERE hook_id = $1 AND replay_key = $2 AND accepted = 1",
    )
    .bind(record.hook_id)
    .bind(record.replay_key)
    .fetch_optional(&mut *tx)
    .await?;
    if replayed.is_some() {
        tx.rollback().await?;
        return Ok(None);
    }
    let run = runs::insert(&mut tx, prepared, "webhook", Some(record.reason), None).await?;
    // Two copies at once: the unique index lets one in; the other's
    // transaction fails here and starts nothing.
    if let Err(e) = insert(&mut tx, record, true, Some(run)).await {
        let _ = tx.rollback().await;
        return match e {
            StorageError::Sql(sqlx::Error::Database(d)) if d.is_unique_violation() => Ok(None),
            other => Err(other.into()),
        };
    }
    prune(&mut tx, record.hook_id).await?;
    tx.commit().await?;
    db.news().run_queued(run).await;
    Ok(Some(run))
}

async fn insert(
    tx: &mut super::WriteTx,
    record: &Record<'_>,
    accepted: bool,
    run: Option<i64>,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (hook_id, received_at, scheme, replay_key, status, accepted, reason, run_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(record.hook_id)
    .bind(now_ms())
    .bind(record.scheme)
    .bind(record.replay_key)
    .bind(i64::from(record.status))
    .bind(i64::from(accepted))
    .bind(record.reason)
    .bind(run)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Keeps a hook's newest deliveries, for a bounded time.
async fn prune(tx: &mut super::WriteTx, hook_id: &str) -> Result<(), StorageError> {
    sqlx::query(
        "DELETE FROM webhook_deliveries WHERE hook_id = $1 AND (received_at < $2 OR (accepted = 0 AND \
         (received_at < $4 OR id <= (SELECT id FROM webhook_deliveries WHERE hook_id = $1 AND accepted = 0 \
         ORDER BY id DESC LIMIT 1 OFFSET $3))))",
    )
    .bind(hook_id)
    .bind(now_ms() - KEEP_ACCEPTED_MS)
    .bind(KEEP_DELIVERIES)
    .bind(now_ms() - KEEP_DELIVERIES_MS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A hook's deliveries, newest first.
pub async fn deliveries(db: &Db, hook_id: &str, limit: i64) -> Result<Vec<Delivery>, StorageError> {
    let rows = sqlx::query(
        "SELECT id, received_at, scheme, status, accepted, reason, run_id FROM webhook_deliveries \
         WHERE hook_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(hook_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let accepted: i64 = r.get(4);
            Delivery {
                id: r.get(0),
                received_at: r.get(1),
                scheme: r.get(2),
                http_status: r.get(3),
                accepted: accepted != 0,
                reason: r.get(5),
                run_id: r.get(6),
            }
        })
        .collect())
}
