//! `caches ls|rm` against a real server whose built-in agent saved a cache
//! entry: listed with the workflow's usage and quota, removed by its id
//! (another id is not found), and gone from the next listing.

use crate::util::{Home, Xene, sqlite_url, write};

const SPEC: &str = r#"name: cached
pipelines:
  p:
    tasks:
      build:
        caches:
          - name: deps
            key: deps-1
            paths: [deps]
        steps:
          - run: mkdir -p deps && printf 'abc' > deps/a && printf 'de' > deps/b
"#;

#[tokio::test]
async fn caches_are_listed_and_removed() {
    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    let server = ["--server", xene.base.as_str()];
    let xenectl = async |args: &[&str]| home.run(&[&server[..], args].concat()).await;
    let file = write(&home, "cached.yaml", SPEC);
    let out = xenectl(&["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{out:?}");
    // A miss, then the entry is saved with the task's success.
    let out = xenectl(&["run", "cached/p", "--wait"]).await;
    assert_eq!(out.code, 0, "{out:?}");

    let out = xenectl(&["caches", "ls", "cached"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["ID", "NAME", "KEY", "FILES", "SIZE", "USED", "CREATED"],
        "{out:?}"
    );
    assert_eq!(rows.len(), 2, "{out:?}");
    assert_eq!(rows[1][1..4], ["deps", "deps-1", "2"], "{out:?}");
    assert!(
        out.stderr.starts_with("1 entry, ") && out.stderr.contains("; quota 10.0 GiB"),
        "{out:?}"
    );
    let out = xenectl(&["caches", "ls", "cached", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let list = out.json();
    assert_eq!(list["total"], 1, "{list}");
    let id = list["entries"][0]["id"].as_i64().unwrap().to_string();
    assert_eq!(rows[1][0], id);

    let out = xenectl(&["caches", "rm", "cached", "999999"]).await;
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains("has no cache entry 999999"), "{out:?}");
    let out = xenectl(&["caches", "rm", "nobody", &id]).await;
    assert_eq!(out.code, 4, "{out:?}");
    let out = xenectl(&["caches", "rm", "cached", &id]).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            0,
            format!("cache/{id} of workflow/cached deleted\n").as_str()
        ),
        "{out:?}"
    );
    let out = xenectl(&["caches", "ls", "cached"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr
            .contains("workflow cached has no caches; quota 10.0 GiB"),
        "{out:?}"
    );
}
