//! API tokens: `tokens create|list|revoke` and `get tokens`.

use xene_api::access::{NewToken, TokenInfo, TokenList, TokenRequest};
use xene_api::paths;

use super::Ctx;
use crate::args::TokensCommand;
use crate::error::{Exit, fail};
use crate::output;
use crate::sent;

pub async fn run(ctx: &Ctx, command: TokensCommand) -> anyhow::Result<Exit> {
    match command {
        TokensCommand::Create {
            name,
            role,
            expires_in,
        } => {
            let request = TokenRequest {
                name,
                role: None,
                expires_in,
            };
            // The role goes as typed, not checked here: the server refuses
            // one it does not know, after an unreachable server (exit 5) or
            // a refused credential (exit 3) would have ended the command.
            let mut request = serde_json::to_value(&request)?;
            if let Some(role) = role {
                request = sent::with_field(request, "role", role);
            }
            let answer = ctx.client.post(&paths::tokens(), &request).await?;
            let Some(made) = ctx.for_table::<NewToken>(&answer)? else {
                return Ok(Exit::Ok);
            };
            let info = &made.info;
            // Only the token on stdout, so `> file` or `$(...)` takes it whole.
            eprintln!(
                "token {} ({}, {}) created, valid until {} UTC; it is shown only now:",
                info.id,
                output::text(Some(&info.name)),
                info.role,
                output::time(info.expires_at)
            );
            println!("{}", made.token);
            Ok(Exit::Ok)
        }
        TokensCommand::List => list(ctx).await,
        TokensCommand::Revoke { id } => {
            ctx.client.delete(&paths::token(&id)).await?;
            println!("token/{id} revoked");
            Ok(Exit::Ok)
        }
    }
}

/// `active`, or `revoked` in its colour.
fn state(colour: bool, token: &TokenInfo) -> String {
    if token.revoked_at.is_some() {
        output::status(colour, "revoked")
    } else {
        "active".into()
    }
}

pub async fn list(ctx: &Ctx) -> anyhow::Result<Exit> {
    let Some(list) = ctx.get_for_table::<TokenList>(&paths::tokens()).await? else {
        return Ok(Exit::Ok);
    };
    let rows: Vec<Vec<String>> = list
        .tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                output::text(Some(&t.name)),
                t.role.to_string(),
                output::time(Some(t.created_at)),
                output::time(t.expires_at),
                output::time(t.last_used_at),
                state(ctx.colour, t),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "NAME",
            "ROLE",
            "CREATED",
            "EXPIRES",
            "LAST USED",
            "STATE",
        ],
        &rows,
    );
    Ok(Exit::Ok)
}

pub async fn describe(ctx: &Ctx, id: &str) -> anyhow::Result<Exit> {
    let body = ctx.client.answer(&paths::tokens()).await?.json();
    let tokens = sent::items::<TokenInfo>(&body, "tokens")?;
    let Some((token, as_sent)) = tokens.into_iter().find(|(t, _)| t.id == id) else {
        return Err(fail(Exit::NotFound, format!("no token with id {id:?}")));
    };
    if output::structured(ctx.format, &as_sent) {
        return Ok(Exit::Ok);
    }
    println!("Token:      {}", token.id);
    println!("Name:       {}", output::text(Some(&token.name)));
    println!("Role:       {}", token.role);
    println!("Created:    {}", output::time(Some(token.created_at)));
    println!("Expires:    {}", output::time(token.expires_at));
    println!("Last used:  {}", output::time(token.last_used_at));
    println!("State:      {}", state(ctx.colour, &token));
    Ok(Exit::Ok)
}
