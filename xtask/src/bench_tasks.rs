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
    util::release_bench(
        root,
        "bench-tasks",
        "bench_tasks::bench_tasks",
        &[("XENE_BENCH_TASKS", parts.join(","))],
    )
}
