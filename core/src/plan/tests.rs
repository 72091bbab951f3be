use std::collections::BTreeMap;

use super::*;
use crate::spec::Pipeline;

fn result(status: TaskStatus, output: Option<&str>) -> TaskResult {
    TaskResult {
        caches: Default::default(),
        status,
        output: output.map(str::to_string),
    }
}

fn results(list: &[(&str, TaskStatus)]) -> BTreeMap<String, TaskResult> {
    list.iter()
        .map(|(name, status)| (name.to_string(), result(*status, None)))
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn pipeline(yaml: &str) -> Pipeline {
    let text = format!("name: w\npipelines:\n  p:\n{yaml}");
    let mut workflow = crate::parse_workflow(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    workflow.pipelines.remove("p").expect("pipeline p")
}

#[test]
fn without_a_condition_a_task_runs_when_every_dependency_succeeded() {
    let none = BTreeMap::new();
    let ok = results(&[("a", TaskStatus::Success), ("b", TaskStatus::Success)]);
    assert_eq!(
        verdict(None, &names(&["a", "b"]), &ok, &none, false),
        Verdict::Run
    );
    assert_eq!(
        verdict(None, &[], &BTreeMap::new(), &none, false),
        Verdict::Run
    );
    for status in [
        TaskStatus::Error,
        TaskStatus::Skipped,
        TaskStatus::NotExecuted,
        TaskStatus::Cancelled,
        TaskStatus::Unknown,
    ] {
        let mixed = results(&[("a", TaskStatus::Success), ("b", status)]);
        assert_eq!(
            verdict(None, &names(&["a", "b"]), &mixed, &none, false),
            Verdict::NotExecuted,
            "{status:?}"
        );
    }
    // A dependency without a result has not succeeded.
    let partial = results(&[("a", TaskStatus::Success)]);
    assert_eq!(
        verdict(None, &names(&["a", "b"]), &partial, &none, false),
        Verdict::NotExecuted
    );
}

#[test]
fn a_condition_alone_decides() {
    let params = BTreeMap::from([("env".to_string(), "prod".to_string())]);
    let failed = results(&[("a", TaskStatus::Error)]);
    let deps = names(&["a"]);
    let on_failure = "tasks.a.status == 'error'";
    assert_eq!(
        verdict(Some(on_failure), &deps, &failed, &params, false),
        Verdict::Run
    );
    let on_success = "tasks.a.status == 'success'";
    assert_eq!(
        verdict(Some(on_success), &deps, &failed, &params, false),
        Verdict::Skip
    );
    assert_eq!(
        verdict(Some("params.env == 'prod'"), &deps, &failed, &params, false),
        Verdict::Run
    );
    let Verdict::Fail(error) = verdict(Some("tasks.a.status =="), &deps, &failed, &params, false)
    else {
        panic!("a condition that does not parse must fail the task");
    };
    assert!(error.starts_with("condition: "), "{error}");
    assert_eq!(
        Verdict::Fail(error.clone()).ending(),
        Some((TaskStatus::Error, Some(error)))
    );
}

#[test]
fn a_cancelled_run_starts_nothing_more() {
    let ok = results(&[("a", TaskStatus::Success)]);
    let none = BTreeMap::new();
    assert_eq!(
        verdict(None, &names(&["a"]), &ok, &none, true),
        Verdict::NotExecuted
    );
    assert_eq!(
        verdict(Some("true"), &[], &ok, &none, true),
        Verdict::NotExecuted
    );
}

#[test]
fn a_run_succeeds_when_every_task_succeeded_or_was_skipped() {
    use TaskStatus::*;
    assert_eq!(run_status([Success, Skipped], false), RunStatus::Success);
    assert_eq!(run_status([], false), RunStatus::Success);
    assert_eq!(run_status([Success, NotExecuted], false), RunStatus::Error);
    assert_eq!(run_status([Success, Error], false), RunStatus::Error);
    assert_eq!(run_status([Success, Unknown], false), RunStatus::Unknown);
    assert_eq!(
        run_status([Unknown, NotExecuted], false),
        RunStatus::Unknown
    );
    assert_eq!(run_status([Unknown, Error], false), RunStatus::Error);
    assert_eq!(run_status([Success], true), RunStatus::Cancelled);
}

#[test]
fn reads_are_dependencies_and_every_task_a_template_or_condition_names() {
    let p = pipeline(
        r#"    tasks:
      a: {steps: ["echo a > $XENE_OUTPUT"]}
      b: {depends_on: [a], steps: ["true"]}
      c: {depends_on: [b], steps: ["true"]}
      d: {depends_on: [c], steps: ["true"]}
      e:
        depends_on: [d]
        if: "tasks.b.status == 'success'"
        image: "alpine:{{ tasks.c.output }}"
        env: {X: "{{ tasks.a.output }}"}
        steps:
          - name: s
            run: echo {{ params.v }}
            env: {Y: "{{ tasks.d.output }}"}
    params:
      v: {default: "1"}
"#,
    );
    let reads: Vec<String> = reads(&p.tasks["e"]).into_iter().collect();
    assert_eq!(reads, names(&["a", "b", "c", "d"]));
    assert!(super::reads(&p.tasks["a"]).is_empty());
}

#[test]
fn cache_keys_and_restore_keys_read_what_they_name() {
    // `c`'s cache key and restore key name tasks two levels up: the agent
    // renders them, so their results must come with the dispatch.
    let p = pipeline(
        r#"    tasks:
      a: {steps: ["echo a > $XENE_OUTPUT"]}
      z: {steps: ["echo z > $XENE_OUTPUT"]}
      b: {depends_on: [a, z], steps: ["true"]}
      c:
        depends_on: [b]
        caches:
          - name: k
            key: "k-{{ tasks.a.output }}"
            restore_keys: ["k-", "z-{{ tasks.z.output }}-"]
            paths: [x]
        steps: ["true"]
"#,
    );
    let reads: Vec<String> = reads(&p.tasks["c"]).into_iter().collect();
    assert_eq!(reads, names(&["a", "b", "z"]));
}

#[test]
fn render_task_renders_templates_and_merges_the_environment() {
    let p = pipeline(
        r#"    env: {SHARED: "{{ params.v }}", OVER: pipeline}
    tasks:
      a: {steps: ["true"]}
      b:
        depends_on: [a]
        image: "alpine:{{ params.v }}"
        env: {OVER: task}
        secrets: [TOKEN]
        steps:
          - name: s
            run: echo {{ tasks.a.output }}
            env: {STEP: "{{ tasks.a.output }}"}
        post: [{name: p, run: "true"}]
    params:
      v: {default: "1"}
"#,
    );
    let params = BTreeMap::from([("v".to_string(), "3".to_string())]);
    let done = BTreeMap::from([("a".to_string(), result(TaskStatus::Success, Some("out")))]);
    let ctx = EvalContext {
        tasks: &done,
        params: &params,
    };
    let secrets = BTreeMap::from([
        ("TOKEN".to_string(), SecretValue::new("t0k")),
        ("OTHER".to_string(), SecretValue::new("no")),
    ]);
    let ids = TaskIds {
        run_id: "7-2-x",
        task: "b",
        attempt: 2,
    };
    let rendered = render_task(&p.env, &p.tasks["b"], &ctx, &secrets, ids).unwrap();
    assert_eq!(rendered.image.as_deref(), Some("alpine:3"));
    assert_eq!(rendered.steps.len(), 1);
    assert_eq!(rendered.post.len(), 1);
    let step = &rendered.steps[0];
    assert_eq!(step.name, "s");
    assert!(step.script.contains("XENE_OUTPUT_A"), "{}", step.script);
    assert!(
        !step.script.contains("out"),
        "values never become script text"
    );
    let env = |k: &str| step.env.get(k).map(String::as_str);
    assert_eq!(env("SHARED"), Some("3"));
    assert_eq!(env("OVER"), Some("task"));
    assert_eq!(env("STEP"), Some("out"));
    assert_eq!(env("TOKEN"), Some("t0k"));
    assert_eq!(env("OTHER"), None, "only the task's secrets");
    assert_eq!(env("XENE_PARAM_V"), Some("3"));
    assert_eq!(env("XENE_OUTPUT_A"), Some("out"));
    assert_eq!(env("XENE_RUN_ID"), Some("7-2-x"));
    assert_eq!(env("XENE_ATTEMPT"), Some("2"));
    assert_eq!(env("XENE_TASK"), Some("b"));
    assert_eq!(env("XENE_STEP"), Some("s"));
    assert_eq!(
        rendered.post[0].env.get("XENE_STEP").map(String::as_str),
        Some("p")
    );

    let error = render_task(&p.env, &p.tasks["b"], &ctx, &BTreeMap::new(), ids).unwrap_err();
    assert_eq!(error, r#"secret "TOKEN" was not provided"#);
    let nothing = BTreeMap::new();
    let early = EvalContext {
        tasks: &nothing,
        params: &params,
    };
    let error = render_task(&p.env, &p.tasks["b"], &early, &secrets, ids).unwrap_err();
    assert!(error.starts_with("step s env STEP: "), "{error}");
}

fn run(walk: &mut Walk, decisions: Vec<Decision>, outcome: impl Fn(&str) -> TaskStatus) {
    let mut ready: Vec<String> = Vec::new();
    let push = |decisions: Vec<Decision>, ready: &mut Vec<String>| {
        for d in decisions {
            if let Decision::Run(task) = d {
                ready.push(task);
            }
        }
    };
    push(decisions, &mut ready);
    while let Some(task) = ready.pop() {
        let status = outcome(&task);
        let next = walk.finish(&task, result(status, None), false);
        push(next, &mut ready);
    }
}

#[test]
fn a_walk_runs_what_its_dependencies_allow() {
    let p = pipeline(
        r#"    tasks:
      a: {steps: ["true"]}
      b: {depends_on: [a], steps: ["false"]}
      c: {depends_on: [b], steps: ["true"]}
      d: {depends_on: [b], if: "tasks.b.status == 'error'", steps: ["true"]}
      e: {depends_on: [c], if: "tasks.c.status == 'success'", steps: ["true"]}
      f: {steps: ["true"]}
"#,
    );
    let mut walk = Walk::new(&p, BTreeMap::new(), BTreeMap::new()).unwrap();
    assert_eq!(walk.len(), 6);
    let start = walk.start(false);
    assert_eq!(
        start,
        vec![Decision::Run("a".into()), Decision::Run("f".into())]
    );
    assert!(!walk.is_done());
    run(&mut walk, start, |t| {
        if t == "b" {
            TaskStatus::Error
        } else {
            TaskStatus::Success
        }
    });
    assert!(walk.is_done());
    let statuses: Vec<(&str, TaskStatus)> = walk
        .results()
        .iter()
        .map(|(k, v)| (k.as_str(), v.status))
        .collect();
    use TaskStatus::*;
    assert_eq!(
        statuses,
        vec![
            ("a", Success),
            ("b", Error),
            ("c", NotExecuted),
            ("d", Success),
            ("e", Skipped),
            ("f", Success)
        ]
    );
    assert_eq!(walk.run_status(false), RunStatus::Error);
    // A task already ended, or unknown, decides nothing.
    assert!(walk.finish("a", result(Success, None), false).is_empty());
    assert!(walk.finish("zz", result(Success, None), false).is_empty());
}

#[test]
fn a_walk_keeps_completed_results_and_stops_starting_on_cancel() {
    let p = pipeline(
        r#"    tasks:
      a: {steps: ["true"]}
      b: {depends_on: [a], steps: ["true"]}
      c: {depends_on: [b], steps: ["true"]}
"#,
    );
    let completed = BTreeMap::from([("a".to_string(), result(TaskStatus::Success, Some("o")))]);
    let mut walk = Walk::new(&p, BTreeMap::new(), completed).unwrap();
    assert_eq!(walk.start(false), vec![Decision::Run("b".into())]);
    assert_eq!(walk.results()["a"].output.as_deref(), Some("o"));
    let next = walk.finish("b", result(TaskStatus::Cancelled, None), true);
    assert_eq!(
        next,
        vec![Decision::End {
            task: "c".into(),
            status: TaskStatus::NotExecuted,
            error: None
        }]
    );
    assert!(walk.is_done());
    assert_eq!(walk.run_status(true), RunStatus::Cancelled);
}

#[test]
fn a_bad_condition_fails_its_task_and_cascades() {
    let p = pipeline(
        r#"    tasks:
      a: {steps: ["true"]}
      b: {depends_on: [a], steps: ["true"]}
      c: {depends_on: [b], steps: ["true"]}
"#,
    );
    let mut p = p;
    p.tasks.get_mut("b").unwrap().condition = Some("tasks.a.status ==".into());
    let mut walk = Walk::new(&p, BTreeMap::new(), BTreeMap::new()).unwrap();
    assert_eq!(walk.start(false), vec![Decision::Run("a".into())]);
    let next = walk.finish("a", result(TaskStatus::Success, None), false);
    assert_eq!(next.len(), 2);
    let Decision::End {
        task,
        status: TaskStatus::Error,
        error: Some(error),
    } = &next[0]
    else {
        panic!("{next:?}");
    };
    assert_eq!(task, "b");
    assert!(error.starts_with("condition: "), "{error}");
    assert_eq!(
        next[1],
        Decision::End {
            task: "c".into(),
            status: TaskStatus::NotExecuted,
            error: None
        }
    );
}
