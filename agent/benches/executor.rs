//! The executor's own overhead per task, beside spawning the same processes
//! (or containers) without it. Run with `cargo bench -p xene-agent`.
//!
//! - shell: a 200-task chain and a 1,000-task fan-out of `true` steps, beside
//!   `sh -e -c true` spawned in a plain loop;
//! - docker: a 20-task chain beside 20 plain `docker run --rm` of the same
//!   image (skipped with a note when no engine answers).

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use xene_agent::{Executor, ExecutorConfig, RunRequest, new_run_id};
use xene_core::status::RunStatus;

const IMAGE: &str = "xene-test/busybox:latest";
const REPEATS: usize = 3;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    println!("xene-agent executor benchmark (median of {REPEATS} runs)\n");
    let chain = chain_yaml(200, None);
    let fan_out = fan_out_yaml(1000);

    let plain_200 = median(|| plain_shell_loop(200));
    let engine_200 = median(|| runtime.block_on(run(&chain, None)));
    report("shell, 200-task chain", 200, engine_200, plain_200);

    let plain_1000 = median(|| plain_shell_loop(1000));
    let engine_1000 = median(|| runtime.block_on(run(&fan_out, None)));
    report(
        "shell, 1000-task fan-out (default concurrency)",
        1000,
        engine_1000,
        plain_1000,
    );
    let engine_1000_serial = median(|| runtime.block_on(run(&fan_out, Some(1))));
    report(
        "shell, 1000-task fan-out (concurrency 1)",
        1000,
        engine_1000_serial,
        plain_1000,
    );

    if !docker_image_ready() {
        println!("docker: skipped (no engine, or the test image could not be built)");
        return;
    }
    let docker_chain = chain_yaml(20, Some(IMAGE));
    let plain_docker = median(|| plain_docker_loop(20));
    let engine_docker = median(|| runtime.block_on(run(&docker_chain, None)));
    report("docker, 20-task chain", 20, engine_docker, plain_docker);
    println!(
        "  docker engine vs plain: {:+.1}%",
        (engine_docker.as_secs_f64() / plain_docker.as_secs_f64() - 1.0) * 100.0
    );
}

fn report(name: &str, tasks: u32, engine: Duration, plain: Duration) {
    let per_task_ms = (engine.as_secs_f64() - plain.as_secs_f64()) * 1000.0 / f64::from(tasks);
    println!("{name}");
    println!(
        "  engine: {:>9.1} ms  ({:.3} ms/task)",
        ms(engine),
        ms(engine) / f64::from(tasks)
    );
    println!(
        "  plain:  {:>9.1} ms  ({:.3} ms/task)",
        ms(plain),
        ms(plain) / f64::from(tasks)
    );
    println!("  overhead over plain: {per_task_ms:+.3} ms/task\n");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut measure: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..REPEATS).map(|_| measure()).collect();
    times.sort();
    times[REPEATS / 2]
}

fn chain_yaml(tasks: usize, image: Option<&str>) -> String {
    let mut yaml = String::from("name: bench\npipelines:\n  bench:\n    tasks:\n");
    for i in 0..tasks {
        writeln!(yaml, "      t{i}:").unwrap();
        if let Some(image) = image {
            writeln!(yaml, "        image: {image}").unwrap();
        }
        if i > 0 {
            writeln!(yaml, "        depends_on: [t{}]", i - 1).unwrap();
        }
        writeln!(yaml, "        steps: ['true']").unwrap();
    }
    yaml
}

fn fan_out_yaml(tasks: usize) -> String {
    let mut yaml = String::from("name: bench\npipelines:\n  bench:\n    tasks:\n");
    for i in 0..tasks {
        writeln!(yaml, "      t{i}:\n        steps: ['true']").unwrap();
    }
    yaml
}

async fn run(yaml: &str, concurrency: Option<usize>) -> Duration {
    let workflow = xene_core::parse_workflow(yaml).expect("valid benchmark workflow");
    let (name, pipeline) = workflow.pipelines.into_iter().next().unwrap();
    let request = RunRequest {
        run_id: new_run_id(),
        pipeline_name: name,
        pipeline,
        params: Default::default(),
        secrets: Default::default(),
        completed: Default::default(),
    };
    let executor = Executor::new(ExecutorConfig {
        concurrency,
        ..ExecutorConfig::default()
    });
    let (events, mut received) = mpsc::channel(1024);
    let drain = tokio::spawn(async move { while received.recv().await.is_some() {} });
    let started = Instant::now();
    let report = executor
        .run(request, events, Default::default())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    drain.await.unwrap();
    assert_eq!(report.status, RunStatus::Success);
    elapsed
}

fn plain_shell_loop(n: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let status = Command::new("sh")
            .args(["-e", "-c", "true"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    started.elapsed()
}

fn plain_docker_loop(n: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let status = Command::new("docker")
            .args(["run", "--rm", IMAGE, "sh", "-e", "-c", "true"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    started.elapsed()
}

/// Builds the test image (static busybox `FROM scratch`) if it is missing.
fn docker_image_ready() -> bool {
    let present = |image: &str| {
        Command::new("docker")
            .args(["image", "inspect", image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if present(IMAGE) {
        return true;
    }
    let Ok(context) = tempfile::tempdir() else {
        return false;
    };
    if std::fs::copy("/usr/bin/busybox", context.path().join("busybox")).is_err() {
        return false;
    }
    let dockerfile = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";
    if std::fs::write(context.path().join("Dockerfile"), dockerfile).is_err() {
        return false;
    }
    Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(context.path())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
