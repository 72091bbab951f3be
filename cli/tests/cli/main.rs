//! `xenectl` end to end: the real binary against real `xene` servers (and a
//! real `xene-agent`), on SQLite and on a throwaway PostgreSQL.

mod util;

mod access;
mod artifacts;
mod busy;
mod caches;
mod logs;
mod runs;
mod secrets;
mod triggers;
mod workflows;
