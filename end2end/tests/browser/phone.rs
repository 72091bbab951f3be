//! The UI on a phone's screen (390 × 844) and the reader's theme: the top
//! bar short, its navigation in one row; the runs, workflows and agents
//! lists as cards that fit the width; the agents' Drain button; the theme
//! chosen in the account menu, written by the server before the first
//! paint. Screenshots of the runs list, a run, the editor and the agents
//! (`target/screenshots/phone-*.png`).

use crate::util::{Browser, TestServer};

/// What does not fit a phone in a table: the page's sideways overflow, the
/// cells cut at either edge, whether its rows are cards, and each row's
/// cells shown without their label. Answered as JSON.
const FITS: &str = "\
    const table = document.querySelector(arguments[0]); \
    const width = document.documentElement.clientWidth; \
    const shown = [...table.querySelectorAll('tbody th, tbody td')].filter(c => c.offsetParent !== null); \
    const cut = shown.filter(c => { const r = c.getBoundingClientRect(); return r.right > width + 0.5 || r.left < -0.5; }) \
        .map(c => c.dataset.label || c.textContent.trim().slice(0, 30)); \
    const unlabelled = shown.filter(c => c.tagName === 'TD' && c.dataset.label \
        && ['none', 'normal'].includes(getComputedStyle(c, '::before').content)).map(c => c.dataset.label); \
    return { overflow: document.documentElement.scrollWidth - width, cut, unlabelled, \
        row: getComputedStyle(table.querySelector('tbody tr')).display };";

/// What sticks out of a phone's page sideways (outside boxes that scroll):
/// the page's overflow, then up to 8 of those elements.
const WIDER: &str = "\
    const width = document.documentElement.clientWidth; \
    const scrolls = e => { for (let p = e.parentElement; p; p = p.parentElement) { \
        if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return true; } return false; }; \
    return [document.documentElement.scrollWidth - width, ...[...document.querySelectorAll('main *')] \
        .filter(e => e.getBoundingClientRect().right > width + 0.5 && !scrolls(e)).slice(0, 8) \
        .map(e => `${e.tagName.toLowerCase()}.${e.getAttribute('class')}#${e.id}`)];";

