//! The body of every error answer of the API.

use std::fmt;

use serde::{Deserialize, Serialize};
use xene_core::Diagnostics;
use xene_core::params::ParamFault;

/// The body of every error answer: what went wrong, and for a 422, every
/// fault at once (an invalid workflow's `diagnostics`, invalid run params'
/// `faults`) with `message` listing them as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// An invalid workflow's faults, in order of line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<xene_core::Diagnostic>>))]
    pub diagnostics: Option<Diagnostics>,
    /// Invalid params' faults, one per param.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Vec<ParamFault>>,
    /// The faults as text, one per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ErrorBody {
    /// An error with nothing but its text.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            diagnostics: None,
            faults: None,
            message: None,
        }
    }
}

/// The error, then the faults' lines when there are any.
impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        match &self.message {
            Some(message) if !message.is_empty() => write!(f, "\n{message}"),
            _ => Ok(()),
        }
    }
}
