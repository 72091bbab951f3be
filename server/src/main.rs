//! `xene`: the Xene server. Parses flags and hands over to the library.

use clap::Parser;
use xene_server::config::Args;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    xene_server::telemetry::init();
    match xene_server::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xene: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
