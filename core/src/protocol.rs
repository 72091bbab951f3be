//! The agent <-> server protocol: JSON messages over one WebSocket that the
//! agent dials. These are wire types: add fields with `#[serde(default)]`,
//! never rename or remove one, and bump `PROTOCOL_VERSION` for anything else.
//!
//! The exchange (protocols 2 to 4): the agent says `Hello` (who it is, what it
//! runs, which task attempts it still holds from before a reconnect); the
//! server answers `Welcome`, then sends `TaskDispatch`es, one task attempt
//! each. The agent reports each attempt's events in numbered `TaskEvents`
//! batches; the server applies them idempotently and answers `TaskAck`, and
//! the agent keeps what is not acknowledged to send again after a reconnect.
//! `Heartbeat`s renew the leases of the attempts it holds.
//!
//! Protocol 3 adds `Files`: the agent asks where to upload the files a task
//! publishes and where to download the ones it needs (`FilesRequest`), and
//! the server answers with transfers (`FilesAnswer`); the bytes move over
//! HTTP, never over this socket. An agent of protocol 2 is refused, so a
//! task with artifacts never reaches an agent that cannot stage them.
//!
//! Protocol 4 adds caches: `FilesRequest::CacheRestore`, `CacheUpload` and
//! `CacheSave`, `TaskDispatch::cache_save` and `RunEvent::CacheRestored`.
//! An agent of protocol 3 is refused likewise.
//!
//! Protocol 1 placed whole runs; its messages are gone. A protocol 1
//! agent's `Hello` still decodes (its `running` list is ignored), so the
//! server reads its version and refuses it with a reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::artifact::{Digest, ManifestEntry};
use crate::context::TaskResult;
use crate::event::RunEvent;
use crate::spec::Task;

/// The protocol version this build speaks; `Hello` carries it.
pub const PROTOCOL_VERSION: u32 = 4;

/// WebSocket close code: the agent speaks a protocol version the server does not.
pub const CLOSE_UNSUPPORTED_PROTOCOL: u16 = 4000;
/// WebSocket close code: the agent's credential is revoked; it must not reconnect.
pub const CLOSE_REVOKED: u16 = 4001;
/// WebSocket close code: a newer connection of the same agent replaced this one.
pub const CLOSE_REPLACED: u16 = 4002;

/// The most bytes of upstream outputs a `TaskDispatch` carries inline; the
/// rest the agent fetches with `FetchOutputs`.
pub const INLINE_OUTPUTS: usize = 256 * 1024;
/// The most bytes of outputs one `Outputs` page carries (whole results only,
/// so a page may hold one result past it when a single result is larger).
pub const OUTPUT_PAGE: usize = 1024 * 1024;

/// Identifies one task attempt (protocol 2): what is dispatched, leased and
/// numbered. The id is the server's, unique across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttemptRef {
    /// The attempt's id on the server.
    pub id: i64,
}

