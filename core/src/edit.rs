//! Edits to a workflow's YAML text that change only the lines they concern.
//!
//! The visual editor and the YAML view share one source of truth, the text.
//! An edit from the canvas or the side panel is an [`Op`] on the YAML tree
//! (set a value, remove a key, rename a key); [`apply`] carries it out on
//! the text by replacing the lines of the one entry it concerns, so the
//! comments, key order, quoting and blank lines of everything else survive
//! byte for byte. Where the text's layout makes a precise patch impossible
//! (a flow mapping, a key sharing a line with a `-`), the smallest enclosing
//! block entry is written anew instead, and only that entry's comments go.
//!
//! Every result is checked: the new text must parse to exactly the tree the
//! op gives when applied to the old tree ([`apply_to_tree`]), or the edit is
//! refused and the text stays as it was.

use std::fmt;

use crate::yaml::{self, Node, ScalarKind, Value};

/// Deepest path an op may name; specs nest far less.
const MAX_PATH: usize = 16;

/// One step of a path into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index, 0-based.
    Index(usize),
}

impl Seg {
    /// A key segment.
    pub fn key(k: impl Into<String>) -> Seg {
        Seg::Key(k.into())
    }
}

/// A YAML value without positions: what an edit sets and what the text
/// means. Scalars compare by text and by what they are under the core
/// schema, so `"5"` and `5` differ while `'a'` and `a` do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Yaml {
    /// A scalar's text (empty for null) and kind.
    Scalar(String, ScalarKind),
    /// A sequence.
    Seq(Vec<Yaml>),
    /// A mapping, in order.
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    /// A string scalar.
    pub fn str(s: impl Into<String>) -> Yaml {
        Yaml::Scalar(s.into(), ScalarKind::String)
    }

    /// An integer scalar.
    pub fn int(n: i64) -> Yaml {
        Yaml::Scalar(n.to_string(), ScalarKind::Int)
    }

    /// A sequence of strings.
    pub fn strs<S: AsRef<str>>(items: &[S]) -> Yaml {
        Yaml::Seq(items.iter().map(|s| Yaml::str(s.as_ref())).collect())
    }

    /// The tree of a parsed node.
    pub fn from_node(node: &Node) -> Yaml {
        match &node.value {
            Value::Scalar(s) => {
                let kind = s.kind();
                let text = if kind == ScalarKind::Null {
                    String::new()
                } else {
                    s.text.clone()
                };
                Yaml::Scalar(text, kind)
            }
            Value::Seq(items) => Yaml::Seq(items.iter().map(Yaml::from_node).collect()),
            Value::Map(entries) => Yaml::Map(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), Yaml::from_node(&e.value)))
                    .collect(),
            ),
        }
    }

    /// The value at a path.
    pub fn get(&self, path: &[Seg]) -> Option<&Yaml> {
        let mut at = self;
        for seg in path {
            at = match (seg, at) {
                (Seg::Key(k), Yaml::Map(entries)) => &entries.iter().find(|(key, _)| key == k)?.1,
                (Seg::Index(i), Yaml::Seq(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(at)
    }

    /// A string scalar's text, or a number's or boolean's.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Yaml::Scalar(s, kind) if *kind != ScalarKind::Null => Some(s),
            _ => None,
        }
    }

    /// The entries, if a mapping.
    pub fn as_map(&self) -> Option<&[(String, Yaml)]> {
        match self {
            Yaml::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// True for null.
    pub fn is_null(&self) -> bool {
        matches!(self, Yaml::Scalar(_, ScalarKind::Null))
    }
}

/// A change to the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets the value of a mapping key, adding the key (and any missing
    /// mappings on the way) at the end when absent. The path ends in a key.
    Set {
        /// Where.
        path: Vec<Seg>,
        /// The new value.
        value: Yaml,
    },
    /// Removes a mapping key.
    Remove {
        /// Which key.
        path: Vec<Seg>,
    },
    /// Renames a mapping key in place.
    Rename {
        /// Which key.
        path: Vec<Seg>,
        /// Its new name.
        to: String,
    },
}

impl Op {
    fn path(&self) -> &[Seg] {
        match self {
            Op::Set { path, .. } | Op::Remove { path } | Op::Rename { path, .. } => path,
        }
    }
}

/// An edit that cannot be made; the text is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError(pub String);

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EditError {}

fn fail<T>(message: impl Into<String>) -> Result<T, EditError> {
    Err(EditError(message.into()))
}

fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The tree a text means, if it is well-formed YAML.
pub fn tree(text: &str) -> Result<Yaml, EditError> {
    parse_node(text).map(|node| Yaml::from_node(&node))
}

fn parse_node(text: &str) -> Result<Node, EditError> {
    let (root, errors) = yaml::parse(text);
    if let Some(e) = errors.first() {
        return fail(format!("the YAML has a fault to fix first: {e}"));
    }
    match root {
        Some(root) => Ok(root),
        None => Ok(Node {
            line: 1,
            col: 0,
            value: Value::Map(Vec::new()),
        }),
    }
}

/// Applies an op to a tree, with the same meaning [`apply`] gives it on text.
pub fn apply_to_tree(tree: &mut Yaml, op: &Op) -> Result<(), EditError> {
    let path = op.path();
    if path.is_empty() || path.len() > MAX_PATH {
        return fail("an edit names a key by a path of 1 to 16 steps");
    }
    let Some((Seg::Key(last), parents)) = path.split_last() else {
        return fail("an edit names a mapping key, not a list item");
    };
    let mut at = tree;
    for (i, seg) in parents.iter().enumerate() {
        at = match seg {
            Seg::Key(k) => {
                if at.is_null() && matches!(op, Op::Set { .. }) {
                    *at = Yaml::Map(Vec::new());
                }
                let Yaml::Map(entries) = at else {
                    return fail(format!("{} is not a mapping", render_path(&path[..i])));
                };
                match entries.iter().position(|(key, _)| key == k) {
                    Some(p) => &mut entries[p].1,
                    None if matches!(op, Op::Set { .. }) => {
                        entries.push((k.clone(), Yaml::Map(Vec::new())));
                        &mut entries.last_mut().expect("just pushed").1
                    }
                    None => return fail(format!("{} is not there", render_path(&path[..=i]))),
                }
            }
            Seg::Index(n) => match at {
                Yaml::Seq(items) if *n < items.len() => &mut items[*n],
                _ => return fail(format!("{} is not there", render_path(&path[..=i]))),
            },
        };
    }
    if at.is_null() && matches!(op, Op::Set { .. }) {
        *at = Yaml::Map(Vec::new());
    }
    let Yaml::Map(entries) = at else {
        return fail(format!("{} is not a mapping", render_path(parents)));
    };
    let found = entries.iter().position(|(key, _)| key == last);
    match (op, found) {
        (Op::Set { value, .. }, Some(p)) => entries[p].1 = value.clone(),
        (Op::Set { value, .. }, None) => entries.push((last.clone(), value.clone())),
        (Op::Remove { .. }, Some(p)) => {
            entries.remove(p);
        }
        (Op::Rename { to, .. }, Some(p)) => {
            if to != last && entries.iter().any(|(key, _)| key == to) {
                return fail(format!("{to:?} is already there"));
            }
            entries[p].0 = to.clone();
        }
        (_, None) => return fail(format!("{} is not there", render_path(path))),
    }
    Ok(())
}

/// Applies an op to YAML text, changing only the lines of the entry it
/// concerns. The result always parses to the tree [`apply_to_tree`] gives.
pub fn apply(text: &str, op: &Op) -> Result<String, EditError> {
    let mut want = tree(text)?;
    apply_to_tree(&mut want, op)?;
    let out = patch(text, op, &want)?;
    check(&out, &want, op.path())
}

/// The new text must mean exactly the tree the ops give.
fn check(out: &str, want: &Yaml, path: &[Seg]) -> Result<String, EditError> {
    match tree(out) {
        Ok(got) if got == *want => Ok(out.to_string()),
        _ => fail(format!(
            "the edit of {} could not be written without changing other values; edit the YAML by hand",
            render_path(path)
        )),
    }
}

/// A carriage return that is not part of a CRLF ends a line for the YAML
/// parser but not for the line splitting here: such texts are not patched.
fn lone_cr(text: &str) -> bool {
    let b = text.as_bytes();
    b.iter()
        .enumerate()
        .any(|(i, &c)| c == b'\r' && b.get(i + 1) != Some(&b'\n'))
}

/// The op carried out on the text, `want` being the tree it must give.
fn patch(text: &str, op: &Op, want: &Yaml) -> Result<String, EditError> {
    if lone_cr(text) {
        return fail(
            "the YAML has a carriage return that does not end a CRLF line; use LF or CRLF line endings",
        );
    }
    let root = parse_node(text)?;
    let want = want.clone();
    let doc = Doc::new(text, &root);
    let path = op.path();
    let mut out = doc.precise(op);
    // The smallest enclosing block entry, written anew from the new tree.
    let mut k = path.len();
    while out.is_none() && k > 1 {
        k -= 1;
        if let Seg::Key(_) = path[k - 1] {
            let value = want
                .get(&path[..k])
                .cloned()
                .expect("an ancestor of an edited key");
            out = doc.precise(&Op::Set {
                path: path[..k].to_vec(),
                value,
            });
        }
    }
    Ok(out.unwrap_or_else(|| doc.whole(&want)))
}

/// Applies ops in order; all or nothing. The result is checked once, at
/// the end, against the tree all the ops give.
pub fn apply_all(text: &str, ops: &[Op]) -> Result<String, EditError> {
    let mut want = tree(text)?;
    for op in ops {
        apply_to_tree(&mut want, op)?;
    }
    let last = ops.last().map(Op::path).unwrap_or_default();
    // Many ops at once (a rename that every task mentions): patched in one
    // pass over one parse when they touch separate lines, instead of a
    // parse per op.
    if ops.len() > 1
        && !lone_cr(text)
        && let Some(out) = batched(text, ops)
        && let Ok(out) = check(&out, &want, last)
    {
        return Ok(out);
    }
    let mut text = text.to_string();
    let mut so_far = tree(&text)?;
    for op in ops {
        apply_to_tree(&mut so_far, op)?;
        text = patch(&text, op, &so_far)?;
    }
    check(&text, &want, last)
}

/// Every op as a patch of the original text, read through the renames made
/// by earlier ops; `None` when one needs a rewrite or two touch the same
/// lines.
fn batched(text: &str, ops: &[Op]) -> Option<String> {
    let root = parse_node(text).ok()?;
    let doc = Doc::new(text, &root);
    let mut renamed: Vec<(Vec<Seg>, Vec<Seg>)> = Vec::new();
    let mut patches = Vec::new();
    for op in ops {
        let mut op = op.clone();
        let path = match &mut op {
            Op::Set { path, .. } | Op::Remove { path } | Op::Rename { path, .. } => path,
        };
        for (new, old) in &renamed {
            if path.starts_with(new) {
                path.splice(..new.len(), old.iter().cloned());
            }
        }
        if let Op::Rename { path, to } = &op {
            let mut new = path.clone();
            *new.last_mut()? = Seg::Key(to.clone());
            renamed.push((new, path.clone()));
        }
        patches.extend(doc.patches(&op)?);
    }
    patches.sort_by_key(|p| (p.start, p.end));
    for pair in patches.windows(2) {
        if pair[0].end > pair[1].start || pair[0].start == pair[1].start {
            return None;
        }
    }
    Some(doc.splice(&patches))
}

/// Lines `[start, end)` of the text replaced by `lines` (without their
/// endings).
#[derive(Debug)]
struct Patch {
    start: usize,
    end: usize,
    lines: Vec<String>,
}

/// Where an entry is in the text.
struct Located<'n> {
    /// 0-based line of the key.
    line: usize,
    /// Character column of the key.
    col: usize,
    value: &'n Node,
    /// The mapping holding it.
    parent: &'n Node,
}

struct Doc<'a> {
    /// Lines with their endings.
    lines: Vec<&'a str>,
    root: &'a Node,
    ends_with_newline: bool,
    /// The line ending new lines get: the document's own.
    eol: &'static str,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn byte_at(line: &str, col: usize) -> usize {
    line.char_indices()
        .nth(col)
        .map(|(b, _)| b)
        .unwrap_or(line.len())
}

