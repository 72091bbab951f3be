//! The visual editor, as a user draws with a mouse and types in a real
//! browser: a three-task pipeline drawn from an empty page, a cycle
//! refused while dragging, the YAML typed by hand and the canvas following,
//! comments and untouched lines kept byte for byte, undo and redo, save,
//! run, and a version saved by someone else meanwhile merged, never
//! overwritten.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::actions::{
    InputSource, KeyAction, KeyActions, MOUSE_BUTTON_LEFT, MouseActions, PointerAction,
};

use crate::util::{Browser, TestServer, WAIT};

fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

impl Browser {
    /// The YAML view's text.
    pub(crate) async fn yaml(&self) -> Result<String, String> {
        let v = self
            .js("return document.querySelector('#editor-yaml').value")
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Types a whole new text into the YAML view, as one edit.
    pub(crate) async fn type_yaml(&self, text: &str) -> Result<(), String> {
        self.client
            .execute(
                "const t = document.querySelector('#editor-yaml'); t.focus(); \
                 t.value = arguments[0]; t.dispatchEvent(new Event('input', {bubbles: true}));",
                vec![text.into()],
            )
            .await
            .map_err(e)?;
        Ok(())
    }

    /// The centre of an element, in viewport pixels.
    pub(crate) async fn centre(&self, css: &str) -> Result<(f64, f64), String> {
        let v = self
            .client
            .execute(
                "const el = document.querySelector(arguments[0]); \
                 el.scrollIntoView({block: 'nearest'}); \
                 const r = el.getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2];",
                vec![css.into()],
            )
            .await
            .map_err(e)?;
        Ok((v[0].as_f64().ok_or("no x")?, v[1].as_f64().ok_or("no y")?))
    }

    /// Presses the mouse on one element and moves it to another, holding
    /// the button; `release` lets go.
    pub(crate) async fn drag(&self, from: &str, to: &str, release: bool) -> Result<(), String> {
        let (fx, fy) = self.centre(from).await?;
        let (tx, ty) = self.centre(to).await?;
        let mut mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveTo {
                duration: None,
                x: fx,
                y: fy,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::MoveTo {
                duration: Some(Duration::from_millis(150)),
                x: (fx + tx) / 2.0,
                y: (fy + ty) / 2.0,
            })
            .then(PointerAction::MoveTo {
                duration: Some(Duration::from_millis(150)),
                x: tx,
                y: ty,
            });
        if release {
            mouse = mouse.then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        }
        self.client
            .perform_actions(mouse)
            .await
            .map_err(|err| format!("drag {from} to {to}: {err}"))
    }

    /// Presses keys together (a chord) and lets go, wherever the focus is.
    pub(crate) async fn press(&self, keys: &[char]) -> Result<(), String> {
        let mut actions = KeyActions::new("keys".into());
        for k in keys {
            actions = actions.then(KeyAction::Down { value: *k });
        }
        for k in keys.iter().rev() {
            actions = actions.then(KeyAction::Up { value: *k });
        }
        self.client.perform_actions(actions).await.map_err(e)
    }

    pub(crate) async fn set_field(&self, css: &str, value: &str) -> Result<(), String> {
        let el = self.client.find(Locator::Css(css)).await.map_err(e)?;
        el.clear().await.map_err(e)?;
        el.send_keys(value).await.map_err(e)?;
        // A field edits the YAML when it changes: on leaving it.
        el.send_keys("\u{E004}").await.map_err(e)?;
        Ok(())
    }

    pub(crate) async fn wait_yaml(
        &self,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let started = Instant::now();
        loop {
            let y = self.yaml().await?;
            if check(&y) {
                return Ok(y);
            }
            if started.elapsed() > WAIT {
                return Err(format!("the YAML never {what}:\n{y}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub(crate) fn node(name: &str) -> String {
    format!("svg.canvas g.node[data-task=\"{name}\"]")
}

#[tokio::test]
async fn draw_a_pipeline_edit_its_yaml_and_run_it() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1400, 1000).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/editor")).await?;
        browser.hydrated().await?;
        browser
            .wait_for_text(".canvas-empty", |t| t.contains("No tasks yet"))
            .await?;
        browser.screenshot("editor-new").await?;

        // Draw: three tasks, each added after the one selected (the last
        // added), so connected.
        for _ in 0..3 {
            browser.click("#add-task").await?;
        }
        for n in ["task", "task-2", "task-3"] {
            browser.client.find(Locator::Css(&node(n))).await.map_err(e)?;
        }
        browser.wait_yaml("chained task-3", |y| y.contains("depends_on: [task-2]")).await?;
        browser
            .drag(".handle[data-handle=\"task\"]", &node("task-2"), true)
            .await?;
        browser.wait_yaml("connected task-2", |y| y.contains("depends_on: [task]")).await?;
        let drawn = browser.yaml().await?;

        // A cycle is refused while dragging, with its path, and on release.
        browser
            .drag(".handle[data-handle=\"task-3\"]", &node("task"), false)
            .await?;
        let hint = browser
            .wait_for_text("#drag-hint", |t| t.contains("cycle"))
            .await?;
        browser.screenshot("editor-cycle-refused").await?;
        browser
            .client
            .perform_actions(MouseActions::new("mouse".into()).then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            }))
            .await
            .map_err(e)?;
        let refusal = browser
            .wait_for_text("p.error", |t| t.contains("cycle"))
            .await?;
        let before_cycle = browser.yaml().await?;

        // Rename and fill steps in the panel.
        browser.click(&node("task")).await?;
        browser.set_field("#task-name", "build").await?;
        browser.wait_yaml("renamed task", |y| y.contains("      build:") && y.contains("depends_on: [build]")).await?;
        browser.set_code("steps-0-run", "echo built").await?;
        browser.wait_yaml("took the script", |y| y.contains("run: echo built")).await?;

        // Rename in place: double-click the node, type, Enter.
        browser
            .js(&format!(
                "document.querySelector('{}').dispatchEvent(new MouseEvent('dblclick', {{bubbles: true}}))",
                node("task-3").replace('"', "\\\"")
            ))
            .await?;
        let rename = browser.client.find(Locator::Css("input.rename")).await.map_err(e)?;
        // Select all, type over it, Enter (a clear would blur, which ends
        // the rename).
        rename
            .send_keys("\u{E009}a\u{E009}deploy\u{E007}")
            .await
            .map_err(e)?;
        browser.wait_yaml("renamed in place", |y| y.contains("      deploy:\n")).await?;

        // Select an edge and press Delete; then bring it back with Ctrl+Z.
        browser
            .js("document.querySelector('.edge-group[data-edge=\"task-2->deploy\"] .edge-hit').dispatchEvent(new PointerEvent('pointerdown', {bubbles: true, button: 0}))")
            .await?;
        browser.press(&['\u{E017}']).await?;
        browser.wait_yaml("lost the edge", |y| !y.contains("depends_on: [task-2]")).await?;
        browser.press(&['\u{E009}', 'z']).await?;
        browser.wait_yaml("got the edge back", |y| y.contains("depends_on: [task-2]")).await?;

        // Type in the YAML: a comment and a fourth task; the canvas follows.
        let typed = browser.yaml().await?.replace(
            "pipelines:\n",
            "# Drawn in the editor, then typed.\npipelines:\n",
        ) + "      lint:   # typed by hand\n        depends_on: [build]\n        steps:\n          - run: echo lint\n";
        browser.type_yaml(&typed).await?;
        browser.client.find(Locator::Css(&node("lint"))).await.map_err(e)?;
        browser
            .wait_for_attr(&node("lint"), "class", "node")
            .await?;
        // A task left half typed (completion at the caret is the code
        // editor's test, code_editor.rs).
        browser.type_yaml(&format!("{typed}      check:\n        depends_on: ")).await?;
        let completed = browser.wait_yaml("took the half task", |y| y.ends_with("        depends_on: ")).await?;
        // A task that is not a mapping is a fault: shown at its node, and
        // Save is refused.
        browser.wait_for_attr(&node("check"), "class", "node faulty").await?;
        browser.wait_for_attr("button.save", "disabled", "true").await?;
        let faults = browser.wait_for_text(".faults", |t| t.contains("check")).await?;
        // Selected, its faults show in the panel too.
        browser.click(&node("check")).await?;
        browser.wait_for_text(".task-faults", |t| t.contains("check")).await?;
        browser.type_yaml(&typed).await?;

        // A fault in the YAML leaves the canvas as it was.
        browser.type_yaml(&format!("{typed}  bad: [\n")).await?;
        browser
            .wait_for_text(".yaml-fault", |t| t.contains("does not parse") || t.contains("fault"))
            .await?;
        browser.client.find(Locator::Css(&node("lint"))).await.map_err(e)?;
        browser.type_yaml(&typed).await?;

        // Move a node: the YAML stays byte for byte the same.
        browser
            .js("document.querySelector('svg.canvas').scrollIntoView({block: 'start'})")
            .await?;
        let (x, y) = browser.centre(&node("lint")).await?;
        browser
            .client
            .perform_actions(
                MouseActions::new("mouse".into())
                    .then(PointerAction::MoveTo { duration: None, x: x - 40.0, y })
                    .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
                    .then(PointerAction::MoveTo { duration: Some(Duration::from_millis(200)), x: x - 40.0, y: y + 120.0 })
                    .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT }),
            )
            .await
            .map_err(e)?;
        let (_, moved_y) = browser.centre(&node("lint")).await?;
        let after_move = browser.yaml().await?;

