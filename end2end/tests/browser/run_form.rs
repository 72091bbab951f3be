//! A workflow's page as a newcomer uses it: the run form's typed fields,
//! required params enforced with each fault at its field (walk bugs 3, 4
//! and 5), one click to run a pipeline without params, a hook's full URL
//! with a copy button, and deleting the workflow once confirmed.

use fantoccini::Locator;

use crate::actions::e;
use crate::util::{Browser, TestServer};

const SPEC: &str = r#"
name: form
pipelines:
  stream:
    params:
      who: {type: string, required: true, description: "Who to greet"}
      loud: {type: boolean, default: false}
      times: {type: number, default: 2}
      colour: {type: choice, options: [red, green, blue], default: green}
      dry: {type: boolean, required: true}
    tasks:
      say:
        steps:
          - printf '%s|%s|%s|%s|%s' {{ params.who }} {{ params.loud }} {{ params.times }} {{ params.colour }} {{ params.dry }} > "$XENE_OUTPUT"
  quick:
    tasks:
      t:
        steps:
          - echo quick
  hooked:
    trigger: webhook
    tasks:
      t:
        steps:
          - echo hooked
"#;

/// What the page says about one field: its type, and its fault's text.
const FIELD: &str = "const [id] = arguments; const el = document.getElementById(id); \
    const fault = document.getElementById(id + '-fault'); \
    return {tag: el.tagName, type: el.type || '', role: el.getAttribute('role') || '', \
      inputmode: el.getAttribute('inputmode') || '', required: el.required, invalid: el.getAttribute('aria-invalid'), \
      label: document.querySelector('label[for=\"' + id + '\"]').textContent, \
      fault: fault.hidden ? '' : fault.textContent};";

async fn field(browser: &Browser, name: &str) -> Result<serde_json::Value, String> {
    let id = format!("param-stream-{name}");
    browser
        .client
        .execute(FIELD, vec![id.into()])
        .await
        .map_err(e)
}

async fn run_count(browser: &Browser) -> Result<usize, String> {
    let (_, body) = browser.api("GET", "/api/v1/runs", "").await?;
    let runs: serde_json::Value = serde_json::from_str(&body).map_err(e)?;
    Ok(runs["runs"].as_array().map_or(0, Vec::len))
}

