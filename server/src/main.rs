//! `xene`: the Xene server. Parses its settings and hands over to the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    // A built-in shell step's supervisor: before any thread starts.
    if let Some(code) = xene_agent::runtime::supervisor::run_if_asked() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // Processes of the same user (built-in steps among them, when the
    // server is not root) can no longer read /proc/<server>/environ, fd or
    // mem, nor attach to it.
    if let Err(e) = xene_agent::runtime::supervisor::make_undumpable() {
        eprintln!("xene: cannot make this process non-dumpable: {e}");
        return ExitCode::FAILURE;
    }
    serve()
}

#[tokio::main]
async fn serve() -> ExitCode {
    let mut args = match xene_server::settings::parse(std::env::args_os()) {
        Ok(args) => args,
        Err(e) => return ExitCode::from(e.exit_code()),
    };
    // The built-in shell refuses to start with these (steps read
    // /proc/<server>/cmdline).
    args.secrets_in_argv = xene_server::config::secret_flags(std::env::args_os());
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
