//! `/api/v1/blobs/{digest}`: the local artifact store's bytes, for agents
//! holding a URL this server signed (`files::local_urls`). The signed URL
//! is the credential: no principal, one method on one blob of one size
//! until it expires. An upload is kept only when its size and digest are
//! the URL's (`files::local`).

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use futures::StreamExt;

use super::AppState;
use super::error::ApiError;
use crate::files::local::{self, TransferError};
use crate::files::local_urls::{BlobQuery, Grant, UrlError};
use crate::storage::now_ms;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/blobs/{digest}",
            put(upload).get(download).head(download),
        )
        // Bounded by the signed size instead (`local::receive`).
        .layer(DefaultBodyLimit::disable())
}

fn grant(
    state: &AppState,
    method: &str,
    digest: &str,
    query: &BlobQuery,
) -> Result<Grant, ApiError> {
    let grant = state
        .ctx
        .blobs
        .urls()
        .verify(method, digest, query, now_ms())
        .map_err(url_error)?;
    Ok(grant)
}

fn url_error(e: UrlError) -> ApiError {
    match e {
        UrlError::Malformed(_) => ApiError::BadRequest(e.to_string()),
        UrlError::Expired | UrlError::BadSignature => ApiError::Forbidden(e.to_string()),
        UrlError::WrongMethod { .. } => ApiError::MethodNotAllowed(e.to_string()),
    }
}

fn transfer_error(e: TransferError) -> ApiError {
    match e {
        TransferError::Url(e) => url_error(e),
        TransferError::Rejected(_) | TransferError::Broken(_) => {
            ApiError::BadRequest(e.to_string())
        }
        TransferError::Missing(_) => ApiError::NotFound(e.to_string()),
        TransferError::NotLocal => ApiError::NotFound(e.to_string()),
        TransferError::Store(e) => ApiError::Internal(Box::new(e)),
    }
}

async fn upload(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    query: Result<Query<BlobQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let grant = grant(&state, "PUT", &digest, &query)?;
    // A valid signature allows this body the longer deadline; it does not
    // trust the connection, as anyone holding a leaked URL could sign.
    crate::listen::allow_long_body(request.extensions());
    let body = request.into_body().into_data_stream();
    let etag = local::receive(&state.ctx.blobs, &grant, body)
        .await
        .map_err(transfer_error)?;
    let mut response = StatusCode::OK.into_response();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

async fn download(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    query: Result<Query<BlobQuery>, axum::extract::rejection::QueryRejection>,
    method: axum::http::Method,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let grant = grant(&state, method.as_str(), &digest, &query)?;
    let (size, bytes) = local::serve(&state.ctx.blobs, &grant)
        .await
        .map_err(transfer_error)?;
    let body = Body::from_stream(bytes.map(|chunk| chunk.map_err(std::io::Error::other)));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}
