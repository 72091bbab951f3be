//! Caches as a person sees them (issue 25): a task with a cache runs twice
//! on the built-in agent's shell runtime; the first run's log says the
//! cache missed and was saved, the second's that it hit; the workflow page
//! lists the entry against the workflow's quota (and the artifacts' usage
//! against theirs), and Delete, after asking, removes it, leaving the
//! empty state that says what caches are. Screenshots under
//! `target/screenshots/`.

use crate::util::{Browser, TestServer};

const WORKFLOW: &str = r#"
name: cached
pipelines:
  ci:
    tasks:
      build:
        caches:
          - name: deps
            key: deps-v1
            paths: [deps]
        steps:
          - name: fetch
            run: |
              echo "deps cache: $XENE_CACHE_DEPS"
              echo "had: $(cat deps/lib.txt 2>/dev/null || echo none)"
              if [ ! -f deps/lib.txt ]; then mkdir -p deps; echo lib > deps/lib.txt; fi
"#;

/// What the pages showed, for the asserts after the browser closed.
#[derive(Debug, Default)]
struct Seen {
    empty_before: String,
    docs_link: serde_json::Value,
    logs: Vec<String>,
    usage: String,
    artifact_usage: String,
    focus: serde_json::Value,
    entries: String,
    confirm: String,
    kept: serde_json::Value,
    escaped: serde_json::Value,
    empty_after: String,
    listed_after: serde_json::Value,
    axe: Vec<String>,
}

/// Starts a run of `ci` and waits on its page for its end; answers the
/// build step's log as the page shows it once it has `want` (the cache's
/// last line: saved after a miss, hit).
async fn run(
    browser: &Browser,
    server: &TestServer,
    shot: &str,
    want: &str,
) -> Result<String, String> {
    let (status, body) = browser
        .api("POST", "/api/v1/workflows/cached/pipelines/ci/runs", "")
        .await?;
    if status != 201 {
        return Err(format!("start: {status} {body}"));
    }
    let run: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let id = run["id"].as_i64().unwrap_or_default();
    browser
        .goto(&server.url(&format!("/runs/{id}?task=build&step=fetch")))
        .await?;
    browser.hydrated().await?;
    let status = browser
        .wait_for_text("h1 .status", |t| t == "success" || t == "error")
        .await?;
    let log = browser
        .wait_for(
            "the step's log",
            &format!(
                "const t = [...document.querySelectorAll('.log-line .txt')].map(l => l.textContent).join('\\n'); \
                 return t.includes('{want}') && t.includes('had:') ? t : null"
            ),
        )
        .await
        .map(|v| v.as_str().unwrap_or_default().to_string());
    browser.screenshot(shot).await?;
    let log = log?;
    if status != "success" {
        return Err(format!("run {id} ended {status}: {log}"));
    }
    Ok(log)
}