        // A change in the panel touches only its own line.
        browser.click(&node("build")).await?;
        browser.set_field("#task-timeout", "5m").await?;
        let after_timeout = browser.wait_yaml("took the timeout", |y| y.contains("timeout: 5m")).await?;
        browser.screenshot("editor-drawn").await?;

        // Undo and redo, by button and by keyboard.
        browser.click("#undo").await?;
        browser.wait_yaml("undid the timeout", |y| *y == after_move).await?;
        browser.click("#redo").await?;
        browser.wait_yaml("redid the timeout", |y| *y == after_timeout).await?;
        browser.press(&['\u{E009}', 'z']).await?;
        browser.wait_yaml("undid by keyboard", |y| *y == after_move).await?;
        browser.click("#redo").await?;
        browser.wait_yaml("redid again", |y| *y == after_timeout).await?;

        // Save (after the diff), then run.
        browser.click("button.save").await?;
        browser.wait_for_text(".dialog", |t| t.contains("Save the new workflow")).await?;
        browser.click("button.confirm-save").await?;
        browser.wait_for_text(".notice", |t| t.contains("version 1")).await?;
        let path = browser.wait_for_path("/workflows/my-workflow/edit").await?;
        browser.screenshot("editor-saved").await?;
        browser.click("button.run").await?;
        browser.wait_for_path("/runs/").await?;
        browser.wait_for_text("h1 .status", |t| t == "success").await?;
        Ok::<_, String>((
            (drawn, hint),
            refusal,
            before_cycle,
            typed,
            after_move,
            after_timeout,
            y,
            moved_y,
            path,
            completed,
            faults,
        ))
    }
    .await;
    browser.close().await;
    let (
        (drawn, hint),
        refusal,
        before_cycle,
        typed,
        after_move,
        after_timeout,
        y,
        moved_y,
        path,
        completed,
        faults,
    ) = outcome.unwrap();
    // Generated YAML: no empty fields, what a task waits for before its steps.
    assert_eq!(
        drawn,
        "name: my-workflow\npipelines:\n  main:\n    trigger: manual\n    tasks:\n      task:\n        steps:\n          - run: echo task\n      task-2:\n        depends_on: [task]\n        steps:\n          - run: echo task-2\n      task-3:\n        depends_on: [task-2]\n        steps:\n          - run: echo task-3\n"
    );
    assert!(completed.starts_with(&typed), "{completed}");
    assert!(faults.contains("pipelines.main.tasks.check"), "{faults}");
    assert!(typed.contains("      deploy:\n        depends_on: [task-2]\n        steps:\n          - run: echo task-3\n"), "{typed}");
    assert_eq!(hint, "refused, a cycle: task-3 -> task -> task-2 -> task-3");
    assert!(
        refusal.contains("task-3 -> task -> task-2 -> task-3"),
        "{refusal}"
    );
    assert!(before_cycle.contains("depends_on: [task-2]") && !before_cycle.contains("[task-3]"));
    assert_eq!(after_move, typed, "moving a node changed the YAML");
    assert!(
        moved_y > y + 60.0,
        "the node did not move: {y} -> {moved_y}"
    );
    // Every line but the new one is untouched, comments included.
    let mut expected: Vec<&str> = typed.lines().collect();
    let at = expected.iter().position(|l| *l == "      task-2:").unwrap();
    expected.insert(at, "        timeout: 5m");
    assert_eq!(
        after_timeout.lines().collect::<Vec<_>>(),
        expected,
        "{after_timeout}"
    );
    assert_eq!(path, "/workflows/my-workflow/edit");
}

