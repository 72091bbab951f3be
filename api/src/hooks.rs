//! Webhooks: a pipeline's hook (never its secret but once), its
//! deliveries, and what a delivery is answered.

use serde::{Deserialize, Serialize};
use xene_core::params::ParamFault;

/// A hook as the API shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HookInfo {
    pub id: String,
    pub workflow: String,
    pub pipeline: String,
    /// The path deliveries are posted to.
    pub path: String,
    /// The whole URL deliveries are posted to, when the server knows how
    /// senders reach it (its public URL, unless that is a loopback or
    /// unspecified address); else the path is joined to the address the
    /// caller reached the server by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub created_at: i64,
    /// When the secret was last made (created or rotated).
    pub rotated_at: i64,
}

/// A hook and its secret, shown this once.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewSecret {
    #[serde(flatten)]
    pub hook: HookInfo,
    /// Signs deliveries: GitHub takes it whole as its secret; Standard
    /// Webhooks senders take it as it is (`whsec_...`).
    pub secret: String,
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecret")
            .field("hook", &self.hook)
            .field("secret", &crate::Redacted)
            .finish()
    }
}

/// One delivery as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub id: i64,
    pub received_at: i64,
    /// `github`, `standard` or `none`.
    pub scheme: String,
    /// The HTTP status it was answered with.
    pub http_status: i64,
    pub accepted: bool,
    /// Why it was refused, or what it started.
    pub reason: String,
    pub run_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// What a delivery was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAnswer {
    pub accepted: bool,
    pub reason: String,
    /// The run it started.
    pub run_id: Option<i64>,
    /// A refused delivery's reason again, as every error answer has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Invalid params: every fault at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Vec<ParamFault>>,
}
