//! Pages ask the API once: the workflows list carries each pipeline's
//! trigger, next fire and last run, and a run's tasks their `depends_on`,
//! read as the UI and the CLI read them (the `xene-api` types), on both
//! database backends.

use xene_api::paths;
use xene_api::run::RunDetail;
use xene_api::workflows::{PipelineSummary, WorkflowDetail, WorkflowList};

use crate::util::{BACKENDS, TestDb, TestServer};

const TRIGGERS: &str = "\
name: triggers
pipelines:
  build:
    tasks:
      compile:
        steps:
          - name: c
            run: echo compiled
      test:
        depends_on: [compile]
        steps:
          - name: t
            run: echo tested
      ship:
        depends_on: [compile, test]
        steps:
          - name: s
            run: echo shipped
  nightly:
    trigger: {cron: \"0 3 * * *\", timezone: Europe/Paris}
    tasks:
      n:
        steps:
          - name: n
            run: echo night
  hook:
    trigger: webhook
    tasks:
      h:
        steps:
          - name: h
            run: echo hooked
";

const QUIET: &str = "\
name: quiet
pipelines:
  only:
    tasks:
      t:
        steps:
          - name: t
            run: 'true'
";

async fn list(server: &TestServer) -> WorkflowList {
    let (status, body) = server.get(&paths::workflows()).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("the list reads as xene_api::workflows::WorkflowList")
}

fn summary<'a>(list: &'a WorkflowList, workflow: &str, pipeline: &str) -> &'a PipelineSummary {
    list.workflows
        .iter()
        .find(|w| w.name == workflow)
        .and_then(|w| w.summaries.iter().find(|p| p.name == pipeline))
        .unwrap_or_else(|| panic!("no {workflow}/{pipeline} in {list:?}"))
}

#[tokio::test]
async fn the_workflows_list_carries_triggers_next_fires_and_last_runs() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        for spec in [TRIGGERS, QUIET] {
            let (status, body) = server.post(&paths::workflows(), spec.to_string()).await;
            assert_eq!(status, 201, "{body}");
        }

        let before = list(&server).await;
        let names: Vec<&str> = before.workflows.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["quiet", "triggers"]);
        for w in &before.workflows {
            let summarized: Vec<&str> = w.summaries.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(
                summarized, w.pipelines,
                "{backend:?}: one summary per pipeline"
            );
        }
        let build = summary(&before, "triggers", "build");
        assert_eq!(
            (build.trigger.as_str(), build.trigger_text.as_str()),
            ("manual", "manual")
        );
        assert_eq!((build.next_fire, &build.last_run), (None, &None));
        let hook = summary(&before, "triggers", "hook");
        assert_eq!(
            (
                hook.trigger.as_str(),
                hook.trigger_text.as_str(),
                hook.next_fire
            ),
            ("webhook", "webhook", None)
        );
        let nightly = summary(&before, "triggers", "nightly");
        assert_eq!(nightly.trigger, "cron");
        assert_eq!(nightly.trigger_text, "cron 0 3 * * * (Europe/Paris)");
        // The same next fire as the workflow's own page shows.
        let (status, body) = server.get(&paths::workflow("triggers")).await;
        assert_eq!(status, 200, "{body}");
        let detail: WorkflowDetail = serde_json::from_value(body).unwrap();
        let fires = &detail
            .pipelines
            .iter()
            .find(|p| p.name == "nightly")
            .unwrap()
            .next_fires;
        assert_eq!(nightly.next_fire, fires.first().copied(), "{backend:?}");
        assert!(nightly.next_fire.is_some());

        // The last run is the latest of the pipeline's, not of another's.
        let mut ids = Vec::new();
        for _ in 0..2 {
            let (status, run) = server
                .post(&paths::pipeline_runs("triggers", "build"), "{}")
                .await;
            assert_eq!(status, 201, "{run}");
            ids.push(run["id"].as_i64().unwrap());
        }
        let (status, other) = server
            .post(&paths::pipeline_runs("quiet", "only"), "{}")
            .await;
        assert_eq!(status, 201, "{other}");
        let last = server.wait_for_run(ids[1]).await;
        server.wait_for_run(other["id"].as_i64().unwrap()).await;
        let after = list(&server).await;
        let run = summary(&after, "triggers", "build")
            .last_run
            .clone()
            .expect("build ran");
        assert_eq!(run.id, ids[1], "{backend:?}");
        assert_eq!(run.status.as_str(), last["status"]);
        assert_eq!(Some(run.requested_at), last["requested_at"].as_i64());
        assert_eq!(run.finished_at, last["finished_at"].as_i64());
        assert_eq!(
            summary(&after, "quiet", "only")
                .last_run
                .as_ref()
                .map(|r| r.id),
            other["id"].as_i64()
        );
        assert_eq!(summary(&after, "triggers", "nightly").last_run, None);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_runs_tasks_carry_their_dependencies() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let (status, body) = server.post(&paths::workflows(), TRIGGERS.to_string()).await;
        assert_eq!(status, 201, "{body}");
        let (status, run) = server
            .post(&paths::pipeline_runs("triggers", "build"), "{}")
            .await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
        let (status, body) = server.get(&paths::run(id)).await;
        assert_eq!(status, 200, "{body}");
        let detail: RunDetail = serde_json::from_value(body).unwrap();
        let edges: Vec<(&str, Vec<&str>)> = detail
            .tasks
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    t.depends_on.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            edges,
            [
                ("compile", vec![]),
                ("test", vec!["compile"]),
                ("ship", vec!["compile", "test"]),
            ],
            "{backend:?}"
        );
        // A new version does not change what an older run waited for.
        let changed = TRIGGERS.replace("depends_on: [compile, test]", "depends_on: [test]");
        let (status, body) = server.post(&paths::workflows(), changed).await;
        assert_eq!(status, 201, "{body}");
        let finished = server.wait_for_run(id).await;
        assert_eq!(
            finished["tasks"][2]["depends_on"],
            serde_json::json!(["compile", "test"])
        );
        server.stop().await;
    }
}
