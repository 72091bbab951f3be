//! Every `/api/v1` path a client calls, built here with one percent-encoder,
//! so a name with a space, a slash or a `?` always reaches its route. The
//! server's routes are the same paths as axum patterns (`{name}`).

/// Puts a value in a URL path segment or a query value: everything but
/// `A-Z a-z 0-9 - _ . ~` is percent-encoded (RFC 3986's unreserved set).
pub fn encode(text: &str) -> String {
    encode_keeping(text, b"")
}

/// As [`encode`], but keeping `/`: a path carried in a query value
/// (`/signin?next=/runs/1`), readable in the address bar.
pub fn encode_path(text: &str) -> String {
    encode_keeping(text, b"/")
}

fn encode_keeping(text: &str, kept: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || kept.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path` with a query: each present value encoded, absent ones left out.
pub fn with_query<'a>(
    path: String,
    params: impl IntoIterator<Item = (&'a str, Option<String>)>,
) -> String {
    // A path that already holds a query goes on with it.
    let mut separator = if path.contains('?') { '&' } else { '?' };
    let mut out = path;
    for (name, value) in params {
        if let Some(value) = value {
            out.push(separator);
            out.push_str(&encode(name));
            out.push('=');
            out.push_str(&encode(&value));
            separator = '&';
        }
    }
    out
}

const V1: &str = "/api/v1";

/// `GET` the list, `POST` a workflow's text to apply it.
pub fn workflows() -> String {
    format!("{V1}/workflows")
}

/// A workflow's current version (`GET`), or delete it (`DELETE`).
pub fn workflow(name: &str) -> String {
    format!("{V1}/workflows/{}", encode(name))
}

/// A workflow's versions, newest first.
pub fn versions(name: &str) -> String {
    format!("{}/versions", workflow(name))
}

/// One version of a workflow.
pub fn version(name: &str, version: i64) -> String {
    format!("{}/versions/{version}", workflow(name))
}

/// Where the visual editor placed a version's tasks (`PUT`).
pub fn layout(name: &str, version_number: i64) -> String {
    format!("{}/layout", version(name, version_number))
}

/// Approve a version (`POST`) or withdraw its approval (`DELETE`).
pub fn approval(name: &str, version_number: i64) -> String {
    format!("{}/approve", version(name, version_number))
}

/// Start a run of a pipeline (`POST`, a `StartRun`).
pub fn pipeline_runs(name: &str, pipeline: &str) -> String {
    format!("{}/pipelines/{}/runs", workflow(name), encode(pipeline))
}

/// A webhook pipeline's hook (`GET`), or create it or rotate its secret (`POST`).
pub fn pipeline_hook(name: &str, pipeline: &str) -> String {
    format!("{}/pipelines/{}/hook", workflow(name), encode(pipeline))
}

/// Where a hook's deliveries are posted.
pub fn hook(id: &str) -> String {
    format!("{V1}/hooks/{}", encode(id))
}

/// A hook's latest deliveries.
pub fn hook_deliveries(id: &str) -> String {
    format!("{}/deliveries", hook(id))
}

/// When a cron line fires next.
pub fn cron_next(schedule: &str, timezone: Option<&str>, count: Option<usize>) -> String {
    with_query(
        format!("{V1}/cron/next"),
        [
            ("schedule", Some(schedule.to_string())),
            ("timezone", timezone.map(str::to_string)),
            ("count", count.map(|c| c.to_string())),
        ],
    )
}

/// The runs list; filter it with [`with_query`] (`workflow`, `pipeline`,
/// `status`, `trigger`, `limit`, `cursor`).
pub fn runs() -> String {
    format!("{V1}/runs")
}

/// A run with its tasks and steps.
pub fn run(id: i64) -> String {
    format!("{V1}/runs/{id}")
}

/// Cancel a run (`POST`).
pub fn run_cancel(id: i64) -> String {
    format!("{}/cancel", run(id))
}

/// The artifacts a run's tasks published.
pub fn run_artifacts(id: i64) -> String {
    format!("{}/artifacts", run(id))
}

/// Download an artifact: its one file as it is, or a tar stream of all its
/// files; with `path`, that one file of it.
pub fn artifact(id: i64, name: &str, path: Option<&str>) -> String {
    with_query(
        format!("{}/{}", run_artifacts(id), encode(name)),
        [("path", path.map(str::to_string))],
    )
}

/// Pin a run (`PUT`) so retention keeps its artifacts, or unpin it (`DELETE`).
pub fn run_pin(id: i64) -> String {
    format!("{}/pin", run(id))
}

/// How much artifact storage a workflow's runs hold.
pub fn workflow_artifacts(name: &str) -> String {
    format!("{}/artifacts", workflow(name))
}

/// A workflow's saved cache entries.
pub fn workflow_caches(name: &str) -> String {
    format!("{}/caches", workflow(name))
}

/// One of a workflow's cache entries, to remove it (`DELETE`).
pub fn workflow_cache(name: &str, id: i64) -> String {
    format!("{}/{id}", workflow_caches(name))
}

/// A page of a run's log lines; page it with [`with_query`] (`task`,
/// `step`, `after`, `limit`, `max_bytes`).
pub fn run_logs(id: i64) -> String {
    format!("{}/logs", run(id))
}

/// A step's whole log as plain text; the latest attempt unless `attempt`.
pub fn step_log(id: i64, task: &str, step: &str, attempt: Option<i64>) -> String {
    with_query(
        format!("{}/logs/{}/{}", run(id), encode(task), encode(step)),
        [("attempt", attempt.map(|a| a.to_string()))],
    )
}

/// A run's live feed (WebSocket), resumed after a log cursor.
pub fn run_events(id: i64, after: Option<i64>) -> String {
    with_query(
        format!("{}/events", run(id)),
        [("after", after.map(|a| a.to_string()))],
    )
}

/// Every run's changes (WebSocket), for lists.
pub fn runs_feed() -> String {
    format!("{V1}/runs/feed")
}

/// The queue and the agents at a glance.
pub fn stats() -> String {
    format!("{V1}/stats")
}

/// The landing page's one read: runs running, queued, stuck and failed, agents online.
pub fn dashboard() -> String {
    format!("{V1}/dashboard")
}

/// How people can sign in here (no sign-in needed to ask).
pub fn sign_in_methods() -> String {
    format!("{V1}/sign-in-methods")
}

/// The agents.
pub fn agents() -> String {
    format!("{V1}/agents")
}

/// Revoke a remote agent (`DELETE`).
pub fn agent(id: &str) -> String {
    format!("{V1}/agents/{}", encode(id))
}

/// Drain an agent (`POST`), or take it back into service (`DELETE`).
pub fn agent_drain(id: &str) -> String {
    format!("{V1}/agents/{}/drain", encode(id))
}

/// Create a join token (`POST`).
pub fn join_tokens() -> String {
    format!("{V1}/agents/join-tokens")
}

/// Exchange a join token for a credential (`POST`).
pub fn join() -> String {
    format!("{V1}/agents/join")
}

/// Who is calling.
pub fn me() -> String {
    format!("{V1}/me")
}

/// The users (admins).
pub fn users() -> String {
    format!("{V1}/users")
}

/// Change a user's role or disable them (`PATCH`).
pub fn user(id: &str) -> String {
    format!("{V1}/users/{}", encode(id))
}

/// The invites (`GET`), or invite (`POST`).
pub fn invites() -> String {
    format!("{V1}/invites")
}

/// Withdraw an invite (`DELETE`).
pub fn invite(id: i64) -> String {
    format!("{V1}/invites/{id}")
}

/// API tokens (`GET`), or mint one (`POST`).
pub fn tokens() -> String {
    format!("{V1}/tokens")
}

/// Revoke a token (`DELETE`).
pub fn token(id: &str) -> String {
    format!("{V1}/tokens/{}", encode(id))
}

/// The audit log, newest first; page it with [`with_query`] (`before`, `limit`).
pub fn audit() -> String {
    format!("{V1}/audit")
}

/// Secrets' names; `workflow` for the ones its runs see.
pub fn secrets(workflow: Option<&str>) -> String {
    with_query(
        format!("{V1}/secrets"),
        [("workflow", workflow.map(str::to_string))],
    )
}

/// Set (`PUT`) or delete (`DELETE`) a secret, global or a workflow's own.
pub fn secret(name: &str, workflow: Option<&str>) -> String {
    with_query(
        format!("{V1}/secrets/{}", encode(name)),
        [("workflow", workflow.map(str::to_string))],
    )
}

/// Re-encrypt every secret under the first master key (`POST`).
pub fn rotate_key() -> String {
    format!("{V1}/secrets/rotate-key")
}

/// The API document.
pub fn openapi() -> String {
    format!("{V1}/openapi.json")
}

/// Where `xenectl login` sends the browser to allow it (outside `/api/v1`,
/// as a sign-in page is): its loopback port, its state and its PKCE
/// challenge (S256).
pub fn cli_sign_in(port: u16, state: &str, challenge: &str) -> String {
    with_query(
        "/auth/cli".to_string(),
        [
            ("port", Some(port.to_string())),
            ("state", Some(state.to_string())),
            ("code_challenge", Some(challenge.to_string())),
            ("code_challenge_method", Some("S256".to_string())),
        ],
    )
}

/// Where `xenectl login` spends its one-time code for an API token
/// (`POST`; answers a `NewToken`).
pub fn cli_token() -> String {
    "/auth/cli/token".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_once_and_absent_values_left_out() {
        assert_eq!(
            pipeline_runs("my flow", "a/b"),
            "/api/v1/workflows/my%20flow/pipelines/a%2Fb/runs"
        );
        assert_eq!(run_events(7, None), "/api/v1/runs/7/events");
        assert_eq!(run_events(7, Some(42)), "/api/v1/runs/7/events?after=42");
        assert_eq!(
            with_query(
                runs(),
                [
                    ("workflow", Some("w&x".into())),
                    ("status", None),
                    ("limit", Some("1".into()))
                ]
            ),
            "/api/v1/runs?workflow=w%26x&limit=1"
        );
        assert_eq!(
            secret("TOKEN", Some("w")),
            "/api/v1/secrets/TOKEN?workflow=w"
        );
        assert_eq!(
            artifact(7, "bin", Some("a b/c")),
            "/api/v1/runs/7/artifacts/bin?path=a%20b%2Fc"
        );
        assert_eq!(encode("é~"), "%C3%A9~");
        assert_eq!(encode_path("/runs/1?a=b c"), "/runs/1%3Fa%3Db%20c");
    }

    #[test]
    fn a_query_goes_on_after_one_the_path_holds() {
        assert_eq!(
            with_query(
                run_events(7, Some(42)),
                [("limit", Some("5".into())), ("task", None)]
            ),
            "/api/v1/runs/7/events?after=42&limit=5"
        );
        assert_eq!(with_query(runs(), [("status", None)]), "/api/v1/runs");
    }
}
