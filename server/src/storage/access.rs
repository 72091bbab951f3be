//! Users, invites, API token records, one-time sign-in links, the audit log
//! and the key that signs API tokens.

use sqlx::Row;
use xene_core::access::Role;

use super::auth::{hash, secret};
use super::secrets::{SecretsError, open_stored, seal_stored};
use super::{Db, StorageError, now_ms};
use crate::vault::Vault;

/// The issuer of identities Xene vouches for itself: the first admin's
/// sign-in link and the local `xenectl` token.
pub const LOCAL_ISSUER: &str = "xene:local";
/// The service identity behind the local admin token.
pub const LOCAL_CLI_SUBJECT: &str = "cli";
/// The identity the first admin's sign-in link creates.
pub const FIRST_ADMIN_SUBJECT: &str = "first-admin";

pub use xene_api::access::User;

const USER_COLUMNS: &str =
    "id, issuer, subject, email, name, role, disabled, created_at, last_sign_in";

fn user_from(row: &sqlx::any::AnyRow) -> Result<User, StorageError> {
    let role: String = row.get(5);
    Ok(User {
        id: row.get(0),
        issuer: row.get(1),
        subject: row.get(2),
        email: row.get(3),
        name: row.get(4),
        role: role
            .parse()
            .map_err(|e: xene_core::access::UnknownRole| StorageError::Corrupt(e.to_string()))?,
        disabled: row.get::<i64, _>(6) != 0,
        created_at: row.get(7),
        last_sign_in: row.get(8),
    })
}

pub async fn user(db: &Db, id: &str) -> Result<Option<User>, StorageError> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(user_from).transpose()
}

pub async fn user_by_identity(
    db: &Db,
    issuer: &str,
    subject: &str,
) -> Result<Option<User>, StorageError> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE issuer = $1 AND subject = $2"
    ))
    .bind(issuer)
    .bind(subject)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(user_from).transpose()
}

pub async fn users(db: &Db) -> Result<Vec<User>, StorageError> {
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id LIMIT 10000"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(user_from).collect()
}

/// Who a new user is, as their issuer told us.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub name: String,
}

/// Finds the user for an identity or creates it with `role`, and records
/// the sign-in. Email and name follow the issuer's latest word.
pub async fn sign_in(db: &Db, identity: &Identity, role: Role) -> Result<User, StorageError> {
    let now = now_ms();
    let id = format!(
        "u_{}",
        &hash(&format!("{}\n{}", identity.issuer, identity.subject))[..20]
    );
    sqlx::query(
        "INSERT INTO users (id, issuer, subject, email, name, role, created_at, last_sign_in)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (issuer, subject) DO UPDATE SET email = $4, name = $5, last_sign_in = $7",
    )
    .bind(&id)
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .bind(&identity.email)
    .bind(&identity.name)
    .bind(role.as_str())
    .bind(now)
    .execute(&mut *db.write_conn().await?)
    .await?;
    user_by_identity(db, &identity.issuer, &identity.subject)
        .await?
        .ok_or_else(|| StorageError::Corrupt("a user vanished while signing in".into()))
}

