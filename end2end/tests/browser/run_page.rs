//! A run's page as someone reading logs uses it, on one run of real shell
//! steps: stdout and stderr in the order written, stderr marked (walk bug
//! 6); sections collapsed but the open one, `::endgroup::` never shown
//! (10); clearing the search clears its highlights (9); the line count
//! that reads "1 line", "12,345 lines" and never moves the log (17); a
//! retried task that says so, each attempt's log apart (16); the log as
//! tall as the screen and a full-screen view; Cancel that asks first; Run
//! again on the run's version, or on the latest. And the review's points:
//! a retry waiting out its backoff hides neither the failed attempt's log
//! nor counts as a try; the log box ends at the window's bottom with the
//! graph open too; full screen is modal and Escape leaves it after a step
//! switch; step tabs do not pin an attempt; the focus lands on the title
//! after a cancel.

use fantoccini::Locator;

use crate::actions::e;
use crate::util::{Browser, TestServer};

fn workflow(sleep: &str) -> String {
    format!(
        r#"
name: reading
pipelines:
  p:
    tasks:
      flaky:
        retries: {{count: 1, backoff: 100ms}}
        steps:
          - name: try
            run: |
              echo "attempt $XENE_ATTEMPT"
              if [ "$XENE_ATTEMPT" = 1 ]; then echo "first try fails" >&2; exit 1; fi
              echo "second try works"
      build:
        steps:
          - name: compile
            run: |
              echo compiling
              echo "error: something broke" >&2
          - name: groups
            run: |
              echo "::group::Setup"
              echo "inside setup"
              echo "::endgroup::"
              echo "::group::Checks"
              echo "test one"
              echo "test two"
              echo "::endgroup::"
              echo "::group::Last"
              echo "still open"
          - name: one
            run: echo only
          - name: many
            run: i=1; while [ $i -le 12345 ]; do echo "line $i"; i=$((i+1)); done
      later:
        retries: {{count: 1, backoff: 120s}}
        steps:
          - name: fail
            run: echo "first of later"; exit 1
      sleeper:
        steps:
          - name: wait
            run: echo waiting; sleep {sleep}
"#
    )
}

/// What the test reads of the page, for the asserts after the browser
/// closed.
#[derive(Debug, Default)]
struct Seen {
    first_lines: Vec<(String, bool)>,
    groups: serde_json::Value,
    opened: serde_json::Value,
    highlights_after_clear: serde_json::Value,
    counts: Vec<String>,
    tops: Vec<f64>,
    log_share: f64,
    fits: Vec<serde_json::Value>,
    step_tabs_pinned: serde_json::Value,
    full: serde_json::Value,
    full_after_switch: serde_json::Value,
    focus_after_full: serde_json::Value,
    later: serde_json::Value,
    cancel_requested_after_keep: serde_json::Value,
    focus_after_cancel: serde_json::Value,
    retried: String,
    attempt_logs: Vec<String>,
    confirm_open: serde_json::Value,
    still_running: String,
    versions: Vec<i64>,
    axe: Vec<String>,
}

async fn line_texts(browser: &Browser) -> Result<Vec<(String, bool)>, String> {
    let v = browser
        .js(
            "return [...document.querySelectorAll('.log-line')].map(l => \
             [l.querySelector('.txt').textContent, l.classList.contains('stderr')])",
        )
        .await?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|l| (l[0].as_str().unwrap_or_default().to_string(), l[1] == true))
                .collect()
        })
        .unwrap_or_default())
}

/// The log box against the window, the page scrolled to its top, once the
/// page measured where the box starts: [its bottom within the window, its
/// share of the window's height].
async fn log_fit(browser: &Browser) -> Result<serde_json::Value, String> {
    browser
        .wait_for(
            "the log box measured",
            "const p = document.querySelector('.log-pane'); \
             return p && getComputedStyle(p).getPropertyValue('--log-top') !== ''",
        )
        .await?;
    browser
        .js("scrollTo(0, 0); const r = document.querySelector('.log-scroll').getBoundingClientRect(); \
             return [r.bottom <= innerHeight, r.height / innerHeight]")
        .await
}

async fn log_top(browser: &Browser) -> Result<f64, String> {
    let v = browser
        .js("return document.querySelector('.log-scroll').getBoundingClientRect().top")
        .await?;
    v.as_f64().ok_or_else(|| format!("no log top: {v}"))
}

