//! The commands: each resolves its target (server and token), talks to the
//! server and prints for people or scripts.

use std::collections::BTreeMap;

use clap::CommandFactory;
use serde::de::DeserializeOwned;

use crate::args::{Cli, Command, Describe, Format, GetWhat};
use crate::client::{Answer, Client};
use crate::config::{self, Config, Target};
use crate::error::Exit;

mod agents;
mod artifacts;
mod caches;
mod contexts;
mod hooks;
mod login;
mod logs;
mod runs;
mod secrets;
mod tokens;
mod workflows;

/// What a command needs: where to send requests, and how to print.
pub struct Ctx {
    pub client: Client,
    pub target: Target,
    pub format: Format,
    pub colour: bool,
}

impl Ctx {
    /// An answer for people or scripts: with `-o json|yaml`, printed as the
    /// server sent it (`None`); for a table, read as `T`.
    pub fn for_table<T: DeserializeOwned>(&self, answer: &Answer) -> anyhow::Result<Option<T>> {
        if crate::output::structured(self.format, &answer.json()) {
            return Ok(None);
        }
        answer.read().map(Some)
    }

    /// `GET path`, for people or scripts (see `for_table`).
    pub async fn get_for_table<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<Option<T>> {
        let answer = self.client.answer(path).await?;
        self.for_table(&answer)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let global = &cli.global;
    // Commands that need no server first.
    match &cli.command {
        Command::Validate { file } => return workflows::validate(file),
        Command::Completion { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "xenectl",
                &mut std::io::stdout(),
            );
            return Ok(Exit::Ok);
        }
        Command::Config(command) => return contexts::run(global, command),
        Command::Login(login) => return login::login(global, login).await,
        _ => {}
    }
    let config = Config::load()?;
    let target = config::resolve(global, &config)?;
    let ctx = Ctx {
        client: Client::new(&target)?,
        target,
        format: global.output,
        colour: crate::output::colour(),
    };
    match cli.command {
        Command::Logout => login::logout(&ctx, config).await,
        Command::Apply {
            file,
            dry_run,
            approve,
            accept_run_time_choices,
        } => {
            let how = workflows::ApplyHow {
                dry_run,
                approve,
                accept_run_time_choices,
            };
            workflows::apply(&ctx, &file, how).await
        }
        Command::Get(get) => match get.what {
            GetWhat::Workflows => workflows::list(&ctx).await,
            GetWhat::Pipelines => workflows::pipelines(&ctx).await,
            GetWhat::Runs {
                workflow,
                pipeline,
                status,
                limit,
                watch,
            } => {
                let filter = runs::Filter {
                    workflow,
                    pipeline,
                    status,
                    limit,
                };
                runs::list(&ctx, &filter, watch).await
            }
            GetWhat::Agents { watch } => agents::list(&ctx, watch).await,
            GetWhat::Tokens => tokens::list(&ctx).await,
            GetWhat::Secrets { workflow } => secrets::list(&ctx, workflow.as_deref()).await,
            GetWhat::Hooks => hooks::list(&ctx).await,
        },
        Command::Describe { what } => match what {
            Describe::Workflow { name } => workflows::describe(&ctx, &name).await,
            Describe::Run { id } => runs::describe(&ctx, id).await,
            Describe::Agent { id } => agents::describe(&ctx, &id).await,
            Describe::Pipeline { target } => workflows::describe_pipeline(&ctx, &target).await,
            Describe::Secret { name, workflow } => {
                secrets::describe(&ctx, &name, workflow.as_deref()).await
            }
            Describe::Token { id } => tokens::describe(&ctx, &id).await,
            Describe::Hook { target } => {
                hooks::run(&ctx, crate::args::HooksCommand::Show { target }).await
            }
        },
        Command::Delete { what } => match what {
            crate::args::Delete::Workflow { name } => workflows::delete(&ctx, &name).await,
        },
        Command::Run {
            target,
            params,
            wait,
        } => runs::start(&ctx, &target, &params, wait).await,
        Command::Cancel { run } => runs::cancel(&ctx, run).await,
        Command::Approve {
            workflow,
            version,
            revoke: true,
            ..
        } => workflows::revoke(&ctx, &workflow, version).await,
        Command::Approve {
            workflow,
            version,
            accept_run_time_choices,
            ..
        } => workflows::approve(&ctx, &workflow, version, accept_run_time_choices).await,
        Command::Rerun { run, latest, wait } => runs::rerun(&ctx, run, latest, wait).await,
        Command::Logs {
            run,
            follow,
            task,
            step,
            timestamps,
            since,
        } => {
            let options = logs::Options {
                task,
                step,
                timestamps,
                since_ms: since.map(|d| crate::output::now_ms() - d.as_millis() as i64),
            };
            logs::logs(&ctx, run, follow, &options).await
        }
        Command::Agents(command) => agents::run(&ctx, command).await,
        Command::Tokens(command) => tokens::run(&ctx, command).await,
        Command::Secrets(command) => secrets::run(&ctx, command).await,
        Command::Hooks(command) => hooks::run(&ctx, command).await,
        Command::Artifacts(crate::args::ArtifactsCommand::Ls { run }) => {
            artifacts::list(&ctx, run).await
        }
        Command::Artifacts(crate::args::ArtifactsCommand::Get {
            run,
            name,
            dest,
            path,
        }) => artifacts::get(&ctx, run, &name, &dest, path.as_deref()).await,
        Command::Runs(crate::args::RunsCommand::Pin { run }) => {
            artifacts::pin(&ctx, run, true).await
        }
        Command::Runs(crate::args::RunsCommand::Unpin { run }) => {
            artifacts::pin(&ctx, run, false).await
        }
        Command::Caches(crate::args::CachesCommand::Ls { workflow }) => {
            caches::list(&ctx, &workflow).await
        }
        Command::Caches(crate::args::CachesCommand::Rm { workflow, id }) => {
            caches::remove(&ctx, &workflow, id).await
        }
        Command::Validate { .. }
        | Command::Completion { .. }
        | Command::Config(_)
        | Command::Login(_) => unreachable!("handled above"),
    }
}

/// Splits `key=value` arguments.
pub fn pairs(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            return Err(crate::error::fail(
                Exit::Usage,
                format!("{what} {item:?} is not key=value"),
            ));
        };
        if key.is_empty() {
            return Err(crate::error::fail(
                Exit::Usage,
                format!("{what} {item:?} has an empty key"),
            ));
        }
        map.insert(key.to_string(), value.to_string());
    }
    Ok(map)
}
