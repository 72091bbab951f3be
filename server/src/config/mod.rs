//! Command-line flags, each with an `XENE_*` environment fallback, and the
//! settings resolved from them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

pub mod access;
pub mod artifacts;

/// The Xene server: web UI, REST API, agent gateway and controllers.
///
/// With no flags it runs on the embedded default: a SQLite database in the
/// data directory, listening on 127.0.0.1:8080.
#[derive(Debug, Clone, Parser)]
#[command(name = "xene", version, about, long_about)]
pub struct Args {
    /// Address to listen on. Loopback by default: expose Xene deliberately.
    #[arg(long, env = "XENE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Directory for Xene's state (the embedded SQLite database among it).
    /// Default: $XDG_DATA_HOME/xene, else ~/.local/share/xene.
    #[arg(long, env = "XENE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Database URL: `sqlite://PATH` or `postgres://USER@HOST/DB`.
    /// Default: the SQLite file `xene.db` in the data directory.
    // It may hold a password: `--help` must not print it from the environment.
    #[arg(long, env = "XENE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory holding the web UI bundle (`pkg/bundle-name` naming the
    /// folder of `xene.js`, `xene_bg.wasm`, `xene.css` and the pieces pages
    /// load on demand). Default: `site` beside the binary, then `../site`
    /// (where `cargo xtask site` puts it for `target/*/xene`), then
    /// `../share/xene/site`.
    #[arg(long, env = "XENE_SITE_DIR")]
    pub site_dir: Option<PathBuf>,

    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "XENE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "XENE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: every client must present a certificate signed by this CA (PEM).
    #[arg(long, env = "XENE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// The URL agents and people use to reach this server, for install
    /// commands (e.g. https://xene.example.com). Default: http://ADDR.
    #[arg(long, env = "XENE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The `xene-agent` binary that `/install.sh` hands out.
    /// Default: `xene-agent` beside this binary.
    #[arg(long, env = "XENE_AGENT_BINARY")]
    pub agent_binary: Option<PathBuf>,

