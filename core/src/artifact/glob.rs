//! The globs of a `publish` path: `*` and `?` within one path component,
//! `[...]` classes, and `**` for any number of components. Written by hand
//! and bounded (a pattern and a path are at most `MAX_PATH_BYTES`), so the
//! browser's bundle, which validates specs too, needs no regex engine.

use super::{MAX_PATH_BYTES, shown};

/// Whether `text` has a wildcard, which makes it a glob rather than a
/// literal path.
pub fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// A parsed glob over `/`-separated paths relative to a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    base: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `**`: any number of components, none included.
    AnyComponents,
    /// One component.
    Component(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    AnyChar,
    /// `*`
    AnyChars,
    /// `[...]`, `[!...]`: inclusive ranges (one char is a range of one).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Reads a pattern: relative, `/`-separated, no `..` component (empty
    /// and `.` components are skipped), `**` only as a whole component,
    /// every `[` closed.
    pub fn parse(pattern: &str) -> Result<Glob, String> {
        if pattern.len() > MAX_PATH_BYTES {
            return Err(format!(
                "path {} is longer than {MAX_PATH_BYTES} bytes",
                shown(pattern)
            ));
        }
        if pattern.starts_with('/') {
            return Err(format!("path {} is absolute", shown(pattern)));
        }
        if pattern.contains(['\\', '\0']) {
            return Err(format!(
                "path {} holds a backslash or a NUL",
                shown(pattern)
            ));
        }
        let mut parts = Vec::new();
        let mut base: Vec<&str> = Vec::new();
        for component in pattern.split('/') {
            match component {
                "" | "." => continue,
                ".." => return Err(format!("path {} has a \"..\" component", shown(pattern))),
                "**" => parts.push(Part::AnyComponents),
                _ if component.contains("**") => {
                    return Err(format!(
                        "path {}: \"**\" must be a whole path component, like a/**/b",
                        shown(pattern)
                    ));
                }
                _ => {
                    let tokens =
                        tokens(component).map_err(|e| format!("path {}: {e}", shown(pattern)))?;
                    let literal = tokens.iter().all(|t| matches!(t, Token::Char(_)));
                    if literal && parts.len() == base.len() {
                        base.push(component);
                    }
                    parts.push(Part::Component(tokens));
                }
            }
        }
        if parts.is_empty() {
            return Err(format!("path {} names no file", shown(pattern)));
        }
        Ok(Glob {
            base: base.join("/"),
            parts,
        })
    }

    /// The literal directory before the first wildcard component, relative
    /// to the workspace ("" for the workspace itself); what it matches is
    /// stored relative to it. For a pattern without a wildcard, the whole
    /// path.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether the path `rel` (relative to the workspace, `/`-separated)
    /// matches. `*`, `?` and classes never match a `/`; `*` matches names
    /// that start with a dot too.
    pub fn matches(&self, rel: &str) -> bool {
        if rel.len() > MAX_PATH_BYTES {
            return false;
        }
        let components: Vec<&str> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        // reach[j]: the parts so far can match the first j components.
        let mut reach = vec![false; components.len() + 1];
        reach[0] = true;
        for part in &self.parts {
            match part {
                Part::AnyComponents => {
                    let mut seen = false;
                    for r in reach.iter_mut() {
                        seen |= *r;
                        *r = seen;
                    }
                }
                Part::Component(tokens) => {
                    for j in (0..components.len()).rev() {
                        reach[j + 1] = reach[j] && component_matches(tokens, components[j]);
                    }
                    reach[0] = false;
                }
            }
            if !reach.contains(&true) {
                return false;
            }
        }
        reach[components.len()]
    }
}

impl Glob {
    /// Whether some path strictly below the directory `dir` (relative to
    /// the workspace) can match: a walk skips the directories where none
    /// can, so `*.tgz` never reads a `node_modules` tree.
    pub fn may_match_below(&self, dir: &str) -> bool {
        if dir.len() > MAX_PATH_BYTES {
            return false;
        }
        // at[i]: the first i parts can match the components read so far.
        let mut at = vec![false; self.parts.len() + 1];
        at[0] = true;
        self.skip_any(&mut at);
        for component in dir.split('/').filter(|c| !c.is_empty() && *c != ".") {
            let mut next = vec![false; at.len()];
            for (i, part) in self.parts.iter().enumerate() {
                if !at[i] {
                    continue;
                }
                match part {
                    Part::AnyComponents => next[i] = true,
                    Part::Component(tokens) => {
                        next[i + 1] |= component_matches(tokens, component);
                    }
                }
            }
            at = next;
            self.skip_any(&mut at);
            if !at.contains(&true) {
                return false;
            }
        }
        // A part left to match takes at least one more component.
        at[..self.parts.len()].contains(&true)
    }

    /// A `**` may match no component: whoever reaches it reaches past it.
    fn skip_any(&self, at: &mut [bool]) {
        for (i, part) in self.parts.iter().enumerate() {
            if at[i] && *part == Part::AnyComponents {
                at[i + 1] = true;
            }
        }
    }
}

fn tokens(component: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = component.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Token::AnyChars,
            '?' => Token::AnyChar,
            '[' => {
                let negated = chars.next_if(|&c| c == '!' || c == '^').is_some();
                let mut ranges = Vec::new();
                let mut closed = false;
                // A `]` first is a plain character, as in shells.
                let mut first = true;
                while let Some(c) = chars.next() {
                    if c == ']' && !first {
                        closed = true;
                        break;
                    }
                    first = false;
                    let end = if chars.peek() == Some(&'-') {
                        let mut ahead = chars.clone();
                        ahead.next();
                        match ahead.peek() {
                            Some(&end) if end != ']' => {
                                chars.next();
                                chars.next();
                                end
                            }
                            _ => c,
                        }
                    } else {
                        c
                    };
                    if end < c {
                        return Err(format!("the range {c}-{end} is backwards"));
                    }
                    ranges.push((c, end));
                }
                if !closed {
                    return Err("a \"[\" is not closed by \"]\"".into());
                }
                Token::Class { negated, ranges }
            }
            c => Token::Char(c),
        });
    }
    Ok(out)
}

/// Whether one component matches its tokens: the usual wildcard match,
/// going back only to the last `*` (linear in practice, quadratic at worst).
fn component_matches(tokens: &[Token], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::AnyChars) => {
                star = Some((t, n));
                t += 1;
            }
            Some(token) if one_matches(token, name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|t| *t == Token::AnyChars)
}

fn one_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Char(x) => *x == c,
        Token::AnyChar => true,
        Token::AnyChars => false,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}
