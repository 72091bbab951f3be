//! Builds the browser bundle: the `xene-app` crate compiled to wasm with its
//! `hydrate` feature, bound with wasm-bindgen, plus the stylesheet and the
//! static files, into `target/site` (what `xene --site-dir` serves).

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::util;

pub fn build(root: &Path, release: bool) -> anyhow::Result<()> {
    util::step(if release {
        "building the web bundle (release)"
    } else {
        "building the web bundle"
    });
    let profile = if release { "wasm-release" } else { "dev" };
    util::run(&mut util::cargo(&[
        "build",
        "--package",
        "xene-app",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
        "--features",
        "hydrate",
        "--profile",
        profile,
    ]))?;
    let target = crate::target_dir(root);
    let profile_dir = if release { "wasm-release" } else { "debug" };
    let wasm = target
        .join("wasm32-unknown-unknown")
        .join(profile_dir)
        .join("xene_app.wasm");
    let site = target.join("site");
    let pkg = site.join("pkg");
    std::fs::create_dir_all(&pkg)?;
    let mut bindgen = Command::new("wasm-bindgen");
    bindgen.args(["--target", "web", "--no-typescript"]);
    if release {
        // Function names are over half the file and only help debugging.
        bindgen.args(["--remove-name-section", "--remove-producers-section"]);
    }
    bindgen.args(["--out-name", "xene", "--out-dir"]);
    util::run(bindgen.arg(&pkg).arg(&wasm))?;
    std::fs::copy(root.join("style/main.css"), pkg.join("xene.css"))
        .context("copying style/main.css")?;
    copy_dir(&root.join("public"), &site)?;
    fingerprint(&pkg)?;
    eprintln!("web bundle ready in {}", site.display());
    Ok(())
}

/// Copies the bundle under names that carry a hash of its content
/// (`xene-HASH.js`, `xene-HASH_bg.wasm`, `xene-HASH.css`), which the server
/// serves with a year's cache lifetime, and names them in `pkg/bundle-name`;
/// writes a gzip copy beside each (served to browsers that take gzip); and
/// prints the sizes.
fn fingerprint(pkg: &Path) -> anyhow::Result<()> {
    let parts = [
        ("xene.js", ".js"),
        ("xene_bg.wasm", "_bg.wasm"),
        ("xene.css", ".css"),
    ];
    // FNV-1a over the three files: a content fingerprint, not a security measure.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (file, _) in parts {
        for b in std::fs::read(pkg.join(file))? {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    let name = format!("xene-{:012x}", hash & 0xffff_ffff_ffff);
    // Older fingerprinted copies go: only the current bundle is served.
    for entry in std::fs::read_dir(pkg)? {
        let path = entry?.path();
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        if file.starts_with("xene-") && !file.starts_with(&name) {
            std::fs::remove_file(&path)?;
        }
    }
    let mut raw_total = 0;
    let mut gz_total = 0;
    for (file, suffix) in parts {
        let hashed = pkg.join(format!("{name}{suffix}"));
        std::fs::copy(pkg.join(file), &hashed)?;
        util::run(
            Command::new("gzip")
                .args(["-9", "-k", "-f", "-n"])
                .arg(&hashed),
        )
        .context("gzip (Debian's gzip package)")?;
        let raw = std::fs::metadata(&hashed)?.len();
        let gz = std::fs::metadata(pkg.join(format!("{name}{suffix}.gz")))?.len();
        raw_total += raw;
        gz_total += gz;
        eprintln!(
            "  {file:<14} {:>8.1} KB, {:>7.1} KB gzipped",
            kb(raw),
            kb(gz)
        );
    }
    eprintln!(
        "  {:<14} {:>8.1} KB, {:>7.1} KB gzipped (goal: under 500 KB gzipped)",
        "bundle",
        kb(raw_total),
        kb(gz_total)
    );
    std::fs::write(pkg.join("bundle-name"), &name)?;
    Ok(())
}

fn kb(bytes: u64) -> f64 {
    bytes as f64 / 1000.0
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}
