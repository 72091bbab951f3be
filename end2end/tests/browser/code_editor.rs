//! The code editor (`ui::code`, CodeMirror 6 through `web/src/code.js`) in
//! the editor's YAML pane and a step's script field, typed into key by key
//! as a person would: line numbers and colours, auto-indent, completion
//! offered at the caret and accepted, each fault marked at its line, search,
//! keys that stay the editor's, a script applied on leaving its field, its
//! label focusing it, the text in the server's page, a scrolling pane axe
//! can check, the search panel readable in the dark theme. Its
//! script is fetched only by pages that show one.

use fantoccini::Locator;

use crate::actions::e;
use crate::util::{Browser, TestServer};

/// Comment lines that make the YAML longer than its pane, so the pane
/// scrolls (axe checks a scrolling region can be reached by keyboard).
const NOTES: usize = 52;

/// The workflow typed into: `NOTES` comment lines, then one task.
fn workflow() -> String {
    let notes: String = (1..=NOTES).map(|n| format!("# note {n}\n")).collect();
    format!(
        "name: typed\n{notes}\
         pipelines:\n  main:\n    tasks:\n      build:\n        steps:\n          - run: echo build\n"
    )
}

const YAML: &str = ".code-editor[data-language=\"yaml\"]";
const SCRIPT: &str = ".code-editor[data-language=\"shell\"]";

