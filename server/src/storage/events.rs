//! Applying the events an agent reports to the run's state, exactly once
//! (`apply_attempt`), and what storing them needs: log lines cut into
//! bounded chunks, text both databases take.
//!
//! Each event carries a number within its task attempt; the number is
//! recorded in the same transaction as the change it causes, so an event
//! sent again after a reconnect or a restart changes nothing the second time.

mod attempt;
pub use attempt::{ApplyError, AttemptApplied, apply_attempt};

/// `text` cut into pieces of at most `max` bytes, at line ends where a
/// line allows it (else at a character boundary); no empty piece.
fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() <= max {
            out.push(rest);
            break;
        }
        let mut cut = rest[..max].rfind('\n').map_or(0, |i| i + 1);
        if cut == 0 {
            cut = max;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// Lines waiting to be stored as one chunk.
struct PendingChunk {
    task: String,
    step: String,
    stream: &'static str,
    data: String,
    lines: i64,
}

impl PendingChunk {
    fn new(task: &str, step: &str, stream: &'static str) -> Self {
        Self {
            task: task.to_string(),
            step: step.to_string(),
            stream,
            data: String::new(),
            lines: 0,
        }
    }

    fn takes(&self, task: &str, step: &str, stream: &str, line: &str) -> bool {
        self.task == task
            && self.step == step
            && self.stream == stream
            && self.data.len() + line.len() < super::logs::MAX_CHUNK_BYTES
    }

    /// Appends whole lines, each ending in a newline.
    fn push(&mut self, lines: &str) {
        self.data.push_str(lines);
        self.lines += lines.matches('\n').count() as i64;
    }

    async fn store(
        self,
        tx: &mut super::WriteTx,
        cap: i64,
        run_id: i64,
        attempt: i64,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        super::logs::append(
            tx,
            cap,
            run_id,
            attempt,
            &self.task,
            &self.step,
            self.stream,
            &self.data,
            self.lines,
            now,
        )
        .await
    }
}

/// Text as both databases store it: PostgreSQL refuses NUL in text columns
/// (SQLite takes it), and step output may contain any byte.
fn text(value: &str) -> String {
    value.replace('\0', "\u{fffd}")
}
