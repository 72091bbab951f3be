//! `xenectl`: the command-line client for a Xene server.
//!
//! `main` only parses the arguments, runs the command and turns its outcome
//! into an exit code (documented in `error::Exit`).

use std::process::ExitCode;

use clap::Parser;

mod args;
mod client;
mod commands;
mod config;
mod error;
mod extract;
mod feed;
mod output;
mod sent;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xenectl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("xenectl: {e:#}");
            error::exit_of(&e).into()
        }
    }
}