#[tokio::test]
async fn a_run_page_is_made_for_reading_logs() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        let mut seen = Seen::default();
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/runs")).await?;
        browser.hydrated().await?;
        let (status, body) = browser.api("POST", "/api/v1/workflows", &workflow("60")).await?;
        if status != 201 {
            return Err(format!("apply: {status} {body}"));
        }
        let (status, body) = browser
            .api("POST", "/api/v1/workflows/reading/pipelines/p/runs", "{}")
            .await?;
        if status != 201 {
            return Err(format!("start: {status} {body}"));
        }
        browser.goto(&server.url("/runs/1?task=build&step=compile")).await?;
        browser.hydrated().await?;
        browser
            .wait_for_text(".task-list li[data-task=\"build\"] .task-head .status", |t| t == "success")
            .await?;
        browser
            .wait_for_attr(".dag g[data-task=\"flaky\"]", "class", "node status-success")
            .await?;

        // Bug 6: in the order written, stderr marked.
        browser
            .wait_for("the compile log", "return document.querySelector('#L2') !== null")
            .await?;
        seen.first_lines = line_texts(&browser).await?;
        browser.screenshot("run-log-stderr").await?;
        // The URL named no attempt: the step tabs name none either.
        seen.step_tabs_pinned = browser
            .js("return [...document.querySelectorAll('.step-tabs a')].map(a => a.href.includes('attempt='))")
            .await?;
        // Bug 10: ended sections collapsed, the open one open; opening one
        // never shows its `::endgroup::`.
        browser.click(".step-tabs a[href*=\"step=groups\"]").await?;
        browser
            .wait_for("the groups log", "return document.querySelector('#L9') !== null")
            .await?;
        seen.groups = browser
            .js("return ['L1', 'L2', 'L3', 'L4', 'L5', 'L8', 'L9'].map(id => { \
                   const l = document.getElementById(id); \
                   return l ? (l.querySelector('.section-toggle')?.getAttribute('aria-expanded') ?? 'line') : null; })")
            .await?;
        browser.screenshot("run-log-groups").await?;
        browser.click("#L4 .section-toggle").await?;
        seen.opened = browser
            .wait_for("the Checks section open", "return document.querySelector('#L5') && \
                 [!!document.querySelector('#L6'), !!document.querySelector('#L7')]")
            .await?;
        seen.first_lines.extend(line_texts(&browser).await?);

        // Bug 9: a search, then its text cleared: no highlight stays.
        let search = browser.client.find(Locator::Css("#log-search")).await.map_err(e)?;
        search.send_keys("test\u{E007}").await.map_err(e)?;
        browser.wait_for_text("#search-count", |t| t == "1 of 2").await?;
        browser
            .wait_for("highlights", "return document.querySelectorAll('.log-line.hit').length === 2")
            .await?;
        browser.screenshot("run-log-search").await?;
        search.send_keys("\u{E009}a\u{E000}\u{E003}").await.map_err(e)?;
        seen.highlights_after_clear = browser
            .wait_for("the search cleared", "return document.querySelector('#log-search').value === '' && \
                 [document.querySelectorAll('.log-line.hit, .log-line.current').length, \
                  document.querySelector('#search-count').textContent]")
            .await?;

        // Bug 17: "1 line", "12,345 lines", and the log stays where it is,
        // at a laptop's width and a phone's.
        for (width, height) in [(1280, 900), (390, 844)] {
            browser.set_size(width, height).await?;
            for step in ["one", "many"] {
                browser.click(&format!(".step-tabs a[href*=\"step={step}\"]")).await?;
                let want = if step == "one" { "1 line" } else { "12,345 lines" };
                seen.counts.push(browser.wait_for_text("#line-count", |t| t == want).await?);
                seen.tops.push(log_top(&browser).await?);
            }
        }
        browser.screenshot("run-log-phone").await?;
        browser.set_size(1280, 900).await?;

        // The log as tall as the screen, ending at its bottom; full
        // screen, the log alone.
        let fit = log_fit(&browser).await?;
        seen.log_share = fit[1].as_f64().unwrap_or_default();
        seen.fits.push(fit);
        browser.click("#log-full").await?;
        seen.full = browser
            .wait_for("full screen", "const r = document.querySelector('.log-pane.full')?.getBoundingClientRect(); \
                 const s = document.querySelector('.log-scroll').getBoundingClientRect(); \
                 return r && [r.top === 0 && r.left === 0, Math.abs(r.width - innerWidth) < 1, \
                   Math.abs(r.height - innerHeight) < 1, s.height / innerHeight, \
                   document.activeElement?.classList.contains('log-scroll') ?? false, \
                   !!document.querySelector('.task-list').closest('[inert]'), \
                   document.querySelector('.log-pane').getAttribute('aria-modal')]")
            .await?;
        browser.screenshot("run-log-full-screen").await?;
        seen.axe.extend(browser.axe().await?.into_iter().map(|v| format!("full screen: {v}")));
        // Another step in full screen (its link, which had the focus, is
        // drawn anew), then Escape, from wherever the focus is.
        browser.click(".log-pane.full .step-tabs a[href*=\"step=one\"]").await?;
        browser.wait_for_text("#line-count", |t| t == "1 line").await?;
        seen.full_after_switch = browser
            .js("return [!!document.querySelector('.log-pane.full'), document.activeElement?.tagName]")
            .await?;
        browser.press(&['\u{E00C}']).await?;
        seen.focus_after_full = browser
            .wait_for("full screen left", "return document.querySelector('.log-pane.full') === null && \
                 [document.activeElement?.id, !!document.querySelector('[inert]')]")
            .await?;

        // Bug 16: the retried task says so; each attempt has its log.
        browser.click(".task-list li[data-task=\"flaky\"] .task-head a").await?;
        seen.retried = browser
            .wait_for_text(".task-list li[data-task=\"flaky\"] .retried", |t| !t.is_empty())
            .await?;
        browser
            .wait_for_text(".attempt-tabs a[aria-current=\"page\"]", |t| t.starts_with("Attempt 2"))
            .await?;
        let latest = line_texts(&browser).await?;
        browser.screenshot("run-attempts").await?;
        browser.click(".attempt-tabs a[data-attempt=\"1\"]").await?;
        browser
            .wait_for_text(".attempt-tabs a[aria-current=\"page\"]", |t| t.starts_with("Attempt 1"))
            .await?;
        browser.wait_for_text("#L2", |t| t.contains("first try fails")).await?;
        let first = line_texts(&browser).await?;
        seen.attempt_logs = [latest, first]
            .iter()
            .flatten()
            .map(|(t, err)| format!("{t}{}", if *err { " (stderr)" } else { "" }))
            .collect();

        // A retry waiting out its backoff: the failed attempt's log stays
        // shown, and the waiting attempt is not counted as a try.
        browser
            .wait_for_text(".task-list li[data-task=\"later\"] .attempts li[data-attempt=\"2\"] .status", |t| {
                t == "ready"
            })
            .await?;
        browser.click(".task-list li[data-task=\"later\"] .task-head a").await?;
        browser
            .wait_for_text(".log-head h2", |t| t.contains("later"))
            .await?;
        browser.wait_for_text("#L1", |t| t.contains("first of later")).await?;
        seen.later = browser
            .js("return [document.querySelector('.attempt-tabs a[aria-current=\"page\"]')?.dataset.attempt, \
                 document.querySelector('.task-list li[data-task=\"later\"] .retried') === null]")
            .await?;
        browser.screenshot("run-retry-waiting").await?;

        // Cancel asks first; "Keep it running" keeps it.
        browser.click("#cancel-run").await?;
        seen.confirm_open = browser
            .wait_for("the question", "return document.activeElement?.id === 'keep-running' && \
                 document.querySelector('#cancel-confirm h2').textContent")
            .await?;
        browser.screenshot("run-cancel-confirm").await?;
        seen.axe.extend(browser.axe().await?.into_iter().map(|v| format!("cancel question: {v}")));
        browser.click("#keep-running").await?;
        browser
            .wait_for("the question gone", "return document.querySelector('#cancel-confirm') === null")
            .await?;
        seen.still_running = browser.wait_for_text("h1 .status", |t| !t.is_empty()).await?;
        let (_, body) = browser.api("GET", "/api/v1/runs/1", "").await?;
        let run: serde_json::Value = serde_json::from_str(&body).map_err(e)?;
        seen.cancel_requested_after_keep = run["cancel_requested"].clone();
        browser.click("#cancel-run").await?;
        browser.click("#confirm-cancel").await?;
        browser.wait_for_text("h1 .status", |t| t == "cancelled").await?;
        seen.focus_after_cancel = browser.js("return document.activeElement?.id").await?;

        // Run again: the run's version; beside it, the latest.
        let (status, body) = browser.api("POST", "/api/v1/workflows", &workflow("61")).await?;
        if status != 201 && status != 200 {
            return Err(format!("apply v2: {status} {body}"));
        }
        browser.click("#rerun").await?;
        browser.wait_for_path("/runs/2").await?;
        browser.goto(&server.url("/runs/1")).await?;
        browser.hydrated().await?;
        // No task in the URL: the graph is open above the log, whose box
        // still ends within the window.
        seen.fits.push(log_fit(&browser).await?);
        browser.screenshot("run-log-graph-open").await?;
        browser.click("#rerun-latest").await?;
        browser.wait_for_path("/runs/3").await?;
        for id in [2, 3] {
            let (_, body) = browser.api("GET", &format!("/api/v1/runs/{id}"), "").await?;
            let run: serde_json::Value = serde_json::from_str(&body).map_err(e)?;
            seen.versions.push(run["version"].as_i64().unwrap_or_default());
            browser.api("POST", &format!("/api/v1/runs/{id}/cancel"), "").await?;
        }
        Ok::<_, String>(seen)
    }
    .await;
    browser.close().await;
    let seen = outcome.unwrap();
    let first: Vec<(String, bool)> = seen.first_lines.iter().take(2).cloned().collect();
    assert_eq!(
        first,
        [
            ("compiling".to_string(), false),
            ("error: something broke".to_string(), true)
        ],
        "{:?}",
        seen.first_lines
    );
    assert!(
        seen.first_lines
            .iter()
            .all(|(t, _)| !t.contains("::endgroup::")),
        "{:?}",
        seen.first_lines
    );
    // Setup and Checks ended: collapsed, their insides and ends not shown;
    // Last is still open.
    assert_eq!(
        seen.groups,
        serde_json::json!(["false", null, null, "false", null, "true", "line"])
    );
    assert_eq!(seen.opened, serde_json::json!([true, false]));
    assert_eq!(seen.highlights_after_clear, serde_json::json!([0, ""]));
    assert_eq!(
        seen.counts,
        ["1 line", "12,345 lines", "1 line", "12,345 lines"]
    );
    assert_eq!(seen.tops[0], seen.tops[1], "laptop: {:?}", seen.tops);
    assert_eq!(seen.tops[2], seen.tops[3], "phone: {:?}", seen.tops);
    // What is left below the page's head, the tabs and the tools: the box
    // ends at the window's bottom (below, Follow would show lines no one
    // sees).
    assert!(
        seen.log_share > 0.45,
        "the log is {} of the screen",
        seen.log_share
    );
    assert!(
        seen.fits
            .iter()
            .all(|f| f[0] == true && f[1].as_f64() > Some(0.2)),
        "task folded, graph open: {:?}",
        seen.fits
    );
    assert_eq!(
        seen.step_tabs_pinned,
        serde_json::json!([false, false, false, false])
    );
    let full = seen.full.as_array().cloned().unwrap_or_default();
    assert_eq!(full[..3], [true, true, true], "{full:?}");
    assert!(full[3].as_f64().unwrap_or_default() > 0.8, "{full:?}");
    assert_eq!(
        serde_json::Value::from(full[4..].to_vec()),
        serde_json::json!([true, true, "true"]),
        "focus in the log, the rest inert, modal: {full:?}"
    );
    assert_eq!(
        seen.full_after_switch[0], true,
        "{:?}",
        seen.full_after_switch
    );
    assert_eq!(
        seen.focus_after_full,
        serde_json::json!(["log-full", false])
    );
    assert_eq!(seen.later, serde_json::json!(["1", true]));
    assert_eq!(seen.cancel_requested_after_keep, false);
    assert_eq!(seen.focus_after_cancel, "run-title");
    assert!(seen.retried.contains("2 attempts"), "{}", seen.retried);
    assert_eq!(
        seen.attempt_logs,
        [
            "attempt 2",
            "second try works",
            "attempt 1",
            "first try fails (stderr)"
        ]
    );
    assert_eq!(seen.confirm_open, "Cancel run #1?");
    assert_eq!(seen.still_running, "running");
    assert_eq!(seen.versions, [1, 2]);
    assert!(seen.axe.is_empty(), "{}", seen.axe.join("\n"));
}
