//! Files between tasks on different agents, as a person sees them (issue
//! 25): a three-task pipeline where `build` publishes a binary and `test`
//! and `package` need it, chosen by selector onto two real `xene-agent
//! connect` processes; the run page lists each task's artifacts (name,
//! files, size, hash) with download links, and the binary downloaded
//! through the page's link is the very file `build` wrote. The same
//! pipeline with the local store and with S3 (moto, authentication on).
//! Screenshots under `target/screenshots/`.

use xene_testkit::{Agent, S3};

use crate::util::{Browser, TestServer};

/// The binary `build` writes, as `printf` writes it.
const BINARY: &str = "#!/bin/sh\necho 'ship 1.0'\n";

const PIPELINE: &str = r#"
name: ship
pipelines:
  release:
    tasks:
      build:
        selector: {role: builder}
        steps:
          - name: compile
            run: |
              mkdir -p dist
              printf '#!/bin/sh\necho %s\n' "'ship 1.0'" > dist/ship
              chmod 755 dist/ship
        publish:
          - name: binary
            path: dist/ship
      test:
        depends_on: [build]
        selector: {role: tester}
        needs: [binary]
        steps:
          - name: run
            run: ./ship | grep 'ship 1.0'
      package:
        depends_on: [build]
        selector: {role: builder}
        needs:
          - name: binary
            path: pkg/bin
        steps:
          - name: pack
            run: test -x pkg/bin/ship && tar cf ship.tar pkg
        publish:
          - name: package
            path: ship.tar
"#;

/// What the page showed, for the asserts after the browser closed.
#[derive(Debug)]
struct Seen {
    agents: serde_json::Value,
    section: String,
    downloaded: serde_json::Value,
    digest_shown: bool,
    axe: Vec<String>,
}

