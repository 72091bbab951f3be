//! `run -p` against typed params (every fault at once), and `hooks`:
//! rotate (the secret alone on stdout), show, deliveries with reasons.

use crate::util::{Home, Xene, sqlite_url, write};

const SPEC: &str = "\
name: trig
pipelines:
  deploy:
    params:
      tag: {type: string, required: true}
      replicas: {type: number, default: 1}
      target: {type: choice, options: [staging, production], default: staging}
    tasks:
      t:
        steps: [\"echo {{ params.tag }}\"]
  push:
    trigger: webhook
    tasks:
      t:
        steps: ['true']
  nightly:
    trigger: {cron: \"0 3 * * *\", timezone: Europe/Paris}
    tasks:
      t:
        steps: ['true']
";

#[tokio::test]
async fn typed_params_and_hooks_from_the_command_line() {
    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    let server = ["--server", xene.base.as_str()];
    let file = write(&home, "trig.yaml", SPEC);
    let out = home
        .run(&[&server[..], &["apply", "-f", file.to_str().unwrap()]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");

    // A cron pipeline's next fire, in UTC: 03:00 in Paris is 01:00 or 02:00.
    let out = home
        .run(&[&server[..], &["describe", "workflow", "trig"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("NEXT FIRE (UTC)"), "{out:?}");
    let nightly = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("nightly"))
        .unwrap();
    assert!(
        nightly.contains(" 01:00:00") || nightly.contains(" 02:00:00"),
        "{out:?}"
    );

    let out = home
        .run(
            &[
                &server[..],
                &[
                    "run",
                    "trig/deploy",
                    "-p",
                    "replicas=lots",
                    "-p",
                    "target=moon",
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    for fault in [
        "param \"replicas\": \"lots\" is not a number",
        "param \"tag\": required string param without a value",
        "param \"target\": \"moon\" is not one of the options: staging, production",
    ] {
        assert!(out.stderr.contains(fault), "{fault}: {out:?}");
    }
    let out = home
        .run(
            &[
                &server[..],
                &[
                    "run",
                    "trig/deploy",
                    "-p",
                    "tag=v1",
                    "-p",
                    "replicas=3",
                    "--wait",
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");

    let out = home
        .run(&[&server[..], &["hooks", "rotate", "trig/push"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let secret = out.stdout.trim();
    assert!(
        secret.starts_with("whsec_") && !secret.contains('\n'),
        "{out:?}"
    );
    let url = format!("{}/api/v1/hooks/", xene.base);
    assert!(out.stderr.contains(&url), "{out:?}");
    let out = home
        .run(&[&server[..], &["hooks", "show", "trig/push"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&url) && !out.stdout.contains(secret),
        "{out:?}"
    );
    // `get hooks` lists every webhook pipeline, with its URL once made.
    let listed = home.run(&[&server[..], &["get", "hooks"]].concat()).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.starts_with("PIPELINE"), "{listed:?}");
    assert!(
        listed.stdout.contains("trig/push") && listed.stdout.contains(&url),
        "{listed:?}"
    );
    assert!(!listed.stdout.contains(secret), "{listed:?}");
    let described = home
        .run(&[&server[..], &["describe", "pipeline", "trig/push"]].concat())
        .await;
    assert_eq!(described.code, 0, "{described:?}");
    assert!(
        described.stdout.contains("Hook URL:") && described.stdout.contains(&url),
        "{described:?}"
    );
    assert!(!described.stdout.contains(secret), "{described:?}");
    let hook = home
        .run(&[&server[..], &["describe", "hook", "trig/push"]].concat())
        .await;
    assert_eq!(hook.code, 0, "{hook:?}");
    assert!(
        hook.stdout.contains(&url) && !hook.stdout.contains(secret),
        "{hook:?}"
    );
    let hook_url = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("URL:"))
        .unwrap()
        .trim()
        .to_string();

    // An unsigned delivery is refused, and listed with why.
    let answer = reqwest::Client::new()
        .post(&hook_url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let out = home
        .run(&[&server[..], &["hooks", "deliveries", "trig/push"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("refused") && out.stdout.contains("unsigned"),
        "{out:?}"
    );
    let out = home
        .run(&[&server[..], &["hooks", "show", "trig/deploy"]].concat())
        .await;
    assert_eq!(out.code, 4, "{out:?}");
}
