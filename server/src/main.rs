//! `xene`: the Xene server. Parses its settings and hands over to the library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match xene_server::settings::parse(std::env::args_os()) {
        Ok(args) => args,
        Err(e) => return ExitCode::from(e.exit_code()),
    };
    if args.print_config {
        return match xene_server::settings::print_config(std::env::args_os()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => ExitCode::from(e.exit_code()),
        };
    }
    let _telemetry = match xene_server::telemetry::init_with_otlp(
        args.log_format,
        args.otlp_endpoint.as_deref(),
    ) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("xene: {e}");
            return ExitCode::from(2);
        }
    };
    match xene_server::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The binary's edge: the whole chain of causes, on one line.
            eprintln!("xene: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
