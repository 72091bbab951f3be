//! Acting as the local admin: the token a server writes into its data
//! directory at start, sent with every request; and a data directory a
//! server accepts.

use std::path::Path;

/// The local admin token a server wrote into its data directory.
pub fn admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin-token"))
        .expect("the server writes its local admin token")
        .trim()
        .to_string()
}

/// A client that sends `token` with every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .expect("a token is a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A client acting as the local admin of the server with this data directory.
#[allow(dead_code)]
pub fn admin_client(data_dir: &Path) -> reqwest::Client {
    client_with_token(&admin_token(data_dir))
}

/// A temporary data directory only its owner enters (mode 0700): what a
/// server accepts, since it refuses one others can enter.
#[allow(dead_code)]
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("temp dir")
}
