//! Runs: `run` (with `--wait`'s live view), `cancel`, `rerun`, `get runs`
//! (with `-w`, from the runs feed), `describe run`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::Ctx;
use crate::client::encode;
use crate::error::{Exit, fail};
use crate::feed::{self, Event};
use crate::output;

pub struct Filter {
    pub workflow: Option<String>,
    pub pipeline: Option<String>,
    pub status: Option<String>,
    pub limit: u32,
}

const RUN_HEADERS: &[&str] = &[
    "ID",
    "WORKFLOW",
    "PIPELINE",
    "STATUS",
    "TRIGGER",
    "AGENT",
    "REQUESTED",
    "DURATION",
];

fn run_row(colour: bool, r: &Value) -> Vec<String> {
    vec![
        output::cell(&r["id"]),
        output::cell(&r["workflow"]),
        output::cell(&r["pipeline"]),
        output::status(colour, r["status"].as_str().unwrap_or("-")),
        output::cell(&r["trigger"]),
        output::cell(&r["agent"]),
        output::time(r["requested_at"].as_i64()),
        run_duration(r),
    ]
}

fn run_duration(r: &Value) -> String {
    match (r["started_at"].as_i64(), r["finished_at"].as_i64()) {
        (Some(start), Some(end)) => output::duration(end - start),
        (Some(start), None) => output::duration(output::now_ms() - start),
        _ => "-".into(),
    }
}

fn matches(filter: &Filter, run: &Value) -> bool {
    let is = |field: &str, want: &Option<String>| {
        want.as_deref()
            .is_none_or(|w| run[field].as_str() == Some(w))
    };
    is("workflow", &filter.workflow)
        && is("pipeline", &filter.pipeline)
        && is("status", &filter.status)
}

pub async fn list(ctx: &Ctx, filter: &Filter, watch: bool) -> anyhow::Result<Exit> {
    let mut query = format!("/api/v1/runs?limit={}", filter.limit.clamp(1, 1000));
    for (key, value) in [
        ("workflow", &filter.workflow),
        ("pipeline", &filter.pipeline),
        ("status", &filter.status),
    ] {
        if let Some(v) = value {
            query.push_str(&format!("&{key}={}", encode(v)));
        }
    }
    // Subscribed before the list is read, so no change falls between.
    let feed = if watch {
        Some(ctx.client.websocket("/api/v1/runs/feed").await?)
    } else {
        None
    };
    let body = ctx.client.get(&query).await?;
    let runs = body["runs"].as_array().cloned().unwrap_or_default();
    let Some(mut feed) = feed else {
        if !output::structured(ctx.format, &body) {
            let rows: Vec<Vec<String>> = runs.iter().map(|r| run_row(ctx.colour, r)).collect();
            output::table(RUN_HEADERS, &rows);
        }
        return Ok(Exit::Ok);
    };
    // Watching: the list, then a line per change, as `kubectl get -w` does,
    // in the list's columns (wide enough for any status).
    let rows: Vec<Vec<String>> = runs.iter().map(|r| run_row(ctx.colour, r)).collect();
    let mut widths = output::widths(RUN_HEADERS, &rows);
    widths[3] = widths[3].max("shutting_down".len());
    let print_rows = |runs: &[Value]| {
        let mut out = std::io::stdout().lock();
        for run in runs {
            let line = match ctx.format {
                crate::args::Format::Table => output::row_line(&widths, &run_row(ctx.colour, run)),
                _ => format!("{run}\n"),
            };
            let _ = out.write_all(line.as_bytes());
        }
        let _ = out.flush();
    };
    if ctx.format == crate::args::Format::Table {
        let _ = std::io::stdout().write_all(output::row_line(&widths, RUN_HEADERS).as_bytes());
    }
    print_rows(&runs);
    loop {
        let message = tokio::time::timeout(crate::feed::SILENCE, feed.next()).await;
        let text = match message {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            // Dropped or silent: open the feed again and list again, since
            // changes may have been missed meanwhile.
            _ => {
                feed = reconnect(ctx).await?;
                let body = ctx.client.get(&query).await?;
                print_rows(body["runs"].as_array().map_or(&[][..], Vec::as_slice));
                continue;
            }
        };
        let value: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        match value["type"].as_str() {
            Some("run") if matches(filter, &value["run"]) => print_rows(&[value["run"].clone()]),
            Some("resync") => {
                let body = ctx.client.get(&query).await?;
                print_rows(body["runs"].as_array().map_or(&[][..], Vec::as_slice));
            }
            _ => {}
        }
    }
}

