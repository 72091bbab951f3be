//! The editor as the newcomer's walk found it (docs: the walk's bugs 1, 2,
//! 7, 12, 13 and 21): unsaved work kept as a draft and offered back, a
//! warning before a link leaves it; canvas and YAML side by side with the
//! faults and why Save is refused in view; status lines that never move
//! the canvas; double-click renames; a task added after the selected one;
//! the breadcrumb after a first save; a phone's screen. One server, one
//! browser.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};

use crate::actions::e;
use crate::editor::{SHARED, node};
use crate::util::{Browser, TestServer, WAIT};

/// A fault whose text wraps on a phone: `two` waits for a task that is not there.
const MISSING: &str = "a-task-that-is-not-in-this-pipeline-at-all";

impl Browser {
    /// An element's box: left, top, right, bottom, in viewport pixels.
    async fn rect(&self, css: &str) -> Result<[f64; 4], String> {
        let v = self
            .client
            .execute(
                "const el = document.querySelector(arguments[0]); if (!el) return null; \
                 const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom];",
                vec![css.into()],
            )
            .await
            .map_err(e)?;
        let a = v.as_array().ok_or(format!("no {css}"))?;
        let n = |i: usize| a[i].as_f64().unwrap_or(f64::NAN);
        Ok([n(0), n(1), n(2), n(3)])
    }

    /// The canvas's top in the page (scrolling aside).
    async fn canvas_top(&self) -> Result<f64, String> {
        let v = self
            .js("return document.querySelector('svg.canvas').getBoundingClientRect().top + scrollY")
            .await?;
        v.as_f64().ok_or_else(|| "no canvas".to_string())
    }

    /// Whether the page would ask before unloading, as the browser asks it.
    async fn would_ask_before_unload(&self) -> Result<bool, String> {
        let v = self
            .js("const ev = new Event('beforeunload', {cancelable: true}); \
                 window.dispatchEvent(ev); return ev.defaultPrevented;")
            .await?;
        Ok(v.as_bool() == Some(true))
    }

