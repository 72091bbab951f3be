//! Artifacts where people edit and keep them, on one server whose built-in
//! agent runs a two-task pipeline (`build` publishes, `test` needs): the
//! run page's Pin toggle (pressed, stored, read back after a reload), the
//! workflow page's usage, and the editor's side panel showing and editing
//! a task's `publish` and `needs` into the YAML. Screenshots under
//! `target/screenshots/artifact-*`; axe on each page.

use crate::editor::node;
use crate::util::{Browser, TestServer};

const WORKFLOW: &str = r#"
name: panel
pipelines:
  p:
    tasks:
      build:
        steps:
          - run: mkdir -p dist && echo hi > dist/app
        publish:
          - name: binary
            path: dist/app
      test:
        depends_on: [build]
        needs: [binary]
        steps:
          - run: cat app
"#;

/// What the pages showed, for the asserts after the browser closed.
#[derive(Debug, Default)]
struct Seen {
    pinned_after_reload: String,
    stored_pin: bool,
    usage: String,
    panel: (String, String),
    yaml_paths: String,
    yaml_always: String,
    need: String,
    yaml_need: String,
    axe: Vec<String>,
}

/// Sets a field's value as typing and leaving it would.
async fn change(browser: &Browser, css: &str, value: &str) -> Result<(), String> {
    browser
        .client
        .execute(
            "const el = document.querySelector(arguments[0]); \
             if (!el) throw new Error('no ' + arguments[0]); \
             el.value = arguments[1]; \
             el.dispatchEvent(new Event('input', {bubbles: true})); \
             el.dispatchEvent(new Event('change', {bubbles: true}));",
            vec![css.into(), value.into()],
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn walk(browser: &Browser, server: &TestServer) -> Result<Seen, String> {
    let mut seen = Seen::default();
    browser.set_size(1280, 900).await?;
    browser.sign_in_as_admin(server).await?;
    let (status, body) = browser.api("POST", "/api/v1/workflows", WORKFLOW).await?;
    if status != 201 {
        return Err(format!("apply: {status} {body}"));
    }
    let (status, body) = browser
        .api("POST", "/api/v1/workflows/panel/pipelines/p/runs", "")
        .await?;
    if status != 201 {
        return Err(format!("run: {status} {body}"));
    }
    let run: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let id = run["id"].as_i64().unwrap_or_default();

    // The run page: the artifact listed, then pinned.
    browser.goto(&server.url(&format!("/runs/{id}"))).await?;
    browser.hydrated().await?;
    browser
        .wait_for_text("h1 .status", |t| t == "success" || t == "error")
        .await?;
    browser
        .wait_for_text("#artifacts", |t| t.contains("binary"))
        .await?;
    browser
        .wait_for_attr("#pin-run", "aria-pressed", "false")
        .await?;
    browser.click("#pin-run").await?;
    browser
        .wait_for_attr("#pin-run", "aria-pressed", "true")
        .await?;
    browser.screenshot("artifact-run-pinned").await?;
    seen.axe.extend(browser.axe().await?);
    browser.goto(&server.url(&format!("/runs/{id}"))).await?;
    browser.hydrated().await?;
    seen.pinned_after_reload = browser.wait_for_text("#pin-run", |t| !t.is_empty()).await?;
    let (_, body) = browser
        .api("GET", &format!("/api/v1/runs/{id}"), "")
        .await?;
    let run: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    seen.stored_pin = run["pinned"] == true;

    // The workflow page: what its artifacts hold.
    browser.goto(&server.url("/workflows/panel")).await?;
    browser.hydrated().await?;
    seen.usage = browser
        .wait_for_text("#artifact-usage", |t| !t.is_empty())
        .await?;
    browser.screenshot("artifact-workflow-usage").await?;
    seen.axe.extend(browser.axe().await?);

    // The editor's panel: build's publish, then test's need.
    browser.goto(&server.url("/workflows/panel/edit")).await?;
    browser.hydrated().await?;
    browser.click(&node("build")).await?;
    let value = |css: &'static str| {
        let script = format!("return document.querySelector('{css}')?.value ?? null");
        async move { browser.wait_for(css, &script).await }
    };
    let name = value("#publish-0-name").await?;
    let paths = value("#publish-0-paths").await?;
    seen.panel = (
        name.as_str().unwrap_or_default().to_string(),
        paths.as_str().unwrap_or_default().to_string(),
    );
    change(browser, "#publish-0-paths", "dist/app\ndist/*.txt").await?;
    seen.yaml_paths = browser
        .wait_for("the paths in the YAML", "const y = document.querySelector('#editor-yaml').value; return y.includes('dist/*.txt') ? y : null")
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string();
    browser.click("#publish-0-always").await?;
    seen.yaml_always = browser
        .wait_for("when: always in the YAML", "const y = document.querySelector('#editor-yaml').value; return y.includes('when: always') ? y : null")
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string();
    browser.screenshot("artifact-editor-publish").await?;
    browser.click(&node("test")).await?;
    seen.need = value("#needs-0-name")
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string();
    change(browser, "#needs-0-path", "bin").await?;
    seen.yaml_need = browser
        .wait_for("the need's path in the YAML", "const y = document.querySelector('#editor-yaml').value; return y.includes('path: bin') ? y : null")
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string();
    browser.screenshot("artifact-editor-needs").await?;
    seen.axe.extend(browser.axe().await?);
    Ok(seen)
}

#[tokio::test]
async fn artifacts_are_pinned_counted_and_edited_in_the_panel() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let seen = walk(&browser, &server).await;
    browser.close().await;
    let seen = seen.unwrap();
    assert_eq!(seen.pinned_after_reload, "Pinned", "{seen:?}");
    assert!(seen.stored_pin, "{seen:?}");
    assert_eq!(seen.usage, "artifacts: 3 B", "{seen:?}");
    assert_eq!(seen.panel, ("binary".into(), "dist/app".into()), "{seen:?}");
    // The panel writes in the list's style (flow or block): compared
    // without whitespace.
    let squash = |y: &str| y.split_whitespace().collect::<String>();
    let paths = squash(&seen.yaml_paths);
    assert!(
        paths.contains("paths:[dist/app,dist/*.txt]")
            || paths.contains("paths:-dist/app-dist/*.txt"),
        "{}",
        seen.yaml_paths
    );
    assert!(seen.yaml_always.contains("when: always"), "{seen:?}");
    assert_eq!(seen.need, "binary", "{seen:?}");
    let need = squash(&seen.yaml_need);
    assert!(
        need.contains("needs:[{name:binary,path:bin}]")
            || need.contains("needs:-name:binarypath:bin"),
        "{}",
        seen.yaml_need
    );
    assert!(seen.axe.is_empty(), "axe: {:?}", seen.axe);
}
