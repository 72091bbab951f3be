//! Pages ask the API once: the workflows list carries each pipeline's
//! trigger, next fire and last run, and a run's tasks their `depends_on`,
//! read as the UI and the CLI read them (the `xene-api` types), on both
//! database backends.

use xene_api::paths;
use xene_api::run::RunDetail;
use xene_api::workflows::{PipelineSummary, WorkflowDetail, WorkflowList};

use crate::feed::{feed, next};
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

// Its pipeline has the name of one of TRIGGERS': a last run is looked up
// by workflow and pipeline, not by pipeline alone.
const QUIET: &str = "\
name: quiet
pipelines:
  build:
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

/// A pipeline's first next fire as its workflow's own page shows it.
async fn first_fire(server: &TestServer, workflow: &str, pipeline: &str) -> Option<i64> {
    let (status, body) = server.get(&paths::workflow(workflow)).await;
    assert_eq!(status, 200, "{body}");
    let detail: WorkflowDetail = serde_json::from_value(body).unwrap();
    detail
        .pipelines
        .iter()
        .find(|p| p.name == pipeline)
        .unwrap_or_else(|| panic!("no {pipeline} in {detail:?}"))
        .next_fires
        .first()
        .copied()
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

        let before_list = first_fire(&server, "triggers", "nightly").await;
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
        // The same next fire as the workflow's own page shows, asked just
        // before and just after the list: a fire may fall between two calls.
        let after_list = first_fire(&server, "triggers", "nightly").await;
        assert!(
            [before_list, after_list].contains(&nightly.next_fire),
            "{backend:?}: {:?} is neither of {before_list:?} and {after_list:?}",
            nightly.next_fire
        );
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
        // The other workflow's `build` runs last.
        let (status, other) = server
            .post(&paths::pipeline_runs("quiet", "build"), "{}")
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
            summary(&after, "quiet", "build")
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

/// Makes a workflow's stored versions unreadable, as a spec written by a
/// Xene whose spec format this one no longer reads.
async fn break_specs(db: &TestDb, workflow: &str) -> xene_server::storage::Db {
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE workflow_versions SET spec = '{\"not\": \"a spec' WHERE workflow = $1")
        .bind(workflow)
        .execute(storage.pool())
        .await
        .unwrap();
    storage
}

#[tokio::test]
async fn the_list_reads_pipelines_whose_trigger_or_spec_does_not_read() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let broken = TRIGGERS.replace("name: triggers", "name: broken");
        for spec in [TRIGGERS.to_string(), broken] {
            let (status, body) = server.post(&paths::workflows(), spec).await;
            assert_eq!(status, 201, "{body}");
        }
        // Pipelines stored before their trigger was, one workflow's spec
        // no longer readable.
        let storage = break_specs(&db, "broken").await;
        sqlx::query("UPDATE pipelines SET trigger_spec = NULL")
            .execute(storage.pool())
            .await
            .unwrap();

        // Listed by their trigger's kind until the next start fills them.
        let listed = list(&server).await;
        for workflow in ["triggers", "broken"] {
            let nightly = summary(&listed, workflow, "nightly");
            assert_eq!(
                (
                    nightly.trigger.as_str(),
                    nightly.trigger_text.as_str(),
                    nightly.next_fire
                ),
                ("cron", "cron", None),
                "{backend:?}"
            );
        }
        server.stop().await;

        let server = TestServer::start(&db).await;
        let listed = list(&server).await;
        let nightly = summary(&listed, "triggers", "nightly");
        assert_eq!(nightly.trigger_text, "cron 0 3 * * * (Europe/Paris)");
        assert!(nightly.next_fire.is_some(), "{backend:?}: {nightly:?}");
        assert_eq!(summary(&listed, "triggers", "hook").trigger, "webhook");
        // The unreadable one stays listed, by its kind.
        let nightly = summary(&listed, "broken", "nightly");
        assert_eq!(
            (nightly.trigger.as_str(), nightly.trigger_text.as_str()),
            ("cron", "cron"),
            "{backend:?}"
        );
        let filled: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT workflow, trigger_spec FROM pipelines WHERE name = 'hook' ORDER BY workflow",
        )
        .fetch_all(storage.pool())
        .await
        .unwrap();
        assert_eq!(
            filled,
            [
                ("broken".to_string(), None),
                (
                    "triggers".to_string(),
                    Some(r#"{"type":"webhook"}"#.to_string())
                )
            ],
            "{backend:?}"
        );
        server.stop().await;
    }
}

const WAITS: &str = "\
name: waits
pipelines:
  gpu:
    selector: {gpu: \"none here\"}
    tasks:
      a:
        steps: [\"true\"]
      b:
        depends_on: [a]
        steps: [\"true\"]
";

fn edges(run: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    let detail: RunDetail = serde_json::from_value(run.clone()).unwrap();
    detail
        .tasks
        .into_iter()
        .map(|t| (t.name, t.depends_on))
        .collect()
}

#[tokio::test]
async fn a_run_whose_version_spec_does_not_read_still_reads_and_feeds() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let base = format!("http://{}", server.addr);
        let (status, body) = server.post(&paths::workflows(), WAITS.to_string()).await;
        assert_eq!(status, 201, "{body}");
        let mut runs_feed = feed(&base, &server.token, &paths::runs_feed()).await;
        // No agent fits: the run waits, queued, while its spec breaks.
        let (status, run) = server
            .post(&paths::pipeline_runs("waits", "gpu"), "{}")
            .await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
        // Seen queued: the runs feed follows from here.
        loop {
            let message = next(&mut runs_feed).await.expect("the runs feed is open");
            if message["type"] == "run" && message["run"]["id"] == id {
                break;
            }
        }
        let storage = break_specs(&db, "waits").await;

        let (status, body) = server.get(&paths::run(id)).await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        let stored = [
            ("a".to_string(), vec![]),
            ("b".to_string(), vec!["a".to_string()]),
        ];
        assert_eq!(edges(&body), stored, "{backend:?}: stored with the run");
        let mut run_feed = feed(&base, &server.token, &paths::run_events(id, None)).await;
        let first = next(&mut run_feed).await.expect("the run's feed answers");
        assert_eq!(first["type"], "run", "{first}");
        assert_eq!(edges(&first["run"]), stored);
        let (status, body) = server.get(&paths::run_logs(id)).await;
        assert_eq!(status, 200, "{backend:?}: {body}");

        // A run from before `depends_on` was stored reads it from the spec,
        // which does not read: none, and still an answer.
        sqlx::query("UPDATE task_runs SET depends_on = NULL WHERE run_id = $1")
            .bind(id)
            .execute(storage.pool())
            .await
            .unwrap();
        let (status, body) = server.get(&paths::run(id)).await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        assert_eq!(
            edges(&body),
            [("a".to_string(), vec![]), ("b".to_string(), vec![])]
        );

        // Both feeds go on to the run's end.
        let (status, body) = server.post(&paths::run_cancel(id), "").await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        loop {
            let message = next(&mut runs_feed)
                .await
                .unwrap_or_else(|| panic!("{backend:?}: the runs feed ended"));
            if message["type"] == "run"
                && message["run"]["id"] == id
                && message["run"]["status"] == "cancelled"
            {
                break;
            }
        }
        loop {
            let message = next(&mut run_feed)
                .await
                .unwrap_or_else(|| panic!("{backend:?}: the run's feed ended early"));
            if message["type"] == "end" {
                break;
            }
        }
        server.stop().await;
    }
}
