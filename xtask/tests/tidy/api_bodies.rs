//! The API's bodies are defined once, in `api/` (xene-api): only it derives
//! OpenAPI schemas, and its clients, the app and the CLI, read its types
//! instead of mirrors of their own or `Value`s indexed by field name.

use std::path::Path;

use crate::{relative, root, rust_files};

/// Files outside `api/` allowed to derive a schema, with why.
const SCHEMAS_ELSEWHERE: &[(&str, &str)] = &[
    (
        "core/src/parse/mod.rs",
        "Diagnostic: a domain type the error body carries (behind core's openapi feature)",
    ),
    (
        "core/src/params.rs",
        "ParamFault: a domain type the error body carries (behind core's openapi feature)",
    ),
];

/// Types of the app and the CLI that may derive `Deserialize`, with why:
/// none of them is an API body.
const DESERIALIZED_ELSEWHERE: &[(&str, &str, &str)] = &[
    ("cli/src/config.rs", "Config", "the CLI's own config file"),
    (
        "cli/src/config.rs",
        "Context",
        "an entry of the CLI's config file",
    ),
    (
        "app/src/pages/editor/mod.rs",
        "Loaded",
        "what the editor opens with, carried from the server's render to the browser",
    ),
];

/// Each derive attribute of a file (joined when it spans lines) and the
/// name of the type it derives for.
fn derives(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut attribute: Option<String> = None;
    let mut pending: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(open) = attribute.as_mut() {
            open.push_str(line);
            if line.ends_with(")]") {
                pending.push(attribute.take().unwrap());
            }
            continue;
        }
        if line.starts_with("#[") && line.contains("derive(") {
            if line.ends_with(")]") {
                pending.push(line.to_string());
            } else {
                attribute = Some(line.to_string());
            }
            continue;
        }
        if pending.is_empty() || line.starts_with("#[") || line.starts_with("//") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let name = words
            .iter()
            .position(|w| *w == "struct" || *w == "enum")
            .and_then(|i| words.get(i + 1))
            .map(|n| {
                n.trim_end_matches(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .to_string()
            })
            .unwrap_or_default();
        out.extend(pending.drain(..).map(|a| (a, name.clone())));
    }
    out
}

fn files_under(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let dir = root().join(dir);
    if Path::new(&dir).is_dir() {
        rust_files(&dir, &mut files);
    }
    files
}

#[test]
fn only_the_api_crate_derives_schemas() {
    let schema = concat!("To", "Schema");
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    let mut faults = Vec::new();
    for file in files {
        let name = relative(&file);
        if name.starts_with("api/") || name.starts_with("xtask/tests/tidy/") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (attribute, ty) in derives(&text) {
            if attribute.contains(schema)
                && !SCHEMAS_ELSEWHERE.iter().any(|(listed, _)| *listed == name)
            {
                faults.push(format!(
                    "{name}: {ty} derives {schema}; API bodies live in api/ (xene-api)"
                ));
            }
        }
    }
    for (listed, why) in SCHEMAS_ELSEWHERE {
        let text = std::fs::read_to_string(root().join(listed)).unwrap_or_default();
        if !derives(&text).iter().any(|(a, _)| a.contains(schema)) {
            faults.push(format!(
                "{listed} derives no schema now ({why}): take it off SCHEMAS_ELSEWHERE"
            ));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

/// Every type of the files under `dir` that derives `Deserialize` and is
/// not on the allow-list.
fn deserialized_mirrors(dir: &str) -> Vec<String> {
    let mut faults = Vec::new();
    for file in files_under(dir) {
        let name = relative(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        for (attribute, ty) in derives(&text) {
            let allowed = DESERIALIZED_ELSEWHERE
                .iter()
                .any(|(f, t, _)| *f == name && *t == ty);
            if attribute.contains("Deserialize") && !allowed {
                faults.push(format!(
                    "{name}: {ty} derives Deserialize; read the body as a xene-api type"
                ));
            }
        }
    }
    faults
}

#[test]
fn the_cli_reads_the_api_crates_types() {
    let mut faults = deserialized_mirrors("cli/src");
    for file in files_under("cli/src/commands") {
        let name = relative(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            let indexed = line.match_indices("[\"").any(|(at, _)| {
                line[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ')' || c == ']')
            });
            if indexed || line.contains(".get(\"") {
                faults.push(format!(
                    "{name}:{}: reads JSON by field name; read a xene-api type \
                     (parts of bodies as sent come from cli/src/sent.rs)",
                    number + 1
                ));
            }
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn the_app_reads_the_api_crates_types() {
    let faults = deserialized_mirrors("app/src");
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn derives_are_read_with_their_type() {
    let text = "#[derive(Debug,\n  Deserialize)]\n/// doc\n#[serde(default)]\npub struct A {\n}\n\
                #[cfg_attr(feature = \"openapi\", derive(utoipa::ToSchema))]\nenum B { X }\n";
    assert_eq!(
        derives(text),
        [
            ("#[derive(Debug,Deserialize)]".to_string(), "A".to_string()),
            (
                "#[cfg_attr(feature = \"openapi\", derive(utoipa::ToSchema))]".to_string(),
                "B".to_string()
            )
        ]
    );
}
