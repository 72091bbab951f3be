//! Logging set-up, shared by the binary and tests that want server logs.

/// Logs to stderr, filtered by `RUST_LOG` (default: info for Xene, warn for the rest).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,xene_server=info,xene=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
