//! Agents as the scheduler sees them.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Db, StorageError, now_ms};

pub use xene_api::agents::{Agent, AgentState};

/// What an agent says about itself when it (re)joins.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: String,
    pub name: String,
    pub builtin: bool,
    pub labels: BTreeMap<String, String>,
    pub runtimes: Vec<String>,
    pub capacity: i64,
    pub version: String,
}

/// Records an agent's (re)join. False when it was revoked.
pub async fn register(db: &Db, agent: &Registration) -> Result<bool, StorageError> {
    let now = now_ms();
    let touched = sqlx::query(
        "INSERT INTO agents (id, name, builtin, labels, runtimes, capacity, version, state, last_seen_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'online', $8, $8) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, builtin = excluded.builtin, labels = excluded.labels, \
         runtimes = excluded.runtimes, capacity = excluded.capacity, version = excluded.version, state = 'online', \
         last_seen_at = excluded.last_seen_at WHERE agents.revoked = 0",
    )
    .bind(&agent.id)
    .bind(&agent.name)
    .bind(agent.builtin as i64)
    .bind(serde_json::to_string(&agent.labels).expect("maps serialize"))
    .bind(serde_json::to_string(&agent.runtimes).expect("lists serialize"))
    .bind(agent.capacity)
    .bind(&agent.version)
    .bind(now)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    if touched == 1 {
        // An agent (back) online has room for runs.
        db.news().room_freed();
    }
    Ok(touched == 1)
}

/// Records that the agent is alive. False when it was revoked meanwhile.
pub async fn heartbeat(db: &Db, id: &str) -> Result<bool, StorageError> {
    let touched = sqlx::query(
        "UPDATE agents SET last_seen_at = $1, state = 'online' WHERE id = $2 AND revoked = 0",
    )
    .bind(now_ms())
    .bind(id)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    Ok(touched == 1)
}

/// Writes the heartbeats heard since the last call, a statement per 500
/// agents however many there are, and renews for `lease_ms` the leases of
/// every task attempt those agents hold (another statement per 500: not one
/// per attempt); returns the agents among them that were revoked (through
/// any replica), whose sessions must end.
pub async fn flush_seen(
    db: &Db,
    still_connected: impl Fn(&str) -> bool,
    lease_ms: i64,
) -> Result<Vec<String>, StorageError> {
    // One that disconnected since its heartbeat was marked offline then and
    // must not come back online here.
    let seen: Vec<String> = db
        .take_seen()
        .into_iter()
        .filter(|id| still_connected(id))
        .collect();
    let mut revoked = Vec::new();
    for ids in seen.chunks(500) {
        let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE agents SET last_seen_at = $1, state = 'online' WHERE revoked = 0 AND id IN ({}) RETURNING id",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(now_ms());
        for id in ids {
            query = query.bind(id);
        }
        let alive: std::collections::HashSet<String> =
            query.fetch_all(db.pool()).await?.into_iter().collect();
        revoked.extend(ids.iter().filter(|id| !alive.contains(*id)).cloned());
        let alive: Vec<String> = alive.into_iter().collect();
        super::attempts::renew_for_agents(db, &alive, lease_ms).await?;
    }
    Ok(revoked)
}

/// Agents holding task attempts placed on them and not started, or whose
/// cancel was asked for: their sessions are reminded now and then, in case
/// news of them was lost (the attempt then never dispatched, or its
/// `CancelTask` never sent) or the agent turned them away when full.
pub async fn with_unstarted_work(db: &Db) -> Result<Vec<String>, StorageError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT agent_id FROM task_attempts WHERE agent_id IS NOT NULL \
         AND (status = 'placed' OR (status = 'running' AND cancel_requested <> 0)) LIMIT 10000",
    )
    .fetch_all(db.pool())
    .await?)
}

/// Marks an agent offline as its session ends, unless it registered again
/// meanwhile: a reconnect's registration can reach the database before the
/// old session's ending does, and must not be undone by it.
pub async fn set_offline(db: &Db, id: &str) -> Result<(), StorageError> {
    db.forget_seen(id);
    sqlx::query(
        "UPDATE agents SET state = 'offline' WHERE id = $1 AND revoked = 0 AND last_seen_at <= $2",
    )
    .bind(id)
    .bind(now_ms())
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok(())
}

/// Agents not seen for `silence_ms` are offline: the scheduler skips them.
pub async fn mark_silent_offline(db: &Db, silence_ms: i64) -> Result<u64, StorageError> {
    Ok(sqlx::query(
        "UPDATE agents SET state = 'offline' WHERE state = 'online' AND last_seen_at < $1",
    )
    .bind(now_ms() - silence_ms)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected())
}

/// Every agent with what it holds now: task attempts placed on it or
/// running there.
pub async fn list(db: &Db) -> Result<Vec<Agent>, StorageError> {
    let mut agents: Vec<Agent> = rows(db)
        .await?
        .into_iter()
        .map(|row| Agent {
            id: row.id,
            name: row.name,
            builtin: row.builtin,
            labels: row.labels,
            runtimes: row.runtimes,
            capacity: row.capacity,
            running: 0,
            version: row.version,
            state: row.state,
            last_seen_at: row.last_seen_at,
            draining: row.draining,
            held: Vec::new(),
        })
        .collect();
    let load = super::attempts::load(db).await?;
    // The held attempts, oldest first, a bounded number per agent: one busy
    // agent does not crowd the others out, and past the bound the counts
    // still say how many.
    let held: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT agent_id, run_id, task, number FROM ( \
           SELECT agent_id, run_id, task, number, id, \
                  ROW_NUMBER() OVER (PARTITION BY agent_id ORDER BY id) AS nth \
           FROM task_attempts \
           WHERE status IN ('placed', 'running') AND agent_id IS NOT NULL \
         ) AS held WHERE nth <= $1 ORDER BY agent_id, id",
    )
    .bind(xene_api::agents::MAX_HELD_SHOWN as i64)
    .fetch_all(db.pool())
    .await?;
    let index: std::collections::HashMap<String, usize> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.clone(), i))
        .collect();
    for (agent, run_id, task, number) in held {
        if let Some(&i) = index.get(&agent)
            && agents[i].held.len() < xene_api::agents::MAX_HELD_SHOWN
        {
            agents[i].held.push(xene_api::agents::HeldTask {
                run_id,
                task,
                number,
            });
        }
    }
    for agent in &mut agents {
        agent.running = load.get(&agent.id).copied().unwrap_or(0);
    }
    Ok(agents)
}

