//! A secret's base64 printed by the real `base64` tool, wrapped at any
//! width, is masked on every line of a step's output and in the task's
//! output (review L5).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use xene_core::status::TaskStatus;

use crate::util::run;

/// The secret the harness gives every run as `TOKEN`.
const TOKEN: &str = "s3cr3t-value";
const PREFIX: &str = "user=";

/// How many characters of the secret's encoding stay visible in `shown`
/// (the lines of the encoding of `PREFIX` and the secret, masked), beyond
/// the characters that also depend on what is around it.
fn visible_core(shown: &[&str]) -> usize {
    let encoded = STANDARD.encode(format!("{PREFIX}{TOKEN}"));
    let core = (8 * (PREFIX.len() + TOKEN.len())) / 6 - (8 * PREFIX.len()).div_ceil(6);
    let visible: usize = shown.iter().map(|l| l.replace("***", "").len()).sum();
    visible.saturating_sub(encoded.len() - core)
}

#[tokio::test(flavor = "multi_thread")]
async fn wrapped_base64_of_a_secret_is_masked_on_every_line() {
    let mut yaml = String::from("name: wrapped\npipelines:\n  p:\n    tasks:\n");
    for width in [3, 5, 7, 11] {
        yaml.push_str(&format!(
            "      w{width}:\n        secrets: [TOKEN]\n        steps:\n          \
             - printf '{PREFIX}%s' \"$TOKEN\" | base64 -w {width}\n          \
             - printf '{PREFIX}%s' \"$TOKEN\" | base64 -w {width} > \"$XENE_OUTPUT\"\n"
        ));
    }
    let run = run(&yaml).await;
    for width in [3, 5, 7, 11] {
        let task = format!("w{width}");
        assert_eq!(run.task(&task).status, TaskStatus::Success, "{task}");
        let lines = run.logs(&task);
        let encoded = STANDARD.encode(format!("{PREFIX}{TOKEN}"));
        assert_eq!(
            lines.len(),
            encoded.len().div_ceil(width),
            "{task}: {lines:?}"
        );
        // At most the first few characters, when the encoding begins at a
        // line's end.
        assert!(visible_core(&lines) < 4, "{task}: {lines:?}");
        let output = run.task(&task).output.clone().unwrap_or_default();
        let output: Vec<&str> = output.lines().collect();
        assert!(visible_core(&output) < 4, "{task} output: {output:?}");
    }
}
