//! Runs: `run` (with `--wait`'s live view), `cancel`, `rerun`, `get runs`
//! (with `-w`, from the runs feed), `describe run`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use xene_api::feed::{ListFeed, RunFeed};
use xene_api::paths;
use xene_api::run::{CancelResponse, Run, RunDetail, RunList, StartRun, TaskAttempt, TaskRun};
use xene_core::status::RunStatus;

use super::Ctx;
use crate::error::{Exit, fail};
use crate::feed;
use crate::output;
use crate::sent;

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

/// `-o wide`: every agent of the run instead of the first.
const WIDE_RUN_HEADERS: &[&str] = &[
    "ID",
    "WORKFLOW",
    "PIPELINE",
    "STATUS",
    "TRIGGER",
    "AGENTS",
    "REQUESTED",
    "DURATION",
];

fn run_headers(format: crate::args::Format) -> &'static [&'static str] {
    if format == crate::args::Format::Wide {
        WIDE_RUN_HEADERS
    } else {
        RUN_HEADERS
    }
}

fn run_row(colour: bool, wide: bool, r: &Run) -> Vec<String> {
    vec![
        r.id.to_string(),
        r.workflow.clone(),
        r.pipeline.clone(),
        output::status(colour, r.status.as_str()),
        output::text(Some(&r.trigger)),
        agents_cell(r, wide),
        output::time(Some(r.requested_at)),
        run_duration(r),
    ]
}

/// The agents a run's tasks went to: all of them (wide), or the first and
/// how many more. A server older than `agents` names only `agent`.
fn agents_cell(r: &Run, wide: bool) -> String {
    let agents: Vec<String> = if r.agents.is_empty() {
        r.agent.iter().cloned().collect()
    } else {
        r.agents.clone()
    };
    match agents.as_slice() {
        [] => output::text(None),
        [one] => one.clone(),
        [first, rest @ ..] if !wide => format!("{first} +{}", rest.len()),
        all => all.join(","),
    }
}

/// How long it ran, or has run so far.
fn run_duration(r: &Run) -> String {
    output::duration(r.duration_ms(output::now_ms()))
}

fn matches(filter: &Filter, run: &Run) -> bool {
    let is = |have: &str, want: &Option<String>| want.as_deref().is_none_or(|w| have == w);
    is(&run.workflow, &filter.workflow)
        && is(&run.pipeline, &filter.pipeline)
        && is(run.status.as_str(), &filter.status)
}

