//! Webhooks: `hooks show|rotate|deliveries WORKFLOW/PIPELINE`, `get hooks`.

use serde_json::{Value, json};

use super::Ctx;
use crate::args::HooksCommand;
use crate::client::encode;
use crate::error::{Exit, fail};
use crate::output;

fn hook_path(target: &str) -> anyhow::Result<String> {
    let Some((workflow, pipeline)) = target.split_once('/') else {
        return Err(fail(
            Exit::Usage,
            format!("{target:?} is not WORKFLOW/PIPELINE"),
        ));
    };
    Ok(format!(
        "/api/v1/workflows/{}/pipelines/{}/hook",
        encode(workflow),
        encode(pipeline)
    ))
}

pub async fn run(ctx: &Ctx, command: HooksCommand) -> anyhow::Result<Exit> {
    match command {
        HooksCommand::Show { target } => {
            let hook = ctx.client.get(&hook_path(&target)?).await?;
            if output::structured(ctx.format, &hook) {
                return Ok(Exit::Ok);
            }
            println!("URL:      {}", ctx.client.url(&output::cell(&hook["path"])));
            println!("Created:  {}", output::time(hook["created_at"].as_i64()));
            println!(
                "Secret:   made {}",
                output::time(hook["rotated_at"].as_i64())
            );
            Ok(Exit::Ok)
        }
        HooksCommand::Rotate { target } => {
            let hook = ctx.client.post(&hook_path(&target)?, json!({})).await?;
            if output::structured(ctx.format, &hook) {
                return Ok(Exit::Ok);
            }
            // Only the secret on stdout, so `> file` takes it whole.
            eprintln!(
                "hook {} of {target}: deliveries go to {}\nsign them with this secret (GitHub: paste it whole; Standard Webhooks: as is); it is shown only now:",
                output::cell(&hook["id"]),
                ctx.client.url(&output::cell(&hook["path"]))
            );
            println!("{}", output::cell(&hook["secret"]));
            Ok(Exit::Ok)
        }
        HooksCommand::Deliveries { target } => {
            let hook = ctx.client.get(&hook_path(&target)?).await?;
            let id = output::cell(&hook["id"]);
            let body = ctx
                .client
                .get(&format!("/api/v1/hooks/{}/deliveries", encode(&id)))
                .await?;
            if output::structured(ctx.format, &body) {
                return Ok(Exit::Ok);
            }
            let rows: Vec<Vec<String>> = body["deliveries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    vec![
                        output::time(d["received_at"].as_i64()),
                        output::cell(&d["scheme"]),
                        output::cell(&d["http_status"]),
                        output::status(
                            ctx.colour,
                            if d["accepted"] == Value::Bool(true) {
                                "accepted"
                            } else {
                                "refused"
                            },
                        ),
                        match d["run_id"].as_i64() {
                            Some(run) => format!("run/{run}"),
                            None => "-".into(),
                        },
                        output::cell(&d["reason"]),
                    ]
                })
                .collect();
            output::table(
                &["RECEIVED", "SCHEME", "HTTP", "OUTCOME", "RUN", "REASON"],
                &rows,
            );
            Ok(Exit::Ok)
        }
    }
}

/// Every webhook pipeline with its hook's URL, or `(none)` before one is made.
pub async fn list(ctx: &Ctx) -> anyhow::Result<Exit> {
    let workflows = ctx.client.get("/api/v1/workflows").await?;
    let mut hooks = Vec::new();
    for workflow in workflows["workflows"].as_array().into_iter().flatten() {
        let name = workflow["name"].as_str().unwrap_or_default();
        let detail = ctx
            .client
            .get(&format!("/api/v1/workflows/{}", encode(name)))
            .await?;
        for pipeline in detail["pipelines"].as_array().into_iter().flatten() {
            if pipeline["trigger"] != "webhook" {
                continue;
            }
            let pname = pipeline["name"].as_str().unwrap_or_default();
            let target = format!("{name}/{pname}");
            // No hook yet is a 404, and a normal state here.
            let hook = ctx
                .client
                .get(&hook_path(&target)?)
                .await
                .unwrap_or(Value::Null);
            hooks.push(json!({ "workflow": name, "pipeline": pname, "hook": hook }));
        }
    }
    let body = json!({ "hooks": hooks });
    if output::structured(ctx.format, &body) {
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = hooks
        .iter()
        .map(|h| {
            let hook = &h["hook"];
            vec![
                format!(
                    "{}/{}",
                    output::cell(&h["workflow"]),
                    output::cell(&h["pipeline"])
                ),
                if hook.is_null() {
                    "(none: xenectl hooks rotate)".to_string()
                } else {
                    ctx.client.url(&output::cell(&hook["path"]))
                },
                output::time(hook["rotated_at"].as_i64()),
            ]
        })
        .collect();
    output::table(&["PIPELINE", "URL", "SECRET MADE"], &rows);
    Ok(Exit::Ok)
}
