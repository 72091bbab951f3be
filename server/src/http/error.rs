//! The API's one error type: every variant maps to a status and an
//! `xene_api::error::ErrorBody`; internal details are logged, never sent.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use xene_api::error::ErrorBody;
use xene_core::Diagnostics;

use crate::storage::StorageError;
use crate::storage::runs::RunError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A request for a host name this server does not answer to (421).
    #[error("{0}")]
    Misdirected(String),
    /// A known path asked with a method it does not take (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body, or one part of it, is over its limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// This replica cannot do it now; another may, or this one later (503).
    #[error("{0}")]
    Unavailable(String),
    /// Too busy now: asked again after `retry_after` seconds, it may be
    /// done (503 with `Retry-After`).
    #[error("{message}")]
    Busy { message: String, retry_after: u32 },
    /// Well-formed but not acceptable (422).
    #[error("{0}")]
    Unprocessable(String),
    #[error("the workflow is invalid: {} fault(s)", .0.len())]
    Invalid(Diagnostics),
    #[error("the run's params are invalid: {} fault(s)", .0.len())]
    InvalidParams(Vec<xene_core::params::ParamFault>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) | Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid(_) | Self::InvalidParams(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ApiError {
    /// The whole request body is over the API's limit.
    fn body_too_large() -> Self {
        Self::TooLarge(format!(
            "the request body is larger than the limit of {} bytes",
            super::MAX_BODY_BYTES
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = ErrorBody::new(self.to_string());
        match &self {
            Self::Internal(e) => {
                let mut chain = e.to_string();
                let mut source = e.source();
                while let Some(cause) = source {
                    chain.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                tracing::error!(error = chain, "request failed");
            }
            Self::Invalid(diagnostics) => {
                body.message = Some(diagnostics.to_string());
                body.diagnostics = Some(diagnostics.clone());
            }
            Self::InvalidParams(faults) => {
                body.message = Some(
                    faults
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
                body.faults = Some(faults.clone());
            }
            Self::Busy { retry_after, .. } => {
                return (
                    self.status(),
                    [(axum::http::header::RETRY_AFTER, retry_after.to_string())],
                    Json(body),
                )
                    .into_response();
            }
            _ => {}
        }
        (self.status(), Json(body)).into_response()
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::UnknownWorkflow(_)
            | RunError::UnknownPipeline { .. }
            | RunError::UnknownRun(_) => Self::NotFound(e.to_string()),
            RunError::InvalidParams(faults) => Self::InvalidParams(faults),
            RunError::AlreadyFinished { .. } => Self::Conflict(e.to_string()),
            RunError::MissingSecrets(_)
            | RunError::UnsafeScript { .. }
            | RunError::UnknownVersion { .. }
            | RunError::PipelineNotInVersion { .. } => Self::Unprocessable(e.to_string()),
            RunError::ProtectedSecrets(_) => Self::Forbidden(e.to_string()),
            RunError::Storage(e) => e.into(),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::body_too_large()
        } else {
            Self::BadRequest(format!("cannot read the request body: {}", e.body_text()))
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::body_too_large()
        } else {
            Self::BadRequest(e.body_text())
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::BadRequest(e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::BadRequest(e.body_text())
    }
}

impl From<crate::storage::auth::AuthFailure> for ApiError {
    fn from(e: crate::storage::auth::AuthFailure) -> Self {
        match e {
            crate::storage::auth::AuthFailure::Denied(reason) => {
                Self::Unauthorized(reason.to_string())
            }
            crate::storage::auth::AuthFailure::Storage(e) => e.into(),
        }
    }
}
