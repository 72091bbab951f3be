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
    util::run(
        Command::new("wasm-bindgen")
            .args([
                "--target",
                "web",
                "--no-typescript",
                "--out-name",
                "xene",
                "--out-dir",
            ])
            .arg(&pkg)
            .arg(&wasm),
    )?;
    std::fs::copy(root.join("style/main.css"), pkg.join("xene.css"))
        .context("copying style/main.css")?;
    copy_dir(&root.join("public"), &site)?;
    eprintln!("web bundle ready in {}", site.display());
    Ok(())
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
