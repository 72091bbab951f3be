//! Values written as YAML: entries, blocks, and scalars quoted only where
//! plain would read back differently.

use super::*;

/// How a value follows `key:` or `- `.
pub(super) enum Rendered {
    /// On the same line.
    Inline(String),
    /// A header on the same line (`|`, or nothing), then lines already
    /// indented.
    Block { header: String, lines: Vec<String> },
}

/// The lines of `key: value` for a key at `col`; the first line without
/// its indentation, the rest with theirs.
pub(super) fn entry_lines(
    key: &str,
    value: &Yaml,
    col: usize,
    flow: bool,
    style: Option<char>,
) -> Vec<String> {
    match render(value, col + 2, flow, style) {
        Rendered::Inline(s) if s.is_empty() => vec![format!("{key}:")],
        Rendered::Inline(s) => vec![format!("{key}: {s}")],
        Rendered::Block { header, lines } => {
            let mut out = vec![if header.is_empty() {
                format!("{key}:")
            } else {
                format!("{key}: {header}")
            }];
            out.extend(lines);
            out
        }
    }
}

pub(super) fn render(value: &Yaml, indent: usize, flow: bool, style: Option<char>) -> Rendered {
    let pad = " ".repeat(indent);
    match value {
        Yaml::Scalar(text, kind) => {
            if *kind != ScalarKind::String {
                return Rendered::Inline(text.clone());
            }
            if text.contains('\n')
                && style != Some('"')
                && let Some((header, body)) = literal(text)
            {
                let lines = body
                    .iter()
                    .map(|l| {
                        if l.is_empty() {
                            String::new()
                        } else {
                            format!("{pad}{l}")
                        }
                    })
                    .collect();
                return Rendered::Block { header, lines };
            }
            Rendered::Inline(styled(text, false, style))
        }
        Yaml::Seq(items) if items.is_empty() => Rendered::Inline("[]".into()),
        Yaml::Map(entries) if entries.is_empty() => Rendered::Inline("{}".into()),
        Yaml::Seq(items)
            if flow
                && items.iter().all(
                    |i| matches!(i, Yaml::Scalar(t, _) if !t.contains('\n') && !t.is_empty()),
                ) =>
        {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Yaml::Scalar(t, ScalarKind::String) => styled(t, true, None),
                    Yaml::Scalar(t, _) => t.clone(),
                    _ => unreachable!("checked above"),
                })
                .collect();
            Rendered::Inline(format!("[{}]", parts.join(", ")))
        }
        Yaml::Seq(items) => {
            let mut lines = Vec::new();
            for item in items {
                match render(item, indent + 2, false, None) {
                    Rendered::Inline(s) if s.is_empty() => lines.push(format!("{pad}-")),
                    Rendered::Inline(s) => lines.push(format!("{pad}- {s}")),
                    Rendered::Block {
                        header,
                        lines: body,
                    } if !header.is_empty() => {
                        lines.push(format!("{pad}- {header}"));
                        lines.extend(body);
                    }
                    Rendered::Block { lines: body, .. } => {
                        // The item's first line moves up beside the dash.
                        let mut body = body.into_iter();
                        if let Some(first) = body.next() {
                            lines.push(format!("{pad}- {}", &first[indent + 2..]));
                        }
                        lines.extend(body);
                    }
                }
            }
            Rendered::Block {
                header: String::new(),
                lines,
            }
        }
        Yaml::Map(entries) => {
            let mut lines = Vec::new();
            for (k, v) in entries {
                // Short lists (`depends_on`, `secrets`) read best in flow style.
                let mut entry = entry_lines(&key_token(k), v, indent, true, None);
                entry[0].insert_str(0, &pad);
                lines.extend(entry);
            }
            Rendered::Block {
                header: String::new(),
                lines,
            }
        }
    }
}

/// A multi-line string as a literal block: its header and lines, or `None`
/// when a literal cannot say it exactly.
pub(super) fn literal(text: &str) -> Option<(String, Vec<&str>)> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let header = if body.len() == text.len() { "|-" } else { "|" };
    if body.is_empty()
        || body.ends_with('\n')
        || body.starts_with(' ')
        || body.starts_with('\n')
        || text
            .chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}')
        || body
            .split('\n')
            .any(|l| l.ends_with(' ') || l.ends_with('\t') || l.starts_with('\t'))
    {
        return None;
    }
    Some((header.to_string(), body.split('\n').collect()))
}

/// A key as written: plain when that reads back the same.
pub(super) fn key_token(key: &str) -> String {
    scalar(key)
}

/// A string scalar on one line: plain when plain reads back as the same
/// string, else double-quoted.
pub fn scalar(text: &str) -> String {
    styled(text, false, None)
}

/// A string scalar on one line, in flow context (inside `[ ]`) or not, in
/// the quoting style it had (`'` or `"`) when that style can say it.
pub(super) fn styled(text: &str, flow: bool, style: Option<char>) -> String {
    match style {
        Some('\'') if !text.chars().any(|c| c.is_control() || c == '\u{feff}') => {
            format!("'{}'", text.replace('\'', "''"))
        }
        Some('"') => quote(text),
        _ if plain_ok(text, flow) => text.to_string(),
        _ => quote(text),
    }
}

pub(super) fn plain_ok(text: &str, flow: bool) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    !"-?:,[]{}#&*!|>'\"%@`".contains(first)
        && !text.starts_with(' ')
        && !text.ends_with(' ')
        && !text.ends_with(':')
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.chars().any(|c| {
            c.is_control()
                || matches!(c, '\t' | '\u{feff}')
                || (flow && matches!(c, ',' | '[' | ']' | '{' | '}'))
        })
        && yaml::Scalar {
            text: text.to_string(),
            plain: true,
        }
        .kind()
            == ScalarKind::String
}

pub(super) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
