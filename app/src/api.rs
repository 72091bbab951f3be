//! The UI's one way to the server's data: the REST API under `/api/v1`.
//!
//! Pages call [`get`] and [`send`]; both go through one server function,
//! which calls the API in process with the caller's own headers (see
//! `ssr::ApiBridge`), so the server-rendered page and the hydrated one read
//! the same JSON, and nothing the UI does skips the API's guard and rules.
//! Live feeds are the API's WebSockets, opened by the browser itself.
//!
//! A run, its tasks and steps are `core`'s types, the very ones the server
//! writes (and a run's feed carries). The other bodies below mirror the
//! API's JSON leniently: unknown fields are ignored and new ones default,
//! so the API can grow without breaking pages.

use std::collections::BTreeMap;

use leptos::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Calls the REST API with the caller's session: `path` must be an
/// `/api/v1/` path. Answers the body of a 2xx answer, or the API's error.
#[server]
pub async fn api_call(
    method: String,
    path: String,
    body: Option<String>,
) -> Result<String, ServerFnError> {
    let bridge = use_context::<crate::ssr::ApiBridge>()
        .ok_or_else(|| ServerFnError::new("the server gave the UI no API bridge"))?;
    let parts = use_context::<http::request::Parts>()
        .ok_or_else(|| ServerFnError::new("no request to act for"))?;
    if !path.starts_with("/api/v1/") || path.contains("..") {
        return Err(ServerFnError::new("not an API path"));
    }
    let method: http::Method = match method.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => method.parse().expect("a known method"),
        _ => return Err(ServerFnError::new("method not allowed")),
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(body.unwrap_or_default())
        .map_err(|e| ServerFnError::new(format!("bad request: {e}")))?;
    // The caller's headers carry the session cookie and the browser's
    // origin headers: the API checks both as if the browser had called it.
    let headers = request.headers_mut();
    for (name, value) in parts.headers.iter() {
        if name != http::header::CONTENT_LENGTH && name != http::header::CONTENT_TYPE {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    *request.extensions_mut() = parts.extensions.clone();
    let reply = bridge.call(request).await.map_err(ServerFnError::new)?;
    if (200..300).contains(&reply.status) {
        return Ok(reply.body);
    }
    let message = serde_json::from_str::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| format!("the server answered {}", reply.status));
    Err(ServerFnError::new(message))
}

/// A failure as people read it.
pub fn error_text(e: ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(m) => m,
        other => other.to_string(),
    }
}

/// GETs an API path as `T`.
pub async fn get<T: DeserializeOwned>(path: String) -> Result<T, String> {
    let text = api_call("GET".into(), path, None)
        .await
        .map_err(error_text)?;
    serde_json::from_str(&text).map_err(|e| format!("unexpected answer from the server: {e}"))
}

/// Sends a request that changes something; answers the body.
pub async fn send(method: &str, path: String, body: Option<String>) -> Result<String, String> {
    api_call(method.into(), path, body)
        .await
        .map_err(error_text)
}

/// Percent-encodes a path segment or query value.
pub fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: i64,
    pub last_sign_in: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Me {
    pub user: User,
    pub role: String,
}

