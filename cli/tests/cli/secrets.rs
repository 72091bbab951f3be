//! `secrets set|rm|list|rotate-key` and `get secrets`: values go in through
//! stdin or a file, never through argv, and never come back out.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::util::{Home, LONG, Xene, argv_with, run, sqlite_url, write};

async fn run_in(
    xenectl: &impl Fn(&[&str]) -> tokio::process::Command,
    args: &[&str],
) -> crate::util::Out {
    run(xenectl(args)).await
}

/// `xenectl secrets set NAME --from-file FILE`.
async fn set_from_file(
    xenectl: &impl Fn(&[&str]) -> tokio::process::Command,
    name: &str,
    file: &str,
) -> crate::util::Out {
    run_in(xenectl, &["secrets", "set", name, "--from-file", file]).await
}

/// `xenectl ARGS` against `xene`.
fn xenectl_of<'a>(
    home: &'a Home,
    xene: &'a Xene,
) -> impl Fn(&[&str]) -> tokio::process::Command + 'a {
    move |args| {
        let mut cmd = home.xenectl(args);
        cmd.env("XENE_SERVER", &xene.base);
        cmd
    }
}

const VALUE: &str = "tok-9f8e7d6c5b4a";

#[tokio::test]
async fn secrets_are_set_from_stdin_or_a_file_and_never_shown() {
    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    let xenectl = xenectl_of(&home, &xene);

    // While `secrets set` waits for its value, no process's argv holds it.
    let mut set = xenectl(&["secrets", "set", "DEPLOY_TOKEN"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = set.stdin.take().unwrap();
    stdin.write_all(VALUE.as_bytes()).await.unwrap();
    assert_eq!(argv_with(VALUE), Vec::<String>::new());
    stdin.write_all(b"\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(LONG, set.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "secret/DEPLOY_TOKEN created"
    );

    let file = write(&home, "value.txt", "file-value-1234");
    let out = set_from_file(&xenectl, "DEPLOY_TOKEN", file.to_str().unwrap()).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "secret/DEPLOY_TOKEN replaced");

    let out = run_in(&xenectl, &["get", "secrets"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("NAME"), "{out:?}");
    assert!(
        out.stdout.contains("DEPLOY_TOKEN") && out.stdout.contains("(global)"),
        "{out:?}"
    );
    let out = run_in(&xenectl, &["get", "secrets", "-o", "json"]).await;
    assert_eq!(out.json()["secrets"][0]["name"], "DEPLOY_TOKEN", "{out:?}");
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains(VALUE) && !text.contains("file-value-1234"),
            "{out:?}"
        );
    }

    // Refusals: a short value (2), an unknown workflow (4), a missing file (2).
    let short = write(&home, "short.txt", "abc");
    let out = set_from_file(&xenectl, "OTHER", short.to_str().unwrap()).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("at least 4"), "{out:?}");
    let out = run_in(
        &xenectl,
        &[
            "secrets",
            "set",
            "OTHER",
            "--workflow",
            "nosuch",
            "--from-file",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 4, "{out:?}");
    let out = set_from_file(&xenectl, "OTHER", "/nonexistent/file").await;
    assert_eq!(out.code, 2, "{out:?}");

    let out = run_in(&xenectl, &["describe", "secret", "DEPLOY_TOKEN"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("global") && out.stdout.contains("(never shown)"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("file-value-1234"), "{out:?}");
    let out = run_in(
        &xenectl,
        &["describe", "secret", "DEPLOY_TOKEN", "--workflow", "nosuch"],
    )
    .await;
    assert_eq!(out.code, 4, "{out:?}");

    // Tokens are described the same way, never the token itself.
    let out = run_in(&xenectl, &["tokens", "create", "described"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let token = out.stdout.trim().to_string();
    let listed = run_in(&xenectl, &["get", "tokens", "-o", "json"]).await;
    let id = listed.json()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "described")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = run_in(&xenectl, &["describe", "token", &id]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("described") && out.stdout.contains("active"),
        "{out:?}"
    );
    assert!(!out.stdout.contains(&token), "{out:?}");

    let out = run_in(&xenectl, &["secrets", "rotate-key"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("re-encrypted"), "{out:?}");

    let out = run_in(&xenectl, &["secrets", "rm", "DEPLOY_TOKEN"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = run(xenectl(&["secrets", "rm", "DEPLOY_TOKEN"])).await;
    assert_eq!(out.code, 4, "{out:?}");
}

const GUARDED: &str = "
name: guarded
pipelines:
  p:
    tasks:
      t:
        secrets: [PROD_KEY]
        steps: ['test \"$PROD_KEY\" = prod-value-77']
";

#[tokio::test]
async fn a_protected_secret_waits_for_xenectl_approve() {
    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    let xenectl = xenectl_of(&home, &xene);
    let value = write(&home, "prod.txt", "prod-value-77");
    let out = set_from_file(&xenectl, "PROD_KEY", value.to_str().unwrap()).await;
    assert_eq!(out.code, 0, "{out:?}");
    // Applied before the protection: this version was never approved.
    let spec = write(&home, "guarded.yaml", GUARDED);
    let out = run_in(&xenectl, &["apply", "-f", spec.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = run_in(
        &xenectl,
        &[
            "secrets",
            "set",
            "PROD_KEY",
            "--keep-value",
            "--allow",
            "guarded/p",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("protected; allowed: guarded/p"),
        "{out:?}"
    );
    let out = run_in(&xenectl, &["get", "secrets"]).await;
    assert!(out.stdout.contains("yes: guarded/p"), "{out:?}");

    let out = run_in(&xenectl, &["run", "guarded/p"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("version 1")
            && out.stderr.contains("xenectl approve guarded --version 1"),
        "{out:?}"
    );
    let out = run_in(&xenectl, &["describe", "workflow", "guarded"]).await;
    assert!(
        out.stdout.contains("PROD_KEY") && out.stdout.contains("Approved:    no"),
        "{out:?}"
    );
    let out = run_in(&xenectl, &["approve", "guarded", "--version", "1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("approved (protected secrets: PROD_KEY)"),
        "{out:?}"
    );
    let out = run_in(&xenectl, &["run", "guarded/p", "--wait"]).await;
    assert_eq!(out.code, 0, "the step saw the value: {out:?}");

    // Revoked: refused again.
    let revoke = ["approve", "guarded", "--version", "1", "--revoke"];
    let out = run_in(&xenectl, &revoke).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("approval revoked"), "{out:?}");
    let out = run_in(&xenectl, &["run", "guarded/p"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("not approved"), "{out:?}");

    // An admin's apply approves only with --approve; a starter's choice
    // (env from a param) must be accepted first.
    let spec = write(&home, "guarded2.yaml", GUARDED_ENV);
    let spec = spec.to_str().unwrap();
    let out = run_in(&xenectl, &["apply", "-f", spec]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("xenectl approve guarded --version 2"),
        "stored unapproved: {out:?}"
    );
    let out = run_in(&xenectl, &["apply", "-f", spec, "--approve"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("env GREETING") && out.stderr.contains("--accept-run-time-choices"),
        "{out:?}"
    );
    let out = run_in(&xenectl, &["approve", "guarded", "--version", "2"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("env GREETING"), "{out:?}");
    let accept = [
        "apply",
        "-f",
        spec,
        "--approve",
        "--accept-run-time-choices",
    ];
    let out = run_in(&xenectl, &accept).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("workflow/guarded version 2 approved for protected secrets"),
        "{out:?}"
    );
    let out = run_in(&xenectl, &["describe", "workflow", "guarded"]).await;
    assert!(!out.stdout.contains("Approved:    no"), "{out:?}");
}

/// GUARDED with an env value whoever starts a run chooses.
const GUARDED_ENV: &str = "
name: guarded
pipelines:
  p:
    params: {who: world}
    tasks:
      t:
        secrets: [PROD_KEY]
        env: {GREETING: '{{ params.who }}'}
        steps: ['test \"$PROD_KEY\" = prod-value-77']
";
