//! The web UI's flows, as a user does them in a real browser: the first run
//! (load the examples, run one, watch it finish with its logs), the run form
//! with params, logs (search, line links), cancel, tokens, agents, roles.
//! Every page's screenshot is saved under `target/screenshots/`.

use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::actions::e;
use crate::util::{Browser, TestServer, WAIT};

/// With an empty database, the workflows page offers the examples; one
/// click loads them, another runs one, and its run page shows the DAG and
/// the logs live until the run succeeds.
#[tokio::test]
async fn first_run_loads_the_examples_and_runs_one_live() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/workflows")).await?;
        browser
            .wait_for_text("#first-run h2", |t| t.contains("No workflows"))
            .await?;
        browser.hydrated().await?;
        browser.screenshot("workflows-empty").await?;
        browser.click("#load-examples").await?;
        browser
            .wait_for_text("#workflows", |t| t.contains("fan-out-fan-in"))
            .await?;
        browser.screenshot("workflows-list").await?;
        browser.click("#run-example").await?;
        let started = Instant::now();
        while !browser.path().await?.starts_with("/runs/") {
            if started.elapsed() > WAIT {
                return Err("no run page".to_string());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        browser
            .wait_for_text("h1 .status", |t| t == "success")
            .await?;
        browser
            .wait_for_attr(
                ".dag g[data-task=\"gather\"]",
                "class",
                "node status-success",
            )
            .await?;
        browser.screenshot("run-success").await?;
        let dag = browser
            .client
            .find(Locator::Css(".dag"))
            .await
            .map_err(e)?
            .text()
            .await
            .map_err(e)?;
        Ok::<_, String>(dag)
    }
    .await;
    browser.close().await;
    let dag = outcome.unwrap();
    for task in ["split", "shard-1", "shard-4", "gather"] {
        assert!(dag.contains(task), "{dag}");
    }
}

const LOGS_WORKFLOW: &str = r#"
name: logs
pipelines:
  big:
    params:
      count: "100000"
    tasks:
      print:
        steps:
          - name: lines
            run: |
              printf '\033[31mred line\033[0m\n'
              printf '\033[38;5;208morange\033[0m and \033[38;2;10;200;30mtrue colour\033[0m\n'
              echo "::group::Setup"
              echo "inside the group"
              echo "::endgroup::"
              i=1; while [ $i -le {{ params.count }} ]; do echo "line $i of the big log"; i=$((i+1)); done
              echo "needle at the end"
"#;

