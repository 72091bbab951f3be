//! The secrets a run gets, opened where they leave for its agent: protected
//! ones are checked against their approvals again here, whatever was
//! checked when the run started.

use std::collections::{BTreeMap, BTreeSet};

use xene_core::protocol::SecretValue;

use super::runs::Run;
use super::secrets::chosen;
use super::{Db, StorageError, approvals};
use crate::vault::Vault;

/// A run's secrets, each from the workflow's own scope when it has one,
/// else the global one.
#[derive(Debug, Default)]
pub struct Resolved {
    pub values: BTreeMap<String, SecretValue>,
    /// Names no scope provides.
    pub missing: Vec<String>,
    /// Names whose value does not decrypt (tampered, or moved to another row).
    pub broken: Vec<String>,
    /// Why protected secrets are withheld from this run (its version is not
    /// approved, or its workflow is not allowed); then no value is opened.
    pub refused: Option<String>,
    /// The protected ones among the names: where they may go is narrower
    /// (see `controllers::dispatch`).
    pub protected: Vec<String>,
}

impl Resolved {
    /// Why the run cannot have its secrets, if it cannot.
    pub fn failure(&self) -> Option<String> {
        if let Some(refused) = &self.refused {
            return Some(refused.clone());
        }
        if !self.missing.is_empty() {
            return Some(format!(
                "missing secrets: {} (create them, or remove them from the tasks' `secrets`)",
                self.missing.join(", ")
            ));
        }
        if !self.broken.is_empty() {
            return Some(format!(
                "secrets that do not decrypt with the configured master keys: {}",
                self.broken.join(", ")
            ));
        }
        None
    }
}

/// Decrypts the secrets a run needs. Protected ones are checked again here,
/// where values leave for an agent, whatever was checked at start.
pub async fn resolve(
    db: &Db,
    vault: &Vault,
    run: &Run,
    names: &BTreeSet<String>,
) -> Result<Resolved, StorageError> {
    let chosen = chosen(db, &run.workflow, names).await?;
    let mut resolved = Resolved {
        refused: approvals::refusal(db, &run.workflow, run.version, &run.pipeline, &chosen).await?,
        ..Resolved::default()
    };
    if resolved.refused.is_some() {
        return Ok(resolved);
    }
    resolved.protected = chosen
        .values()
        .filter(|c| c.protected)
        .map(|c| c.name.clone())
        .collect();
    for name in names {
        let Some(row) = chosen.get(name) else {
            resolved.missing.push(name.clone());
            continue;
        };
        match vault
            .open(&row.scope, name, &row.key_id, &row.sealed)
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
        {
            Some(value) => {
                resolved
                    .values
                    .insert(name.clone(), SecretValue::new(value));
            }
            None => {
                tracing::error!(secret = %name, scope = %row.scope, "a secret does not decrypt");
                resolved.broken.push(name.clone());
            }
        }
    }
    Ok(resolved)
}
