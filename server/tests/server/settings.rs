//! The `xene` binary's settings as people meet them: `--help`, the flags
//! table of docs/server.md, `--print-config`, environment values and the config file.

use std::process::Command;

fn xene() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xene"));
    // Nothing from the test runner's environment leaks into these checks.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("XENE_") {
            command.env_remove(name);
        }
    }
    command
}

fn output(command: &mut Command) -> (i32, String, String) {
    let output = command.output().expect("xene runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The long flags `xene --help` lists, in order.
fn help_flags() -> Vec<String> {
    let (code, help, _) = output(xene().arg("--help"));
    assert_eq!(code, 0);
    help.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let flag = line
                .split([',', ' ', '=', '<'])
                .find(|word| word.starts_with("--"))?;
            (line.starts_with("--") || line.starts_with('-')).then(|| flag.to_string())
        })
        .filter(|flag| flag != "--help" && flag != "--version")
        .collect()
}

/// The flags in docs/server.md's table of server flags, in order.
fn docs_flags() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/server.md"))
        .expect("docs/server.md");
    let table = doc
        .split("`xene --help` lists its flags")
        .nth(1)
        .expect("docs/server.md introduces the flags table");
    table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| line.split('|').nth(1))
        .flat_map(|cell| {
            cell.split('`')
                .filter(|part| part.starts_with("--"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_docs_flags_table_equals_xene_help() {
    let help = help_flags();
    assert!(
        help.len() > 10,
        "parsed too few flags from --help: {help:?}"
    );
    assert_eq!(
        docs_flags(),
        help,
        "docs/server.md's flags table and `xene --help` differ: update the table"
    );
}

#[test]
fn help_never_prints_a_secret_from_the_environment() {
    let (code, help, _) = output(
        xene()
            .arg("--help")
            .env("XENE_DATABASE_URL", "postgres://xene:hunter2@db/xene"),
    );
    assert_eq!(code, 0);
    assert!(help.contains("XENE_DATABASE_URL"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
}

#[test]
fn print_config_shows_the_effective_settings_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("xene.toml");
    std::fs::write(
        &file,
        "addr = \"127.0.0.1:9000\"\nrun-lease = \"30s\"\nlocal-agent-capacity = 2\n",
    )
    .unwrap();
    let (code, printed, stderr) = output(
        xene()
            .args(["--print-config", "--local-agent-capacity", "3"])
            .env("XENE_CONFIG", &file)
            .env("XENE_DATABASE_URL", "postgres://xene:hunter2@db/xene")
            .env("XENE_NO_LOCAL_AGENT", "yes")
            .env("XENE_LOCAL_AGENT_SHELL", "0"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!printed.contains("hunter2"), "{printed}");
    for line in [
        "addr = \"127.0.0.1:9000\" # config file",
        "run-lease = \"30s\" # config file",
        "pickup-timeout = \"5m\" # default",
        "local-agent-capacity = 3 # flag",
        "database-url = \"postgres://xene:REDACTED@db/xene\" # environment",
        "no-local-agent = true # environment",
        "local-agent-shell = false # environment",
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "missing {line:?} in\n{printed}"
        );
    }
}

#[test]
fn bad_settings_are_clear_errors() {
    let (code, _, stderr) = output(xene().env("XENE_NO_LOCAL_AGENT", "maybe"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("XENE_NO_LOCAL_AGENT") || stderr.contains("no-local-agent"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("xene.toml");
    std::fs::write(&file, "adress = \"0.0.0.0:80\"\n").unwrap();
    let (code, _, stderr) = output(xene().arg("--config").arg(&file));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown setting \"adress\""), "{stderr}");

    let (code, _, stderr) = output(xene().args(["--config", "/nonexistent/xene.toml"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot read the config file /nonexistent/xene.toml"),
        "{stderr}"
    );
}
