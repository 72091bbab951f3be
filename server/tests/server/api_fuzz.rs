//! Schema-driven API fuzzing: PyPI's `schemathesis` generates requests from
//! the OpenAPI document of a real `xene` (SQLite, its own data directory)
//! and checks every answer, once per role (admin, editor, viewer, no
//! credential). A 5xx or an answer its schema does not allow fails the test
//! with schemathesis's report (a `curl` line per finding); so does a change
//! to what a role may not change. Installs schemathesis with pip when it is
//! missing (`cargo xtask setup` does too).
//!
//! Left out: `DELETE /api/v1/tokens/{id}` and `PATCH /api/v1/users/{id}`,
//! which would revoke or demote the credential the run uses and turn the
//! rest of it into 401s.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::process::Xene;
use crate::util::{Backend, TestDb};

/// Examples per operation and phase: about 15 s a role on 2 cores
/// (`XENE_SCHEMATHESIS_EXAMPLES` for a longer run).
const EXAMPLES: u32 = 30;

const WORKFLOW: &str = "name: ci
pipelines:
  build:
    params:
      ref: {default: main}
    trigger: webhook
    tasks:
      t:
        steps:
          - name: s
            run: echo hi
";

/// Path parameters naming what exists, so requests reach past the 404s.
const CONFIG: &str = r#"[[operations]]
include-path-regex = "^/api/v1/workflows/\\{name\\}"
parameters = { name = "ci", pipeline = "build", version = 1 }

[[operations]]
include-path-regex = "^/api/v1/runs/\\{id\\}"
parameters = { id = 1, task = "t", step = "s" }
"#;

fn python_has_schemathesis() -> bool {
    Command::new("python3")
        .args(["-c", "import schemathesis"])
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_schemathesis() {
    if python_has_schemathesis() {
        return;
    }
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(extra)
            .arg("schemathesis")
            .status()
            .expect("python3 must be installed for schemathesis")
            .success()
    };
    // A Debian-managed Python refuses plain installs (PEP 668).
    assert!(
        pip(&[]) || pip(&["--break-system-packages"]),
        "pip install schemathesis failed"
    );
}

/// What the roles below admin must leave as it is, as the admin sees it.
async fn state(xene: &Xene, paths: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for path in paths {
        let (status, mut body) = xene.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        // Runs are compared by what a request could change, not by the
        // scheduler's notes on them.
        if let Some(runs) = body.get_mut("runs").and_then(Value::as_array_mut) {
            for run in runs {
                *run = json!({
                    "id": run["id"], "status": run["status"],
                    "cancel_requested": run["cancel_requested"], "params": run["params"],
                });
            }
        }
        out.insert(path.to_string(), body);
    }
    Value::Object(out)
}

const EDITOR_STATE: &[&str] = &[
    "/api/v1/workflows",
    "/api/v1/workflows/ci",
    "/api/v1/workflows/ci/versions",
    "/api/v1/runs",
    "/api/v1/secrets",
];
const ADMIN_STATE: &[&str] = &["/api/v1/users", "/api/v1/invites", "/api/v1/agents"];

fn schemathesis(dir: &Path, base: &str, token: Option<&str>, examples: u32) -> (bool, String) {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{base}/api/v1/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            &examples.to_string(),
            "--exclude-operation-id",
            "revoke_token",
            "--exclude-operation-id",
            "update_user",
            "--workers",
            "2",
            "--request-timeout",
            "20",
            // Hypothesis's health checks judge the generator, not the
            // server: under the test command's load `too_slow` fails a run
            // in which every answer was right.
            "--suppress-health-check",
            "all",
        ])
        // Its config and its example database stay in the temp dir.
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false");
    if let Some(token) = token {
        cmd.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd.output().expect("running schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_or_schema_break_for_any_role() {
    tokio::task::spawn_blocking(ensure_schemathesis)
        .await
        .unwrap();
    let examples = std::env::var("XENE_SCHEMATHESIS_EXAMPLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(EXAMPLES);
    let db = TestDb::new(Backend::Sqlite);
    // No agent: the seeded run stays queued, the same for every role.
    let xene = Xene::start(&db, "fuzz", &["--no-local-agent"]).await;
    xene.apply(WORKFLOW).await;
    xene.start_run("ci", "build", json!({})).await;
    let put = xene
        .http
        .put(format!("{}/api/v1/secrets/DEPLOY_KEY", xene.base))
        .json(&json!({ "value": "s3cret-value" }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{:?}", put.text().await);
    let mut tokens = Vec::new();
    for role in ["editor", "viewer"] {
        let (status, body) = xene
            .post(
                "/api/v1/tokens",
                json!({ "name": format!("fuzz-{role}"), "role": role }).to_string(),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        tokens.push(body["token"].as_str().unwrap().to_string());
    }
    let admin = crate::util::admin_token(&db.dir.path().join("data-fuzz"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schemathesis.toml"), CONFIG).unwrap();

    let editor_state = state(&xene, EDITOR_STATE).await;
    let admin_state = state(&xene, ADMIN_STATE).await;
    // The least privileged first: what they may not change is checked
    // before anyone may change it.
    for (role, token) in [
        ("no credential", None),
        ("viewer", Some(tokens[1].clone())),
        ("editor", Some(tokens[0].clone())),
        ("admin", Some(admin.clone())),
    ] {
        let started = Instant::now();
        let (dir, base) = (dir.path().to_path_buf(), xene.base.clone());
        let (ok, report) = tokio::task::spawn_blocking(move || {
            schemathesis(&dir, &base, token.as_deref(), examples)
        })
        .await
        .unwrap();
        let summary = report
            .lines()
            .filter(|l| l.contains("generated,") || l.starts_with("Seed:"))
            .collect::<Vec<_>>()
            .join("; ");
        eprintln!(
            "schemathesis as {role}: {summary} in {:?}",
            started.elapsed()
        );
        assert!(
            ok,
            "schemathesis as {role} found:\n{report}\n{}",
            xene.log_text()
        );
        if role != "admin" {
            assert_eq!(
                state(&xene, ADMIN_STATE).await,
                admin_state,
                "{role} changed what only admins may"
            );
        }
        if role == "no credential" || role == "viewer" {
            assert_eq!(
                state(&xene, EDITOR_STATE).await,
                editor_state,
                "{role} changed what only editors may"
            );
        }
    }
    // The server outlived it all.
    let (status, _) = xene.get("/healthz").await;
    assert_eq!(status, 200);
}