pub(crate) const SHARED: &str = "\
# Shared by two people.
name: shared
pipelines:
  main:
    tasks:
      one:
        steps:
          - run: echo one
      two:   # the second
        depends_on: [one]
        steps:
          - run: echo two
";

impl Browser {
    /// Signs in as the admin, with the workflow `shared` applied.
    pub(crate) async fn sign_in_with_shared(&self, server: &TestServer) -> Result<(), String> {
        self.set_size(1400, 1000).await?;
        self.sign_in_as_admin(server).await?;
        self.goto(&server.url("/workflows")).await?;
        self.hydrated().await?;
        let (status, body) = self.api("POST", "/api/v1/workflows", SHARED).await?;
        if status != 201 {
            return Err(format!("apply: {status} {body}"));
        }
        Ok(())
    }
}

/// Someone saves a version while the editor is open: Save is refused, the
/// editor offers a merge or a reload, and the merge keeps both changes.
#[tokio::test]
async fn a_version_saved_meanwhile_is_merged_never_overwritten() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.sign_in_with_shared(&server).await?;
        browser.goto(&server.url("/workflows/shared")).await?;
        browser.hydrated().await?;
        // The editor's code is a piece of the bundle of its own, fetched
        // when an editor page is first opened, not before.
        let editor_piece_fetched = "return performance.getEntriesByType('resource')\
             .some(r => /\\/split_editor_[^/]*\\.wasm$/.test(r.name))";
        if browser.js(editor_piece_fetched).await? != serde_json::json!(false) {
            return Err("the workflow page fetched the editor's code".into());
        }
        browser.click("#edit-workflow").await?;
        browser.wait_for_path("/workflows/shared/edit").await?;
        browser.hydrated().await?;
        // The canvas draws once the editor's piece has loaded: wait for it
        // (a single look found nothing once on a loaded machine).
        browser
            .wait_for_attr(&node("two"), "data-task", "two")
            .await?;
        if browser.js(editor_piece_fetched).await? != serde_json::json!(true) {
            return Err("the editor's page did not fetch the editor's code".into());
        }

        // Meanwhile, another person's version 2.
        let theirs = SHARED.replace("echo one", "echo one, theirs");
        let (status, body) = browser.api("POST", "/api/v1/workflows", &theirs).await?;
        if status != 201 {
            return Err(format!("apply theirs: {status} {body}"));
        }
        browser.click(&node("two")).await?;
        browser.set_field("#task-image", "busybox:stable").await?;
        browser
            .wait_yaml("took the image", |y| y.contains("image: busybox:stable"))
            .await?;
        browser.click("button.save").await?;
        browser
            .wait_for_text(".dialog.conflict", |t| t.contains("Version 2 was saved"))
            .await?;
        browser.screenshot("editor-conflict").await?;
        browser.click("button.merge").await?;
        let merged = browser
            .wait_yaml("merged", |y| {
                y.contains("echo one, theirs") && y.contains("busybox:stable")
            })
            .await?;
        browser.click("button.save").await?;
        browser
            .wait_for_text(".dialog", |t| t.contains("Changes against version 2"))
            .await?;
        browser.click("button.confirm-save").await?;
        browser
            .wait_for_text(".notice", |t| t.contains("version 3"))
            .await?;
        let (_, current) = browser.api("GET", "/api/v1/workflows/shared", "").await?;
        Ok::<_, String>((merged, current))
    }
    .await;
    browser.close().await;
    let (merged, current) = outcome.unwrap();
    let current: serde_json::Value = serde_json::from_str(&current).unwrap();
    assert_eq!(current["version"], 3);
    assert_eq!(current["source"], merged.as_str());
    assert!(merged.starts_with("# Shared by two people.\n"), "{merged}");
    assert!(merged.contains("      two:   # the second\n"), "{merged}");
}

