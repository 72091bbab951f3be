//! The agent's integration tests: real processes, a real Docker engine, the
//! built `xene-agent` binary.

mod artifact_links;
mod artifacts;
mod attempt;
mod caches;
mod cli;
mod connect;
mod docker;
mod examples;
mod injection;
mod masking;
mod model;
mod sandbox;
mod shell;
mod util;
