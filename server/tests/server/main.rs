//! Server tests over real HTTP, each against SQLite and a throwaway PostgreSQL.

mod process;
mod util;

mod agents;
mod agents_tls;
mod api;
mod controllers;
mod gateway;
mod hardening;
mod health;
mod network;
mod tls;
