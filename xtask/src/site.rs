//! Builds the browser bundle: the `xene-app` crate compiled to wasm with its
//! `hydrate` feature, split (each group of pages' own code becomes a piece
//! fetched when one of its pages first opens), bound with wasm-bindgen,
//! the code editor's JavaScript (`web/`, CodeMirror 6 bundled by esbuild),
//! plus the stylesheet and the static files, into `target/site` (what
//! `xene --site-dir` serves). A release build fails when a page would load
//! more than its ceiling ([`CEILINGS_GZ`]), and the goal for every page is
//! [`BUDGET_GZ`] bytes gzipped. (binaryen's wasm-opt -Oz was tried: 0.6 %
//! smaller, 30 s a module: not worth it after rustc's opt-level "z" and
//! LTO.)

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::util;

/// Builds the bundle; a release build fails past the page budget.
pub fn build(root: &Path, release: bool) -> anyhow::Result<()> {
    let pages = bundle(root, release)?;
    if release {
        check_budget(&pages)?;
    }
    Ok(())
}

/// Fails when a page of a group (groups and gzipped bytes, as [`bundle`]
/// answers) loads more than its ceiling: the budget, or for the groups
/// still over it, what they loaded when the ceiling was set, so no change
/// makes them heavier.
pub fn check_budget(pages: &[(String, u64)]) -> anyhow::Result<()> {
    let mut over = Vec::new();
    for (group, gz) in pages {
        let ceiling = ceiling(group);
        if *gz > ceiling {
            over.push(format!(
                "a page of `{group}` loads {:.1} KB gzipped, over its ceiling of {:.0} KB",
                kb(*gz),
                kb(ceiling)
            ));
        }
    }
    anyhow::ensure!(
        over.is_empty(),
        "{}: make it smaller (`cargo xtask site --release` prints what each page loads; \
         the goal is {:.0} KB for every page)",
        over.join("; "),
        kb(BUDGET_GZ)
    );
    Ok(())
}

/// What a page of `group` may load, gzipped.
fn ceiling(group: &str) -> u64 {
    CEILINGS_GZ
        .iter()
        .find(|(g, _)| *g == group)
        .map_or(BUDGET_GZ, |(_, bytes)| *bytes)
}

/// Builds the bundle and answers what its pages load: "every page" and
/// each group's name, with the gzipped bytes a page of it loads in all.
pub fn bundle(root: &Path, release: bool) -> anyhow::Result<Vec<(String, u64)>> {
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
    // What an earlier build split off must not linger beside this one's.
    for entry in std::fs::read_dir(&pkg)? {
        let path = entry?.path();
        if path.is_file() && is_split_file(&path) {
            std::fs::remove_file(&path)?;
        }
    }
    let (main, pieces) = split(&wasm, &target, &pkg)?;
    // wasm-bindgen writes the JavaScript the crate inlines here, afresh.
    let snippets = pkg.join("snippets");
    if snippets.is_dir() {
        std::fs::remove_dir_all(&snippets)?;
    }
    let mut bindgen = Command::new("wasm-bindgen");
    // The loader of the split-off pieces links them through the function
    // table, which wasm-bindgen would otherwise stop exporting.
    bindgen.args(["--target", "web", "--no-typescript", "--keep-lld-exports"]);
    if release {
        // Function names are over half the file and only help debugging.
        bindgen.args(["--remove-name-section", "--remove-producers-section"]);
    }
    bindgen.args(["--out-name", "xene", "--out-dir"]);
    util::run(bindgen.arg(&pkg).arg(&main))?;
    if release {
        for entry in std::fs::read_dir(&pkg)? {
            let path = entry?.path();
            if is_split_file(&path) && path.extension().is_some_and(|e| e == "wasm") {
                let stripped = strip_names(&std::fs::read(&path)?)?;
                std::fs::write(&path, stripped)?;
            }
        }
    }
    code_editor(root, &pkg)?;
    std::fs::write(pkg.join("xene.css"), stylesheet(&root.join("style"))?)?;
    copy_dir(&root.join("public"), &site)?;
    let pages = fingerprint(&pkg, &pieces)?;
    eprintln!("web bundle ready in {}", site.display());
    Ok(pages)
}

