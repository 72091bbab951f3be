//! Webhooks: `hooks show|rotate|deliveries WORKFLOW/PIPELINE`, `get hooks`.

use serde_json::{Value, json};
use xene_api::hooks::{DeliveryList, HookInfo, NewSecret};
use xene_api::paths;
use xene_api::workflows::{WorkflowDetail, WorkflowList};

use super::Ctx;
use crate::args::HooksCommand;
use crate::error::{Exit, fail};
use crate::output;
use crate::sent;

fn hook_path(target: &str) -> anyhow::Result<String> {
    let Some((workflow, pipeline)) = target.split_once('/') else {
        return Err(fail(
            Exit::Usage,
            format!("{target:?} is not WORKFLOW/PIPELINE"),
        ));
    };
    Ok(paths::pipeline_hook(workflow, pipeline))
}

/// Where senders post deliveries: the server's own answer when it knows
/// its public URL, else the address this command reached it by.
fn hook_url(ctx: &Ctx, hook: &HookInfo) -> String {
    hook.url
        .clone()
        .unwrap_or_else(|| ctx.client.url(&hook.path))
}

pub async fn run(ctx: &Ctx, command: HooksCommand) -> anyhow::Result<Exit> {
    match command {
        HooksCommand::Show { target } => {
            let Some(hook) = ctx.get_for_table::<HookInfo>(&hook_path(&target)?).await? else {
                return Ok(Exit::Ok);
            };
            println!("URL:      {}", hook_url(ctx, &hook));
            println!("Created:  {}", output::time(Some(hook.created_at)));
            println!("Secret:   made {}", output::time(Some(hook.rotated_at)));
            Ok(Exit::Ok)
        }
        HooksCommand::Rotate { target } => {
            let answer = ctx.client.post(&hook_path(&target)?, &json!({})).await?;
            let Some(made) = ctx.for_table::<NewSecret>(&answer)? else {
                return Ok(Exit::Ok);
            };
            // Only the secret on stdout, so `> file` takes it whole.
            eprintln!(
                "hook {} of {target}: deliveries go to {}\nsign them with this secret (GitHub: paste it whole; Standard Webhooks: as is); it is shown only now:",
                made.hook.id,
                hook_url(ctx, &made.hook)
            );
            println!("{}", made.secret);
            Ok(Exit::Ok)
        }
        HooksCommand::Deliveries { target } => {
            let hook: HookInfo = ctx.client.get(&hook_path(&target)?).await?;
            let Some(list) = ctx
                .get_for_table::<DeliveryList>(&paths::hook_deliveries(&hook.id))
                .await?
            else {
                return Ok(Exit::Ok);
            };
            let rows: Vec<Vec<String>> = list
                .deliveries
                .iter()
                .map(|d| {
                    vec![
                        output::time(Some(d.received_at)),
                        output::text(Some(&d.scheme)),
                        d.http_status.to_string(),
                        output::status(ctx.colour, if d.accepted { "accepted" } else { "refused" }),
                        match d.run_id {
                            Some(run) => format!("run/{run}"),
                            None => "-".into(),
                        },
                        output::text(Some(&d.reason)),
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
    let list: WorkflowList = ctx.client.get(&paths::workflows()).await?;
    // Each webhook pipeline as `WORKFLOW/PIPELINE`, with its hook if made,
    // as read (for the table) and as sent (for `-o json|yaml`).
    let mut hooks: Vec<(String, String, Option<HookInfo>, Value)> = Vec::new();
    for workflow in &list.workflows {
        let name = &workflow.name;
        let detail: WorkflowDetail = ctx.client.get(&paths::workflow(name)).await?;
        for pipeline in detail.pipelines {
            if pipeline.trigger != "webhook" {
                continue;
            }
            // No hook yet is a 404, and a normal state here.
            let as_sent = match ctx
                .client
                .answer(&paths::pipeline_hook(name, &pipeline.name))
                .await
            {
                Ok(answer) => answer.json(),
                Err(_) => Value::Null,
            };
            let hook = sent::read::<HookInfo>(&as_sent).ok();
            hooks.push((name.clone(), pipeline.name, hook, as_sent));
        }
    }
    let listed: Vec<_> = hooks
        .iter()
        .map(|(workflow, pipeline, _, hook)| {
            json!({ "workflow": workflow, "pipeline": pipeline, "hook": hook })
        })
        .collect();
    if output::structured(ctx.format, &json!({ "hooks": listed })) {
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = hooks
        .iter()
        .map(|(workflow, pipeline, hook, _)| {
            vec![
                format!("{workflow}/{pipeline}"),
                match hook {
                    Some(hook) => ctx.client.url(&hook.path),
                    None => "(none: xenectl hooks rotate)".to_string(),
                },
                output::time(hook.as_ref().map(|h| h.rotated_at)),
            ]
        })
        .collect();
    output::table(&["PIPELINE", "URL", "SECRET MADE"], &rows);
    Ok(Exit::Ok)
}
