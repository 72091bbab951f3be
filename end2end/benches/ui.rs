//! Figures of the web UI, printed (nothing is asserted): the browser
//! bundle's size, raw and gzipped, how it is served (compression, cache
//! lifetime), and the run page's time to interactive on loopback in a real
//! headless Chromium: from the start of navigation until the page has
//! hydrated (the app sets `window.__xene_hydrated_at`).
//!
//! Run after `cargo xtask site --release` (the figures are the bundle's in
//! target/site): `cargo bench -p end2end --bench ui`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::process::Command;

const LOADS: usize = 15;

#[tokio::main]
async fn main() {
    let target = xene_testkit::bins::target_dir();
    let site = target.join("site");
    let pkg = site.join("pkg");
    let name = std::fs::read_to_string(pkg.join("bundle-name"))
        .expect("no pkg/bundle-name: run `cargo xtask site --release` first");
    let name = name.trim();
    println!("bundle {name} in {}", site.display());
    // `xene-HASH/xene`: the folder holds every file of the bundle; a page
    // loads the shell and its own group's pieces (`split_*`, `chunk_*`; see
    // what `cargo xtask site` prints per group).
    let folder = pkg.join(name.split('/').next().unwrap_or(name));
    let mut files: Vec<(String, u64, u64)> = std::fs::read_dir(&folder)
        .expect("the bundle's folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| !f.ends_with(".gz"))
        .map(|f| {
            let raw = std::fs::metadata(folder.join(&f)).map_or(0, |m| m.len());
            let gz = std::fs::metadata(folder.join(format!("{f}.gz"))).map_or(0, |m| m.len());
            (f, raw, gz)
        })
        .collect();
    files.sort();
    let mut every = (0, 0);
    let mut lazy = (0, 0);
    for (file, raw, gz) in &files {
        println!(
            "  {file:<40} {:>8.1} KB raw {:>8.1} KB gzipped",
            *raw as f64 / 1e3,
            *gz as f64 / 1e3
        );
        let sum = if file.starts_with("split_") || file.starts_with("chunk_") {
            &mut lazy
        } else {
            &mut every
        };
        sum.0 += raw;
        sum.1 += gz;
    }
    println!(
        "  every page loads {:>8.1} KB raw {:>8.1} KB gzipped (goal < 500 KB gzipped)",
        every.0 as f64 / 1e3,
        every.1 as f64 / 1e3
    );
    println!(
        "  all groups' pieces, loaded on demand {:>8.1} KB raw {:>8.1} KB gzipped",
        lazy.0 as f64 / 1e3,
        lazy.1 as f64 / 1e3
    );

    // 0700: xene refuses a data directory others can enter.
    let data = xene_testkit::private_tempdir();
    let mut args = xene_server::config::Args::for_data_dir(data.path().to_path_buf());
    args.site_dir = Some(site.clone());
    let server = xene_server::Server::bind(&args)
        .await
        .expect("server starts")
        .spawn();
    let addr = server.addr;
    let link = server.sign_in_link.clone().expect("a sign-in link");
    let url = |p: &str| format!("http://{addr}{p}");

    let http = reqwest::Client::new();
    let wasm = http
        .get(url(&format!("/pkg/{name}_bg.wasm")))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    let header = |h: &str| {
        wasm.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    println!(
        "served: /pkg/{name}_bg.wasm content-encoding {}, {} bytes on the wire, cache-control {:?}",
        header("content-encoding"),
        header("content-length"),
        header("cache-control")
    );

    let (client, _driver, _profile) = browser().await;
    let result = async {
        client.goto(&link).await?;
        client.goto(&url("/workflows")).await?;
        wait(&client, "return window.__xene_hydrated === true").await;
        client
            .find(fantoccini::Locator::Css("#load-examples"))
            .await?
            .click()
            .await?;
        wait(
            &client,
            "return document.querySelector('#workflows') !== null",
        )
        .await;
        client
            .execute_async(
                "const done = arguments[0]; \
                 fetch('/api/v1/workflows/fan-out-fan-in/pipelines/shards/runs', {method: 'POST'}) \
                 .then(r => done(r.status));",
                vec![],
            )
            .await?;
        // The first visit of a run page: the shell is cached (from the
        // workflows page), the run page's own pieces are not.
        client.goto(&url("/runs/1")).await?;
        let first = interactive(&client).await?.0;
        wait(
            &client,
            "return document.querySelector('h1 .status')?.textContent === 'success'",
        )
        .await;
        let mut tti = Vec::new();
        let mut html = Vec::new();
        for _ in 0..LOADS {
            client.goto(&url("/runs/1?task=gather")).await?;
            let (t, h) = interactive(&client).await?;
            tti.push(t);
            html.push(h);
        }
        // The editor, the heaviest page: first visit, then cached.
        let mut editor = Vec::new();
        for _ in 0..5 {
            client.goto(&url("/workflows/fan-out-fan-in/edit")).await?;
            editor.push(interactive(&client).await?.0);
        }
        Ok::<_, fantoccini::error::CmdError>((first, tti, html, editor))
    }
    .await;
    let _ = client.close().await;
    drop(server);
    let (first, mut tti, mut html, editor) = result.expect("the browser session");
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (tti_median, tti_max) = stats(&mut tti);
    let (html_median, html_max) = stats(&mut html);
    println!("run page, {LOADS} loads on loopback (first load warms the cache):");
    println!("  server-rendered HTML received: median {html_median:.0} ms, max {html_max:.0} ms");
    println!(
        "  interactive (hydrated):        median {tti_median:.0} ms, max {tti_max:.0} ms (goal < 1000 ms)"
    );
    println!(
        "  interactive on the first visit of a run page (its pieces not cached): {first:.0} ms"
    );
    println!(
        "editor page, interactive: first visit {:.0} ms, then {}",
        editor[0],
        editor[1..]
            .iter()
            .map(|t| format!("{t:.0} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Waits until the page is interactive; answers when it became so and when
/// its HTML had arrived, in ms since navigation started.
async fn interactive(client: &Client) -> Result<(f64, f64), fantoccini::error::CmdError> {
    wait(client, "return window.__xene_hydrated === true").await;
    let v = client
        .execute(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return [window.__xene_hydrated_at - performance.timeOrigin, n.responseEnd];",
            vec![],
        )
        .await?;
    Ok((
        v[0].as_f64().unwrap_or(f64::NAN),
        v[1].as_f64().unwrap_or(f64::NAN),
    ))
}

async fn wait(client: &Client, script: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if client
            .execute(script, vec![])
            .await
            .ok()
            .and_then(|v| v.as_bool())
            == Some(true)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never true: {script}");
}

async fn browser() -> (Client, tokio::process::Child, tempfile::TempDir) {
    let port = xene_testkit::free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-dev-shm-usage",
        format!("--user-data-dir={}", profile.path().display()),
    ]}});
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let started = Instant::now();
    loop {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (c, driver, profile),
            Err(e) if started.elapsed() > Duration::from_secs(20) => {
                panic!("no WebDriver session: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
