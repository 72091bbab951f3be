//! Running commands and saying what is being done.

use std::process::Command;

use anyhow::{Context, bail};

/// `cargo` as invoked by `cargo xtask`, so the same toolchain builds everything.
pub fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args);
    cmd
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// True when the command runs and exits with success; its output is dropped.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// Builds the release `xene` and `xene-agent`, then runs one ignored test
/// of the server's test binary (`test`, a nextest filter's exact name)
/// against them, with `env` set: how every release benchmark runs.
pub fn release_bench(
    root: &std::path::Path,
    title: &str,
    test: &str,
    env: &[(&str, String)],
) -> anyhow::Result<()> {
    step("building the release xene and xene-agent");
    run(&mut cargo(&[
        "build",
        "--release",
        "--locked",
        "--package",
        "xene-server",
        "--bin",
        "xene",
        "--package",
        "xene-agent",
        "--bin",
        "xene-agent",
    ]))?;
    let release = crate::target_dir(root).join("release");
    step(title);
    let filter = format!("test(={test})");
    let mut command = cargo(&[
        "nextest",
        "run",
        "--package",
        "xene-server",
        "--test",
        "server",
        "--locked",
        "--run-ignored",
        "all",
        "--no-capture",
        "-E",
        &filter,
    ]);
    command
        .env("XENE_BIN", release.join("xene"))
        .env("XENE_AGENT_BIN", release.join("xene-agent"));
    for (name, value) in env {
        command.env(name, value);
    }
    run(&mut command)
}
