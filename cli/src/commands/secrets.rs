//! Secrets: `secrets set|rm|list|rotate-key` and `get secrets`. A value is
//! read from stdin or a file, never taken from the command line.

use std::io::Read;

use serde_json::json;

use super::Ctx;
use crate::args::SecretsCommand;
use crate::client::encode;
use crate::error::{Exit, fail};
use crate::output;

/// The server refuses more; reading stops just past it.
const MAX_VALUE_BYTES: u64 = 64 * 1024;

pub async fn run(ctx: &Ctx, command: SecretsCommand) -> anyhow::Result<Exit> {
    match command {
        SecretsCommand::Set {
            name,
            workflow,
            from_file,
            protected,
            unprotected,
            allow,
            keep_value,
        } => {
            let mut body = json!({});
            if protected || !allow.is_empty() {
                body["protected"] = json!(true);
            }
            if unprotected {
                body["protected"] = json!(false);
                body["allow"] = json!([]);
            }
            if !allow.is_empty() {
                body["allow"] = json!(allow);
            }
            let value = match from_file {
                _ if keep_value => None,
                Some(path) => {
                    let file = std::fs::File::open(&path).map_err(|e| {
                        fail(Exit::Usage, format!("cannot read {}: {e}", path.display()))
                    })?;
                    Some(read_value(file, false)?)
                }
                None => {
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        eprintln!("Type the value of {name}, then Enter and Ctrl-D:");
                    }
                    Some(read_value(std::io::stdin(), true)?)
                }
            };
            if let Some(value) = value {
                body["value"] = json!(value);
            }
            let answer = ctx
                .client
                .put(&path(&name, workflow.as_deref()), body)
                .await?;
            if output::structured(ctx.format, &answer.body) {
                return Ok(Exit::Ok);
            }
            let verb = if answer.status.as_u16() == 201 {
                "created"
            } else {
                "replaced"
            };
            let protection = match answer.body["allow"].as_array() {
                Some(allow) if answer.body["protected"] == true && !allow.is_empty() => {
                    let names: Vec<String> = allow.iter().map(output::cell).collect();
                    format!(" (protected; allowed: {})", names.join(", "))
                }
                _ if answer.body["protected"] == true => " (protected)".to_string(),
                _ => String::new(),
            };
            println!(
                "secret/{} {verb}{protection}",
                scoped(&name, workflow.as_deref())
            );
            Ok(Exit::Ok)
        }
        SecretsCommand::Rm { name, workflow } => {
            ctx.client.delete(&path(&name, workflow.as_deref())).await?;
            println!("secret/{} deleted", scoped(&name, workflow.as_deref()));
            Ok(Exit::Ok)
        }
        SecretsCommand::List { workflow } => list(ctx, workflow.as_deref()).await,
        SecretsCommand::RotateKey => {
            let answer = ctx
                .client
                .post("/api/v1/secrets/rotate-key", json!({}))
                .await?;
            if output::structured(ctx.format, &answer) {
                return Ok(Exit::Ok);
            }
            println!(
                "{} secret(s) re-encrypted; key {} now encrypts",
                output::cell(&answer["reencrypted"]),
                output::cell(&answer["key_id"])
            );
            Ok(Exit::Ok)
        }
    }
}

pub async fn list(ctx: &Ctx, workflow: Option<&str>) -> anyhow::Result<Exit> {
    let path = match workflow {
        Some(w) => format!("/api/v1/secrets?workflow={}", encode(w)),
        None => "/api/v1/secrets".to_string(),
    };
    let body = ctx.client.get(&path).await?;
    if output::structured(ctx.format, &body) {
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = body["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                output::cell(&s["name"]),
                s["workflow"]
                    .as_str()
                    .map_or_else(|| "(global)".to_string(), str::to_string),
                protection(s),
                output::cell(&s["updated_by"]),
                output::time(s["updated_at"].as_i64()),
            ]
        })
        .collect();
    output::table(
        &["NAME", "WORKFLOW", "PROTECTED", "UPDATED BY", "UPDATED"],
        &rows,
    );
    Ok(Exit::Ok)
}

/// "no", or "yes: " and who may use it.
fn protection(secret: &serde_json::Value) -> String {
    if secret["protected"] != true {
        return "no".to_string();
    }
    let allow: Vec<String> = secret["allow"]
        .as_array()
        .into_iter()
        .flatten()
        .map(output::cell)
        .collect();
    if allow.is_empty() {
        "yes: its workflow".to_string()
    } else {
        format!("yes: {}", allow.join(", "))
    }
}

/// Reads a value, bounded; from stdin, one trailing newline (what `echo`
/// and a typed Enter add) is not part of it.
fn read_value(source: impl Read, trim_newline: bool) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    source
        .take(MAX_VALUE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(Exit::Usage, format!("reading the value: {e}")))?;
    if bytes.len() as u64 > MAX_VALUE_BYTES {
        return Err(fail(
            Exit::Usage,
            format!("a secret's value is at most {MAX_VALUE_BYTES} bytes"),
        ));
    }
    let mut value = String::from_utf8(bytes)
        .map_err(|_| fail(Exit::Usage, "a secret's value must be UTF-8 text"))?;
    if trim_newline {
        if value.ends_with('\n') {
            value.pop();
        }
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

fn path(name: &str, workflow: Option<&str>) -> String {
    let mut path = format!("/api/v1/secrets/{}", encode(name));
    if let Some(w) = workflow {
        path.push_str(&format!("?workflow={}", encode(w)));
    }
    path
}

fn scoped(name: &str, workflow: Option<&str>) -> String {
    match workflow {
        Some(w) => format!("{name} (workflow {w})"),
        None => name.to_string(),
    }
}

pub async fn describe(ctx: &Ctx, name: &str, workflow: Option<&str>) -> anyhow::Result<Exit> {
    let path = match workflow {
        Some(w) => format!("/api/v1/secrets?workflow={}", encode(w)),
        None => "/api/v1/secrets".to_string(),
    };
    let body = ctx.client.get(&path).await?;
    let found = body["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name && s["workflow"].as_str() == workflow)
        .cloned();
    let Some(secret) = found else {
        return Err(fail(
            Exit::NotFound,
            format!("no secret {}", scoped(name, workflow)),
        ));
    };
    if output::structured(ctx.format, &secret) {
        return Ok(Exit::Ok);
    }
    println!("Secret:     {}", output::cell(&secret["name"]));
    println!(
        "Scope:      {}",
        workflow.map_or_else(|| "global".to_string(), |w| format!("workflow {w}"))
    );
    println!(
        "Created:    {} by {}",
        output::time(secret["created_at"].as_i64()),
        output::cell(&secret["created_by"])
    );
    println!(
        "Updated:    {} by {}",
        output::time(secret["updated_at"].as_i64()),
        output::cell(&secret["updated_by"])
    );
    println!("Protected:  {}", protection(&secret));
    println!("Value:      (never shown)");
    Ok(Exit::Ok)
}
