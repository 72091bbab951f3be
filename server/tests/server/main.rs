//! Server tests over real HTTP, each against SQLite and a throwaway PostgreSQL.

mod util;

mod api;
mod controllers;
mod gateway;
mod health;
mod tls;