/// Opens the runs feed again, waiting for a server that is away (for five
/// minutes at most).
async fn reconnect(
    ctx: &Ctx,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<Box<dyn crate::client::Io>>> {
    let started = std::time::Instant::now();
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        match ctx.client.websocket("/api/v1/runs/feed").await {
            Ok(feed) => return Ok(feed),
            Err(e)
                if crate::error::exit_of(&e) == Exit::Unreachable
                    && started.elapsed() < std::time::Duration::from_secs(300) =>
            {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

pub async fn describe(ctx: &Ctx, id: i64) -> anyhow::Result<Exit> {
    let run = ctx.client.get(&format!("/api/v1/runs/{id}")).await?;
    if output::structured(ctx.format, &run) {
        return Ok(Exit::Ok);
    }
    let c = ctx.colour;
    println!("Run:        {}", output::cell(&run["id"]));
    println!(
        "Pipeline:   {}/{}",
        output::cell(&run["workflow"]),
        output::cell(&run["pipeline"])
    );
    println!("Version:    {}", output::cell(&run["version"]));
    println!(
        "Status:     {}",
        output::status(c, run["status"].as_str().unwrap_or("-"))
    );
    println!("Trigger:    {}", output::cell(&run["trigger"]));
    println!("Params:     {}", output::cell(&run["params"]));
    println!("Agent:      {}", output::cell(&run["agent"]));
    println!(
        "Attempt:    {} of {}",
        output::cell(&run["attempt"]),
        output::cell(&run["max_attempts"])
    );
    println!("Requested:  {}", output::time(run["requested_at"].as_i64()));
    println!("Started:    {}", output::time(run["started_at"].as_i64()));
    println!("Finished:   {}", output::time(run["finished_at"].as_i64()));
    println!("Duration:   {}", run_duration(&run));
    if let Some(error) = run["error"].as_str() {
        println!("Error:      {error}");
    }
    if let Some(reason) = run["scheduler_reason"].as_str() {
        println!("Scheduler:  {reason}");
    }
    println!("Tasks:");
    let mut rows = Vec::new();
    for task in run["tasks"].as_array().into_iter().flatten() {
        rows.push(vec![
            format!("  {}", output::cell(&task["name"])),
            output::status(c, task["status"].as_str().unwrap_or("-")),
            task["duration_ms"]
                .as_i64()
                .map_or("-".into(), output::duration),
            task["error"].as_str().unwrap_or_default().to_string(),
        ]);
        for step in task["steps"].as_array().into_iter().flatten() {
            rows.push(vec![
                format!("    {}", output::cell(&step["name"])),
                output::status(c, step["status"].as_str().unwrap_or("-")),
                step["duration_ms"]
                    .as_i64()
                    .map_or("-".into(), output::duration),
                step["exit_code"]
                    .as_i64()
                    .map_or(String::new(), |code| format!("exit {code}")),
            ]);
        }
    }
    output::table(&["  NAME", "STATUS", "DURATION", ""], &rows);
    Ok(Exit::Ok)
}

pub async fn start(ctx: &Ctx, target: &str, params: &[String], wait: bool) -> anyhow::Result<Exit> {
    let Some((workflow, pipeline)) = target.split_once('/') else {
        return Err(fail(
            Exit::Usage,
            format!("{target:?} is not WORKFLOW/PIPELINE"),
        ));
    };
    let params = super::pairs(params, "param")?;
    start_run(ctx, workflow, pipeline, Value::Object(params), wait).await
}

async fn start_run(
    ctx: &Ctx,
    workflow: &str,
    pipeline: &str,
    params: Value,
    wait: bool,
) -> anyhow::Result<Exit> {
    let run = ctx
        .client
        .post(
            &format!(
                "/api/v1/workflows/{}/pipelines/{}/runs",
                encode(workflow),
                encode(pipeline)
            ),
            json!({ "params": params }),
        )
        .await?;
    let id = run["id"]
        .as_i64()
        .ok_or_else(|| fail(Exit::Failed, "the server answered without a run id"))?;
    if !wait {
        if !output::structured(ctx.format, &run) {
            println!("run/{id} queued ({workflow}/{pipeline})");
        }
        return Ok(Exit::Ok);
    }
    eprintln!("run/{id} queued ({workflow}/{pipeline})");
    wait_for(ctx, id).await
}

pub async fn cancel(ctx: &Ctx, id: i64) -> anyhow::Result<Exit> {
    let answer = ctx
        .client
        .post(&format!("/api/v1/runs/{id}/cancel"), Value::Null)
        .await?;
    if !output::structured(ctx.format, &answer) {
        println!("run/{id} {}", output::cell(&answer["status"]));
    }
    Ok(Exit::Ok)
}

pub async fn rerun(ctx: &Ctx, id: i64, wait: bool) -> anyhow::Result<Exit> {
    let run = ctx.client.get(&format!("/api/v1/runs/{id}")).await?;
    let workflow = run["workflow"].as_str().unwrap_or_default().to_string();
    let pipeline = run["pipeline"].as_str().unwrap_or_default().to_string();
    let params = match &run["params"] {
        Value::Object(_) => run["params"].clone(),
        _ => json!({}),
    };
    start_run(ctx, &workflow, &pipeline, params, wait).await
}

/// Follows a run to its end with a live view of its tasks; the run's
/// outcome is the exit code.
async fn wait_for(ctx: &Ctx, id: i64) -> anyhow::Result<Exit> {
    let terminal = std::io::stdout().is_terminal() && ctx.format == crate::args::Format::Table;
    let mut view = View {
        colour: ctx.colour,
        terminal,
        quiet: ctx.format != crate::args::Format::Table,
        drawn: 0,
        seen: BTreeMap::new(),
        last: Value::Null,
    };
    feed::follow(&ctx.client, id, |event| {
        if let Event::Run(run) = event {
            view.update(&run);
        }
        Ok(())
    })
    .await?;
    // The feed's last state may lag its end by nothing; read it to be sure.
    let run = ctx.client.get(&format!("/api/v1/runs/{id}")).await?;
    view.update(&run);
    let status = run["status"].as_str().unwrap_or("unknown");
    if !output::structured(ctx.format, &run) {
        let mut line = format!(
            "run/{id} {} in {}",
            output::status(ctx.colour, status),
            run_duration(&run)
        );
        if let Some(error) = run["error"].as_str() {
            line.push_str(&format!(": {error}"));
        }
        println!("{line}");
    }
    Ok(if status == "success" {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// The live view of `run --wait`: on a terminal, a table of tasks redrawn
/// in place; elsewhere, a line per task whose status changes.
struct View {
    colour: bool,
    terminal: bool,
    /// With `-o json|yaml`, stdout is for the run alone: progress goes to stderr.
    quiet: bool,
    /// Lines drawn last time, to move back over.
    drawn: usize,
    /// Each task's last printed status (plain mode).
    seen: BTreeMap<String, String>,
    last: Value,
}

impl View {
    fn update(&mut self, run: &Value) {
        if *run == self.last {
            return;
        }
        self.last = run.clone();
        let tasks = run["tasks"].as_array().cloned().unwrap_or_default();
        let mut out: Box<dyn Write> = if self.quiet {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        };
        if self.terminal {
            let mut rows = vec![vec![
                "run".to_string(),
                output::status(self.colour, run["status"].as_str().unwrap_or("-")),
                run_duration(run),
            ]];
            for task in &tasks {
                rows.push(vec![
                    format!("  {}", output::cell(&task["name"])),
                    output::status(self.colour, task["status"].as_str().unwrap_or("-")),
                    task_duration(task),
                ]);
            }
            let text = output::render_table(&["", "STATUS", "DURATION"], &rows);
            if self.drawn > 0 {
                // Up over the last drawing, then clear to the end of the screen.
                let _ = write!(out, "\x1b[{}A\x1b[J", self.drawn);
            }
            let _ = out.write_all(text.as_bytes());
            self.drawn = text.lines().count();
        } else {
            for task in &tasks {
                let name = task["name"].as_str().unwrap_or_default().to_string();
                let status = task["status"].as_str().unwrap_or("-").to_string();
                if self.seen.get(&name) != Some(&status) {
                    let finished = task["finished_at"].is_i64();
                    let _ = writeln!(
                        out,
                        "{name}: {status}{}",
                        if finished {
                            format!(" ({})", task_duration(task))
                        } else {
                            String::new()
                        }
                    );
                    self.seen.insert(name, status);
                }
            }
        }
        let _ = out.flush();
    }
}

fn task_duration(task: &Value) -> String {
    if let Some(ms) = task["duration_ms"].as_i64() {
        return output::duration(ms);
    }
    match task["started_at"].as_i64() {
        Some(start) => output::duration(output::now_ms() - start),
        None => "-".into(),
    }
}
