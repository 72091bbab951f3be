use crate::util::{Browser, TestServer};

/// The home page (the dashboard) hydrates: on a server with no workflow,
/// its lazily loaded page answers a button, which only works once that
/// page's wasm has loaded, through a server function.
#[tokio::test]
async fn home_page_hydrates_and_shows_the_dashboard() {
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
        browser
            .wait_for_attr("main", "data-hydrated", "true")
            .await?;
        let heading = browser.wait_for_text("h1", |_| true).await?;
        browser.click("#load-examples").await?;
        let loaded = browser
            .wait_for_text("#examples-loaded", |t| t.contains("Loaded"))
            .await?;
        browser.screenshot("home").await?;
        Ok::<_, String>((title, heading, loaded))
    }
    .await;
    browser.close().await;

    let (title, heading, loaded) = outcome.unwrap();
    assert_eq!(title, "Dashboard · Xene");
    assert_eq!(heading, "Dashboard");
    assert!(loaded.contains("example workflows"), "{loaded}");
}

/// The server renders the page unhydrated and nothing answers the button
/// without the wasm, which is what makes the test above a proof of
/// hydration rather than of server rendering.
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
