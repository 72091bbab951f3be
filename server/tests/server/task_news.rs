//! News on a task's path from ended to started crosses PostgreSQL
//! replicas: the scheduler's and the readiness controller's leases may sit
//! on another replica than the one that made tasks ready.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use xene_server::storage::Db;

use crate::util::{Backend, TestDb};

/// Announces on `from` until `to` wakes (a NOTIFY sent before the other
/// replica listens is lost, so once is not enough); bounded.
async fn heard(announce: impl Fn(), to: Arc<Notify>) -> bool {
    let heard = async {
        loop {
            announce();
            if tokio::time::timeout(Duration::from_millis(100), to.notified())
                .await
                .is_ok()
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), heard)
        .await
        .is_ok()
}

#[tokio::test]
async fn tasks_ready_and_runs_dirty_wake_the_controllers_of_other_replicas() {
    let test_db = TestDb::new(Backend::Postgres);
    let here = Db::connect(&test_db.url).await.unwrap();
    let there = Db::connect(&test_db.url).await.unwrap();
    assert!(
        heard(|| here.news().tasks_ready(), there.news().scheduler()).await,
        "the other replica's scheduler heard tasks_ready"
    );
    assert!(
        heard(|| here.news().runs_dirty(), there.news().readiness()).await,
        "the other replica's readiness controller heard runs_dirty"
    );
    assert!(
        heard(|| here.news().leases_ended(), there.news().supervisor()).await,
        "the other replica's supervisor heard leases_ended"
    );
    assert!(
        heard(|| here.news().room_freed(), there.news().scheduler()).await,
        "the other replica's scheduler heard room_freed"
    );
}
