//! Logs and request tracing: the subscriber set-up (shared with the agent,
//! so both read `RUST_LOG` and write the same formats), and the layers that
//! give every HTTP request a span and a sample in the request histogram.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::trace::TraceLayer;
use tracing::Span;

pub use xene_agent::telemetry::LogFormat;

use crate::metrics::Metrics;

/// What Xene logs when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "warn,xene_server=info,xene=info,xene_agent=info";

/// Logs to stderr in `format`, filtered by `RUST_LOG` (default: info for
/// Xene, warn for the rest). Set `RUST_LOG=info,xene::http=debug` for a line
/// per HTTP request.
pub fn init(format: LogFormat) {
    xene_agent::telemetry::init(format, DEFAULT_FILTER);
}

/// Like [`init`], exporting spans to `otlp_endpoint` when given; keep the
/// returned guard until exit, when it flushes what is left.
pub fn init_with_otlp(
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Result<xene_agent::telemetry::Telemetry, xene_agent::telemetry::OtlpError> {
    xene_agent::telemetry::init_with_otlp(format, DEFAULT_FILTER, otlp_endpoint, "xene")
}

/// The route label of a request: the router's pattern, so the label set is
/// bounded (`/api/v1/runs/{id}`, not every id); `unmatched` otherwise.
fn route(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string())
}

/// Wraps every route of `router` in a request span (method, route, status,
/// latency) and times it into `xene_http_request_duration_seconds`.
pub fn instrument(router: Router, metrics: Arc<Metrics>) -> Router {
    router
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let metrics = metrics.clone();
                async move {
                    let method = request.method().as_str().to_string();
                    let route = route(&request);
                    let started = Instant::now();
                    let response = next.run(request).await;
                    metrics.observe_request(
                        &method,
                        &route,
                        response.status().as_u16(),
                        started.elapsed(),
                    );
                    response
                }
            },
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<Body>| {
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        route = route(request),
                        status = tracing::field::Empty,
                        latency_ms = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(|response: &Response, latency: Duration, span: &Span| {
                    span.record("status", response.status().as_u16());
                    span.record("latency_ms", latency.as_millis() as u64);
                    tracing::debug!(target: "xene::http", "request answered");
                }),
        )
}
