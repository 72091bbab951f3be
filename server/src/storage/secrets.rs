//! Secrets: names in the clear, values sealed by the `Vault` (only
//! ciphertext reaches the database), global or scoped to one workflow.
//! A protected secret reaches only runs of versions an admin approved, in
//! the workflows its allow-list names (`approvals`), checked where values
//! are opened for an agent.
//!
//! Which master key seals is decided by the key check row in `server_meta`,
//! not by each replica's configuration: a replica that has not yet read a
//! rotated key file still seals with the key the database says is current,
//! and a rotation (which moves that row) cannot interleave with a write.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use xene_core::spec::Pipeline;

use super::{Backend, Db, StorageError, now_ms};
use crate::vault::{Vault, VaultError};

/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Shortest value, in characters: a shorter one masked in logs would shred them.
pub const MIN_VALUE_CHARS: usize = 4;
/// Most secrets in one database.
pub const MAX_SECRETS: i64 = 10_000;

pub(super) const KEY_CHECK: &str = "secrets_key_check";
/// What the key check seals: its scope holds a NUL, which no real secret's
/// scope can, so the check never collides with a row.
pub(super) const CHECK_SCOPE: &str = "\0check";
pub(super) const CHECK_TEXT: &[u8] = b"xene secrets key check";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("there are already {MAX_SECRETS} secrets; delete some first")]
    TooMany,
    /// A change that would leave the secret unusable or unclear (422).
    #[error("{0}")]
    Invalid(String),
}

impl From<sqlx::Error> for SecretsError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

pub use xene_api::secrets::SecretInfo;

/// What a `put` changes; `None` keeps what is stored (a new secret needs a
/// value and is unprotected unless asked).
#[derive(Debug, Clone, Copy, Default)]
pub struct Change<'a> {
    pub value: Option<&'a str>,
    pub protected: Option<bool>,
    pub allow: Option<&'a [String]>,
}

/// Most entries in a protected secret's allow-list.
pub const MAX_ALLOW: usize = 100;

fn allow_from(text: &str) -> Vec<String> {
    // Written by `put` only; an unreadable list allows nobody.
    serde_json::from_str(text).unwrap_or_default()
}

fn scope_of(workflow: Option<&str>) -> &str {
    workflow.unwrap_or("")
}

/// Every secret name a pipeline's tasks use.
pub fn names_used(pipeline: &Pipeline) -> BTreeSet<String> {
    pipeline
        .tasks
        .values()
        .flat_map(|t| t.secrets.iter().cloned())
        .collect()
}

/// All secrets, or those visible to one workflow (its own and the global
/// ones), ordered by name and then scope.
pub async fn list(db: &Db, workflow: Option<&str>) -> Result<Vec<SecretInfo>, StorageError> {
    let rows =
        match workflow {
            Some(w) => sqlx::query(
                "SELECT s.scope, s.name, s.created_by, s.created_at, s.updated_by, s.updated_at, s.protected, \
                 s.allowed, u.name, u.email FROM secrets s LEFT JOIN users u ON u.id = s.updated_by \
                 WHERE s.scope = '' OR s.scope = $1 ORDER BY s.name, s.scope LIMIT $2",
            )
            .bind(w)
            .bind(MAX_SECRETS)
            .fetch_all(db.pool())
            .await?,
            None => sqlx::query(
                "SELECT s.scope, s.name, s.created_by, s.created_at, s.updated_by, s.updated_at, s.protected, \
                 s.allowed, u.name, u.email FROM secrets s LEFT JOIN users u ON u.id = s.updated_by \
                 ORDER BY s.name, s.scope LIMIT $1",
            )
            .bind(MAX_SECRETS)
            .fetch_all(db.pool())
            .await?,
        };
    Ok(rows
        .iter()
        .map(|r| {
            let scope: String = r.get(0);
            SecretInfo {
                name: r.get(1),
                workflow: (!scope.is_empty()).then_some(scope),
                created_by: r.get(2),
                created_at: r.get(3),
                updated_by: r.get(4),
                updater: super::person(r.get(8), r.get(9)),
                updated_at: r.get(5),
                protected: r.get::<i64, _>(6) != 0,
                allow: allow_from(&r.get::<String, _>(7)),
            }
        })
        .collect())
}

/// Reads the key check inside a write transaction, locking it on
/// PostgreSQL (SQLite's write transaction already excludes every other).
pub(super) async fn current_key(
    tx: &mut super::WriteTx,
    backend: Backend,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let value: Option<String> = sqlx::query_scalar(&format!(
        "SELECT value FROM server_meta WHERE key = $1{lock}"
    ))
    .bind(KEY_CHECK)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(value.and_then(|v| {
        v.split_once(':')
            .map(|(id, sealed)| (id.to_string(), sealed.to_string()))
    }))
}

