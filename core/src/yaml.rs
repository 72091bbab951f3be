//! A YAML tree that remembers lines, built from yaml-rust2's event parser.
//!
//! Mappings keep their keys in order with each key's line, so validation can
//! point at the exact line of a fault. JSON is YAML, so JSON bodies go
//! through here too. Anchors, aliases and tags are refused: a workflow spec
//! has no use for them and they would make "the line of this value" ambiguous.

use std::fmt;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deeper nesting than any sane spec; it keeps a hostile input from
/// overflowing the stack of this recursive builder.
const MAX_DEPTH: usize = 64;
/// Faults past this many are dropped (a spec of nothing but duplicate keys
/// would otherwise render a path for every line).
const MAX_ERRORS: usize = 100;

/// A YAML value with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 1-based.
    pub line: usize,
    /// 0-based, in characters: where the value starts (for a block mapping,
    /// its first key; for a flow collection, its bracket).
    pub col: usize,
    /// The value.
    pub value: Value,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A plain or quoted scalar.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, its entries in order.
    Map(Vec<Entry>),
}

/// A scalar's text and how it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The text as written, quotes removed.
    pub text: String,
    /// Quoted and block scalars are always strings.
    pub plain: bool,
}

/// One entry of a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key's text.
    pub key: String,
    /// The key's line, 1-based.
    pub key_line: usize,
    /// The key's column, 0-based, in characters.
    pub key_col: usize,
    /// The value.
    pub value: Node,
}

/// What a scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool,
    /// An integer.
    Int,
    /// A floating-point number.
    Float,
    /// Anything else, or anything quoted.
    String,
}

impl Scalar {
    /// What the scalar is, by YAML 1.2's core schema.
    pub fn kind(&self) -> ScalarKind {
        if !self.plain {
            return ScalarKind::String;
        }
        let t = self.text.as_str();
        match t {
            "" | "~" | "null" | "Null" | "NULL" => ScalarKind::Null,
            "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => ScalarKind::Bool,
            _ if is_int(t) => ScalarKind::Int,
            _ if is_float(t) => ScalarKind::Float,
            _ => ScalarKind::String,
        }
    }
}

fn is_int(t: &str) -> bool {
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if let Some(hex) = t.strip_prefix("0x") {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    if let Some(oct) = t.strip_prefix("0o") {
        return !oct.is_empty() && oct.chars().all(|c| ('0'..='7').contains(&c));
    }
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

fn is_float(t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    matches!(lower.trim_start_matches(['-', '+']), ".inf" | ".nan")
        || (t.chars().any(|c| c.is_ascii_digit()) && t.parse::<f64>().is_ok())
}

impl Node {
    /// The scalar, if the value is one.
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// True for an explicit or implicit null.
    pub fn is_null(&self) -> bool {
        self.as_scalar()
            .is_some_and(|s| s.kind() == ScalarKind::Null)
    }

    /// "a string", "a list"... for messages like "expected X, found Y".
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Scalar(s) => match s.kind() {
                ScalarKind::Null => "nothing",
                ScalarKind::Bool => "a boolean",
                ScalarKind::Int | ScalarKind::Float => "a number",
                ScalarKind::String => "a string",
            },
        }
    }
}

/// YAML that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Where in the tree, like `pipelines.ci.tasks`; empty for the document.
    pub path: String,
    /// The line, 1-based.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                // Paths are for reading: a long key is cut short.
                match k.char_indices().nth(64) {
                    Some((cut, _)) if k.chars().nth(128).is_some() => {
                        out.push_str(&k[..cut]);
                        out.push_str("...");
                    }
                    _ => out.push_str(k),
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{} (line {})", self.message, self.line)
    }
}

