//! `xenectl`: the command-line client for a Xene server.

use std::process::ExitCode;

use clap::Parser;

/// The command-line client for a Xene server: apply workflows, start runs,
/// follow logs, manage agents, secrets and tokens.
#[derive(Debug, Parser)]
#[command(name = "xenectl", version, about, long_about = None, arg_required_else_help = true)]
struct Cli {
    /// The Xene server to talk to.
    #[arg(long, env = "XENE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The commands come with the CLI's own issue; until then the REST API
    // (README.md) and `xene-agent run` do what it will do.
    eprintln!(
        "xenectl: no command yet for {}; use the REST API described in README.md",
        cli.server
    );
    ExitCode::from(2)
}
