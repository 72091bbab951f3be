//! `xene-agent`: parses the command line, runs the command, maps the outcome
//! to an exit code. The work is in the library and in `cli`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A sandboxed shell step's supervisor (runtime::supervisor): before any
    // thread starts.
    if let Some(code) = xene_agent::runtime::supervisor::run_if_asked() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