/// What an agent sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The first message on every connection.
    Hello {
        /// `PROTOCOL_VERSION` of the agent.
        protocol: u32,
        /// The agent's version, for people.
        agent_version: String,
        /// The labels run selectors match.
        labels: BTreeMap<String, String>,
        /// `docker`, `shell`.
        runtimes: Vec<String>,
        /// Most task attempts at once.
        capacity: u32,
        /// Task attempts it is executing (or has unacknowledged events of)
        /// from before this connection.
        #[serde(default)]
        attempts: Vec<AttemptRef>,
    },
    /// The agent is alive and holds these task attempts.
    Heartbeat {
        /// The task attempts it holds.
        #[serde(default)]
        attempts: Vec<AttemptRef>,
    },
    /// Events `first_seq`, `first_seq + 1`, ... of one task attempt.
    TaskEvents {
        /// The task attempt they belong to.
        attempt: AttemptRef,
        /// The number of the first event (an attempt's events count from 0).
        first_seq: u64,
        /// The events, in order, all of the attempt's task.
        events: Vec<RunEvent>,
    },
    /// The dispatch said `more_outputs`: the next page of the outputs the
    /// attempt reads, by task name after `after`.
    FetchOutputs {
        /// The task attempt that reads them.
        attempt: AttemptRef,
        /// The last task name already received; `None` for the first page.
        after: Option<String>,
    },
    /// A request about the files of an attempt (protocol 3); the server
    /// answers with `ServerMessage::Files` of the same `id`.
    Files {
        /// The task attempt the files belong to.
        attempt: AttemptRef,
        /// Chosen by the agent, unique among its open requests; the answer
        /// carries it back.
        id: u64,
        /// What it asks.
        request: FilesRequest,
    },
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `Hello`.
    Welcome {
        /// The agent's id on the server.
        agent_id: String,
        /// How often to send a heartbeat.
        heartbeat_ms: u64,
    },
    /// Answers each heartbeat, so an agent can tell a live connection from
    /// one the network silently dropped (which TCP may take minutes to see).
    Pong,
    /// A task attempt to execute.
    TaskDispatch(Box<TaskDispatch>),
    /// Every event of `attempt` up to and including `seq` is stored.
    TaskAck {
        /// The task attempt.
        attempt: AttemptRef,
        /// The number of the last event stored.
        seq: u64,
    },
    /// The user cancelled the run: stop the attempt, run no `post` steps, and
    /// report it cancelled.
    CancelTask {
        /// The task attempt to cancel.
        attempt: AttemptRef,
    },
    /// The attempt is not this agent's any more (its lease ended, or it is
    /// gone): stop it and report nothing more.
    StopTask {
        /// The task attempt to stop.
        attempt: AttemptRef,
    },
    /// A page of the outputs an attempt reads, answering `FetchOutputs`.
    Outputs {
        /// The task attempt that reads them.
        attempt: AttemptRef,
        /// Results by task name, after the page's `after`, in name order.
        results: BTreeMap<String, TaskResult>,
        /// Where the next page starts (the last name in `results`); `None`
        /// when this is the last page.
        next: Option<String>,
    },
    /// The answer to `AgentMessage::Files` (protocol 3).
    Files {
        /// The task attempt the files belong to.
        attempt: AttemptRef,
        /// The request's `id`.
        id: u64,
        /// The answer.
        answer: FilesAnswer,
    },
}

/// What an agent asks about the artifacts of the attempt it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FilesRequest {
    /// Which of these blobs must be uploaded, and where to.
    Publish {
        /// The artifact, one its task publishes.
        name: String,
        /// Its files.
        files: Vec<ManifestEntry>,
    },
    /// All uploads done: store the manifest, staged for this attempt (it is
    /// published when the attempt ends as its `when` says).
    Commit {
        /// The artifact, one its task publishes.
        name: String,
        /// Its files, as in `Publish`.
        files: Vec<ManifestEntry>,
        /// The multipart uploads to complete, one per blob uploaded in parts.
        completed: Vec<CompletedUpload>,
    },
    /// Where to download a needed artifact from.
    Fetch {
        /// The artifact, one its task needs.
        name: String,
    },
    /// The entry to restore: `key` exactly, else, for each of
    /// `restore_keys` in order, the newest saved entry whose key starts
    /// with it. Answered by `FilesAnswer::CacheEntry`.
    CacheRestore {
        /// The cache, one its task declares.
        name: String,
        /// The full key.
        key: String,
        /// Prefixes to try when `key` has no entry, in order.
        #[serde(default)]
        restore_keys: Vec<String>,
    },
    /// Like `Publish`, for an entry's chunks (tar files). Answered by
    /// `Uploads`.
    CacheUpload {
        /// The cache, one its task declares.
        name: String,
        /// The full key.
        key: String,
        /// The entry's chunks.
        chunks: Vec<ManifestEntry>,
    },
    /// Like `Commit`: the entry is staged for this attempt and saved when
    /// the attempt succeeds. Answered by `Committed` (also when an entry of
    /// this key is saved already: the first save of a key wins) or
    /// `Refused` (quota, saving not allowed for this run): a refused save
    /// is a warning in the task's log, never a failure.
    CacheSave {
        /// The cache, one its task declares.
        name: String,
        /// The full key.
        key: String,
        /// The entry's chunks, as in `CacheUpload`.
        chunks: Vec<ManifestEntry>,
        /// The multipart uploads to complete, one per blob uploaded in parts.
        completed: Vec<CompletedUpload>,
        /// How many files the chunks hold.
        files: u64,
    },
}