    /// How long a task attempt stays with an agent that stopped sending
    /// heartbeats before it is marked unknown and retried elsewhere under
    /// the task's retry policy (like 15s, 1m). Formerly --run-lease
    /// (XENE_RUN_LEASE), which still works.
    #[arg(
        long,
        env = "XENE_TASK_LEASE",
        alias = "run-lease",
        default_value = "15s",
        value_parser = parse_lease
    )]
    pub task_lease: std::time::Duration,

    /// A queued run nobody picks up within this long is flagged as stuck
    /// (in its scheduler reason, `/api/v1/stats` and `/metrics`).
    #[arg(long, env = "XENE_PICKUP_TIMEOUT", default_value = "5m", value_parser = parse_pickup_timeout)]
    pub pickup_timeout: std::time::Duration,

    /// Do not run the built-in local agent: runs then wait for remote agents.
    #[arg(long, env = "XENE_NO_LOCAL_AGENT", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_local_agent: bool,

    /// Most task attempts the built-in local agent executes at once: a
    /// number from 1 to 1000, or `cores` for the cores this machine offers
    /// this process.
    #[arg(long, env = "XENE_LOCAL_AGENT_CAPACITY", default_value = "cores", value_parser = parse_capacity)]
    pub local_agent_capacity: i64,

    /// The built-in agent's id (unique per server when several share a database).
    /// Default: `builtin@HOSTNAME`.
    #[arg(long, env = "XENE_LOCAL_AGENT_ID")]
    pub local_agent_id: Option<String>,

    /// Let the built-in agent run tasks without an `image` as plain processes
    /// on this machine (the shell runtime). On, every editor can run any
    /// program on the server's machine: as the server's user, or as `nobody`
    /// when the server runs as root. Each step is sandboxed: a clean
    /// environment, Landlock lets it read system directories (/usr, /etc,
    /// /opt, ...) and write only its own workspace, its TMPDIR, /dev/shm
    /// and --local-agent-shell-writable (not /tmp, not the server user's
    /// home, not the data directory), it cannot see or signal the server,
    /// open a Unix socket (the user's D-Bus, systemd, ssh-agent, docker) or
    /// hold a capability, and it is killed with the server. xene refuses to
    /// start when that sandbox cannot be set up, when a server secret file
    /// lies where steps may read it, or when a secret was given as a flag
    /// (steps can read the command line). Default: on only for the
    /// one-person setup (listening on loopback, no other --public-url, no
    /// OpenID provider, no --trusted-proxies); off otherwise.
    #[arg(long, env = "XENE_LOCAL_AGENT_SHELL", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub local_agent_shell: Option<bool>,

    /// Directories (comma-separated) that shell steps of the built-in agent
    /// may write besides their workspace, like a shared cache. The steps'
    /// user (`nobody` when the server is root) must be allowed to write them.
    #[arg(
        long,
        env = "XENE_LOCAL_AGENT_SHELL_WRITABLE",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub local_agent_shell_writable: Vec<PathBuf>,

    /// The binary that supervises each built-in shell step (this one by
    /// default; tests running the server in-process name `xene`).
    #[arg(long, env = "XENE_LOCAL_AGENT_SUPERVISOR", hide = true)]
    pub local_agent_supervisor: Option<PathBuf>,

    /// Flags given on the command line that hold a secret (see
    /// [`secret_flags`]), each with what to use instead: set by the binary.
    #[arg(skip)]
    pub secrets_in_argv: Vec<&'static str>,

    /// The built-in agent's Docker task containers: memory, processes, CPUs.
    #[command(flatten)]
    pub docker: xene_agent::runtime::docker::ContainerLimitArgs,

    /// The most log each step keeps (like 32MiB, 500KiB): past it, the first
    /// half stays and only the latest half rolls, with the cut marked.
    #[arg(long, env = "XENE_LOG_CAP_PER_STEP", default_value = "32MiB", value_parser = parse_bytes)]
    pub log_cap_per_step: i64,

    /// Logs and events of runs that finished longer ago than this are
    /// deleted (the runs themselves stay), and so are revoked agents silent
    /// that long and workflow versions that old that no run was made from
    /// and that are not current; 0 keeps them forever. Expired join tokens
    /// go a day after they expire.
    #[arg(long, env = "XENE_LOG_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub log_retention: std::time::Duration,

    /// How logs are written to stderr: `text`, or `json` (one object per
    /// line, with the spans it happened in) for log collectors. Filter them
    /// with RUST_LOG, like `RUST_LOG=info,xene::http=debug`.
    #[arg(long, env = "XENE_LOG_FORMAT", default_value_t = crate::telemetry::LogFormat::Text)]
    pub log_format: crate::telemetry::LogFormat,

    /// Export traces to this OpenTelemetry collector, as OTLP over HTTP
    /// (like http://collector:4318). Off by default.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// Put `/metrics` behind a token: the first line of this file, which
    /// scrapers send as `Authorization: Bearer TOKEN` (Prometheus:
    /// `authorization: {credentials_file: ...}`). Open by default: the
    /// metrics name every workflow and pipeline with their run counts.
    #[arg(long, env = "XENE_METRICS_TOKEN_FILE", value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,

    /// The master key file for secrets at rest: one base64 key of 32 bytes
    /// per line (make one with `head -c 32 /dev/urandom | base64`); the
    /// first encrypts, the others only decrypt, for rotation. Default:
    /// `secrets.key` in the data directory, made at the first start.
    #[arg(long, env = "XENE_SECRETS_KEY_FILE", value_name = "FILE")]
    pub secrets_key_file: Option<PathBuf>,

    /// The master key(s) for secrets, as in --secrets-key-file (keys
    /// separated by commas). Prefer the environment variable or the file:
    /// a flag's value shows in the process list.
    #[arg(
        long,
        env = "XENE_SECRETS_KEY",
        hide_env_values = true,
        conflicts_with = "secrets_key_file"
    )]
    pub secrets_key: Option<String>,

    /// Read settings from this TOML file: one `flag-name = value` per flag
    /// (like `addr = "0.0.0.0:8080"`). Flags and environment variables win
    /// over the file.
    #[arg(long, env = "XENE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective settings (from flags, environment, config file
    /// and defaults) as a config file, secrets redacted, and exit.
    #[arg(long)]
    pub print_config: bool,

    #[command(flatten)]
    pub access: access::AccessArgs,

    #[command(flatten)]
    pub listen: crate::listen::ListenArgs,

    #[command(flatten)]
    pub artifacts: artifacts::ArtifactArgs,
}

