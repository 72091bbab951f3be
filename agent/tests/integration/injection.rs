//! Values from outside the spec (params, task outputs) are data: hostile
//! ones reach scripts unchanged as words, and none of them runs, on either
//! runtime, wherever the template stands in the script.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;
use xene_core::status::RunStatus;

use crate::util::{self, busybox_image, docker_leftovers, run_with};

/// Each tries to create a file under `PWN` if it ever runs as code.
const HOSTILE: &[&str] = &[
    "$(touch PWN/pwned-1)",
    "'; touch PWN/pwned-2; #",
    "\"; touch PWN/pwned-3; #",
    "`touch PWN/pwned-4`",
    "x\ntouch PWN/pwned-5",
    "${IFS}&& touch PWN/pwned-6 || '",
];

/// A pipeline reading five hostile params and a hostile task output in
/// plain and double-quoted positions, handed on to a nested shell through
/// the environment (single quotes are refused), and in env values;
/// `image` is the task image line (empty on the shell runtime). Each task
/// ends with a step that fails if any file under `PWN` appeared.
fn workflow(image: &str, pwn: &str) -> (String, BTreeMap<String, String>) {
    let names: Vec<String> = (1..=HOSTILE.len()).map(|i| format!("h{i}")).collect();
    let params: BTreeMap<String, String> = names
        .iter()
        .zip(HOSTILE)
        .map(|(n, v)| (n.clone(), v.replace("PWN", pwn)))
        .collect();
    let refs = |quote: &str| -> String {
        names
            .iter()
            .map(|n| format!("{quote}{{{{ params.{n} }}}}{quote}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let guard = format!("if ls {pwn}/pwned-* 2>/dev/null; then exit 1; fi");
    let task = |name: &str, deps: &str, env: &str, run: &str| {
        format!(
            "      {name}:\n{image}        depends_on: [{deps}]\n        env: {{{env}}}\n        steps:\n          - {run:?}\n          - {guard:?}\n"
        )
    };
    let mut yaml = String::from("name: hostile\npipelines:\n  p:\n    params:\n      n: 41\n");
    for n in &names {
        yaml.push_str(&format!("      {n}: x\n"));
    }
    yaml.push_str("    tasks:\n");
    yaml.push_str(&task(
        "plain",
        "",
        "",
        &format!("printf '%s|' {} > \"$XENE_OUTPUT\"", refs("")),
    ));
    yaml.push_str(&task(
        "double",
        "",
        "",
        &format!("printf '%s|' {} > \"$XENE_OUTPUT\"", refs("\"")),
    ));
    yaml.push_str(&task(
        "single",
        "",
        "",
        // Templates inside single quotes are refused: a nested shell gets
        // the variables through the environment instead.
        &format!(
            "sh -c 'printf \"%s|\" {}' > \"$XENE_OUTPUT\"",
            names
                .iter()
                .map(|n| format!("\"$XENE_PARAM_{}\"", n.to_uppercase()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ));
    // Arithmetic evaluates a bare value as an expression: only integers
    // get in, a hostile value counts as 0.
    yaml.push_str(&task(
        "arith",
        "",
        "",
        "printf '%s|%s|%s' $(( {{ params.n }} + 1 )) \"$(( {{ params.h1 }} + 0 ))\" $(( {{ params.h6 }} * 2 )) > \"$XENE_OUTPUT\"",
    ));
    yaml.push_str(&task(
        "produce",
        "",
        "",
        "printf '%s' \"$XENE_PARAM_H2$XENE_PARAM_H1\" > \"$XENE_OUTPUT\"",
    ));
    yaml.push_str(&task(
        "consume",
        "produce",
        "FROM_ENV: \"{{ tasks.produce.output }}\"",
        "printf '%s|' {{ tasks.produce.output }} \"$FROM_ENV\" \"$XENE_OUTPUT_PRODUCE\" > \"$XENE_OUTPUT\"",
    ));
    (yaml, params)
}

fn check(run: &util::Run, pwn: &str) {
    assert_eq!(run.report.status, RunStatus::Success, "{:#?}", run.report);
    let all: String = HOSTILE
        .iter()
        .map(|v| format!("{}|", v.replace("PWN", pwn)))
        .collect();
    for task in ["plain", "double", "single"] {
        assert_eq!(
            run.task(task).output.as_deref(),
            Some(all.as_str()),
            "{task}"
        );
    }
    assert_eq!(run.task("arith").output.as_deref(), Some("42|0|0"));
    let produced = format!("{}{}", HOSTILE[1], HOSTILE[0]).replace("PWN", pwn);
    assert_eq!(
        run.task("produce").output.as_deref(),
        Some(produced.as_str())
    );
    assert_eq!(
        run.task("consume").output.as_deref(),
        Some(format!("{produced}|{produced}|{produced}|").as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_are_data_on_the_shell_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let pwn = dir.path().to_str().unwrap();
    let (yaml, params) = workflow("", pwn);
    let run = run_with(
        &yaml,
        util::config(),
        params,
        CancellationToken::new(),
        |_| {},
    )
    .await;
    check(&run, pwn);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "a hostile value ran: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_are_data_on_the_docker_runtime() {
    let image = format!("        image: {}\n", busybox_image());
    let (yaml, params) = workflow(&image, "/tmp");
    let run = run_with(
        &yaml,
        util::config(),
        params,
        CancellationToken::new(),
        |_| {},
    )
    .await;
    check(&run, "/tmp");
    assert_eq!(docker_leftovers(&run.report.run_id), Vec::<String>::new());
}
