//! The UI's one way to the server's data: the REST API under `/api/v1`.
//!
//! Pages call [`get`] and [`send`]; both go through one server function,
//! which calls the API in process with the caller's own headers (see
//! `ssr::ApiBridge`), so the server-rendered page and the hydrated one read
//! the same JSON, and nothing the UI does skips the API's guard and rules.
//! Live feeds are the API's WebSockets, opened by the browser itself.
//!
//! Bodies are `xene_api`'s types, the very ones the server answers, and
//! paths come from `xene_api::paths`: the UI has no copy of either.

use std::collections::BTreeMap;

use leptos::prelude::*;
use serde::de::DeserializeOwned;
use xene_api::paths;
use xene_api::run::{Run, StartRun};

/// Calls the REST API with the caller's session: `path` must be an
/// `/api/v1/` path. Answers the API's status and body, whatever the
/// status: a 4xx is the API's answer, not a failure of this call, so it
/// never reaches the browser as a 500 (nor the server's log as an error).
/// At a fixed URL, `/rpc/api_call`, for tests and people reading logs.
#[server(endpoint = "api_call")]
pub async fn api_call(
    method: String,
    path: String,
    body: Option<String>,
) -> Result<(u16, String), ServerFnError> {
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
    Ok((reply.status, reply.body))
}

/// A failure as people read it.
pub fn error_text(e: ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(m) => m,
        other => other.to_string(),
    }
}

/// The API's answer: its body when it is a 2xx, else its error's message.
fn accepted((status, body): (u16, String)) -> Result<String, String> {
    if (200..300).contains(&status) {
        return Ok(body);
    }
    Err(serde_json::from_str::<xene_api::error::ErrorBody>(&body)
        .map(|body| body.error)
        .unwrap_or_else(|_| format!("the server answered {status}")))
}

async fn call(method: &str, path: String, body: Option<String>) -> Result<(u16, String), String> {
    api_call(method.into(), path, body)
        .await
        .map_err(error_text)
}

/// GETs an API path as `T`.
pub async fn get<T: DeserializeOwned>(path: String) -> Result<T, String> {
    let text = accepted(call("GET", path, None).await?)?;
    serde_json::from_str(&text).map_err(|e| format!("unexpected answer from the server: {e}"))
}

/// GETs what a page is about (a run, a workflow): `None` when the API
/// knows no such thing (404), and then the page itself answers HTTP 404
/// (see [`answer_not_found`]).
pub async fn get_shown<T: DeserializeOwned>(path: String) -> Result<Option<T>, String> {
    let not_found = answer_not_found_later();
    let (status, body) = call("GET", path, None).await?;
    if status == 404 {
        not_found();
        return Ok(None);
    }
    let text = accepted((status, body))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("unexpected answer from the server: {e}"))
}

/// Makes the page being rendered on the server answer HTTP 404, for a page
/// whose object does not exist (a run number that is not a number, say).
/// Nothing in the browser.
pub fn answer_not_found() {
    answer_not_found_later()()
}

/// [`answer_not_found`], with the response taken now, for use after an
/// `.await` (where the page's context may be out of reach).
fn answer_not_found_later() -> impl FnOnce() {
    #[cfg(feature = "ssr")]
    {
        let response = use_context::<leptos_axum::ResponseOptions>();
        move || {
            if let Some(response) = response {
                response.set_status(http::StatusCode::NOT_FOUND);
            }
        }
    }
    #[cfg(not(feature = "ssr"))]
    {
        || {}
    }
}

/// Sends a request that changes something; answers the body.
pub async fn send(method: &str, path: String, body: Option<String>) -> Result<String, String> {
    accepted(call(method, path, body).await?)
}

/// Sends a request that changes something; answers the body as `T`.
pub async fn send_as<T: DeserializeOwned>(
    method: &str,
    path: String,
    body: Option<String>,
) -> Result<T, String> {
    let text = send(method, path, body).await?;
    serde_json::from_str(&text).map_err(|e| format!("unexpected answer from the server: {e}"))
}

/// `body` as the JSON text a request carries.
pub fn json(body: &impl serde::Serialize) -> String {
    serde_json::to_string(body).expect("request bodies serialize")
}

/// Starts a run of a pipeline with these param values (the rest keep
/// their defaults), on the workflow's current version.
pub async fn start_run(
    workflow: &str,
    pipeline: &str,
    params: BTreeMap<String, String>,
) -> Result<Run, String> {
    start_run_at(workflow, pipeline, params, None).await
}

/// Why the server refused to start a run: its error, and for invalid
/// params every fault it found, one per param, to show at their fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub error: String,
    pub faults: Vec<xene_core::params::ParamFault>,
}

/// Starts a run as [`start_run`] does, keeping the server's faults: the
/// form checks the values itself, yet the server may know better (the
/// workflow changed since the page was loaded).
pub async fn start_run_checked(
    workflow: &str,
    pipeline: &str,
    params: BTreeMap<String, String>,
) -> Result<Run, Refused> {
    let body = StartRun {
        params: params
            .into_iter()
            .map(|(name, value)| (name, serde_json::Value::String(value)))
            .collect(),
        version: None,
    };
    let refused = |error: String| Refused {
        error,
        faults: Vec::new(),
    };
    let path = paths::pipeline_runs(workflow, pipeline);
    let (status, text) = call("POST", path, Some(json(&body)))
        .await
        .map_err(refused)?;
    if (200..300).contains(&status) {
        return serde_json::from_str(&text)
            .map_err(|e| refused(format!("unexpected answer from the server: {e}")));
    }
    Err(
        match serde_json::from_str::<xene_api::error::ErrorBody>(&text) {
            Ok(body) => Refused {
                error: body.error,
                faults: body.faults.unwrap_or_default(),
            },
            Err(_) => refused(format!("the server answered {status}")),
        },
    )
}

/// Starts a run of a pipeline on one version of its workflow (`None`: the
/// current one), as "Run again" does with the original run's version.
pub async fn start_run_at(
    workflow: &str,
    pipeline: &str,
    params: BTreeMap<String, String>,
    version: Option<i64>,
) -> Result<Run, String> {
    let body = StartRun {
        params: params
            .into_iter()
            .map(|(name, value)| (name, serde_json::Value::String(value)))
            .collect(),
        version,
    };
    send_as(
        "POST",
        paths::pipeline_runs(workflow, pipeline),
        Some(json(&body)),
    )
    .await
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
        let (_, reply) =
            api_call("POST".into(), paths::workflows(), Some(text.to_string())).await?;
        if let Ok(applied) = serde_json::from_str::<xene_api::workflows::Applied>(&reply) {
            loaded.push(applied.name);
        }
    }
    Ok(loaded)
}