/// What a page may load in all, gzipped, in a release build: every file
/// it fetches (the shell, its group's pieces, the code editor's script).
/// The goal for every page; the groups in [`CEILINGS_GZ`] are not there yet.
pub const BUDGET_GZ: u64 = 500_000;

/// The groups still over [`BUDGET_GZ`], each held at about what it loaded
/// on 2026-12-07 (release build, 3 % of headroom for that day's fixes): a
/// ceiling only ever comes down, to the budget at last. Where the bytes
/// are is in docs/performance.md ("The browser bundle"). One exception,
/// decided and written down: the run page's was raised from 551 KB to
/// 566 KB for its Artifacts card and Pin button (563.7 KB measured), which
/// issue 25 asks for and which no cut of that day could pay for. The
/// second, the same day, for caches (issue 25 again): the workflow page's
/// from 587 KB to 594 KB (593.1 measured; its Caches card, written as
/// escaped HTML text to cost 7 KB rather than 20, and the spec's new types
/// in the run form's checks) and the editor's from 924 KB to 933 KB (932.0
/// measured; the checks and completion of `caches` and `cache_save` in
/// `xene_core`, which the editor runs on every keystroke).
pub const CEILINGS_GZ: &[(&str, u64)] = &[
    ("run_page", 566_000),
    ("workflow_page", 594_000),
    ("editor", 933_000),
];

/// The lazy groups of pages (`app/src/pages.rs`) that show a code editor
/// (`ui::code::CodeEditor`) and so load `code.js`; the tidy test
/// `code_editor` checks that no other page uses one.
pub const CODE_EDITOR_GROUPS: &[&str] = &["editor"];

/// The code editor's script: `web/src/code.js` and CodeMirror, bundled by
/// esbuild (from `web/`'s lockfile, installed by `npm ci`) into one
/// minified ES module, `code.js`, which `ui::code` imports on first use.
fn code_editor(root: &Path, pkg: &Path) -> anyhow::Result<()> {
    let web = root.join("web");
    util::run(
        Command::new(web.join("node_modules/.bin/esbuild"))
            .arg(web.join("src/code.js"))
            .args([
                "--bundle",
                "--format=esm",
                "--minify",
                "--target=es2020",
                "--log-level=warning",
            ])
            .arg(format!("--outfile={}", pkg.join("code.js").display())),
    )
    .context("esbuild (run `cargo xtask setup`: npm ci in web/)")
}

/// `style/main.css` (the theme's variables) and then every other
/// `style/*.css` in name order, one stylesheet: one request per page, and
/// each part of the UI keeps its rules in its own file.
fn stylesheet(dir: &Path) -> anyhow::Result<String> {
    let mut parts: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".css") && f != "main.css")
        .collect();
    parts.sort();
    let mut css = String::new();
    for part in std::iter::once("main.css".to_string()).chain(parts) {
        let text = std::fs::read_to_string(dir.join(&part))
            .with_context(|| format!("reading style/{part}"))?;
        css.push_str(&text);
        css.push('\n');
    }
    Ok(css)
}

/// The loader and the pieces the splitter writes beside the main module.
fn is_split_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|f| f.to_str())
        .is_some_and(|f| f == LOADER || f.starts_with("split_") || f.starts_with("chunk_"))
}

/// The splitter's loader: the main module imports it to fetch a piece, and
/// it fetches pieces relative to its own URL, so all sit in one folder.
const LOADER: &str = "__wasm_split.js";

/// Which pieces (file stems) each lazy group loads, by the group's split name.
type Pieces = std::collections::HashMap<String, Vec<String>>;

