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
pub mod artifacts;
pub mod caches;
pub mod dashboard;
pub mod error;
pub mod feed;
pub mod hooks;
pub mod paths;
pub mod run;
pub mod secrets;
pub use xene_core::tar;
pub mod workflows;

use std::fmt;

/// Stands in for a secret in `Debug` output, so that a body logged or
/// shown in a failed assertion never carries the secret it holds.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use xene_core::access::Role;

    use super::*;

    const SECRET: &str = "s3cr3t-value";

    fn shows_no_secret(debug: String) {
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        shows_no_secret(format!(
            "{:?}",
            secrets::SecretValueRequest {
                value: Some(SECRET.into()),
                ..Default::default()
            }
        ));
        shows_no_secret(format!(
            "{:?}",
            access::NewToken {
                token: SECRET.into(),
                info: access::TokenInfo {
                    id: "t".into(),
                    user_id: "u".into(),
                    name: "n".into(),
                    role: Role::Viewer,
                    created_at: 0,
                    expires_at: None,
                    last_used_at: None,
                    revoked_at: None,
                },
            }
        ));
        shows_no_secret(format!(
            "{:?}",
            access::CliTokenRequest {
                code: SECRET.into(),
                code_verifier: Some(SECRET.into()),
                hostname: Some("laptop".into()),
            }
        ));
        shows_no_secret(format!(
            "{:?}",
            agents::JoinToken {
                token: SECRET.into(),
                expires_at: 0,
                labels: Some(BTreeMap::new()),
                capacity: None,
                install_command: None,
                install_note: None,
            }
        ));
        shows_no_secret(format!(
            "{:?}",
            agents::JoinRequest {
                token: SECRET.into(),
                name: None,
            }
        ));
        shows_no_secret(format!(
            "{:?}",
            agents::Credential {
                agent_id: "a".into(),
                credential: SECRET.into(),
            }
        ));
        shows_no_secret(format!(
            "{:?}",
            hooks::NewSecret {
                hook: hooks::HookInfo {
                    id: "h".into(),
                    workflow: "w".into(),
                    pipeline: "p".into(),
                    path: "/hooks/h".into(),
                    url: None,
                    created_at: 0,
                    rotated_at: 0,
                },
                secret: SECRET.into(),
            }
        ));
        // What is not secret still shows.
        let request = format!(
            "{:?}",
            agents::JoinRequest {
                token: SECRET.into(),
                name: Some("builder".into()),
            }
        );
        assert!(request.contains("builder"), "{request}");
    }

    #[test]
    fn bodies_of_a_server_older_than_the_summaries_still_read() {
        let list: workflows::WorkflowSummary = serde_json::from_str(
            r#"{"name":"w","description":"","version":1,"pipelines":["p"],"created_at":0,"updated_at":0}"#,
        )
        .expect("a summary without `summaries` reads");
        assert!(list.summaries.is_empty());
        let task: run::TaskRun = serde_json::from_str(
            r#"{"name":"t","status":"pending","attempt":0,"output":null,"error":null,
                "started_at":null,"finished_at":null,"duration_ms":null,"steps":[]}"#,
        )
        .expect("a task without `depends_on` reads");
        assert!(task.depends_on.is_empty());
    }
}
