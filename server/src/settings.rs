//! Where the settings come from: flags, then `XENE_*` environment
//! variables, then the TOML config file (`--config`), then the defaults; and
//! `--print-config`, which shows the result with secrets redacted.
//!
//! The file's values become the flags' defaults, so clap applies the same
//! precedence, parsing and validation to every source.

use std::ffi::OsString;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};

use crate::config::Args;

/// Flags that only make sense on the command line.
const NOT_IN_FILE: [&str; 4] = ["config", "print_config", "help", "version"];

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Flags(#[from] clap::Error),
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl SettingsError {
    /// Prints the error (clap's own way for flag errors: usage, `--help`,
    /// `--version`) and returns the exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Flags(e) => {
                let _ = e.print();
                e.exit_code() as u8
            }
            other => {
                eprintln!("xene: {other}");
                2
            }
        }
    }
}

/// Parses `argv` (the program name first) with the environment and the
/// config file it names.
pub fn parse(argv: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Args, SettingsError> {
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut command = Args::command();
    if let Some(path) = config_path(&argv) {
        let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
            path: path.clone(),
            source,
        })?;
        command = apply_file(command, &path, &text)?;
    }
    command = legacy_env(command).0;
    let matches = command.try_get_matches_from(argv)?;
    Ok(Args::from_arg_matches(&matches)?)
}

/// `XENE_RUN_LEASE`, the old name of `XENE_TASK_LEASE`, as the default
/// of --task-lease when the new name is not set: over the config file,
/// under flags, as any environment variable.
/// Returns whether it did.
fn legacy_env(command: clap::Command) -> (clap::Command, bool) {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    match set(crate::config::LEGACY_LEASE_ENV) {
        Some(value) if set("XENE_TASK_LEASE").is_none() => {
            let value: &'static str =
                Box::leak(value.to_string_lossy().into_owned().into_boxed_str());
            let command = command.mut_arg("task_lease", |arg| arg.default_value(value));
            (command, true)
        }
        _ => (command, false),
    }
}

/// The flag a config file's key names: its long name or an alias of it
/// (a renamed flag's old name keeps working in files too).
fn flag_named<'a>(command: &'a clap::Command, long: &str) -> Option<&'a clap::Arg> {
    command.get_arguments().find(|a| {
        a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|all| all.contains(&long))
    })
}

/// `--config FILE`, `--config=FILE`, else `XENE_CONFIG`.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_str()?;
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("XENE_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Makes each setting in the file the default of its flag.
fn apply_file(
    mut command: clap::Command,
    path: &Path,
    text: &str,
) -> Result<clap::Command, SettingsError> {
    let invalid = |message: String| SettingsError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| invalid(e.to_string().trim_end().to_string()))?;
    for (key, value) in table {
        let long = key.replace('_', "-");
        let Some(id) = flag_named(&command, &long)
            .map(|a| a.get_id().to_string())
            .filter(|id| !NOT_IN_FILE.contains(&id.as_str()))
        else {
            let known: Vec<String> = settable(&command).map(|(long, _)| long).collect();
            return Err(invalid(format!(
                "unknown setting {key:?}; the settings are: {}",
                known.join(", ")
            )));
        };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                return Err(invalid(format!(
                    "{key}: expected a string, number or boolean, got {}",
                    other.type_str()
                )));
            }
        };
        // clap keeps defaults as `'static` strings; a handful of them,
        // once per process, is worth no more machinery.
        let value: &'static str = Box::leak(value.into_boxed_str());
        command = command.mut_arg(id, |arg| arg.default_value(value));
    }
    Ok(command)
}

/// The flags a config file may set: (long name, id).
fn settable(command: &clap::Command) -> impl Iterator<Item = (String, String)> + '_ {
    command.get_arguments().filter_map(|a| {
        let id = a.get_id().as_str();
        let long = a.get_long()?;
        (!NOT_IN_FILE.contains(&id)).then(|| (long.to_string(), id.to_string()))
    })
}

/// The effective settings as a config file: every flag with its value,
/// secrets (flags whose environment values `--help` hides) redacted.
pub fn print_config(
    argv: impl IntoIterator<Item = impl Into<OsString>>,
) -> Result<String, SettingsError> {
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut command = Args::command();
    let mut from_file = Vec::new();
    if let Some(path) = config_path(&argv) {
        let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
            path: path.clone(),
            source,
        })?;
        command = apply_file(command, &path, &text)?;
        if let Ok(table) = text.parse::<toml::Table>() {
            from_file = table
                .keys()
                .filter_map(|k| flag_named(&command, &k.replace('_', "-"))?.get_long())
                .map(str::to_string)
                .collect();
        }
    }
    let (command, legacy) = legacy_env(command);
    let matches = command.clone().try_get_matches_from(argv)?;
    let mut out = String::from("# The effective settings of xene (secrets redacted).\n");
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if NOT_IN_FILE.contains(&id) {
            continue;
        }
        let Some(raw) = matches.get_raw(id) else {
            let _ = writeln!(out, "# {long} is not set");
            continue;
        };
        let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        // Booleans as parsed (`yes` from the environment is `true`).
        let value = match matches.try_get_one::<bool>(id) {
            Ok(Some(b)) => b.to_string(),
            _ => values.join(","),
        };
        let value = if arg.is_hide_env_values_set() {
            redact(&value)
        } else {
            value
        };
        let source = match matches.value_source(id) {
            Some(clap::parser::ValueSource::CommandLine) => "flag",
            Some(clap::parser::ValueSource::EnvVariable) => "environment",
            Some(clap::parser::ValueSource::DefaultValue) if legacy && id == "task_lease" => {
                "environment"
            }
            Some(clap::parser::ValueSource::DefaultValue)
                if from_file.iter().any(|k| k == long) =>
            {
                "config file"
            }
            Some(clap::parser::ValueSource::DefaultValue) => "default",
            _ => "unknown",
        };
        let _ = writeln!(out, "{long} = {} # {source}", toml_value(&value));
    }
    Ok(out)
}

