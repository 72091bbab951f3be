//! The command line. `run` executes a workflow file on this machine; the
//! server-connected mode (`--server URL --join-token T`) will sit beside it.

mod local;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub const EXIT_SUCCESS: u8 = 0;
/// The run failed (a task failed), or the agent hit an unexpected error.
pub const EXIT_FAILURE: u8 = 1;
/// The spec or the command line is invalid; nothing ran.
pub const EXIT_INVALID: u8 = 2;
/// Interrupted (Ctrl-C): 128 + SIGINT, as shells report it.
pub const EXIT_CANCELLED: u8 = 130;

/// The Xene agent: runs workflow pipelines with Docker or the shell.
#[derive(Debug, Parser)]
#[command(name = "xene-agent", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline of a workflow file on this machine, then exit.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The workflow file (YAML or JSON).
    pub file: PathBuf,
    /// The pipeline to run; may be left out when the workflow has one.
    #[arg(long, short = 'p')]
    pub pipeline: Option<String>,
    /// Set a pipeline param, as NAME=VALUE; repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Print one JSON report at the end instead of live output (logs go to
    /// stderr).
    #[arg(long)]
    pub json: bool,
    /// Most tasks running at once; overrides the pipeline's `concurrency`.
    #[arg(long, env = "XENE_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))?;
    if name.is_empty() {
        return Err(format!("expected NAME=VALUE, got {text:?}"));
    }
    Ok((name.to_string(), value.to_string()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XENE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = match args.command {
        Command::Run(run) => runtime.block_on(local::run(run))?,
    };
    Ok(ExitCode::from(code))
}
