//! The domain of Xene, free of I/O so that the server, the agent, the CLI and
//! the browser bundle (wasm32) all share one definition of a workflow.
#![deny(missing_docs)]

pub mod access;
pub mod ansi;
pub mod artifact;
pub mod cache;
pub mod complete;
pub mod condition;
pub mod context;
pub mod cron;
pub mod dag;
pub mod draft;
pub mod duration;
pub mod edit;
pub mod event;
pub mod layout;
pub mod merge;
pub mod params;
pub mod parse;
pub mod plan;
pub mod protocol;
mod shell;
pub mod spec;
pub mod status;
mod suggest;
pub mod tar;
pub mod template;
pub mod time;
mod var_name;
pub mod yaml;

pub use parse::{Diagnostic, Diagnostics, parse_workflow};
