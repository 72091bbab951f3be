//! Webhooks: `POST /api/v1/hooks/{id}` takes signed deliveries (GitHub's
//! `X-Hub-Signature-256` or the Standard Webhooks headers) and starts the
//! hook's pipeline with params read from the body; every delivery to a
//! known hook is recorded with why it was accepted or refused. Editors
//! create a pipeline's hook and rotate its secret, shown once.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xene_core::params::ParamFault;
use xene_core::spec::Trigger;

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::storage::hooks::{self, Record};
use crate::storage::runs::{self, RunError};
use crate::storage::{access as store, workflows};
use xene_api::hooks::{DeliveryAnswer, DeliveryList, HookInfo, NewSecret};

/// A Standard Webhooks timestamp further than this from now is refused.
pub const TIMESTAMP_TOLERANCE_S: i64 = 5 * 60;
/// Longest `webhook-id` taken.
const MAX_DELIVERY_ID: usize = 256;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_hook, rotate_hook))
}

/// How a delivery was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    GitHub,
    Standard,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::Standard => "standard",
        }
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Checks a delivery's signature against `secret`: the scheme and what a
/// replay of it would repeat (the signed `webhook-id`, or for GitHub, whose
/// delivery header is not signed, the body's hash); `Err` says why not.
/// Signatures are compared in constant time (`Mac::verify_slice`).
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
    now_s: i64,
) -> Result<(Scheme, String), String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(signatures) = header("webhook-signature") {
        let id = header("webhook-id").ok_or("webhook-signature without webhook-id")?;
        if id.is_empty() || id.len() > MAX_DELIVERY_ID {
            return Err(format!(
                "webhook-id is empty or longer than {MAX_DELIVERY_ID} bytes"
            ));
        }
        let timestamp =
            header("webhook-timestamp").ok_or("webhook-signature without webhook-timestamp")?;
        let ts: i64 = timestamp
            .parse()
            .map_err(|_| "webhook-timestamp is not a number of seconds".to_string())?;
        if now_s.abs_diff(ts) > TIMESTAMP_TOLERANCE_S as u64 {
            return Err(format!(
                "webhook-timestamp is more than {} minutes from the server's time",
                TIMESTAMP_TOLERANCE_S / 60
            ));
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .map_err(|_| "the hook's secret is not a whsec_ secret".to_string())?;
        for signature in signatures.split_whitespace() {
            let Some(b64) = signature.strip_prefix("v1,") else {
                continue;
            };
            let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                continue;
            };
            let mut m = mac(&key);
            m.update(id.as_bytes());
            m.update(b".");
            m.update(timestamp.as_bytes());
            m.update(b".");
            m.update(body);
            if m.verify_slice(&sig).is_ok() {
                return Ok((Scheme::Standard, format!("std:{id}")));
            }
        }
        return Err("no webhook-signature matches".into());
    }
    if let Some(signature) = header("x-hub-signature-256") {
        let sig = signature
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
            .ok_or("X-Hub-Signature-256 is not sha256=HEX")?;
        let mut m = mac(secret.as_bytes());
        m.update(body);
        m.verify_slice(&sig)
            .map_err(|_| "X-Hub-Signature-256 does not match".to_string())?;
        return Ok((
            Scheme::GitHub,
            format!("gh:{}", hex::encode(Sha256::digest(body))),
        ));
    }
    Err("unsigned: send X-Hub-Signature-256 or the webhook-id, webhook-timestamp and webhook-signature headers".into())
}

fn answer(
    status: StatusCode,
    reason: &str,
    run_id: Option<i64>,
    faults: Option<Vec<ParamFault>>,
) -> Response {
    let body = DeliveryAnswer {
        accepted: run_id.is_some(),
        reason: reason.to_string(),
        run_id,
        error: run_id.is_none().then(|| reason.to_string()),
        faults,
    };
    (status, Json(body)).into_response()
}

