//! `xenectl`: the command-line client for a Xene server.

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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::bail!(
        "no command given for {}; the commands arrive with the API (see `xenectl --help`)",
        cli.server
    )
}
