//! The web UI's flows, as a user does them in a real browser: the first run
//! (load the examples, run one, watch it finish with its logs), the run form
//! with params, logs (search, line links), cancel, tokens, agents, roles.
//! Every page's screenshot is saved under `target/screenshots/`.

use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::util::{Browser, TestServer, WAIT};

fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

impl Browser {
    pub async fn click(&self, css: &str) -> Result<(), String> {
        let started = Instant::now();
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(el) => match el.click().await {
                    Ok(_) => return Ok(()),
                    Err(err) if started.elapsed() > WAIT => return Err(format!("{css}: {err}")),
                    Err(_) => {}
                },
                Err(err) if started.elapsed() > WAIT => return Err(format!("{css}: {err}")),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.client.goto(url).await.map_err(e)
    }

    /// Waits for the page to be interactive (the shell's effect ran).
    pub async fn hydrated(&self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < WAIT {
            let v = self
                .client
                .execute("return window.__xene_hydrated === true", vec![])
                .await
                .map_err(e)?;
            if v.as_bool() == Some(true) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("the page never hydrated".into())
    }

    pub async fn path(&self) -> Result<String, String> {
        Ok(self
            .client
            .current_url()
            .await
            .map_err(e)?
            .path()
            .to_string())
    }

    pub async fn set_size(&self, width: u32, height: u32) -> Result<(), String> {
        self.client.set_window_size(width, height).await.map_err(e)
    }
}

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
