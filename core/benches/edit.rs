//! What one editor gesture costs on specs of growing size: the canvas and
//! the YAML view redo this on every gesture, in the browser. Prints the
//! median time of each; asserts nothing.
//!
//! `cargo bench -p xene-core --bench edit`

use std::time::{Duration, Instant};

use xene_core::draft::{self, Gesture};
use xene_core::edit::Yaml;

/// A chain of `tasks` tasks, each with a comment and a two-line script,
/// and every task reading the first one's output.
fn spec(tasks: usize) -> String {
    let mut text = String::from("# A long pipeline.\nname: w\npipelines:\n  p:\n    tasks:\n");
    for i in 0..tasks {
        text.push_str(&format!("      # Task {i}.\n      t{i}:\n"));
        if i > 0 {
            text.push_str(&format!("        depends_on: [t{}]\n", i - 1));
        }
        text.push_str(
            "        steps:\n          - run: |\n              echo {{ tasks.t0.output }}\n              make\n",
        );
    }
    text
}

fn median(mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..9)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    println!("{:<44} {:>8} {:>10}", "gesture", "tasks", "median");
    for tasks in [10, 100, 1000] {
        let text = spec(tasks);
        let p = || "p".to_string();
        let last = format!("t{}", tasks - 1);
        let cases: Vec<(&str, Gesture)> = vec![
            (
                "connect (first -> last)",
                Gesture::Connect {
                    pipeline: p(),
                    from: "t0".into(),
                    to: last.clone(),
                },
            ),
            (
                "add a task",
                Gesture::AddTask {
                    pipeline: p(),
                    name: "new".into(),
                },
            ),
            (
                "set an image",
                Gesture::SetTaskField {
                    pipeline: p(),
                    task: last.clone(),
                    field: "image".into(),
                    value: Some(Yaml::str("busybox")),
                },
            ),
            (
                "remove the middle task",
                Gesture::RemoveTask {
                    pipeline: p(),
                    name: format!("t{}", tasks / 2),
                },
            ),
            (
                "rename t0 (every task reads it)",
                Gesture::RenameTask {
                    pipeline: p(),
                    from: "t0".into(),
                    to: "first".into(),
                },
            ),
        ];
        println!("  ({} KB of YAML)", text.len() / 1024);
        for (name, g) in cases {
            let took = median(|| {
                draft::apply(&text, &g).expect("the gesture applies");
            });
            println!(
                "{name:<44} {tasks:>8} {:>8.2} ms",
                took.as_secs_f64() * 1000.0
            );
        }
    }
}