/// A 100,000-line log: every line reachable from line 1 while scrolling
/// renders only a window; colours (16, 256, true colour), a section that
/// collapses, search over every line, a link to a line range, timestamps
/// and the raw download.
#[tokio::test]
async fn a_big_log_is_virtualised_searchable_and_linkable() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/workflows")).await?;
        browser.hydrated().await?;
        let (status, body) = browser.api("POST", "/api/v1/workflows", LOGS_WORKFLOW).await?;
        if status != 201 {
            return Err(format!("apply: {status} {body}"));
        }
        // The Run button opens a form drawn from the params.
        browser.goto(&server.url("/workflows/logs")).await?;
        browser.hydrated().await?;
        browser.click(".run-button").await?;
        let field = browser
            .wait_for("the param field", "return document.querySelector('#param-big-count')?.value")
            .await?;
        if field != "100000" {
            return Err(format!("param default {field}"));
        }
        browser.screenshot("run-form").await?;
        browser.click(".start-run").await?;
        let path = browser.wait_for_path("/runs/").await?;
        // 100,000 lines take a while on a loaded machine: up to 3 waits.
        let mut done = Err(String::new());
        for _ in 0..3 {
            done = browser.wait_for_text("h1 .status", |t| t == "success").await;
            if done.is_ok() {
                break;
            }
        }
        done?;
        let mut counted = Err(String::new());
        for _ in 0..3 {
            counted = browser
                .wait_for_text("#line-count", |t| t == "100,006 lines")
                .await;
            if counted.is_ok() {
                break;
            }
        }
        counted?;
        browser.screenshot("log-big").await?;
        // Only a window of rows is in the page.
        let rendered = browser
            .js("return document.querySelectorAll('.log-line').length")
            .await?;
        // Line 1 is reachable, with its colour.
        browser
            .js("document.querySelector('.log-scroll').scrollTop = 0; \
                 document.querySelector('.log-scroll').dispatchEvent(new Event('scroll'))")
            .await?;
        let red = browser
            .wait_for("line 1", "return document.querySelector('#L1 .txt span')?.className")
            .await?;
        let colours = browser
            .js("return document.querySelector('#L2 .txt').innerHTML")
            .await?;
        // The ended section shows collapsed to its title; its
        // `::endgroup::` (line 5) is never shown, even opened.
        browser
            .wait_for("collapsed", "return document.querySelector('#L4') === null && document.querySelector('#L6') !== null")
            .await?;
        browser.screenshot("log-section-collapsed").await?;
        browser.click("#L3 .section-toggle").await?;
        browser
            .wait_for("opened", "return document.querySelector('#L4') !== null && document.querySelector('#L5') === null")
            .await?;
        // Search reaches the last line, never rendered so far.
        browser
            .client
            .find(Locator::Css("#log-search"))
            .await
            .map_err(e)?
            .send_keys("needle\u{E007}")
            .await
            .map_err(e)?;
        let count = browser.wait_for_text("#search-count", |t| t == "1 of 1").await?;
        browser
            .wait_for("the match in view", "return document.querySelector('#L100006.current') !== null")
            .await?;
        browser.screenshot("log-search").await?;
        // Timestamps on demand.
        browser.click("#show-times").await?;
        browser
            .wait_for("timestamps", "return document.querySelector('.log-line .ts') !== null")
            .await?;
        // A link to a range opens the step there, lines selected.
        browser
            .goto(&server.url(&format!("{path}?task=print&step=lines#L50000-L50002")))
            .await?;
        browser.hydrated().await?;
        browser
            .wait_for("the range selected", "return document.querySelectorAll('.log-line.selected').length === 3 && document.querySelector('#L50001.selected') !== null")
            .await?;
        browser.screenshot("log-line-link").await?;
        // The raw log downloads whole.
        let href = browser
            .js("return document.querySelector('a[download]').getAttribute('href')")
            .await?;
        let (status, raw) = browser.api("GET", href.as_str().unwrap_or_default(), "").await?;
        Ok::<_, String>((rendered, red, colours, count, status, raw.lines().count()))
    }
    .await;
    browser.close().await;
    let (rendered, red, colours, count, status, raw_lines) = outcome.unwrap();
    assert!(rendered.as_u64().unwrap() < 200, "{rendered}");
    assert_eq!(red, "ansi-fg-1");
    let colours = colours.as_str().unwrap();
    assert!(colours.contains("color:#ff8700"), "{colours}");
    assert!(colours.contains("color:#0ac81e"), "{colours}");
    assert_eq!(count, "1 of 1");
    assert_eq!(status, 200);
    assert_eq!(raw_lines, 100_006);
}

const SLOW_WORKFLOW: &str = r#"
name: slow
pipelines:
  wait:
    tasks:
      first:
        steps:
          - name: hello
            run: echo "starting"
      sleeper:
        depends_on: [first]
        steps:
          - name: sleep
            run: |
              echo "sleeping"
              sleep 60
      after:
        depends_on: [sleeper]
        steps:
          - run: echo never
"#;

