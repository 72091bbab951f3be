//! `cargo xtask bench-tasks [fanout|chain|latency]...`: figures for runs
//! placed task by task (issue 24), printed, never asserted. It builds the
//! release `xene` and `xene-agent` and runs the server tests' ignored
//! `bench_tasks::bench_tasks` against them: the driver (API calls, the
//! 1,000 idle protocol clients of the load test) is the debug test binary,
//! but every figure is taken from the server's own times (a run's
//! `requested_at`/`finished_at`, an attempt's `ready_at`/`started_at`), so
//! the driver's speed is not in them.

use std::path::Path;

use anyhow::bail;

use crate::util;

pub const PARTS: &[&str] = &["fanout", "chain", "latency"];

pub fn run(root: &Path, parts: &[String]) -> anyhow::Result<()> {
    for part in parts {
        if !PARTS.contains(&part.as_str()) {
            bail!(
                "unknown benchmark {part:?}: expected one of {}",
                PARTS.join(", ")
            );
        }
    }
    util::step("building the release xene and xene-agent");
    util::run(&mut util::cargo(&[
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
    util::step("bench-tasks");
    let mut cargo = util::cargo(&[
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
        "test(=bench_tasks::bench_tasks)",
    ]);
    cargo
        .env("XENE_BIN", release.join("xene"))
        .env("XENE_AGENT_BIN", release.join("xene-agent"))
        .env("XENE_BENCH_TASKS", parts.join(","));
    util::run(&mut cargo)
}
