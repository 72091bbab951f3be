use std::collections::{BTreeMap, BTreeSet};

use xene_core::context::TaskResult;
use xene_core::event::LogStream;
use xene_core::protocol::{AttemptRef, TaskDispatch};

use super::*;
use crate::ExecutorConfig;
use crate::connect::batch::{MAX_BATCH_BYTES, event_size};

const ATTEMPT: AttemptRef = AttemptRef { id: 1 };

/// A dispatch of task `t`, reading `reads` (by `depends_on`), whose step
/// sleeps: these tests never let it end by itself.
fn dispatch(attempt: AttemptRef, reads: &[&str], more_outputs: bool) -> TaskDispatch {
    let mut yaml = String::from("name: w\npipelines:\n  p:\n    tasks:\n");
    for read in reads {
        yaml += &format!("      {read}: {{steps: [\"true\"]}}\n");
    }
    yaml += &format!(
        "      t:\n        depends_on: [{}]\n        steps: [\"sleep 30\"]\n",
        reads.join(", ")
    );
    let workflow = xene_core::parse_workflow(&yaml).unwrap();
    TaskDispatch {
        cache_save: Default::default(),
        attempt,
        run_id: 3,
        task: "t".into(),
        number: 1,
        workflow: "w".into(),
        pipeline_name: "p".into(),
        spec: workflow.pipelines["p"].tasks["t"].clone(),
        pipeline_env: BTreeMap::new(),
        params: BTreeMap::new(),
        secrets: BTreeMap::new(),
        outputs: BTreeMap::new(),
        more_outputs,
        traceparent: None,
    }
}

fn attempts(capacity: usize) -> Attempts {
    Attempts::new(Arc::new(Executor::new(ExecutorConfig::default())), capacity)
}

fn success(output: &str) -> TaskResult {
    TaskResult {
        caches: Default::default(),
        status: TaskStatus::Success,
        output: Some(output.into()),
    }
}

fn log(data: &str) -> RunEvent {
    RunEvent::Log {
        task: "t".into(),
        step: "s".into(),
        stream: LogStream::Stdout,
        data: data.into(),
    }
}

#[tokio::test]
async fn batches_stay_under_the_size_bound_and_keep_every_event() {
    let mut attempts = attempts(1);
    attempts.dispatch(dispatch(ATTEMPT, &[], false)).unwrap();
    let line = "x".repeat(600 * 1024);
    for _ in 0..5 {
        attempts.apply(Report::Event(ATTEMPT, log(&line)));
    }
    let mut logged = 0;
    while let Some(AgentMessage::TaskEvents { events, .. }) = attempts.next_message() {
        let size: usize = events.iter().map(event_size).sum();
        assert!(
            events.len() == 1 || size <= MAX_BATCH_BYTES,
            "a batch of {size} bytes"
        );
        logged += events
            .iter()
            .filter(|e| matches!(e, RunEvent::Log { .. }))
            .count();
    }
    assert_eq!(logged, 5);
    attempts.cancel_all();
    attempts.finish_all().await;
}

/// Control characters take six bytes each in JSON: a batch of them must
/// still fit the server's message limit (8 MiB) as sent, with room.
#[tokio::test]
async fn batches_are_measured_as_sent() {
    let mut attempts = attempts(1);
    attempts.dispatch(dispatch(ATTEMPT, &[], false)).unwrap();
    let line = "\u{1}".repeat(MAX_LOGS_BYTES);
    for _ in 0..64 {
        attempts.apply(Report::Event(ATTEMPT, log(&line)));
    }
    let mut sent = 0;
    while let Some(message) = attempts.next_message() {
        let wire = serde_json::to_string(&message).unwrap().len();
        assert!(wire <= MAX_BATCH_BYTES, "a batch of {wire} bytes as sent");
        sent += 1;
    }
    assert!(sent >= 24, "{sent} batches");
    attempts.cancel_all();
    attempts.finish_all().await;
}

#[tokio::test]
async fn outputs_are_fetched_page_by_page_and_only_what_it_reads() {
    let mut attempts = attempts(1);
    let mut first = dispatch(ATTEMPT, &["a", "b", "c"], true);
    first.outputs.insert("a".into(), success("1"));
    attempts.dispatch(first).unwrap();
    assert_eq!(attempts.busy(), 1, "a fetching attempt takes its slot");
    assert_eq!(
        attempts.next_message(),
        Some(AgentMessage::FetchOutputs {
            attempt: ATTEMPT,
            after: Some("a".into())
        })
    );
    // One request in flight at a time.
    assert_eq!(attempts.next_message(), None);
    // A reconnect asks again.
    attempts.rewind();
    assert!(matches!(
        attempts.next_message(),
        Some(AgentMessage::FetchOutputs { .. })
    ));

    let page = BTreeMap::from([
        ("b".to_string(), success("2")),
        ("zz".to_string(), success("not read")),
    ]);
    attempts.outputs(ATTEMPT, page, Some("b".into()));
    assert_eq!(
        attempts.next_message(),
        Some(AgentMessage::FetchOutputs {
            attempt: ATTEMPT,
            after: Some("b".into())
        })
    );
    let fetching = attempts.attempts[&ATTEMPT].fetching.as_ref().unwrap();
    assert_eq!(
        fetching.dispatch.outputs.keys().collect::<Vec<_>>(),
        ["a", "b"],
        "a result it does not read is not taken in"
    );
    // The last page starts it: it reports its start, and asks no more.
    attempts.outputs(
        ATTEMPT,
        BTreeMap::from([("c".to_string(), success("3"))]),
        None,
    );
    assert!(attempts.attempts[&ATTEMPT].fetching.is_none());
    let report = attempts.next_report().await;
    assert!(
        matches!(
            &report,
            Report::Event(ATTEMPT, RunEvent::TaskStarted { attempt: 1, .. })
        ),
        "{report:?}"
    );
    attempts.cancel_all();
    attempts.finish_all().await;
}