/// Splits the code only one lazy group of pages reaches (a `#[leptos::lazy]`
/// function in `app/src/pages.rs`) out of the main module into pieces
/// fetched on first use; returns the main module, for wasm-bindgen, and
/// which pieces each group needs. The pieces and their loader go to `pkg`.
fn split(wasm: &Path, target: &Path, pkg: &Path) -> anyhow::Result<(std::path::PathBuf, Pieces)> {
    let input = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let main = target.join("xene_split.wasm");
    let mut options = wasm_split_cli_support::Options::new(&input);
    options.output_dir = pkg;
    options.main_out_path = &main;
    options.main_module = "./xene.js";
    let link = format!("./{LOADER}");
    options.link_name = &link;
    let split = wasm_split_cli_support::transform(options)
        .map_err(|e| anyhow::anyhow!("splitting {}: {e:?}", wasm.display()))?;
    eprintln!(
        "split off {} piece(s) loaded on demand",
        split.split_modules.len()
    );
    Ok((main, split.prefetch_map))
}

/// Drops the `name` and `producers` custom sections from a wasm module:
/// the splitter copies the names into every piece, where they are most of
/// the bytes and only help debugging (wasm-bindgen does this for the main
/// module). Every other section is kept byte for byte.
fn strip_names(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        wasm.len() >= 8 && &wasm[..4] == b"\0asm",
        "not a wasm module"
    );
    let mut out = wasm[..8].to_vec();
    let mut at = 8;
    while at < wasm.len() {
        let start = at;
        let id = wasm[at];
        let (size, after) = leb128(wasm, at + 1)?;
        let end = after
            .checked_add(size)
            .filter(|&e| e <= wasm.len())
            .context("a section runs past the end of the module")?;
        let dropped = id == 0 && {
            let section = &wasm[..end];
            let (len, name_at) = leb128(section, after)?;
            let name = name_at
                .checked_add(len)
                .and_then(|name_end| section.get(name_at..name_end))
                .context("a custom section's name runs past the section")?;
            name == b"name" || name == b"producers"
        };
        if !dropped {
            out.extend_from_slice(&wasm[start..end]);
        }
        at = end;
    }
    Ok(out)
}

/// An unsigned LEB128 number at `at`, and where it ends.
fn leb128(bytes: &[u8], mut at: usize) -> anyhow::Result<(usize, usize)> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes
            .get(at)
            .context("a number runs past the end of the module")?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((usize::try_from(value)?, at));
        }
    }
    anyhow::bail!("a number longer than 5 bytes")
}

