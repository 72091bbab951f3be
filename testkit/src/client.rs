//! Talking to a server's API as the tests do: with a bearer token, JSON
//! both ways, every answer's status at hand.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

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
pub fn admin_client(data_dir: &Path) -> reqwest::Client {
    client_with_token(&admin_token(data_dir))
}

/// The status and JSON body of a response; every API answer is JSON, errors
/// too (an empty body reads as `null`).
pub async fn response(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}

/// A server's API at `base` (`http://host:port`), through `http` (which
/// usually sends a token).
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(base: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            base: base.into(),
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs `path`, which must succeed, as a `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> T {
        let sent = self.http.get(self.url(path)).send().await.expect("GET");
        success("GET", path, sent).await
    }

    /// POSTs `body` (YAML, JSON text, nothing) to `path`, which must succeed.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: impl Into<reqwest::Body>) -> T {
        let sent = self
            .http
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .expect("POST");
        success("POST", path, sent).await
    }

    /// POSTs `body` as JSON (with its content type) to `path`, which must
    /// succeed.
    pub async fn post_json<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> T {
        let sent = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        success("POST", path, sent).await
    }

    /// GETs `path`: the status and the JSON body, whatever the status.
    pub async fn get_status(&self, path: &str) -> (u16, Value) {
        response(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    /// POSTs `body` to `path`: the status and the JSON body, whatever the
    /// status.
    pub async fn post_status(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let sent = self
            .http
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .expect("POST");
        response(sent).await
    }

    /// DELETEs `path`: the status.
    pub async fn delete_status(&self, path: &str) -> u16 {
        let sent = self.http.delete(self.url(path)).send().await;
        sent.expect("DELETE").status().as_u16()
    }

    /// Applies a workflow written in YAML; it must be accepted.
    pub async fn apply(&self, yaml: &str) {
        let (status, body) = self
            .post_status("/api/v1/workflows", yaml.to_string())
            .await;
        assert!(status == 201 || status == 200, "apply: {status} {body}");
    }

    /// A one-time join token for an agent with these labels.
    pub async fn join_token(&self, labels: Value) -> String {
        let (status, token) = self
            .post_status(
                "/api/v1/agents/join-tokens",
                json!({ "labels": labels }).to_string(),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        token["token"].as_str().expect("a join token").to_string()
    }
}

async fn success<T: DeserializeOwned>(method: &str, path: &str, response: reqwest::Response) -> T {
    assert!(
        response.status().is_success(),
        "{method} {path}: {}",
        response.status()
    );
    response.json().await.expect("JSON")
}
