//! The REST API under `/api`. Feature routers (workflows, runs, agents)
//! merge in here; authentication will wrap this router as one layer.

use axum::Router;
use axum::extract::OriginalUri;

use super::AppState;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().fallback(not_found)
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NotFound(format!("no API route at {}", uri.path()))
}