/// Copies the bundle into a folder named for a hash of its content
/// (`pkg/xene-HASH/`, under the files' own names, which the loader, the
/// main module and its snippets use for each other), served with a year's
/// cache lifetime, and names it in `pkg/bundle-name` (`xene-HASH/xene`);
/// writes a gzip copy beside each file (served to browsers that take
/// gzip); and prints the sizes: what every page loads, and what a page of
/// each group loads in all. Answers those figures (see [`bundle`]).
fn fingerprint(pkg: &Path, routes: &Pieces) -> anyhow::Result<Vec<(String, u64)>> {
    let mut shell: Vec<String> = [LOADER, "xene.css", "xene.js", "xene_bg.wasm"]
        .map(String::from)
        .to_vec();
    // What the crate inlines (`snippets/CRATE/inlineN.js`): `xene.js`
    // imports it, so every page loads it.
    let snippets = pkg.join("snippets");
    if snippets.is_dir() {
        for krate in std::fs::read_dir(&snippets)? {
            let krate = krate?;
            for file in std::fs::read_dir(krate.path())? {
                let file = file?.file_name().to_string_lossy().into_owned();
                shell.push(format!(
                    "snippets/{}/{file}",
                    krate.file_name().to_string_lossy()
                ));
            }
        }
    }
    let mut pieces: Vec<String> = std::fs::read_dir(pkg)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f != LOADER && is_split_file(Path::new(f)))
        .collect();
    pieces.sort();
    let code = "code.js".to_string();
    let files: Vec<&String> = shell.iter().chain(&pieces).chain([&code]).collect();
    // FNV-1a over the files: a content fingerprint, not a security measure.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for file in &files {
        for b in file
            .bytes()
            .chain(std::fs::read(pkg.join(file)).with_context(|| format!("reading {file}"))?)
        {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    let name = format!("xene-{:012x}", hash & 0xffff_ffff_ffff);
    let dir = pkg.join(&name);
    std::fs::create_dir_all(&dir)?;
    let mut sizes = std::collections::HashMap::new();
    for file in &files {
        let copy = dir.join(file);
        if let Some(parent) = copy.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(pkg.join(file), &copy)?;
        util::run(
            Command::new("gzip")
                .args(["-9", "-k", "-f", "-n"])
                .arg(&copy),
        )
        .context("gzip (Debian's gzip package)")?;
        let raw = std::fs::metadata(&copy)?.len();
        let gz = std::fs::metadata(dir.join(format!("{file}.gz")))?.len();
        eprintln!(
            "  {file:<48} {:>8.1} KB, {:>7.1} KB gzipped",
            kb(raw),
            kb(gz)
        );
        sizes.insert(file.trim_end_matches(".wasm").to_string(), (raw, gz));
    }
    let add = |a: (u64, u64), b: (u64, u64)| (a.0 + b.0, a.1 + b.1);
    let every = shell
        .iter()
        .map(|f| sizes[f.trim_end_matches(".wasm")])
        .fold((0, 0), add);
    eprintln!(
        "  {:<48} {:>8.1} KB, {:>7.1} KB gzipped",
        "every page loads",
        kb(every.0),
        kb(every.1)
    );
    let mut largest = ("every page".to_string(), every.1);
    let mut pages = vec![largest.clone()];
    let mut names: Vec<&String> = routes.keys().collect();
    names.sort();
    for route in names {
        // `run_page_HASH`: the group's name is enough here.
        let group = route
            .rsplit_once('_')
            .filter(|(_, hash)| hash.bytes().all(|b| b.is_ascii_digit()))
            .map_or(route.as_str(), |(group, _)| group);
        let mut own = routes[route]
            .iter()
            .filter_map(|stem| sizes.get(stem))
            .fold(every, |a, b| add(a, *b));
        if CODE_EDITOR_GROUPS.contains(&group) {
            own = add(own, sizes["code.js"]);
        }
        if own.1 > largest.1 {
            largest = (group.to_string(), own.1);
        }
        pages.push((group.to_string(), own.1));
        eprintln!(
            "  {:<48} {:>8.1} KB, {:>7.1} KB gzipped",
            format!("a page of `{group}` loads in all"),
            kb(own.0),
            kb(own.1)
        );
    }
    eprintln!(
        "  the largest page (`{}`) loads {:.1} KB gzipped (budget: {:.0} KB gzipped)",
        largest.0,
        kb(largest.1),
        kb(BUDGET_GZ)
    );
    std::fs::write(pkg.join("bundle-name"), format!("{name}/xene"))?;
    prune(pkg, &name)?;
    Ok(pages)
}

/// Keeps the newest few bundles besides `current`: a page opened before a
/// rebuild still fetches its pieces from its own bundle (a piece that
/// cannot be fetched stops the page).
fn prune(pkg: &Path, current: &str) -> anyhow::Result<()> {
    const KEPT: usize = 5;
    let mut older = Vec::new();
    for entry in std::fs::read_dir(pkg)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if !file.starts_with("xene-") || file == current {
            continue;
        }
        if entry.file_type()?.is_dir() {
            older.push((entry.metadata()?.modified()?, entry.path()));
        } else {
            // A single-file bundle from before the split.
            std::fs::remove_file(entry.path())?;
        }
    }
    older.sort();
    older.reverse();
    for (_, dir) in older.into_iter().skip(KEPT) {
        std::fs::remove_dir_all(dir)?;
    }
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