impl Args {
    /// Flags for tests and embedding: loopback on a port the OS picks.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: Some(data_dir),
            database_url: None,
            site_dir: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            public_url: None,
            agent_binary: None,
            task_lease: std::time::Duration::from_secs(15),
            pickup_timeout: std::time::Duration::from_secs(300),
            no_local_agent: false,
            // Fixed, not the cores: tests behave the same on every machine.
            local_agent_capacity: 4,
            local_agent_id: None,
            local_agent_shell: None,
            local_agent_shell_writable: Vec::new(),
            local_agent_supervisor: None,
            secrets_in_argv: Vec::new(),
            docker: Default::default(),
            log_cap_per_step: crate::storage::logs::DEFAULT_CAP_BYTES,
            log_retention: std::time::Duration::from_secs(30 * 24 * 3600),
            log_format: crate::telemetry::LogFormat::Text,
            otlp_endpoint: None,
            metrics_token_file: None,
            secrets_key_file: None,
            secrets_key: None,
            config: None,
            print_config: false,
            access: access::AccessArgs::default(),
            listen: crate::listen::ListenArgs::default(),
            artifacts: artifacts::ArtifactArgs::default(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        // The XDG spec: an empty or relative XDG_DATA_HOME is ignored (else
        // `XDG_DATA_HOME=` would put the keys in ./xene, under the working
        // directory).
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| PathBuf::from(h).join(".local/share"))
            })
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("xene")
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir().join("xene.db").display()
            ),
        }
    }

    /// Where the master keys of secrets come from, and whether this is the
    /// default file (which the first start makes).
    pub fn secrets_key_source(&self) -> (crate::vault::KeySource, bool) {
        use crate::vault::KeySource;
        match (&self.secrets_key, &self.secrets_key_file) {
            (Some(keys), _) => (KeySource::Env(keys.clone()), false),
            (None, Some(file)) => (KeySource::File(file.clone()), false),
            (None, None) => (
                KeySource::File(self.data_dir().join(crate::vault::DEFAULT_KEY_FILE)),
                true,
            ),
        }
    }

    /// Whether the built-in agent may run shell tasks (see the flag).
    pub fn local_agent_shell(&self) -> bool {
        self.local_agent_shell.unwrap_or_else(|| self.one_person())
    }

    /// Only this machine's user reaches the server: it listens on loopback,
    /// is not published under another name (a reverse proxy's
    /// --public-url) and signs nobody in through an OpenID provider.
    fn one_person(&self) -> bool {
        self.addr.ip().to_canonical().is_loopback()
            && self.public_url.as_deref().is_none_or(is_loopback_url)
            && self.access.oidc_client_id.is_none()
            // Behind a reverse proxy, everyone comes from loopback.
            && self.listen.trusted_proxies.is_empty()
    }

    pub fn agent_binary(&self) -> Option<PathBuf> {
        self.agent_binary
            .clone()
            .or_else(|| Some(std::env::current_exe().ok()?.parent()?.join("xene-agent")))
    }

    /// Limits of each built-in agent task's container.
    pub fn container_limits(&self) -> xene_agent::runtime::docker::ContainerLimits {
        self.docker.limits()
    }

    pub fn local_agent_id(&self) -> String {
        self.local_agent_id
            .clone()
            .unwrap_or_else(|| format!("builtin@{}", hostname()))
    }

    /// The first candidate site directory that holds a bundle, if any.
    pub fn site_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.site_dir {
            return Some(dir.clone());
        }
        let exe_dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
        [
            exe_dir.join("site"),
            exe_dir.join("../site"),
            exe_dir.join("../share/xene/site"),
        ]
        .into_iter()
        .find(|dir| {
            dir.join("pkg")
                .join(format!("{}.js", xene_app::BUNDLE_NAME))
                .is_file()
        })
    }
}

