//! `xenectl config ...`: the contexts in the config file.

use crate::args::{ConfigCommand, Global};
use crate::config::{self, Config, Context};
use crate::error::{Exit, fail};
use crate::output;

pub fn run(global: &Global, command: &ConfigCommand) -> anyhow::Result<Exit> {
    let mut config = Config::load()?;
    match command {
        ConfigCommand::UseContext { name } => {
            if !config.contexts.contains_key(name) {
                return Err(fail(Exit::NotFound, format!("no context named {name:?}")));
            }
            config.current_context = Some(name.clone());
            config.save()?;
            eprintln!("switched to context {name:?}");
        }
        ConfigCommand::GetContexts => {
            let rows: Vec<Vec<String>> = config
                .contexts
                .iter()
                .map(|(name, c)| {
                    let current = config.current_context.as_deref() == Some(name.as_str());
                    vec![
                        if current { "*" } else { "" }.into(),
                        name.clone(),
                        c.server.clone(),
                        if c.token.is_some() { "yes" } else { "no" }.into(),
                    ]
                })
                .collect();
            output::table(&["CURRENT", "NAME", "SERVER", "TOKEN"], &rows);
        }
        ConfigCommand::SetContext { name } => {
            let Some(server) = &global.server else {
                return Err(fail(
                    Exit::Usage,
                    "set-context needs --server URL".to_string(),
                ));
            };
            let server = config::normalize(server)?;
            let entry = config.contexts.entry(name.clone()).or_insert(Context {
                server: server.clone(),
                token: None,
            });
            if entry.server != server {
                // A token is for its server only.
                entry.token = None;
                entry.server = server;
            }
            if config.current_context.is_none() {
                config.current_context = Some(name.clone());
            }
            config.save()?;
            eprintln!("context {name:?} set");
        }
        ConfigCommand::DeleteContext { name } => {
            if config.contexts.remove(name).is_none() {
                return Err(fail(Exit::NotFound, format!("no context named {name:?}")));
            }
            if config.current_context.as_deref() == Some(name.as_str()) {
                config.current_context = None;
            }
            config.save()?;
            eprintln!("context {name:?} deleted");
        }
        ConfigCommand::CurrentContext => match &config.current_context {
            Some(name) => println!("{name}"),
            None => return Err(fail(Exit::NotFound, "no current context")),
        },
    }
    Ok(Exit::Ok)
}
