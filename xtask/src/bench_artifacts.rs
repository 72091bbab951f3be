//! `cargo xtask bench-artifacts [--mib N] [--files N]`: figures for
//! artifacts and caches (issue 25), printed, never asserted. It builds the
//! release `xene` and `xene-agent` and runs the server tests' ignored
//! `artifacts_bench::bench_artifacts` against them: publish and fetch of
//! one file of N MiB (default 1024) with the local store against `cp`, and
//! with S3 (moto, from `cargo xtask setup`) against `curl -T`; a second
//! identical run (dedup); the agent's peak memory; then a cache of N small
//! files (default 10,000; 0 skips it) saved and restored (a hit) through
//! each store, against `tar -c | tar -x` of the same files.

use std::path::Path;

use anyhow::bail;

use crate::util;

/// The number after `flag`, if given: more than 0 unless `zero` is allowed.
fn number(args: &[String], flag: &str, zero: bool) -> anyhow::Result<Option<u64>> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<u64>().ok()) {
            Some(n) if n > 0 || zero => Ok(Some(n)),
            _ => bail!("{flag} takes a number"),
        },
    }
}

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mib = number(args, "--mib", false)?.unwrap_or(1024);
    // The cache entry's bound (xene_core::cache::MAX_CACHE_FILES).
    let files = number(args, "--files", true)?.unwrap_or(10_000);
    if files > 100_000 {
        bail!("--files takes at most 100000 (the most files a cache holds)");
    }
    util::release_bench(
        root,
        "bench-artifacts",
        "artifacts_bench::bench_artifacts",
        &[
            ("XENE_BENCH_ARTIFACT_MIB", mib.to_string()),
            ("XENE_BENCH_CACHE_FILES", files.to_string()),
        ],
    )
}
