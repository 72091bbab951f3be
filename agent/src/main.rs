//! `xene-agent`: parses the command line, runs the command, maps the outcome
//! to an exit code. The work is in the library and in `cli`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
