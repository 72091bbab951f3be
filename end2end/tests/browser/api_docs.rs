use fantoccini::Locator;

use crate::util::{Browser, TestServer};

/// Where screenshots go, for people to look at what the tests saw.
fn screenshot_path(name: &str) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

/// `/api/v1/docs` shows the API document in a browser with nothing from the
/// network: every operation, its answers, and the schemas they link to; code
/// as code, not between literal backticks, and an icon that is there (walk
/// bug 20: it asked for `/favicon.ico` and got a 404).
#[tokio::test]
async fn the_api_docs_page_browses_the_document() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;

    let outcome = async {
        let c = &browser.client;
        c.goto(&server.url("/api/v1/docs"))
            .await
            .map_err(|e| e.to_string())?;
        let title = c.title().await.map_err(|e| e.to_string())?;
        let text = c
            .find(Locator::Css("body"))
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let icon = c
            .execute_async(
                "const done = arguments[0]; \
                 const link = document.querySelector('link[rel=icon]'); \
                 if (!link) { done('no icon link'); return; } \
                 fetch(link.href).then(r => done(r.status)).catch(err => done(String(err)));",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())?;
        let coded = c
            .find_all(Locator::Css("section.operation p code"))
            .await
            .map_err(|e| e.to_string())?
            .len();
        let operations = c
            .find_all(Locator::Css("section.operation"))
            .await
            .map_err(|e| e.to_string())?
            .len();
        // Following a link from an answer to its schema.
        let cancel = c
            .find(Locator::Css("#post-api-v1-runs--id--cancel"))
            .await
            .map_err(|e| e.to_string())?;
        let cancel_text = cancel.text().await.map_err(|e| e.to_string())?;
        c.find(Locator::Css(
            "#post-api-v1-runs--id--cancel a[href='#schema-ErrorBody']",
        ))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
        let url = c.current_url().await.map_err(|e| e.to_string())?;
        let statuses = browser
            .wait_for_text("#schema-RunStatus", |t| t.contains("queued"))
            .await?;
        c.goto(&server.url("/api/v1/docs"))
            .await
            .map_err(|e| e.to_string())?;
        let png = c.screenshot().await.map_err(|e| e.to_string())?;
        std::fs::write(screenshot_path("api-docs"), png).map_err(|e| e.to_string())?;
        Ok::<_, String>((
            title,
            operations,
            cancel_text,
            url,
            statuses,
            (text, icon, coded),
        ))
    }
    .await;
    browser.close().await;

    let (title, operations, cancel_text, url, statuses, (text, icon, coded)) = outcome.unwrap();
    assert!(!text.contains('`'), "literal backticks in the docs");
    assert_eq!(icon, serde_json::json!(200), "the page's icon");
    assert!(
        coded > 10,
        "only {coded} code spans in the operations' text"
    );
    assert_eq!(title, "Xene API reference");
    assert!(operations >= 14, "only {operations} operations shown");
    assert!(cancel_text.contains("409"), "{cancel_text}");
    assert!(cancel_text.contains("Already finished"), "{cancel_text}");
    assert_eq!(url.fragment(), Some("schema-ErrorBody"));
    assert!(
        statuses.contains("queued") && statuses.contains("shutting_down"),
        "{statuses}"
    );
}