/// The server's answer to a `FilesRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FilesAnswer {
    /// Answers `Publish`: only the blobs the store lacks.
    Uploads {
        /// One per missing blob.
        uploads: Vec<BlobUpload>,
    },
    /// Answers `Commit`: the manifest is stored.
    Committed,
    /// Answers `Fetch`.
    Downloads {
        /// The artifact's files.
        files: Vec<ManifestEntry>,
        /// One per distinct digest of `files`.
        downloads: Vec<BlobDownload>,
    },
    /// Answers `CacheRestore`: `key` is the matched entry's key, `None` on
    /// a miss (then both lists are empty).
    CacheEntry {
        /// The matched entry's key.
        key: Option<String>,
        /// How many files its chunks hold.
        files: u64,
        /// Its chunks.
        chunks: Vec<ManifestEntry>,
        /// One per distinct digest of `chunks`.
        downloads: Vec<BlobDownload>,
    },
    /// The request is refused; the task fails with this reason (a cache
    /// request's refusal is a warning only).
    Refused {
        /// A clear reason for people.
        error: String,
    },
}

/// One HTTP request the agent makes to move bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// `PUT` or `GET`.
    pub method: String,
    /// Absolute (a presigned URL of an S3 store), or server-relative,
    /// starting with `/` (the local store: the agent joins it to its
    /// server's base URL).
    pub url: String,
    /// Headers to send with it.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Where to upload one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobUpload {
    /// The blob.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The bytes of each part but the last.
    pub part_size: u64,
    /// In order: one when `size <= SINGLE_PUT_MAX` (and `upload_id` is
    /// `None`), else `ceil(size / part_size)`.
    pub parts: Vec<Transfer>,
    /// The multipart upload the parts belong to.
    #[serde(default)]
    pub upload_id: Option<String>,
}

/// A multipart upload the agent finished sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedUpload {
    /// The blob.
    pub digest: Digest,
    /// The `BlobUpload`'s `upload_id`.
    pub upload_id: Option<String>,
    /// The `ETag` response header of each part's PUT, in part order.
    pub etags: Vec<String>,
}

/// Where to download one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobDownload {
    /// The blob.
    pub digest: Digest,
    /// The request that gets its bytes.
    pub transfer: Transfer,
}

/// One task attempt for the agent to execute (protocol 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDispatch {
    /// The task attempt: events, leases and acknowledgements name it.
    pub attempt: AttemptRef,
    /// The run's id on the server, for people, spans and `XENE_*` variables.
    pub run_id: i64,
    /// The task's name in its pipeline.
    pub task: String,
    /// The attempt's number for this task, from 1 (`XENE_ATTEMPT`).
    pub number: u32,
    /// The workflow's name.
    pub workflow: String,
    /// The pipeline's name.
    pub pipeline_name: String,
    /// This task's spec, as of the run's workflow version.
    pub spec: Task,
    /// The pipeline's `env`, not rendered yet (the agent renders it).
    #[serde(default)]
    pub pipeline_env: BTreeMap<String, String>,
    /// Values of the pipeline's params, resolved.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Only the secrets this task names.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretValue>,
    /// Results of the upstream tasks it reads, in name order, up to
    /// `INLINE_OUTPUTS` bytes.
    #[serde(default)]
    pub outputs: BTreeMap<String, TaskResult>,
    /// The rest of the outputs come by `FetchOutputs`, after the last name in
    /// `outputs`.
    #[serde(default)]
    pub more_outputs: bool,
    /// The W3C `traceparent` of the server's span for this dispatch, when
    /// the server exports traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The attempt may save caches (false when its pipeline's `cache_save`
    /// says `never` for the run's trigger; absent means false).
    #[serde(default)]
    pub cache_save: bool,
}

