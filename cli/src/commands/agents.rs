//! Agents: `get agents` (with `-w`), `describe agent`, `agents join-token`,
//! `agents revoke`, `agents drain`.

use std::time::Duration;

use serde_json::Value;
use xene_api::agents::{Agent, AgentList, JoinToken, JoinTokenRequest};
use xene_api::paths;

use super::Ctx;
use crate::args::AgentsCommand;
use crate::client::Answer;
use crate::error::{Exit, fail};
use crate::output;
use crate::sent;

/// How often `get agents -w` looks again: the server has no agents feed.
const WATCH_EVERY: Duration = Duration::from_secs(2);

const HEADERS: &[&str] = &[
    "ID",
    "STATE",
    "RUNNING",
    "CAPACITY",
    "RUNTIMES",
    "LABELS",
    "VERSION",
    "LAST SEEN",
];

/// The state people need: a drained agent can be stopped.
fn state(a: &Agent) -> String {
    match (a.state.as_str(), a.draining) {
        (state, false) => state.to_string(),
        ("online", true) if a.drained() => "drained".into(),
        ("online", true) => "draining".into(),
        (state, true) => format!("{state},draining"),
    }
}

fn row(colour: bool, a: &Agent) -> Vec<String> {
    vec![
        a.id.clone(),
        output::status(colour, &state(a)),
        a.running.to_string(),
        a.capacity.to_string(),
        output::list(&a.runtimes),
        output::pairs(&a.labels),
        output::text(Some(&a.version)),
        output::time(Some(a.last_seen_at)),
    ]
}

pub async fn run(ctx: &Ctx, command: AgentsCommand) -> anyhow::Result<Exit> {
    match command {
        AgentsCommand::JoinToken {
            labels,
            capacity,
            expires_in,
        } => {
            let labels = super::pairs(&labels, "label")?;
            let request = JoinTokenRequest {
                expires_in,
                labels: (!labels.is_empty()).then_some(labels),
                capacity,
            };
            let answer = ctx.client.post(&paths::join_tokens(), &request).await?;
            if let Some(join) = ctx.for_table::<JoinToken>(&answer)? {
                match &join.install_command {
                    Some(command) => {
                        eprintln!(
                            "A one-time join token, valid until {} UTC. On the agent's machine, run:\n",
                            output::time(Some(join.expires_at))
                        );
                        println!("{command}");
                    }
                    None => {
                        eprintln!(
                            "A one-time join token, valid until {} UTC (shown once):\n\n    {}\n\n{}",
                            output::time(Some(join.expires_at)),
                            join.token,
                            output::text(join.install_note.as_deref())
                        );
                    }
                }
            }
            Ok(Exit::Ok)
        }
        AgentsCommand::Revoke { id } => {
            ctx.client.delete(&paths::agent(&id)).await?;
            println!("agent/{id} revoked");
            Ok(Exit::Ok)
        }
        AgentsCommand::Drain { agent, undo } => {
            let id = agent_id(ctx, &agent).await?;
            let path = paths::agent_drain(&id);
            let answer = if undo {
                ctx.client
                    .send(reqwest::Method::DELETE, &path, None, &[])
                    .await?
            } else {
                ctx.client.post(&path, &Value::Null).await?
            };
            if let Some(agent) = ctx.for_table::<Agent>(&answer)? {
                match (undo, agent.running) {
                    (true, _) => println!("agent/{id} takes tasks again"),
                    (false, 0) => println!("agent/{id} drained: it holds no tasks"),
                    (false, n) => println!(
                        "agent/{id} draining: it takes no new tasks and finishes the {n} it holds"
                    ),
                }
            }
            Ok(Exit::Ok)
        }
        AgentsCommand::List => list(ctx, false).await,
    }
}

