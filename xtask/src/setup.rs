//! Installs what building and testing Xene needs when it is missing, from
//! the registries this project may use (Debian, crates.io, npm, PyPI) and
//! nothing else.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util::{self, output, succeeds};

/// Debian packages the tests use (Node.js comes with `site_tools`): Docker
/// and a static busybox for test images, Chromium for browser tests,
/// PostgreSQL for storage tests.
const TEST_PACKAGES: &[&str] = &[
    "docker.io",
    "busybox-static",
    "chromium",
    "chromium-driver",
    "postgresql",
    "musl-tools",
    // The observability test scrapes a server and an agent with it.
    "prometheus",
];

/// What building the web bundle needs: with Node.js, the npm packages it
/// is built with (CodeMirror and esbuild).
pub fn site_tools(root: &Path) -> anyhow::Result<()> {
    wasm_target()?;
    wasm_bindgen_cli(root)?;
    node()?;
    npm_ci(root, "web")
}

/// Node.js and npm, from Debian when missing.
fn node() -> anyhow::Result<()> {
    if succeeds(Command::new("npm").arg("--version")) {
        return Ok(());
    }
    apt_packages(&["nodejs", "npm"])
}

/// Everything `cargo xtask test` needs, with a running Docker engine.
pub fn all(root: &Path) -> anyhow::Result<()> {
    apt_packages(TEST_PACKAGES)?;
    site_tools(root)?;
    rust_target(MUSL_TARGET)?;
    // The real OpenID provider the sign-in tests run, and axe-core for the
    // browser tests.
    npm_ci(root, "end2end/oidc")?;
    cron_oracle()?;
    api_fuzzer()?;
    npm_ci(root, "end2end/axe")?;
    moto(root)?;
    if !succeeds(&mut util::cargo(&["nextest", "--version"])) {
        util::step("installing cargo-nextest");
        util::run(&mut util::cargo(&["install", "cargo-nextest", "--locked"]))?;
    }
    docker_engine(root)
}

fn apt_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_some_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    util::step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    let sudo = output(Command::new("id").arg("-u")).is_none_or(|uid| uid.trim() != "0");
    let apt = |args: &[&str]| {
        let mut cmd = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    util::run(&mut apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    util::run(&mut install).context("installing Debian packages (are you root or a sudoer?)")
}

/// The independent cron implementation the fire-time test compares with:
/// PyPI's `cronsim` (Debian cron's daylight-saving rules).
fn cron_oracle() -> anyhow::Result<()> {
    if succeeds(Command::new("python3").args(["-c", "import cronsim"])) {
        return Ok(());
    }
    util::step("installing the cron oracle (pip install cronsim)");
    util::run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "cronsim"]))
        .context("pip install cronsim (Python 3 and pip are needed)")
}

/// The schemathesis the `api_fuzz` test is known to work with: its command
/// line and checks change between releases.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The schema-driven API fuzzer the server's `api_fuzz` test runs: PyPI's
/// `schemathesis`.
fn api_fuzzer() -> anyhow::Result<()> {
    if succeeds(Command::new("python3").args(["-c", "import schemathesis"])) {
        return Ok(());
    }
    util::step(&format!(
        "installing the API fuzzer (pip install {SCHEMATHESIS})"
    ));
    let pip = |extra: &[&str]| {
        succeeds(
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet"])
                .args(extra)
                .arg(SCHEMATHESIS),
        )
    };
    // A Debian-managed Python refuses plain installs (PEP 668).
    if pip(&[]) || pip(&["--break-system-packages"]) {
        Ok(())
    } else {
        bail!("pip install schemathesis failed (Python 3 and pip are needed)")
    }
}

/// The S3 API the artifact tests run against (testkit/src/s3.rs): PyPI's
/// `moto[server]`, pinned, since the tests' launcher patches its
/// authentication check.
pub const MOTO: &str = "moto[server]==5.2.5";

/// `moto[server]` in its own venv under the target directory
/// (`target/moto`), so it neither needs nor touches the system's Python
/// packages; made again when the version there is not [`MOTO`]'s.
fn moto(root: &Path) -> anyhow::Result<()> {
    let venv = crate::target_dir(root).join("moto");
    let python = venv.join("bin/python");
    let wanted = MOTO.rsplit("==").next().unwrap_or_default();
    let check = format!("import moto, sys; sys.exit(moto.__version__ != {wanted:?})");
    if succeeds(Command::new(&python).args(["-c", &check])) {
        return Ok(());
    }
    util::step(&format!("installing {MOTO} in {}", venv.display()));
    let make = || {
        succeeds(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
        )
    };
    // Debian's python3 makes venvs only with python3-venv.
    if !make() {
        apt_packages(&["python3-venv"])?;
        if !make() {
            bail!(
                "python3 -m venv {} failed (Python 3 is needed)",
                venv.display()
            );
        }
    }
    util::run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        MOTO,
    ]))
    .with_context(|| format!("pip install {MOTO}"))
}

/// The npm packages of `folder`, pinned by its package-lock.json: installed
/// again whenever the lockfile is newer than what npm last installed
/// (`node_modules/.package-lock.json`). Development packages too (esbuild
/// is one), even under `NODE_ENV=production`.
fn npm_ci(root: &Path, folder: &str) -> anyhow::Result<()> {
    let dir = root.join(folder);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let wanted = modified(&dir.join("package-lock.json"));
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    if installed.is_some() && installed >= wanted {
        return Ok(());
    }
    util::step(&format!("installing npm packages (npm ci in {folder})"));
    util::run(
        Command::new("npm")
            .args(["ci", "--include=dev", "--no-audit", "--no-fund"])
            .current_dir(&dir),
    )
    .with_context(|| format!("npm ci in {folder} (Node.js 20 and npm are needed)"))
}

fn wasm_target() -> anyhow::Result<()> {
    rust_target("wasm32-unknown-unknown")
}

/// The static agent for container tests is built for musl.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

fn rust_target(target: &str) -> anyhow::Result<()> {
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if installed.lines().any(|t| t.trim() == target) {
        return Ok(());
    }
    util::step(&format!("adding the {target} target"));
    util::run(Command::new("rustup").args(["target", "add", target]))
}

/// wasm-bindgen's CLI must be the very version the bundle links.
fn wasm_bindgen_cli(root: &Path) -> anyhow::Result<()> {
    let wanted = crate::locked_wasm_bindgen_version(root)?;
    let have = output(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if have.split_whitespace().nth(1) == Some(wanted.as_str()) {
        return Ok(());
    }
    util::step(&format!("installing wasm-bindgen-cli {wanted}"));
    // Not --locked: its lockfile pins a webpki-roots release the registry lacks.
    util::run(&mut util::cargo(&[
        "install",
        "wasm-bindgen-cli",
        "--version",
        &wanted,
        "--force",
    ]))
}

fn docker_engine(root: &Path) -> anyhow::Result<()> {
    if succeeds(Command::new("docker").arg("info")) {
        return Ok(());
    }
    util::step("starting the Docker engine");
    let log_path = crate::target_dir(root).join("dockerd.log");
    std::fs::create_dir_all(crate::target_dir(root))?;
    let log = std::fs::File::create(&log_path)?;
    Command::new("dockerd")
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start dockerd")?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if succeeds(Command::new("docker").arg("info")) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!(
        "dockerd did not come up within 60 s; see {}",
        log_path.display()
    )
}
