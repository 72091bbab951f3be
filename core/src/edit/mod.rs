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

mod render;
#[cfg(test)]
mod tests;
mod text;

pub use render::scalar;
use render::*;
use text::*;

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
    /// Sets a key like [`Op::Set`]; an absent key is added just before
    /// its sibling `before` when there is one (else at the end), so a
    /// generated entry lands where people write it (`depends_on` before
    /// `steps`).
    Insert {
        /// Where.
        path: Vec<Seg>,
        /// The new value.
        value: Yaml,
        /// The sibling key it goes before.
        before: String,
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
    /// Whether it sets a value (and so makes missing mappings on its way).
    fn sets(&self) -> bool {
        matches!(self, Op::Set { .. } | Op::Insert { .. })
    }

    fn path(&self) -> &[Seg] {
        match self {
            Op::Set { path, .. }
            | Op::Insert { path, .. }
            | Op::Remove { path }
            | Op::Rename { path, .. } => path,
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
                if at.is_null() && op.sets() {
                    *at = Yaml::Map(Vec::new());
                }
                let Yaml::Map(entries) = at else {
                    return fail(format!("{} is not a mapping", render_path(&path[..i])));
                };
                match entries.iter().position(|(key, _)| key == k) {
                    Some(p) => &mut entries[p].1,
                    None if op.sets() => {
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
    if at.is_null() && op.sets() {
        *at = Yaml::Map(Vec::new());
    }
    let Yaml::Map(entries) = at else {
        return fail(format!("{} is not a mapping", render_path(parents)));
    };
    let found = entries.iter().position(|(key, _)| key == last);
    match (op, found) {
        (Op::Set { value, .. } | Op::Insert { value, .. }, Some(p)) => entries[p].1 = value.clone(),
        (Op::Set { value, .. }, None) => entries.push((last.clone(), value.clone())),
        (Op::Insert { value, before, .. }, None) => {
            let at = entries
                .iter()
                .position(|(key, _)| key == before)
                .unwrap_or(entries.len());
            entries.insert(at, (last.clone(), value.clone()));
        }
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
            Op::Set { path, .. }
            | Op::Insert { path, .. }
            | Op::Remove { path }
            | Op::Rename { path, .. } => path,
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