async fn walk(browser: &Browser, server: &TestServer, seen: &mut Seen) -> Result<(), String> {
    browser.set_size(1280, 900).await?;
    browser.sign_in_as_admin(server).await?;
    let (status, body) = browser.api("POST", "/api/v1/workflows", WORKFLOW).await?;
    if status != 201 {
        return Err(format!("apply: {status} {body}"));
    }

    // Before any run: the empty state, with the way to the docs.
    browser.goto(&server.url("/workflows/cached")).await?;
    browser.hydrated().await?;
    seen.empty_before = browser
        .wait_for_text("#no-caches", |t| !t.is_empty())
        .await?;
    seen.docs_link = browser
        .js("return document.querySelector('#no-caches a')?.getAttribute('href') ?? null")
        .await?;
    browser.screenshot("caches-empty").await?;
    seen.axe.extend(browser.axe().await?);

    // Two runs: a miss that saves, then a hit.
    seen.logs
        .push(run(browser, server, "caches-run-miss", "cache deps: saved").await?);
    seen.logs
        .push(run(browser, server, "caches-run-hit", "cache deps: hit").await?);

    // The workflow page lists the entry.
    browser.goto(&server.url("/workflows/cached")).await?;
    browser.hydrated().await?;
    seen.entries = browser
        .wait_for_text("#cache-entries", |t| t.contains("deps-v1"))
        .await?;
    seen.usage = browser
        .wait_for_text("#cache-usage", |t| !t.is_empty())
        .await?;
    seen.artifact_usage = browser
        .wait_for_text("#artifact-usage", |t| !t.is_empty())
        .await?;
    browser.screenshot("caches-listed").await?;
    seen.axe.extend(browser.axe().await?);
    // On a phone the table is a card per entry.
    browser.set_size(390, 844).await?;
    browser
        .js("document.getElementById('caches').scrollIntoView()")
        .await?;
    browser.screenshot("caches-listed-narrow").await?;
    seen.axe.extend(browser.axe().await?);
    browser.set_size(1280, 900).await?;

    // Delete asks first; keeping it changes nothing.
    let delete = "#cache-entries button.danger";
    browser.click(delete).await?;
    seen.confirm = browser
        .wait_for_text("#cache-confirm", |t| t.contains("deps"))
        .await?;
    seen.focus = browser
        .js("return document.activeElement?.id ?? null")
        .await?;
    browser.screenshot("caches-confirm").await?;
    seen.axe.extend(browser.axe().await?);
    browser.click("#keep-cache").await?;
    seen.kept = browser
        .wait_for(
            "the question gone",
            "return document.getElementById('cache-confirm') === null \
             && document.querySelectorAll('#cache-entries tbody tr').length",
        )
        .await?;
    // Escape closes it too, the focus back on its Delete.
    browser.click(delete).await?;
    browser
        .wait_for_text("#cache-confirm", |t| !t.is_empty())
        .await?;
    browser.press(&['\u{E00C}']).await?;
    seen.escaped = browser
        .wait_for(
            "the question gone on Escape",
            "return document.getElementById('cache-confirm') === null \
             && document.activeElement?.id",
        )
        .await?;
    browser.click(delete).await?;
    browser.click("#confirm-cache-delete").await?;
    seen.empty_after = browser
        .wait_for_text("#no-caches", |t| !t.is_empty())
        .await?;
    browser.screenshot("caches-deleted").await?;
    let (_, body) = browser
        .api("GET", "/api/v1/workflows/cached/caches", "")
        .await?;
    seen.listed_after = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(())
}

#[tokio::test]
async fn a_cache_misses_then_hits_and_the_workflow_page_lists_and_deletes_it() {
    let server = TestServer::start_with(|args| {
        args.artifacts.cache_quota = 64 << 20;
        args.artifacts.artifact_quota = Some(1 << 30);
    })
    .await;
    let browser = Browser::start().await;
    let mut seen = Seen::default();
    let outcome = walk(&browser, &server, &mut seen).await;
    browser.close().await;
    eprintln!("{seen:#?}");
    outcome.unwrap();

    assert!(
        seen.empty_before.contains("No cache entries"),
        "{}",
        seen.empty_before
    );
    assert_eq!(
        seen.docs_link,
        "https://github.com/xene-run/xene/blob/main/docs/spec.md#caches"
    );
    let [miss, hit] = seen.logs.as_slice() else {
        panic!("{:?}", seen.logs);
    };
    assert!(miss.contains("deps cache: miss"), "{miss}");
    // The files come back: the second run finds what the first saved.
    assert!(miss.contains("had: none"), "{miss}");
    assert!(hit.contains("had: lib"), "{hit}");
    assert!(miss.contains("cache deps: miss deps-v1"), "{miss}");
    assert!(miss.contains("cache deps: saved deps-v1"), "{miss}");
    assert!(hit.contains("deps cache: hit"), "{hit}");
    assert!(hit.contains("cache deps: hit deps-v1"), "{hit}");
    assert!(!hit.contains("cache deps: saved"), "{hit}");
    assert!(seen.entries.contains("deps"), "{}", seen.entries);
    assert!(
        seen.usage.contains("1 entry") && seen.usage.contains("of 64.0 MiB"),
        "{}",
        seen.usage
    );
    assert!(
        seen.confirm.contains("Delete cache deps?"),
        "{}",
        seen.confirm
    );
    assert_eq!(seen.focus, "keep-cache");
    assert_eq!(seen.kept, 1);
    assert!(
        seen.escaped
            .as_str()
            .is_some_and(|id| id.starts_with("delete-cache-")),
        "{}",
        seen.escaped
    );
    assert!(
        seen.artifact_usage.contains("of 1.0 GiB"),
        "{}",
        seen.artifact_usage
    );
    assert!(
        seen.empty_after.contains("No cache entries"),
        "{}",
        seen.empty_after
    );
    assert_eq!(seen.listed_after["total"], 0, "{}", seen.listed_after);
    assert!(seen.axe.is_empty(), "axe: {:?}", seen.axe);
}