async fn walk(browser: &Browser, server: &TestServer, store: &str) -> Result<Seen, String> {
    browser.sign_in_as_admin(server).await?;
    browser.goto(&server.url("/runs")).await?;
    browser.hydrated().await?;
    let mut agents = Vec::new();
    for role in ["builder", "tester"] {
        let (status, body) = browser
            .api(
                "POST",
                "/api/v1/agents/join-tokens",
                &serde_json::json!({ "labels": { "role": role } }).to_string(),
            )
            .await?;
        if status != 201 {
            return Err(format!("join token: {status} {body}"));
        }
        let token: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let agent = Agent::start(
            &server.url(""),
            token["token"].as_str().unwrap_or_default(),
            dir.path(),
            role,
            &["--allow-shell"],
        );
        agents.push((agent, dir));
    }
    let (status, body) = browser.api("POST", "/api/v1/workflows", PIPELINE).await?;
    if status != 201 {
        return Err(format!("apply: {status} {body}"));
    }
    let (status, body) = browser
        .api("POST", "/api/v1/workflows/ship/pipelines/release/runs", "")
        .await?;
    if status != 201 {
        return Err(format!("start: {status} {body}"));
    }
    let run: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let id = run["id"].as_i64().unwrap_or_default();
    browser.goto(&server.url(&format!("/runs/{id}"))).await?;
    browser.hydrated().await?;
    let status = browser
        .wait_for_text("h1 .status", |t| t == "success" || t == "error")
        .await?;
    if status != "success" {
        let logs: Vec<String> = agents.iter().map(|(a, _)| a.log_text()).collect();
        return Err(format!("the run ended {status}: {logs:?}"));
    }
    // Which agent ran each task.
    let agents_of = browser
        .js(
            "return Object.fromEntries(['build', 'test', 'package'].map(t => [t, \
             document.querySelector(`li[data-task=\"${t}\"] .task-agent`)?.textContent ?? '']))",
        )
        .await?;
    // The section comes once the browser read the listing; folded on a
    // narrow page, a click on its summary opens it.
    browser
        .wait_for(
            "the artifacts section",
            "return document.getElementById('artifacts')",
        )
        .await?;
    if browser
        .js("return document.getElementById('artifacts').open")
        .await?
        != true
    {
        browser.click("#artifacts > summary").await?;
    }
    let section = browser
        .wait_for_text("#artifacts", |t| {
            t.contains("binary") && t.contains("package")
        })
        .await?;
    browser
        .screenshot(&format!("run-artifacts-{store}"))
        .await?;
    // The listing's digest of the binary is on the page.
    let (_, listing) = browser
        .api("GET", &format!("/api/v1/runs/{id}/artifacts"), "")
        .await?;
    let listing: serde_json::Value = serde_json::from_str(&listing).map_err(|e| e.to_string())?;
    let digest = listing["artifacts"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "binary"))
        .map(|b| {
            b["entries"][0]["digest"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    let short = &digest[..digest.len().min("sha256:".len() + 12)];
    let digest_shown = !short.is_empty() && section.contains(short);
    // Download through the page's own link, with the page's session.
    let downloaded = browser
        .client
        .execute_async(
            "const done = arguments[0]; \
             const a = [...document.querySelectorAll('#artifacts a[href]')] \
               .find(a => a.getAttribute('href').includes('/artifacts/binary')); \
             if (!a) { done(null); return; } \
             fetch(a.href).then(async r => done({ \
               href: a.getAttribute('href'), status: r.status, \
               disposition: r.headers.get('content-disposition'), \
               text: await r.text() })).catch(e => done({ error: String(e) }));",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    let axe = browser.axe().await?;
    drop(agents);
    Ok(Seen {
        agents: agents_of,
        section,
        downloaded,
        digest_shown,
        axe,
    })
}

fn check(seen: &Seen) {
    assert_eq!(
        seen.agents["build"], seen.agents["package"],
        "{:?}",
        seen.agents
    );
    assert_ne!(
        seen.agents["build"], seen.agents["test"],
        "{:?}",
        seen.agents
    );
    assert!(
        seen.section.contains("binary") && seen.section.contains("package"),
        "{}",
        seen.section
    );
    assert!(
        seen.digest_shown,
        "the binary's hash is not on the page: {}",
        seen.section
    );
    assert_eq!(seen.downloaded["status"], 200, "{}", seen.downloaded);
    assert_eq!(seen.downloaded["text"], BINARY, "{}", seen.downloaded);
    let disposition = seen.downloaded["disposition"].as_str().unwrap_or_default();
    assert!(disposition.starts_with("attachment"), "{}", seen.downloaded);
    assert!(seen.axe.is_empty(), "axe: {:?}", seen.axe);
}

#[tokio::test]
async fn a_binary_goes_from_build_to_test_and_package_and_downloads_from_the_run_page() {
    let s3 = S3::start();
    let browser = Browser::start().await;
    let mut seen = Vec::new();
    for store in ["local", "s3"] {
        let server = TestServer::start_with(|args| {
            args.no_local_agent = true;
            if store == "s3" {
                use xene_server::config::artifacts::StoreKind;
                let a = &mut args.artifacts;
                a.artifact_store = StoreKind::S3;
                a.s3_endpoint = Some(s3.endpoint.clone());
                a.s3_bucket = Some(s3.bucket.clone());
                a.s3_region = s3.region.clone();
                a.s3_access_key_id = Some(s3.access_key_id.clone());
                a.s3_secret_access_key = Some(s3.secret_access_key.clone());
            }
        })
        .await;
        let outcome = async {
            browser.set_size(1280, 900).await?;
            walk(&browser, &server, store).await
        }
        .await;
        seen.push((store, outcome));
    }
    browser.close().await;
    let seen: Vec<(&str, Seen)> = seen
        .into_iter()
        .map(|(store, outcome)| (store, outcome.unwrap_or_else(|e| panic!("{store}: {e}"))))
        .collect();
    for (store, seen) in &seen {
        eprintln!("{store}: {seen:?}");
        check(seen);
    }
    // With S3 the agents moved the bytes through presigned URLs.
    let moved = s3.presigned_requests();
    assert!(
        moved.iter().any(|(m, _, v)| m == "PUT" && v == "ok")
            && moved.iter().any(|(m, _, v)| m == "GET" && v == "ok"),
        "{moved:?}"
    );
}
