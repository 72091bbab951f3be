//! `validate`, `apply` with its diff and dry run, `get`, `describe`, `delete`.

use crate::util::{Home, Xene, sqlite_url, write};

const V1: &str = "\
name: hello
description: says hello
pipelines:
  greet:
    tasks:
      say:
        steps:
          - run: echo hello
";

const V2: &str = "\
name: hello
description: says hello
pipelines:
  greet:
    tasks:
      say:
        steps:
          - run: echo hello there
";

#[tokio::test]
async fn validate_reports_every_fault_with_its_path_and_line() {
    let home = Home::new();
    let bad = write(
        &home,
        "bad.yaml",
        "\
name: broken
pipelines:
  p:
    tasks:
      a:
        depends_on: [nope]
        steps:
          - run: echo a
      b:
        timeout: forever
        steps:
          - run: echo b
",
    );
    let out = home.run(&["validate", bad.to_str().unwrap()]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("pipelines.p.tasks.a.depends_on[0]: ")
            && out.stderr.contains("(line 6)"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("pipelines.p.tasks.b.timeout: ") && out.stderr.contains("(line 10)"),
        "{out:?}"
    );
    assert!(out.stderr.contains("2 fault(s)"), "{out:?}");

    let good = write(&home, "good.yaml", V1);
    let out = home.run(&["validate", good.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("workflow \"hello\" is valid"),
        "{out:?}"
    );

    let out = home.run(&["validate", "/nonexistent/x.yaml"]).await;
    assert_eq!(out.code, 2, "{out:?}");
}

#[tokio::test]
async fn apply_shows_the_diff_then_get_describe_and_delete() {
    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    let server = ["--server", xene.base.as_str()];
    let file = write(&home, "wf/hello.yaml", V1);
    let file = file.to_str().unwrap();

    // New: applied as version 1, with no token given (the local admin one).
    let out = home
        .run(&[&server[..], &["apply", "-f", file]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("workflow/hello applied: version 1"),
        "{out:?}"
    );
    assert!(out.stderr.contains("workflow/hello is new"), "{out:?}");

    // A dry run shows the diff and changes nothing.
    write(&home, "wf/hello.yaml", V2);
    let out = home
        .run(&[&server[..], &["apply", "-f", file, "--dry-run"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("-          - run: echo hello\n"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("+          - run: echo hello there\n"),
        "{out:?}"
    );
    assert!(out.stderr.contains("dry run"), "{out:?}");
    // The server validated it and says what applying would do.
    assert!(
        out.stdout
            .contains("workflow/hello would be applied: version 2"),
        "{out:?}"
    );
    assert_eq!(xene.get("/api/v1/workflows/hello").await["version"], 1);

    // A directory: the diff again, then version 2; once more is unchanged.
    let dir = home.path("wf");
    let dir = dir.to_str().unwrap();
    let out = home
        .run(&[&server[..], &["apply", "-f", dir]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("+          - run: echo hello there\n"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("workflow/hello applied: version 2"),
        "{out:?}"
    );
    let out = home
        .run(&[&server[..], &["apply", "-f", file]].concat())
        .await;
    assert!(
        out.stdout.contains("workflow/hello unchanged: version 2"),
        "{out:?}"
    );

    // From stdin, invalid: the server's faults with path and line, exit 2.
    let mut cmd = home.xenectl(&[&server[..], &["apply", "-f", "-"]].concat());
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"name: x\npipelines:\n  p:\n    tasks:\n      t:\n        steps: []\n")
            .await
            .unwrap();
    }
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pipelines.p.tasks.t.steps") && stderr.contains("(line 6)"),
        "{stderr}"
    );

    // get, as a table and as JSON and YAML.
    let out = home
        .run(&[&server[..], &["get", "workflows"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let header = out.stdout.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("VERSION"),
        "{out:?}"
    );
    let row = out.stdout.lines().nth(1).unwrap();
    assert!(row.starts_with("hello ") && row.contains(" 2 "), "{out:?}");
    let out = home
        .run(&[&server[..], &["get", "workflows", "-o", "json"]].concat())
        .await;
    assert_eq!(out.json()["workflows"][0]["name"], "hello");
    let out = home
        .run(&[&server[..], &["get", "pipelines", "-o", "yaml"]].concat())
        .await;
    assert!(
        out.stdout.contains("  name: \"greet\"") || out.stdout.contains("- name: \"greet\""),
        "{out:?}"
    );
    assert!(out.stdout.contains("workflow: \"hello\""), "{out:?}");

    let out = home
        .run(&[&server[..], &["describe", "workflow", "hello"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("Version:     2") && out.stdout.contains("greet"),
        "{out:?}"
    );

    // Delete; then it is not found (exit 4).
    let out = home
        .run(&[&server[..], &["delete", "workflow", "hello"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = home
        .run(&[&server[..], &["describe", "workflow", "hello"]].concat())
        .await;
    assert_eq!(out.code, 4, "{out:?}");
}
