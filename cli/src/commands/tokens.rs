//! API tokens: `tokens create|list|revoke` and `get tokens`.

use serde_json::{Value, json};

use super::Ctx;
use crate::args::TokensCommand;
use crate::client::encode;
use crate::error::Exit;
use crate::output;

pub async fn run(ctx: &Ctx, command: TokensCommand) -> anyhow::Result<Exit> {
    match command {
        TokensCommand::Create {
            name,
            role,
            expires_in,
        } => {
            let mut body = json!({ "name": name });
            if let Some(role) = role {
                body["role"] = Value::String(role);
            }
            if let Some(e) = expires_in {
                body["expires_in"] = Value::String(e);
            }
            let answer = ctx.client.post("/api/v1/tokens", body).await?;
            if output::structured(ctx.format, &answer) {
                return Ok(Exit::Ok);
            }
            let info = &answer["info"];
            // Only the token on stdout, so `> file` or `$(...)` takes it whole.
            eprintln!(
                "token {} ({}, {}) created, valid until {} UTC; it is shown only now:",
                output::cell(&info["id"]),
                output::cell(&info["name"]),
                output::cell(&info["role"]),
                output::time(info["expires_at"].as_i64())
            );
            println!("{}", output::cell(&answer["token"]));
            Ok(Exit::Ok)
        }
        TokensCommand::List => list(ctx).await,
        TokensCommand::Revoke { id } => {
            ctx.client
                .delete(&format!("/api/v1/tokens/{}", encode(&id)))
                .await?;
            println!("token/{id} revoked");
            Ok(Exit::Ok)
        }
    }
}

pub async fn list(ctx: &Ctx) -> anyhow::Result<Exit> {
    let body = ctx.client.get("/api/v1/tokens").await?;
    if output::structured(ctx.format, &body) {
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = body["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                output::cell(&t["id"]),
                output::cell(&t["name"]),
                output::cell(&t["role"]),
                output::time(t["created_at"].as_i64()),
                output::time(t["expires_at"].as_i64()),
                output::time(t["last_used_at"].as_i64()),
                if t["revoked_at"].is_i64() {
                    output::status(ctx.colour, "revoked")
                } else {
                    "active".into()
                },
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
    let body = ctx.client.get("/api/v1/tokens").await?;
    let found = body["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["id"] == id)
        .cloned();
    let Some(token) = found else {
        return Err(crate::error::fail(
            Exit::NotFound,
            format!("no token with id {id:?}"),
        ));
    };
    if output::structured(ctx.format, &token) {
        return Ok(Exit::Ok);
    }
    println!("Token:      {}", output::cell(&token["id"]));
    println!("Name:       {}", output::cell(&token["name"]));
    println!("Role:       {}", output::cell(&token["role"]));
    println!("Created:    {}", output::time(token["created_at"].as_i64()));
    println!("Expires:    {}", output::time(token["expires_at"].as_i64()));
    println!(
        "Last used:  {}",
        output::time(token["last_used_at"].as_i64())
    );
    let state = if token["revoked_at"].is_i64() {
        "revoked"
    } else {
        "active"
    };
    println!("State:      {}", output::status(ctx.colour, state));
    Ok(Exit::Ok)
}
