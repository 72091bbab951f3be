//! Set-up shared by the tests that drive task attempts through storage: a
//! run-model-2 database with a workflow, online agents and a started run.

use xene_server::storage::{Db, runs, workflows};

use crate::util::TestDb;

/// A run-model-2 database on `test_db`, with no workflow yet.
pub async fn model_2(test_db: &TestDb) -> Db {
    Db::connect(&test_db.url).await.unwrap().with_run_model(2)
}

/// A run-model-2 database on `test_db` with the workflow `yaml` applied.
pub async fn model_2_db(test_db: &TestDb, yaml: &str) -> Db {
    let db = model_2(test_db).await;
    apply(&db, yaml).await;
    db
}

/// `model_2_db` with online agents `agents` (room for 8 tasks each) and one
/// run of pipeline `p` of `workflow` started; the database and the run id.
pub async fn model_2_run(
    test_db: &TestDb,
    yaml: &str,
    workflow: &str,
    agents: &[&str],
) -> (Db, i64) {
    let db = model_2_db(test_db, yaml).await;
    for id in agents {
        add_agent(&db, id, 8).await;
    }
    let run = start_run(&db, workflow, &[]).await;
    (db, run)
}

pub async fn apply(db: &Db, yaml: &str) {
    let workflow = xene_core::parse_workflow(yaml).unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
    workflows::apply(db, &workflow, yaml, None)
        .await
        .unwrap()
        .unwrap();
}

/// An online agent named `id` with room for `capacity` tasks.
pub async fn add_agent(db: &Db, id: &str, capacity: i64) {
    sqlx::query(
        "INSERT INTO agents (id, name, capacity, state, last_seen_at, created_at) \
         VALUES ($1, $1, $2, 'online', 0, 0)",
    )
    .bind(id)
    .bind(capacity)
    .execute(db.pool())
    .await
    .unwrap();
}

/// Starts a run of pipeline `p` of `workflow` by hand; its id.
pub async fn start_run(db: &Db, workflow: &str, params: &[(&str, &str)]) -> i64 {
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    runs::create(db, workflow, "p", params, "manual")
        .await
        .unwrap()
        .id
}