/// A secret's redacted form. A URL keeps what is not secret (scheme, user,
/// host, path), so an operator can still see where it points.
fn redact(value: &str) -> String {
    if let Some((scheme, rest)) = value.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{user}:REDACTED@{host}")
            }
            None => authority.to_string(),
        };
        let path = path.split('?').next().unwrap_or("");
        return format!("{scheme}://{host}/{path}");
    }
    "REDACTED".into()
}

/// `value` as a TOML string, or as is when it is a boolean or an integer.
fn toml_value(value: &str) -> String {
    if value == "true" || value == "false" || value.parse::<i64>().is_ok() {
        value.to_string()
    } else {
        toml::Value::String(value.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_where_they_point_but_not_their_password() {
        assert_eq!(
            redact("postgres://xene:s3cret@db.internal:5432/xene?sslmode=require"),
            "postgres://xene:REDACTED@db.internal:5432/xene"
        );
        assert_eq!(redact("hunter2"), "REDACTED");
    }

    #[test]
    fn file_settings_are_defaults_that_flags_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("xene.toml");
        std::fs::write(
            &file,
            "addr = \"127.0.0.1:9999\"\nlocal-agent-capacity = 7\nno_local_agent = true\nlog-format = \"json\"\n",
        )
        .unwrap();
        let args = parse([
            "xene",
            "--config",
            file.to_str().unwrap(),
            "--addr",
            "127.0.0.1:1234",
        ])
        .unwrap();
        assert_eq!(args.addr.port(), 1234);
        assert_eq!(args.local_agent_capacity, 7);
        assert!(args.no_local_agent);
        assert_eq!(args.log_format, crate::telemetry::LogFormat::Json);
    }

    #[test]
    fn unknown_and_malformed_file_settings_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("xene.toml");
        std::fs::write(&file, "adress = \"x\"\n").unwrap();
        let e = parse(["xene", "--config", file.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("unknown setting \"adress\""), "{e}");
        std::fs::write(&file, "local-agent-capacity = 0\n").unwrap();
        assert!(parse(["xene", "--config", file.to_str().unwrap()]).is_err());
        std::fs::write(&file, "addr = [1]\n").unwrap();
        let e = parse(["xene", "--config", file.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("expected a string"), "{e}");
    }

    #[test]
    fn printed_config_redacts_secrets_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let printed = print_config([
            "xene",
            "--database-url",
            "postgres://xene:s3cret@localhost/xene",
            "--local-agent-shell",
            "no",
        ])
        .unwrap();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains("database-url = \"postgres://xene:REDACTED@localhost/xene\" # flag"),
            "{printed}"
        );
        assert!(
            printed.contains("local-agent-shell = false # flag"),
            "{printed}"
        );
        assert!(printed.contains("addr = \"127.0.0.1:8080\""), "{printed}");
        // What it prints is a config file xene reads (without the redacted secret).
        let file = dir.path().join("printed.toml");
        let without_secret: String = printed
            .lines()
            .filter(|l| !l.starts_with("database-url"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&file, without_secret).unwrap();
        let args = parse(["xene", "--config", file.to_str().unwrap()]).unwrap();
        assert_eq!(args.local_agent_shell, Some(false));
    }

    #[test]
    fn shell_tasks_are_opt_in_beyond_loopback() {
        assert!(parse(["xene"]).unwrap().local_agent_shell());
        assert!(
            !parse(["xene", "--addr", "0.0.0.0:8080"])
                .unwrap()
                .local_agent_shell()
        );
        let opted = parse([
            "xene",
            "--addr",
            "0.0.0.0:8080",
            "--local-agent-shell",
            "yes",
        ]);
        assert!(opted.unwrap().local_agent_shell());
        // Published under another name (a reverse proxy), or signing people
        // in through an OpenID provider: more than one person.
        for flags in [
            &["--public-url", "https://xene.example.com"][..],
            &["--public-url", "http://192.0.2.2:8080"],
            &["--oidc-client-id", "client"],
        ] {
            let args = parse(["xene"].iter().chain(flags)).unwrap();
            assert!(!args.local_agent_shell(), "{flags:?}");
            let asked = ["--local-agent-shell", "yes"];
            let args = parse(["xene"].iter().chain(flags).chain(&asked)).unwrap();
            assert!(args.local_agent_shell(), "{flags:?}");
        }
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:8080",
        ] {
            let args = parse(["xene", "--public-url", url]).unwrap();
            assert!(args.local_agent_shell(), "{url}");
        }
    }

    #[test]
    fn boolean_settings_take_yes_no_one_zero() {
        for (text, value) in [
            ("yes", true),
            ("1", true),
            ("true", true),
            ("no", false),
            ("0", false),
            ("false", false),
        ] {
            let args = parse(["xene", "--local-agent-shell", text]).unwrap();
            assert_eq!(args.local_agent_shell, Some(value), "{text}");
        }
        assert!(parse(["xene", "--local-agent-shell", "maybe"]).is_err());
    }
}