    /// Clicks a link that asks first; answers the question, accepted or not.
    async fn click_and_answer(&self, css: &str, accept: bool) -> Result<String, String> {
        let link = self.client.find(Locator::Css(css)).await.map_err(e)?;
        // The click returns while the question is open, or errs on it.
        let _ = link.click().await;
        let started = Instant::now();
        let question = loop {
            if let Ok(text) = self.client.get_alert_text().await {
                break text;
            }
            if started.elapsed() > WAIT {
                return Err(format!("{css}: no question before leaving"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if accept {
            self.client.accept_alert().await.map_err(e)?;
        } else {
            self.client.dismiss_alert().await.map_err(e)?;
        }
        Ok(question)
    }

    /// Where a fault's bullet sits: the top of a line started just before
    /// its text, against the item's top, and the item's height.
    async fn bullet_offset(&self) -> Result<(f64, f64), String> {
        let v = self
            .js("const li = document.querySelector('.faults li'); \
                 const probe = document.createElement('span'); probe.textContent = '\u{200b}'; \
                 li.insertBefore(probe, li.firstChild); \
                 const at = probe.getBoundingClientRect().top - li.getBoundingClientRect().top; \
                 probe.remove(); return [at, li.getBoundingClientRect().height];")
            .await?;
        Ok((
            v[0].as_f64().unwrap_or(f64::NAN),
            v[1].as_f64().unwrap_or(f64::NAN),
        ))
    }

    async fn double_click(&self, css: &str) -> Result<(), String> {
        let (x, y) = self.centre(css).await?;
        let mut mouse = MouseActions::new("mouse".into()).then(PointerAction::MoveTo {
            duration: None,
            x: x - 40.0,
            y,
        });
        for _ in 0..2 {
            mouse = mouse
                .then(PointerAction::Down {
                    button: MOUSE_BUTTON_LEFT,
                })
                .then(PointerAction::Up {
                    button: MOUSE_BUTTON_LEFT,
                });
        }
        self.client.perform_actions(mouse).await.map_err(e)
    }

    /// The keys of the drafts kept in this browser.
    async fn draft_keys(&self) -> Result<serde_json::Value, String> {
        self.js("return Object.keys(localStorage).filter(k => k.startsWith('xene.draft.')).sort()")
            .await
    }

    /// Waits for a kept draft to hold `text`.
    async fn wait_for_draft_with(&self, text: &str) -> Result<(), String> {
        let check = format!(
            "return Object.keys(localStorage).some(k => k.startsWith('xene.draft.') \
             && localStorage.getItem(k).includes({}))",
            serde_json::Value::from(text)
        );
        self.wait_for(&format!("a draft with {text:?}"), &check)
            .await
            .map(|_| ())
    }

    /// Whether a question is open; dismissed if so.
    async fn dismiss_any_question(&self) -> bool {
        let open = self.client.get_alert_text().await.is_ok();
        if open {
            let _ = self.client.dismiss_alert().await;
        }
        open
    }

    /// Types into whatever has the focus.
    async fn type_here(&self, keys: &str) -> Result<(), String> {
        let el = self.client.active_element().await.map_err(e)?;
        el.send_keys(keys).await.map_err(e)
    }
}

/// What the walk checks, gathered while the browser runs and asserted
/// after it closes.
#[derive(Default, Debug)]
struct Seen {
    side_by_side: Option<([f64; 4], [f64; 4])>,
    faults_box: [f64; 4],
    refused_box: [f64; 4],
    refused: String,
    height: f64,
    canvas_tops: Vec<f64>,
    renamed_nodes: usize,
    rename_value: String,
    after_rename: String,
    added_focus: (String, i64, i64),
    added: String,
    connected: String,
    asked_unsaved: bool,
    field_asks: bool,
    field_draft: bool,
    skip_asked: bool,
    offer_text: String,
    merged: String,
    draft_key_before_leaving: serde_json::Value,
    drafts_after_sign_out: serde_json::Value,
    status_cut: serde_json::Value,
    question: String,
    path_after_dismiss: String,
    yaml_after_dismiss: String,
    unsaved: String,
    restored: String,
    draft_after_save: serde_json::Value,
    asks_after_save: bool,
    crumbs: String,
    drafts_after_first_save: serde_json::Value,
    phone_overflow: f64,
    phone_nodes_outside: serde_json::Value,
    bullet: (f64, f64),
    axe: Vec<String>,
}

#[tokio::test]
async fn the_editor_keeps_work_and_fits_the_screen() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let mut seen = Seen::default();
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_with_shared(&server).await?;
        browser.goto(&server.url("/workflows/shared/edit")).await?;
        browser.hydrated().await?;
        browser.wait_for_attr(&node("two"), "data-task", "two").await?;
        seen.side_by_side = Some((
            browser.rect(".canvas-pane").await?,
            browser.rect(".yaml-pane").await?,
        ));

        // Typing in a field, still in it: a reload asks, and the draft has
        // what is typed.
        browser.click(&node("one")).await?;
        browser.click("#task-image").await?;
        browser.type_here("alpine:3").await?;
        seen.field_asks = browser.would_ask_before_unload().await?;
        seen.field_draft = browser.wait_for_draft_with("image: alpine:3").await.is_ok();
        browser.click("#undo").await?;
        browser.wait_yaml("undone", |y| !y.contains("alpine")).await?;
        browser
            .wait_for("no draft once undone", "return !Object.keys(localStorage).some(k => k.startsWith('xene.draft.'))")
            .await?;

        // A fault: in view with why Save is refused, without scrolling.
        let faulty = SHARED.replace("depends_on: [one]", &format!("depends_on: [one, {MISSING}]"));
        browser.type_yaml(&faulty).await?;
        seen.refused = browser
            .wait_for_text("#save-refused", |t| t.contains("fault"))
            .await?;
        browser.wait_for_text(".faults", |t| t.contains(MISSING)).await?;
        browser.js("window.scrollTo(0, 0)").await?;
        seen.faults_box = browser.rect(".faults").await?;
        seen.refused_box = browser.rect("#save-refused").await?;
        seen.height = browser.js("return innerHeight").await?.as_f64().unwrap_or(0.0);
        browser.screenshot("editor-faults-in-view").await?;
        browser.type_yaml(SHARED).await?;
        browser.wait_for("the fault went", "return !document.querySelector('#save-refused')").await?;

        // A cycle refused while dragging and after (long names, a long
        // hint): the canvas stays put, and the refusal goes with the next
        // edit.
        let (first, second) = ("compile-the-whole-workspace", "run-every-integration-test");
        browser
            .type_yaml(&SHARED.replace("one", first).replace("two", second))
            .await?;
        browser.wait_for_attr(&node(first), "data-task", first).await?;
        seen.canvas_tops.push(browser.canvas_top().await?);
        browser
            .drag(&format!(".handle[data-handle=\"{second}\"]"), &node(first), false)
            .await?;
        browser.wait_for_text("#drag-hint", |t| t.contains("cycle")).await?;
        seen.canvas_tops.push(browser.canvas_top().await?);
        browser
            .client
            .perform_actions(MouseActions::new("mouse".into()).then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            }))
            .await
            .map_err(e)?;
        browser.wait_for_text("p.error", |t| t.contains("cycle")).await?;
        seen.canvas_tops.push(browser.canvas_top().await?);
        // Wrapped in full, never cut.
        seen.status_cut = browser
            .js("const p = document.querySelector('.editor-status p.error'); \
                 return [p.scrollWidth > p.clientWidth, getComputedStyle(p).textOverflow]")
            .await?;
        browser.type_yaml(&format!("{SHARED}# a note\n")).await?;
        browser
            .wait_for("the refusal went with an edit", "return !document.querySelector('p.error')")
            .await?;
        seen.canvas_tops.push(browser.canvas_top().await?);

        // A real double-click on a task opens its name for typing.
        browser.double_click(&node("one")).await?;
        browser.wait_for("the rename box", "return document.activeElement.matches('input.rename')").await?;
        seen.renamed_nodes = browser
            .js("return document.querySelectorAll('svg.canvas g.node').length")
            .await?
            .as_u64()
            .unwrap_or(0) as usize;
        seen.rename_value = browser.js("return document.activeElement.value").await?.as_str().unwrap_or_default().into();
        browser.type_here("\u{E009}a\u{E009}first\u{E007}").await?;
        seen.after_rename = browser.wait_yaml("renamed one", |y| y.contains("      first:\n")).await?;
        // The focus stays on the task, for the keyboard's next move.
        browser
            .wait_for("the focus on the renamed task", "return document.activeElement.matches('g.node[data-task=\"first\"]')")
            .await?;

        // Add task with `two` selected: after it, its name ready to type.
        browser.click(&node("two")).await?;
        browser.click("#add-task").await?;
        browser.wait_for("the new task's name", "return document.activeElement.matches('input.rename')").await?;
        let focus = browser
            .js("const a = document.activeElement; return [a.value, a.selectionStart, a.selectionEnd]")
            .await?;
        seen.added_focus = (
            focus[0].as_str().unwrap_or_default().into(),
            focus[1].as_i64().unwrap_or(-1),
            focus[2].as_i64().unwrap_or(-1),
        );
        browser.type_here("deploy\u{E007}").await?;
        seen.added = browser.wait_yaml("named the new task", |y| y.contains("      deploy:\n")).await?;
        browser.wait_for_attr(&node("deploy"), "data-task", "deploy").await?;
        // Connected by hand: `depends_on` goes before the steps.
        let with_lint = format!("{}      lint:\n        steps:\n          - run: echo lint\n", browser.yaml().await?);
        browser.type_yaml(&with_lint).await?;
        browser.wait_for_attr(&node("lint"), "data-task", "lint").await?;
        browser.drag(".handle[data-handle=\"first\"]", &node("lint"), true).await?;
        seen.connected = browser.wait_yaml("connected lint", |y| y.contains("lint:\n        depends_on")).await?;
        browser.screenshot("editor-gestures").await?;

        // Leaving with unsaved work: asked, and the draft comes back.
        seen.asked_unsaved = browser.would_ask_before_unload().await?;
        seen.unsaved = browser.yaml().await?;
        // The skip link stays on the page: nothing to ask.
        let _ = browser.js("document.querySelector('a.skip').click()").await;
        seen.skip_asked = browser.dismiss_any_question().await;
        seen.question = browser.click_and_answer("a[href=\"/runs\"]", false).await?;
        seen.path_after_dismiss = browser.path().await?;
        seen.yaml_after_dismiss = browser.yaml().await?;
        browser.click_and_answer("a[href=\"/runs\"]", true).await?;
        browser.wait_for_path("/runs").await?;
        seen.draft_key_before_leaving = browser.draft_keys().await?;
        // Meanwhile someone saves version 2.
        let theirs = SHARED.replace("# Shared by two people.", "# Shared by two people, theirs.");
        let (status, body) = browser.api("POST", "/api/v1/workflows", &theirs).await?;
        if status != 201 {
            return Err(format!("apply theirs: {status} {body}"));
        }
        browser.client.back().await.map_err(e)?;
        browser.wait_for_path("/workflows/shared/edit").await?;
        seen.offer_text = browser.wait_for_text("#draft-offer", |t| t.contains("Unsaved changes")).await?;
        browser.screenshot("editor-draft-offered").await?;
        seen.axe.extend(browser.axe().await?.into_iter().map(|v| format!("draft offered: {v}")));
        // An edit while the offer waits is kept too.
        browser
            .wait_for("the YAML while offered", "return !!document.querySelector('#editor-yaml')")
            .await?;
        browser.type_yaml(&format!("{theirs}# while offered\n")).await?;
        browser.wait_for_draft_with("# while offered").await?;
        browser.click("#draft-restore").await?;
        seen.restored = browser.wait_yaml("restored", |y| y.contains("deploy:")).await?;
        browser.wait_for("undo after restoring", "return !document.querySelector('#undo').disabled").await?;
        // Made on version 1: Save asks to merge with version 2.
        browser.click("button.save").await?;
        browser.click(".conflict button.merge").await?;
        browser.wait_for_text(".notice", |t| t.contains("Merged with version 2")).await?;
        browser.click("button.save").await?;
        browser.click("button.confirm-save").await?;
        browser.wait_for_text(".notice", |t| t.contains("version 3")).await?;
        seen.merged = browser.yaml().await?;
        seen.draft_after_save = browser.draft_keys().await?;
        seen.asks_after_save = browser.would_ask_before_unload().await?;

        // A new workflow's first save: the breadcrumb names it.
        browser.goto(&server.url("/editor")).await?;
        browser.hydrated().await?;
        browser.wait_for_text(".canvas-empty", |t| t.contains("No tasks yet")).await?;
        let walker = SHARED.replace("name: shared", "name: walker").replace(
            "depends_on: [one]",
            &format!("depends_on: [one, {MISSING}]"),
        );
        browser.type_yaml(&walker.replace(&format!(", {MISSING}"), "")).await?;
        browser.click("button.save").await?;
        browser.click("button.confirm-save").await?;
        browser.wait_for_text(".notice", |t| t.contains("version 1")).await?;
        browser.wait_for_path("/workflows/walker/edit").await?;
        seen.crumbs = browser.wait_for_text(".crumbs", |t| t.contains("walker")).await?;
        seen.drafts_after_first_save = browser.draft_keys().await?;

        // A phone: the editor fits, the drawing in view, a wrapped fault's
        // bullet on its first line.
        browser.set_size(390, 844).await?;
        browser.goto(&server.url("/workflows/walker/edit")).await?;
        browser.hydrated().await?;
        browser.wait_for_attr(&node("two"), "data-task", "two").await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen.phone_overflow = browser
            .js("return document.documentElement.scrollWidth - innerWidth")
            .await?
            .as_f64()
            .unwrap_or(f64::NAN);
        seen.phone_nodes_outside = browser
            .js("const s = document.querySelector('svg.canvas').getBoundingClientRect(); \
                 return [...document.querySelectorAll('svg.canvas g.node rect')].filter(n => { \
                   const r = n.getBoundingClientRect(); \
                   return r.left < s.left || r.right > s.right || r.top < s.top || r.bottom > s.bottom; \
                 }).length")
            .await?;
        browser.js("window.scrollTo(0, 0)").await?;
        browser.screenshot("editor-phone").await?;
        browser.type_yaml(&walker).await?;
        browser.wait_for_text(".faults", |t| t.contains(MISSING)).await?;
        browser.wait_for_text("#save-refused", |t| t.contains("fault")).await?;
        seen.bullet = browser.bullet_offset().await?;
        // Long fault words wrap too.
        let with_faults = browser
            .js("return document.documentElement.scrollWidth - innerWidth")
            .await?
            .as_f64()
            .unwrap_or(f64::NAN);
        seen.phone_overflow = seen.phone_overflow.max(with_faults);
        browser.js("document.querySelector('.faults').scrollIntoView()").await?;
        browser.screenshot("editor-phone-faults").await?;
        seen.axe.extend(browser.axe().await?.into_iter().map(|v| format!("phone: {v}")));

        // Signing out forgets the drafts kept in this browser.
        browser.set_size(1280, 900).await?;
        browser.click_and_answer("a[href=\"/runs\"]", true).await?;
        browser.wait_for_path("/runs").await?;
        browser.wait_for_draft_with(MISSING).await?;
        browser.click("details.account summary").await?;
        browser.click("form.signout button").await?;
        browser.wait_for_path("/signin").await?;
        seen.drafts_after_sign_out = browser.draft_keys().await?;
        Ok::<_, String>(())
    }
    .await;
    browser.close().await;
    outcome.unwrap();