/// The runs list follows the feed: a run started elsewhere appears and
/// changes status live; filters narrow it. On the run page, pending tasks
/// show, cancel stops the run and re-run starts a new one.
#[tokio::test]
async fn runs_list_is_live_and_a_run_can_be_cancelled_and_rerun() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/runs")).await?;
        browser.hydrated().await?;
        browser
            .wait_for_text("#no-runs h2", |t| t.contains("No runs"))
            .await?;
        browser.screenshot("runs-empty").await?;
        let (status, body) = browser.api("POST", "/api/v1/workflows", SLOW_WORKFLOW).await?;
        if status != 201 {
            return Err(format!("apply: {status} {body}"));
        }
        let (status, body) = browser
            .api("POST", "/api/v1/workflows/slow/pipelines/wait/runs", "")
            .await?;
        if status != 201 {
            return Err(format!("start: {status} {body}"));
        }
        // Without reloading, the feed brings the run and its status.
        browser
            .wait_for_text("#runs tr[data-run=\"1\"] .status", |t| t == "running")
            .await?;
        browser.screenshot("runs-live").await?;
        // Filters are a plain GET form: part of the URL.
        browser.goto(&server.url("/runs?status=success")).await?;
        browser
            .wait_for_text("#no-runs h2", |t| t.contains("No runs"))
            .await?;
        browser.goto(&server.url("/runs?workflow=slow&status=running")).await?;
        browser
            .wait_for_text("#runs tr[data-run=\"1\"] .status", |t| t == "running")
            .await?;
        browser.click("#runs tr[data-run=\"1\"] a").await?;
        browser.wait_for_path("/runs/1").await?;
        browser.hydrated().await?;
        browser
            .wait_for_attr(".dag g[data-task=\"sleeper\"]", "class", "node status-running")
            .await?;
        let pending = browser
            .js("return document.querySelector('.dag g[data-task=\"after\"]').getAttribute('class')")
            .await?;
        // The sleeper's log, live.
        browser.click("a[href=\"/runs/1?task=sleeper\"]").await?;
        browser
            .wait_for("the log line", "return document.querySelector('#L1 .txt')?.textContent")
            .await?;
        browser.screenshot("run-live").await?;
        browser.click("#cancel-run").await?;
        browser.click("#confirm-cancel").await?;
        browser.wait_for_text("h1 .status", |t| t == "cancelled").await?;
        browser.screenshot("run-cancelled").await?;
        browser.click("#rerun").await?;
        browser.wait_for_path("/runs/2").await?;
        browser.wait_for_text("h1", |t| t.contains("Run #2")).await?;
        // The back button returns to the cancelled run.
        browser.client.back().await.map_err(e)?;
        browser.wait_for_path("/runs/1").await?;
        let title = browser.wait_for_text("h1", |t| t.contains("Run #1")).await?;
        browser
            .api("POST", "/api/v1/runs/2/cancel", "")
            .await?;
        Ok::<_, String>((pending, title))
    }
    .await;
    browser.close().await;
    let (pending, title) = outcome.unwrap();
    assert_eq!(pending, "node status-pending");
    assert!(title.contains("cancelled"), "{title}");
}