/// Deliver a webhook. The signature is the credential: GitHub's
/// `X-Hub-Signature-256` (HMAC-SHA256 of the body with the secret) or the
/// Standard Webhooks headers. Refused deliveries start nothing and are
/// listed with their reason.
#[utoipa::path(
    post, path = "/api/v1/hooks/{id}", tag = "hooks",
    params(("id" = String, Path, description = "The hook's id, from its URL")),
    request_body(content = String, description = "The payload; JSON when params read from it", content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: the run it started", body = DeliveryAnswer),
        (status = 400, description = "The body is not JSON, but params read from it", body = DeliveryAnswer),
        (status = 401, description = "Unsigned, bad signature, or timestamp outside the window", body = DeliveryAnswer),
        (status = 404, description = "No such hook"),
        (status = 409, description = "A replay of an accepted delivery, or the pipeline's trigger is no longer webhook", body = DeliveryAnswer),
        (status = 410, description = "The workflow or pipeline was deleted", body = DeliveryAnswer),
        (status = 413, description = "Body over the size limit", body = DeliveryAnswer),
        (status = 422, description = "Invalid params: every fault at once, in `faults`", body = DeliveryAnswer),
    )
)]
async fn receive(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = path?;
    let Some(hook) = hooks::by_id(&state.db, &state.ctx.vault, &id).await? else {
        state.ctx.metrics.webhook_delivery("unknown_hook");
        return Err(ApiError::NotFound("no such hook".into()));
    };
    let refuse = |status: StatusCode,
                  scheme: &'static str,
                  reason: String,
                  faults: Option<Vec<ParamFault>>| {
        let db = state.db.clone();
        let hook_id = hook.id.clone();
        let metrics = state.ctx.metrics.clone();
        async move {
            hooks::refused(
                &db,
                &Record {
                    hook_id: &hook_id,
                    scheme,
                    replay_key: None,
                    status: status.as_u16(),
                    reason: &reason,
                },
            )
            .await?;
            metrics.webhook_delivery("refused");
            tracing::info!(hook = %hook_id, status = status.as_u16(), reason, "webhook delivery refused");
            Ok::<_, ApiError>(answer(status, &reason, None, faults))
        }
    };
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let reason = format!("the body is larger than {} bytes", super::MAX_BODY_BYTES);
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "none", reason, None).await;
        }
        Err(e) => {
            let reason = format!("cannot read the body: {}", e.body_text());
            return refuse(StatusCode::BAD_REQUEST, "none", reason, None).await;
        }
    };
    let now_s = crate::storage::now_ms() / 1000;
    let (scheme, replay_key) = match verify(&headers, &body, &hook.secret, now_s) {
        Ok(v) => v,
        Err(reason) => {
            let scheme = if headers.contains_key("webhook-signature") {
                "standard"
            } else if headers.contains_key("x-hub-signature-256") {
                "github"
            } else {
                "none"
            };
            return refuse(StatusCode::UNAUTHORIZED, scheme, reason, None).await;
        }
    };
    let scheme_name = scheme.name();

    let Some(current) = workflows::get(&state.db, &hook.workflow, None).await? else {
        let reason = format!("workflow {:?} was deleted", hook.workflow);
        return refuse(StatusCode::GONE, scheme_name, reason, None).await;
    };
    let Some(spec) = current.spec.pipelines.get(&hook.pipeline) else {
        let reason = format!("pipeline {:?} is no longer in the workflow", hook.pipeline);
        return refuse(StatusCode::GONE, scheme_name, reason, None).await;
    };
    if spec.trigger != Trigger::Webhook {
        let reason = format!(
            "pipeline {:?} is no longer triggered by webhooks",
            hook.pipeline
        );
        return refuse(StatusCode::CONFLICT, scheme_name, reason, None).await;
    }
    let params = if spec.params.values().any(|p| p.from.is_some()) {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(value) => xene_core::params::from_body(&spec.params, &value),
            Err(_) => {
                let reason = "the body is not JSON, but params are read from it".to_string();
                return refuse(StatusCode::BAD_REQUEST, scheme_name, reason, None).await;
            }
        }
    } else {
        Default::default()
    };
    let prepared = match runs::prepare(&state.db, &hook.workflow, &hook.pipeline, params).await {
        Ok(p) => p,
        Err(RunError::InvalidParams(faults)) => {
            let reason = format!(
                "invalid params: {}",
                faults
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                scheme_name,
                reason,
                Some(faults),
            )
            .await;
        }
        Err(RunError::UnknownWorkflow(_) | RunError::UnknownPipeline { .. }) => {
            let reason = "the workflow or pipeline was deleted".to_string();
            return refuse(StatusCode::GONE, scheme_name, reason, None).await;
        }
        // Logged with the delivery, so whoever wired the hook sees why.
        Err(e @ RunError::ProtectedSecrets(_)) => {
            return refuse(StatusCode::FORBIDDEN, scheme_name, e.to_string(), None).await;
        }
        Err(e @ (RunError::MissingSecrets(_) | RunError::UnsafeScript { .. })) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return refuse(status, scheme_name, e.to_string(), None).await;
        }
        Err(e) => return Err(e.into()),
    };
    let reason = format!("{scheme_name} delivery accepted");
    let record = Record {
        hook_id: &hook.id,
        scheme: scheme_name,
        replay_key: Some(&replay_key),
        status: StatusCode::ACCEPTED.as_u16(),
        reason: &reason,
    };
    match hooks::accepted(&state.db, &record, &prepared).await? {
        Some(run) => {
            state.ctx.metrics.webhook_delivery("accepted");
            state
                .ctx
                .metrics
                .run_started("webhook", &hook.workflow, &hook.pipeline);
            tracing::info!(hook = %hook.id, run_id = run, "webhook run queued");
            Ok(answer(StatusCode::ACCEPTED, &reason, Some(run), None))
        }
        None => {
            let reason = "a replay: this delivery was accepted before".to_string();
            refuse(StatusCode::CONFLICT, scheme_name, reason, None).await
        }
    }
}

