//! Secrets: `secrets set|rm|list|rotate-key` and `get secrets`. A value is
//! read from stdin or a file, never taken from the command line.

use std::io::Read;

use serde_json::json;
use xene_api::paths;
use xene_api::secrets::{Rotated, SecretInfo, SecretList, SecretValueRequest};

use super::Ctx;
use crate::args::SecretsCommand;
use crate::error::{Exit, fail};
use crate::output;
use crate::sent;

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
            let mut request = SecretValueRequest::default();
            if protected || !allow.is_empty() {
                request.protected = Some(true);
            }
            if unprotected {
                request.protected = Some(false);
                request.allow = Some(Vec::new());
            }
            if !allow.is_empty() {
                request.allow = Some(allow);
            }
            request.value = match from_file {
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
            let answer = ctx
                .client
                .put(&paths::secret(&name, workflow.as_deref()), &request)
                .await?;
            let Some(secret) = ctx.for_table::<SecretInfo>(&answer)? else {
                return Ok(Exit::Ok);
            };
            let verb = if answer.status.as_u16() == 201 {
                "created"
            } else {
                "replaced"
            };
            let protection = match (secret.protected, secret.allow.is_empty()) {
                (true, false) => format!(" (protected; allowed: {})", secret.allow.join(", ")),
                (true, true) => " (protected)".to_string(),
                (false, _) => String::new(),
            };
            println!(
                "secret/{} {verb}{protection}",
                scoped(&name, workflow.as_deref())
            );
            Ok(Exit::Ok)
        }
        SecretsCommand::Rm { name, workflow } => {
            ctx.client
                .delete(&paths::secret(&name, workflow.as_deref()))
                .await?;
            println!("secret/{} deleted", scoped(&name, workflow.as_deref()));
            Ok(Exit::Ok)
        }
        SecretsCommand::List { workflow } => list(ctx, workflow.as_deref()).await,
        SecretsCommand::RotateKey => {
            let answer = ctx.client.post(&paths::rotate_key(), &json!({})).await?;
            let Some(rotated) = ctx.for_table::<Rotated>(&answer)? else {
                return Ok(Exit::Ok);
            };
            println!(
                "{} secret(s) re-encrypted; key {} now encrypts",
                rotated.reencrypted, rotated.key_id
            );
            Ok(Exit::Ok)
        }
    }
}

pub async fn list(ctx: &Ctx, workflow: Option<&str>) -> anyhow::Result<Exit> {
    let Some(list) = ctx
        .get_for_table::<SecretList>(&paths::secrets(workflow))
        .await?
    else {
        return Ok(Exit::Ok);
    };
    let rows: Vec<Vec<String>> = list
        .secrets
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.workflow.clone().unwrap_or_else(|| "(global)".to_string()),
                protection(s),
                output::text(Some(&s.updated_by)),
                output::time(Some(s.updated_at)),
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
fn protection(secret: &SecretInfo) -> String {
    if !secret.protected {
        "no".to_string()
    } else if secret.allow.is_empty() {
        "yes: its workflow".to_string()
    } else {
        format!("yes: {}", secret.allow.join(", "))
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

fn scoped(name: &str, workflow: Option<&str>) -> String {
    match workflow {
        Some(w) => format!("{name} (workflow {w})"),
        None => name.to_string(),
    }
}

pub async fn describe(ctx: &Ctx, name: &str, workflow: Option<&str>) -> anyhow::Result<Exit> {
    let body = ctx.client.answer(&paths::secrets(workflow)).await?.json();
    let found = sent::items::<SecretInfo>(&body, "secrets")?
        .into_iter()
        .find(|(s, _)| s.name == name && s.workflow.as_deref() == workflow);
    let Some((secret, as_sent)) = found else {
        return Err(fail(
            Exit::NotFound,
            format!("no secret {}", scoped(name, workflow)),
        ));
    };
    if output::structured(ctx.format, &as_sent) {
        return Ok(Exit::Ok);
    }
    println!("Secret:     {}", secret.name);
    println!(
        "Scope:      {}",
        workflow.map_or_else(|| "global".to_string(), |w| format!("workflow {w}"))
    );
    println!(
        "Created:    {} by {}",
        output::time(Some(secret.created_at)),
        output::text(Some(&secret.created_by))
    );
    println!(
        "Updated:    {} by {}",
        output::time(Some(secret.updated_at)),
        output::text(Some(&secret.updated_by))
    );
    println!("Protected:  {}", protection(&secret));
    println!("Value:      (never shown)");
    Ok(Exit::Ok)
}
