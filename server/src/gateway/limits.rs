//! What the server takes from an agent. An agent holds a credential, but
//! what it says is still input: every field, list and batch is bounded, and
//! names must be the dispatched run's own, before anything reaches the
//! database. A breach ends the session as a protocol error.

use std::collections::{BTreeMap, BTreeSet};

use xene_core::event::RunEvent;
use xene_core::protocol::{AttemptRef, CompletedUpload, FilesRequest};

/// Most task attempts one agent may hold at once; a larger claim is cut to
/// this.
pub const MAX_CAPACITY: u32 = 256;
/// Task attempts an agent may report holding in a hello or a heartbeat (a
/// reconnect may report a few more than its capacity: attempts it is still
/// finishing).
pub const MAX_RUNNING: usize = 1024;
const MAX_LABELS: usize = 32;
const MAX_LABEL_KEY: usize = 63;
const MAX_LABEL_VALUE: usize = 255;
const MAX_VERSION: usize = 64;
const RUNTIMES: &[&str] = &["docker", "shell"];
/// Most events in one message.
pub const MAX_EVENTS: usize = 16_384;
/// Longest task or step name (as the spec allows).
const MAX_NAME: usize = xene_core::parse::MAX_ENV_NAME_LEN;
/// Longest output or error text of one event (outputs are capped at 64 KiB
/// by the agent; errors are short).
const MAX_TEXT: usize = 64 * 1024;
/// Most log bytes applied in one write transaction: a bigger batch is
/// applied in several, so no agent holds SQLite's write lock for long.
pub const APPLY_BYTES: usize = 4 << 20;

/// The hello's fields once checked.
#[derive(Debug)]
pub struct Hello {
    pub labels: BTreeMap<String, String>,
    pub runtimes: Vec<String>,
    pub capacity: u32,
    pub version: String,
}

pub fn hello(
    labels: BTreeMap<String, String>,
    runtimes: Vec<String>,
    capacity: u32,
    version: String,
    attempts: &[AttemptRef],
) -> Result<Hello, String> {
    if version.len() > MAX_VERSION || version.chars().any(char::is_control) {
        return Err(format!(
            "agent_version is up to {MAX_VERSION} printable characters"
        ));
    }
    check_labels(&labels)?;
    let distinct: BTreeSet<&String> = runtimes.iter().collect();
    if distinct.len() != runtimes.len() || runtimes.iter().any(|r| !RUNTIMES.contains(&r.as_str()))
    {
        return Err(format!("runtimes are distinct names of {RUNTIMES:?}"));
    }
    check_attempts(attempts)?;
    Ok(Hello {
        labels,
        runtimes,
        capacity: capacity.clamp(1, MAX_CAPACITY),
        version,
    })
}

/// Labels an agent declares or a join token fixes.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels"));
    }
    for (key, value) in labels {
        let key_ok = !key.is_empty()
            && key.len() <= MAX_LABEL_KEY
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if !key_ok {
            return Err(format!(
                "label keys are 1 to {MAX_LABEL_KEY} letters, digits and ._-/"
            ));
        }
        if value.len() > MAX_LABEL_VALUE || value.chars().any(char::is_control) {
            return Err(format!(
                "label values are up to {MAX_LABEL_VALUE} printable characters"
            ));
        }
    }
    Ok(())
}

pub fn check_attempts(attempts: &[AttemptRef]) -> Result<(), String> {
    if attempts.len() > MAX_RUNNING {
        return Err(format!("at most {MAX_RUNNING} task attempts"));
    }
    Ok(())
}

