use fantoccini::Locator;

use crate::util::{Browser, TestServer};

/// The home page hydrates, and its button, which only works with the wasm
/// loaded, reaches the server through a server function.
#[tokio::test]
async fn home_page_hydrates_and_talks_to_the_server() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;

    let outcome = async {
        browser.sign_in_as_admin(&server).await?;
        browser
            .client
            .goto(&server.url("/"))
            .await
            .map_err(|e| e.to_string())?;
        let title = browser.client.title().await.map_err(|e| e.to_string())?;
        let status_before = browser.wait_for_text("#server-status", |_| true).await?;
        browser
            .wait_for_attr(".hydration", "data-hydrated", "true")
            .await?;
        browser
            .client
            .find(Locator::Css("#check-server"))
            .await
            .map_err(|e| e.to_string())?
            .click()
            .await
            .map_err(|e| e.to_string())?;
        let status = browser
            .wait_for_text("#server-status", |t| t.contains("database"))
            .await?;
        browser.screenshot("home").await?;
        Ok::<_, String>((title, status_before, status))
    }
    .await;
    browser.close().await;

    let (title, status_before, status) = outcome.unwrap();
    assert_eq!(title, "Xene");
    assert_eq!(status_before.trim(), "");
    assert_eq!(
        status,
        format!(
            "Xene {} is up; its sqlite database answers.",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// Without JavaScript nothing answers the button, which is what makes the
/// test above a proof of hydration rather than of server rendering.
#[tokio::test]
async fn server_renders_the_page_before_hydration() {
    let server = TestServer::start().await;
    // A client that keeps the session cookie the sign-in link sets.
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let signed_in = client
        .get(server.sign_in_link.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.url().path(), "/");
    let body = client
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains(r#"data-hydrated="false""#), "{body}");
    assert!(body.contains("/pkg/xene"), "{body}");
}
