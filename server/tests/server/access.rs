//! Access over real HTTP: anonymous and cross-site requests change nothing,
//! the host check, every documented route under its rule for every role,
//! API tokens (and every way a bad one is refused), sessions from the
//! one-time link, users and the audit log; on both database backends.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, HOST, HeaderValue, ORIGIN};
use serde_json::{Value, json};
use xene_core::access::Role;
use xene_server::access::rules::{self, Access};

use xene_testkit::{cookie_pair, no_redirects, set_cookie};

use crate::util::{BACKENDS, TestDb, TestServer, client_with_token, response};

/// A shell step that would leave a file behind if it ever ran.
fn pwn_spec(marker: &std::path::Path) -> String {
    format!(
        "name: pwned\npipelines:\n  p:\n    tasks:\n      t:\n        steps:\n          - run: touch {}\n",
        marker.display()
    )
}

/// Signs in through the one-time link; returns the session cookie.
async fn sign_in_with_link(server: &TestServer) -> String {
    let link = server
        .sign_in_link
        .as_deref()
        .expect("a fresh server prints a link");
    let response = no_redirects().get(link).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
    let cookie = set_cookie(&response, "xene_session").expect("a session cookie");
    let flags = cookie.to_ascii_lowercase();
    assert!(
        flags.contains("httponly") && flags.contains("samesite=lax"),
        "{cookie}"
    );
    assert!(
        !flags.contains("secure"),
        "plain HTTP cookies cannot be Secure: {cookie}"
    );
    cookie_pair(&cookie).to_string()
}

/// Signs in through the link of a server whose public URL may be
/// `https://127.0.0.1` (a proxy ending TLS in front): the session cookie's
/// whole Set-Cookie line.
async fn session_set_cookie(server: &TestServer) -> String {
    let link = server.sign_in_link.clone().unwrap();
    let link = link.replacen("https://127.0.0.1", &format!("http://{}", server.addr), 1);
    let signed_in = no_redirects().get(link).send().await.unwrap();
    set_cookie(&signed_in, "xene_session")
        .or_else(|| set_cookie(&signed_in, "__Host-xene_session"))
        .expect("a session cookie")
}

/// Who `/api/v1/me` says a request with this whole Cookie header is.
async fn me_with_cookie(server: &TestServer, cookie: &str) -> (u16, Value) {
    let request = reqwest::Client::new()
        .get(server.url("/api/v1/me"))
        .header(COOKIE, HeaderValue::from_bytes(cookie.as_bytes()).unwrap());
    response(request.send().await.unwrap()).await
}

#[tokio::test]
async fn anonymous_and_cross_site_requests_store_and_run_nothing() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let marker = db.dir.path().join("pwned");
        let anon = reqwest::Client::new();

        // The attack as found: a foreign page POSTs text/plain, no credential.
        for path in [
            "/api/v1/workflows",
            "/api/v1/workflows/pwned/pipelines/p/runs",
        ] {
            let r = anon
                .post(server.url(path))
                .header("content-type", "text/plain")
                .header(ORIGIN, "http://evil.example")
                .body(pwn_spec(&marker))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path}");
        }
        // With a session cookie, from another site: refused too.
        let cookie = sign_in_with_link(&server).await;
        for (header, value) in [
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.example"),
        ] {
            let r = anon
                .post(server.url("/api/v1/workflows"))
                .header("content-type", "text/plain")
                .header(COOKIE, &cookie)
                .header(header, value)
                .body(pwn_spec(&marker))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{header}: {value}");
        }
        // No Origin and no Sec-Fetch-Site: not a browser we can vouch for.
        let r = anon
            .post(server.url("/api/v1/workflows"))
            .header(COOKIE, &cookie)
            .body(pwn_spec(&marker))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);

        let (_, workflows) = server.get("/api/v1/workflows").await;
        assert_eq!(workflows["workflows"], json!([]), "{workflows}");
        let (_, runs) = server.get("/api/v1/runs").await;
        assert_eq!(runs["runs"], json!([]), "{runs}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!marker.exists(), "a refused request ran a step");

        // The same session from our own pages works.
        let r = anon
            .post(server.url("/api/v1/workflows"))
            .header(COOKIE, &cookie)
            .header("sec-fetch-site", "same-origin")
            .body("name: ok\npipelines:\n  p:\n    tasks:\n      t:\n        steps:\n          - run: 'true'\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        server.stop().await;
    }
}

