//! Who is asking: the principal a request acts as, and what a browser
//! session remembers about its user.

use serde::{Deserialize, Serialize};
use xene_core::access::Role;

/// Who is asking, for handlers that need it (`Extension<Principal>`).
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
    /// The API token used, if any (absent for a browser session).
    pub token: Option<String>,
    pub remote: String,
}

/// What a browser session holds about its user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionUser {
    pub user_id: String,
    /// UTC ms: the session ends `--session-max` after this.
    pub signed_in_at: i64,
    /// UTC ms, to the minute: each refresh extends the idle expiry.
    pub seen_at: i64,
}

/// The session key `SessionUser` is stored under.
pub const SESSION_USER: &str = "user";