#[tokio::test]
async fn the_run_form_is_typed_and_checked_and_a_workflow_is_deleted_once_confirmed() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/workflows")).await?;
        browser.hydrated().await?;
        let (status, body) = browser.api("POST", "/api/v1/workflows", SPEC).await?;
        if status != 201 {
            return Err(format!("apply: {status} {body}"));
        }
        browser.goto(&server.url("/workflows/form")).await?;
        browser.hydrated().await?;

        // The hook's whole URL, to paste into GitHub, with a copy button.
        browser.click("[data-pipeline=\"hooked\"] .rotate-hook").await?;
        let url = browser
            .wait_for_text("[data-pipeline=\"hooked\"] .hook-url", |t| {
                t.starts_with(&server.url("/api/v1/hooks/xh_"))
            })
            .await?;
        let copy = browser
            .js("return document.querySelector('[data-pipeline=\"hooked\"] .hook-address button.copy')?.textContent")
            .await?;
        if copy != "Copy" {
            return Err(format!("no copy button beside {url}: {copy}"));
        }
        browser.screenshot("workflow-hook-url").await?;

        // Walk bug 4: each param's field is of its type; the required one says so.
        browser.click("[data-pipeline=\"stream\"] .run-button").await?;
        browser
            .wait_for("the form", "return document.getElementById('param-stream-who')")
            .await?;
        let who = field(&browser, "who").await?;
        let loud = field(&browser, "loud").await?;
        let times = field(&browser, "times").await?;
        let colour = field(&browser, "colour").await?;
        let dry = field(&browser, "dry").await?;
        let kinds = [&who, &loud, &times, &colour, &dry].map(|f| {
            format!(
                "{} {} {} {} {}",
                f["tag"], f["type"], f["inputmode"], f["role"], f["required"]
            )
        });
        // A number is typed as text with a number keypad: a browser's
        // number field reads "" while "-" or "1e" is being typed.
        let want = [
            r#""INPUT" "text" "" "" true"#,
            r#""INPUT" "checkbox" "" "switch" false"#,
            r#""INPUT" "text" "decimal" "" false"#,
            r#""SELECT" "select-one" "" "" false"#,
            r#""INPUT" "checkbox" "" "switch" false"#,
        ];
        if kinds != want {
            return Err(format!("fields: {kinds:?}"));
        }
        if who["label"] != "who required" {
            return Err(format!("the required param is not marked: {who}"));
        }

        // Walk bugs 3 and 5: an empty required param and a number that is
        // none start nothing, and each fault shows at its field.
        browser
            .js("const t = document.getElementById('param-stream-times'); t.value = ''; \
                 t.dispatchEvent(new Event('input', {bubbles: true}));")
            .await?;
        browser.click("[data-pipeline=\"stream\"] .start-run").await?;
        browser
            .wait_for("the faults", "return document.getElementById('param-stream-who-fault').hidden === false")
            .await?;
        let (who, times) = (field(&browser, "who").await?, field(&browser, "times").await?);
        let focused = browser.js("return document.activeElement.id").await?;
        browser
            .js("document.querySelector('.run-form').scrollIntoView({block: 'center'})")
            .await?;
        let summary = browser.js("return document.querySelector('.form-faults').textContent").await?;
        browser.screenshot("run-form-faults").await?;
        let serious = browser.axe().await?;
        // On a phone the fields stack, each fault still under its field.
        browser.set_size(390, 844).await?;
        browser
            .wait_for("a phone's width", "return window.innerWidth <= 400")
            .await?;
        browser
            .js("document.querySelector('.run-form').scrollIntoView({block: 'start'})")
            .await?;
        browser.screenshot("phone-run-form-faults").await?;
        browser.set_size(1280, 900).await?;
        if who["fault"] != "required string param without a value"
            || who["invalid"] != "true"
            || times["fault"] != "\"\" is not a number"
            || focused != "param-stream-times"
            || summary != "Not started: fix times, who."
        {
            return Err(format!("faults: {who} {times} {focused} {summary}"));
        }
        if !serious.is_empty() {
            return Err(format!("axe: {serious:?}"));
        }
        if browser.path().await? != "/workflows/form" || run_count(&browser).await? != 0 {
            return Err("a run started with faulty params".into());
        }

        // Typed values, then the run gets them.
        let who_field = browser
            .client
            .find(Locator::Id("param-stream-who"))
            .await
            .map_err(e)?;
        who_field.send_keys("ann").await.map_err(e)?;
        browser.click("#param-stream-loud").await?;
        let times_field = browser
            .client
            .find(Locator::Id("param-stream-times"))
            .await
            .map_err(e)?;
        // Typed key by key: "-" alone is no number yet, and must stay.
        times_field.send_keys("-1.5").await.map_err(e)?;
        let typed = browser
            .js("return document.getElementById('param-stream-times').value")
            .await?;
        if typed != "-1.5" {
            return Err(format!("the number field holds {typed:?}"));
        }
        browser
            .js("const c = document.getElementById('param-stream-colour'); c.value = 'blue'; \
                 c.dispatchEvent(new Event('change', {bubbles: true}));")
            .await?;
        let cleared = [field(&browser, "who").await?, field(&browser, "times").await?];
        if cleared.iter().any(|f| f["fault"] != "") {
            return Err(format!("faults stay after editing: {cleared:?}"));
        }
        browser
            .wait_for_text("#param-stream-loud ~ .switch-state", |t| t == "true")
            .await?;
        browser.screenshot("run-form-typed").await?;

        // The workflow changed since the page loaded: blue is no option any
        // more. The server's fault shows at its field, as the page's own do.
        let fewer = SPEC.replace("[red, green, blue]", "[red, green]");
        let (status, body) = browser.api("POST", "/api/v1/workflows", &fewer).await?;
        if status != 201 {
            return Err(format!("apply without blue: {status} {body}"));
        }
        browser.click("[data-pipeline=\"stream\"] .start-run").await?;
        browser
            .wait_for(
                "the server's fault",
                "return document.getElementById('param-stream-colour-fault').hidden === false",
            )
            .await?;
        let colour = field(&browser, "colour").await?;
        let summary = browser.js("return document.querySelector('.form-faults').textContent").await?;
        let focused = browser.js("return document.activeElement.id").await?;
        if colour["fault"] != "\"blue\" is not one of the options: red, green"
            || colour["invalid"] != "true"
            || summary != "Not started: fix colour."
            || focused != "param-stream-colour"
        {
            return Err(format!("the server's fault: {colour} {summary} {focused}"));
        }
        browser.screenshot("run-form-server-fault").await?;
        let (status, body) = browser.api("POST", "/api/v1/workflows", SPEC).await?;
        if !(200..300).contains(&status) {
            return Err(format!("apply with blue again: {status} {body}"));
        }
        browser.click("[data-pipeline=\"stream\"] .start-run").await?;
        let path = browser.wait_for_path("/runs/").await?;
        let output = browser
            .wait_for(
                "the run's output",
                &format!(
                    "return fetch('/api/v1{path}').then(r => r.json()).then(r => \
                       r.status === 'success' ? r.tasks[0].output : null)"
                ),
            )
            .await?;
        // The required boolean left alone is false, as its switch shows.
        if output != "ann|true|-1.5|blue|false" {
            return Err(format!("the run got {output}"));
        }

        // A pipeline without params runs on one click.
        browser.goto(&server.url("/workflows/form")).await?;
        browser.hydrated().await?;
        browser.click("[data-pipeline=\"quick\"] .run-button").await?;
        let quick = browser.wait_for_path("/runs/").await?;
        if quick == path {
            return Err(format!("no new run: {quick}"));
        }

        // Deleting asks first; keeping it changes nothing.
        browser.goto(&server.url("/workflows/form")).await?;
        browser.hydrated().await?;
        browser.click("#delete-workflow").await?;
        browser
            .wait_for("the question", "return document.activeElement?.id === 'keep-workflow'")
            .await?;
        browser.screenshot("workflow-delete-confirm").await?;
        let serious = browser.axe().await?;
        if !serious.is_empty() {
            return Err(format!("axe: {serious:?}"));
        }
        browser.click("#keep-workflow").await?;
        browser
            .wait_for("the question gone", "return document.getElementById('delete-confirm') === null")
            .await?;
        if browser.api("GET", "/api/v1/workflows/form", "").await?.0 != 200 {
            return Err("kept, yet gone".into());
        }
        browser.click("#delete-workflow").await?;
        browser.click("#confirm-delete").await?;
        browser
            .wait_for("the workflows list", "return location.pathname === '/workflows'")
            .await?;
        let gone = browser.api("GET", "/api/v1/workflows/form", "").await?.0;
        Ok::<_, String>(gone)
    }
    .await;
    browser.close().await;
    assert_eq!(outcome.unwrap(), 404, "the workflow is deleted");
}