/// Tokens: created and shown once, listed, revoked. Agents: a fresh
/// install command with a join token that an agent can join with, listed,
/// then revoked. The audit log shows it all.
#[tokio::test]
async fn tokens_and_agents_are_managed_from_the_ui() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/tokens")).await?;
        browser.hydrated().await?;
        browser.wait_for_text("h1", |t| t == "API tokens").await?;
        browser
            .client
            .find(Locator::Css("#token-name"))
            .await
            .map_err(e)?
            .send_keys("ci")
            .await
            .map_err(e)?;
        browser.click("#create-token").await?;
        let token = browser.wait_for_text("#new-token", |t| t.len() > 20).await?;
        browser
            .wait_for_text("#tokens tr[data-token=\"ci\"] .token-state", |t| t == "active")
            .await?;
        browser.screenshot("tokens").await?;
        browser.click("#tokens tr[data-token=\"ci\"] .revoke").await?;
        browser
            .wait_for_text("#tokens tr[data-token=\"ci\"] .token-state", |t| t == "revoked")
            .await?;

        browser.goto(&server.url("/agents")).await?;
        browser.hydrated().await?;
        browser.wait_for_text("#agents", |t| t.contains("built-in")).await?;
        browser.click("#new-join-token").await?;
        let command = browser.wait_for_text("#install-command", |t| t.contains("install.sh")).await?;
        browser.click("#join .copy").await?;
        browser.wait_for_text("#join .copy", |t| t == "Copied").await?;
        // The command's token joins an agent (as `xene-agent` would).
        let join_token = command
            .split("XENE_JOIN_TOKEN=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .map(str::to_string)
            .ok_or(format!("no token in {command}"))?;
        let (status, body) = browser
            .api(
                "POST",
                "/api/v1/agents/join",
                &serde_json::json!({"token": join_token, "name": "laptop"}).to_string(),
            )
            .await?;
        if status >= 300 {
            return Err(format!("join: {status} {body}"));
        }
        browser.goto(&server.url("/agents")).await?;
        browser.hydrated().await?;
        browser.wait_for_text("#agents", |t| t.contains("laptop")).await?;
        browser.screenshot("agents").await?;
        browser.click("#agents button.danger").await?;
        browser
            .wait_for("the agent revoked", "return [...document.querySelectorAll('#agents tr')].some(r => r.textContent.includes('laptop') && r.querySelector('.status').textContent === 'revoked')")
            .await?;
        browser.goto(&server.url("/audit")).await?;
        let audit = browser.wait_for_text("#audit", |t| t.contains("token")).await?;
        browser.screenshot("audit").await?;
        browser.goto(&server.url("/users")).await?;
        browser.wait_for_text("#users", |t| t.contains("first admin")).await?;
        browser.screenshot("users").await?;
        Ok::<_, String>((token, audit))
    }
    .await;
    browser.close().await;
    let (token, audit) = outcome.unwrap();
    assert!(token.starts_with("xene_") || token.len() > 40, "{token}");
    assert!(!audit.is_empty());
}