impl Me {
    pub fn can_edit(&self) -> bool {
        matches!(self.role.as_str(), "editor" | "admin")
    }

    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserList {
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkflowSummary {
    pub name: String,
    pub description: String,
    pub version: i64,
    pub pipelines: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineState {
    pub name: String,
    pub trigger: String,
    pub scheduler_status: String,
    pub scheduler_reason: Option<String>,
    /// A cron pipeline's next fire times (UTC ms), the soonest first.
    pub next_fires: Vec<i64>,
}

/// A task of the spec, as much as the pages draw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskSpec {
    pub image: Option<String>,
    pub depends_on: Vec<String>,
    pub steps: Vec<serde_json::Value>,
}

impl TaskSpec {
    /// `2 steps · alpine:3`, under the task's name in a drawing.
    pub fn summary(&self) -> String {
        let steps = match self.steps.len() {
            1 => "1 step".to_string(),
            n => format!("{n} steps"),
        };
        let runtime = self.image.as_deref().unwrap_or("shell");
        let runtime = runtime.rsplit('/').next().unwrap_or(runtime);
        format!("{steps} · {runtime}")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineSpec {
    pub trigger: serde_json::Value,
    pub params: serde_json::Value,
    pub tasks: BTreeMap<String, TaskSpec>,
}

/// A param of a pipeline, whichever shape the spec gives it: a plain
/// default (`name: value`) or a typed param (`name: {type, default, ...}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: String,
    pub default: String,
    pub description: String,
    pub choices: Vec<String>,
}

impl PipelineSpec {
    pub fn params(&self) -> Vec<Param> {
        let Some(map) = self.params.as_object() else {
            return Vec::new();
        };
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        map.iter()
            .map(|(name, value)| match value {
                serde_json::Value::Object(o) => Param {
                    name: name.clone(),
                    kind: o.get("type").map(text).unwrap_or_else(|| "string".into()),
                    default: o.get("default").map(text).unwrap_or_default(),
                    description: o.get("description").map(text).unwrap_or_default(),
                    choices: o
                        .get("options")
                        .or_else(|| o.get("choices"))
                        .or_else(|| o.get("enum"))
                        .and_then(|c| c.as_array())
                        .map(|a| a.iter().map(text).collect())
                        .unwrap_or_default(),
                },
                other => Param {
                    name: name.clone(),
                    kind: "string".into(),
                    default: text(other),
                    description: String::new(),
                    choices: Vec::new(),
                },
            })
            .collect()
    }

    /// The trigger in words: `manual`, `webhook`, `cron 0 3 * * * (UTC)`.
    pub fn trigger_text(&self) -> String {
        let kind = self
            .trigger
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("manual");
        match (kind, self.trigger.get("schedule").and_then(|s| s.as_str())) {
            ("cron", Some(schedule)) => {
                let zone = self
                    .trigger
                    .get("timezone")
                    .and_then(|z| z.as_str())
                    .unwrap_or("UTC");
                format!("cron {schedule} ({zone})")
            }
            (kind, _) => kind.to_string(),
        }
    }

    pub fn layout(&self) -> xene_core::layout::Layout {
        xene_core::layout::layout(
            self.tasks
                .iter()
                .map(|(name, task)| (name.as_str(), task.depends_on.as_slice())),
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkflowSpec {
    pub name: String,
    pub description: String,
    pub pipelines: BTreeMap<String, PipelineSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkflowDetail {
    pub name: String,
    pub version: i64,
    pub spec: WorkflowSpec,
    pub source: String,
    pub created_at: i64,
    pub pipelines: Vec<PipelineState>,
    /// Protected secrets this version uses; its runs need an admin's approval.
    pub protected_secrets: Vec<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionSummary {
    pub version: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionList {
    pub versions: Vec<VersionSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkflowVersion {
    pub name: String,
    pub version: i64,
    pub source: String,
    pub created_at: i64,
}

pub use xene_api::run::{Run, RunDetail, StepRun, TaskRun};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunList {
    pub runs: Vec<Run>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub builtin: bool,
    pub labels: BTreeMap<String, String>,
    pub runtimes: Vec<String>,
    pub capacity: i64,
    pub running: i64,
    pub version: String,
    pub state: String,
    pub last_seen_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JoinToken {
    pub token: String,
    pub expires_at: i64,
    /// Absent when the server is plain HTTP beyond loopback (see `install_note`).
    pub install_command: Option<String>,
    pub install_note: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenInfo {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewToken {
    pub token: String,
    pub info: TokenInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub remote: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_before: Option<i64>,
}

/// The example workflows shipped in `examples/`, built into the server so
/// that a first start can load them in one click.
#[server]
pub async fn load_examples() -> Result<Vec<String>, ServerFnError> {
    const EXAMPLES: &[&str] = &[
        include_str!("../../examples/build-and-test.yaml"),
        include_str!("../../examples/fan-out-fan-in.yaml"),
        include_str!("../../examples/outputs-and-conditions.yaml"),
        include_str!("../../examples/fails-on-purpose.yaml"),
    ];
    let mut loaded = Vec::new();
    for text in EXAMPLES {
        let reply = api_call(
            "POST".into(),
            "/api/v1/workflows".into(),
            Some(text.to_string()),
        )
        .await?;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&reply)
            && let Some(name) = v.get("name").and_then(|n| n.as_str())
        {
            loaded.push(name.to_string());
        }
    }
    Ok(loaded)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretInfo {
    pub name: String,
    pub workflow: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretList {
    pub secrets: Vec<SecretInfo>,
}

/// A webhook pipeline's hook (never its secret).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hook {
    pub id: String,
    pub path: String,
    pub created_at: i64,
    pub rotated_at: i64,
    /// Only in the answer that made or rotated it.
    pub secret: Option<String>,
}

/// One delivery to a hook, accepted or refused, with why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Delivery {
    pub id: i64,
    pub received_at: i64,
    pub scheme: String,
    pub http_status: i64,
    pub accepted: bool,
    pub reason: String,
    pub run_id: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}
