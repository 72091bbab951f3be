use fantoccini::Locator;

use crate::util::{Browser, OidcProvider, TestServer, WAIT, free_port};

/// Signs in at the provider's login form (which takes any name; the name
/// decides the account's claims) and comes back to Xene. Returns the path
/// and the refusal code shown, if any.
pub async fn sign_in_as(
    browser: &Browser,
    server: &TestServer,
    login: &str,
) -> Result<(String, Option<String>), String> {
    let c = &browser.client;
    let e = |e: fantoccini::error::CmdError| e.to_string();
    c.goto(&server.url("/signin")).await.map_err(e)?;
    // One browser for every account: forget the last one (the provider's
    // cookies and ours share the host 127.0.0.1).
    c.delete_all_cookies().await.map_err(e)?;
    c.goto(&server.url("/signin")).await.map_err(e)?;
    c.find(Locator::Css("#sign-in-oidc"))
        .await
        .map_err(e)?
        .click()
        .await
        .map_err(e)?;
    let login_field = match c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("input[name=login]"))
        .await
    {
        Ok(field) => field,
        Err(err) => {
            let url = c.current_url().await.map_err(e)?;
            let _ = browser.screenshot("signin-stuck").await;
            return Err(format!("no login form at {url}: {err}"));
        }
    };
    login_field.send_keys(login).await.map_err(e)?;
    c.find(Locator::Css("input[name=password]"))
        .await
        .map_err(e)?
        .send_keys("any")
        .await
        .map_err(e)?;
    c.find(Locator::Css("button[type=submit]"))
        .await
        .map_err(e)?
        .click()
        .await
        .map_err(e)?;
    // The provider asks for consent once per account and client.
    let started = std::time::Instant::now();
    let ours = format!("127.0.0.1:{}", server.addr.port());
    loop {
        let url = c.current_url().await.map_err(e)?;
        if url.host_str() == Some("127.0.0.1") && url.port() == Some(server.addr.port()) {
            let path = url.path().to_string();
            let code = match c.find(Locator::Css(".refusal")).await {
                Ok(el) => el.attr("data-code").await.map_err(e)?,
                Err(_) => None,
            };
            return Ok((path, code));
        }
        if let Ok(button) = c
            .find(Locator::Css(
                "button[type=submit][autofocus], button[type=submit]",
            ))
            .await
            && url.path().contains("interaction")
        {
            let _ = button.click().await;
        }
        if started.elapsed() > WAIT {
            let _ = browser.screenshot("signin-stuck").await;
            return Err(format!("never came back to {ours}; at {url}"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Google-shaped accounts against a real OpenID provider: a Workspace user
/// of an allowed domain gets in; another domain, an unverified email, an
/// account without `hd` and a consumer account are each refused with a page
/// that says why.
#[tokio::test]
async fn sign_in_with_openid_admits_only_allowed_workspace_accounts() {
    let port = free_port();
    let provider = OidcProvider::start(&format!("http://127.0.0.1:{port}/auth/callback")).await;
    let server = TestServer::start_with(|args| {
        args.addr = ([127, 0, 0, 1], port).into();
        args.access.oidc_issuer = provider.issuer.clone();
        args.access.oidc_client_id = Some(OidcProvider::CLIENT_ID.into());
        args.access.oidc_client_secret = Some(OidcProvider::CLIENT_SECRET.into());
        args.access.allowed_domains = vec!["example.com".into()];
        args.access.oidc_require_hd = Some(true);
    })
    .await;
    let browser = Browser::start().await;
    let cases = [
        ("alice@example.com", None, "signed-in"),
        (
            "erin@other.org",
            Some("domain_not_allowed"),
            "refused-other-domain",
        ),
        (
            "unverified.bob@example.com",
            Some("unverified_email"),
            "refused-unverified",
        ),
        (
            "nohd.carol@example.com",
            Some("hd_missing"),
            "refused-no-hd",
        ),
        (
            "dave@gmail.com",
            Some("domain_not_allowed"),
            "refused-consumer",
        ),
    ];
    let outcome = async {
        browser
            .client
            .goto(&server.url("/signin"))
            .await
            .map_err(|e| e.to_string())?;
        browser.screenshot("signin").await?;
        let mut seen = Vec::new();
        for (login, _, shot) in cases {
            let (path, code) = sign_in_as(&browser, &server, login).await?;
            browser.screenshot(shot).await?;
            let text = match &code {
                Some(_) => browser.wait_for_text(".refusal", |t| !t.is_empty()).await?,
                None => browser.wait_for_text("h1", |t| t == "Dashboard").await?,
            };
            seen.push((path, code, text));
        }
        Ok::<_, String>(seen)
    }
    .await;
    browser.close().await;
    let seen = outcome.unwrap();
    for ((login, want, _), (path, code, text)) in cases.iter().zip(seen) {
        assert_eq!(code.as_deref(), *want, "{login}: {text}");
        match want {
            None => assert_eq!(path, "/", "{login}"),
            Some(_) => {
                assert_eq!(path, "/signin", "{login}");
                assert!(
                    text.starts_with("You were not signed in."),
                    "{login}: {text}"
                );
            }
        }
    }
}
