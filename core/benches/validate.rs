//! Worst cases for `parse_workflow`: bodies just under the 1 MiB limit
//! shaped to hit each path that once grew faster than the input (upstream
//! sets, cycle reports, duplicate keys, columns, "did you mean", nesting).
//! Prints the median time of each; asserts nothing.
//!
//! `cargo bench -p xene-core --bench validate [-- WORDS]` (only the bodies
//! whose description contains WORDS).

use std::time::{Duration, Instant};

use xene_core::parse::MAX_SPEC_BYTES;
use xene_core::parse_workflow;

fn chain(tasks: usize, cycle: bool) -> String {
    let mut text = String::from("name: w\npipelines:\n  p:\n    tasks:\n");
    for i in 0..tasks {
        text.push_str(&format!("      t{i}:\n"));
        if i > 0 {
            text.push_str(&format!("        depends_on: [t{}]\n", i - 1));
        } else if cycle {
            text.push_str(&format!("        depends_on: [t{}]\n", tasks - 1));
        }
        text.push_str("        steps: [\"echo {{ tasks.t0.output }}\"]\n");
    }
    text
}

/// Every task depends on every earlier one, up to the dependency limit.
fn dense(tasks: usize, deps: usize) -> String {
    let mut text = String::from("name: w\npipelines:\n  p:\n    tasks:\n");
    for i in 0..tasks {
        text.push_str(&format!("      t{i}:\n"));
        let list: Vec<String> = (i.saturating_sub(deps)..i)
            .map(|d| format!("t{d}"))
            .collect();
        if !list.is_empty() {
            text.push_str(&format!("        depends_on: [{}]\n", list.join(",")));
        }
        text.push_str(&format!(
            "        if: \"tasks.t{}.status == 'success'\"\n        steps: [x]\n",
            i.saturating_sub(1)
        ));
    }
    text
}

fn fill(prefix: &str, unit: &str, suffix: &str) -> String {
    let n = (MAX_SPEC_BYTES - prefix.len() - suffix.len() - 16) / unit.len();
    format!("{prefix}{}{suffix}", unit.repeat(n))
}

fn distinct_keys() -> String {
    let mut text = String::from("name: w\nx:\n");
    let mut i = 0;
    while text.len() < MAX_SPEC_BYTES - 32 {
        text.push_str(&format!("  k{i}: 1\n"));
        i += 1;
    }
    text
}

fn unknown_deps(tasks: usize) -> String {
    let mut text = String::from("name: w\npipelines:\n  p:\n    tasks:\n");
    for i in 0..tasks {
        text.push_str(&format!(
            "      task-number-{i:05}:\n        depends_on: [task-numbr-{i:05}]\n        steps: [x]\n"
        ));
    }
    text
}

fn main() {
    let head = "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [\"";
    let long_name = "a".repeat(MAX_SPEC_BYTES / 2);
    let cases: Vec<(&str, String)> = vec![
        (
            "chain of 1,000 tasks, each reading the first",
            chain(1000, false),
        ),
        ("cycle of 1,000 tasks", chain(1000, true)),
        (
            "chain of 5,000 tasks (over the task limit)",
            chain(5000, false),
        ),
        (
            "cycle of 3,000 tasks (over the task limit)",
            chain(3000, true),
        ),
        (
            "1,000 tasks, 100 dependencies each, with if",
            dense(1000, 100),
        ),
        (
            "1,000 tasks, 180 dependencies each, with if",
            dense(1000, 180),
        ),
        (
            "5,000 unknown dependencies, each a near miss",
            unknown_deps(5000),
        ),
        ("one mapping of ~90,000 distinct keys", distinct_keys()),
        (
            "100 pipelines with unknown 40-character time zones",
            format!(
                "name: w\npipelines:\n{}",
                (0..100)
                    .map(|i| format!(
                        "  p{i}:\n    trigger: {{cron: \"* * * * *\", timezone: America/Argentina/Buenos_Aires_{i:08}}}\n    tasks: {{t: {{steps: [x]}}}}\n"
                    ))
                    .collect::<String>()
            ),
        ),
        ("~200,000 duplicate keys", fill("name: w\n", "k: 1\n", "")),
        (
            "one line of ~75,000 templates",
            fill(
                "name: w\npipelines:\n  p:\n    params: {a: x}\n    tasks:\n      t:\n        steps: [\"",
                "{{ params.a }}",
                "\"]\n",
            ),
        ),
        (
            "a 4,000-character condition of 300 references",
            format!(
                "name: w\npipelines:\n  p:\n    params: {{{}}}\n    tasks:\n      t:\n        if: \"{}\"\n        steps: [x]\n",
                (0..300)
                    .map(|i| format!("p{i}: x"))
                    .collect::<Vec<_>>()
                    .join(", "),
                (0..300)
                    .map(|i| format!("params.p{i}=='x'"))
                    .collect::<Vec<_>>()
                    .join("||")
            ),
        ),
        (
            "~1 MiB of \"!\" in a condition",
            fill(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        if: \"",
                "!",
                "true\"\n        steps: [x]\n",
            ),
        ),
        ("~1 MiB of \"[\" (nesting)", fill("", "[", "")),
        (
            "a half-MiB unknown name",
            format!("name: w\n{long_name}: 1\npipelines: {{}}\n"),
        ),
        (
            "a half-MiB unknown task in depends_on",
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        depends_on: [{long_name}]\n        steps: [x]\n"
            ),
        ),
        ("a 1 MiB step script", fill(head, "echo hello; ", "\"]\n")),
    ];
    println!("{:<52} {:>9} {:>12}", "body", "bytes", "median");
    // The share of the YAML tree alone, for the densest body.
    let text = dense(1000, 180);
    let start = Instant::now();
    std::hint::black_box(xene_core::yaml::parse(&text));
    println!(
        "{:<52} {:>9} {:>9.2} ms",
        "(its YAML tree alone: 1,000 tasks x 180 deps)",
        text.len(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for (what, text) in &cases {
        if filter.as_deref().is_some_and(|f| !what.contains(f)) {
            continue;
        }
        let once = || {
            let start = Instant::now();
            let result = parse_workflow(text);
            let elapsed = start.elapsed();
            std::hint::black_box(result).ok();
            elapsed
        };
        let first = once();
        // A slow case is timed once: the point is its order of magnitude.
        let mut times: Vec<Duration> = vec![first];
        if first < Duration::from_millis(500) {
            times.extend((0..4).map(|_| once()));
        }
        times.sort();
        println!(
            "{what:<52} {:>9} {:>9.2} ms",
            text.len(),
            times[times.len() / 2].as_secs_f64() * 1000.0
        );
    }
}