/// A secret's value on its way to the steps that use it. It serializes as
/// the plain string (the link is what protects it), but never shows in a
/// `Debug` print, so a dispatch that ends up in a log line or an error
/// message does not carry the value with it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: call this only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_messages_are_tagged_and_round_trip() {
        let attempt = AttemptRef { id: 42 };
        let agent = [
            AgentMessage::Hello {
                protocol: PROTOCOL_VERSION,
                agent_version: "0.2.0".into(),
                labels: BTreeMap::new(),
                runtimes: vec!["shell".into()],
                capacity: 8,
                attempts: vec![attempt],
            },
            AgentMessage::Heartbeat {
                attempts: vec![attempt, AttemptRef { id: 43 }],
            },
            AgentMessage::TaskEvents {
                attempt,
                first_seq: 3,
                events: vec![RunEvent::TaskStarted {
                    task: "build".into(),
                    attempt: 2,
                }],
            },
            AgentMessage::FetchOutputs {
                attempt,
                after: Some("a".into()),
            },
            AgentMessage::Files {
                attempt,
                id: 1,
                request: FilesRequest::Publish {
                    name: "binary".into(),
                    files: vec![file()],
                },
            },
            AgentMessage::Files {
                attempt,
                id: 2,
                request: FilesRequest::Commit {
                    name: "binary".into(),
                    files: vec![file()],
                    completed: vec![CompletedUpload {
                        digest: digest(),
                        upload_id: Some("u1".into()),
                        etags: vec!["\"e1\"".into(), "\"e2\"".into()],
                    }],
                },
            },
            AgentMessage::Files {
                attempt,
                id: 3,
                request: FilesRequest::Fetch {
                    name: "binary".into(),
                },
            },
            AgentMessage::Files {
                attempt,
                id: 4,
                request: FilesRequest::CacheRestore {
                    name: "cargo".into(),
                    key: "cargo-1".into(),
                    restore_keys: vec!["cargo-".into()],
                },
            },
            AgentMessage::Files {
                attempt,
                id: 5,
                request: FilesRequest::CacheUpload {
                    name: "cargo".into(),
                    key: "cargo-1".into(),
                    chunks: vec![file()],
                },
            },
            AgentMessage::Files {
                attempt,
                id: 6,
                request: FilesRequest::CacheSave {
                    name: "cargo".into(),
                    key: "cargo-1".into(),
                    chunks: vec![file()],
                    completed: Vec::new(),
                    files: 12,
                },
            },
        ];
        let tags = [
            "hello",
            "heartbeat",
            "task_events",
            "fetch_outputs",
            "files",
            "files",
            "files",
            "files",
            "files",
            "files",
        ];
        for (message, tag) in agent.into_iter().zip(tags) {
            let json = serde_json::to_string(&message).unwrap();
            assert!(json.starts_with(&format!(r#"{{"type":"{tag}""#)), "{json}");
            assert_eq!(
                serde_json::from_str::<AgentMessage>(&json).unwrap(),
                message
            );
        }

        let spec: Task =
            serde_json::from_str(r#"{"steps":[{"name":"s","run":"echo hi"}]}"#).unwrap();
        let result = TaskResult {
            status: crate::status::TaskStatus::Success,
            output: Some("o".into()),
            caches: [("cargo".to_string(), crate::cache::CacheHit::Partial)].into(),
        };
        let server = [
            ServerMessage::TaskDispatch(Box::new(TaskDispatch {
                attempt,
                run_id: 7,
                task: "build".into(),
                number: 2,
                workflow: "w".into(),
                pipeline_name: "p".into(),
                spec,
                pipeline_env: [("A".to_string(), "1".to_string())].into(),
                params: [("v".to_string(), "2".to_string())].into(),
                secrets: [("TOKEN".to_string(), SecretValue::new("x"))].into(),
                outputs: [("a".to_string(), result.clone())].into(),
                more_outputs: true,
                traceparent: None,
                cache_save: true,
            })),
            ServerMessage::TaskAck { attempt, seq: 9 },
            ServerMessage::CancelTask { attempt },
            ServerMessage::StopTask { attempt },
            ServerMessage::Outputs {
                attempt,
                results: [("b".to_string(), result)].into(),
                next: None,
            },
            ServerMessage::Files {
                attempt,
                id: 1,
                answer: FilesAnswer::Uploads {
                    uploads: vec![BlobUpload {
                        digest: digest(),
                        size: 3,
                        part_size: crate::artifact::PART_SIZE,
                        parts: vec![transfer("PUT", "/api/v1/blobs/x?sig=1")],
                        upload_id: None,
                    }],
                },
            },
            ServerMessage::Files {
                attempt,
                id: 2,
                answer: FilesAnswer::Committed,
            },
            ServerMessage::Files {
                attempt,
                id: 3,
                answer: FilesAnswer::Downloads {
                    files: vec![file()],
                    downloads: vec![BlobDownload {
                        digest: digest(),
                        transfer: transfer("GET", "https://s3.example/b?X-Amz-Expires=600"),
                    }],
                },
            },
            ServerMessage::Files {
                attempt,
                id: 4,
                answer: FilesAnswer::Refused { error: "no".into() },
            },
            ServerMessage::Files {
                attempt,
                id: 5,
                answer: FilesAnswer::CacheEntry {
                    key: Some("cargo-0".into()),
                    files: 12,
                    chunks: vec![file()],
                    downloads: Vec::new(),
                },
            },
        ];
        let tags = [
            "task_dispatch",
            "task_ack",
            "cancel_task",
            "stop_task",
            "outputs",
            "files",
            "files",
            "files",
            "files",
            "files",
        ];
        for (message, tag) in server.into_iter().zip(tags) {
            let json = serde_json::to_string(&message).unwrap();
            assert!(json.starts_with(&format!(r#"{{"type":"{tag}""#)), "{json}");
            assert_eq!(
                serde_json::from_str::<ServerMessage>(&json).unwrap(),
                message
            );
        }
        assert_eq!(
            serde_json::to_string(&ServerMessage::TaskAck { attempt, seq: 9 }).unwrap(),
            r#"{"type":"task_ack","attempt":{"id":42},"seq":9}"#
        );
    }

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap()
    }

    fn file() -> ManifestEntry {
        ManifestEntry {
            path: "bin/app".into(),
            size: 3,
            mode: 0o755,
            digest: digest(),
        }
    }

    fn transfer(method: &str, url: &str) -> Transfer {
        Transfer {
            method: method.into(),
            url: url.into(),
            headers: BTreeMap::new(),
        }
    }

    #[test]
    fn files_messages_have_this_wire_form() {
        let hex = "ab".repeat(32);
        let fetch = AgentMessage::Files {
            attempt: AttemptRef { id: 42 },
            id: 7,
            request: FilesRequest::Fetch {
                name: "binary".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&fetch).unwrap(),
            r#"{"type":"files","attempt":{"id":42},"id":7,"request":{"kind":"fetch","name":"binary"}}"#
        );
        // Headers and an upload id may be left out.
        let answer: ServerMessage = serde_json::from_str(&format!(
            r#"{{"type":"files","attempt":{{"id":42}},"id":7,"answer":{{"kind":"uploads","uploads":[{{"digest":"sha256:{hex}","size":3,"part_size":67108864,"parts":[{{"method":"PUT","url":"/b"}}]}}]}}}}"#
        ))
        .unwrap();
        let ServerMessage::Files {
            answer: FilesAnswer::Uploads { uploads },
            ..
        } = answer
        else {
            panic!("not uploads: {answer:?}");
        };
        assert_eq!(uploads[0].upload_id, None);
        assert_eq!(uploads[0].parts, [transfer("PUT", "/b")]);
        // A malformed digest does not decode.
        let bad = format!(
            r#"{{"type":"files","attempt":{{"id":42}},"id":7,"request":{{"kind":"publish","name":"b","files":[{{"path":"a","size":1,"mode":420,"digest":"sha256:{}/.."}}]}}}}"#,
            &hex[4..]
        );
        assert!(serde_json::from_str::<AgentMessage>(&bad).is_err());
    }

    /// Protocol 3's forms still decode with the new fields' defaults, and
    /// the defaults stay out of what is sent.
    #[test]
    fn cache_fields_default_when_absent() {
        let result: TaskResult =
            serde_json::from_str(r#"{"status":"success","output":null}"#).unwrap();
        assert!(result.caches.is_empty());
        assert!(!serde_json::to_string(&result).unwrap().contains("caches"));
        let restore: FilesRequest =
            serde_json::from_str(r#"{"kind":"cache_restore","name":"c","key":"k"}"#).unwrap();
        assert_eq!(
            restore,
            FilesRequest::CacheRestore {
                name: "c".into(),
                key: "k".into(),
                restore_keys: Vec::new()
            }
        );
        let dispatch = r#"{"type":"task_dispatch","attempt":{"id":1},"run_id":1,"task":"t","number":1,"workflow":"w","pipeline_name":"p","spec":{"steps":[{"name":"s","run":"true"}]}}"#;
        let ServerMessage::TaskDispatch(d) = serde_json::from_str(dispatch).unwrap() else {
            panic!("not a dispatch");
        };
        assert!(!d.cache_save);
        let event = RunEvent::CacheRestored {
            task: "t".into(),
            cache: "c".into(),
            hit: crate::cache::CacheHit::Miss,
            key: "k-0123".into(),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"type":"cache_restored","task":"t","cache":"c","hit":"miss","key":"k-0123"}"#
        );
        assert_eq!(serde_json::from_str::<RunEvent>(&json).unwrap(), event);
    }

    #[test]
    fn a_protocol_1_hello_decodes_so_its_version_can_be_refused() {
        // Word for word what a protocol 1 agent sends: the runs it holds,
        // no attempts.
        let hello: AgentMessage = serde_json::from_str(
            r#"{"type":"hello","protocol":1,"agent_version":"0.1.0","labels":{},"runtimes":["shell"],"capacity":2,"running":[{"run_id":7,"attempt":1}]}"#,
        )
        .unwrap();
        let AgentMessage::Hello {
            protocol, attempts, ..
        } = hello
        else {
            panic!("not a hello: {hello:?}");
        };
        assert_eq!((protocol, attempts), (1, vec![]));
        // Its other messages are not protocol 2's.
        let events =
            r#"{"type":"events","run":{"run_id":7,"attempt":1},"first_seq":0,"events":[]}"#;
        assert!(serde_json::from_str::<AgentMessage>(events).is_err());
        for frame in [
            r#"{"type":"ack","run":{"run_id":7,"attempt":1},"seq":41}"#,
            r#"{"type":"cancel","run":{"run_id":7,"attempt":1}}"#,
            r#"{"type":"stop","run":{"run_id":7,"attempt":1}}"#,
        ] {
            assert!(
                serde_json::from_str::<ServerMessage>(frame).is_err(),
                "{frame}"
            );
        }
    }

    #[test]
    fn every_fuzz_seed_decodes() {
        // The fuzz target starts from these: a seed that no longer decodes
        // would only exercise the error path.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/protocol");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let agent = serde_json::from_slice::<AgentMessage>(&bytes).is_ok();
            let server = serde_json::from_slice::<ServerMessage>(&bytes).is_ok();
            assert!(agent || server, "{} decodes as neither", path.display());
            seen += 1;
        }
        assert!(seen >= 15, "only {seen} seeds in {}", dir.display());
    }

    #[test]
    fn unknown_message_types_are_errors() {
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"reboot"}"#).is_err());
        assert!(
            serde_json::from_str::<ServerMessage>(r#"{"type":"ack","run":{"run_id":1}}"#).is_err()
        );
    }

    #[test]
    fn secret_values_travel_as_strings_and_never_print() {
        let value = SecretValue::new("hunter22");
        assert_eq!(serde_json::to_string(&value).unwrap(), "\"hunter22\"");
        let back: SecretValue = serde_json::from_str("\"hunter22\"").unwrap();
        assert_eq!(back.expose(), "hunter22");
        let printed = format!("{:?}", BTreeMap::from([("TOKEN", value)]));
        assert!(!printed.contains("hunter22"), "{printed}");
    }
}
