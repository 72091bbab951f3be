//! Signing in as a browser does: an answer read without following its
//! redirect, and the session cookie it sets.

/// A client that does not follow redirects, for reading a sign-in's answer.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The whole `Set-Cookie` line of the cookie named `name` that `response`
/// sets, attributes included.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&prefix))
        .map(str::to_string)
}

/// The `name=value` of a `Set-Cookie` line, as a `Cookie` header sends it.
pub fn cookie_pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap_or_default()
}