#[derive(Debug, thiserror::Error)]
pub enum UserChangeError {
    #[error("no user with id {0:?}")]
    Unknown(String),
    #[error("the last enabled admin cannot be demoted or disabled")]
    LastAdmin,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for UserChangeError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

/// Changes a user's role or disabled flag; never leaves Xene without an
/// enabled admin who is a person.
pub async fn update_user(
    db: &Db,
    id: &str,
    role: Option<Role>,
    disabled: Option<bool>,
) -> Result<User, UserChangeError> {
    let mut tx = db.begin_write().await?;
    if db.backend() == super::Backend::Postgres {
        // Two demotions at once must not each count the other as the
        // remaining admin: the admins' rows are locked until commit (SQLite
        // took its write lock at BEGIN).
        sqlx::query("SELECT id FROM users WHERE role = 'admin' AND disabled = 0 FOR UPDATE")
            .execute(&mut *tx)
            .await?;
    }
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| UserChangeError::Unknown(id.chars().take(64).collect()))?;
    let user = user_from(&row)?;
    let new_role = role.unwrap_or(user.role);
    let new_disabled = disabled.unwrap_or(user.disabled);
    let was_admin = user.role == Role::Admin && !user.disabled;
    let stays_admin = new_role == Role::Admin && !new_disabled;
    let is_cli = user.issuer == LOCAL_ISSUER && user.subject == LOCAL_CLI_SUBJECT;
    if was_admin && !stays_admin && !is_cli {
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id <> $1 AND NOT (issuer = $2 AND subject = $3)",
        )
        .bind(id)
        .bind(LOCAL_ISSUER)
        .bind(LOCAL_CLI_SUBJECT)
        .fetch_one(&mut *tx)
        .await?;
        if others == 0 {
            return Err(UserChangeError::LastAdmin);
        }
    }
    sqlx::query("UPDATE users SET role = $1, disabled = $2 WHERE id = $3")
        .bind(new_role.as_str())
        .bind(i64::from(new_disabled))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(User {
        role: new_role,
        disabled: new_disabled,
        ..user
    })
}

/// Whether a person (not the local CLI identity) holds the admin role.
pub async fn has_person_admin(db: &Db) -> Result<bool, StorageError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND NOT (issuer = $1 AND subject = $2)",
    )
    .bind(LOCAL_ISSUER)
    .bind(LOCAL_CLI_SUBJECT)
    .fetch_one(db.pool())
    .await?;
    Ok(n > 0)
}

// ---- invites ----

pub use xene_api::access::Invite;

fn invite_from(row: &sqlx::any::AnyRow) -> Result<Invite, StorageError> {
    let role: String = row.get(3);
    Ok(Invite {
        id: row.get(0),
        email: row.get(1),
        domain: row.get(2),
        role: role
            .parse()
            .map_err(|e: xene_core::access::UnknownRole| StorageError::Corrupt(e.to_string()))?,
        created_by: row.get(4),
        created_at: row.get(5),
    })
}

pub async fn invites(db: &Db) -> Result<Vec<Invite>, StorageError> {
    let rows = sqlx::query(
        "SELECT id, email, domain, role, created_by, created_at FROM invites ORDER BY id LIMIT 10000",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(invite_from).collect()
}

/// Adds or replaces the invite for an email or a domain (lowercased).
pub async fn put_invite(
    db: &Db,
    email: Option<&str>,
    domain: Option<&str>,
    role: Role,
    created_by: &str,
) -> Result<Invite, StorageError> {
    let email = email.map(str::to_ascii_lowercase);
    let domain = domain.map(str::to_ascii_lowercase);
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM invites WHERE email = $1 OR domain = $2")
        .bind(&email)
        .bind(&domain)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO invites (email, domain, role, created_by, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&email)
    .bind(&domain)
    .bind(role.as_str())
    .bind(created_by)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(
        "SELECT id, email, domain, role, created_by, created_at FROM invites WHERE email = $1 OR domain = $2",
    )
    .bind(&email)
    .bind(&domain)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    invite_from(&row)
}

pub async fn delete_invite(db: &Db, id: i64) -> Result<bool, StorageError> {
    let done = sqlx::query("DELETE FROM invites WHERE id = $1")
        .bind(id)
        .execute(&mut *db.write_conn().await?)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The role an invite gives this (verified, lowercased) email: by exact
/// email first, then by its domain.
pub async fn invited_role(db: &Db, email: &str) -> Result<Option<Role>, StorageError> {
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let row = sqlx::query(
        "SELECT role FROM invites WHERE email = $1 OR domain = $2 ORDER BY email IS NULL LIMIT 1",
    )
    .bind(email)
    .bind(domain)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        r.get::<String, _>(0)
            .parse()
            .map_err(|e: xene_core::access::UnknownRole| StorageError::Corrupt(e.to_string()))
    })
    .transpose()
}