/// Every page, at a laptop's and a phone's width, in the light and the
/// dark theme: no serious or critical accessibility violation (axe-core),
/// and a screenshot of each for people to review.
#[tokio::test]
async fn every_page_is_accessible_at_laptop_and_phone_widths() {
    let server = TestServer::start().await;
    let mut problems = Vec::new();
    let browser = Browser::start().await;
    let outcome = async {
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/workflows")).await?;
        browser.hydrated().await?;
        browser.click("#load-examples").await?;
        browser
            .wait_for_text("#workflows", |t| t.contains("fan-out-fan-in"))
            .await?;
        let (status, body) = browser
            .api(
                "POST",
                "/api/v1/workflows/fan-out-fan-in/pipelines/shards/runs",
                "",
            )
            .await?;
        if status != 201 {
            return Err(format!("start: {status} {body}"));
        }
        browser.goto(&server.url("/runs/1")).await?;
        browser
            .wait_for_text("h1 .status", |t| t == "success")
            .await?;
        let cookie = browser
            .client
            .get_named_cookie("xene_session")
            .await
            .map_err(e)?;
        let pages = [
            ("home", "/"),
            ("workflows", "/workflows"),
            ("workflow", "/workflows/fan-out-fan-in"),
            ("editor", "/workflows/fan-out-fan-in/edit"),
            ("runs", "/runs"),
            ("run", "/runs/1?task=gather"),
            ("agents", "/agents"),
            ("tokens", "/tokens"),
            ("secrets", "/secrets"),
            ("users", "/users"),
            ("audit", "/audit"),
            ("not-found", "/no/such/page"),
        ];
        let mut problems = Vec::new();
        for (width, height, size) in [(1280, 900, "laptop"), (390, 844, "phone")] {
            browser.set_size(width, height).await?;
            for (name, path) in pages {
                browser.goto(&server.url(path)).await?;
                browser.hydrated().await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                for v in browser.axe().await? {
                    problems.push(format!("{name} ({size}, light): {v}"));
                }
                browser.screenshot(&format!("page-{name}-{size}")).await?;
            }
        }
        Ok::<_, String>((problems, cookie, pages))
    }
    .await;
    browser.close().await;
    let (found, session, pages) = outcome.unwrap();
    problems.extend(found);

    // The dark theme: the same session in a browser that prefers dark.
    let dark = Browser::start_with(&["--force-dark-mode"]).await;
    let outcome = async {
        dark.goto(&server.url("/signin")).await?;
        dark.client.add_cookie(session).await.map_err(e)?;
        let prefers_dark = dark
            .js("return matchMedia('(prefers-color-scheme: dark)').matches")
            .await?;
        let mut problems = Vec::new();
        for (width, height, size) in [(1280, 900, "laptop"), (390, 844, "phone")] {
            dark.set_size(width, height).await?;
            for (name, path) in pages {
                dark.goto(&server.url(path)).await?;
                dark.hydrated().await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                for v in dark.axe().await? {
                    problems.push(format!("{name} ({size}, dark): {v}"));
                }
                dark.screenshot(&format!("page-{name}-{size}-dark")).await?;
            }
        }
        Ok::<_, String>((problems, prefers_dark))
    }
    .await;
    dark.close().await;
    let (found, prefers_dark) = outcome.unwrap();
    problems.extend(found);
    assert_eq!(prefers_dark, true, "the dark browser does not prefer dark");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

const WAITING_WORKFLOW: &str = r#"
name: gpu
pipelines:
  train:
    selector:
      gpu: "yes"
    tasks:
      fit:
        steps:
          - run: echo fit
"#;

/// A run no agent can take says why it waits. The role rules seen from
/// the UI: a viewer sees no Run, Cancel or Re-run button, and the server
/// refuses a viewer's run anyway.
#[tokio::test]
async fn a_viewer_sees_no_run_button_and_the_server_refuses_anyway() {
    let port = crate::util::free_port();
    let provider =
        crate::util::OidcProvider::start(&format!("http://127.0.0.1:{port}/auth/callback")).await;
    let server = TestServer::start_with(|args| {
        args.addr = ([127, 0, 0, 1], port).into();
        args.access.oidc_issuer = provider.issuer.clone();
        args.access.oidc_client_id = Some(crate::util::OidcProvider::CLIENT_ID.into());
        args.access.oidc_client_secret = Some(crate::util::OidcProvider::CLIENT_SECRET.into());
        args.access.allowed_domains = vec!["example.com".into()];
        args.access.oidc_require_hd = Some(true);
    })
    .await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/workflows")).await?;
        browser.hydrated().await?;
        let (status, body) = browser.api("POST", "/api/v1/workflows", WAITING_WORKFLOW).await?;
        if status != 201 {
            return Err(format!("apply: {status} {body}"));
        }
        let (status, body) = browser
            .api("POST", "/api/v1/workflows/gpu/pipelines/train/runs", "")
            .await?;
        if status != 201 {
            return Err(format!("start: {status} {body}"));
        }
        browser.goto(&server.url("/runs/1")).await?;
        let waiting = browser.wait_for_text("#waiting", |t| t.len() > 10).await?;
        let admin_buttons = browser
            .js("return [!!document.querySelector('#cancel-run'), !!document.querySelector('#rerun')]")
            .await?;
        browser.screenshot("run-waiting").await?;

        let (path, refused) = crate::signin::sign_in_as(&browser, &server, "alice@example.com").await?;
        if refused.is_some() || path != "/" {
            return Err(format!("alice was not signed in: {path} {refused:?}"));
        }
        browser.goto(&server.url("/workflows/gpu")).await?;
        browser.hydrated().await?;
        browser.wait_for_text(".role", |t| t == "viewer").await?;
        browser.wait_for_text(".pipeline h2", |t| t == "train").await?;
        let run_button = browser
            .js("return document.querySelector('.run-button') !== null")
            .await?;
        browser.screenshot("viewer-workflow").await?;
        browser.goto(&server.url("/runs/1")).await?;
        browser.hydrated().await?;
        browser.wait_for_text("#waiting", |t| t.len() > 10).await?;
        let viewer_buttons = browser
            .js("return [!!document.querySelector('#cancel-run'), !!document.querySelector('#rerun')]")
            .await?;
        let nav = browser.wait_for_text(".topbar nav", |t| t.contains("Runs")).await?;
        let (refused, _) = browser
            .api("POST", "/api/v1/workflows/gpu/pipelines/train/runs", "")
            .await?;
        let (cancel_refused, _) = browser.api("POST", "/api/v1/runs/1/cancel", "").await?;
        Ok::<_, String>((waiting, admin_buttons, run_button, viewer_buttons, nav, refused, cancel_refused))
    }
    .await;
    browser.close().await;
    let (waiting, admin_buttons, run_button, viewer_buttons, nav, refused, cancel_refused) =
        outcome.unwrap();
    assert!(waiting.starts_with("Waiting:"), "{waiting}");
    assert_eq!(admin_buttons, serde_json::json!([true, true]));
    assert_eq!(run_button, false);
    assert_eq!(viewer_buttons, serde_json::json!([false, false]));
    assert!(!nav.contains("Users") && !nav.contains("Audit"), "{nav}");
    assert_eq!(refused, 403);
    assert_eq!(cancel_refused, 403);
}

