//! `cargo xtask bench-artifacts [--mib N]`: figures for artifacts (issue
//! 25), printed, never asserted. It builds the release `xene` and
//! `xene-agent` and runs the server tests' ignored
//! `artifacts_bench::bench_artifacts` against them: publish and fetch of
//! one file of N MiB (default 1024) with the local store against `cp`, and
//! with S3 (moto, from `cargo xtask setup`) against `curl -T`; a second
//! identical run (dedup); the agent's peak memory.

use std::path::Path;

use anyhow::bail;

use crate::util;

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mib = match args.iter().position(|a| a == "--mib") {
        None => 1024,
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<u64>().ok()) {
            Some(n) if n > 0 => n,
            _ => bail!("--mib takes a number of MiB"),
        },
    };
    util::release_bench(
        root,
        "bench-artifacts",
        "artifacts_bench::bench_artifacts",
        &[("XENE_BENCH_ARTIFACT_MIB", mib.to_string())],
    )
}
