//! Fixtures for the tests and benches of every crate: a database (SQLite
//! or a throwaway PostgreSQL), real `xene` and `xene-agent` processes, an
//! HTTP client for the API, an S3 API (moto), free ports, private
//! directories and waiting.
//!
//! It must never depend on `xene-server` or `xene-agent`: the server's own
//! tests use it, and a dev-dependency cycle would build the server twice.
//! So the binaries are handed in as paths, and what needs the server's
//! library (the in-process `TestServer`) stays in the server's tests.

pub mod agent;
pub mod bins;
pub mod client;
pub mod db;
pub mod docker;
pub mod net;
pub mod postgres;
pub mod s3;
pub mod session;
pub mod tempdir;
pub mod wait;
pub mod xene;

pub use agent::Agent;
pub use client::{Client, admin_client, admin_token, client_with_token, response};
pub use db::{BACKENDS, Backend, TestDb, files_under, sqlite_url};
pub use net::{free_port, next_addr};
pub use postgres::Postgres;
pub use s3::S3;
pub use session::{cookie_pair, no_redirects, set_cookie};
pub use tempdir::private_tempdir;
pub use wait::{wait_for, wait_for_blocking};
pub use xene::{Xene, listening_url};

/// A number no other call in this machine's tests returns (the clock in
/// nanoseconds), for names of files that must not collide.
pub fn nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
