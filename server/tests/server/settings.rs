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

/// One option of `xene --help`, as its long help describes it.
struct Flag {
    /// `--addr`, with its value's name when it takes one: `--addr ADDR`.
    usage: String,
    env: Option<String>,
    /// True when clap hides the variable's value (`hide_env_values`): a secret.
    env_hidden: bool,
    default: Option<String>,
    /// The help's paragraphs, each on one line.
    text: Vec<String>,
    /// `name` or `name: what it means`, in the help's order.
    values: Vec<String>,
}

/// The options of `xene --help` (its long form), in order, without
/// `--help` and `--version`.
fn help_flags() -> Vec<Flag> {
    let (code, help, _) = output(xene().arg("--help"));
    assert_eq!(code, 0);
    let mut flags: Vec<Flag> = Vec::new();
    let mut paragraph = String::new();
    let mut in_values = false;
    let options = help
        .split("\nOptions:\n")
        .nth(1)
        .expect("--help has Options");
    for line in options.lines().chain([""]) {
        let text = line.trim();
        let indent = line.len() - line.trim_start().len();
        let Some(flag) = flags.last_mut().filter(|_| indent >= 8 || text.is_empty()) else {
            // An option's first line: `  -h, --help` or `      --addr <ADDR>`.
            let mut words = text.split([',', ' ']).filter(|w| !w.is_empty());
            let name = words.find(|w| w.starts_with("--")).expect("an option line");
            let value = words.next().map(|v| v.trim_matches(['<', '>']));
            flags.push(Flag {
                usage: [Some(name), value]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" "),
                env: None,
                env_hidden: false,
                default: None,
                text: Vec::new(),
                values: Vec::new(),
            });
            in_values = false;
            continue;
        };
        if let Some(env) = text
            .strip_prefix("[env: ")
            .and_then(|e| e.strip_suffix(']'))
        {
            flag.env_hidden = !env.contains('=');
            flag.env = Some(env.split('=').next().unwrap().to_string());
        } else if let Some(default) = text
            .strip_prefix("[default: ")
            .and_then(|d| d.strip_suffix(']'))
        {
            flag.default = Some(default.to_string());
        } else if let Some(values) = text
            .strip_prefix("[possible values: ")
            .and_then(|v| v.strip_suffix(']'))
        {
            flag.values = values.split(", ").map(str::to_string).collect();
        } else if text == "Possible values:" {
            in_values = true;
        } else if let Some(value) = text.strip_prefix("- ").filter(|_| in_values) {
            flag.values.push(value.to_string());
        } else if text.is_empty() {
            if !paragraph.is_empty() {
                flag.text.push(std::mem::take(&mut paragraph));
            }
        } else {
            if !paragraph.is_empty() {
                paragraph.push(' ');
            }
            paragraph.push_str(text);
        }
    }
    flags.retain(|f| !["--help", "--version"].contains(&f.usage.as_str()));
    flags
}

/// The Markdown table of server flags that docs/server.md carries.
fn flags_table(flags: &[Flag]) -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let code = |text: &str| format!("`{}`", cell(text));
    let mut table =
        String::from("| flag | environment | default | what |\n| --- | --- | --- | --- |\n");
    for flag in flags {
        let env = match (&flag.env, flag.env_hidden) {
            (Some(env), false) => code(env),
            (Some(env), true) => format!("{} (value never shown)", code(env)),
            (None, _) => String::new(),
        };
        let mut what = flag.text.join(" ");
        if !flag.values.is_empty() {
            let values: Vec<String> = flag
                .values
                .iter()
                .map(|v| match v.split_once(": ") {
                    Some((name, meaning)) => format!("`{name}`: {meaning}"),
                    None => format!("`{v}`"),
                })
                .collect();
            if !what.is_empty() && !what.ends_with('.') {
                what.push('.');
            }
            let separator = if values.iter().any(|v| v.contains(": ")) {
                "; "
            } else {
                ", "
            };
            what.push_str(&format!(" Values: {}.", values.join(separator)));
        }
        table.push_str(&format!(
            "| {} | {env} | {} | {} |\n",
            code(&flag.usage),
            flag.default.as_deref().map(code).unwrap_or_default(),
            cell(&what),
        ));
    }
    table
}

const FLAGS_BEGIN: &str =
    "<!-- begin: generated from `xene --help` by `cargo xtask codegen`; do not edit -->\n";
const FLAGS_END: &str = "<!-- end: generated from `xene --help` -->";

/// docs/server.md's flags table is `xene --help` as a table. With
/// `UPDATE_DOCS=1` (`cargo xtask codegen`) the test writes the table
/// instead of comparing: rust-analyzer's "sourcegen" habit, so the
/// document cannot drift from the binary.
#[test]
fn the_docs_flags_table_equals_xene_help() {
    let flags = help_flags();
    assert!(
        flags.len() > 10,
        "parsed too few flags from --help: {:?}",
        flags.iter().map(|f| &f.usage).collect::<Vec<_>>()
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/server.md");
    let doc = std::fs::read_to_string(path).expect("docs/server.md");
    let (before, rest) = doc
        .split_once(FLAGS_BEGIN)
        .expect("docs/server.md has the flags table's begin marker");
    let (found, after) = rest
        .split_once(FLAGS_END)
        .expect("docs/server.md has the flags table's end marker");
    let table = flags_table(&flags);
    if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
        if found != table {
            std::fs::write(
                path,
                format!("{before}{FLAGS_BEGIN}{table}{FLAGS_END}{after}"),
            )
            .expect("writing docs/server.md");
        }
        return;
    }
    assert!(
        found == table,
        "docs/server.md's flags table differs from `xene --help`: run `cargo xtask codegen` \
         and commit the result\n--- in docs/server.md\n{found}\n--- from --help\n{table}"
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
        // The file names the flag by its old name, which still works.
        "task-lease = \"30s\" # config file",
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
fn the_task_lease_keeps_its_old_names() {
    let (code, printed, stderr) = output(
        xene()
            .args(["--print-config"])
            .env("XENE_RUN_LEASE", "40s")
            .env("XENE_NO_LOCAL_AGENT", "yes"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        printed
            .lines()
            .any(|l| l == "task-lease = \"40s\" # environment"),
        "{printed}"
    );
    let (code, printed, stderr) = output(
        xene()
            .args(["--print-config", "--run-lease", "41s"])
            .env("XENE_RUN_LEASE", "40s")
            .env("XENE_NO_LOCAL_AGENT", "yes"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        printed.lines().any(|l| l == "task-lease = \"41s\" # flag"),
        "{printed}"
    );
    let (code, printed, stderr) = output(
        xene()
            .args(["--print-config"])
            .env("XENE_RUN_LEASE", "40s")
            .env("XENE_TASK_LEASE", "42s")
            .env("XENE_NO_LOCAL_AGENT", "yes"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        printed
            .lines()
            .any(|l| l == "task-lease = \"42s\" # environment"),
        "{printed}"
    );
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
