//! Project automation, in Rust rather than shell so it runs the same for
//! everyone: `cargo xtask <command>`. See `cargo xtask help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

mod bench_artifacts;
mod bench_tasks;
mod fuzz;
mod setup;
mod site;
mod util;

const HELP: &str = "\
cargo xtask <command> [flags]

commands:
  run [--release] [-- XENE FLAGS]  build the web bundle and start the Xene server
  site [--release]                 build the web bundle into target/site and print what each
                                   page loads; --release fails when a page loads over its
                                   ceiling (500 KB gzipped; see site::CEILINGS_GZ)
  test                             install what is missing, then run every check and test,
                                   and each fuzz target for 20 s (XENE_FUZZ_SECONDS)
  fuzz [--seconds N] [TARGET]...   run the fuzz targets (spec, template, condition, cron,
                                   protocol, edit) for N seconds each (default 60)
  soak [--seconds N]               the long chaos soak: PostgreSQL, two replicas, five
                                   agents (two in containers), N seconds of kill -9 and
                                   network cuts (default 600)
  load [--agents N] [--runs N] [--viewers N]
                                   the long load test on SQLite and PostgreSQL (default
                                   1000 agents, 10000 runs, 100 live log viewers)
  bench-tasks [fanout|chain|latency]...
                                   figures for runs placed task by task (release build;
                                   default all three): 1,000 tasks over 4 agents, a 40-task
                                   chain, ready -> started with 1,000 idle agents
  bench-artifacts [--mib N] [--files N]
                                   figures for artifacts (release build): publish and fetch of
                                   one N MiB file (default 1024) against cp (local store) and
                                   curl -T to moto (S3), a second identical run, the agent's
                                   peak memory; a cache of N small files (default 10000, 0
                                   skips it) saved, then restored, against tar | tar
  codegen                          regenerate the generated parts of the docs (the flags
                                   table of docs/server.md, from `xene --help`)
  setup                            install what the tests need (apt packages, wasm target,
                                   wasm-bindgen-cli, npm packages, moto in target/moto,
                                   cargo-nextest) and start Docker
  help                             print this
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| "help".into());
    let rest: Vec<String> = args.collect();
    let release = rest
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--release");
    let passthrough: Vec<String> = rest
        .iter()
        .skip_while(|a| *a != "--")
        .skip(1)
        .cloned()
        .collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match command.as_str() {
        "run" => {
            setup::site_tools(&root)?;
            site::build(&root, release)?;
            let mut cargo = util::cargo(&["run", "--package", "xene-server", "--bin", "xene"]);
            if release {
                cargo.arg("--release");
            }
            cargo.arg("--").args(&passthrough);
            util::run(&mut cargo)
        }
        "site" => {
            setup::site_tools(&root)?;
            site::build(&root, release)
        }
        "setup" => setup::all(&root),
        "codegen" => codegen(),
        "test" => test(&root),
        "fuzz" => {
            let seconds = fuzz::seconds(&rest, 60)?;
            let targets: Vec<String> = rest
                .iter()
                .enumerate()
                .filter(|(i, a)| !a.starts_with('-') && (*i == 0 || rest[i - 1] != "--seconds"))
                .map(|(_, a)| a.clone())
                .collect();
            fuzz::run(&root, seconds, &targets)
        }
        "soak" => {
            let seconds = fuzz::seconds(&rest, 600)?;
            long_test(
                "soak::chaos_soak_long",
                &[("XENE_SOAK_SECONDS", seconds.to_string())],
            )
        }
        "load" => {
            let flag = |name: &str, default: u64| -> anyhow::Result<String> {
                match rest.iter().position(|a| a == name) {
                    None => Ok(default.to_string()),
                    Some(i) => match rest.get(i + 1).and_then(|n| n.parse::<u64>().ok()) {
                        Some(n) => Ok(n.to_string()),
                        None => bail!("{name} takes a number"),
                    },
                }
            };
            long_test(
                "load::load_long",
                &[
                    ("XENE_LOAD_AGENTS", flag("--agents", 1000)?),
                    ("XENE_LOAD_RUNS", flag("--runs", 10_000)?),
                    ("XENE_LOAD_VIEWERS", flag("--viewers", 100)?),
                ],
            )
        }
        "bench-tasks" => bench_tasks::run(&root, &rest),
        "bench-artifacts" => bench_artifacts::run(&root, &rest),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{HELP}"),
    }
}