/// The id of the agent a person named: its id, or else its name when one
/// agent alone has it. A name several agents share is refused with their
/// ids; anything else goes as given (the server says 404).
async fn agent_id(ctx: &Ctx, given: &str) -> anyhow::Result<String> {
    let list: AgentList = ctx.client.get(&paths::agents()).await?;
    if list.agents.iter().any(|a| a.id == given) {
        return Ok(given.to_string());
    }
    let named: Vec<&Agent> = list.agents.iter().filter(|a| a.name == given).collect();
    match named[..] {
        [] => Ok(given.to_string()),
        [one] => Ok(one.id.clone()),
        _ => {
            let ids: Vec<&str> = named.iter().map(|a| a.id.as_str()).collect();
            Err(fail(
                Exit::Usage,
                format!(
                    "the name {given:?} is ambiguous: agents {} have it; give an id",
                    ids.join(", ")
                ),
            ))
        }
    }
}

pub async fn list(ctx: &Ctx, watch: bool) -> anyhow::Result<Exit> {
    let answer = ctx.client.answer(&paths::agents()).await?;
    if !watch {
        if let Some(list) = ctx.for_table::<AgentList>(&answer)? {
            let rows: Vec<Vec<String>> = list.agents.iter().map(|a| row(ctx.colour, a)).collect();
            output::table(HEADERS, &rows);
        }
        return Ok(Exit::Ok);
    }
    // A line for each agent whose state, load or labels change.
    let key = |a: &Agent| {
        (
            state(a),
            a.running,
            a.capacity,
            a.labels.clone(),
            a.version.clone(),
        )
    };
    let mut seen = std::collections::BTreeMap::new();
    let mut first = true;
    // Each agent as read (for the table and what changed) and as sent (for
    // `-o json|yaml`).
    let mut agents = listed(&answer)?;
    loop {
        let mut changed = Vec::new();
        for (agent, as_sent) in agents {
            let k = key(&agent);
            if seen.get(&agent.id) != Some(&k) {
                seen.insert(agent.id.clone(), k);
                changed.push((agent, as_sent));
            }
        }
        if ctx.format.is_table() {
            let rows: Vec<Vec<String>> = changed.iter().map(|(a, _)| row(ctx.colour, a)).collect();
            let text = output::render_table(HEADERS, &rows);
            let skip = usize::from(!first);
            for line in text.lines().skip(skip) {
                println!("{line}");
            }
        } else {
            for (_, as_sent) in &changed {
                print!("{}", output::json_line(as_sent));
            }
        }
        first = false;
        tokio::time::sleep(WATCH_EVERY).await;
        agents = listed(&ctx.client.answer(&paths::agents()).await?)?;
    }
}

/// The agents of a list, each as read and as sent.
fn listed(answer: &Answer) -> anyhow::Result<Vec<(Agent, Value)>> {
    sent::items(&answer.json(), "agents")
}

pub async fn describe(ctx: &Ctx, id: &str) -> anyhow::Result<Exit> {
    let agents = listed(&ctx.client.answer(&paths::agents()).await?)?;
    let Some((agent, as_sent)) = agents.into_iter().find(|(a, _)| a.id == id) else {
        return Err(fail(Exit::NotFound, format!("no agent with id {id:?}")));
    };
    if output::structured(ctx.format, &as_sent) {
        return Ok(Exit::Ok);
    }
    let c = ctx.colour;
    println!("Agent:      {}", agent.id);
    println!("Name:       {}", output::text(Some(&agent.name)));
    println!("State:      {}", output::status(c, &state(&agent)));
    println!("Built in:   {}", agent.builtin);
    println!("Load:       {} of {} tasks", agent.running, agent.capacity);
    println!("Runtimes:   {}", output::list(&agent.runtimes));
    println!("Labels:     {}", output::pairs(&agent.labels));
    println!("Version:    {}", output::text(Some(&agent.version)));
    println!("Last seen:  {}", output::time(Some(agent.last_seen_at)));
    if !agent.held.is_empty() {
        println!("Holds:");
        let rows: Vec<Vec<String>> = agent
            .held
            .iter()
            .map(|h| {
                vec![
                    format!("  run/{}", h.run_id),
                    h.task.clone(),
                    h.number.to_string(),
                ]
            })
            .collect();
        output::table(&["  RUN", "TASK", "ATTEMPT"], &rows);
    }
    Ok(Exit::Ok)
}
