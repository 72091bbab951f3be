//! The live feeds' messages, sent as JSON text over WebSocket: a run's feed
//! (`/api/v1/runs/{id}/events`) and the runs list's (`/api/v1/runs/feed`).
//! Each message names itself in `type`.

use serde::{Deserialize, Serialize};

use crate::run::{Run, RunDetail};

/// A message of a run's feed, in order: the run whenever it changes, its
/// log chunks as they arrive, then `end` once it is over and every chunk
/// was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// A message lives only until it is sent: boxing the run would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum RunFeed {
    /// The run's state, tasks and steps included.
    Run {
        /// The run.
        run: RunDetail,
    },
    /// A piece of one step's log.
    Log(LogChunk),
    /// The run is over and every chunk was sent; the feed closes.
    End,
}

/// A message of the runs list's feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// A message lives only until it is sent: boxing the run would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum ListFeed {
    /// A run that changed (without its tasks).
    Run {
        /// The run.
        run: Run,
    },
    /// News may have been missed: read the list again.
    Resync,
}

/// A piece of one step's log, as stored and as a run's feed sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Orders every chunk of the run: resume after it with `after=`.
    pub cursor: i64,
    /// The attempt of the run it was written in, from 1.
    pub attempt: i64,
    /// Its task.
    pub task: String,
    /// Its step.
    pub step: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Where `data` starts in its step's log (bytes); a gap before it is a
    /// part the per-step cap dropped.
    pub offset: i64,
    /// Whole lines, each ending in a newline.
    pub data: String,
    /// UTC milliseconds.
    pub at: i64,
}

impl RunFeed {
    /// The message as the server sends it. Through a `serde_json::Value`,
    /// whose keys are sorted: the bytes stay those the feed always sent.
    pub fn to_text(&self) -> String {
        to_text(self)
    }
}

impl ListFeed {
    /// The message as the server sends it (see [`RunFeed::to_text`]).
    pub fn to_text(&self) -> String {
        to_text(self)
    }
}

fn to_text(message: &impl Serialize) -> String {
    serde_json::to_value(message)
        .expect("feed messages serialize")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_and_keep_their_wire_form() {
        let chunk = LogChunk {
            cursor: 7,
            attempt: 1,
            task: "t".into(),
            step: "s".into(),
            stream: "stdout".into(),
            offset: 0,
            data: "hi\n".into(),
            at: 5,
        };
        let text = RunFeed::Log(chunk.clone()).to_text();
        assert_eq!(
            text,
            r#"{"at":5,"attempt":1,"cursor":7,"data":"hi\n","offset":0,"step":"s","stream":"stdout","task":"t","type":"log"}"#
        );
        assert_eq!(
            serde_json::from_str::<RunFeed>(&text).unwrap(),
            RunFeed::Log(chunk)
        );
        assert_eq!(RunFeed::End.to_text(), r#"{"type":"end"}"#);
        assert_eq!(ListFeed::Resync.to_text(), r#"{"type":"resync"}"#);
        assert_eq!(
            serde_json::from_str::<ListFeed>(r#"{"type":"resync"}"#).unwrap(),
            ListFeed::Resync
        );
    }
}