/// The flags of `argv` (a command line `parse` accepted) that hold a
/// secret, each with what to use instead: anyone on the machine reads a
/// command line in /proc. A database URL counts only with a password.
pub fn secret_flags(
    argv: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
) -> Vec<&'static str> {
    use clap::CommandFactory;
    use clap::parser::ValueSource;
    // Settings from a config file are defaults here, which is right: they
    // are not on the command line.
    let Ok(matches) = Args::command().ignore_errors(true).try_get_matches_from(
        argv.into_iter()
            .map(Into::into)
            .collect::<Vec<std::ffi::OsString>>(),
    ) else {
        return Vec::new();
    };
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let mut found = Vec::new();
    if given("database_url")
        && matches
            .get_one::<String>("database_url")
            .is_some_and(|url| has_password(url))
    {
        found.push("--database-url holds a password (use XENE_DATABASE_URL)");
    }
    if given("secrets_key") {
        found.push("--secrets-key (use XENE_SECRETS_KEY or --secrets-key-file)");
    }
    if given("oidc_client_secret") {
        found.push(
            "--oidc-client-secret (use XENE_OIDC_CLIENT_SECRET or --oidc-client-secret-file)",
        );
    }
    if given("s3_secret_access_key") {
        found.push("--s3-secret-access-key (use XENE_S3_SECRET_ACCESS_KEY)");
    }
    found
}

/// Whether a database URL carries a password (`user:pw@`, `password=`).
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.split('/').next().unwrap_or("");
    let userinfo = authority.rsplit_once('@').map_or("", |(user, _)| user);
    userinfo.contains(':')
        || query
            .split('&')
            .any(|pair| pair.to_ascii_lowercase().starts_with("password="))
}

/// Whether a URL's host is this machine (`localhost` or a loopback address).
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let lease = xene_core::duration::parse(text).map_err(|e| e.to_string())?;
    if lease < std::time::Duration::from_secs(1) {
        return Err("a task lease of less than 1s would expire between heartbeats".into());
    }
    Ok(lease)
}

/// The environment variable --task-lease had as --run-lease: still read
/// when XENE_TASK_LEASE is not set.
pub const LEGACY_LEASE_ENV: &str = "XENE_RUN_LEASE";

/// `cores` (what this process may use), or a number from 1 to 1000.
fn parse_capacity(text: &str) -> Result<i64, String> {
    if text.trim() == "cores" {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        return Ok(cores.clamp(1, 1000) as i64);
    }
    match text.trim().parse::<i64>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a capacity: a number from 1 to 1000, or `cores`"
        )),
    }
}

fn parse_pickup_timeout(text: &str) -> Result<std::time::Duration, String> {
    xene_core::duration::parse(text).map_err(|e| e.to_string())
}

fn parse_retention(text: &str) -> Result<std::time::Duration, String> {
    if text.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    xene_core::duration::parse(text).map_err(|e| e.to_string())
}

/// Sizes as people write them: `512KiB`, `32MiB`, `1GiB`, or bytes.
fn parse_bytes(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("bad size {text:?}: expected like 512KiB, 32MiB or 1GiB"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}: use KiB, MiB or GiB")),
    };
    let bytes = number
        .checked_mul(scale)
        .ok_or_else(|| format!("size {text:?} is too large"))?;
    if bytes < 2 * 1024 * 1024 {
        return Err("the log cap is at least 2MiB (two chunks)".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_a_number_or_the_cores() {
        let cores = std::thread::available_parallelism().unwrap().get() as i64;
        assert_eq!(parse_capacity("cores"), Ok(cores.min(1000)));
        assert_eq!(parse_capacity("7"), Ok(7));
        for bad in ["0", "1001", "many", ""] {
            assert!(parse_capacity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_on_the_command_line_are_named() {
        let flags =
            |argv: &[&str]| secret_flags(std::iter::once("xene").chain(argv.iter().copied()));
        assert!(flags(&[]).is_empty());
        assert!(flags(&["--database-url", "postgres://xene@db/xene"]).is_empty());
        for url in [
            "postgres://xene:pw@db/xene",
            "postgres://xene@db/xene?sslmode=require&password=pw",
        ] {
            assert_eq!(flags(&["--database-url", url]).len(), 1, "{url}");
        }
        let both = flags(&["--secrets-key=k", "--oidc-client-secret", "s"]);
        assert!(
            both[0].starts_with("--secrets-key") && both[1].starts_with("--oidc-client-secret")
        );
    }
}