/// Bounds of a request about files (what the manifest may hold is
/// `xene_core::artifact::check_manifest`'s, checked by the service).
pub fn check_files(request: &FilesRequest) -> Result<(), String> {
    use xene_core::artifact::MAX_FILES;
    use xene_core::cache::{MAX_CHUNKS, MAX_KEY_BYTES, MAX_RESTORE_KEYS};
    let long_key = |key: &String| key.len() > MAX_KEY_BYTES;
    let (name, files, most) = match request {
        FilesRequest::Publish { name, files } => (name, files.len(), MAX_FILES),
        FilesRequest::Commit {
            name,
            files,
            completed,
        } => {
            check_completed(completed, files.len())?;
            (name, files.len(), MAX_FILES)
        }
        FilesRequest::Fetch { name } => (name, 0, MAX_FILES),
        FilesRequest::CacheRestore {
            name,
            key,
            restore_keys,
        } => {
            if restore_keys.len() > MAX_RESTORE_KEYS {
                return Err(format!(
                    "a cache has at most {MAX_RESTORE_KEYS} restore keys"
                ));
            }
            if long_key(key) || restore_keys.iter().any(long_key) {
                return Err(format!("a cache key is at most {MAX_KEY_BYTES} bytes"));
            }
            (name, 0, MAX_CHUNKS)
        }
        FilesRequest::CacheUpload { name, key, chunks }
        | FilesRequest::CacheSave {
            name, key, chunks, ..
        } => {
            if let FilesRequest::CacheSave { completed, .. } = request {
                check_completed(completed, chunks.len())?;
            }
            if long_key(key) {
                return Err(format!("a cache key is at most {MAX_KEY_BYTES} bytes"));
            }
            (name, chunks.len(), MAX_CHUNKS)
        }
    };
    if name.is_empty() || name.len() > MAX_ARTIFACT_NAME {
        return Err(format!(
            "an artifact or cache name is 1 to {MAX_ARTIFACT_NAME} characters"
        ));
    }
    if files > most {
        return Err(format!(
            "an artifact holds at most {MAX_FILES} files, a cache entry {MAX_CHUNKS} chunks; \
             this one has {files}"
        ));
    }
    Ok(())
}

/// Bounds of the multipart uploads a commit or a cache's save completes,
/// of blobs of its `files` files (or chunks).
fn check_completed(completed: &[CompletedUpload], files: usize) -> Result<(), String> {
    if completed.len() > files {
        return Err("more uploads completed than the artifact has files".into());
    }
    for done in completed {
        if done.etags.len() as u64 > crate::files::store::MAX_PARTS
            || done.etags.iter().any(|e| e.len() > MAX_ETAG)
            || done
                .upload_id
                .as_ref()
                .is_some_and(|u| u.len() > MAX_UPLOAD_ID)
        {
            return Err(format!(
                "the upload of blob {} is completed with too many or too long parts",
                done.digest
            ));
        }
    }
    Ok(())
}

/// The most an answer about files may take on the wire: what an agent may
/// send (`http::connect::MAX_MESSAGE_BYTES`), so it can read it.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Longest artifact name (as the spec allows).
const MAX_ARTIFACT_NAME: usize = 64;
/// Longest ETag of a part, and upload id, the server passes on to the store.
const MAX_ETAG: usize = 1024;
const MAX_UPLOAD_ID: usize = 2048;

/// Events of one task attempt: each names the attempt's `task` (and one of
/// its `steps`), and none speaks for the whole run, whose status the
/// server derives.
pub fn check_task_events(
    events: &[RunEvent],
    task: &str,
    steps: &BTreeSet<String>,
) -> Result<(), String> {
    for event in events {
        let named = match event {
            RunEvent::RunStarted { .. } | RunEvent::RunFinished { .. } => {
                return Err("a task attempt reports no run_started or run_finished".into());
            }
            RunEvent::TaskStarted { task, .. }
            | RunEvent::TaskFinished { task, .. }
            | RunEvent::CacheRestored { task, .. } => task,
            RunEvent::StepStarted { task, .. }
            | RunEvent::StepFinished { task, .. }
            | RunEvent::Log { task, .. }
            | RunEvent::Logs { task, .. } => task,
        };
        if named != task {
            return Err(format!(
                "the attempt is of task {:?}, not {:?}",
                clip(task),
                clip(named)
            ));
        }
    }
    let known = BTreeMap::from([(task.to_string(), steps.clone())]);
    check_events(events, &known)
}

