//! The command line. `run` executes a workflow file on this machine;
//! `connect` serves a Xene server.

mod connect;
mod local;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xene_agent::telemetry::LogFormat;

pub const EXIT_SUCCESS: u8 = 0;
/// The run failed (a task failed), or the agent hit an unexpected error.
pub const EXIT_FAILURE: u8 = 1;
/// The spec or the command line is invalid; nothing ran.
pub const EXIT_INVALID: u8 = 2;
/// The server no longer accepts this agent's credential (revoked).
pub const EXIT_REVOKED: u8 = 3;
/// Interrupted (Ctrl-C): 128 + SIGINT, as shells report it.
pub const EXIT_CANCELLED: u8 = 130;

/// The Xene agent: runs workflow pipelines with Docker or the shell.
#[derive(Debug, Parser)]
#[command(name = "xene-agent", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// How logs are written to stderr: `text`, or `json` (one object per
    /// line, with its spans) for log collectors. Filter them with RUST_LOG.
    #[arg(long, global = true, env = "XENE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Export traces to this OpenTelemetry collector, as OTLP over HTTP
    /// (like http://collector:4318); a server's runs continue its traces.
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline of a workflow file on this machine, then exit.
    Run(RunArgs),
    /// Serve a Xene server: join it once with a token, then run what it
    /// dispatches, reconnecting whenever the connection drops.
    // Boxed: its flags make it several times the size of `Run`.
    Connect(Box<ConnectArgs>),
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

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The server's URL, like https://xene.example.com. Plain http:// only
    /// to this machine, or with --allow-insecure.
    #[arg(long, env = "XENE_SERVER", value_name = "URL")]
    pub server: String,
    /// The one-time join token (from the server's agents page). Used only
    /// when no credential for this server is stored in the state dir.
    #[arg(
        long,
        env = "XENE_JOIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub join_token: Option<String>,
    /// The agent's name on the server [default: this machine's host name].
    #[arg(long, env = "XENE_AGENT_NAME")]
    pub name: Option<String>,
    /// A label that runs select agents by, as KEY=VALUE; repeatable. The
    /// environment variable takes a comma-separated list.
    #[arg(
        long = "label",
        env = "XENE_AGENT_LABELS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_param
    )]
    pub labels: Vec<(String, String)>,
    /// Most task attempts at once.
    #[arg(long, env = "XENE_AGENT_CAPACITY", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub capacity: u32,
    /// Let tasks without an image run as processes on this machine (the
    /// shell runtime), with a clean environment. Off by default: a task
    /// then needs an image.
    #[arg(long, env = "XENE_ALLOW_SHELL", value_parser = clap::builder::FalseyValueParser::new())]
    pub allow_shell: bool,
    /// Where the credential and the shell runtime's work directories go
    /// [default: $XDG_STATE_HOME/xene-agent, ~/.local/state/xene-agent, or
    /// /var/lib/xene-agent as root].
    #[arg(long, env = "XENE_AGENT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Trust the CA certificates in this PEM file instead of the system's.
    #[arg(long, env = "XENE_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the server certificate with this SHA-256 (64 hex
    /// digits), e.g. a self-signed one; its name and dates are not checked.
    #[arg(
        long,
        env = "XENE_SERVER_CERT_SHA256",
        value_name = "HEX",
        conflicts_with = "ca_file"
    )]
    pub server_cert_sha256: Option<String>,
    /// Client certificate chain (PEM) for mutual TLS.
    #[arg(
        long,
        env = "XENE_CLIENT_CERT",
        value_name = "PEM",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        env = "XENE_CLIENT_KEY",
        value_name = "PEM",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Allow plain http:// to a server that is not on this machine: the
    /// credential and the runs' secrets then cross the network unencrypted.
    #[arg(long, env = "XENE_ALLOW_INSECURE", value_parser = clap::builder::FalseyValueParser::new())]
    pub allow_insecure: bool,
    /// Serve this agent's Prometheus metrics at http://ADDR/metrics (plain
    /// HTTP: keep it on loopback or a private network).
    #[arg(long, env = "XENE_AGENT_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the shell runtime's task directories go; never inside the
    /// state dir, which holds the credential [default: $TMPDIR/xene-agent-UID,
    /// created private].
    #[arg(long, env = "XENE_AGENT_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub docker: xene_agent::runtime::docker::ContainerLimitArgs,
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
    // A local run prints its own output; a connected agent is a service,
    // whose log is its output.
    let default_log = match args.command {
        Command::Run(_) => "warn",
        Command::Connect(_) => "info",
    };
    let _telemetry = match xene_agent::telemetry::init_with_otlp(
        args.log_format,
        default_log,
        args.otlp_endpoint.as_deref(),
        "xene-agent",
    ) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let code = match args.command {
        Command::Run(run) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(local::run(run))?,
        // One thread: the agent mostly waits on the network and on its
        // steps' processes, and an idle agent should stay small.
        Command::Connect(connect) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(connect::run(*connect))?,
    };
    Ok(ExitCode::from(code))
}
