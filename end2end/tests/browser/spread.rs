//! Where tasks ran and draining, as an admin sees them: the run page names
//! the agent of each task and lists a retried task's attempts; the agents
//! page lists the tasks an agent holds, drains and undrains one.
//! Screenshots under `target/screenshots/`.

use crate::util::{Browser, TestServer};

const TWO_TASKS: &str = r#"
name: two
pipelines:
  p:
    tasks:
      first:
        retries: {count: 1, backoff: 1ms}
        steps: ["test $XENE_ATTEMPT = 2 && echo one > $XENE_OUTPUT"]
      second:
        depends_on: [first]
        steps: ["echo two"]
  slow:
    tasks:
      sleeper:
        steps: ["sleep 60"]
"#;

#[tokio::test]
async fn the_run_page_names_each_tasks_agent_and_admins_drain_agents() {
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    let outcome = async {
        browser.set_size(1280, 900).await?;
        browser.sign_in_as_admin(&server).await?;
        browser.goto(&server.url("/agents")).await?;
        browser.hydrated().await?;
        let (status, body) = browser.api("POST", "/api/v1/workflows", TWO_TASKS).await?;
        if status != 201 {
            return Err(format!("apply: {status} {body}"));
        }
        let (status, body) = browser
            .api("POST", "/api/v1/workflows/two/pipelines/p/runs", "")
            .await?;
        if status != 201 {
            return Err(format!("start: {status} {body}"));
        }
        browser.goto(&server.url("/runs/1")).await?;
        browser.hydrated().await?;
        browser
            .wait_for_text("h1 .status", |t| t == "success")
            .await?;
        let first = browser
            .wait_for_text("li[data-task=\"first\"] .task-agent", |t| {
                t.contains("builtin")
            })
            .await?;
        let second = browser
            .wait_for_text("li[data-task=\"second\"] .task-agent", |t| {
                t.contains("builtin")
            })
            .await?;
        let agents = browser
            .wait_for_text("#run-agents", |t| t.starts_with("builtin"))
            .await?;
        // Its first attempt failed: both are listed, with their agent.
        let attempts = browser
            .wait_for_text("li[data-task=\"first\"] .attempts", |t| {
                t.contains("attempt 2") && t.contains("success")
            })
            .await?;
        browser.screenshot("run-task-agents").await?;

        // Drained while it holds nothing: it says so at once.
        browser.goto(&server.url("/agents")).await?;
        browser.hydrated().await?;
        // The built-in agent's id is `builtin@HOST`.
        let row = "#agents tr[data-agent^=\"builtin\"]";
        browser
            .wait_for_text(&format!("{row} button.drain"), |t| t == "Drain")
            .await?;
        browser.click(&format!("{row} button.drain")).await?;
        let drained = browser
            .wait_for_text(&format!("{row} .drain.status"), |t| t == "drained")
            .await?;
        browser
            .wait_for_text(&format!("{row} button.drain"), |t| t == "Undrain")
            .await?;
        browser.screenshot("agents-drained").await?;
        let (_, list) = browser.api("GET", "/api/v1/agents", "").await?;
        let list: serde_json::Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
        let draining = list["agents"][0]["draining"].clone();

        browser.click(&format!("{row} button.drain")).await?;
        browser
            .wait_for_text(&format!("{row} button.drain"), |t| t == "Drain")
            .await?;

        // Holding a task: the page lists it; drained meanwhile, the agent
        // is `draining` until the task ends.
        let (status, body) = browser
            .api("POST", "/api/v1/workflows/two/pipelines/slow/runs", "")
            .await?;
        if status != 201 {
            return Err(format!("start: {status} {body}"));
        }
        browser
            .wait_for(
                "the sleeper running",
                "return fetch('/api/v1/runs/2').then(r => r.json()).then(r => r.tasks[0].status === 'running' || null)",
            )
            .await?;
        browser.goto(&server.url("/agents")).await?;
        browser.hydrated().await?;
        let held = browser
            .wait_for_text(&format!("{row} .held"), |t| t.contains("sleeper"))
            .await?;
        browser.click(&format!("{row} button.drain")).await?;
        let still = browser
            .wait_for_text(&format!("{row} .drain.status"), |t| t == "draining")
            .await?;
        browser.screenshot("agents-draining").await?;
        let (status, body) = browser.api("POST", "/api/v1/runs/2/cancel", "").await?;
        if status >= 300 {
            return Err(format!("cancel: {status} {body}"));
        }
        browser
            .wait_for(
                "the run cancelled",
                "return fetch('/api/v1/runs/2').then(r => r.json()).then(r => r.status === 'cancelled' || null)",
            )
            .await?;
        browser.goto(&server.url("/agents")).await?;
        browser.hydrated().await?;
        browser
            .wait_for_text(&format!("{row} .drain.status"), |t| t == "drained")
            .await?;
        browser.click(&format!("{row} button.drain")).await?;
        browser
            .wait_for_text(&format!("{row} button.drain"), |t| t == "Drain")
            .await?;
        let badge = browser
            .js(&format!(
                "return document.querySelector('{row} .drain.status') === null"
            ))
            .await?;
        Ok::<_, String>((first, second, agents, attempts, drained, draining, badge, held, still))
    }
    .await;
    browser.close().await;
    let (first, second, agents, attempts, drained, draining, badge, held, still) = outcome.unwrap();
    assert!(held.contains("#2 sleeper"), "{held}");
    assert_eq!(still, "draining");
    assert!(
        attempts.contains("attempt 1") && attempts.contains("error"),
        "{attempts}"
    );
    assert!(first.contains("builtin") && second.contains("builtin"));
    assert!(agents.starts_with("builtin"), "{agents}");
    assert_eq!(drained, "drained");
    assert_eq!(draining, true);
    assert_eq!(badge, true, "undrained, the badge goes");
}
