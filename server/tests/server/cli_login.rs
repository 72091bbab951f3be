//! `xenectl login`'s server side: a signed-in browser at `/auth/cli` gets
//! a one-time code on a loopback redirect, which `POST /auth/cli/token`
//! spends once, before it expires, for an API token; on both backends.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::util::{BACKENDS, TestDb, TestServer, client_with_token, response};

const STATE: &str = "abcdefghijklmnop-_0123";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn session(server: &TestServer) -> String {
    let link = server.sign_in_link.as_deref().expect("a sign-in link");
    let response = no_redirects().get(link).send().await.unwrap();
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("xene_session="))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// `GET /auth/cli?QUERY` with the session: the status and `Location`.
async fn start(server: &TestServer, cookie: Option<&str>, query: &str) -> (StatusCode, String) {
    let mut request = no_redirects().get(server.url(&format!("/auth/cli?{query}")));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (response.status(), location)
}

/// A fresh code for the signed-in user, from the redirect's query.
async fn code(server: &TestServer, cookie: &str) -> String {
    let (status, location) = start(server, Some(cookie), &format!("port=5000&state={STATE}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let query = location
        .strip_prefix("http://127.0.0.1:5000/callback?")
        .unwrap_or_else(|| panic!("a loopback callback: {location}"));
    assert!(query.ends_with(&format!("&state={STATE}")), "{location}");
    query
        .split('&')
        .find_map(|p| p.strip_prefix("code="))
        .expect("a code")
        .to_string()
}

async fn exchange(server: &TestServer, body: Value) -> (u16, Value) {
    response(
        reqwest::Client::new()
            .post(server.url("/auth/cli/token"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_signed_in_browser_hands_xenectl_a_one_time_code() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;

        // A stranger is sent to sign in, and back here afterwards.
        let (status, location) = start(&server, None, &format!("port=5000&state={STATE}")).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(
            location.starts_with("/signin?next=/auth/cli%3Fport%3D5000"),
            "{location}"
        );

        let cookie = session(&server).await;
        for bad in [
            format!("port=80&state={STATE}"),
            format!("port=65536&state={STATE}"),
            "port=5000&state=short".to_string(),
            format!("port=5000&state={STATE}%26x%3D1"),
            format!("port=5000&state={}", "a".repeat(129)),
            "port=5000".to_string(),
            format!("state={STATE}"),
        ] {
            let (status, location) = start(&server, Some(&cookie), &bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {location}");
        }
        // A token cannot mint tokens this way: only a person at a browser.
        let (status, body) = response(
            client_with_token(&server.token)
                .get(server.url(&format!("/auth/cli?port=5000&state={STATE}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403, "{body}");

        let first = code(&server, &cookie).await;
        let (status, answer) = exchange(&server, json!({"code": first, "hostname": "box-1"})).await;
        assert_eq!(status, 201, "{answer}");
        let token = answer["token"].as_str().unwrap();
        assert_eq!(answer["info"]["name"], "xenectl on box-1");
        let (status, me) = response(
            client_with_token(token)
                .get(server.url("/api/v1/me"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["role"], "admin", "the user's role: {me}");
        assert_eq!(me["token"], answer["info"]["id"]);

        // Once only.
        let (status, body) = exchange(&server, json!({"code": first})).await;
        assert_eq!(status, 401, "{body}");

        // Not after it expires.
        let late = code(&server, &cookie).await;
        let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE cli_codes SET expires_at = 0 WHERE used_at IS NULL")
            .execute(storage.pool())
            .await
            .unwrap();
        let (status, body) = exchange(&server, json!({"code": late})).await;
        assert_eq!(status, 401, "{body}");

        // Nor made up, nor malformed.
        let (status, _) =
            exchange(&server, json!({"code": format!("xcc_{}", "0".repeat(64))})).await;
        assert_eq!(status, 401);
        let (status, _) = exchange(&server, json!({"nope": 1})).await;
        assert!((400..500).contains(&status), "{status}");

        // Without a host name the token is just `xenectl`; it is audited.
        let third = code(&server, &cookie).await;
        let (status, answer) = exchange(&server, json!({"code": third})).await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["info"]["name"], "xenectl");
        let (_, audit) = server.get("/api/v1/audit").await;
        let logged = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["action"] == "token.create"
                    && e["detail"].as_str().unwrap().contains("xenectl login")
            })
            .count();
        assert_eq!(logged, 2, "{audit}");
        server.stop().await;
    }
}
