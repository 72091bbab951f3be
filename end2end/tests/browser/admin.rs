//! The admin's and everyone's daily pages, walked on one server in one
//! browser: the sign-in page, the dashboard, the one "not found" page,
//! secrets with a scope picker and people by name, and the audit log
//! (fitting a laptop, filtered). axe-core checks each page; screenshots go
//! to `target/screenshots/admin-*.png`.

use std::time::Duration;

use fantoccini::Locator;

use crate::actions::e;
use crate::util::{Browser, TestServer};

const WORKFLOW: &str = r#"
name: daily
pipelines:
  fails:
    tasks:
      broken:
        steps:
          - run: echo something broke >&2; exit 3
  slow:
    tasks:
      wait:
        steps:
          - run: sleep 60
  nowhere:
    selector: {gpu: "yes"}
    tasks:
      train:
        steps: ["true"]
"#;

/// Fails with the page's serious accessibility violations, if any.
async fn accessible(browser: &Browser, page: &str) -> Result<(), String> {
    let found = browser.axe().await?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("{page}: {}", found.join("\n")))
    }
}

/// The text people see on the page.
async fn body_text(browser: &Browser) -> Result<String, String> {
    browser
        .client
        .find(Locator::Css("body"))
        .await
        .map_err(e)?
        .text()
        .await
        .map_err(e)
}

