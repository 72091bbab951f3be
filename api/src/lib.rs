//! Xene's wire contract, as the server writes it and the web UI and the CLI
//! read it.
//!
//! **Invariant:** every `/api/v1` request and response body, every message
//! of the live feeds and the error body is defined here, and nowhere else.
//! The server answers these types (their OpenAPI schemas come from them,
//! behind the `openapi` feature that only the server turns on); clients
//! deserialize these types and build every path through [`paths`]. A body
//! grows by a field added here; the tidy test `api_bodies` keeps the
//! schemas in this crate.
//!
//! Domain types the bodies carry (a workflow's spec, a status, a role)
//! stay in `xene-core`.

pub mod access;
pub mod agents;
pub mod error;
pub mod feed;
pub mod hooks;
pub mod paths;
pub mod run;
pub mod secrets;
pub mod workflows;