/// A hook's recent deliveries, newest first, each with its reason.
#[utoipa::path(
    get, path = "/api/v1/hooks/{id}/deliveries", tag = "hooks",
    params(("id" = String, Path, description = "The hook's id")),
    responses((status = 200, body = DeliveryList), (status = 404, description = "No such hook"))
)]
async fn list_deliveries(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let Path(id) = path?;
    if hooks::by_id(&state.db, &state.ctx.vault, &id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("no such hook".into()));
    }
    let deliveries = hooks::deliveries(&state.db, &id, hooks::KEEP_DELIVERIES).await?;
    Ok(Json(DeliveryList { deliveries }))
}

/// A pipeline's hook: its id and URL path (never its secret).
#[utoipa::path(
    get, path = "/api/v1/workflows/{name}/pipelines/{pipeline}/hook", tag = "hooks",
    params(("name" = String, Path, description = "Workflow name"), ("pipeline" = String, Path, description = "Pipeline name")),
    responses((status = 200, body = HookInfo), (status = 404, description = "No such pipeline, or it has no hook yet"))
)]
async fn get_hook(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<HookInfo>, ApiError> {
    let Path((name, pipeline)) = path?;
    hooks::of_pipeline(&state.db, &state.ctx.vault, &name, &pipeline)
        .await?
        .map(|h| Json(info(&state, &h)))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "pipeline {pipeline:?} of {name:?} has no hook; create one with POST"
            ))
        })
}