    // Canvas and YAML side by side at 1280 px.
    let (canvas, yaml) = seen.side_by_side.unwrap();
    assert!(
        yaml[0] >= canvas[2] - 1.0 && (yaml[1] - canvas[1]).abs() < 8.0,
        "{canvas:?} {yaml:?}"
    );
    // The faults and why Save is refused, in view at the top of the page.
    assert!(seen.refused.contains("1 fault to fix"), "{}", seen.refused);
    for (what, b) in [("faults", seen.faults_box), ("refusal", seen.refused_box)] {
        assert!(
            b[1] >= 0.0 && b[3] <= seen.height,
            "{what} out of view: {b:?} in {}",
            seen.height
        );
    }
    // Bugs 7 and 13: the hint, the refusal and its end never move the canvas.
    assert!(
        seen.canvas_tops
            .windows(2)
            .all(|w| (w[0] - w[1]).abs() < 0.5),
        "the canvas moved: {:?}",
        seen.canvas_tops
    );
    // A message wraps in full, never cut to an ellipsis.
    assert_eq!(seen.status_cut, serde_json::json!([false, "clip"]));
    // Bug 2: a double-click renames, adds nothing.
    assert_eq!(seen.renamed_nodes, 2);
    assert_eq!(seen.rename_value, "one");
    assert!(
        seen.after_rename.contains("depends_on: [first]"),
        "{}",
        seen.after_rename
    );
    // A task added with `two` selected waits for it, its name selected.
    assert_eq!(seen.added_focus, ("task".to_string(), 0, 4));
    assert!(
        seen.added
            .contains("      deploy:\n        depends_on: [two]\n        steps:\n"),
        "{}",
        seen.added
    );
    assert!(
        seen.connected
            .contains("      lint:\n        depends_on: [first]\n        steps:\n"),
        "{}",
        seen.connected
    );
    // Bug 1: asked before leaving, kept when not leaving, offered back.
    assert!(
        seen.asked_unsaved,
        "no question before unloading unsaved work"
    );
    assert!(
        seen.question.contains("unsaved changes"),
        "{}",
        seen.question
    );
    assert_eq!(seen.path_after_dismiss, "/workflows/shared/edit");
    assert_eq!(seen.yaml_after_dismiss, seen.unsaved);
    assert!(!seen.skip_asked, "the skip link asked before leaving");
    // A field being typed in counts: asked, and kept as a draft.
    assert!(seen.field_asks, "no question with a field being typed in");
    assert!(seen.field_draft, "what a field was typing was not kept");
    // A draft is the signed-in user's.
    let keys = seen
        .draft_key_before_leaving
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        keys.len() == 1
            && keys[0]
                .as_str()
                .is_some_and(|k| k.starts_with("xene.draft.")
                    && k.ends_with(".workflow.shared")
                    && k != "xene.draft.workflow.shared"),
        "{keys:?}"
    );
    assert!(
        seen.offer_text.contains("made on version 1"),
        "{}",
        seen.offer_text
    );
    assert_eq!(seen.restored, seen.unsaved);
    // The draft on version 1, saved over version 2: merged, both kept.
    assert!(
        seen.merged.contains("theirs") && seen.merged.contains("deploy:"),
        "{}",
        seen.merged
    );
    assert_eq!(seen.draft_after_save, serde_json::json!([]));
    assert_eq!(seen.drafts_after_sign_out, serde_json::json!([]));
    assert!(!seen.asks_after_save, "asks before unloading what is saved");
    // Bug 12: the breadcrumb after the first save.
    assert_eq!(seen.crumbs, "Workflows / walker / Edit");
    assert_eq!(seen.drafts_after_first_save, serde_json::json!([]));
    // A phone: no sideways scrolling, every task in the canvas.
    assert!(
        seen.phone_overflow <= 0.0,
        "the page is wider than a phone by {}",
        seen.phone_overflow
    );
    assert_eq!(seen.phone_nodes_outside, serde_json::json!(0));
    // Bug 21: the bullet of a wrapped fault stays on its first line.
    let (bullet, item) = seen.bullet;
    assert!(item > 30.0, "the fault did not wrap: {item} px");
    assert!(
        bullet < 8.0,
        "the bullet is {bullet} px down a {item} px item"
    );
    assert!(seen.axe.is_empty(), "{}", seen.axe.join("\n"));
}