impl Browser {
    /// A node's box in drawing units: the `x` and `y` of its rect.
    pub(crate) async fn node_at(&self, name: &str) -> Result<(f64, f64), String> {
        let v = self
            .client
            .execute(
                "const r = document.querySelector(arguments[0] + ' rect'); \
                 return [Number(r.getAttribute('x')), Number(r.getAttribute('y'))];",
                vec![node(name).into()],
            )
            .await
            .map_err(e)?;
        Ok((v[0].as_f64().unwrap_or(-1.0), v[1].as_f64().unwrap_or(-1.0)))
    }
}

/// A dragged node's place is saved with the version (a move alone can be
/// saved) and comes back on reload; the direction toggle, the `+` on an
/// edge and a second pipeline's tab; a version saved meanwhile, reloaded
/// instead of merged.
#[tokio::test]
async fn places_are_kept_and_the_canvas_tools_work() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.sign_in_with_shared(&server).await?;
        browser.goto(&server.url("/workflows/shared/edit")).await?;
        browser.hydrated().await?;
        browser
            .wait_for_attr(&node("one"), "data-task", "one")
            .await?;
        let (_, y0) = browser.node_at("one").await?;
        let (x, y) = browser.centre(&node("one")).await?;
        browser
            .client
            .perform_actions(
                MouseActions::new("mouse".into())
                    .then(PointerAction::MoveTo {
                        duration: None,
                        x: x - 30.0,
                        y,
                    })
                    .then(PointerAction::Down {
                        button: MOUSE_BUTTON_LEFT,
                    })
                    .then(PointerAction::MoveTo {
                        duration: Some(Duration::from_millis(200)),
                        x: x - 30.0,
                        y: y + 150.0,
                    })
                    .then(PointerAction::Up {
                        button: MOUSE_BUTTON_LEFT,
                    }),
            )
            .await
            .map_err(e)?;
        let (_, moved) = browser.node_at("one").await?;
        browser.click("button.save").await?;
        browser.click("button.confirm-save").await?;
        browser
            .wait_for_text(".notice", |t| t.contains("version 1"))
            .await?;
        browser.goto(&server.url("/workflows/shared/edit")).await?;
        browser.hydrated().await?;
        browser
            .wait_for_attr(&node("one"), "data-task", "one")
            .await?;
        let (_, reloaded) = browser.node_at("one").await?;

        // Top down: `two` goes below `one`'s row.
        browser.click("#auto-layout").await?;
        browser.click("#direction").await?;
        browser
            .wait_for_text("#direction", |t| t == "Top down")
            .await?;
        let (x1, y1) = browser.node_at("one").await?;
        let (x2, y2) = browser.node_at("two").await?;
        browser.screenshot("editor-top-down").await?;

        // The + on an edge puts a task between.
        browser
            .click(".edge-group[data-edge=\"one->two\"] .insert")
            .await?;
        browser
            .wait_yaml("inserted a task", |y| {
                y.contains("      task:\n        depends_on: [one]")
                    && y.contains("depends_on: [task]")
            })
            .await?;
        // A second pipeline gets its own tab.
        browser.click(".tab.add").await?;
        browser
            .wait_for_text(".tablist", |t| t.contains("pipeline"))
            .await?;
        browser
            .wait_yaml("added a pipeline", |y| {
                y.contains("  pipeline:\n    trigger: manual\n    tasks: {}")
            })
            .await?;
        // A pipeline without tasks is a fault: back out of it to save.
        browser.click("#undo").await?;
        browser
            .wait_yaml("dropped the pipeline", |y| !y.contains("  pipeline:"))
            .await?;

        // Someone saves version 2; reloading theirs replaces the edit.
        let theirs = SHARED.replace("echo two", "echo two, theirs");
        let (status, body) = browser.api("POST", "/api/v1/workflows", &theirs).await?;
        if status != 201 {
            return Err(format!("apply theirs: {status} {body}"));
        }
        browser.click("button.save").await?;
        browser
            .wait_for_text(".dialog.conflict", |t| t.contains("Version 2"))
            .await?;
        browser.click("button.reload").await?;
        let reloaded_text = browser
            .wait_yaml("reloaded theirs", |y| y.contains("echo two, theirs"))
            .await?;
        Ok::<_, String>((y0, moved, reloaded, (x1, y1, x2, y2), reloaded_text, theirs))
    }
    .await;
    browser.close().await;
    let (y0, moved, reloaded, (x1, y1, x2, y2), reloaded_text, theirs) = outcome.unwrap();
    assert!(moved > y0 + 100.0, "the node did not move: {y0} -> {moved}");
    assert_eq!(reloaded, moved, "the place was not kept");
    assert!(
        y2 > y1 && (x2 - x1).abs() < 1.0,
        "not top down: one ({x1},{y1}) two ({x2},{y2})"
    );
    assert_eq!(reloaded_text, theirs);
}
