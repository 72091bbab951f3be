//! Contexts, as kubectl has them: named servers with their tokens, in
//! `$XDG_CONFIG_HOME/xene/config.toml` (mode 0600, because tokens are inside),
//! and how the server and token of one command are chosen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::args::Global;
use crate::error::{Exit, fail};

/// The server a fresh `xene` listens on.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

pub fn config_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => home()?.join(".config"),
    };
    Ok(base.join("xene").join("config.toml"))
}

/// Where a local `xene` keeps its data (the same default as the server's).
pub fn data_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XENE_DATA_DIR").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("xene")),
        None => home().ok().map(|h| h.join(".local/share/xene")),
    }
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("HOME is not set: cannot find the config file"))
}

impl Config {
    pub fn load() -> anyhow::Result<Self> {
        let path = config_path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| fail(Exit::Usage, format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let path = config_path()?;
        let text = toml::to_string(self)?;
        write_private(&path, &text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Writes a file only its owner can read, in a directory only its owner can
/// enter, replacing the old one at once (never a half-written config).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension("toml.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The server and credential one command uses, and where they came from.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    pub token: Option<String>,
    /// The context in use, if any.
    pub context: Option<String>,
}

/// Chooses the server and token: flags, then `XENE_*` variables, then the
/// context; a context's token only ever goes to that context's server. With
/// nothing else, a server on this machine is asked with the local admin
/// token its data directory holds.
pub fn resolve(global: &Global, config: &Config) -> anyhow::Result<Target> {
    let name = global
        .context
        .clone()
        .or_else(|| config.current_context.clone());
    let context = match &name {
        Some(n) => match config.contexts.get(n) {
            Some(c) => Some(c),
            None if global.context.is_some() => {
                return Err(fail(Exit::Usage, format!("no context named {n:?}")));
            }
            None => None,
        },
        None => None,
    };
    let server = normalize(
        global
            .server
            .as_deref()
            .or(context.map(|c| c.server.as_str()))
            .unwrap_or(DEFAULT_SERVER),
    )?;
    let env_token = std::env::var("XENE_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let token = env_token
        .or_else(|| {
            context
                .filter(|c| same_server(&c.server, &server))
                .and_then(|c| c.token.clone())
        })
        .or_else(|| local_admin_token(&server));
    Ok(Target {
        server,
        token,
        context: name.filter(|n| config.contexts.contains_key(n)),
    })
}

/// `host:port` becomes `http://host:port`; no trailing slash.
pub fn normalize(server: &str) -> anyhow::Result<String> {
    let server = server.trim().trim_end_matches('/');
    let server = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(fail(
            Exit::Usage,
            format!("the server must be an http:// or https:// address, not {server:?}"),
        ));
    }
    Ok(server)
}

fn same_server(a: &str, b: &str) -> bool {
    normalize(a).is_ok_and(|a| a == b)
}

/// The server's host, lowercased, without the port.
pub fn host_of(server: &str) -> String {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.to_ascii_lowercase()
}

pub fn is_loopback(server: &str) -> bool {
    matches!(host_of(server).as_str(), "127.0.0.1" | "localhost" | "::1")
}

/// The token a server on this machine writes for its local `xenectl`; sent
/// only to a loopback address.
fn local_admin_token(server: &str) -> Option<String> {
    if !is_loopback(server) {
        return None;
    }
    let text = std::fs::read_to_string(data_dir()?.join("admin-token")).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_normalized() {
        assert_eq!(
            normalize("127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(normalize("https://x.example").unwrap(), "https://x.example");
        assert!(normalize("ftp://x").is_err());
        assert!(same_server("http://a:1/", "http://a:1"));
    }

    #[test]
    fn hosts_and_loopback() {
        assert_eq!(host_of("http://LOCALHOST:8080/x"), "localhost");
        assert_eq!(host_of("http://[::1]:80"), "::1");
        assert!(is_loopback("http://127.0.0.1:9"));
        assert!(!is_loopback("https://127.0.0.1.example"));
    }

    #[test]
    fn config_round_trips() {
        let mut config = Config {
            current_context: Some("prod".into()),
            ..Default::default()
        };
        config.contexts.insert(
            "prod".into(),
            Context {
                server: "https://x.example".into(),
                token: Some("t".into()),
            },
        );
        let text = toml::to_string(&config).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back.current_context.as_deref(), Some("prod"));
        assert_eq!(back.contexts["prod"].token.as_deref(), Some("t"));
    }
}