/// The YAML as the page holds it.
async fn yaml(browser: &Browser) -> Result<String, String> {
    let v = browser
        .js("return document.querySelector('#editor-yaml').value")
        .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

async fn wait_yaml(
    browser: &Browser,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let started = std::time::Instant::now();
    loop {
        let y = yaml(browser).await?;
        if check(&y) {
            return Ok(y);
        }
        if started.elapsed() > crate::util::WAIT {
            return Err(format!("the YAML never {what}:\n{y}"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Types keys into the code editor `editor` (a CSS selector), where its
/// caret is (at the end of the text when it had no focus).
async fn type_in(browser: &Browser, editor: &str, keys: &str) -> Result<(), String> {
    let content = browser
        .client
        .find(Locator::Css(&format!("{editor} .cm-content")))
        .await
        .map_err(e)?;
    content.send_keys(keys).await.map_err(e)
}

#[tokio::test]
async fn code_editor_colours_indents_completes_marks_faults_and_searches() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1400, 1000).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/workflows")).await?;
        browser.hydrated().await?;
        let (status, body) = browser.api("POST", "/api/v1/workflows", &workflow()).await?;
        if status != 201 {
            return Err(format!("apply: {status} {body}"));
        }
        // A page without a code editor never fetches its script.
        let fetched_code = "return performance.getEntriesByType('resource')\
             .some(r => /\\/code\\.js$/.test(r.name))";
        if browser.js(fetched_code).await? != serde_json::json!(false) {
            return Err("the workflows list fetched code.js".into());
        }

        browser.goto(&server.url("/workflows/typed/edit")).await?;
        browser.hydrated().await?;
        browser
            .wait_for("CodeMirror in the YAML pane", &format!("return !!document.querySelector('{YAML}.mounted .cm-content')"))
            .await?;
        // The server's page holds the text in its plain text area.
        let served = browser
            .js(
                "return fetch(location.href).then(r => r.text()).then(h => { \
                   const m = /<textarea[^>]*id=\"editor-yaml\"[^>]*>([^<]*)<\\/textarea>/.exec(h); \
                   return m && m[1]; })",
            )
            .await?;
        let scrolls = browser
            .js(&format!(
                "const s = document.querySelector('{YAML} .cm-scroller'); \
                 return s.scrollHeight > s.clientHeight"
            ))
            .await?;
        // Its own style sheet applied under the page's CSP (nonce, no
        // 'unsafe-inline' for style elements).
        let display = browser
            .js("return getComputedStyle(document.querySelector('.cm-editor')).display")
            .await?;
        if display != "flex" {
            return Err(format!("CodeMirror's styles did not apply: display {display}"));
        }
        // Line numbers, and keys coloured unlike the text.
        let numbers = browser
            .js(&format!(
                "return [...document.querySelectorAll('{YAML} .cm-lineNumbers .cm-gutterElement')]\
                 .filter(g => g.style.visibility !== 'hidden').map(g => g.textContent)"
            ))
            .await?;
        let coloured = browser
            .js(&format!(
                "const key = document.querySelector('{YAML} .tok-atom'); \
                 const text = document.querySelector('{YAML} .cm-content'); \
                 return !!key && getComputedStyle(key).color !== getComputedStyle(text).color"
            ))
            .await?;

        // Type a task key and Enter: the next line is indented under it.
        type_in(&browser, YAML, "\u{E009}\u{E010}\u{E000}      check:\u{E007}").await?;
        let indented = wait_yaml(&browser, "took the new line", |y| y.ends_with("check:\n        ")).await;
        // Completion as typed, listed at the caret (walk bug 14: it opened
        // at the pane's bottom-left).
        type_in(&browser, YAML, "dep").await?;
        if let Err(err) = browser
            .wait_for_text(".cm-tooltip-autocomplete li[aria-selected]", |t| t.trim() == "depends_on:")
            .await
        {
            return Err(format!("{err}; the YAML:\n{}", yaml(&browser).await?));
        }
        let placement = browser
            .js(
                "const tip = document.querySelector('.cm-tooltip-autocomplete').getBoundingClientRect(); \
                 const c = document.querySelector('.cm-cursor-primary').getBoundingClientRect(); \
                 const below = tip.top >= c.bottom - 4 && tip.top <= c.bottom + 40; \
                 const above = tip.bottom <= c.top + 4 && tip.bottom >= c.top - 40; \
                 return [(below || above) && Math.abs(tip.left - c.left) < 80, \
                         [tip.left, tip.top, c.left, c.top, c.bottom]]",
            )
            .await?;
        browser.screenshot("code-editor-completion").await?;
        type_in(&browser, YAML, "\u{E007}").await?;
        let completed = wait_yaml(&browser, "took the completion", |y| {
            y.contains("      check:\n        depends_on:")
        })
        .await?;

        // The task is now a fault: marked at the lines the faults list names.
        browser
            .wait_for("a fault marked", &format!("return !!document.querySelector('{YAML} .cm-lintRange-error')"))
            .await?;
        let listed = browser.wait_for_text(".faults ul", |t| t.contains("check")).await?;
        let listed: std::collections::BTreeSet<u64> = listed
            .split("(line ")
            .skip(1)
            .filter_map(|rest| rest.split(')').next()?.parse().ok())
            .collect();
        let marked = browser
            .js(&format!(
                "const numbers = [...document.querySelectorAll('{YAML} .cm-lineNumbers .cm-gutterElement')]\
                   .filter(g => g.style.visibility !== 'hidden'); \
                 return [...document.querySelectorAll('{YAML} .cm-content > .cm-line')]\
                 .filter(l => l.querySelector('.cm-lintRange-error')).map(l => {{ \
                   const top = l.getBoundingClientRect().top; \
                   const n = numbers.find(g => Math.abs(g.getBoundingClientRect().top - top) < 3); \
                   return n ? +n.textContent : 0; }})"
            ))
            .await?;
        // A fault after the last line (a value missing at the end) is
        // marked on the last line.
        let last_line = completed.lines().count() as u64;
        let listed: std::collections::BTreeSet<u64> =
            listed.into_iter().map(|l| l.min(last_line)).collect();
        let marked: std::collections::BTreeSet<u64> = marked
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default();
        browser.screenshot("code-editor-fault").await?;

        // With a task selected, Backspace in the text deletes a character,
        // not the task (the page's own Delete shortcut).
        browser.click("svg.canvas g.node[data-task=\"build\"]").await?;
        let before = yaml(&browser).await?;
        type_in(&browser, YAML, "\u{E009}\u{E010}\u{E000}\u{E003}").await?;
        let after = wait_yaml(&browser, "lost a character", |y| y != before).await?;

        // Search: Ctrl+F, a word, its matches highlighted.
        type_in(&browser, YAML, "\u{E009}f\u{E000}").await?;
        let field = browser
            .client
            .find(Locator::Css(&format!("{YAML} .cm-search input[name=\"search\"]")))
            .await
            .map_err(e)?;
        field.send_keys("build\u{E007}").await.map_err(e)?;
        let matches = browser
            .wait_for(
                "matches highlighted",
                &format!("const n = document.querySelectorAll('{YAML} .cm-searchMatch').length; return n > 0 && n"),
            )
            .await?;
        browser.screenshot("code-editor-search").await?;
        // In the dark theme the search field and buttons stay readable.
        let dark_search = browser
            .js(&format!(
                "const root = document.documentElement; const was = root.getAttribute('data-theme'); \
                 root.setAttribute('data-theme', 'dark'); \
                 const lum = c => {{ const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(v => {{ \
                   v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }}); \
                   return 0.2126 * r + 0.7152 * g + 0.0722 * b; }}; \
                 const ratio = (a, b) => {{ const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); \
                   return (x + 0.05) / (y + 0.05); }}; \
                 const out = [...document.querySelectorAll('{YAML} .cm-search .cm-textfield, {YAML} .cm-search .cm-button')] \
                   .map(el => {{ const s = getComputedStyle(el); \
                     return [el.textContent || el.name, s.backgroundImage === 'none' \
                       ? Math.round(ratio(s.color, s.backgroundColor) * 10) / 10 : 0]; }}); \
                 root.dataset.shot = was === null ? '' : was; return out;"
            ))
            .await?;
        browser.screenshot("code-editor-search-dark").await?;
        browser
            .js("const root = document.documentElement; const was = root.dataset.shot; \
                 delete root.dataset.shot; \
                 if (was) root.setAttribute('data-theme', was); else root.removeAttribute('data-theme');")
            .await?;
        field.send_keys("\u{E00C}").await.map_err(e)?;

        // A step's script is a shell editor too, applied on leaving it.
        browser
            .wait_for("the script's editor", &format!("return !!document.querySelector('{SCRIPT}.mounted .cm-content')"))
            .await?;
        // Its label focuses it (the label names the hidden text area).
        browser.click("label[for=\"steps-0-run\"]").await?;
        let label_focuses = browser
            .js(&format!(
                "const a = document.activeElement; \
                 return a.classList.contains('cm-content') && !!a.closest('{SCRIPT}')"
            ))
            .await?;
        type_in(&browser, SCRIPT, "\u{E009}\u{E010}\u{E000} && echo more\u{E004}").await?;
        let scripted = wait_yaml(&browser, "took the script", |y| y.contains("run: echo build && echo more")).await;
        browser.screenshot("code-editor-script").await?;
        // A text set from outside (as an undo or a panel edit would) shows
        // in the editor.
        browser.set_code("steps-0-run", "echo replaced").await?;
        let shown = browser
            .wait_for(
                "the script's editor to follow",
                &format!(
                    "const t = document.querySelector('{SCRIPT} .cm-content').innerText; \
                     return t.trim() === 'echo replaced' && t"
                ),
            )
            .await
            .map(|_| ());
        let replaced = wait_yaml(&browser, "took the replaced script", |y| y.contains("run: echo replaced")).await;
        let serious = browser.axe().await?;
        Ok::<_, String>((
            (served, scrolls, dark_search, label_focuses),
            numbers, coloured, indented, placement, completed, listed, marked, before, after,
            matches, scripted, shown, replaced, serious,
        ))
    }
    .await;
    browser.close().await;

    let (
        (served, scrolls, dark_search, label_focuses),
        numbers,
        coloured,
        indented,
        placement,
        completed,
        listed,
        marked,
        before,
        after,
        matches,
        scripted,
        shown,
        replaced,
        serious,
    ) = outcome.unwrap();
    let numbers: Vec<&str> = numbers
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    // The lines in view (CodeMirror draws only those), numbered from 1.
    let all: Vec<String> = (1..=numbers.len()).map(|n| n.to_string()).collect();
    assert!(numbers.len() >= 8, "line numbers: {numbers:?}");
    assert_eq!(numbers, all, "line numbers");
    assert!(
        served.as_str().is_some_and(|t| t.contains("name: typed")),
        "the server's text area holds the text: {served}"
    );
    assert_eq!(scrolls, serde_json::json!(true), "the YAML pane scrolls");
    let dark_search = dark_search.as_array().unwrap();
    assert!(!dark_search.is_empty());
    assert!(
        dark_search
            .iter()
            .all(|c| c[1].as_f64().is_some_and(|r| r >= 4.5)),
        "dark search panel contrast (0: a background image): {dark_search:?}"
    );
    assert_eq!(
        label_focuses,
        serde_json::json!(true),
        "the label focuses the script's editor"
    );
    assert_eq!(coloured, serde_json::json!(true), "keys are coloured");
    indented.expect("Enter after `check:` indents the next line under it");
    assert_eq!(
        placement[0],
        serde_json::json!(true),
        "completion at the caret: {placement}"
    );
    assert!(
        completed.ends_with("depends_on: ") || completed.ends_with("depends_on:"),
        "{completed}"
    );
    assert!(!listed.is_empty(), "the faults list names lines");
    assert_eq!(marked, listed, "each fault marked at its line");
    assert_eq!(
        after.len() + 1,
        before.len(),
        "Backspace deleted one character:\n{after}"
    );
    assert!(
        after.contains("      build:"),
        "the selected task stays:\n{after}"
    );
    assert!(matches.as_u64().unwrap() >= 2, "search matches: {matches}");
    scripted.expect("the script field applies what was typed");
    shown.expect("a text set from outside shows in the editor");
    replaced.expect("the script field applies a text set from outside");
    assert!(serious.is_empty(), "axe: {serious:?}");
}
