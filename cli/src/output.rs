//! Output for people (aligned tables, colours on a terminal) and for scripts
//! (the server's JSON as is, or the same as YAML).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use serde::Serialize;
use serde_json::Value;

use crate::args::Format;

/// Whether stdout gets colours: a terminal, and no `NO_COLOR`.
pub fn colour() -> bool {
    colour_for(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// `NO_COLOR` set to anything but the empty string turns colours off
/// (no-color.org).
fn colour_for(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

pub fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A status in its colour: green success, red failure, yellow in progress.
pub fn status(on: bool, status: &str) -> String {
    let code = match status {
        "success" | "accepted" => "32",
        "error" | "unknown" | "revoked" | "refused" => "31",
        "cancelled" | "not_executed" | "skipped" | "offline" => "90",
        "running" | "starting_up" | "shutting_down" | "queued" | "pending" => "33",
        "online" => "32",
        _ => "0",
    };
    paint(on, code, status)
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(render_table(headers, rows).as_bytes());
}

pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths = widths(headers, rows);
    let mut text = row_line(&widths, headers);
    for row in rows {
        text.push_str(&row_line(&widths, row));
    }
    text
}

/// Each column's width: its widest cell.
pub fn widths(headers: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(visible_len(cell));
            }
        }
    }
    widths
}

/// One line of a table with these column widths (a wider cell pushes the
/// rest of its line along).
pub fn row_line(widths: &[usize], cells: &[impl AsRef<str>]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let cell = cell.as_ref();
        line.push_str(cell);
        if i + 1 < cells.len() {
            let width = widths.get(i).copied().unwrap_or_default();
            line.push_str(&" ".repeat(width.saturating_sub(visible_len(cell)) + 3));
        }
    }
    let mut line = line.trim_end().to_string();
    line.push('\n');
    line
}

/// Width on screen, not counting colour escapes.
fn visible_len(text: &str) -> usize {
    let mut n = 0;
    let mut escape = false;
    for c in text.chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// Prints a value as JSON or YAML; `false` for tables (the caller draws them).
/// An answer is printed as the server sent it (`Answer::json`); a value of
/// the CLI's own, as JSON with its keys sorted, like an answer.
pub fn structured(format: Format, value: &impl Serialize) -> bool {
    if format.is_table() {
        return false;
    }
    let value = serde_json::to_value(value).unwrap_or_default();
    if format == Format::Yaml {
        print!("{}", yaml(&value));
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    }
    true
}

/// A value as one line of JSON with its keys sorted, as `-w` prints each
/// change with `-o json|yaml`.
pub fn json_line(value: &impl Serialize) -> String {
    format!("{}\n", serde_json::to_value(value).unwrap_or_default())
}

/// A JSON value as YAML. Strings are written as JSON strings, which YAML
/// reads as they are, so no value can turn into another type or a comment.
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => yaml_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => yaml_list(items, 0, &mut out),
        scalar => {
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
    out
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

fn yaml_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !matches!(key, "true" | "false" | "null" | "yes" | "no" | "on" | "off")
        && !key.as_bytes()[0].is_ascii_digit();
    if plain {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

fn is_nested(value: &Value) -> bool {
    match value {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn yaml_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&yaml_key(key));
        out.push(':');
        if is_nested(value) {
            out.push('\n');
            match value {
                Value::Object(m) => yaml_map(m, indent + 2, out),
                Value::Array(a) => yaml_list(a, indent, out),
                _ => unreachable!("is_nested holds only for maps and lists"),
            }
        } else {
            out.push(' ');
            out.push_str(&yaml_scalar(value));
            out.push('\n');
        }
    }
}

fn yaml_list(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The first key on the dash's line, the others under it.
                let mut inner = String::new();
                yaml_map(m, indent + 2, &mut inner);
                out.push(' ');
                out.push_str(&inner[indent + 2..]);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                yaml_list(a, indent + 2, out);
            }
            scalar => {
                out.push(' ');
                out.push_str(&yaml_scalar(scalar));
                out.push('\n');
            }
        }
    }
}

/// UTC milliseconds as `2026-11-30T17:20:38.123Z`.
pub fn timestamp(ms: i64) -> String {
    xene_core::time::rfc3339_millis(ms)
}

/// UTC milliseconds as `2026-11-30 17:20:38`, for tables: `-` when absent.
pub fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => {
            let text = xene_core::time::utc_text(ms);
            text.strip_suffix(" UTC").unwrap_or(&text).to_string()
        }
        None => "-".into(),
    }
}

/// Milliseconds for people in one word (`850ms`, `12.3s`, `4m05s`,
/// `2h10m`), or `-` when absent: a table cell stays one word, so scripts
/// can split a line on whitespace.
pub fn duration(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), xene_core::duration::compact)
}

/// The current time in UTC milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A text for a table cell: `-` when absent or empty.
pub fn text(value: Option<&str>) -> String {
    match value {
        Some(text) if !text.is_empty() => text.to_string(),
        _ => "-".into(),
    }
}

/// A list for a table cell: `a,b`, or `-` when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "-".into();
    }
    items.join(",")
}

/// A map for a table cell: `k=v,k2=v2`, or `-` when empty.
pub fn pairs(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let text = render_table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "short".into()],
                vec!["1234".into(), "x".into()],
            ],
        );
        assert_eq!(text, "ID     NAME\n1      short\n1234   x\n");
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour_for(true, None));
        assert!(colour_for(true, Some(OsStr::new(""))));
        assert!(!colour_for(true, Some(OsStr::new("1"))));
        assert!(!colour_for(false, None));
    }

    #[test]
    fn colour_escapes_take_no_width() {
        assert_eq!(visible_len(&paint(true, "32", "ok")), 2);
    }

    #[test]
    fn yaml_of_json() {
        let value = json!({"name": "ci", "n": 1, "labels": {"gpu": "true"}, "list": [{"a": 1, "b": "x: y"}, "s"], "empty": []});
        assert_eq!(
            yaml(&value),
            "empty: []\nlabels:\n  gpu: \"true\"\nlist:\n- a: 1\n  b: \"x: y\"\n- \"s\"\nn: 1\nname: \"ci\"\n"
        );
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_796_059_238_123), "2026-11-30T17:20:38.123Z");
        assert_eq!(time(Some(1_796_059_238_123)), "2026-11-30 17:20:38");
        assert_eq!(time(None), "-");
        assert_eq!(duration(Some(850)), "850ms");
        assert_eq!(duration(Some(12_345)), "12.3s");
        assert_eq!(duration(Some(245_000)), "4m05s");
        assert_eq!(duration(Some(7_800_000)), "2h10m");
        assert_eq!(duration(None), "-");
    }
}