/// Every check CI runs, in the order that fails fastest.
fn test(root: &Path) -> anyhow::Result<()> {
    setup::all(root)?;
    util::step("formatting");
    util::run(&mut util::cargo(&["fmt", "--all", "--check"]))?;
    util::step("clippy (server side)");
    util::run(&mut util::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    util::step("clippy (browser bundle)");
    util::run(&mut util::cargo(&[
        "clippy",
        "--package",
        "xene-app",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
        "--features",
        "hydrate",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The browser tests load the bundle from target/site: the release
    // one, whose size is what the page budget is about (checked once the
    // tests have run, so one run reports both).
    let pages = site::bundle(root, true)?;
    // The network tests put a static agent in a `FROM scratch` image.
    util::step("building the static agent");
    util::run(&mut util::cargo(&[
        "build",
        "--package",
        "xene-agent",
        "--bin",
        "xene-agent",
        "--target",
        setup::MUSL_TARGET,
        "--locked",
    ]))?;
    util::step("tests");
    util::run(&mut util::cargo(&[
        "nextest",
        "run",
        "--workspace",
        "--locked",
        "--no-fail-fast",
    ]))?;
    util::step("doc tests");
    util::run(&mut util::cargo(&[
        "test",
        "--workspace",
        "--doc",
        "--locked",
    ]))?;
    // A bounded run: new crashes surface here; longer runs are
    // `cargo xtask fuzz`.
    let seconds = match std::env::var("XENE_FUZZ_SECONDS") {
        Ok(s) => s
            .parse()
            .map_err(|_| anyhow::anyhow!("XENE_FUZZ_SECONDS must be a number of seconds"))?,
        Err(_) => fuzz::TEST_SECONDS,
    };
    if seconds > 0 {
        fuzz::run(root, seconds, &[])?;
    }
    util::step("the page budget");
    site::check_budget(&pages)
}

/// Rewrites the generated blocks of the docs: the tests that check them
/// write them instead when `UPDATE_DOCS=1` (rust-analyzer's "sourcegen").
fn codegen() -> anyhow::Result<()> {
    let mut cargo = util::cargo(&[
        "nextest",
        "run",
        "--package",
        "xene-server",
        "--test",
        "server",
        "--locked",
        "-E",
        "test(=settings::the_docs_flags_table_equals_xene_help)",
    ]);
    cargo.env("UPDATE_DOCS", "1");
    util::run(&mut cargo)
}

/// Runs one of the server's ignored long tests, printing as it goes.
fn long_test(name: &str, env: &[(&str, String)]) -> anyhow::Result<()> {
    // The test runs the agent binary cargo built last: make it this code.
    util::run(&mut util::cargo(&[
        "build",
        "--package",
        "xene-agent",
        "--bin",
        "xene-agent",
        "--locked",
    ]))?;
    let filter = format!("test(={name})");
    let mut cargo = util::cargo(&[
        "nextest",
        "run",
        "--package",
        "xene-server",
        "--locked",
        "--run-ignored",
        "all",
        "--no-capture",
        "-E",
        &filter,
    ]);
    cargo.envs(env.iter().map(|(k, v)| (k, v)));
    util::run(&mut cargo)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The target directory cargo uses, honouring `CARGO_TARGET_DIR`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The exact wasm-bindgen version in Cargo.lock: the CLI must match it.
pub fn locked_wasm_bindgen_version(root: &Path) -> anyhow::Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\""
            && let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return Ok(version.trim_end_matches('"').to_string());
        }
    }
    bail!("wasm-bindgen is not in Cargo.lock")
}