/// An agent's row as stored, without what it holds: what the scheduler
/// reads (it counts the load once per pass, for every agent at once).
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: String,
    pub name: String,
    pub builtin: bool,
    pub labels: BTreeMap<String, String>,
    pub runtimes: Vec<String>,
    pub capacity: i64,
    pub version: String,
    pub state: AgentState,
    pub last_seen_at: i64,
    pub draining: bool,
}

pub async fn rows(db: &Db) -> Result<Vec<AgentRow>, StorageError> {
    let rows = sqlx::query(
        "SELECT id, name, builtin, labels, runtimes, capacity, version, state, last_seen_at, draining \
         FROM agents ORDER BY name, id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let labels: String = r.get(3);
            let runtimes: String = r.get(4);
            let builtin: i64 = r.get(2);
            let draining: i64 = r.get(9);
            Ok(AgentRow {
                id: r.get(0),
                name: r.get(1),
                builtin: builtin != 0,
                labels: serde_json::from_str(&labels)
                    .map_err(|e| StorageError::Corrupt(e.to_string()))?,
                runtimes: serde_json::from_str(&runtimes)
                    .map_err(|e| StorageError::Corrupt(e.to_string()))?,
                capacity: r.get(5),
                version: r.get(6),
                state: r
                    .get::<String, _>(7)
                    .parse()
                    .map_err(StorageError::Corrupt)?,
                last_seen_at: r.get(8),
                draining: draining != 0,
            })
        })
        .collect()
}

/// Drains an agent (it takes no new tasks and finishes those it holds), or
/// undoes that. False when there is no such agent.
pub async fn set_draining(db: &Db, id: &str, draining: bool) -> Result<bool, StorageError> {
    let touched = sqlx::query("UPDATE agents SET draining = $1 WHERE id = $2")
        .bind(draining as i64)
        .bind(id)
        .execute(&mut *db.write_conn().await?)
        .await?
        .rows_affected();
    if touched == 1 && !draining {
        // Back in the fleet: tasks that waited may go there now.
        db.news().tasks_ready();
    }
    Ok(touched == 1)
}

/// For ready tasks (run, task), the agents that ran their dependencies:
/// the scheduler's tie-break keeps a chain on one machine, where the
/// images it pulled and the files it left are. Two reads, each bounded by
/// the tasks asked about.
pub async fn warm(
    db: &Db,
    tasks: &[(i64, String)],
) -> Result<std::collections::HashMap<(i64, String), Vec<String>>, StorageError> {
    use std::collections::{BTreeSet, HashMap};
    let mut out: HashMap<(i64, String), Vec<String>> = HashMap::new();
    let mut dependencies: HashMap<(i64, String), Vec<String>> = HashMap::new();
    for chunk in tasks.chunks(250) {
        let runs: BTreeSet<i64> = chunk.iter().map(|(r, _)| *r).collect();
        let names: BTreeSet<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
        let sql = format!(
            "SELECT run_id, task, depends_on FROM task_runs WHERE run_id IN ({}) AND task IN ({})",
            numbered(1, runs.len()),
            numbered(1 + runs.len(), names.len())
        );
        let mut query = sqlx::query_as::<_, (i64, String, Option<String>)>(&sql);
        for run in &runs {
            query = query.bind(*run);
        }
        for name in &names {
            query = query.bind(*name);
        }
        for (run, task, depends_on) in query.fetch_all(db.pool()).await? {
            let names: Vec<String> = depends_on
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or_default();
            if !names.is_empty() && chunk.iter().any(|(r, t)| *r == run && *t == task) {
                dependencies.insert((run, task), names);
            }
        }
    }
    let wanted: Vec<(i64, &String)> = dependencies
        .iter()
        .flat_map(|((run, _), deps)| deps.iter().map(move |d| (*run, d)))
        .collect();
    let mut ran: HashMap<(i64, String), String> = HashMap::new();
    for chunk in wanted.chunks(250) {
        let runs: BTreeSet<i64> = chunk.iter().map(|(r, _)| *r).collect();
        let names: BTreeSet<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
        let sql = format!(
            "SELECT run_id, task, agent_id FROM task_runs WHERE run_id IN ({}) AND task IN ({}) \
             AND agent_id IS NOT NULL",
            numbered(1, runs.len()),
            numbered(1 + runs.len(), names.len())
        );
        let mut query = sqlx::query_as::<_, (i64, String, String)>(&sql);
        for run in &runs {
            query = query.bind(*run);
        }
        for name in &names {
            query = query.bind(*name);
        }
        for (run, task, agent) in query.fetch_all(db.pool()).await? {
            ran.insert((run, task), agent);
        }
    }
    for ((run, task), deps) in dependencies {
        let agents: Vec<String> = deps
            .iter()
            .filter_map(|d| ran.get(&(run, d.clone())).cloned())
            .collect();
        if !agents.is_empty() {
            out.insert((run, task), agents);
        }
    }
    Ok(out)
}

/// `$first, $first+1, ...`, `count` of them.
fn numbered(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
