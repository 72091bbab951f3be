//! Observability as operators use it: Debian's Prometheus scraping a real
//! `xene` and a real `xene-agent`, and JSON logs whose spans say which
//! request, run and task each line belongs to.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xene_testkit::free_port;

use serde_json::{Value, json};

use crate::process::{Agent, Xene};
use crate::util::{Backend, TestDb};

const MINUTE: Duration = Duration::from_secs(60);

const WORKFLOW: &str = "\
name: observed
pipelines:
  local:
    selector: {builtin: \"true\"}
    tasks:
      build:
        steps: [\"echo building\"]
      test:
        depends_on: [build]
        steps: [\"echo testing\", \"true\"]
  remote:
    selector: {pool: metrics}
    tasks:
      work:
        steps: [\"echo working\"]
";

/// Debian's `prometheus`, scraping `targets` (job name, host:port) every
/// second; killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    async fn start(dir: &Path, targets: &[(&str, String)]) -> Self {
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ));
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Debian's prometheus is installed (cargo xtask setup installs it)");
        let prometheus = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        loop {
            if let Ok(response) = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .await
                && response.status() == 200
            {
                return prometheus;
            }
            assert!(
                started.elapsed() < MINUTE,
                "prometheus did not get ready:\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The series an instant query returns.
    async fn query(&self, query: &str) -> Vec<Value> {
        let response: Value = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", query)])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("JSON");
        assert_eq!(response["status"], "success", "{query}: {response}");
        response["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `query` returns a series for which `check` holds.
    async fn wait_for(&self, query: &str, check: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let series = self.query(query).await;
            if let Some(found) = series.iter().find(|s| check(s)) {
                return found.clone();
            }
            assert!(
                started.elapsed() < MINUTE,
                "prometheus never saw {query}; last answer: {series:?}; targets: {}",
                self.targets().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn targets(&self) -> Value {
        self.http
            .get(format!("{}/api/v1/targets", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn value(series: &Value) -> f64 {
    series["value"][1].as_str().unwrap().parse().unwrap()
}

/// The address after `addr=` in the first log line that has `marker`.
fn logged_addr(log: &str, marker: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let start = line.find("addr=")? + "addr=".len();
    Some(
        line[start..]
            .split(|c: char| c.is_whitespace())
            .next()?
            .to_string(),
    )
}

#[tokio::test]
async fn prometheus_scrapes_the_named_series_from_xene_and_an_agent() {
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(&db, "scraped", &[]).await;
    let token = xene.join_token(json!({ "pool": "metrics" })).await;
    let agent = Agent::start(
        &xene.base,
        &token,
        &db.dir.path().join("agent"),
        "scraped-agent",
        &["--allow-shell", "--metrics-addr", "127.0.0.1:0"],
    );
    xene.wait_agents_online(1).await;
    let started = Instant::now();
    let agent_addr = loop {
        if let Some(addr) = logged_addr(&agent.log_text(), "serving metrics") {
            break addr;
        }
        assert!(started.elapsed() < MINUTE, "{}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    xene.apply(WORKFLOW).await;
    for pipeline in ["local", "remote"] {
        let id = xene.start_run("observed", pipeline, json!({})).await;
        let run = xene.wait_finished(id, MINUTE).await;
        assert_eq!(run["status"], "success", "{run}");
    }

    let dir = tempfile::tempdir().unwrap();
    let server_target = xene.base.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(
        dir.path(),
        &[("xene", server_target), ("agent", agent_addr)],
    )
    .await;

    // The server: runs by trigger, pipeline and status; tasks; requests by
    // route; the gauges read from the database; build and process.
    let started = prometheus
        .wait_for(
            "xene_runs_started_total{job=\"xene\",trigger=\"manual\"}",
            |s| s["metric"]["pipeline"] == "observed/local",
        )
        .await;
    assert_eq!(value(&started), 1.0);
    for (pipeline, expected) in [("observed/local", 1.0), ("observed/remote", 1.0)] {
        let finished = prometheus
            .wait_for("xene_runs_finished_total{status=\"success\"}", |s| {
                s["metric"]["pipeline"] == pipeline
            })
            .await;
        assert_eq!(value(&finished), expected, "{finished}");
    }
    let tasks = prometheus
        .wait_for("xene_tasks_finished_total{status=\"success\"}", |_| true)
        .await;
    assert_eq!(value(&tasks), 3.0, "{tasks}");
    let steps = prometheus
        .wait_for("xene_steps_finished_total{status=\"success\"}", |_| true)
        .await;
    assert_eq!(value(&steps), 4.0, "{steps}");
    prometheus
        .wait_for(
            "xene_http_request_duration_seconds_count{route=\"/api/v1/workflows/{name}/pipelines/{pipeline}/runs\",method=\"POST\",status=\"201\"}",
            |s| value(s) == 2.0,
        )
        .await;
    for query in [
        "xene_run_queue_wait_seconds_count",
        "xene_run_start_latency_seconds_count",
        "xene_task_duration_seconds_count",
    ] {
        let series = prometheus.wait_for(query, |_| true).await;
        assert!(value(&series) >= 2.0, "{query}: {series}");
    }
    prometheus
        .wait_for("xene_event_apply_seconds_count", |s| value(s) >= 2.0)
        .await;
    let queued = prometheus
        .wait_for("xene_runs{status=\"queued\"}", |_| true)
        .await;
    assert_eq!(value(&queued), 0.0);
    prometheus
        .wait_for("xene_agents_connected{kind=\"remote\"}", |s| {
            value(s) == 1.0
        })
        .await;
    prometheus
        .wait_for("xene_agents_connected{kind=\"builtin\"}", |s| {
            value(s) == 1.0
        })
        .await;
    prometheus
        .wait_for("xene_gateway_connects_total", |s| value(s) == 1.0)
        .await;
    prometheus
        .wait_for("xene_build_info", |s| {
            s["metric"]["version"] == env!("CARGO_PKG_VERSION")
        })
        .await;
    for job in ["xene", "agent"] {
        for query in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            prometheus
                .wait_for(&format!("{query}{{job=\"{job}\"}}"), |s| value(s) > 0.0)
                .await;
        }
    }

    // The agent's own: it runs task attempts, the server keeps the runs.
    prometheus
        .wait_for("xene_agent_tasks_finished_total{status=\"success\"}", |s| {
            value(s) == 1.0
        })
        .await;
    prometheus
        .wait_for("xene_agent_connected", |s| value(s) == 1.0)
        .await;
    prometheus
        .wait_for("xene_agent_running_tasks", |s| value(s) == 0.0)
        .await;
    prometheus.wait_for("xene_agent_build_info", |_| true).await;
}

/// The JSON log lines (others, like a panic message, are skipped).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

/// The names of the spans a JSON log line happened in, outermost first.
fn span_names(line: &Value) -> Vec<String> {
    line["spans"]
        .as_array()
        .map(|spans| {
            spans
                .iter()
                .map(|s| s["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn json_logs_nest_the_task_in_its_run_and_name_the_request() {
    let db = TestDb::new(Backend::Sqlite);
    let json_env = [
        ("XENE_LOG_FORMAT", "json"),
        ("RUST_LOG", "info,xene::http=debug"),
    ];
    let xene = Xene::start_with_env(&db, "logged", &[], &json_env).await;
    let token = xene.join_token(json!({ "pool": "metrics" })).await;
    let agent = Agent::start_with_env(
        &xene.base,
        &token,
        &db.dir.path().join("agent"),
        "logged-agent",
        &["--allow-shell"],
        &json_env,
    );
    xene.wait_agents_online(1).await;
    xene.apply(WORKFLOW).await;
    let mut ids = Vec::new();
    for pipeline in ["local", "remote"] {
        let id = xene.start_run("observed", pipeline, json!({})).await;
        let run = xene.wait_finished(id, MINUTE).await;
        assert_eq!(run["status"], "success", "{run}");
        ids.push(id);
    }

    let server_log = json_lines(&xene.log_text());
    assert!(
        !server_log.is_empty(),
        "no JSON lines in\n{}",
        xene.log_text()
    );

    // The request that started the run, with its route, status and latency,
    // and the run it queued logged inside it.
    let queued = server_log
        .iter()
        .find(|l| l["fields"]["message"] == "run queued" && l["fields"]["run_id"] == ids[0])
        .unwrap_or_else(|| panic!("no 'run queued' line in\n{}", xene.log_text()));
    assert_eq!(span_names(queued), ["request"], "{queued}");
    assert_eq!(
        queued["span"]["route"],
        "/api/v1/workflows/{name}/pipelines/{pipeline}/runs"
    );
    assert_eq!(queued["span"]["method"], "POST");
    let answered = server_log
        .iter()
        .find(|l| {
            l["fields"]["message"] == "request answered"
                && l["span"]["route"] == "/api/v1/workflows/{name}/pipelines/{pipeline}/runs"
        })
        .expect("the request's own line");
    assert_eq!(answered["span"]["status"], 201, "{answered}");
    assert!(answered["span"]["latency_ms"].is_u64(), "{answered}");

    // The built-in agent's task, inside its run, with the shared field names.
    let task = |log: &[Value], task: &str| -> Value {
        log.iter()
            .find(|l| l["fields"]["message"] == "task finished" && l["span"]["task"] == task)
            .cloned()
            .unwrap_or_else(|| panic!("no 'task finished' line for {task}"))
    };
    let test = task(&server_log, "test");
    assert_eq!(span_names(&test), ["run", "task"], "{test}");
    let run_span = &test["spans"][0];
    assert_eq!(run_span["run_id"], ids[0], "{test}");
    assert_eq!(run_span["workflow"], "observed");
    assert_eq!(run_span["pipeline"], "local");
    assert_eq!(run_span["agent_id"], "logged");
    assert_eq!(test["fields"]["status"], "success");

    // The remote agent's task, inside its run, inside its session.
    let agent_log = json_lines(&agent.log_text());
    let work = task(&agent_log, "work");
    assert_eq!(
        span_names(&work),
        ["agent_session", "run", "task"],
        "{work}"
    );
    assert!(work["spans"][0]["agent_id"].is_string(), "{work}");
    assert_eq!(work["spans"][1]["run_id"], ids[1], "{work}");
    assert_eq!(work["spans"][1]["workflow"], "observed");
    assert_eq!(work["spans"][1]["pipeline"], "remote");
}

/// The metric families an exposition declares (`# TYPE NAME ...`).
fn families(exposition: &str) -> Vec<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_that_exist() {
    use xene_core::event::RunEvent;
    use xene_core::status::{RunStatus, StepStatus, TaskStatus};

    // A family shows in the exposition once it has a sample: record one of
    // each kind, as the server and the agent do.
    let metrics = xene_server::metrics::Metrics::new();
    metrics.run_started("manual", "w", "p");
    metrics.run_finished("success", "manual", "w", "p");
    metrics.webhook_delivery("accepted");
    metrics.sign_in("signed_in");
    metrics.agent_disconnected("shutdown");
    let _agent = metrics.agent_connected("remote");
    let _feed = metrics.feed_client();
    metrics.observe_queue_wait(1);
    metrics.observe_start_latency(1);
    metrics.observe_event_apply(Duration::from_millis(1));
    metrics.observe_request("GET", "/healthz", 200, Duration::from_millis(1));
    let db = TestDb::new(Backend::Sqlite);
    let server = crate::util::TestServer::start(&db).await;
    let served = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server.stop().await;
    let events = [
        RunEvent::StepFinished {
            task: "t".into(),
            step: "s".into(),
            status: StepStatus::Success,
            exit_code: Some(0),
            duration_ms: 1,
        },
        RunEvent::TaskFinished {
            task: "t".into(),
            status: TaskStatus::Success,
            output: None,
            duration_ms: 1,
            attempt: 1,
            error: None,
            retry_in_ms: None,
        },
        RunEvent::RunFinished {
            status: RunStatus::Success,
            duration_ms: 1,
        },
    ];
    let store = xene_server::storage::Db::connect(&db.url).await.unwrap();
    metrics.observe_events(&store, 1, &events[..2]).await;
    store.close().await;
    let agent_metrics = &xene_agent::metrics::METRICS;
    for event in &events {
        agent_metrics.observe(event);
    }
    // The gauges read from the database come from a served scrape.
    let mut known = families(&metrics.render());
    known.extend(families(&served));
    known.extend(families(&agent_metrics.render()));

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut unknown = Vec::new();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !(word.starts_with("xene_") || word.starts_with("process_")) {
                    continue;
                }
                let family = ["_bucket", "_count", "_sum", "_total", "_info"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .unwrap_or(word);
                checked += 1;
                if !known.iter().any(|k| k == family) {
                    unknown.push(format!("{word} in {:?}", panel["title"]));
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} metric names in the dashboard");
    assert!(
        unknown.is_empty(),
        "the dashboard queries unknown metrics:\n{}",
        unknown.join("\n")
    );
}

/// An OTLP/HTTP collector that keeps the bodies of trace exports.
async fn collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use axum::routing::post;
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body.to_vec());
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, bodies)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_run_is_one_trace_from_the_api_request_to_the_agents_tasks() {
    let (endpoint, bodies) = collector().await;
    let db = TestDb::new(Backend::Sqlite);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("XENE_LOG_FORMAT", "json"),
        ("RUST_LOG", "info,xene_server::gateway=debug"),
    ];
    let xene = Xene::start_with_env(&db, "traced", &[], &env).await;
    let token = xene.join_token(json!({ "pool": "metrics" })).await;
    let _agent = Agent::start_with_env(
        &xene.base,
        &token,
        &db.dir.path().join("agent"),
        "traced-agent",
        &["--allow-shell"],
        &env,
    );
    xene.wait_agents_online(1).await;
    xene.apply(WORKFLOW).await;
    let id = xene.start_run("observed", "remote", json!({})).await;
    let run = xene.wait_finished(id, MINUTE).await;
    assert_eq!(run["status"], "success", "{run}");

    // The trace the server started for the dispatch, as it logged it.
    let dispatched = json_lines(&xene.log_text())
        .into_iter()
        .find(|l| l["fields"]["message"] == "dispatching" && l["span"]["run_id"] == id)
        .unwrap_or_else(|| panic!("no dispatch logged:\n{}", xene.log_text()));
    let traceparent = dispatched["fields"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent: {dispatched}"));
    let trace_hex = traceparent.split('-').nth(1).unwrap();
    let trace_id = hex::decode(trace_hex).unwrap();
    assert_eq!(trace_id.len(), 16);

    // Both processes export spans of that trace: the server the request
    // that started the run and its dispatch, the agent its run and tasks
    // (exports are batched every few seconds).
    let started = Instant::now();
    loop {
        let spans: Vec<ExportedSpan> = bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|body| exported_spans(body))
            .filter(|s| s.trace_id == trace_id)
            .collect();
        let named = |name: &str| spans.iter().find(|s| s.name == name);
        if let (Some(request), Some(dispatch), Some(run_span), Some(task)) = (
            named("request"),
            named("dispatch"),
            named("run"),
            named("task"),
        ) {
            assert!(
                contains(
                    &request.attributes,
                    b"/api/v1/workflows/{name}/pipelines/{pipeline}/runs"
                ),
                "the trace's request is not the one that started the run"
            );
            assert!(request.parent.is_empty(), "the request is the trace's root");
            assert_eq!(
                dispatch.parent, request.span_id,
                "the dispatch is a child of the request"
            );
            assert_eq!(
                run_span.parent, dispatch.span_id,
                "the agent's run is a child of the dispatch"
            );
            assert_eq!(
                task.parent, run_span.span_id,
                "the task is a child of its run"
            );
            assert!(contains(&task.attributes, b"work"));
            break;
        }
        assert!(
            started.elapsed() < MINUTE,
            "trace {trace_hex} lacks a span; it has {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the test reads of an exported span.
#[derive(Debug)]
struct ExportedSpan {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    name: String,
    /// The encoded attributes, searched for values.
    attributes: Vec<u8>,
}

/// The length-delimited fields of a protobuf message: (field number, bytes).
fn fields(mut message: &[u8]) -> Vec<(u64, &[u8])> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut out = Vec::new();
    while let Some(key) = varint(&mut message) {
        match key & 7 {
            0 => {
                varint(&mut message);
            }
            1 => message = &message[8.min(message.len())..],
            5 => message = &message[4.min(message.len())..],
            2 => {
                let Some(len) = varint(&mut message) else {
                    break;
                };
                let len = (len as usize).min(message.len());
                out.push((key >> 3, &message[..len]));
                message = &message[len..];
            }
            _ => break,
        }
    }
    out
}

/// The spans of an OTLP `ExportTraceServiceRequest` (resource_spans = 1,
/// scope_spans = 2, spans = 2; a span's trace_id = 1, span_id = 2,
/// parent_span_id = 4, name = 5, attributes = 9).
fn exported_spans(body: &[u8]) -> Vec<ExportedSpan> {
    let mut spans = Vec::new();
    for (_, resource_spans) in fields(body).into_iter().filter(|(n, _)| *n == 1) {
        for (_, scope_spans) in fields(resource_spans).into_iter().filter(|(n, _)| *n == 2) {
            for (_, span) in fields(scope_spans).into_iter().filter(|(n, _)| *n == 2) {
                let mut exported = ExportedSpan {
                    trace_id: Vec::new(),
                    span_id: Vec::new(),
                    parent: Vec::new(),
                    name: String::new(),
                    attributes: Vec::new(),
                };
                for (number, value) in fields(span) {
                    match number {
                        1 => exported.trace_id = value.to_vec(),
                        2 => exported.span_id = value.to_vec(),
                        4 => exported.parent = value.to_vec(),
                        5 => exported.name = String::from_utf8_lossy(value).into_owned(),
                        9 => exported.attributes.extend_from_slice(value),
                        _ => {}
                    }
                }
                spans.push(exported);
            }
        }
    }
    spans
}