/// The tree, if the text is well-formed enough to build one, and every error
/// found. Duplicate keys do not stop the build (the first value is kept);
/// malformed YAML does.
pub fn parse(text: &str) -> (Option<Node>, Vec<YamlError>) {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        path: Vec::new(),
        errors: Vec::new(),
    };
    let root = b.document();
    let mut errors = b.errors;
    match root {
        Ok(node) => (node, errors),
        Err(e) => {
            errors.push(e);
            (None, errors)
        }
    }
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    path: Vec<Seg>,
    errors: Vec<YamlError>,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Marker), YamlError> {
        self.parser.next_token().map_err(|e| YamlError {
            path: String::new(),
            line: e.marker().line(),
            message: format!(
                "invalid yaml: {} at column {}",
                e.info(),
                e.marker().col() + 1
            ),
        })
    }

    fn fail<T>(&self, line: usize, message: impl Into<String>) -> Result<T, YamlError> {
        Err(YamlError {
            path: render_path(&self.path),
            line,
            message: message.into(),
        })
    }

    /// `None` for an empty document.
    fn document(&mut self) -> Result<Option<Node>, YamlError> {
        let mut root = None;
        loop {
            let (event, mark) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => {
                }
                Event::StreamEnd => return Ok(root),
                _ if root.is_some() => {
                    return self.fail(
                        mark.line(),
                        "a spec is one YAML document; remove the extra \"---\"",
                    );
                }
                _ => root = Some(self.node(event, mark, 0)?),
            }
        }
    }

    fn node(&mut self, event: Event, mark: Marker, depth: usize) -> Result<Node, YamlError> {
        let line = mark.line();
        let col = mark.col();
        if depth > MAX_DEPTH {
            return self.fail(line, format!("nested more than {MAX_DEPTH} levels deep"));
        }
        let (anchor, tag) = match &event {
            Event::Scalar(_, _, anchor, tag)
            | Event::SequenceStart(anchor, tag)
            | Event::MappingStart(anchor, tag) => (*anchor, tag.is_some()),
            _ => (0, false),
        };
        if anchor != 0 || matches!(event, Event::Alias(_)) {
            return self.fail(
                line,
                "yaml anchors and aliases are not supported; repeat the value instead",
            );
        }
        if tag {
            return self.fail(line, "yaml tags (\"!\") are not supported");
        }
        let value = match event {
            Event::Scalar(text, style, _, _) => Value::Scalar(Scalar {
                text,
                plain: style == TScalarStyle::Plain,
            }),
            Event::SequenceStart(..) => {
                let mut items = Vec::new();
                loop {
                    let (event, mark) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    self.path.push(Seg::Index(items.len()));
                    let item = self.node(event, mark, depth + 1);
                    self.path.pop();
                    items.push(item?);
                }
                Value::Seq(items)
            }
            Event::MappingStart(..) => {
                let mut entries: Vec<Entry> = Vec::new();
                // Key to index in `entries`: a search of the entries for each
                // new key was quadratic in the size of a mapping.
                let mut seen: std::collections::HashMap<String, usize> =
                    std::collections::HashMap::new();
                loop {
                    let (event, mark) = self.next()?;
                    let key = match event {
                        Event::MappingEnd => break,
                        Event::Scalar(text, _, 0, None) => text,
                        _ => return self.fail(mark.line(), "a mapping key must be a plain string"),
                    };
                    self.path.push(Seg::Key(key.clone()));
                    let (event, vmark) = self.next()?;
                    let value = self.node(event, vmark, depth + 1);
                    let value = match value {
                        Ok(v) => v,
                        Err(e) => {
                            self.path.pop();
                            return Err(e);
                        }
                    };
                    if let Some(&first) = seen.get(&key) {
                        if self.errors.len() < MAX_ERRORS {
                            self.errors.push(YamlError {
                                path: render_path(&self.path),
                                line: mark.line(),
                                message: format!(
                                    "duplicate key {:?} (first at line {})",
                                    render_path(&[Seg::Key(key.clone())]),
                                    entries[first].key_line
                                ),
                            });
                        }
                    } else {
                        seen.insert(key.clone(), entries.len());
                        entries.push(Entry {
                            key,
                            key_line: mark.line(),
                            key_col: mark.col(),
                            value,
                        });
                    }
                    self.path.pop();
                }
                Value::Map(entries)
            }
            _ => return self.fail(line, "unexpected yaml event"),
        };
        Ok(Node { line, col, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse(text).1.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn keeps_order_and_lines() {
        let (root, errs) = parse("b: 1\na:\n  - x\n  - 'y'\n");
        assert!(errs.is_empty());
        let Value::Map(entries) = root.unwrap().value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].key, "b");
        assert_eq!(entries[1].key, "a");
        assert_eq!(entries[1].key_line, 2);
        let Value::Seq(items) = &entries[1].value.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].line, 4);
        assert_eq!(items[1].as_scalar().unwrap().kind(), ScalarKind::String);
        assert_eq!(
            entries[0].value.as_scalar().unwrap().kind(),
            ScalarKind::Int
        );
    }

    #[test]
    fn reads_json() {
        let (root, errs) = parse("{\"name\": \"x\",\n \"n\": [1, true, null]}");
        assert!(errs.is_empty());
        let Value::Map(entries) = root.unwrap().value else {
            panic!("not a map")
        };
        assert_eq!(entries[1].key_line, 2);
    }

    #[test]
    fn reports_faults() {
        assert_eq!(
            errors("a:\n  b: 1\n  c: 2\n  b: 3\na: 4\n"),
            [
                "a.b: duplicate key \"b\" (first at line 2) (line 4)",
                "a: duplicate key \"a\" (first at line 1) (line 5)"
            ]
        );
        assert_eq!(
            errors("a: &x 1\nb: *x\n"),
            ["a: yaml anchors and aliases are not supported; repeat the value instead (line 1)"]
        );
        assert_eq!(
            errors("a: !!str 1\n"),
            ["a: yaml tags (\"!\") are not supported (line 1)"]
        );
        assert_eq!(
            errors("a: 1\n---\nb: 2\n"),
            ["a spec is one YAML document; remove the extra \"---\" (line 3)"]
        );
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(
            errors(&deep)[0],
            "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested more than 64 levels deep (line 1)"
        );
        let bad = errors("a: [1, 2\nb: 3\n");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("invalid yaml: "), "{bad:?}");
        assert!(parse("").0.is_none());
    }

    /// Each key was compared with every earlier key of its mapping, and each
    /// duplicate rendered its whole path: a megabyte of keys cost time in
    /// the square of their number.
    #[test]
    fn large_mappings_and_many_duplicates_stay_cheap() {
        let mut text = String::new();
        for i in 0..50_000 {
            text.push_str(&format!("k{i}: 1\n"));
        }
        let (root, errs) = parse(&text);
        assert!(errs.is_empty());
        let Value::Map(entries) = root.unwrap().value else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 50_000);
        let dups = "k: 1\n".repeat(50_000);
        let errs = errors(&dups);
        assert_eq!(errs.len(), MAX_ERRORS);
        assert_eq!(errs[0], "k: duplicate key \"k\" (first at line 1) (line 2)");
        let long = format!("{}: 1\n{}: 2\n", "a".repeat(1000), "a".repeat(1000));
        let errs = errors(&long);
        assert!(errs[0].len() < 200, "{}", errs[0]);
    }

    /// What docs/spec.md says of long keys: YAML ends a plain key at 1,024
    /// characters, so longer ones are malformed YAML.
    #[test]
    fn keys_end_at_1024_characters() {
        assert!(errors(&format!("{}: 1\n", "a".repeat(1000))).is_empty());
        let long = errors(&format!("{}: 1\n", "a".repeat(1100)));
        assert_eq!(long.len(), 1);
        assert!(long[0].starts_with("invalid yaml: "), "{long:?}");
    }
}
