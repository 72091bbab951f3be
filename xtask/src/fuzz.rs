//! `cargo xtask fuzz [--seconds N] [TARGET]...`: runs the `cargo fuzz`
//! targets in `fuzz/` (all, or those named) for N seconds each, installing
//! cargo-fuzz when it is missing.
//!
//! Coverage-guided without a sanitizer (`-s none`), which builds on the
//! stable toolchain; what libFuzzer learns goes to a corpus under the target
//! dir, seeded from the checked-in `fuzz/corpus/TARGET`, which it never
//! writes. A crash stops everything: its input is in `fuzz/artifacts/`.

use std::path::Path;

use anyhow::bail;

use crate::util::{self, succeeds};

pub const TARGETS: &[&str] = &["spec", "template", "condition", "cron", "protocol", "edit"];

/// Seconds per target in `cargo xtask test`; `XENE_FUZZ_SECONDS` overrides.
pub const TEST_SECONDS: u64 = 20;

pub fn run(root: &Path, seconds: u64, targets: &[String]) -> anyhow::Result<()> {
    for target in targets {
        if !TARGETS.contains(&target.as_str()) {
            bail!(
                "unknown fuzz target {target:?}: expected one of {}",
                TARGETS.join(", ")
            );
        }
    }
    let targets: Vec<&str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        targets.iter().map(String::as_str).collect()
    };
    if !succeeds(&mut util::cargo(&["fuzz", "--version"])) {
        util::step("installing cargo-fuzz");
        util::run(&mut util::cargo(&["install", "cargo-fuzz", "--locked"]))?;
    }
    let target_dir = crate::target_dir(root).join("fuzz");
    for target in targets {
        let corpus = target_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        util::step(&format!("fuzzing {target} for {seconds} s"));
        let mut cmd = util::cargo(&["fuzz", "run", "--sanitizer", "none", "--target-dir"]);
        cmd.current_dir(root.join("fuzz"))
            .arg(&target_dir)
            .arg(target)
            .arg(&corpus)
            .arg(root.join("fuzz/corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // A slow input is a finding too: validation must stay fast.
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048");
        if util::run(&mut cmd).is_err() {
            bail!(
                "fuzz target {target} failed: the input is in fuzz/artifacts/{target}/; \
                 make it a regression test in core, then fix the bug"
            );
        }
    }
    Ok(())
}

/// `--seconds N` among `args`, else `default`.
pub fn seconds(args: &[String], default: u64) -> anyhow::Result<u64> {
    match args.iter().position(|a| a == "--seconds") {
        None => Ok(default),
        Some(i) => match args.get(i + 1).and_then(|n| n.parse().ok()) {
            Some(n) => Ok(n),
            None => bail!("--seconds takes a number of seconds"),
        },
    }
}
