//! Rotating the master key: everything sealed (secrets, webhooks' signing
//! secrets, the API token signing key) is sealed again under the vault's
//! first key, in one transaction.

use sqlx::Row;

use super::secrets::{
    CHECK_SCOPE, CHECK_TEXT, KEY_CHECK, SecretsError, current_key, hook_scope, open_stored,
};
use super::{Db, access, now_ms};
use crate::vault::Vault;

/// Re-encrypts every secret under the vault's first key, and makes it the
/// key that seals from now on, in one transaction: a replica sees all
/// values under the old key or all under the new one. Returns how many
/// values were re-encrypted.
pub async fn rotate(db: &Db, vault: &Vault) -> Result<usize, SecretsError> {
    vault.reload()?;
    let primary = vault.primary_id();
    let mut tx = db.begin_write().await?;
    current_key(&mut tx, db.backend()).await?;
    let rows = sqlx::query("SELECT scope, name, key_id, ciphertext FROM secrets")
        .fetch_all(&mut *tx)
        .await?;
    let mut changed = 0;
    for row in &rows {
        let (scope, name, key_id, sealed): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if key_id == primary {
            continue;
        }
        let value = vault.open(&scope, &name, &key_id, &sealed)?;
        let (new_id, new_sealed) = vault.seal(&scope, &name, &value);
        sqlx::query(
            "UPDATE secrets SET key_id = $1, ciphertext = $2 WHERE scope = $3 AND name = $4",
        )
        .bind(&new_id)
        .bind(&new_sealed)
        .bind(&scope)
        .bind(&name)
        .execute(&mut *tx)
        .await?;
        changed += 1;
    }
    // Webhooks' signing secrets are sealed the same way.
    let hooks = sqlx::query("SELECT workflow, pipeline, secret FROM webhooks")
        .fetch_all(&mut *tx)
        .await?;
    for row in &hooks {
        let (workflow, pipeline, stored): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        if stored.split_once(':').is_some_and(|(id, _)| id == primary) {
            continue;
        }
        let scope = hook_scope(&workflow);
        let value = open_stored(vault, &scope, &pipeline, &stored)?;
        let (new_id, new_sealed) = vault.seal(&scope, &pipeline, value.as_bytes());
        sqlx::query("UPDATE webhooks SET secret = $1 WHERE workflow = $2 AND pipeline = $3")
            .bind(format!("{new_id}:{new_sealed}"))
            .bind(&workflow)
            .bind(&pipeline)
            .execute(&mut *tx)
            .await?;
        changed += 1;
    }
    // So is the API token signing key (not counted: it is no one's secret).
    access::reseal_signing_key(&mut tx, vault, &primary).await?;
    let (id, sealed) = vault.seal(CHECK_SCOPE, "", CHECK_TEXT);
    sqlx::query(
        "INSERT INTO server_meta (key, value, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(KEY_CHECK)
    .bind(format!("{id}:{sealed}"))
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(changed)
}
