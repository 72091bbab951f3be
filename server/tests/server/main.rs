//! Server tests over real HTTP, each against SQLite and a throwaway PostgreSQL.

mod process;
mod util;

mod access;
mod agent_socket;
mod agents;
mod agents_tls;
mod api;
mod api_fuzz;
mod apply;
mod bounds;
mod cli_login;
mod controllers;
mod data_dir;
mod dispatch;
mod feed;
mod gateway;
mod guests;
mod hardening;
mod headers;
mod health;
mod load;
mod network;
mod observability;
mod openapi;
mod protected_secrets;
mod secrets;
mod settings;
mod soak;
mod stored_templates;
mod summaries;
mod tls;
mod triggers;
mod unknown_runs;
mod webhooks;