/// Every name must be one of the run's (`known`: task -> its steps), and
/// every text bounded.
pub fn check_events(
    events: &[RunEvent],
    known: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(), String> {
    if events.len() > MAX_EVENTS {
        return Err(format!("at most {MAX_EVENTS} events in one message"));
    }
    let task_of = |task: &str| {
        known
            .get(task)
            .ok_or_else(|| format!("the run has no task {:?}", clip(task)))
    };
    let step_of = |task: &str, step: &str| {
        if task_of(task)?.contains(step) {
            Ok(())
        } else {
            Err(format!(
                "task {:?} has no step {:?}",
                clip(task),
                clip(step)
            ))
        }
    };
    let bounded = |what: &str, text: &Option<String>| match text {
        Some(t) if t.len() > MAX_TEXT => Err(format!("{what} is over {MAX_TEXT} bytes")),
        _ => Ok(()),
    };
    for event in events {
        match event {
            RunEvent::RunStarted { run_id, pipeline } => {
                if run_id.len() > MAX_NAME * 2 || pipeline.len() > MAX_NAME {
                    return Err("run_started names are too long".into());
                }
            }
            RunEvent::TaskStarted { task, .. } => {
                task_of(task)?;
            }
            RunEvent::StepStarted { task, step }
            | RunEvent::StepFinished { task, step, .. }
            | RunEvent::Log { task, step, .. }
            | RunEvent::Logs { task, step, .. } => step_of(task, step)?,
            RunEvent::TaskFinished {
                task,
                output,
                error,
                ..
            } => {
                task_of(task)?;
                bounded("an output", output)?;
                bounded("an error", error)?;
            }
            RunEvent::CacheRestored {
                task, cache, key, ..
            } => {
                task_of(task)?;
                if cache.len() > MAX_NAME || key.len() > xene_core::cache::MAX_KEY_BYTES {
                    return Err("cache_restored names are too long".into());
                }
            }
            RunEvent::RunFinished { .. } => {}
        }
    }
    Ok(())
}

/// Consecutive groups of `events` each holding at most `max_bytes` of log
/// text (a single bigger event makes a group of its own).
pub fn groups(events: &[RunEvent], max_bytes: usize) -> Vec<&[RunEvent]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, event) in events.iter().enumerate() {
        let size = match event {
            RunEvent::Log { data, .. } | RunEvent::Logs { data, .. } => data.len(),
            _ => 0,
        };
        if i > start && bytes + size > max_bytes {
            out.push(&events[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect::<String>().replace('\0', "\\0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use xene_core::event::LogStream;

    fn log(task: &str, step: &str, data: &str) -> RunEvent {
        RunEvent::Log {
            task: task.into(),
            step: step.into(),
            stream: LogStream::Stdout,
            data: data.into(),
        }
    }

    #[test]
    fn hello_fields_are_bounded_and_capacity_capped() {
        let ok = hello(
            [("pool".to_string(), "a".to_string())].into(),
            vec!["shell".into()],
            u32::MAX,
            "0.1.0".into(),
            &[],
        )
        .unwrap();
        assert_eq!(ok.capacity, MAX_CAPACITY);
        let labels: BTreeMap<String, String> = (0..40)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(hello(labels, vec![], 1, "v".into(), &[]).is_err());
        assert!(
            hello(
                [("a\0b".into(), "v".into())].into(),
                vec![],
                1,
                "v".into(),
                &[]
            )
            .is_err()
        );
        assert!(hello(BTreeMap::new(), vec!["vm".into()], 1, "v".into(), &[]).is_err());
        assert!(
            hello(
                BTreeMap::new(),
                vec!["shell".into(), "shell".into()],
                1,
                "v".into(),
                &[]
            )
            .is_err()
        );
        assert!(hello(BTreeMap::new(), vec![], 1, "x".repeat(100), &[]).is_err());
        let attempts = vec![AttemptRef { id: 1 }; MAX_RUNNING + 1];
        assert!(hello(BTreeMap::new(), vec![], 1, "v".into(), &attempts).is_err());
    }

    #[test]
    fn a_task_attempt_reports_only_its_own_task() {
        let steps: BTreeSet<String> = ["s".to_string()].into();
        assert!(check_task_events(&[log("t", "s", "hi")], "t", &steps).is_ok());
        assert!(check_task_events(&[log("u", "s", "hi")], "t", &steps).is_err());
        assert!(check_task_events(&[log("t", "x", "hi")], "t", &steps).is_err());
        let run_finished = RunEvent::RunFinished {
            status: xene_core::status::RunStatus::Success,
            duration_ms: 0,
        };
        assert!(check_task_events(&[run_finished], "t", &steps).is_err());
    }

    #[test]
    fn events_name_only_the_runs_tasks_and_steps() {
        let known: BTreeMap<String, BTreeSet<String>> =
            [("t".to_string(), ["s".to_string()].into())].into();
        assert!(check_events(&[log("t", "s", "hi")], &known).is_ok());
        assert!(check_events(&[log("t", "x", "hi")], &known).is_err());
        assert!(check_events(&[log("t\0", "s", "hi")], &known).is_err());
        let finished = RunEvent::TaskFinished {
            task: "t".into(),
            status: xene_core::status::TaskStatus::Success,
            output: Some("x".repeat(MAX_TEXT + 1)),
            duration_ms: 0,
            attempt: 1,
            error: None,
            retry_in_ms: None,
        };
        assert!(check_events(&[finished], &known).is_err());
    }

    #[test]
    fn big_batches_are_applied_in_groups() {
        let events: Vec<RunEvent> = (0..10).map(|_| log("t", "s", &"x".repeat(100))).collect();
        let groups = groups(&events, 250);
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [2, 2, 2, 2, 2]
        );
        assert_eq!(super::groups(&events[..1], 10).len(), 1);
        assert!(super::groups(&[], 10).is_empty());
    }

    #[test]
    fn cache_requests_are_bounded() {
        use xene_core::cache::{MAX_CHUNKS, MAX_KEY_BYTES, MAX_RESTORE_KEYS};
        let restore = |key: String, restore_keys: Vec<String>| FilesRequest::CacheRestore {
            name: "cargo".into(),
            key,
            restore_keys,
        };
        let ok = restore("k".into(), vec!["k-".into(); MAX_RESTORE_KEYS]);
        assert_eq!(check_files(&ok), Ok(()));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        for bad in [
            restore("k".into(), vec!["k-".into(); MAX_RESTORE_KEYS + 1]),
            restore(long.clone(), vec![]),
            restore("k".into(), vec![long.clone()]),
        ] {
            assert!(check_files(&bad).is_err(), "{bad:?}");
        }
        let chunk = xene_core::artifact::ManifestEntry {
            path: "00000.tar".into(),
            size: 1,
            mode: 0o644,
            digest: xene_core::artifact::Digest::from_sha256(&[1; 32]),
        };
        let save = |key: &str, chunks: usize| FilesRequest::CacheSave {
            name: "cargo".into(),
            key: key.into(),
            chunks: vec![chunk.clone(); chunks],
            completed: vec![],
            files: 1,
        };
        assert_eq!(check_files(&save("k", MAX_CHUNKS)), Ok(()));
        assert!(check_files(&save("k", MAX_CHUNKS + 1)).is_err());
        assert!(check_files(&save(&long, 1)).is_err());
        let upload = FilesRequest::CacheUpload {
            name: String::new(),
            key: "k".into(),
            chunks: vec![],
        };
        assert!(check_files(&upload).is_err());
    }
}
