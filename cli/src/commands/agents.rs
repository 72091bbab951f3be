//! Agents: `get agents` (with `-w`), `describe agent`, `agents join-token`,
//! `agents revoke`.

use std::time::Duration;

use serde_json::{Value, json};

use super::Ctx;
use crate::args::{AgentsCommand, Format};
use crate::client::encode;
use crate::error::{Exit, fail};
use crate::output;

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

fn row(colour: bool, a: &Value) -> Vec<String> {
    vec![
        output::cell(&a["id"]),
        output::status(colour, a["state"].as_str().unwrap_or("-")),
        output::cell(&a["running"]),
        output::cell(&a["capacity"]),
        output::cell(&a["runtimes"]),
        output::cell(&a["labels"]),
        output::cell(&a["version"]),
        output::time(a["last_seen_at"].as_i64()),
    ]
}

pub async fn run(ctx: &Ctx, command: AgentsCommand) -> anyhow::Result<Exit> {
    match command {
        AgentsCommand::JoinToken {
            labels,
            capacity,
            expires_in,
        } => {
            let mut body = json!({});
            if !labels.is_empty() {
                body["labels"] = json!(super::pairs(&labels, "label")?);
            }
            if let Some(c) = capacity {
                body["capacity"] = json!(c);
            }
            if let Some(e) = expires_in {
                body["expires_in"] = Value::String(e);
            }
            let answer = ctx.client.post("/api/v1/agents/join-tokens", body).await?;
            if !output::structured(ctx.format, &answer) {
                match answer["install_command"].as_str() {
                    Some(command) => {
                        eprintln!(
                            "A one-time join token, valid until {} UTC. On the agent's machine, run:\n",
                            output::time(answer["expires_at"].as_i64())
                        );
                        println!("{command}");
                    }
                    None => {
                        eprintln!(
                            "A one-time join token, valid until {} UTC (shown once):\n\n    {}\n\n{}",
                            output::time(answer["expires_at"].as_i64()),
                            output::cell(&answer["token"]),
                            output::cell(&answer["install_note"])
                        );
                    }
                }
            }
            Ok(Exit::Ok)
        }
        AgentsCommand::Revoke { id } => {
            ctx.client
                .delete(&format!("/api/v1/agents/{}", encode(&id)))
                .await?;
            println!("agent/{id} revoked");
            Ok(Exit::Ok)
        }
        AgentsCommand::List => list(ctx, false).await,
    }
}

pub async fn list(ctx: &Ctx, watch: bool) -> anyhow::Result<Exit> {
    let body = ctx.client.get("/api/v1/agents").await?;
    if !watch {
        if !output::structured(ctx.format, &body) {
            let rows: Vec<Vec<String>> = agents(&body).iter().map(|a| row(ctx.colour, a)).collect();
            output::table(HEADERS, &rows);
        }
        return Ok(Exit::Ok);
    }
    // A line for each agent whose state, load or labels change.
    let key = |a: &Value| {
        json!([
            a["state"],
            a["running"],
            a["capacity"],
            a["labels"],
            a["version"]
        ])
        .to_string()
    };
    let mut seen = std::collections::BTreeMap::new();
    let mut first = true;
    let mut body = body;
    loop {
        let mut changed = Vec::new();
        for agent in agents(&body) {
            let id = agent["id"].as_str().unwrap_or_default().to_string();
            let k = key(&agent);
            if seen.get(&id) != Some(&k) {
                seen.insert(id, k);
                changed.push(agent);
            }
        }
        if ctx.format == Format::Table {
            let rows: Vec<Vec<String>> = changed.iter().map(|a| row(ctx.colour, a)).collect();
            let text = output::render_table(HEADERS, &rows);
            let skip = usize::from(!first);
            for line in text.lines().skip(skip) {
                println!("{line}");
            }
        } else {
            for agent in &changed {
                println!("{agent}");
            }
        }
        first = false;
        tokio::time::sleep(WATCH_EVERY).await;
        body = ctx.client.get("/api/v1/agents").await?;
    }
}

fn agents(body: &Value) -> Vec<Value> {
    body["agents"].as_array().cloned().unwrap_or_default()
}

pub async fn describe(ctx: &Ctx, id: &str) -> anyhow::Result<Exit> {
    let body = ctx.client.get("/api/v1/agents").await?;
    let Some(agent) = agents(&body).into_iter().find(|a| a["id"] == id) else {
        return Err(fail(Exit::NotFound, format!("no agent with id {id:?}")));
    };
    if output::structured(ctx.format, &agent) {
        return Ok(Exit::Ok);
    }
    let c = ctx.colour;
    println!("Agent:      {}", output::cell(&agent["id"]));
    println!("Name:       {}", output::cell(&agent["name"]));
    println!(
        "State:      {}",
        output::status(c, agent["state"].as_str().unwrap_or("-"))
    );
    println!("Built in:   {}", output::cell(&agent["builtin"]));
    println!(
        "Load:       {} of {} runs",
        output::cell(&agent["running"]),
        output::cell(&agent["capacity"])
    );
    println!("Runtimes:   {}", output::cell(&agent["runtimes"]));
    println!("Labels:     {}", output::cell(&agent["labels"]));
    println!("Version:    {}", output::cell(&agent["version"]));
    println!(
        "Last seen:  {}",
        output::time(agent["last_seen_at"].as_i64())
    );
    Ok(Exit::Ok)
}
