//! `xene-agent run FILE`: validate, run one pipeline here, report.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xene_agent::{Executor, ExecutorConfig, ExecutorError, RunRequest, new_run_id};
use xene_core::protocol::SecretValue;
use xene_core::status::RunStatus;

use super::output::{Mode, Printer};
use super::{EXIT_CANCELLED, EXIT_FAILURE, EXIT_INVALID, EXIT_SUCCESS, RunArgs};

pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let file = args.file.display().to_string();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {file}: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    let mut workflow = match xene_core::parse_workflow(&text) {
        Ok(workflow) => workflow,
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{file}: {diagnostic}");
            }
            eprintln!(
                "{file}: {} problem(s) found; nothing ran",
                diagnostics.len()
            );
            return Ok(EXIT_INVALID);
        }
    };
    let pipeline_name = match args.pipeline {
        Some(name) if workflow.pipelines.contains_key(&name) => name,
        Some(name) => {
            eprintln!(
                "error: {file} has no pipeline {name:?}; it has: {}",
                names(&workflow.pipelines)
            );
            return Ok(EXIT_INVALID);
        }
        None if workflow.pipelines.len() == 1 => workflow
            .pipelines
            .keys()
            .next()
            .cloned()
            .context("one pipeline")?,
        None => {
            eprintln!(
                "error: {file} has several pipelines; choose one with --pipeline: {}",
                names(&workflow.pipelines)
            );
            return Ok(EXIT_INVALID);
        }
    };
    let pipeline = workflow
        .pipelines
        .remove(&pipeline_name)
        .context("pipeline chosen above")?;

    // A local run takes its secrets from the environment, by name.
    let secrets: BTreeMap<String, SecretValue> = pipeline
        .tasks
        .values()
        .flat_map(|t| &t.secrets)
        .filter_map(|name| {
            let value = std::env::var(name).ok()?;
            Some((name.clone(), SecretValue::new(value)))
        })
        .collect();
    let total_tasks = pipeline.tasks.len();
    let request = RunRequest {
        run_id: new_run_id(),
        pipeline_name,
        pipeline,
        params: args.params.into_iter().collect(),
        secrets,
        completed: Default::default(),
    };
    let executor = Executor::new(ExecutorConfig {
        concurrency: args.concurrency.map(|c| c as usize),
        ..ExecutorConfig::default()
    });

    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signals(cancel.clone()));
    let mode = if args.json {
        Mode::Json
    } else if std::io::stdout().is_terminal() {
        Mode::Terminal
    } else {
        Mode::Plain
    };
    let (events, received) = mpsc::channel(1024);
    let printer = tokio::spawn(Printer::new(mode, total_tasks).print(received));
    let result = executor.run(request, events, cancel).await;
    let printer = printer.await.context("the output printer failed")?;

    let report = match result {
        Ok(report) => report,
        Err(e @ ExecutorError::InvalidParams(_)) | Err(e @ ExecutorError::InvalidPipeline(_)) => {
            eprintln!("error: {e}; nothing ran");
            return Ok(EXIT_INVALID);
        }
    };
    printer.finish(&report)?;
    Ok(match report.status {
        RunStatus::Success => EXIT_SUCCESS,
        RunStatus::Cancelled => EXIT_CANCELLED,
        _ => EXIT_FAILURE,
    })
}

fn names<T>(pipelines: &BTreeMap<String, T>) -> String {
    pipelines
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first Ctrl-C (or SIGTERM) cancels the run cleanly; a second Ctrl-C
/// quits at once, leaving whatever runs behind.
async fn cancel_on_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for Ctrl-C; the run cannot be cancelled");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!(
        "\ninterrupted: cancelling the run, removing its containers (Ctrl-C again to quit at once)"
    );
    cancel.cancel();
    interrupt.recv().await;
    std::process::exit(i32::from(EXIT_CANCELLED));
}
