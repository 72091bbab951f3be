//! `unsafe` only where the allow-list says why.

use crate::{relative, root, rust_files};

/// Files that may use `unsafe`, each with its reason.
const UNSAFE_ALLOWED: &[(&str, &str)] = &[
    (
        "server/benches/agents.rs",
        "raises the open-files limit and reads clock ticks for a benchmark",
    ),
    (
        "agent/src/runtime/shell.rs",
        "`pre_exec` (setsid in the forked child) is unsafe by contract; no safe API starts a session",
    ),
    (
        "agent/src/runtime/supervisor.rs",
        "the step supervisor: `pre_exec` in the child, process-wide credential changes (setgroups, setresgid, setresuid), signal masks and sigtimedwait, close_range: no safe API makes these process-wide calls",
    ),
    (
        "agent/src/runtime/supervisor/confine.rs",
        "installs the steps' seccomp filter: prctl takes a pointer to the BPF program",
    ),
    (
        "agent/tests/integration/sandbox.rs",
        "opens a pseudo-terminal (posix_openpt, grantpt, unlockpt, ptsname_r) for the test that steps cannot reach one",
    ),
];

#[test]
fn no_file_outside_the_allow_list_uses_unsafe() {
    // Spelled in two halves so this file does not match itself.
    let word = format!("{}{}", "un", "safe");
    let patterns = [
        format!("{word} {{"),
        format!("{word} fn"),
        format!("{word} impl"),
        format!("{word} extern"),
        format!("allow({word}_code)"),
        format!("{word}_code = \"allow\""),
    ];
    let root = root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    let mut offenders = Vec::new();
    for file in files {
        let relative = relative(&file);
        if UNSAFE_ALLOWED
            .iter()
            .any(|(allowed, _)| *allowed == relative)
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if patterns.iter().any(|p| code.contains(p.as_str())) {
                offenders.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "`{word}` outside the allow-list (add a file to UNSAFE_ALLOWED with a reason only if there is no safe way):\n{}",
        offenders.join("\n")
    );
    // The workspace lint backs this up for everything the compiler sees.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(&format!("{word}_code = \"deny\"")));
}

#[test]
fn every_public_item_of_core_has_a_doc_comment() {
    // The compiler checks it: this test makes sure the check stays on.
    let lib = std::fs::read_to_string(root().join("core/src/lib.rs")).unwrap();
    assert!(
        lib.lines().any(|l| l.trim() == "#![deny(missing_docs)]"),
        "core/src/lib.rs must keep #![deny(missing_docs)]"
    );
}