// ---- API tokens ----

pub use xene_api::access::TokenInfo;

const TOKEN_COLUMNS: &str =
    "jti, user_id, name, role, created_at, expires_at, last_used_at, revoked_at";

fn token_from(row: &sqlx::any::AnyRow) -> Result<TokenInfo, StorageError> {
    let role: String = row.get(3);
    Ok(TokenInfo {
        id: row.get(0),
        user_id: row.get(1),
        name: row.get(2),
        role: role
            .parse()
            .map_err(|e: xene_core::access::UnknownRole| StorageError::Corrupt(e.to_string()))?,
        created_at: row.get(4),
        expires_at: row.get(5),
        last_used_at: row.get(6),
        revoked_at: row.get(7),
    })
}

/// Records a new token; the caller signs the JWT carrying `jti`. A token
/// made with another token names it as `parent`: revoking the parent
/// revokes it too.
pub async fn create_token(
    db: &Db,
    user_id: &str,
    name: &str,
    role: Role,
    expires_at: Option<i64>,
    parent: Option<&str>,
) -> Result<TokenInfo, StorageError> {
    let jti = secret("")[..32].to_string();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO api_tokens (jti, user_id, name, role, created_at, expires_at, parent_jti) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&jti)
    .bind(user_id)
    .bind(name)
    .bind(role.as_str())
    .bind(now)
    .bind(expires_at)
    .bind(parent)
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok(TokenInfo {
        id: jti,
        user_id: user_id.into(),
        name: name.into(),
        role,
        created_at: now,
        expires_at,
        last_used_at: None,
        revoked_at: None,
    })
}

pub async fn token(db: &Db, jti: &str) -> Result<Option<TokenInfo>, StorageError> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE jti = $1"
    ))
    .bind(jti)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(token_from).transpose()
}

/// Tokens, newest first: one user's, or everyone's.
pub async fn tokens(db: &Db, user_id: Option<&str>) -> Result<Vec<TokenInfo>, StorageError> {
    let rows = match user_id {
        Some(user) => sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC LIMIT 10000"
        ))
        .bind(user)
        .fetch_all(db.pool())
        .await?,
        None => sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at DESC LIMIT 10000"
        ))
        .fetch_all(db.pool())
        .await?,
    };
    rows.iter().map(token_from).collect()
}

/// Revokes a token and every token made with it (and with those...).
pub async fn revoke_token(db: &Db, jti: &str) -> Result<bool, StorageError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let done =
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE jti = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(jti)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
    // Each round revokes one generation; a token is revoked once, so the
    // rounds end when a generation is empty.
    let mut generation = vec![jti.to_string()];
    while !generation.is_empty() {
        let mut next = Vec::new();
        for parent in &generation {
            let children: Vec<String> = sqlx::query_scalar(
                "UPDATE api_tokens SET revoked_at = $1 WHERE parent_jti = $2 AND revoked_at IS NULL RETURNING jti",
            )
            .bind(now)
            .bind(parent)
            .fetch_all(&mut *tx)
            .await?;
            next.extend(children);
        }
        generation = next;
    }
    tx.commit().await?;
    Ok(done)
}

