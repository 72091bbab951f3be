//! The REST API under `/api/v1`, documented by the OpenAPI document built
//! from the same route definitions. Every route passes the access guard
//! (see `http::router`).

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::Uri;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use super::error::ApiError;

#[derive(OpenApi)]
#[openapi(info(
    title = "Xene API",
    description = "Workflows, runs and agents of a Xene server."
))]
struct ApiDoc;

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(super::workflows::router())
        .merge(super::runs::router())
        .merge(super::artifacts::router())
        .merge(super::caches::router())
        .merge(super::hooks::router())
        .merge(super::cron::router())
        .merge(super::feed::router())
        .merge(super::agents::router())
        .merge(super::dashboard::router())
        .merge(super::agent_auth::router())
        .merge(super::users::router())
        .merge(super::tokens::router())
        .merge(super::audit::router())
        .merge(super::secrets::router())
}

/// The API document, as `/api/v1/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = routes().split_for_parts();
    super::openapi::complete(&mut doc);
    doc
}

/// The API routes and their OpenAPI document.
pub fn router() -> Router<AppState> {
    let (router, mut doc) = routes().split_for_parts();
    super::openapi::complete(&mut doc);
    let page = axum::response::Html(super::openapi::docs_page(&doc));
    let doc = doc.to_json().expect("the OpenAPI document serializes");
    router
        .route(
            "/api/v1/docs",
            get(move || std::future::ready(page.clone())),
        )
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc,
                    )
                }
            }),
        )
        .route("/api", axum::routing::any(not_found))
        .route("/api/{*rest}", axum::routing::any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NotFound(format!("no API route at {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("method not allowed on {}", uri.path()))
}
