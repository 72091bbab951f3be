//! The web UI's pages as HTTP sees them: what does not exist answers 404
//! with the same page (and top bar) as every other, the sign-in page shows
//! only the ways to sign in that are set up (in the HTML, not after it),
//! the secrets page reads the workflows for admins only, and an API refusal
//! read through the UI's server function is an answer, not a 500.

use reqwest::header::{COOKIE, HeaderValue};
use xene_api::paths;
use xene_testkit::session::{cookie_pair, no_redirects, set_cookie};

use crate::util::{TestDb, TestServer};

/// A signed-in browser's requests: the session cookie of the first admin.
async fn session(server: &TestServer) -> HeaderValue {
    let link = server.sign_in_link.as_deref().expect("a sign-in link");
    let response = no_redirects().get(link).send().await.unwrap();
    let cookie = set_cookie(&response, "xene_session").expect("a session cookie");
    HeaderValue::from_str(cookie_pair(&cookie)).unwrap()
}

async fn page(server: &TestServer, cookie: &HeaderValue, path: &str) -> (u16, String) {
    let response = no_redirects()
        .get(server.url(path))
        .header(COOKIE, cookie.clone())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Bugs 8, 11 and 15 of the newcomer's walk.
#[tokio::test]
async fn missing_things_answer_404_signin_shows_what_is_set_up_and_rpc_never_500s() {
    let db = TestDb::new(crate::util::Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let cookie = session(&server).await;
    let (status, body) = server
        .post(
            &paths::workflows(),
            "name: here\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [\"true\"]\n",
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // One "not found" page, answered 404, with the admin's top bar.
    for path in [
        "/runs/99999",
        "/runs/abc",
        "/workflows/nope",
        "/no/such/page",
    ] {
        let (status, body) = page(&server, &cookie, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains(r#"id="not-found""#), "{path}: {body}");
        assert!(
            body.contains("<title>Not found · Xene</title>"),
            "{path}: {body}"
        );
        assert!(
            body.contains(r#"href="/audit""#),
            "{path} lacks the admin's links: {body}"
        );
        assert!(
            body.contains("first admin"),
            "{path} lacks who is signed in: {body}"
        );
    }
    for path in ["/", "/workflows/here", "/audit", "/secrets"] {
        let (status, body) = page(&server, &cookie, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.contains(r#"id="not-found""#), "{path}: {body}");
    }
    // The dashboard's board is in the HTML, not left for scripts to fill.
    let (_, home) = page(&server, &cookie, "/").await;
    assert!(home.contains(r#"id="dashboard-counts""#), "{home}");

    // The sign-in page: a title, no provider's button when none is set up,
    // no literal backticks.
    let (status, methods) = server.get(&paths::sign_in_methods()).await;
    assert_eq!(status, 200);
    assert_eq!(methods["provider"], serde_json::Value::Null, "{methods}");
    let signin = reqwest::get(server.url("/signin?error=link_invalid"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(signin.contains("<title>Sign in · Xene</title>"), "{signin}");
    assert!(signin.contains(r#"id="no-provider""#), "{signin}");
    assert!(!signin.contains("sign-in-oidc"), "{signin}");
    // The page's words (its scripts may hold backticks of their own).
    let card = signin
        .split_once(r#"class="card signin""#)
        .and_then(|(_, rest)| rest.split_once("</section>"))
        .map(|(card, _)| card)
        .expect("the sign-in card");
    // In place, not in a chunk streamed after the page for scripts to move:
    // without them the page says how to sign in all the same.
    assert!(card.contains(r#"id="no-provider""#), "{card}");
    assert!(!signin.contains("Loading the ways to sign in"), "{signin}");
    assert!(card.contains("<code>xene</code>"), "{card}");
    assert!(!card.contains('`'), "{card}");

    // The secrets page reads the workflows for an admin's scope picker,
    // and for nobody else (`summaries` is a field of the list only).
    let (status, secrets) = page(&server, &cookie, "/secrets").await;
    assert_eq!(status, 200, "{secrets}");
    assert!(
        secrets.contains(r#"<option value="here">Workflow here<"#),
        "{secrets}"
    );
    assert!(secrets.contains("summaries"), "{secrets}");
    let (status, viewer) = server
        .post(
            &paths::tokens(),
            r#"{"name": "a viewer", "role": "viewer"}"#,
        )
        .await;
    assert_eq!(status, 201, "{viewer}");
    let response = no_redirects()
        .get(server.url("/secrets"))
        .bearer_auth(viewer["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let secrets = response.text().await.unwrap();
    assert!(
        secrets.contains("Only admins create, replace and delete secrets."),
        "{secrets}"
    );
    assert!(!secrets.contains("summaries"), "{secrets}");

    // The UI's server function hands on the API's 404 as an answer.
    let rpc = reqwest::Client::new()
        .post(server.url("/rpc/api_call"))
        .header(COOKIE, cookie.clone())
        .header("sec-fetch-site", "same-origin")
        .form(&[("method", "GET"), ("path", "/api/v1/runs/99999")])
        .send()
        .await
        .unwrap();
    let status = rpc.status().as_u16();
    let text = rpc.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let (api_status, body): (u16, String) = serde_json::from_str(&text).unwrap();
    assert_eq!(api_status, 404, "{body}");
    assert!(body.contains("no run with id 99999"), "{body}");
    server.stop().await;
}