/// A workflow applied twice has two versions; the workflow page shows the
/// diff between any two, picked with a plain form (so it has its own URL).
#[tokio::test]
async fn a_workflow_page_diffs_two_versions() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/workflows")).await?;
        browser.hydrated().await?;
        let v2 = SLOW_WORKFLOW.replace("echo \"starting\"", "echo \"starting v2\"");
        for body in [SLOW_WORKFLOW, v2.as_str()] {
            let (status, text) = browser.api("POST", "/api/v1/workflows", body).await?;
            if status != 201 {
                return Err(format!("apply: {status} {text}"));
            }
        }
        browser.goto(&server.url("/workflows/slow")).await?;
        browser.hydrated().await?;
        let diff = browser.wait_for_text("#diff", |t| t.contains("v2")).await?;
        // Comparing a version with itself says so; the form makes the URL.
        browser.click(".diff-pick button").await?;
        let url = browser.client.current_url().await.map_err(e)?;
        browser.screenshot("workflow-versions").await?;
        browser
            .goto(&server.url("/workflows/slow?from=2&to=2"))
            .await?;
        let same = browser
            .wait_for_text("#diff", |t| t.contains("same"))
            .await?;
        Ok::<_, String>((diff, url.query().unwrap_or_default().to_string(), same))
    }
    .await;
    browser.close().await;
    let (diff, query, same) = outcome.unwrap();
    assert!(
        diff.contains("- ") && diff.contains("echo \"starting\""),
        "{diff}"
    );
    assert!(
        diff.contains("+ ") && diff.contains("starting v2"),
        "{diff}"
    );
    assert_eq!(query, "from=1&to=2");
    assert_eq!(same, "v2 and v2 are the same.");
}