/// Records a use, at most once a minute per token so reads stay reads.
pub async fn touch_token(db: &Db, jti: &str) -> Result<(), StorageError> {
    let now = now_ms();
    sqlx::query(
        "UPDATE api_tokens SET last_used_at = $1 WHERE jti = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(now)
    .bind(jti)
    .bind(now - 60_000)
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok(())
}

// ---- one-time sign-in links ----

/// A new one-time sign-in link token for `role`, valid for `ttl_ms`. Earlier
/// unused links stop working: only the latest printed one does.
pub async fn create_sign_in_link(db: &Db, role: Role, ttl_ms: i64) -> Result<String, StorageError> {
    let token = secret("xsl_");
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM sign_in_links WHERE used_at IS NULL OR expires_at < $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO sign_in_links (token_hash, role, expires_at) VALUES ($1, $2, $3)")
        .bind(hash(&token))
        .bind(role.as_str())
        .bind(now + ttl_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(token)
}

/// Spends a sign-in link: the role it grants, once, while it is valid.
pub async fn use_sign_in_link(db: &Db, token: &str) -> Result<Option<Role>, StorageError> {
    if token.len() > 100 {
        return Ok(None);
    }
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(
        "UPDATE sign_in_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at >= $1 RETURNING role",
    )
    .bind(now)
    .bind(hash(token))
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(|r| {
        r.get::<String, _>(0)
            .parse()
            .map_err(|e: xene_core::access::UnknownRole| StorageError::Corrupt(e.to_string()))
    })
    .transpose()
}

// ---- the token signing key ----

const SIGNING_KEY: &str = "api_token_key";
/// Its sealing scope starts with a NUL, so it never meets a secret's row.
const SIGNING_KEY_SCOPE: &str = "\0api_token_key";

/// What to do once, by hand, when a database that held the signing key in
/// clear may have been read by others (said in the warnings).
const ROTATE_BY_HAND: &str = "stop every xene on this database, run \
     `DELETE FROM server_meta WHERE key = 'api_token_key'` on it (sqlite3 or psql) and start again: \
     a new key is made and every API token made before must be made again";

/// The key that signs API tokens, made once and shared by every replica.
/// It is stored sealed under the master key of secrets: a copy of the
/// database alone signs nothing. A key an older Xene stored in clear is
/// sealed where it is, so every token it signed keeps working (see
/// `replace_plain_signing_key` for a database known to have been open).
pub async fn signing_key(db: &Db, vault: &Vault) -> Result<Vec<u8>, SecretsError> {
    let mut tx = db.begin_write().await?;
    let fresh = secret("");
    let sealed = seal_stored(&mut tx, db.backend(), vault, SIGNING_KEY_SCOPE, "", &fresh).await?;
    sqlx::query(
        "INSERT INTO server_meta (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
    )
    .bind(SIGNING_KEY)
    .bind(&sealed)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let mut value: String = sqlx::query_scalar("SELECT value FROM server_meta WHERE key = $1")
        .bind(SIGNING_KEY)
        .fetch_one(&mut *tx)
        .await?;
    if !value.contains(':') {
        let plain = value.trim().to_string();
        let sealed =
            seal_stored(&mut tx, db.backend(), vault, SIGNING_KEY_SCOPE, "", &plain).await?;
        // Another replica may have sealed it meanwhile: the same key either way.
        overwrite_plain_signing_key(&mut tx, db.backend(), &value, &sealed).await?;
        tracing::warn!(
            "the API token signing key was kept in the database in clear (as Xene did before): \
             sealed it under the master key of secrets. If this database (or a copy or backup of it) \
             was ever readable by others, they can still sign tokens with it: {ROTATE_BY_HAND}"
        );
        value = sealed;
    }
    tx.commit().await?;
    let key = open_stored(vault, SIGNING_KEY_SCOPE, "", &value)?;
    hex::decode(key.trim()).map_err(|e| StorageError::Corrupt(format!("api token key: {e}")).into())
}

/// Replaces a signing key stored in clear with a fresh sealed one, for a
/// database others could read (`data_dir::Prepared::database_was_open`):
/// whoever read it can sign any token with the old key, so it must not be
/// kept. Every API token it signed stops verifying, and is marked revoked
/// so the token lists say so; the local admin token is written again at
/// start. Returns whether a key was replaced.
pub async fn replace_plain_signing_key(db: &Db, vault: &Vault) -> Result<bool, SecretsError> {
    let mut tx = db.begin_write().await?;
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM server_meta WHERE key = $1")
        .bind(SIGNING_KEY)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(value) = value.filter(|v| !v.contains(':')) else {
        return Ok(false);
    };
    let sealed = seal_stored(
        &mut tx,
        db.backend(),
        vault,
        SIGNING_KEY_SCOPE,
        "",
        &secret(""),
    )
    .await?;
    overwrite_plain_signing_key(&mut tx, db.backend(), &value, &sealed).await?;
    let revoked = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL")
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    tracing::warn!(
        revoked,
        "the database was readable by other users and held the API token signing key in clear: \
         made a new key. Every API token made before no longer works (they are marked revoked): \
         make them again (`xenectl login`, or `xenectl tokens create`); the local admin token is written again"
    );
    Ok(true)
}

/// Puts `sealed` in place of the signing key stored in clear as `plain`,
/// unless the stored value is no longer `plain`. On SQLite the clear text
/// is overwritten, not left in the page's free space.
async fn overwrite_plain_signing_key(
    tx: &mut super::WriteTx,
    backend: super::Backend,
    plain: &str,
    sealed: &str,
) -> Result<(), sqlx::Error> {
    let sqlite = backend == super::Backend::Sqlite;
    if sqlite {
        sqlx::query("PRAGMA secure_delete = ON")
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("UPDATE server_meta SET value = $1, updated_at = $2 WHERE key = $3 AND value = $4")
        .bind(sealed)
        .bind(now_ms())
        .bind(SIGNING_KEY)
        .bind(plain)
        .execute(&mut **tx)
        .await?;
    if sqlite {
        sqlx::query("PRAGMA secure_delete = OFF")
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Seals the signing key again under `primary`, inside a key rotation's
/// transaction (the old master key may be dropped after it).
pub(crate) async fn reseal_signing_key(
    tx: &mut super::WriteTx,
    vault: &Vault,
    primary: &str,
) -> Result<(), SecretsError> {
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM server_meta WHERE key = $1")
        .bind(SIGNING_KEY)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(value) = value.filter(|v| v.contains(':')) else {
        return Ok(());
    };
    if value.split_once(':').is_some_and(|(id, _)| id == primary) {
        return Ok(());
    }
    let key = open_stored(vault, SIGNING_KEY_SCOPE, "", &value)?;
    let (id, sealed) = vault.seal(SIGNING_KEY_SCOPE, "", key.as_bytes());
    sqlx::query("UPDATE server_meta SET value = $1, updated_at = $2 WHERE key = $3")
        .bind(format!("{id}:{sealed}"))
        .bind(now_ms())
        .bind(SIGNING_KEY)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// ---- audit log ----

pub use xene_api::access::AuditEntry;

/// Longest text kept per audit field: a hostile value cannot bloat the log.
const AUDIT_FIELD_MAX: usize = 512;

fn clip(s: &str) -> String {
    s.chars().take(AUDIT_FIELD_MAX).collect()
}

pub async fn audit(
    db: &Db,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
    remote: &str,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, detail, remote) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now_ms())
    .bind(clip(actor))
    .bind(clip(action))
    .bind(clip(target))
    .bind(clip(detail))
    .bind(clip(remote))
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok(())
}

/// Which entries to read: newest first, before the id `before` when given,
/// only `action`'s (`run.start`, or every action of a kind of
/// [`AUDIT_KINDS`] for `run`) and only `actor`'s when given.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub before: Option<i64>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub limit: i64,
}

/// Every action the log records, by kind (the part before the dot). A kind
/// is read as its actions, each an equality range of `audit_by_action`: a
/// range of names (`run.` to `run/`) would read every entry of the kind
/// whatever the limit, and depends on how the database's collation orders
/// punctuation.
pub const AUDIT_KINDS: &[(&str, &[&str])] = &[
    (
        "agent",
        &["agent.drain", "agent.join", "agent.revoke", "agent.undrain"],
    ),
    ("cache", &["cache.delete"]),
    ("hook", &["hook.create", "hook.rotate"]),
    ("invite", &["invite.delete", "invite.put"]),
    ("join_token", &["join_token.create"]),
    ("run", &["run.cancel", "run.pin", "run.start", "run.unpin"]),
    (
        "secret",
        &[
            "secret.create",
            "secret.delete",
            "secret.protect",
            "secret.replace",
            "secret.rotate_key",
        ],
    ),
    ("sign_in", &["sign_in.ok", "sign_in.refused"]),
    ("token", &["token.create", "token.revoke"]),
    ("user", &["user.update"]),
    (
        "workflow",
        &[
            "workflow.apply",
            "workflow.approve",
            "workflow.delete",
            "workflow.revoke_approval",
        ],
    ),
];

/// The actions whose target is a user's id, so the entry names that person:
/// a user changed, a user signed in, the local admin's token made for its
/// user (other tokens' targets are token ids, which never look like a
/// user's). Any other target is a name someone chose, which may equal a
/// user's id by chance or on purpose.
const USER_TARGETS: &str = "'user.update', 'sign_in.ok', 'token.create'";

/// Entries as `filter` picks them, each with the person its actor names.
/// Every filter reads an index: the id, `audit_by_action`, `audit_by_actor`.
pub async fn audit_entries(db: &Db, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StorageError> {
    // A kind is its actions; anything else is one action's name.
    let actions: Vec<&str> = match filter.action.as_deref() {
        None => Vec::new(),
        Some(action) => match AUDIT_KINDS.iter().find(|(kind, _)| *kind == action) {
            Some((_, actions)) => actions.to_vec(),
            None => vec![action],
        },
    };
    // $1 is `before`, $2 the limit; then the actor, then each action.
    let mut binds: Vec<&str> = Vec::new();
    let mut base = String::from(
        "SELECT id, at, actor, action, target, detail, remote FROM audit_log WHERE id < $1",
    );
    if let Some(actor) = &filter.actor {
        binds.push(actor);
        base.push_str(&format!(" AND actor = ${}", binds.len() + 2));
    }
    // Only the filters given go in the statement, so each plan can use its
    // index; each action is its own range, newest first, cut by the limit.
    let entries = if actions.is_empty() {
        format!("{base} ORDER BY id DESC LIMIT $2")
    } else {
        let parts: Vec<String> = actions
            .iter()
            .enumerate()
            .map(|(i, action)| {
                binds.push(action);
                format!(
                    "SELECT * FROM ({base} AND action = ${} ORDER BY id DESC LIMIT $2) AS a{i}",
                    binds.len() + 2
                )
            })
            .collect();
        parts.join(" UNION ALL ")
    };
    let sql = format!(
        "SELECT a.id, a.at, a.actor, a.action, a.target, a.detail, a.remote, u.name, u.email, \
         t.name, t.email FROM ({entries}) AS a LEFT JOIN users u ON u.id = a.actor \
         LEFT JOIN users t ON t.id = a.target AND a.action IN ({USER_TARGETS}) \
         ORDER BY a.id DESC LIMIT $2"
    );
    let mut query = sqlx::query(&sql)
        .bind(filter.before.unwrap_or(i64::MAX))
        .bind(filter.limit);
    for value in binds {
        query = query.bind(value.to_string());
    }
    let rows = query.fetch_all(db.pool()).await?;
    Ok(rows
        .iter()
        .map(|r| AuditEntry {
            id: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            target: r.get(4),
            detail: r.get(5),
            remote: r.get(6),
            who: super::person(r.get(7), r.get(8)),
            target_person: super::person(r.get(9), r.get(10)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::AUDIT_KINDS;

    #[test]
    fn each_kind_lists_only_its_own_actions() {
        for (kind, actions) in AUDIT_KINDS {
            assert!(!actions.is_empty(), "{kind}");
            for action in *actions {
                assert_eq!(action.split_once('.').map(|(k, _)| k), Some(*kind));
            }
        }
    }
}
