//! The one table of access rules: every route of the server with what it
//! takes to use it. A route missing here is refused to everyone (and a test
//! walks the API document to prove none is missing).

use axum::http::Method;
use xene_core::access::Role;

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; the handler checks its own credential if it has one (an
    /// agent's join token or credential, a webhook signature).
    Public,
    /// A signed-in user or an API token with at least this role.
    Role(Role),
}

/// A method (or any, for pages) and a path as axum matched it.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Option<Method>,
    pub path: &'static str,
    pub access: Access,
}

const fn rule(method: Method, path: &'static str, access: Access) -> Rule {
    Rule {
        method: Some(method),
        path,
        access,
    }
}

const PUBLIC: Access = Access::Public;
const VIEWER: Access = Access::Role(Role::Viewer);
const EDITOR: Access = Access::Role(Role::Editor);
const ADMIN: Access = Access::Role(Role::Admin);

/// Every route. Pages of the web UI are matched by `page_access`.
pub static RULES: &[Rule] = &[
    // Operations and agents: each checks its own credential, if any.
    rule(Method::GET, "/healthz", PUBLIC),
    rule(Method::GET, "/metrics", PUBLIC),
    rule(Method::GET, "/install.sh", PUBLIC),
    rule(Method::GET, "/download/xene-agent", PUBLIC),
    rule(Method::GET, "/download/xene-agent.sha256", PUBLIC),
    rule(Method::GET, "/api/v1/agents/connect", PUBLIC),
    rule(Method::POST, "/api/v1/agents/join", PUBLIC),
    // Artifacts' bytes in the local store: the URL's signature (one
    // method, one blob, minutes) is the credential, checked by the handler.
    rule(Method::PUT, "/api/v1/blobs/{digest}", PUBLIC),
    rule(Method::GET, "/api/v1/blobs/{digest}", PUBLIC),
    rule(Method::GET, "/api/v1/openapi.json", PUBLIC),
    rule(Method::GET, "/api/v1/docs", PUBLIC),
    // Unknown API paths answer a JSON 404 to anyone.
    Rule {
        method: None,
        path: "/api",
        access: PUBLIC,
    },
    Rule {
        method: None,
        path: "/api/{*rest}",
        access: PUBLIC,
    },
    // Signing in and out.
    rule(Method::GET, "/auth/login", PUBLIC),
    rule(Method::GET, "/auth/callback", PUBLIC),
    rule(Method::GET, "/auth/link", PUBLIC),
    // What the sign-in page offers: asked before anyone is signed in.
    rule(Method::GET, "/api/v1/sign-in-methods", PUBLIC),
    rule(Method::POST, "/auth/logout", VIEWER),
    // `xenectl login`: a signed-in browser asks its person to allow it,
    // then hands out a one-time code, which the CLI spends with its PKCE
    // verifier (the code and the verifier are its credential).
    rule(Method::GET, "/auth/cli", VIEWER),
    rule(Method::POST, "/auth/cli", VIEWER),
    rule(Method::POST, "/auth/cli/token", PUBLIC),
    // Workflows and runs.
    rule(Method::GET, "/api/v1/workflows", VIEWER),
    rule(Method::POST, "/api/v1/workflows", EDITOR),
    rule(Method::GET, "/api/v1/workflows/{name}", VIEWER),
    rule(Method::DELETE, "/api/v1/workflows/{name}", EDITOR),
    rule(Method::GET, "/api/v1/workflows/{name}/versions", VIEWER),
    rule(
        Method::GET,
        "/api/v1/workflows/{name}/versions/{version}",
        VIEWER,
    ),
    rule(
        Method::PUT,
        "/api/v1/workflows/{name}/versions/{version}/layout",
        EDITOR,
    ),
    // Lets a version have the protected secrets it names, or no more.
    rule(
        Method::POST,
        "/api/v1/workflows/{name}/versions/{version}/approve",
        ADMIN,
    ),
    rule(
        Method::DELETE,
        "/api/v1/workflows/{name}/versions/{version}/approve",
        ADMIN,
    ),
    rule(
        Method::POST,
        "/api/v1/workflows/{name}/pipelines/{pipeline}/runs",
        EDITOR,
    ),
    rule(Method::GET, "/api/v1/cron/next", VIEWER),
    // Webhooks: a delivery's signature is its credential.
    rule(Method::POST, "/api/v1/hooks/{id}", PUBLIC),
    rule(Method::GET, "/api/v1/hooks/{id}/deliveries", VIEWER),
    rule(
        Method::GET,
        "/api/v1/workflows/{name}/pipelines/{pipeline}/hook",
        VIEWER,
    ),
    rule(
        Method::POST,
        "/api/v1/workflows/{name}/pipelines/{pipeline}/hook",
        EDITOR,
    ),
    rule(Method::GET, "/api/v1/runs", VIEWER),
    rule(Method::GET, "/api/v1/runs/{id}", VIEWER),
    rule(Method::POST, "/api/v1/runs/{id}/cancel", EDITOR),
    rule(Method::GET, "/api/v1/runs/{id}/logs", VIEWER),
    rule(Method::GET, "/api/v1/runs/{id}/logs/{task}/{step}", VIEWER),
    rule(Method::GET, "/api/v1/runs/{id}/events", VIEWER),
    rule(Method::GET, "/api/v1/runs/feed", VIEWER),
    // Artifacts: viewers list and download them; keeping a run's past
    // retention is an editor's call (audited).
    rule(Method::GET, "/api/v1/runs/{id}/artifacts", VIEWER),
    rule(Method::GET, "/api/v1/runs/{id}/artifacts/{name}", VIEWER),
    rule(Method::PUT, "/api/v1/runs/{id}/pin", EDITOR),
    rule(Method::DELETE, "/api/v1/runs/{id}/pin", EDITOR),
    rule(Method::GET, "/api/v1/workflows/{name}/artifacts", VIEWER),
    // Caches: viewers see a workflow's entries; removing one is an
    // editor's call (audited).
    rule(Method::GET, "/api/v1/workflows/{name}/caches", VIEWER),
    rule(
        Method::DELETE,
        "/api/v1/workflows/{name}/caches/{id}",
        EDITOR,
    ),
    rule(Method::GET, "/api/v1/stats", VIEWER),
    rule(Method::GET, "/api/v1/dashboard", VIEWER),
    // Agents.
    rule(Method::GET, "/api/v1/agents", VIEWER),
    rule(Method::POST, "/api/v1/agents/join-tokens", ADMIN),
    rule(Method::DELETE, "/api/v1/agents/{id}", ADMIN),
    rule(Method::POST, "/api/v1/agents/{id}/drain", ADMIN),
    rule(Method::DELETE, "/api/v1/agents/{id}/drain", ADMIN),
    // People, tokens and the audit log. Everyone manages their own tokens;
    // the handlers keep them to their own.
    rule(Method::GET, "/api/v1/me", VIEWER),
    rule(Method::GET, "/api/v1/users", ADMIN),
    rule(Method::PATCH, "/api/v1/users/{id}", ADMIN),
    rule(Method::GET, "/api/v1/invites", ADMIN),
    rule(Method::POST, "/api/v1/invites", ADMIN),
    rule(Method::DELETE, "/api/v1/invites/{id}", ADMIN),
    rule(Method::GET, "/api/v1/tokens", VIEWER),
    rule(Method::POST, "/api/v1/tokens", VIEWER),
    rule(Method::DELETE, "/api/v1/tokens/{id}", VIEWER),
    rule(Method::GET, "/api/v1/audit", ADMIN),
    // Names only; values are never read back by anyone.
    rule(Method::GET, "/api/v1/secrets", VIEWER),
    rule(Method::PUT, "/api/v1/secrets/{name}", ADMIN),
    rule(Method::DELETE, "/api/v1/secrets/{name}", ADMIN),
    rule(Method::POST, "/api/v1/secrets/rotate-key", ADMIN),
];

/// Server functions of the web UI: a signed-in viewer at least; those that
/// change anything check a higher role themselves.
pub const SERVER_FN_PREFIX: &str = "/rpc/";
pub const SERVER_FN_ACCESS: Access = VIEWER;

/// Pages anyone may see; every other page needs a signed-in viewer.
pub const PUBLIC_PAGES: &[&str] = &["/signin"];

/// Routes that are not pages but are opened in a browser: a stranger is
/// sent to sign in (and back) instead of getting a 401.
pub const SIGN_IN_FIRST: &[&str] = &["/auth/cli"];

/// The rule for a request, by method and matched path.
pub fn lookup(method: &Method, path: &str) -> Option<Access> {
    if path.starts_with(SERVER_FN_PREFIX) {
        return Some(SERVER_FN_ACCESS);
    }
    let head = *method == Method::HEAD;
    RULES
        .iter()
        .find(|r| {
            r.path == path
                && r.method
                    .as_ref()
                    .is_none_or(|m| m == method || (head && *m == Method::GET))
        })
        .map(|r| r.access)
}

/// The rule for a page of the web UI.
pub fn page_access(path: &str) -> Access {
    if PUBLIC_PAGES.contains(&path) {
        PUBLIC
    } else {
        VIEWER
    }
}
