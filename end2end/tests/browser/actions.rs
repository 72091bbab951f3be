//! What a user does in the browser, for the tests: click, type, wait for
//! a page's state, call the API as the page would, check accessibility.

use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::util::{Browser, WAIT};

pub fn e(err: impl std::fmt::Display) -> String {
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

impl Browser {
    pub async fn js(&self, script: &str) -> Result<serde_json::Value, String> {
        self.client.execute(script, vec![]).await.map_err(e)
    }

    /// Calls the API from the page, as the page's own code would (same
    /// origin, the session cookie); answers the status and the body.
    pub async fn api(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        let v = self
            .client
            .execute_async(
                "const [m, p, b, done] = arguments; \
                 fetch(p, {method: m, body: m === 'GET' ? undefined : b}) \
                   .then(async r => done([r.status, await r.text()])) \
                   .catch(err => done([0, String(err)]));",
                vec![method.into(), path.into(), body.into()],
            )
            .await
            .map_err(e)?;
        Ok((
            v[0].as_u64().unwrap_or(0) as u16,
            v[1].as_str().unwrap_or_default().to_string(),
        ))
    }

    pub async fn wait_for(&self, what: &str, script: &str) -> Result<serde_json::Value, String> {
        let started = Instant::now();
        let mut last = serde_json::Value::Null;
        while started.elapsed() < WAIT {
            last = self.js(script).await?;
            if !last.is_null() && last != serde_json::Value::Bool(false) {
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{what}: never true; last {last}"))
    }

    pub async fn wait_for_path(&self, prefix: &str) -> Result<String, String> {
        let started = Instant::now();
        loop {
            let path = self.path().await?;
            if path.starts_with(prefix) {
                return Ok(path);
            }
            if started.elapsed() > WAIT {
                return Err(format!("never reached {prefix}; at {path}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Browser {
    /// Runs axe-core (npm, installed in end2end/axe) on the page; answers
    /// its serious and critical violations, one line each.
    pub async fn axe(&self) -> Result<Vec<String>, String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("axe/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&path).map_err(|err| {
            format!(
                "{}: {err} (run `npm ci` in end2end/axe; `cargo xtask setup` does)",
                path.display()
            )
        })?;
        self.client.execute(&source, vec![]).await.map_err(e)?;
        let found = self
            .client
            .execute_async(
                "const done = arguments[0]; \
                 axe.run(document, {resultTypes: ['violations']}).then(r => done( \
                   r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical') \
                     .map(v => v.impact + ' ' + v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')))) \
                 .catch(err => done(['axe failed: ' + err]));",
                vec![],
            )
            .await
            .map_err(e)?;
        Ok(found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }
}
