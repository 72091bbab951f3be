//! Join tokens and agent credentials: random secrets handed out once, kept
//! only as SHA-256 hashes, so a copy of the database lets nobody in.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Db, StorageError, now_ms};

const JOIN_TOKEN_PREFIX: &str = "xjt_";
const CREDENTIAL_PREFIX: &str = "xac_";

/// A fresh secret: a prefix naming its kind and 32 random bytes in hex.
pub fn secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS provides randomness");
    let mut out = String::with_capacity(prefix.len() + 64);
    out.push_str(prefix);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub fn hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A secret of the right shape; anything else is rejected before a lookup.
fn well_formed(secret: &str, prefix: &str) -> bool {
    secret
        .strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown token")]
    Unknown,
    #[error("the join token has expired")]
    Expired,
    #[error("the join token was already used")]
    Used,
    #[error("the agent's credential was revoked")]
    Revoked,
}

#[derive(Debug)]
pub enum AuthFailure {
    Denied(AuthError),
    Storage(StorageError),
}

impl From<sqlx::Error> for AuthFailure {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

impl From<StorageError> for AuthFailure {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

/// What a join token fixes for the agent joining with it.
#[derive(Debug, Clone, Default)]
pub struct Fixed {
    /// Its labels, instead of those it declares.
    pub labels: Option<BTreeMap<String, String>>,
    /// Most task attempts at once, whatever it declares.
    pub capacity: Option<u32>,
}

/// Creates a join token valid for `ttl_ms`; returns it (shown once) and its expiry.
pub async fn create_join_token(
    db: &Db,
    fixed: &Fixed,
    ttl_ms: i64,
) -> Result<(String, i64), StorageError> {
    let token = secret(JOIN_TOKEN_PREFIX);
    let now = now_ms();
    let expires_at = now + ttl_ms;
    sqlx::query(
        "INSERT INTO join_tokens (token_hash, fixed_labels, capacity, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash(&token))
    .bind(
        fixed
            .labels
            .as_ref()
            .map(|l| serde_json::to_string(l).expect("maps serialize")),
    )
    .bind(fixed.capacity.map(i64::from))
    .bind(expires_at)
    .bind(now)
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok((token, expires_at))
}

/// An agent's identity after joining.
#[derive(Debug, Clone)]
pub struct Joined {
    pub agent_id: String,
    pub credential: String,
}

/// Exchanges a join token, once, for a new agent and its credential.
pub async fn join(db: &Db, token: &str, name: &str) -> Result<Joined, AuthFailure> {
    if !well_formed(token, JOIN_TOKEN_PREFIX) {
        return Err(AuthFailure::Denied(AuthError::Malformed));
    }
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(
        "SELECT fixed_labels, capacity, expires_at, used_at FROM join_tokens WHERE token_hash = $1",
    )
    .bind(hash(token))
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AuthFailure::Denied(AuthError::Unknown))?;
    let fixed_labels: Option<String> = row.get(0);
    let capacity: Option<i64> = row.get(1);
    let expires_at: i64 = row.get(2);
    let used_at: Option<i64> = row.get(3);
    if used_at.is_some() {
        return Err(AuthFailure::Denied(AuthError::Used));
    }
    if expires_at < now {
        return Err(AuthFailure::Denied(AuthError::Expired));
    }
    let credential = secret(CREDENTIAL_PREFIX);
    let agent_id = format!("agent-{}", &hash(&credential)[..12]);
    // Marked used in the same transaction, guarded, so two agents racing
    // with one token cannot both join.
    let marked = sqlx::query("UPDATE join_tokens SET used_at = $1, used_by = $2 WHERE token_hash = $3 AND used_at IS NULL")
        .bind(now)
        .bind(&agent_id)
        .bind(hash(token))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if marked != 1 {
        return Err(AuthFailure::Denied(AuthError::Used));
    }
    sqlx::query(
        "INSERT INTO agents (id, name, builtin, labels, runtimes, capacity, version, state, last_seen_at, created_at, \
         credential_hash, revoked, fixed_labels, max_capacity) \
         VALUES ($1, $2, 0, $3, '[]', 1, '', 'offline', $4, $4, $5, 0, $6, $7)",
    )
    .bind(&agent_id)
    .bind(name)
    .bind(fixed_labels.as_deref().unwrap_or("{}"))
    .bind(now)
    .bind(hash(&credential))
    .bind(&fixed_labels)
    .bind(capacity)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Joined {
        agent_id,
        credential,
    })
}

/// An authenticated agent: its id and what its join token fixed.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub id: String,
    pub name: String,
    pub fixed: Fixed,
}

pub async fn authenticate(db: &Db, credential: &str) -> Result<AgentIdentity, AuthFailure> {
    if !well_formed(credential, CREDENTIAL_PREFIX) {
        return Err(AuthFailure::Denied(AuthError::Malformed));
    }
    let row =
        sqlx::query("SELECT id, name, fixed_labels, revoked, max_capacity FROM agents WHERE credential_hash = $1")
            .bind(hash(credential))
            .fetch_optional(db.pool())
            .await?
            .ok_or(AuthFailure::Denied(AuthError::Unknown))?;
    let revoked: i64 = row.get(3);
    if revoked != 0 {
        return Err(AuthFailure::Denied(AuthError::Revoked));
    }
    let labels: Option<String> = row.get(2);
    let capacity: Option<i64> = row.get(4);
    let labels = match labels {
        Some(l) => {
            Some(serde_json::from_str(&l).map_err(|e| StorageError::Corrupt(e.to_string()))?)
        }
        None => None,
    };
    Ok(AgentIdentity {
        id: row.get(0),
        name: row.get(1),
        fixed: Fixed {
            labels,
            // Out of range would be a corrupt row: the API refuses it.
            capacity: capacity.map(|c| u32::try_from(c).unwrap_or(1)),
        },
    })
}

/// Revokes an agent's credential. False when there is no such (remote) agent.
pub async fn revoke(db: &Db, agent_id: &str) -> Result<bool, StorageError> {
    Ok(sqlx::query(
        "UPDATE agents SET revoked = 1, state = 'revoked' WHERE id = $1 AND builtin = 0",
    )
    .bind(agent_id)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected()
        == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_hex() {
        let a = secret(JOIN_TOKEN_PREFIX);
        let b = secret(JOIN_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(well_formed(&a, JOIN_TOKEN_PREFIX));
        assert!(!well_formed(&a, CREDENTIAL_PREFIX));
        assert!(!well_formed("xjt_zz", JOIN_TOKEN_PREFIX));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