/// Give a webhook pipeline its hook, or its hook a new secret (the URL
/// stays). The secret is in this answer only.
#[utoipa::path(
    post, path = "/api/v1/workflows/{name}/pipelines/{pipeline}/hook", tag = "hooks",
    params(("name" = String, Path, description = "Workflow name"), ("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 201, description = "Created", body = NewSecret),
        (status = 200, description = "Secret rotated; the old one no longer verifies", body = NewSecret),
        (status = 404, description = "No such workflow or pipeline"),
        (status = 409, description = "The pipeline's trigger is not webhook"),
    )
)]
async fn rotate_hook(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(StatusCode, Json<NewSecret>), ApiError> {
    let Path((name, pipeline)) = path?;
    let current = workflows::get(&state.db, &name, None)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no workflow named {name:?}")))?;
    let spec = current.spec.pipelines.get(&pipeline).ok_or_else(|| {
        ApiError::NotFound(format!(
            "workflow {name:?} has no pipeline named {pipeline:?}"
        ))
    })?;
    if spec.trigger != Trigger::Webhook {
        return Err(ApiError::Conflict(format!(
            "pipeline {pipeline:?} is not triggered by webhooks: set trigger: webhook first"
        )));
    }
    let (hook, created) =
        hooks::create_or_rotate(&state.db, &state.ctx.vault, &name, &pipeline).await?;
    store::audit(
        &state.db,
        &principal.user_id,
        if created {
            "hook.create"
        } else {
            "hook.rotate"
        },
        &hook.id,
        &format!("{name}/{pipeline}"),
        &principal.remote,
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(NewSecret {
            hook: info(&state, &hook),
            secret: hook.secret,
        }),
    ))
}

/// A hook as the API shows it, with its whole URL when the server's
/// public URL says how senders reach it.
fn info(state: &AppState, hook: &hooks::Hook) -> HookInfo {
    let mut info = hook.info();
    info.url = reachable_base(&state.public_url).map(|base| format!("{base}{}", info.path));
    info
}

/// The public URL without its trailing slash, unless it names a loopback
/// or unspecified address: that is the default one made from the listen
/// address (or a local setup), and the address a browser reached the
/// server by is a better guess (behind a proxy, say).
fn reachable_base(public_url: &str) -> Option<&str> {
    let url = reqwest::Url::parse(public_url).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    (!local).then(|| public_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    /// GitHub's published example.
    #[test]
    fn githubs_example_signature_verifies() {
        let h = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        let secret = "It's a Secret to Everybody";
        let (scheme, _) = verify(&h, b"Hello, World!", secret, 0).unwrap();
        assert_eq!(scheme, Scheme::GitHub);
        assert!(verify(&h, b"Hello, World?", secret, 0).is_err());
        assert!(verify(&h, b"Hello, World!", "another secret", 0).is_err());
    }

    #[test]
    fn standard_webhooks_signatures_and_their_window() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sign = |id: &str, ts: i64| {
            let mut m = mac(&key);
            m.update(format!("{id}.{ts}.").as_bytes());
            m.update(body);
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
            )
        };
        let now = 1_614_265_330;
        let sig = sign("msg_p5jXN8AQM9LWM0D4loKWxJek", now);
        // The Standard Webhooks specification's own example.
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let ok = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &format!("v1,bm90IGl0 {sig}")),
        ]);
        assert_eq!(
            verify(&ok, body, secret, now + 60).unwrap(),
            (Scheme::Standard, "std:msg_p5jXN8AQM9LWM0D4loKWxJek".into())
        );
        let late = verify(&ok, body, secret, now + 301).unwrap_err();
        assert!(late.contains("5 minutes"), "{late}");
        assert!(verify(&ok, body, secret, now - 301).is_err());
        assert!(verify(&ok, b"{}", secret, now).is_err());
        let other_id = headers(&[
            ("webhook-id", "msg_other"),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &sig),
        ]);
        assert!(verify(&other_id, body, secret, now).is_err());
        assert!(
            verify(&HeaderMap::new(), body, secret, now)
                .unwrap_err()
                .starts_with("unsigned")
        );
    }
}