pub async fn list(ctx: &Ctx, filter: &Filter, watch: bool) -> anyhow::Result<Exit> {
    let query = paths::with_query(
        paths::runs(),
        [
            ("limit", Some(filter.limit.clamp(1, 1000).to_string())),
            ("workflow", filter.workflow.clone()),
            ("pipeline", filter.pipeline.clone()),
            ("status", filter.status.clone()),
        ],
    );
    // Subscribed before the list is read, so no change falls between.
    let feed = if watch {
        Some(ctx.client.websocket(&paths::runs_feed()).await?)
    } else {
        None
    };
    let answer = ctx.client.answer(&query).await?;
    let (wide, headers) = (
        ctx.format == crate::args::Format::Wide,
        run_headers(ctx.format),
    );
    let Some(mut feed) = feed else {
        if let Some(list) = ctx.for_table::<RunList>(&answer)? {
            let rows: Vec<Vec<String>> = list
                .runs
                .iter()
                .map(|r| run_row(ctx.colour, wide, r))
                .collect();
            output::table(headers, &rows);
        }
        return Ok(Exit::Ok);
    };
    // Each run as sent (for `-o json|yaml`) and as read (for the table).
    let listed = |answer: &crate::client::Answer| sent::items::<Run>(&answer.json(), "runs");
    let runs = listed(&answer)?;
    // Watching: the list, then a line per change, as `kubectl get -w` does,
    // in the list's columns (wide enough for any status).
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|(r, _)| run_row(ctx.colour, wide, r))
        .collect();
    let mut widths = output::widths(headers, &rows);
    widths[3] = widths[3].max("shutting_down".len());
    let print_rows = |runs: &[(Run, Value)]| {
        let mut out = std::io::stdout().lock();
        for (run, as_sent) in runs {
            let line = match ctx.format {
                crate::args::Format::Table | crate::args::Format::Wide => {
                    output::row_line(&widths, &run_row(ctx.colour, wide, run))
                }
                _ => output::json_line(as_sent),
            };
            let _ = out.write_all(line.as_bytes());
        }
        let _ = out.flush();
    };
    if ctx.format.is_table() {
        let _ = std::io::stdout().write_all(output::row_line(&widths, headers).as_bytes());
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
                print_rows(&listed(&ctx.client.answer(&query).await?)?);
                continue;
            }
        };
        let message: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        match sent::read::<ListFeed>(&message) {
            Ok(ListFeed::Run { run }) if matches(filter, &run) => {
                print_rows(&[(run, sent::part(&message, &["run"]))]);
            }
            Ok(ListFeed::Resync) => print_rows(&listed(&ctx.client.answer(&query).await?)?),
            // Another list's run, or a message this client does not know
            // (a newer server's).
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
        match ctx.client.websocket(&paths::runs_feed()).await {
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
    let Some(detail) = ctx.get_for_table::<RunDetail>(&paths::run(id)).await? else {
        return Ok(Exit::Ok);
    };
    let run = &detail.run;
    let c = ctx.colour;
    println!("Run:        {}", run.id);
    println!("Pipeline:   {}/{}", run.workflow, run.pipeline);
    println!("Version:    {}", run.version);
    println!("Status:     {}", output::status(c, run.status.as_str()));
    println!("Trigger:    {}", output::text(Some(&run.trigger)));
    println!("Params:     {}", output::pairs(&run.params));
    println!("Agents:     {}", agents_cell(run, true));
    // Only a run placed whole on one agent is retried whole; a run placed
    // task by task retries its tasks (their attempts, below).
    if run.agent.is_some() {
        println!("Attempt:    {} of {}", run.attempt, run.max_attempts);
    }
    println!("Requested:  {}", output::time(Some(run.requested_at)));
    println!("Started:    {}", output::time(run.started_at));
    println!("Finished:   {}", output::time(run.finished_at));
    println!("Duration:   {}", run_duration(run));
    if let Some(error) = &run.error {
        println!("Error:      {error}");
    }
    if let Some(reason) = &run.scheduler_reason {
        println!("Scheduler:  {reason}");
    }
    println!("Tasks:");
    let mut rows = Vec::new();
    for task in &detail.tasks {
        rows.push(vec![
            format!("  {}", task.name),
            output::status(c, task.status.as_str()),
            output::text(task.agent_id.as_deref()),
            output::duration(task.duration_ms),
            task.error.clone().unwrap_or_default(),
        ]);
        // One attempt says nothing the task's row does not, unless it
        // waits for an agent (and says why).
        if task.attempts.len() > 1 || task.attempts.iter().any(|a| a.status == "ready") {
            for attempt in &task.attempts {
                rows.push(vec![
                    format!("    attempt {}", attempt.number),
                    output::status(c, &attempt.status),
                    output::text(attempt.agent_id.as_deref()),
                    output::duration(attempt_duration(attempt)),
                    attempt.error.clone().unwrap_or_default(),
                ]);
            }
        }
        for step in &task.steps {
            rows.push(vec![
                format!("    {}", step.name),
                output::status(c, step.status.as_str()),
                String::new(),
                output::duration(step.duration_ms),
                step.exit_code
                    .map_or(String::new(), |code| format!("exit {code}")),
            ]);
        }
    }
    output::table(&["  NAME", "STATUS", "AGENT", "DURATION", ""], &rows);
    Ok(Exit::Ok)
}

fn attempt_duration(attempt: &TaskAttempt) -> Option<i64> {
    Some(attempt.finished_at? - attempt.started_at?)
}

pub async fn start(ctx: &Ctx, target: &str, params: &[String], wait: bool) -> anyhow::Result<Exit> {
    let Some((workflow, pipeline)) = target.split_once('/') else {
        return Err(fail(
            Exit::Usage,
            format!("{target:?} is not WORKFLOW/PIPELINE"),
        ));
    };
    let params = super::pairs(params, "param")?;
    start_run(ctx, workflow, pipeline, params, None, wait).await
}

/// Starts a run; `version` pins the workflow version (`None`: the current
/// one), and is then named in what is printed.
async fn start_run(
    ctx: &Ctx,
    workflow: &str,
    pipeline: &str,
    params: BTreeMap<String, String>,
    version: Option<i64>,
    wait: bool,
) -> anyhow::Result<Exit> {
    let request = StartRun {
        params: params
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect(),
        version,
    };
    let answer = ctx
        .client
        .post(&paths::pipeline_runs(workflow, pipeline), &request)
        .await
        .map_err(|e| match version {
            Some(_) => older_server_hint(e),
            None => e,
        })?;
    let id = answer.read::<Run>()?.id;
    let queued = match version {
        Some(v) => format!("run/{id} queued ({workflow}/{pipeline}, version {v})"),
        None => format!("run/{id} queued ({workflow}/{pipeline})"),
    };
    if !wait {
        if !output::structured(ctx.format, &answer.json()) {
            println!("{queued}");
        }
        return Ok(Exit::Ok);
    }
    eprintln!("{queued}");
    wait_for(ctx, id).await
}

/// A server older than run versions refuses a start that names one as an
/// unknown field: say so, and how to run anyway.
fn older_server_hint(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<crate::error::Failure>() {
        Some(f)
            if f.exit == Exit::Usage
                && f.message.contains("unknown field")
                && f.message.contains("version") =>
        {
            fail(
                Exit::Usage,
                format!(
                    "{}\nthe server is older than this xenectl and cannot start a run on a chosen \
                     version: add --latest to run the workflow's current version",
                    f.message
                ),
            )
        }
        _ => e,
    }
}

pub async fn cancel(ctx: &Ctx, id: i64) -> anyhow::Result<Exit> {
    let answer = ctx
        .client
        .post(&paths::run_cancel(id), &Value::Null)
        .await?;
    if let Some(cancelled) = ctx.for_table::<CancelResponse>(&answer)? {
        println!("run/{id} {}", cancelled.status);
    }
    Ok(Exit::Ok)
}

/// Runs a run's pipeline again with its params: on its own workflow
/// version, or the current one with `latest`.
pub async fn rerun(ctx: &Ctx, id: i64, latest: bool, wait: bool) -> anyhow::Result<Exit> {
    let run: Run = ctx.client.get(&paths::run(id)).await?;
    let version = (!latest).then_some(run.version);
    start_run(ctx, &run.workflow, &run.pipeline, run.params, version, wait).await
}

/// Follows a run to its end with a live view of its tasks; the run's
/// outcome is the exit code.
async fn wait_for(ctx: &Ctx, id: i64) -> anyhow::Result<Exit> {
    let terminal = std::io::stdout().is_terminal() && ctx.format.is_table();
    let mut view = View {
        colour: ctx.colour,
        terminal,
        quiet: !ctx.format.is_table(),
        drawn: 0,
        seen: BTreeMap::new(),
        last: None,
    };
    feed::follow(&ctx.client, id, |message| {
        if let RunFeed::Run { run } = message {
            view.update(&run);
        }
        Ok(())
    })
    .await?;
    // The feed's last state may lag its end by nothing; read it to be sure.
    let answer = ctx.client.answer(&paths::run(id)).await?;
    let detail: RunDetail = answer.read()?;
    view.update(&detail);
    let run = &detail.run;
    if !output::structured(ctx.format, &answer.json()) {
        let mut line = format!(
            "run/{id} {} in {}",
            output::status(ctx.colour, run.status.as_str()),
            run_duration(run)
        );
        if let Some(error) = &run.error {
            line.push_str(&format!(": {error}"));
        }
        println!("{line}");
    }
    Ok(if run.status == RunStatus::Success {
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
    last: Option<RunDetail>,
}

impl View {
    fn update(&mut self, run: &RunDetail) {
        if self.last.as_ref() == Some(run) {
            return;
        }
        self.last = Some(run.clone());
        let mut out: Box<dyn Write> = if self.quiet {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        };
        if self.terminal {
            let mut rows = vec![vec![
                "run".to_string(),
                output::status(self.colour, run.run.status.as_str()),
                run_duration(&run.run),
            ]];
            for task in &run.tasks {
                rows.push(vec![
                    format!("  {}", task.name),
                    output::status(self.colour, task.status.as_str()),
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
            for task in &run.tasks {
                let status = task.status.as_str();
                if self.seen.get(&task.name).map(String::as_str) != Some(status) {
                    let _ = writeln!(
                        out,
                        "{}: {status}{}",
                        task.name,
                        if task.finished_at.is_some() {
                            format!(" ({})", task_duration(task))
                        } else {
                            String::new()
                        }
                    );
                    self.seen.insert(task.name.clone(), status.to_string());
                }
            }
        }
        let _ = out.flush();
    }
}

/// How long a task took, or has taken so far.
fn task_duration(task: &TaskRun) -> String {
    output::duration(
        task.duration_ms
            .or_else(|| task.started_at.map(|start| output::now_ms() - start)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_server_refusing_the_version_gets_a_hint_to_use_latest() {
        let old =
            "malformed JSON body: unknown field `version`, expected `params` at line 1 column 30";
        let hinted = older_server_hint(fail(Exit::Usage, old)).to_string();
        assert!(hinted.starts_with(old), "{hinted}");
        assert!(hinted.contains("add --latest"), "{hinted}");
        for other in [
            fail(
                Exit::Usage,
                "workflow \"w\" has no version 9 (the current one is 2)",
            ),
            fail(Exit::NotFound, "unknown field `version`"),
        ] {
            let text = other.to_string();
            assert_eq!(older_server_hint(other).to_string(), text);
        }
    }
}
