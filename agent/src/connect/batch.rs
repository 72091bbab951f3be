//! How events travel: in batches bounded by count and by their size as
//! sent, well under what the server takes in one message.

use xene_core::event::RunEvent;

/// Most events in one batch.
pub const MAX_BATCH: usize = 256;
/// The most bytes of one batch as sent (JSON), an eighth of what the server
/// takes in one message (8 MiB): a batch it refused would be resent forever.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// The most lines of output one event carries.
pub const MAX_LOGS_BYTES: usize = 64 * 1024;

/// The first events of `pending` that make one batch: at most
/// [`MAX_BATCH`] of them and [`MAX_BATCH_BYTES`] as sent. Log lines may be
/// long, and a batch the server refuses would be resent forever; one event
/// always goes, whatever its size.
pub fn take_batch<'a>(pending: impl Iterator<Item = &'a RunEvent>) -> Vec<RunEvent> {
    let mut bytes = 0;
    pending
        .take(MAX_BATCH)
        .take_while(|event| {
            let fits = bytes == 0 || bytes + event_size(event) <= MAX_BATCH_BYTES;
            bytes += event_size(event);
            fits
        })
        .cloned()
        .collect()
}

/// An event's size as sent, or a little more: its texts as JSON escapes
/// them (a control character takes six bytes), its names, and room for the
/// rest.
pub fn event_size(event: &RunEvent) -> usize {
    let text = |t: &Option<String>| t.as_deref().map_or(0, escaped_len);
    match event {
        RunEvent::Log {
            task, step, data, ..
        }
        | RunEvent::Logs {
            task, step, data, ..
        } => escaped_len(data) + escaped_len(task) + escaped_len(step) + 64,
        RunEvent::TaskFinished {
            task,
            output,
            error,
            ..
        } => text(output) + text(error) + escaped_len(task) + 160,
        RunEvent::StepStarted { task, step } | RunEvent::StepFinished { task, step, .. } => {
            escaped_len(task) + escaped_len(step) + 128
        }
        RunEvent::TaskStarted { task, .. } => escaped_len(task) + 128,
        RunEvent::CacheRestored {
            task, cache, key, ..
        } => escaped_len(task) + escaped_len(cache) + escaped_len(key) + 128,
        RunEvent::RunStarted { run_id, pipeline } => {
            escaped_len(run_id) + escaped_len(pipeline) + 128
        }
        RunEvent::RunFinished { .. } => 128,
    }
}

/// The length of `text` inside a JSON string.
fn escaped_len(text: &str) -> usize {
    text.len()
        + text
            .bytes()
            .map(|b| match b {
                b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
                0..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}
