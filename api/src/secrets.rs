//! Secrets: their names, scopes and protection (never a value), setting
//! one, and the master key's rotation.

use serde::{Deserialize, Serialize};

/// A secret as the API lists it: never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretInfo {
    pub name: String,
    /// The workflow it belongs to; absent for a global secret.
    pub workflow: Option<String>,
    pub created_by: String,
    /// UTC milliseconds.
    pub created_at: i64,
    pub updated_by: String,
    /// The person `updated_by` names, when it is a user Xene knows.
    #[serde(default)]
    pub updater: Option<crate::access::Person>,
    /// UTC milliseconds.
    pub updated_at: i64,
    /// Only workflow versions an admin approved may use it, and only in
    /// the workflows (or pipelines) `allow` names.
    pub protected: bool,
    /// `WORKFLOW` or `WORKFLOW/PIPELINE` entries that may use a protected
    /// secret (a workflow's own protected secret: that workflow when empty).
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretList {
    pub secrets: Vec<SecretInfo>,
}

#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretValueRequest {
    /// The value: 4 characters to 64 KiB, no NUL. It is stored encrypted
    /// and never shown again. Needed to create; without it, a change of
    /// protection keeps the stored value.
    pub value: Option<String>,
    /// Protected: only workflow versions an admin approved may use it.
    /// Absent: unchanged (a new secret is not protected).
    pub protected: Option<bool>,
    /// Who may use a protected secret: `WORKFLOW` or `WORKFLOW/PIPELINE`
    /// entries (a workflow's own secret: that workflow when empty).
    /// Absent: unchanged.
    pub allow: Option<Vec<String>>,
}

impl std::fmt::Debug for SecretValueRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValueRequest")
            .field("value", &self.value.as_ref().map(|_| crate::Redacted))
            .field("protected", &self.protected)
            .field("allow", &self.allow)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rotated {
    /// How many values were encrypted again.
    pub reencrypted: usize,
    /// The fingerprint of the key that now encrypts.
    pub key_id: String,
}