#[tokio::test]
async fn admin_pages_walk() {
    let server = TestServer::start_with(|args| {
        args.pickup_timeout = Duration::from_millis(300);
    })
    .await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;

        // Walk bug 15: a title, only the ways to sign in that are set up
        // (no identity provider here), no literal backticks.
        browser.goto(&server.url("/signin?error=link_invalid")).await?;
        browser.hydrated().await?;
        let title = browser.client.title().await.map_err(e)?;
        let signin = body_text(&browser).await?;
        let provider_button = browser.client.find(Locator::Css("#sign-in-oidc")).await.is_ok();
        browser.screenshot("admin-signin").await?;
        accessible(&browser, "signin").await?;

        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/")).await?;
        browser.hydrated().await?;
        let (status, body) = browser.api("POST", "/api/v1/workflows", WORKFLOW).await?;
        if status != 201 {
            return Err(format!("apply: {status} {body}"));
        }
        let mut runs = Vec::new();
        for pipeline in ["fails", "slow", "nowhere"] {
            let path = format!("/api/v1/workflows/daily/pipelines/{pipeline}/runs");
            let (status, body) = browser.api("POST", &path, "").await?;
            if status != 201 {
                return Err(format!("start {pipeline}: {status} {body}"));
            }
            let run: serde_json::Value = serde_json::from_str(&body).map_err(e)?;
            runs.push(run["id"].as_i64().unwrap_or_default());
        }

        // The dashboard, from one call, refreshing itself: the failure,
        // the running run, the stuck one, the agent online.
        browser.goto(&server.url("/")).await?;
        browser.hydrated().await?;
        let failures = browser
            .wait_for_text("#failures", |t| t.contains(&format!("#{}", runs[0])))
            .await?;
        let running = browser
            .wait_for_text("#running", |t| t.contains(&format!("#{}", runs[1])))
            .await?;
        let stuck = browser
            .wait_for_text("#stuck", |t| t.contains(&format!("#{}", runs[2])))
            .await?;
        let counts = browser.wait_for_text("#count-agents .count", |t| !t.is_empty()).await?;
        let home_title = browser.client.title().await.map_err(e)?;
        browser.screenshot("admin-dashboard").await?;
        accessible(&browser, "dashboard").await?;
        // A keyboard reader on a run's link keeps the focus there while the
        // page reads the dashboard again (the same, so nothing is rebuilt).
        // Reads are counted as their answers' bodies are read: the page's
        // own code runs on in the same turn, before the next check.
        let focused = browser
            .js("window.__reads = 0; \
                 for (const m of ['text', 'json', 'arrayBuffer', 'blob']) { \
                   const read = Response.prototype[m]; \
                   Response.prototype[m] = function (...a) { \
                     const url = this.url; \
                     return read.apply(this, a).then(v => { \
                       if (url.includes('/rpc/api_call')) window.__reads += 1; \
                       return v; }); }; } \
                 const link = document.querySelector('#running a.run-link'); \
                 link.__focused = true; link.focus(); return document.activeElement === link")
            .await?;
        if focused != serde_json::Value::Bool(true) {
            return Err(format!("a run's link takes no focus: {focused}"));
        }
        browser.wait_for("the dashboard read again", "return window.__reads >= 1").await?;
        let kept_focus = browser
            .js("return document.activeElement.__focused === true && document.activeElement.isConnected")
            .await?;
        browser.set_size(390, 844).await?;
        browser.screenshot("admin-dashboard-phone").await?;
        browser.set_size(1280, 900).await?;

        // Walk bug 11: a missing run is the one "not found" page, under the
        // admin's own top bar.
        browser.goto(&server.url("/runs/99999")).await?;
        browser.hydrated().await?;
        let missing = browser.wait_for_text("#not-found", |t| t.contains("Not found")).await?;
        let admin_links = browser
            .js("return [...document.querySelectorAll('header a')].map(a => a.getAttribute('href')).join(' ')")
            .await?;
        browser.screenshot("admin-not-found").await?;
        accessible(&browser, "not found").await?;

        // Walk bug 18 and the scope picker: a secret for one workflow,
        // picked from the list, shown as updated by a person, not an id.
        browser.goto(&server.url("/secrets")).await?;
        browser.hydrated().await?;
        browser
            .wait_for("the workflow in the picker", "return !!document.querySelector('#secret-workflow option[value=\"daily\"]')")
            .await?;
        browser
            .client
            .find(Locator::Css("#secret-workflow"))
            .await
            .map_err(e)?
            .select_by_value("daily")
            .await
            .map_err(e)?;
        for (field, text) in [("#secret-name", "DEPLOY_KEY"), ("#secret-value", "s3cret-value")] {
            browser
                .client
                .find(Locator::Css(field))
                .await
                .map_err(e)?
                .send_keys(text)
                .await
                .map_err(e)?;
        }
        browser.click("#save-secret").await?;
        browser.wait_for_text("#secret-saved", |t| t.contains("for workflow daily")).await?;
        let secret_row = browser
            .wait_for_text("tr[data-secret=\"DEPLOY_KEY\"]", |t| t.contains("daily"))
            .await?;
        browser.screenshot("admin-secrets").await?;
        accessible(&browser, "secrets").await?;

        // Walk bug 18 again, and the log's new entries and filters: people
        // by name, the table within a laptop's width.
        browser.goto(&server.url("/audit")).await?;
        browser.hydrated().await?;
        browser.wait_for_text("#audit", |t| t.contains("run.start")).await?;
        let who = browser
            .js("return [...document.querySelectorAll('#audit td.who, #audit td.target')].map(td => td.innerText).join('|')")
            .await?;
        let overflow = browser
            .js("const w = document.querySelector('#audit').closest('.table-wrap'); return [w.scrollWidth, w.clientWidth]")
            .await?;
        browser.screenshot("admin-audit").await?;
        accessible(&browser, "audit").await?;
        browser
            .client
            .find(Locator::Css("#audit-action"))
            .await
            .map_err(e)?
            .select_by_value("run")
            .await
            .map_err(e)?;
        browser.click("#audit-filter").await?;
        browser
            .wait_for("the filtered page", "return location.search.includes('action=run')")
            .await?;
        browser.wait_for_text("#audit", |t| t.contains("run.start")).await?;
        let filtered = browser
            .js("return [...document.querySelectorAll('#audit tbody tr')].map(tr => tr.dataset.action).join(' ')")
            .await?;
        browser.screenshot("admin-audit-filtered").await?;
        Ok::<_, String>((
            (title, signin, provider_button),
            (failures, running, stuck, counts, home_title, kept_focus),
            (missing, admin_links),
            secret_row,
            (who, overflow, filtered),
        ))
    }
    .await;
    browser.close().await;
    let (signin, dashboard, missing, secret_row, audit) = outcome.unwrap();

    let (title, text, provider_button) = signin;
    assert_eq!(title, "Sign in · Xene");
    assert!(
        !provider_button,
        "a provider's button with no provider set up"
    );
    assert!(!text.contains('`'), "{text}");
    assert!(text.contains("Restart xene to print a fresh one"), "{text}");

    let (failures, running, stuck, counts, home_title, kept_focus) = dashboard;
    assert_eq!(home_title, "Dashboard · Xene");
    assert!(failures.contains("daily / fails"), "{failures}");
    assert!(running.contains("daily / slow"), "{running}");
    assert!(stuck.contains("gpu=yes"), "{stuck}");
    assert_eq!(counts, "1", "the built-in agent is online");
    assert_eq!(
        kept_focus,
        serde_json::Value::Bool(true),
        "the focused link was lost when the dashboard read itself again"
    );

    let (missing, links) = missing;
    assert!(missing.contains("There is no run #99999"), "{missing}");
    let links = links.as_str().unwrap_or_default().to_string();
    assert!(
        links.contains("/users") && links.contains("/audit"),
        "{links}"
    );

    assert!(secret_row.contains("first admin"), "{secret_row}");
    assert!(!secret_row.contains("u_"), "{secret_row}");

    let (who, overflow, filtered) = audit;
    let who = who.as_str().unwrap_or_default().to_string();
    assert!(who.contains("first admin"), "{who}");
    assert!(!who.contains("u_"), "a raw user id: {who}");
    assert!(
        overflow[0].as_i64() <= overflow[1].as_i64(),
        "the audit table scrolls sideways at 1280 px: {overflow}"
    );
    let filtered = filtered.as_str().unwrap_or_default().to_string();
    assert!(!filtered.is_empty());
    assert!(
        filtered.split(' ').all(|a| a.starts_with("run.")),
        "{filtered}"
    );
}
