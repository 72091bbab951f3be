//! `xenectl login`'s server side: a signed-in browser at `/auth/cli` is
//! asked to allow it, whatever site sent it there; Allow (a same-origin
//! POST) hands a one-time code on a loopback redirect, which
//! `POST /auth/cli/token` spends once, before it expires, and only with the
//! PKCE verifier of the challenge xenectl sent, for an API token; on both
//! backends.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN};
use serde_json::{Value, json};

use xene_testkit::{cookie_pair, no_redirects, set_cookie};

use crate::util::{BACKENDS, TestDb, TestServer, client_with_token, response};

const STATE: &str = "abcdefghijklmnop-_0123";
/// RFC 7636, appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn session(server: &TestServer) -> String {
    let link = server.sign_in_link.as_deref().expect("a sign-in link");
    let response = no_redirects().get(link).send().await.unwrap();
    let cookie = set_cookie(&response, "xene_session").expect("a session cookie");
    cookie_pair(&cookie).to_string()
}

/// What xenectl opens: its port, state and challenge.
fn asking(port: u32) -> String {
    format!("port={port}&state={STATE}&code_challenge={CHALLENGE}&code_challenge_method=S256")
}

/// `GET /auth/cli?QUERY` with the session, as `site` sends it: the status,
/// `Location` and the page.
async fn start(
    server: &TestServer,
    cookie: Option<&str>,
    query: &str,
    site: &str,
) -> (StatusCode, String, String) {
    let mut request = no_redirects()
        .get(server.url(&format!("/auth/cli?{query}")))
        .header("sec-fetch-site", site);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, response.text().await.unwrap())
}

/// The person's answer, posted as the page's form does, with `header`
/// saying where it comes from: the status and `Location`.
async fn answer(
    server: &TestServer,
    cookie: &str,
    decision: &str,
    header: (&str, &str),
) -> (StatusCode, String) {
    let response = no_redirects()
        .post(server.url("/auth/cli"))
        .header(COOKIE, cookie)
        .header(header.0, header.1)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!(
            "port=5000&state={STATE}&code_challenge={CHALLENGE}&decision={decision}"
        ))
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (response.status(), location)
}

/// A fresh code for the signed-in user: the question, Allow, and the code
/// from the redirect's query.
async fn code(server: &TestServer, cookie: &str) -> String {
    let (status, _, page) = start(server, Some(cookie), &asking(5000), "none").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, location) =
        answer(server, cookie, "allow", ("sec-fetch-site", "same-origin")).await;
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
        let (status, location, _) = start(&server, None, &asking(5000), "none").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(
            location.starts_with("/signin?next=/auth/cli%3Fport%3D5000"),
            "{location}"
        );

        let cookie = session(&server).await;
        let pkce = format!("code_challenge={CHALLENGE}");
        for bad in [
            format!("port=80&state={STATE}&{pkce}"),
            format!("port=65536&state={STATE}&{pkce}"),
            format!("port=5000&state=short&{pkce}"),
            format!("port=5000&state={STATE}%26x%3D1&{pkce}"),
            format!("port=5000&state={}&{pkce}", "a".repeat(129)),
            format!("port=5000&{pkce}"),
            format!("state={STATE}&{pkce}"),
            // No PKCE, or not S256, or not a challenge.
            format!("port=5000&state={STATE}"),
            format!("port=5000&state={STATE}&{pkce}&code_challenge_method=plain"),
            format!("port=5000&state={STATE}&code_challenge={VERIFIER}x"),
        ] {
            let (status, location, _) = start(&server, Some(&cookie), &bad, "none").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {location}");
        }
        // A token cannot mint tokens this way: only a person at a browser.
        let (status, body) = response(
            client_with_token(&server.token)
                .get(server.url(&format!("/auth/cli?{}", asking(5000))))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403, "{body}");

        let first = code(&server, &cookie).await;
        let (status, answer) = exchange(
            &server,
            json!({"code": first, "code_verifier": VERIFIER, "hostname": "box-1"}),
        )
        .await;
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
        let (status, body) =
            exchange(&server, json!({"code": first, "code_verifier": VERIFIER})).await;
        assert_eq!(status, 401, "{body}");

        // Not after it expires.
        let late = code(&server, &cookie).await;
        let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE cli_codes SET expires_at = 0 WHERE used_at IS NULL")
            .execute(storage.pool())
            .await
            .unwrap();
        let (status, body) =
            exchange(&server, json!({"code": late, "code_verifier": VERIFIER})).await;
        assert_eq!(status, 401, "{body}");

        // Nor made up, nor malformed.
        let (status, _) = exchange(
            &server,
            json!({"code": format!("xcc_{}", "0".repeat(64)), "code_verifier": VERIFIER}),
        )
        .await;
        assert_eq!(status, 401);
        let (status, _) = exchange(&server, json!({"nope": 1})).await;
        assert!((400..500).contains(&status), "{status}");

        // Without a host name the token is just `xenectl`; it is audited.
        let third = code(&server, &cookie).await;
        let (status, answer) =
            exchange(&server, json!({"code": third, "code_verifier": VERIFIER})).await;
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

/// #32: a foreign page that navigates a signed-in browser to `/auth/cli`
/// gets the question, not a code; the answer is a same-origin POST; and a
/// code is worth nothing without the verifier, which the first wrong try
/// burns.
#[tokio::test]
async fn a_cross_site_visit_gets_the_question_and_a_code_needs_its_verifier() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let cookie = session(&server).await;

        let (status, location, page) =
            start(&server, Some(&cookie), &asking(4444), "cross-site").await;
        assert_eq!(status, StatusCode::OK, "{location}");
        assert!(location.is_empty(), "a redirect: {location}");
        assert!(
            page.contains(
                "xenectl on this machine asks for an API token with role <strong>admin</strong>"
            ),
            "{page}"
        );
        assert!(
            page.contains(">Allow<") && page.contains(">Deny<"),
            "{page}"
        );
        assert!(!page.contains("xcc_"), "a code in the page: {page}");

        // Allow from another site is refused like any cross-site change.
        for header in [
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.example"),
        ] {
            let (status, location) = answer(&server, &cookie, "allow", header).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{header:?}: {location}");
        }
        let origin = format!("http://{}", server.addr);
        let (status, location) = answer(&server, &cookie, "deny", (ORIGIN.as_str(), &origin)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(
            location,
            format!("http://127.0.0.1:5000/callback?error=access_denied&state={STATE}")
        );

        // Without the verifier, or with another one: refused, and burnt.
        let other = "x".repeat(43);
        for first_try in [json!({}), json!({"code_verifier": other})] {
            let code = code(&server, &cookie).await;
            let mut body = first_try.clone();
            body["code"] = json!(code);
            let (status, answer) = exchange(&server, body).await;
            assert_eq!(status, 401, "{first_try}: {answer}");
            let (status, answer) =
                exchange(&server, json!({"code": code, "code_verifier": VERIFIER})).await;
            assert_eq!(status, 401, "after {first_try}: {answer}");
        }
        let code = code(&server, &cookie).await;
        let (status, answer) =
            exchange(&server, json!({"code": code, "code_verifier": VERIFIER})).await;
        assert_eq!(status, 201, "{answer}");
        server.stop().await;
    }
}