#[tokio::test]
async fn a_page_that_goes_backwards_ends_the_attempt() {
    let mut attempts = attempts(1);
    attempts
        .dispatch(dispatch(ATTEMPT, &["a", "b"], true))
        .unwrap();
    attempts.next_message();
    attempts.outputs(
        ATTEMPT,
        BTreeMap::from([("b".to_string(), success("2"))]),
        Some("b".into()),
    );
    attempts.next_message();
    attempts.outputs(ATTEMPT, BTreeMap::new(), Some("a".into()));
    let Some(AgentMessage::TaskEvents { events, .. }) = attempts.next_message() else {
        panic!("the attempt reports its end");
    };
    assert!(
        matches!(
            &events[..],
            [RunEvent::TaskFinished {
                status: TaskStatus::Error,
                attempt: 0,
                error: Some(_),
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(attempts.busy(), 0);
}

#[tokio::test]
async fn a_read_result_missing_after_the_last_page_ends_the_attempt() {
    let mut attempts = attempts(1);
    let mut first = dispatch(ATTEMPT, &["a", "b", "c"], true);
    first.outputs.insert("a".into(), success("1"));
    attempts.dispatch(first).unwrap();
    attempts.next_message();
    // The last page, without `b`.
    attempts.outputs(
        ATTEMPT,
        BTreeMap::from([("c".to_string(), success("3"))]),
        None,
    );
    let Some(AgentMessage::TaskEvents { events, .. }) = attempts.next_message() else {
        panic!("the attempt reports its end");
    };
    let [
        RunEvent::TaskFinished {
            status: TaskStatus::Error,
            attempt: 0,
            error: Some(error),
            ..
        },
    ] = &events[..]
    else {
        panic!("{events:?}");
    };
    assert!(error.ends_with("tasks it reads: b"), "{error}");
    assert_eq!(attempts.busy(), 0);
    assert_eq!(attempts.executing(), 0, "it never started");
}

#[tokio::test]
async fn cancelling_or_stopping_a_fetching_attempt_never_starts_it() {
    let mut attempts = attempts(2);
    let other = AttemptRef { id: 2 };
    attempts.dispatch(dispatch(ATTEMPT, &["a"], true)).unwrap();
    attempts.dispatch(dispatch(other, &["a"], true)).unwrap();
    assert_eq!(
        attempts.dispatch(dispatch(AttemptRef { id: 3 }, &[], false)),
        Err(Refusal::AtCapacity)
    );
    assert_eq!(
        attempts.dispatch(dispatch(ATTEMPT, &["a"], true)),
        Err(Refusal::AlreadyRunning)
    );

    attempts.cancel(ATTEMPT);
    attempts.stop(other);
    assert_eq!(attempts.executing(), 0);
    assert_eq!(
        attempts.held(),
        [ATTEMPT],
        "its end is not acknowledged yet"
    );
    let Some(AgentMessage::TaskEvents {
        attempt, events, ..
    }) = attempts.next_message()
    else {
        panic!("the cancelled attempt reports its end");
    };
    assert_eq!(attempt, ATTEMPT);
    assert!(matches!(
        &events[..],
        [RunEvent::TaskFinished {
            status: TaskStatus::Cancelled,
            attempt: 0,
            ..
        }]
    ));
    assert_eq!(attempts.next_message(), None, "nothing for the stopped one");
    attempts.ack(ATTEMPT, 0);
    assert!(attempts.is_empty());
}

/// An attempt prepares nothing and runs no step before the server
/// acknowledged its `TaskStarted`: a server that never stored the start
/// may place it again without using a retry.
#[tokio::test]
async fn nothing_runs_before_task_started_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let executor = Executor::new(ExecutorConfig {
        shell: crate::runtime::shell::ShellConfig {
            root: dir.path().to_path_buf(),
            inherit_env: false,
            sandbox: None,
        },
        ..ExecutorConfig::default()
    });
    let mut attempts = Attempts::new(Arc::new(executor), 2);
    let waiting = AttemptRef { id: 1 };
    let going = AttemptRef { id: 2 };
    for attempt in [waiting, going] {
        let mut dispatch = dispatch(attempt, &[], false);
        dispatch.spec.steps[0].run = format!("touch {}-{}", marker.display(), attempt.id);
        attempts.dispatch(dispatch).unwrap();
    }
    let mut started = BTreeSet::new();
    while started.len() < 2 {
        let report = attempts.next_report().await;
        if let Report::Event(attempt, RunEvent::TaskStarted { .. }) = &report {
            started.insert(*attempt);
        }
        attempts.apply(report);
    }
    // Both starts go out; sent is not stored: only the one the server
    // acknowledges runs.
    while attempts.next_message().is_some() {}
    attempts.ack(going, 0);
    loop {
        let report = attempts.next_report().await;
        if matches!(report, Report::Finished(attempt) if attempt == going) {
            break;
        }
        if let Report::Event(attempt, event) = &report {
            assert_eq!(*attempt, going, "{event:?}");
        }
    }
    assert!(dir.path().join("ran-2").exists());
    attempts.cancel(waiting);
    let mut events = Vec::new();
    loop {
        match attempts.next_report().await {
            Report::Finished(_) => break,
            Report::Event(_, event) => events.push(event),
        }
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RunEvent::StepStarted { .. })),
        "{events:?}"
    );
    assert!(matches!(
        events.last(),
        Some(RunEvent::TaskFinished {
            status: TaskStatus::Cancelled,
            ..
        })
    ));
    assert!(!dir.path().join("ran-1").exists());
}