#[tokio::test]
async fn requests_for_other_host_names_are_refused() {
    let db = TestDb::new(crate::util::Backend::Sqlite);
    let server = TestServer::start(&db).await;
    for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example"] {
        let r = server
            .client
            .get(server.url("/api/v1/workflows"))
            .header(HOST, host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 421, "{host}");
    }
    let r = server
        .client
        .get(server.url("/healthz"))
        .header(HOST, format!("localhost:{}", server.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

/// A token of `role` for the local admin (a token never exceeds its role).
async fn token_with_role(server: &TestServer, role: Role) -> String {
    let (status, body) = server
        .post(
            "/api/v1/tokens",
            json!({"name": format!("as {role}"), "role": role}).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_string()
}

/// Every operation of the API document, called with no credential and with
/// each role: refused exactly when its rule says so. A route added without
/// a rule fails here.
#[tokio::test]
async fn every_documented_operation_follows_its_rule_for_every_role() {
    let db = TestDb::new(crate::util::Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let (_, doc) = server.get("/api/v1/openapi.json").await;
    let mut clients = vec![(None, reqwest::Client::new())];
    for role in Role::ALL {
        clients.push((
            Some(role),
            client_with_token(&token_with_role(&server, role).await),
        ));
    }
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let access = rules::lookup(&method, path)
                .unwrap_or_else(|| panic!("{method} {path} has no access rule"));
            // Path parameters get values that name nothing, so allowed calls
            // answer 4xx without changing anything that matters.
            let concrete = path
                .replace("{id}", "999999")
                .replace("{version}", "1")
                .replace(['{', '}'], "");
            for (role, client) in &clients {
                let r = client
                    .request(method.clone(), server.url(&concrete))
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let should = match (access, role) {
                    (Access::Public, _) => None,
                    (Access::Role(_), None) => Some(401),
                    (Access::Role(needed), Some(role)) if *role < needed => Some(403),
                    _ => None,
                };
                match should {
                    Some(code) => assert_eq!(status, code, "{method} {path} as {role:?}"),
                    None => assert!(
                        status != 401 && status != 403 && status < 500,
                        "{method} {path} as {role:?} answered {status}"
                    ),
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} operations documented");
    // Every API rule names a documented operation (or the JSON 404).
    for rule in rules::RULES
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/"))
    {
        let documented = doc["paths"][rule.path]
            .get(rule.method.as_ref().unwrap().as_str().to_lowercase())
            .is_some();
        assert!(
            documented
                || [
                    "/api/v1/agents/connect",
                    // Agents' transfers of artifacts' bytes, by signed URL.
                    "/api/v1/blobs/{digest}",
                    "/api/v1/openapi.json",
                    "/api/v1/docs"
                ]
                .contains(&rule.path),
            "rule for an undocumented route: {:?} {}",
            rule.method,
            rule.path
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_tokens_get_the_same_bare_401() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
        let sealed: String =
            sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'api_token_key'")
                .fetch_one(storage.pool())
                .await
                .unwrap();
        // Sealed under the master key: the test opens it with the key file.
        let vault = xene_server::vault::Vault::load(
            xene_server::vault::KeySource::File(db.dir.path().join("secrets.key")),
            false,
        )
        .unwrap();
        let (key_id, ciphertext) = sealed.split_once(':').unwrap();
        let key_hex = vault
            .open("\0api_token_key", "", key_id, ciphertext)
            .unwrap();
        let key = hex::decode(key_hex).unwrap();
        let now = xene_server::storage::now_ms() / 1000;
        let (_, me) = server.get("/api/v1/me").await;
        let user = me["user"]["id"].as_str().unwrap().to_string();
        let jti = me["token"].as_str().unwrap().to_string();
        let claims = |aud: &str, exp: i64| json!({"iss": "xene", "aud": aud, "sub": user, "jti": jti, "role": "admin", "iat": now, "exp": exp});
        let sign = |alg: Algorithm, claims: Value| {
            jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(&key))
                .unwrap()
        };
        // The real token, with one character of its signature changed.
        let mut tampered = server.token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        let b64 = |v: &Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let alg_none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims("xene-api", now + 3600))
        );
        let (status, revocable) = server
            .post("/api/v1/tokens", r#"{"name": "short-lived"}"#)
            .await;
        assert_eq!(status, 201);
        let revoked = revocable["token"].as_str().unwrap().to_string();
        assert_eq!(
            server
                .delete(&format!(
                    "/api/v1/tokens/{}",
                    revocable["info"]["id"].as_str().unwrap()
                ))
                .await,
            204
        );
        let cases = [
            ("tampered", tampered),
            (
                "expired",
                sign(Algorithm::HS256, claims("xene-api", now - 10)),
            ),
            ("alg none", alg_none),
            (
                "other algorithm",
                sign(Algorithm::HS512, claims("xene-api", now + 3600)),
            ),
            (
                "other audience",
                sign(Algorithm::HS256, claims("other-api", now + 3600)),
            ),
            ("revoked", revoked),
            ("garbage", "not.a.token".into()),
        ];
        for (what, token) in cases {
            let (status, body) = response(
                client_with_token(&token)
                    .get(server.url("/api/v1/workflows"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                (status, body),
                (401, json!({"error": "invalid or expired credentials"})),
                "{what}"
            );
        }
        // A token signed right, for a role its row does not hold, gets only the row's.
        let (_, viewer) = server
            .post(
                "/api/v1/tokens",
                json!({"name": "v", "role": "viewer"}).to_string(),
            )
            .await;
        let viewer_jti = viewer["info"]["id"].as_str().unwrap();
        let forged = sign(
            Algorithm::HS256,
            json!({"iss": "xene", "aud": "xene-api", "sub": user, "jti": viewer_jti, "role": "admin", "iat": now, "exp": now + 3600}),
        );
        let r = client_with_token(&forged)
            .get(server.url("/api/v1/users"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        server.stop().await;
    }
}

#[tokio::test]
async fn tokens_roles_users_and_the_audit_log() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        // The local admin token is for this machine's owner only.
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(db.dir.path().join("admin-token"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let editor = client_with_token(&token_with_role(&server, Role::Editor).await);
        // No token above its creator's role.
        let r = editor
            .post(server.url("/api/v1/tokens"))
            .body(json!({"name": "up", "role": "admin"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // Editors run things but manage no agents or people.
        for (method, path) in [
            ("POST", "/api/v1/agents/join-tokens"),
            ("GET", "/api/v1/users"),
            ("GET", "/api/v1/audit"),
        ] {
            let r = editor
                .request(method.parse().unwrap(), server.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{method} {path}");
        }
        for bad in [
            json!({"name": ""}),
            json!({"name": "x", "role": "root"}),
            json!({"name": "x", "expires_in": "5y"}),
            json!({"name": "x", "extra": 1}),
        ] {
            let (status, _) = server.post("/api/v1/tokens", bad.to_string()).await;
            assert_eq!(status, 400, "{bad}");
        }

        // A token made with a token ends with it and is revoked with it.
        let (_, parent) = server
            .post(
                "/api/v1/tokens",
                json!({"name": "short", "expires_in": "1h"}).to_string(),
            )
            .await;
        let parent_client = client_with_token(parent["token"].as_str().unwrap());
        let (status, child) = response(
            parent_client
                .post(server.url("/api/v1/tokens"))
                .body(json!({"name": "long", "expires_in": "300d"}).to_string())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 201, "{child}");
        assert!(
            child["info"]["expires_at"].as_i64() <= parent["info"]["expires_at"].as_i64(),
            "{child} outlives {parent}"
        );
        let child_client = client_with_token(child["token"].as_str().unwrap());
        let me = child_client
            .get(server.url("/api/v1/me"))
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
        let revoke = format!("/api/v1/tokens/{}", parent["info"]["id"].as_str().unwrap());
        assert_eq!(server.delete(&revoke).await, 204);
        let me = child_client
            .get(server.url("/api/v1/me"))
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 401, "the child outlived its revoked parent");

        // The first admin signs in with the link, which works once.
        let cookie = sign_in_with_link(&server).await;
        let again = no_redirects()
            .get(server.sign_in_link.as_deref().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(again.headers()["location"], "/signin?error=link_invalid");
        let session = |req: reqwest::RequestBuilder| {
            req.header(COOKIE, &cookie)
                .header("sec-fetch-site", "same-origin")
        };
        let me: Value = session(reqwest::Client::new().get(server.url("/api/v1/me")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["role"], "admin", "{me}");
        let first_admin = me["user"]["id"].as_str().unwrap().to_string();

        // The last person who is admin cannot be demoted.
        let (status, body) = response(
            server
                .client
                .patch(server.url(&format!("/api/v1/users/{first_admin}")))
                .body(r#"{"role": "viewer"}"#)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 409, "{body}");

        // An invite decides a newcomer's role.
        let (status, invite) = server
            .post(
                "/api/v1/invites",
                json!({"domain": "example.com", "role": "editor"}).to_string(),
            )
            .await;
        assert_eq!(status, 201, "{invite}");
        for bad in [
            json!({"role": "editor"}),
            json!({"email": "a@b.c", "domain": "b.c", "role": "editor"}),
            json!({"domain": "no dots", "role": "viewer"}),
        ] {
            assert_eq!(
                server.post("/api/v1/invites", bad.to_string()).await.0,
                400,
                "{bad}"
            );
        }

        // Signing out ends the session on the server: the old cookie is worthless.
        let out = session(no_redirects().post(server.url("/auth/logout")))
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::SEE_OTHER);
        let r = session(reqwest::Client::new().get(server.url("/api/v1/me")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);

        // Pages send strangers to sign in, and show the sign-in page to them.
        let r = no_redirects().get(server.url("/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/signin?next=/");
        let r = no_redirects()
            .get(server.url("/signin"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        let (_, audit) = server.get("/api/v1/audit?limit=500").await;
        let actions: Vec<&str> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        for action in [
            "token.create",
            "sign_in.ok",
            "sign_in.refused",
            "invite.put",
        ] {
            assert!(
                actions.contains(&action),
                "{action} missing from {actions:?}"
            );
        }
        let sign_in = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "sign_in.ok")
            .unwrap();
        assert_eq!(sign_in["remote"], "127.0.0.1", "{sign_in}");
        server.stop().await;

        // Once a person is admin, a restart prints no link.
        let server = TestServer::start(&db).await;
        assert!(server.sign_in_link.is_none());
        server.stop().await;
    }
}

/// #22: a viewer token given to a dashboard could revoke its user's admin
/// tokens (the local admin token among them) and list them.
#[tokio::test]
async fn a_token_neither_sees_nor_revokes_a_stronger_one() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let (_, me) = server.get("/api/v1/me").await;
        let admin_jti = me["token"].as_str().unwrap().to_string();
        let viewer = client_with_token(&token_with_role(&server, Role::Viewer).await);
        let (status, mine) =
            response(viewer.get(server.url("/api/v1/me")).send().await.unwrap()).await;
        assert_eq!(status, 200, "{mine}");
        let viewer_jti = mine["token"].as_str().unwrap().to_string();

        let (status, list) = response(
            viewer
                .get(server.url("/api/v1/tokens"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{list}");
        let ids: Vec<&str> = list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&viewer_jti.as_str()), "{ids:?}");
        assert!(
            !ids.contains(&admin_jti.as_str()),
            "a viewer token lists {ids:?}"
        );

        let (status, body) = response(
            viewer
                .delete(server.url(&format!("/api/v1/tokens/{admin_jti}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        let (status, _) = server.get("/api/v1/me").await;
        assert_eq!(status, 200, "the local admin token still works");

        // Its own kind it may revoke: itself.
        let r = viewer
            .delete(server.url(&format!("/api/v1/tokens/{viewer_jti}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        server.stop().await;
    }
}

/// #42 and #28: an `Origin` of another scheme is another site, and a
/// request with two session cookies is refused; over HTTPS the cookie is
/// `__Host-` (no other host can set it).
#[tokio::test]
async fn the_origin_check_takes_the_scheme_and_one_session_cookie_is_allowed() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let cookie = sign_in_with_link(&server).await;
        let create = |origin: String, cookie: &str| {
            reqwest::Client::new()
                .post(server.url("/api/v1/tokens"))
                .header(COOKIE, cookie)
                .header(ORIGIN, origin)
                .body(json!({"name": "from a page"}).to_string())
                .send()
        };
        let r = create(format!("https://{}", server.addr), &cookie)
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "another scheme passed the origin check");
        let r = create(format!("http://{}", server.addr), &cookie)
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "our own origin");

        let planted = "xene_session=planted-by-a-sibling";
        for two in [
            format!("{planted}; {cookie}"),
            format!("{cookie}; {planted}"),
        ] {
            let (status, body) = me_with_cookie(&server, &two).await;
            assert_eq!(status, 401, "{two}: {body}");
        }
        server.stop().await;
    }

    // Behind a proxy that ends TLS: the public URL says HTTPS.
    let db = TestDb::new(crate::util::Backend::Sqlite);
    let server = TestServer::start_with(&db, |args| {
        args.public_url = Some("https://127.0.0.1".into())
    })
    .await;
    let set = session_set_cookie(&server).await;
    let flags = set.to_ascii_lowercase();
    assert!(set.starts_with("__Host-xene_session="), "{set}");
    assert!(
        flags.contains("; secure") && flags.contains("; path=/") && !flags.contains("domain="),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    assert_eq!(me_with_cookie(&server, &cookie).await.0, 200);
    let two = format!("{cookie}; {cookie}");
    assert_eq!(me_with_cookie(&server, &two).await.0, 401);
    server.stop().await;
}

/// L4 bypasses: the session layer percent-decodes cookie names and reads
/// non-ASCII headers, so `xene%5Fsession` (or `%5F%5FHost-xene_session`,
/// which a sibling subdomain may set) was read as the session cookie,
/// alone (login CSRF) or beside the real one, past the two-cookie check.
#[tokio::test]
async fn encoded_or_non_ascii_session_cookies_are_not_read() {
    for https in [false, true] {
        let db = TestDb::new(crate::util::Backend::Sqlite);
        let server = TestServer::start_with(&db, |args| {
            if https {
                args.public_url = Some("https://127.0.0.1".into());
            }
        })
        .await;
        let set = session_set_cookie(&server).await;
        let cookie = set.split(';').next().unwrap().to_string();
        let (name, id) = cookie.split_once('=').unwrap();
        let encoded = format!("{}={id}", name.replace('_', "%5F"));
        assert_eq!(me_with_cookie(&server, &cookie).await.0, 200);
        for value in [
            encoded.clone(),
            format!("{cookie}; {encoded}"),
            format!("{encoded}; {cookie}"),
            format!("{cookie}; x=\u{e9}; {cookie}"),
        ] {
            let (status, body) = me_with_cookie(&server, &value).await;
            assert_eq!(status, 401, "https {https}, {value}: {body}");
        }
        server.stop().await;
    }
}
