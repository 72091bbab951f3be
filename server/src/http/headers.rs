//! Defence-in-depth headers on every answer: no content sniffing, no
//! framing, HSTS when the server is reached over HTTPS, and a strict
//! Content-Security-Policy on HTML that did not set its own (the web UI's
//! pages set one with their nonce, see `xene_app::shell`).

use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// For HTML the UI did not render (the sign-in handoffs, error pages, the
/// API reference): nothing runs, nothing frames it, and the only inline
/// style is the API reference's own, by its hash.
static FALLBACK_CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'self'; script-src 'none'; style-src 'self' {}; object-src 'none'; \
         base-uri 'none'; frame-ancestors 'none'",
        super::openapi::style_source()
    );
    HeaderValue::from_str(&policy).expect("the policy is ASCII")
});

/// A year: browsers remember to use HTTPS for this host.
const HSTS: &str = "max-age=31536000";

pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if state.access.https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, FALLBACK_CSP.clone());
    }
    response
}
