//! `xene-agent connect`: flags to a `ConnectConfig`, signals to a clean
//! shutdown, errors to exit codes.

use xene_agent::connect::transport::TlsOptions;
use xene_agent::connect::{self, ConnectConfig, ConnectError};
use xene_agent::runtime::docker::DockerConfig;

use super::{ConnectArgs, EXIT_CANCELLED, EXIT_FAILURE, EXIT_INVALID, EXIT_REVOKED, EXIT_SUCCESS};
use tokio_util::sync::CancellationToken;

pub async fn run(args: ConnectArgs) -> anyhow::Result<u8> {
    if let Some(addr) = args.metrics_addr {
        let render = std::sync::Arc::new(|| xene_agent::metrics::METRICS.render());
        match xene_agent::telemetry::serve_metrics(addr, render).await {
            Ok(bound) => tracing::info!(addr = %bound, "serving metrics"),
            Err(e) => {
                eprintln!("error: --metrics-addr {addr}: {e}");
                return Ok(EXIT_INVALID);
            }
        }
    }
    let config = ConnectConfig {
        server: args.server,
        join_token: args.join_token,
        name: args.name.unwrap_or_else(connect::hostname),
        labels: args.labels.into_iter().collect(),
        capacity: args.capacity,
        allow_shell: args.allow_shell,
        state_dir: args.state_dir.unwrap_or_else(connect::default_state_dir),
        tls: TlsOptions {
            ca_file: args.ca_file,
            server_cert_sha256: args.server_cert_sha256,
            client_cert: args.client_cert,
            client_key: args.client_key,
        },
        allow_insecure: args.allow_insecure,
        work_dir: args.work_dir,
        docker: DockerConfig {
            limits: args.docker.limits(),
            ..DockerConfig::default()
        },
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_on_signals(shutdown.clone()));
    match connect::run(config, shutdown).await {
        Ok(()) => Ok(EXIT_SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(match e {
                _ if e.is_revoked() => EXIT_REVOKED,
                ConnectError::State(_) => EXIT_FAILURE,
                _ => EXIT_INVALID,
            })
        }
    }
}

/// The first Ctrl-C (or SIGTERM) stops the task attempts (their ends are
/// not reported: the server re-places or retries them) and ends once the
/// events already produced are acknowledged; a second Ctrl-C quits at once.
async fn shutdown_on_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for signals; the agent cannot shut down cleanly");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("shutting down: cancelling the runs (Ctrl-C again to quit at once)");
    shutdown.cancel();
    interrupt.recv().await;
    std::process::exit(i32::from(EXIT_CANCELLED));
}