/// Walks a phone's pages on one server: each list fits as cards, the top
/// bar is short with its links in one row (the current one in view), the
/// Drain button is there and works, and a theme chosen in the account
/// menu holds across loads because the server writes it. The runs list's
/// feed reads no resource outside a <Transition> (the walk's hydration
/// warning, runs.rs:118): Leptos prints that warning only in a debug
/// bundle (`debug_assertions`), so this check can fail only when the test
/// runs on one (`cargo xtask site`, not `--release`, as `cargo xtask test`
/// builds it).
#[tokio::test]
async fn a_phone_gets_cards_a_short_top_bar_and_a_theme_of_its_own() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(390, 844).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/workflows")).await?;
        browser.hydrated().await?;
        browser.click("#load-examples").await?;
        browser
            .wait_for_text("#workflows", |t| t.contains("fan-out-fan-in"))
            .await?;
        let workflows = fits(&browser, "#workflows").await?;
        browser.screenshot("phone-workflows").await?;

        // The runs list, following its feed while a run starts and ends.
        browser.goto(&server.url("/runs")).await?;
        browser.hydrated().await?;
        browser
            .js("window.__warnings = []; const warn = console.warn; \
                 console.warn = (...args) => { window.__warnings.push(args.join(' ')); warn(...args); };")
            .await?;
        let (status, body) = browser
            .api("POST", "/api/v1/workflows/fan-out-fan-in/pipelines/shards/runs", "")
            .await?;
        if status != 201 {
            return Err(format!("start: {status} {body}"));
        }
        browser
            .wait_for_text("#runs tr[data-run=\"1\"] .status", |t| t == "success")
            .await?;
        let warnings = browser
            .js("return window.__warnings.filter(w => w.includes('resource'))")
            .await?;
        let runs = fits(&browser, "#runs").await?;
        // The columns a phone used to cut off.
        let ends = browser
            .js("return ['Requested', 'Duration'].map(l => { \
                   const c = document.querySelector(`#runs tr[data-run=\"1\"] td[data-label=\"${l}\"]`); \
                   const r = c.getBoundingClientRect(); \
                   return r.width > 0 && r.right <= document.documentElement.clientWidth && c.textContent.trim() !== ''; })")
            .await?;
        browser.screenshot("phone-runs").await?;
        // Cards never scroll sideways: their wrapper is no tab stop.
        let phone_stops = browser
            .js("return [...document.querySelectorAll('.table-wrap')].map(w => w.hasAttribute('tabindex'))")
            .await?;
        let bar = browser
            .js("const links = [...document.querySelectorAll('.topbar nav a')]; \
                 return { height: document.querySelector('.topbar').getBoundingClientRect().height, \
                   rows: new Set(links.map(a => Math.round(a.getBoundingClientRect().top))).size, \
                   links: links.length };")
            .await?;

        browser.goto(&server.url("/runs/1")).await?;
        browser.hydrated().await?;
        browser.wait_for_text("h1 .status", |t| t == "success").await?;
        browser.screenshot("phone-run").await?;
        // Nothing on it wider than the phone, except inside what scrolls.
        let run_page = browser.js(WIDER).await?;

        browser
            .goto(&server.url("/workflows/fan-out-fan-in/edit"))
            .await?;
        browser.hydrated().await?;
        browser
            .wait_for("the canvas", "return document.querySelector('main svg [data-task]') !== null")
            .await?;
        browser.screenshot("phone-editor").await?;

        browser.goto(&server.url("/agents")).await?;
        browser.hydrated().await?;
        browser.wait_for_text("#agents", |t| t.contains("built-in")).await?;
        browser.wait_for_text("#agents button.drain", |t| t == "Drain").await?;
        let agents = fits(&browser, "#agents").await?;
        browser.screenshot("phone-agents").await?;
        browser.click("#agents button.drain").await?;
        browser.wait_for_text("#agents button.drain", |t| t == "Undrain").await?;
        browser.wait_for_text("#agents .drain.status", |t| t == "drained").await?;
        browser.screenshot("phone-agents-drained").await?;
        browser.click("#agents button.drain").await?;
        browser.wait_for_text("#agents button.drain", |t| t == "Drain").await?;

        // The last link of the row, off the screen's edge, scrolled into view.
        browser.goto(&server.url("/audit")).await?;
        browser.hydrated().await?;
        let audit_link = browser
            .wait_for(
                "the Audit link in view",
                "const nav = document.querySelector('.topbar nav').getBoundingClientRect(); \
                 const a = document.querySelector('.topbar nav a[aria-current=\"page\"]')?.getBoundingClientRect(); \
                 return a && a.left >= nav.left - 0.5 && a.right <= nav.right + 0.5;",
            )
            .await?;

        // The theme: dark although the system prefers light, kept by the
        // server, then back to the system's.
        browser.goto(&server.url("/runs")).await?;
        browser.hydrated().await?;
        browser.click(".account > summary").await?;
        browser.click("#theme option[value=\"dark\"]").await?;
        browser.wait_for_attr("html", "data-theme", "dark").await?;
        browser.screenshot("phone-menu-dark").await?;
        let (_, served) = browser.api("GET", "/runs", "").await?;
        let served_dark = served.contains("<html lang=\"en\" data-theme=\"dark\"");
        browser.goto(&server.url("/runs")).await?;
        browser.hydrated().await?;
        let background = browser
            .js("return getComputedStyle(document.documentElement).backgroundColor")
            .await?;
        let picked = browser
            .js("return document.querySelector('#theme').value")
            .await?;
        let dark_problems = browser.axe().await?;
        browser.screenshot("phone-runs-dark").await?;
        browser.click(".account > summary").await?;
        browser.click("#theme option[value=\"system\"]").await?;
        browser
            .wait_for("no theme attribute", "return !document.documentElement.hasAttribute('data-theme')")
            .await?;
        let (_, served) = browser.api("GET", "/runs", "").await?;
        let served_system = !served.contains("data-theme");
        // A click outside the open account menu closes it.
        browser.click("main h1").await?;
        let menu_closed = browser
            .wait_for("the menu closed", "return !document.querySelector('.account').open")
            .await
            .is_ok();

        // A laptop gets the table, not cards.
        browser.set_size(1280, 900).await?;
        let laptop_row = browser
            .js("return getComputedStyle(document.querySelector('#runs tbody tr')).display")
            .await?;
        browser.screenshot("layout-runs-laptop").await?;
        // A table that may scroll sideways is a tab stop again.
        let laptop_stops = browser
            .wait_for(
                "the table a tab stop",
                "return document.querySelector('.table-wrap').getAttribute('tabindex') === '0'",
            )
            .await
            .is_ok();
        Ok::<_, String>((
            (phone_stops, menu_closed, laptop_stops),
            workflows,
            runs,
            agents,
            ends,
            warnings,
            bar,
            audit_link,
            run_page,
            (served_dark, background, picked, dark_problems, served_system),
            laptop_row,
        ))
    }
    .await;
    browser.close().await;
    let (
        (phone_stops, menu_closed, laptop_stops),
        workflows,
        runs,
        agents,
        ends,
        warnings,
        bar,
        audit_link,
        run_page,
        theme,
        laptop_row,
    ) = outcome.unwrap();
    assert_eq!(
        phone_stops,
        serde_json::json!([false]),
        "a phone's cards are no tab stop"
    );
    assert!(menu_closed, "a click outside closes the account menu");
    assert!(laptop_stops, "a laptop's table is a tab stop");
    for (name, table) in [("workflows", workflows), ("runs", runs), ("agents", agents)] {
        assert_eq!(
            table["overflow"], 0,
            "{name} is wider than the phone: {table}"
        );
        assert_eq!(table["cut"], serde_json::json!([]), "{name}: {table}");
        assert_eq!(
            table["unlabelled"],
            serde_json::json!([]),
            "{name}: {table}"
        );
        assert_eq!(
            table["row"], "block",
            "{name}'s rows are not cards: {table}"
        );
    }
    assert_eq!(ends, serde_json::json!([true, true]), "Requested, Duration");
    assert_eq!(
        run_page[0], 0,
        "the run page is wider than the phone: {run_page}"
    );
    assert_eq!(warnings, serde_json::json!([]));
    assert_eq!(bar["rows"], 1, "{bar}");
    assert_eq!(bar["links"], 7, "{bar}");
    assert!(bar["height"].as_f64().unwrap() <= 100.0, "{bar}");
    assert_eq!(audit_link, true);
    let (served_dark, background, picked, dark_problems, served_system) = theme;
    assert!(served_dark, "the server did not write the chosen theme");
    assert_eq!(background, "rgb(20, 23, 29)");
    assert_eq!(picked, "dark");
    assert!(dark_problems.is_empty(), "{}", dark_problems.join("\n"));
    assert!(served_system, "the system's setting still writes a theme");
    assert_eq!(laptop_row, "table-row");
}

async fn fits(browser: &Browser, table: &str) -> Result<serde_json::Value, String> {
    browser
        .client
        .execute(FITS, vec![table.into()])
        .await
        .map_err(|e| e.to_string())
}