/// Creates a secret or changes its value or protection; true when it was
/// created.
pub async fn put(
    db: &Db,
    vault: &Vault,
    workflow: Option<&str>,
    name: &str,
    change: Change<'_>,
    actor: &str,
) -> Result<bool, SecretsError> {
    let scope = scope_of(workflow);
    let mut tx = db.begin_write().await?;
    let existing =
        sqlx::query("SELECT protected, allowed FROM secrets WHERE scope = $1 AND name = $2")
            .bind(scope)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    let (was_protected, was_allowed) = existing.as_ref().map_or((false, Vec::new()), |r| {
        (r.get::<i64, _>(0) != 0, allow_from(&r.get::<String, _>(1)))
    });
    let protected = change.protected.unwrap_or(was_protected);
    let allow = change.allow.map_or(was_allowed, <[String]>::to_vec);
    check_protection(workflow, protected, &allow)?;
    let allowed = serde_json::to_string(&allow).expect("strings serialize");
    let now = now_ms();
    if existing.is_some() {
        if let Some(value) = change.value {
            let (key_id, sealed) =
                seal_current(&mut tx, db.backend(), vault, scope, name, value).await?;
            sqlx::query(
                "UPDATE secrets SET key_id = $1, ciphertext = $2 WHERE scope = $3 AND name = $4",
            )
            .bind(&key_id)
            .bind(&sealed)
            .bind(scope)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE secrets SET protected = $1, allowed = $2, updated_by = $3, updated_at = $4 \
             WHERE scope = $5 AND name = $6",
        )
        .bind(i64::from(protected))
        .bind(&allowed)
        .bind(actor)
        .bind(now)
        .bind(scope)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    } else {
        let Some(value) = change.value else {
            return Err(SecretsError::Invalid("a new secret needs a value".into()));
        };
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets")
            .fetch_one(&mut *tx)
            .await?;
        if count >= MAX_SECRETS {
            return Err(SecretsError::TooMany);
        }
        let (key_id, sealed) =
            seal_current(&mut tx, db.backend(), vault, scope, name, value).await?;
        sqlx::query(
            "INSERT INTO secrets (scope, name, key_id, ciphertext, created_by, created_at, updated_by, updated_at, protected, allowed) \
             VALUES ($1, $2, $3, $4, $5, $6, $5, $6, $7, $8)",
        )
        .bind(scope)
        .bind(name)
        .bind(&key_id)
        .bind(&sealed)
        .bind(actor)
        .bind(now)
        .bind(i64::from(protected))
        .bind(&allowed)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(existing.is_none())
}

/// A protected global secret must name who may use it; a workflow's own
/// may name only that workflow; an allow-list means nothing unprotected.
fn check_protection(
    workflow: Option<&str>,
    protected: bool,
    allow: &[String],
) -> Result<(), SecretsError> {
    if !protected && !allow.is_empty() {
        return Err(SecretsError::Invalid(
            "`allow` applies to protected secrets only: set `protected` too".into(),
        ));
    }
    if protected && workflow.is_none() && allow.is_empty() {
        return Err(SecretsError::Invalid(
            "a protected global secret names the workflows (or WORKFLOW/PIPELINE) that may use it in `allow`".into(),
        ));
    }
    if let Some(w) = workflow
        && let Some(other) = allow.iter().find(|a| a.split('/').next() != Some(w))
    {
        return Err(SecretsError::Invalid(format!(
            "workflow {w}'s own secret can allow only that workflow or its pipelines, not {other:?}"
        )));
    }
    Ok(())
}

/// The sealing scope of a workflow's webhook secrets (its pipeline is the
/// name): the NUL keeps it apart from every secret's scope.
pub(crate) fn hook_scope(workflow: &str) -> String {
    format!("\0hook:{workflow}")
}

/// Seals another kind of secret (a webhook's signing secret) under the key
/// the database names, as `KEY_ID:CIPHERTEXT`, inside the caller's write
/// transaction. `scope` starts with a NUL, so it never meets a secret's row.
pub(crate) async fn seal_stored(
    tx: &mut super::WriteTx,
    backend: Backend,
    vault: &Vault,
    scope: &str,
    name: &str,
    value: &str,
) -> Result<String, SecretsError> {
    let (id, sealed) = seal_current(tx, backend, vault, scope, name, value).await?;
    Ok(format!("{id}:{sealed}"))
}

/// Seals under the key the database's key check names (reading the key
/// file again if this process lacks it), or under the first key before
/// there is a check: the key id and the ciphertext.
async fn seal_current(
    tx: &mut super::WriteTx,
    backend: Backend,
    vault: &Vault,
    scope: &str,
    name: &str,
    value: &str,
) -> Result<(String, String), SecretsError> {
    Ok(match current_key(tx, backend).await? {
        Some((id, _)) => {
            if !vault.has_key(&id) {
                vault.reload()?;
            }
            let sealed = vault.seal_with(&id, scope, name, value.as_bytes())?;
            (id, sealed)
        }
        None => vault.seal(scope, name, value.as_bytes()),
    })
}

/// Opens what `seal_stored` made.
pub(crate) fn open_stored(
    vault: &Vault,
    scope: &str,
    name: &str,
    stored: &str,
) -> Result<String, VaultError> {
    let (id, sealed) = stored.split_once(':').ok_or(VaultError::Tampered)?;
    let bytes = vault.open(scope, name, id, sealed)?;
    String::from_utf8(bytes).map_err(|_| VaultError::Tampered)
}

/// Deletes a secret; false when there was none.
pub async fn delete(db: &Db, workflow: Option<&str>, name: &str) -> Result<bool, StorageError> {
    let done = sqlx::query("DELETE FROM secrets WHERE scope = $1 AND name = $2")
        .bind(scope_of(workflow))
        .bind(name)
        .execute(&mut *db.write_conn().await?)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// One stored secret a run of a workflow would get.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub scope: String,
    pub name: String,
    pub(super) key_id: String,
    pub(super) sealed: String,
    pub protected: bool,
    pub allow: Vec<String>,
}

/// The secrets a run of `workflow` gets for `names`: the workflow's own
/// value wins over the global one.
pub async fn chosen(
    db: &Db,
    workflow: &str,
    names: &BTreeSet<String>,
) -> Result<BTreeMap<String, Chosen>, StorageError> {
    let mut chosen: BTreeMap<String, Chosen> = BTreeMap::new();
    if names.is_empty() {
        return Ok(chosen);
    }
    let placeholders: Vec<String> = (0..names.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT scope, name, key_id, ciphertext, protected, allowed FROM secrets \
         WHERE (scope = '' OR scope = $1) AND name IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(workflow);
    for name in names {
        query = query.bind(name);
    }
    for r in query.fetch_all(db.pool()).await? {
        let row = Chosen {
            scope: r.get(0),
            name: r.get(1),
            key_id: r.get(2),
            sealed: r.get(3),
            protected: r.get::<i64, _>(4) != 0,
            allow: allow_from(&r.get::<String, _>(5)),
        };
        if row.scope.is_empty() && chosen.contains_key(&row.name) {
            continue;
        }
        chosen.insert(row.name.clone(), row);
    }
    Ok(chosen)
}

/// The names of `names` that neither the workflow nor the global scope has.
pub async fn missing(
    db: &Db,
    workflow: &str,
    names: &BTreeSet<String>,
) -> Result<Vec<String>, StorageError> {
    let found = chosen(db, workflow, names).await?;
    Ok(names
        .iter()
        .filter(|n| !found.contains_key(*n))
        .cloned()
        .collect())
}

/// Proves at start that the configured keys are the database's: the key
/// check (made on the first start) must open, and every stored value's key
/// must be configured. Never lets a wrong key produce garbage later.
pub async fn check_key(db: &Db, vault: &Vault) -> Result<(), SecretsError> {
    let (id, sealed) = vault.seal(CHECK_SCOPE, "", CHECK_TEXT);
    sqlx::query(
        "INSERT INTO server_meta (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
    )
    .bind(KEY_CHECK)
    .bind(format!("{id}:{sealed}"))
    .bind(now_ms())
    .execute(&mut *db.write_conn().await?)
    .await?;
    let value: String = sqlx::query_scalar("SELECT value FROM server_meta WHERE key = $1")
        .bind(KEY_CHECK)
        .fetch_one(db.pool())
        .await?;
    let (id, sealed) = value
        .split_once(':')
        .ok_or_else(|| StorageError::Corrupt("the secrets key check is malformed".into()))?;
    match vault.open(CHECK_SCOPE, "", id, sealed) {
        Ok(text) if text == CHECK_TEXT => {}
        Ok(_) | Err(VaultError::Tampered) => {
            return Err(StorageError::Corrupt("the secrets key check does not open".into()).into());
        }
        Err(e) => return Err(e.into()),
    }
    let mut ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT key_id FROM secrets")
        .fetch_all(db.pool())
        .await?;
    let hooks: Vec<String> = sqlx::query_scalar("SELECT secret FROM webhooks")
        .fetch_all(db.pool())
        .await?;
    ids.extend(
        hooks
            .iter()
            .filter_map(|s| s.split_once(':').map(|(id, _)| id.to_string())),
    );
    if let Some(unknown) = ids.into_iter().find(|id| !vault.has_key(id)) {
        return Err(VaultError::UnknownKey(unknown).into());
    }
    Ok(())
}

/// Whether the database has a key check yet (it has none before the first
/// start with secrets support): only then may a new key file be made.
pub async fn has_key_check(db: &Db) -> Result<bool, StorageError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM server_meta WHERE key = $1")
        .bind(KEY_CHECK)
        .fetch_optional(db.pool())
        .await?;
    Ok(found.is_some())
}
