//! Where an entry stands in the text, and the text patched around it.

use super::*;

/// Lines `[start, end)` of the text replaced by `lines` (without their
/// endings).
#[derive(Debug)]
pub(super) struct Patch {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) lines: Vec<String>,
}

/// Where an entry is in the text.
pub(super) struct Located<'n> {
    /// 0-based line of the key.
    line: usize,
    /// Character column of the key.
    col: usize,
    value: &'n Node,
    /// The mapping holding it.
    parent: &'n Node,
}

pub(super) struct Doc<'a> {
    /// Lines with their endings.
    lines: Vec<&'a str>,
    root: &'a Node,
    ends_with_newline: bool,
    /// The line ending new lines get: the document's own.
    eol: &'static str,
}

pub(super) fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

pub(super) fn byte_at(line: &str, col: usize) -> usize {
    line.char_indices()
        .nth(col)
        .map(|(b, _)| b)
        .unwrap_or(line.len())
}

/// A sequence item that starts at a line's indentation.
pub(super) fn is_dash_item(line: &str) -> bool {
    let t = line.trim_start_matches(' ');
    t == "-" || t.starts_with("- ") || t.starts_with("-\n") || t.starts_with("-\r")
}

impl<'a> Doc<'a> {
    pub(super) fn new(text: &'a str, root: &'a Node) -> Doc<'a> {
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

    pub(super) fn char_at(&self, line: usize, col: usize) -> Option<char> {
        self.lines.get(line.checked_sub(1)?)?.chars().nth(col)
    }

    pub(super) fn is_flow(&self, node: &Node) -> bool {
        matches!(
            (&node.value, self.char_at(node.line, node.col)),
            (Value::Map(_), Some('{')) | (Value::Seq(_), Some('['))
        )
    }

    /// The node at a path and, for a key, its entry.
    pub(super) fn locate(&self, path: &[Seg]) -> Option<Located<'a>> {
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
    pub(super) fn span(&self, line: usize, col: usize) -> (usize, usize) {
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
    pub(super) fn prefix(&self, line: usize, col: usize) -> &'a str {
        let l = self.lines[line];
        &l[..byte_at(l, col)]
    }

    /// The byte just past a key written at `col` and its colon.
    pub(super) fn key_end(&self, line: usize, col: usize, key: &str) -> Option<usize> {
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
    pub(super) fn splice(&self, patches: &[Patch]) -> String {
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
    pub(super) fn precise(&self, op: &Op) -> Option<String> {
        self.patches(op).map(|p| self.splice(&p))
    }

    /// The line replacements that carry out the op, or `None` where the
    /// layout needs a wider rewrite.
    pub(super) fn patches(&self, op: &Op) -> Option<Vec<Patch>> {
        let path = op.path();
        let (Seg::Key(last), parents) = path.split_last()? else {
            return None;
        };
        match (op, self.locate(path)) {
            (Op::Set { value, .. } | Op::Insert { value, .. }, Some(at)) => {
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
            (Op::Insert { value, before, .. }, None) => {
                let mut sibling = parents.to_vec();
                sibling.push(Seg::key(before.clone()));
                let Some(at) = self.locate(&sibling) else {
                    // No such sibling: at the end, where `Set` puts it.
                    return self.patches(&Op::Set {
                        path: path.to_vec(),
                        value: value.clone(),
                    });
                };
                if self.is_flow(at.parent) || self.prefix(at.line, at.col).trim() != "" {
                    return None;
                }
                let mut lines = entry_lines(&key_token(last), value, at.col, true, None);
                lines[0].insert_str(0, &" ".repeat(at.col));
                Some(vec![Patch {
                    start: at.line,
                    end: at.line,
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

    pub(super) fn node(&self, path: &[Seg]) -> Option<&'a Node> {
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
    pub(super) fn key_line_comment(
        &self,
        line: usize,
        key_end: usize,
        value: &Node,
    ) -> Option<&'a str> {
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
    pub(super) fn whole(&self, want: &Yaml) -> String {
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
pub(super) fn quoted_len(s: &str, quote: char) -> Option<usize> {
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
pub(super) fn flow_len(s: &str) -> Option<usize> {
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