/// Secrets from the UI: an admin sets, replaces and deletes one; its value
/// is on no page, before or after.
#[tokio::test]
async fn secrets_are_managed_from_the_ui_and_never_shown() {
    const VALUE: &str = "ui-secret-value-4242";
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/secrets")).await?;
        browser.hydrated().await?;
        browser
            .wait_for_text("#no-secrets", |t| t.contains("No secrets"))
            .await?;
        // The form is for admins: it shows once the signed-in user is known.
        browser
            .wait_for(
                "the secret form",
                "return !!document.querySelector('#secret-name')",
            )
            .await?;
        for (selector, text) in [("#secret-name", "DEPLOY_TOKEN"), ("#secret-value", VALUE)] {
            browser
                .client
                .find(Locator::Css(selector))
                .await
                .map_err(e)?
                .send_keys(text)
                .await
                .map_err(e)?;
        }
        browser.click("#save-secret").await?;
        browser
            .wait_for_text("#secret-saved", |t| t.contains("DEPLOY_TOKEN"))
            .await?;
        browser
            .wait_for_text("#secrets tr[data-secret=\"DEPLOY_TOKEN\"]", |t| {
                t.contains("global")
            })
            .await?;
        let html = browser.client.source().await.map_err(e)?;
        if html.contains(VALUE) {
            return Err("the value is on the page after saving".into());
        }
        browser.screenshot("secrets").await?;
        // A fresh load, server-rendered: still no value.
        browser.goto(&server.url("/secrets")).await?;
        browser.hydrated().await?;
        let html = browser.client.source().await.map_err(e)?;
        if html.contains(VALUE) || !html.contains("DEPLOY_TOKEN") {
            return Err("the list shows the value, or not the secret".into());
        }
        browser
            .click("#secrets tr[data-secret=\"DEPLOY_TOKEN\"] .delete-secret")
            .await?;
        browser
            .wait_for_text("#no-secrets", |t| t.contains("No secrets"))
            .await?;
        Ok::<_, String>(())
    }
    .await;
    browser.close().await;
    outcome.unwrap();
}

/// Triggers on a workflow's page: a cron pipeline's next fires, and a
/// webhook pipeline's hook (made from the page, its secret shown once) with
/// its deliveries, a refused one listed with why.
#[tokio::test]
async fn triggers_show_next_fires_and_hook_deliveries() {
    const SPEC: &str = "name: triggered\npipelines:\n  nightly:\n    trigger: {cron: \"0 3 * * *\", timezone: Europe/Berlin}\n    tasks:\n      t:\n        steps: ['true']\n  on-push:\n    trigger: webhook\n    tasks:\n      t:\n        steps: ['true']\n";
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/workflows")).await?;
        let (status, body) = browser.api("POST", "/api/v1/workflows", SPEC).await?;
        if status != 201 {
            return Err(format!("apply: {status} {body}"));
        }
        // The list: the cron pipeline's next fire, 03:00 Berlin time.
        browser.goto(&server.url("/workflows")).await?;
        browser.hydrated().await?;
        browser
            .wait_for(
                "the next fire in the list",
                "return [...document.querySelectorAll('#workflows tr')].some(r => \
                   r.textContent.includes('nightly') && /(01|02):00:00 UTC/.test(r.querySelector('time')?.title || ''))",
            )
            .await?;
        browser.goto(&server.url("/workflows/triggered")).await?;
        browser.hydrated().await?;
        browser
            .wait_for_text("[data-pipeline=\"nightly\"] .next-fires", |t| {
                t.contains("Next fires")
            })
            .await?;
        browser
            .click("[data-pipeline=\"on-push\"] .rotate-hook")
            .await?;
        let secret = browser
            .wait_for_text("[data-pipeline=\"on-push\"] .hook-secret", |t| {
                t.starts_with("whsec_")
            })
            .await?;
        let url = browser
            .wait_for_text("[data-pipeline=\"on-push\"] .hook-url", |t| {
                t.starts_with("http://") && t.contains("/api/v1/hooks/")
            })
            .await?;
        // Unsigned: refused, started nothing, and listed with why.
        let (status, _) = browser.api("POST", &url, "{}").await?;
        if status != 401 {
            return Err(format!("an unsigned delivery got {status}"));
        }
        browser.goto(&server.url("/workflows/triggered")).await?;
        browser.hydrated().await?;
        let row = browser
            .wait_for_text("[data-pipeline=\"on-push\"] .deliveries", |t| {
                t.contains("401")
            })
            .await?;
        if row.contains(&secret) {
            return Err("the secret is shown again".into());
        }
        browser.screenshot("workflow-triggers").await?;
        Ok::<_, String>(())
    }
    .await;
    browser.close().await;
    outcome.unwrap();
}