/// A sequence item that starts at a line's indentation.
fn is_dash_item(line: &str) -> bool {
    let t = line.trim_start_matches(' ');
    t == "-" || t.starts_with("- ") || t.starts_with("-\n") || t.starts_with("-\r")
}

impl<'a> Doc<'a> {
    fn new(text: &'a str, root: &'a Node) -> Doc<'a> {
        Doc {
            lines: text.split_inclusive('\n').collect(),
            root,
            ends_with_newline: text.is_empty() || text.ends_with('\n'),
            eol: if text.split('\n').next().is_some_and(|l| l.ends_with('\r')) {
                "\r\n"
            } else {
                "\n"
            },
        }
    }

    fn char_at(&self, line: usize, col: usize) -> Option<char> {
        self.lines.get(line.checked_sub(1)?)?.chars().nth(col)
    }

    fn is_flow(&self, node: &Node) -> bool {
        matches!(
            (&node.value, self.char_at(node.line, node.col)),
            (Value::Map(_), Some('{')) | (Value::Seq(_), Some('['))
        )
    }

    /// The node at a path and, for a key, its entry.
    fn locate(&self, path: &[Seg]) -> Option<Located<'a>> {
        let (last, parents) = path.split_last()?;
        let at = self.node(parents)?;
        let (Seg::Key(k), Value::Map(entries)) = (last, &at.value) else {
            return None;
        };
        let e = entries.iter().find(|e| &e.key == k)?;
        if e.key_line == 0 || e.key_line > self.lines.len() {
            return None;
        }
        Some(Located {
            line: e.key_line.checked_sub(1)?,
            col: e.key_col,
            value: &e.value,
            parent: at,
        })
    }

    /// Lines `[start, end)` of the entry whose key is at `line`, `col`:
    /// everything indented deeper (or a list at the key's own indentation),
    /// without trailing blank lines and shallower comments, which belong to
    /// what follows.
    fn span(&self, line: usize, col: usize) -> (usize, usize) {
        let mut end = line + 1;
        for i in line + 1..self.lines.len() {
            let l = self.lines[i];
            let t = l.trim();
            let ind = indent_of(l);
            if t.is_empty() {
                continue;
            }
            if t.starts_with('#') {
                if ind > col {
                    end = i + 1;
                }
                continue;
            }
            if ind > col || (ind == col && is_dash_item(l)) {
                end = i + 1;
                continue;
            }
            break;
        }
        (line, end)
    }

    /// The key's line cut where the key starts: spaces, or a `- ` prefix.
    fn prefix(&self, line: usize, col: usize) -> &'a str {
        let l = self.lines[line];
        &l[..byte_at(l, col)]
    }

    /// The byte just past a key written at `col` and its colon.
    fn key_end(&self, line: usize, col: usize, key: &str) -> Option<usize> {
        let l = self.lines[line];
        let start = byte_at(l, col);
        let rest = &l[start..];
        let token_len = if rest.starts_with(key) {
            key.len()
        } else if let Some(q @ ('"' | '\'')) = rest.chars().next() {
            quoted_len(rest, q)?
        } else {
            return None;
        };
        let after = &rest[token_len..];
        let colon = after.len() - after.trim_start_matches(' ').len();
        after[colon..]
            .starts_with(':')
            .then_some(start + token_len + colon + 1)
    }

    /// The text with each patch's lines `[start, end)` replaced by its
    /// lines; patches are disjoint and sorted.
    fn splice(&self, patches: &[Patch]) -> String {
        let mut out = String::new();
        let mut at = 0;
        let mut touched_end = false;
        for p in patches {
            let end = p.end.min(self.lines.len());
            let start = p.start.min(end).max(at);
            for l in &self.lines[at..start] {
                out.push_str(l);
            }
            if start > 0 && !out.is_empty() && !out.ends_with('\n') && !p.lines.is_empty() {
                out.push_str(self.eol);
            }
            for l in &p.lines {
                out.push_str(l);
                out.push_str(self.eol);
            }
            at = end.max(at);
            touched_end |= end == self.lines.len();
        }
        for l in &self.lines[at..] {
            out.push_str(l);
        }
        if !self.ends_with_newline && touched_end && at == self.lines.len() && out.ends_with('\n') {
            out.truncate(out.len() - self.eol.len());
        }
        out
    }

    /// The op as text, patched in place, or `None` where the layout needs a
    /// wider rewrite.
    fn precise(&self, op: &Op) -> Option<String> {
        self.patches(op).map(|p| self.splice(&p))
    }

    /// The line replacements that carry out the op, or `None` where the
    /// layout needs a wider rewrite.
    fn patches(&self, op: &Op) -> Option<Vec<Patch>> {
        let path = op.path();
        let (Seg::Key(last), parents) = path.split_last()? else {
            return None;
        };
        match (op, self.locate(path)) {
            (Op::Set { value, .. }, Some(at)) => {
                if self.is_flow(at.parent) {
                    return None;
                }
                let (start, end) = self.span(at.line, at.col);
                let key_end = self.key_end(at.line, at.col, last)?;
                let l = self.lines[at.line];
                let key_text = &l[byte_at(l, at.col)..key_end - 1];
                let flow = self.is_flow(at.value);
                // The quoting it had, unless it was empty (quoted only
                // because empty strings must be).
                let style = match &at.value.value {
                    Value::Scalar(old) if !old.text.is_empty() => self
                        .char_at(at.value.line, at.value.col)
                        .filter(|c| matches!(c, '\'' | '"')),
                    _ => None,
                };
                let mut lines = entry_lines(key_text, value, at.col, flow, style);
                if let Some(comment) = self.key_line_comment(at.line, key_end, at.value) {
                    lines[0].push_str(comment);
                }
                lines[0].insert_str(0, self.prefix(at.line, at.col));
                Some(vec![Patch { start, end, lines }])
            }
            (Op::Set { value, .. }, None) => {
                // A new key: after the last entry of its block mapping.
                let parent = self.node(parents)?;
                let Value::Map(entries) = &parent.value else {
                    return None;
                };
                let lastent = entries.last()?;
                if self.is_flow(parent) {
                    return None;
                }
                let line = lastent.key_line.checked_sub(1)?;
                if line >= self.lines.len() {
                    return None;
                }
                let (_, end) = self.span(line, lastent.key_col);
                let mut lines = entry_lines(&key_token(last), value, lastent.key_col, true, None);
                lines[0].insert_str(0, &" ".repeat(lastent.key_col));
                Some(vec![Patch {
                    start: end,
                    end,
                    lines,
                }])
            }
            (Op::Remove { .. }, Some(at)) => {
                let Value::Map(entries) = &at.parent.value else {
                    return None;
                };
                if self.is_flow(at.parent) || self.prefix(at.line, at.col).trim() != "" {
                    return None;
                }
                let (start, end) = self.span(at.line, at.col);
                if entries.len() >= 2 {
                    return Some(vec![Patch {
                        start,
                        end,
                        lines: Vec::new(),
                    }]);
                }
                // The mapping's last key: its owner becomes `key: {}`, and
                // the comments around the removed entry stay.
                let (Seg::Key(owner_key), owner_path) = parents.split_last()? else {
                    return None;
                };
                let owner = self.locate(parents)?;
                let _ = owner_path;
                if owner.value.line <= owner.line + 1 || owner.line >= start {
                    return None;
                }
                let key_end = self.key_end(owner.line, owner.col, owner_key)?;
                let l = self.lines[owner.line];
                let rest = &l[key_end..];
                let owner_line = format!("{} {{}}{}", &l[..key_end], rest);
                Some(vec![
                    Patch {
                        start: owner.line,
                        end: owner.line + 1,
                        lines: vec![owner_line.trim_end_matches(['\n', '\r']).to_string()],
                    },
                    Patch {
                        start,
                        end,
                        lines: Vec::new(),
                    },
                ])
            }
            (Op::Rename { to, .. }, Some(at)) => {
                if self.is_flow(at.parent) {
                    return None;
                }
                let key_end = self.key_end(at.line, at.col, last)?;
                let l = self.lines[at.line];
                let start = byte_at(l, at.col);
                let new_line = format!("{}{}:{}", &l[..start], key_token(to), &l[key_end..]);
                Some(vec![Patch {
                    start: at.line,
                    end: at.line + 1,
                    lines: vec![new_line.trim_end_matches(['\n', '\r']).to_string()],
                }])
            }
            _ => None,
        }
    }

    fn node(&self, path: &[Seg]) -> Option<&'a Node> {
        let mut at = self.root;
        for seg in path {
            at = match (seg, &at.value) {
                (Seg::Key(k), Value::Map(entries)) => &entries.iter().find(|e| &e.key == k)?.value,
                (Seg::Index(i), Value::Seq(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(at)
    }

    /// What follows the value on the key's line when it is a comment, with
    /// the spaces before it: kept when the entry is written anew.
    fn key_line_comment(&self, line: usize, key_end: usize, value: &Node) -> Option<&'a str> {
        let l = self.lines[line].trim_end_matches(['\n', '\r']);
        let after_colon = &l[key_end.min(l.len())..];
        let tail = if value.line != line + 1 {
            // A block value on the lines below: anything after the colon.
            after_colon
        } else {
            let start = byte_at(l, value.col);
            let rest = &l[start..];
            let value_len = match (&value.value, rest.chars().next()) {
                (Value::Scalar(_), Some(q @ ('"' | '\''))) => quoted_len(rest, q)?,
                (Value::Scalar(_), Some('|' | '>')) => rest.find([' ', '\t']).unwrap_or(rest.len()),
                (Value::Scalar(_), _) => rest.find(" #").unwrap_or(rest.len()),
                (_, Some('[' | '{')) => flow_len(rest)?,
                _ => return None,
            };
            &rest[value_len..]
        };
        let hash = tail.find('#')?;
        tail[..hash]
            .chars()
            .all(|c| c == ' ' || c == '\t')
            .then_some(tail)
    }

    /// The whole document written anew: for flow-style roots (JSON).
    fn whole(&self, want: &Yaml) -> String {
        let mut out = String::new();
        // The comments at the top say what the file is: they stay.
        for l in &self.lines {
            let t = l.trim();
            if !(t.is_empty() || t.starts_with('#')) {
                break;
            }
            out.push_str(l);
            if !l.ends_with('\n') {
                out.push('\n');
            }
        }
        match render(want, 0, false, None) {
            Rendered::Inline(s) => {
                out.push_str(&s);
                out.push('\n');
            }
            Rendered::Block { lines, .. } => {
                for l in lines {
                    out.push_str(&l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// The length in bytes of a quoted scalar at the start of `s`, quotes
/// included.
fn quoted_len(s: &str, quote: char) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        if quote == '"' && c == '\\' {
            chars.next();
        } else if c == quote {
            if quote == '\'' && s[i + 1..].starts_with('\'') {
                chars.next();
                continue;
            }
            return Some(i + 1);
        }
    }
    None
}

/// The length in bytes of a flow collection at the start of `s` that
/// closes on the same line, brackets included.
fn flow_len(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            '"' | '\'' => {
                let len = quoted_len(&s[i..], c)?;
                // Skip to the closing quote.
                for (j, _) in chars.by_ref() {
                    if j + 1 >= i + len {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// How a value follows `key:` or `- `.
enum Rendered {
    /// On the same line.
    Inline(String),
    /// A header on the same line (`|`, or nothing), then lines already
    /// indented.
    Block { header: String, lines: Vec<String> },
}

/// The lines of `key: value` for a key at `col`; the first line without
/// its indentation, the rest with theirs.
fn entry_lines(
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

fn render(value: &Yaml, indent: usize, flow: bool, style: Option<char>) -> Rendered {
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
fn literal(text: &str) -> Option<(String, Vec<&str>)> {
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
fn key_token(key: &str) -> String {
    scalar(key)
}

/// A string scalar on one line: plain when plain reads back as the same
/// string, else double-quoted.
pub fn scalar(text: &str) -> String {
    styled(text, false, None)
}

/// A string scalar on one line, in flow context (inside `[ ]`) or not, in
/// the quoting style it had (`'` or `"`) when that style can say it.
fn styled(text: &str, flow: bool, style: Option<char>) -> String {
    match style {
        Some('\'') if !text.chars().any(|c| c.is_control() || c == '\u{feff}') => {
            format!("'{}'", text.replace('\'', "''"))
        }
        Some('"') => quote(text),
        _ if plain_ok(text, flow) => text.to_string(),
        _ => quote(text),
    }
}

fn plain_ok(text: &str, flow: bool) -> bool {
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

fn quote(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::key(s)
    }

    fn path(p: &str) -> Vec<Seg> {
        p.split('.').map(k).collect()
    }

    const SPEC: &str = "\
# A comment at the top.
name: demo   # trailing
pipelines:
  ci:
    tasks:
      build:
        image: 'busybox'  # pinned
        steps:
          - name: compile
            run: |
              make   # not a comment
              echo done

      # Tests, after a blank line.
      test:
        depends_on: [build]
        steps:
        - run: echo test
";

    #[test]
    fn set_changes_only_its_line() {
        let out = apply(
            SPEC,
            &Op::Set {
                path: path("pipelines.ci.tasks.build.image"),
                value: Yaml::str("alpine:3"),
            },
        )
        .unwrap();
        assert_eq!(
            out,
            SPEC.replace("image: 'busybox'  # pinned", "image: 'alpine:3'  # pinned")
        );
    }

    #[test]
    fn adds_a_dependency_in_the_same_style() {
        let out = apply(
            SPEC,
            &Op::Set {
                path: path("pipelines.ci.tasks.test.depends_on"),
                value: Yaml::strs(&["build", "lint"]),
            },
        )
        .unwrap();
        assert_eq!(out, SPEC.replace("[build]", "[build, lint]"), "{out}");
    }

    #[test]
    fn adds_a_task_at_the_end_and_a_key_at_the_end_of_its_mapping() {
        let mut task = Yaml::Map(vec![
            ("depends_on".into(), Yaml::strs(&["test"])),
            (
                "steps".into(),
                Yaml::Seq(vec![Yaml::Map(vec![(
                    "run".into(),
                    Yaml::str("echo one\necho two\n"),
                )])]),
            ),
        ]);
        let out = apply(
            SPEC,
            &Op::Set {
                path: path("pipelines.ci.tasks.deploy"),
                value: task.clone(),
            },
        )
        .unwrap();
        let added = "      deploy:\n        depends_on: [test]\n        steps:\n          - run: |\n              echo one\n              echo two\n";
        assert_eq!(out, format!("{SPEC}{added}"));
        // A key added to build lands after its steps, before the blank line.
        let out = apply(
            SPEC,
            &Op::Set {
                path: path("pipelines.ci.tasks.build.timeout"),
                value: Yaml::str("5m"),
            },
        )
        .unwrap();
        assert_eq!(
            out,
            SPEC.replace("echo done\n", "echo done\n        timeout: 5m\n")
        );
        task = Yaml::Map(vec![]);
        let out = apply(
            "name: x\npipelines:\n  ci:\n    tasks: {}\n",
            &Op::Set {
                path: path("pipelines.ci.tasks.a"),
                value: task,
            },
        )
        .unwrap();
        assert_eq!(out, "name: x\npipelines:\n  ci:\n    tasks:\n      a: {}\n");
    }

    #[test]
    fn removes_and_renames_in_place() {
        let out = apply(
            SPEC,
            &Op::Remove {
                path: path("pipelines.ci.tasks.test"),
            },
        )
        .unwrap();
        assert_eq!(
            out,
            "\
# A comment at the top.
name: demo   # trailing
pipelines:
  ci:
    tasks:
      build:
        image: 'busybox'  # pinned
        steps:
          - name: compile
            run: |
              make   # not a comment
              echo done

      # Tests, after a blank line.
"
        );
        let out = apply(
            SPEC,
            &Op::Rename {
                path: path("pipelines.ci.tasks.build"),
                to: "compile".into(),
            },
        )
        .unwrap();
        assert_eq!(out, SPEC.replace("      build:", "      compile:"));
        assert!(
            apply(
                SPEC,
                &Op::Rename {
                    path: path("pipelines.ci.tasks.build"),
                    to: "test".into(),
                },
            )
            .is_err()
        );
    }

    #[test]
    fn flow_and_dash_layouts_fall_back_to_the_enclosing_entry() {
        let text = "name: x # keep\npipelines: {ci: {tasks: {a: {steps: [{run: echo}]}}}}\n";
        let out = apply(
            text,
            &Op::Set {
                path: path("pipelines.ci.tasks.a.image"),
                value: Yaml::str("busybox"),
            },
        )
        .unwrap();
        assert!(out.starts_with("name: x # keep\npipelines:\n"), "{out}");
        // The first key of a list item cannot go alone.
        let out = apply(
            SPEC,
            &Op::Remove {
                path: vec![
                    k("pipelines"),
                    k("ci"),
                    k("tasks"),
                    k("build"),
                    k("steps"),
                    Seg::Index(0),
                    k("name"),
                ],
            },
        )
        .unwrap();
        assert!(
            out.contains("        steps:\n          - run: |\n"),
            "{out}"
        );
        assert!(out.starts_with("# A comment at the top.\nname: demo   # trailing\n"));
        let json = "{\"name\": \"x\", \"pipelines\": {}}";
        let out = apply(
            json,
            &Op::Set {
                path: path("description"),
                value: Yaml::str("d"),
            },
        )
        .unwrap();
        assert_eq!(out, "name: x\npipelines: {}\ndescription: d\n");
    }

    #[test]
    fn scalars_read_back_as_written() {
        for s in [
            "", "true", "5", "null", "~", "a: b", "a #b", "#x", "- x", "{{ x }}", "é", "\t", "'q'",
            "\"q\"", "x\\y", " lead", "trail ", "1e3", "0x1F", "a,b", "\u{7f}",
        ] {
            let text = format!("k: {}\n", scalar(s));
            assert_eq!(
                tree(&text).unwrap(),
                Yaml::Map(vec![("k".into(), Yaml::str(s))]),
                "{s:?} as {text}"
            );
        }
        for s in [
            "a\nb\n", "a\nb", "a\n\nb\n", " a\nb\n", "a\n\n", "x \ny\n", "\ta\n", "a\r\nb\n",
        ] {
            let out = apply(
                "k: 1\n",
                &Op::Set {
                    path: path("k"),
                    value: Yaml::str(s),
                },
            )
            .unwrap();
            assert_eq!(
                tree(&out).unwrap(),
                Yaml::Map(vec![("k".into(), Yaml::str(s))]),
                "{s:?}"
            );
        }
    }

    /// Found by review: the comment after `key:` went with every rewrite of
    /// a list; CRLF files got LF lines; a lone CR panicked.
    #[test]
    fn keeps_key_line_comments_line_endings_and_refuses_lone_cr() {
        let text =
            "t:\n  depends_on: [build]  # after build\n  env:   # the env\n    A: '1'\n  x: 1\n";
        let out = apply(
            text,
            &Op::Set {
                path: path("t.depends_on"),
                value: Yaml::strs(&["build", "lint"]),
            },
        )
        .unwrap();
        assert_eq!(out, text.replace("[build]", "[build, lint]"));
        let out = apply(
            text,
            &Op::Set {
                path: path("t.env"),
                value: Yaml::Map(vec![("B".into(), Yaml::str("2"))]),
            },
        )
        .unwrap();
        assert_eq!(
            out,
            text.replace("    A: '1'\n", "    B: 2\n")
                .replace("B: 2", "B: \"2\"")
        );
        let crlf = "a: 1\r\nb:\r\n  c: 2\r\n";
        let out = apply(
            crlf,
            &Op::Set {
                path: path("b.d"),
                value: Yaml::str("x"),
            },
        )
        .unwrap();
        assert_eq!(out, "a: 1\r\nb:\r\n  c: 2\r\n  d: x\r\n");
        for lone in ["a: 1\rb: 2\r", "a: \"x\ry\"\nb: 1\n"] {
            let err = apply(
                lone,
                &Op::Set {
                    path: path("b"),
                    value: Yaml::int(3),
                },
            )
            .unwrap_err();
            assert!(
                err.0.contains("carriage return") || err.0.contains("fault"),
                "{err}"
            );
        }
        // A key added to a list item lands in it, the rest untouched.
        let steps = "s:\n  # first\n  - run: a\n  # second\n  - run: b\n";
        let out = apply(
            steps,
            &Op::Set {
                path: vec![k("s"), Seg::Index(1), k("name")],
                value: Yaml::str("two"),
            },
        )
        .unwrap();
        assert_eq!(out, format!("{steps}    name: two\n"));
        // Comments at the top survive a rewrite of a flow document.
        let out = apply(
            "# mine\n{a: 1}\n",
            &Op::Set {
                path: path("b"),
                value: Yaml::int(2),
            },
        )
        .unwrap();
        assert_eq!(out, "# mine\na: 1\nb: 2\n");
    }

    /// Found by fuzzing: explicit (`?`) keys put a key on a line past the
    /// last one, and the splice indexed beyond the text.
    #[test]
    fn explicit_keys_past_the_end_do_not_panic() {
        let text = format!(
            "\n  ? \n        \u{1}% \n  ? \n     {}   eello\n",
            "\0".repeat(85)
        );
        let _ = apply(
            &text,
            &Op::Set {
                path: path("name.x"),
                value: Yaml::str("v"),
            },
        );
    }

    #[test]
    fn refuses_what_is_not_there_or_malformed() {
        assert!(apply("a: [1\n", &Op::Remove { path: path("a") }).is_err());
        assert!(apply("a: 1\n", &Op::Remove { path: path("b") }).is_err());
        assert!(
            apply(
                "a: 1\n",
                &Op::Set {
                    path: path("a.b"),
                    value: Yaml::int(1)
                }
            )
            .is_err()
        );
    }
}
