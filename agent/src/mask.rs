//! Secret values replaced by `***` in what a run reports (step output, task
//! outputs, error messages) before it leaves the agent.
//!
//! A value is also masked in the forms a step is likely to print it in: each
//! line of a multi-line value, its base64 (standard and URL-safe, at any
//! alignment inside a longer encoded text, and wrapped over lines at any
//! width: see [`Carry`]), its URL encoding and its JSON string escaping (as
//! serde, Python, PHP and Go write it). Forms shorter than `MIN_FORM_BYTES`
//! are left alone: masking them would shred the logs and hide little.
//!
//! Masking is a courtesy against printing a secret by accident, not a
//! boundary: a step that reads a value can always print it in a form not
//! listed here (reversed, hex, one character per line...).

use std::borrow::Cow;
use std::ops::Range;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a masked value becomes.
pub const MASK: &str = "***";

/// Shorter forms are not masked (the server refuses shorter secrets).
pub const MIN_FORM_BYTES: usize = 4;

/// What URL encoding leaves as it is (RFC 3986's unreserved characters).
const URL_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Python's `quote`: leaves `/` as it is.
const PATH_ESCAPED: &AsciiSet = &URL_ESCAPED.remove(b'/');

/// Finds every form of a run's secret values; empty when the run has none.
#[derive(Debug, Default)]
pub struct Masker {
    finder: Option<AhoCorasick>,
    patterns: Vec<Vec<u8>>,
    wrapped: Option<Wrapped>,
}

/// The base64 of the values, for finding it wrapped over lines: each
/// value's encoding to the end of a text (see [`EncodedEnd`]) with its KMP
/// failure function, so that a stream is read once, a byte at a time,
/// whatever the lines (a line never rescans the text before it).
#[derive(Debug)]
struct Wrapped {
    ends: Vec<Vec<u8>>,
    /// `fail[k][i]`: the longest proper prefix of `ends[k][..=i]` that is
    /// also its suffix.
    fail: Vec<Vec<u32>>,
    /// `found[k][m]`: with the text ending in `ends[k][..m]`, the longest
    /// whole form of the value (core, end without or with padding) it ends
    /// with, 0 for none. The forms are prefixes of `ends[k]`, so one KMP
    /// finds them all: the whole encoding is masked whole, not just its core.
    found: Vec<Vec<u32>>,
}

/// The base64 of a value from its first character that depends on it alone
/// (at one alignment, in one alphabet) to the end of an encoded text that
/// the value ends, padding included. Its first `core` characters are there
/// wherever the value is in the text; the `unpadded` ones when it ends the
/// text; all of them when the encoder pads.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EncodedEnd {
    text: String,
    core: usize,
    unpadded: usize,
}

/// What masking a stream carries from one line to the next: for each
/// encoded value, how much of its beginning the base64 text of the last
/// lines ends with (never all of it), so that a value's base64 wrapped over
/// lines, at any width, is masked on each of them. Only the first few
/// characters of a wrapped encoding can show, when it begins within
/// `MIN_FORM_BYTES - 1` characters of a line's end.
#[derive(Debug, Default)]
pub struct Carry {
    matched: Vec<u32>,
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        // Even the encodings of a short value would shred the logs.
        let values: Vec<&str> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_FORM_BYTES)
            .collect();
        let wrapped = Wrapped::new(&values);
        let mut patterns: Vec<Vec<u8>> = values
            .into_iter()
            .flat_map(forms)
            .filter(|f| f.len() >= MIN_FORM_BYTES)
            .map(String::into_bytes)
            .collect();
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Self::default();
        }
        // Leftmost-longest: a whole encoded value wins over a part of it.
        let finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .expect("a few thousand literal patterns always build");
        Self {
            finder: Some(finder),
            patterns,
            wrapped,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.finder.is_none()
    }

    pub fn mask_bytes<'t>(&self, text: &'t [u8]) -> Cow<'t, [u8]> {
        match &self.finder {
            Some(finder) if finder.is_match(text) => Cow::Owned(
                finder.replace_all_bytes(text, &vec![MASK.as_bytes(); self.patterns.len()]),
            ),
            _ => Cow::Borrowed(text),
        }
    }

    /// Masks a text of any number of lines: a task's output, a message.
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if let Some(wrapped) = &self.wrapped
            && text.contains('\n')
            && let Cow::Owned(unwrapped) = wrapped.mask_lines(text)
        {
            return Cow::Owned(self.mask_flat(&unwrapped).into_owned());
        }
        self.mask_flat(text)
    }

    fn mask_flat<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.finder {
            Some(finder) if finder.is_match(text) => {
                Cow::Owned(finder.replace_all(text, &vec![MASK; self.patterns.len()]))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Masks one line of a stream (without its line break), with what the
    /// stream's lines before it left in `carry`: base64 of a value wrapped
    /// over lines is masked on every line it spans.
    pub fn mask_line<'t>(&self, line: &'t [u8], carry: &mut Carry) -> Cow<'t, [u8]> {
        let spans = match &self.wrapped {
            Some(wrapped) => wrapped.spans(line, carry),
            None => Vec::new(),
        };
        if spans.is_empty() {
            return self.mask_bytes(line);
        }
        let mut out = Vec::with_capacity(line.len());
        let mut at = 0;
        for span in spans {
            out.extend_from_slice(&line[at..span.start]);
            out.extend_from_slice(MASK.as_bytes());
            at = span.end;
        }
        out.extend_from_slice(&line[at..]);
        Cow::Owned(self.mask_bytes(&out).into_owned())
    }

    /// Masks an optional message in place.
    pub fn mask_option(&self, text: &mut Option<String>) {
        if let Some(t) = text
            && let Cow::Owned(masked) = self.mask(t)
        {
            *t = masked;
        }
    }

    /// Where to end a piece of an over-long line (already masked) so that
    /// no value is cut in two: before the earliest tail of `text` that could
    /// be the start of a value. The rest waits for more output. Only a
    /// tail shorter than the longest form is held back, so a `text` longer
    /// than that always yields a cut above 0.
    pub fn safe_cut(&self, text: &[u8]) -> usize {
        let longest = self.patterns.iter().map(Vec::len).max().unwrap_or(0);
        let from = text.len().saturating_sub(longest.saturating_sub(1));
        (from..text.len())
            .find(|&start| {
                let tail = &text[start..];
                self.patterns.iter().any(|p| p.starts_with(tail))
            })
            .unwrap_or(text.len())
    }
}

impl Wrapped {
    fn new(values: &[&str]) -> Option<Self> {
        let mut ends: Vec<EncodedEnd> = values
            .iter()
            .flat_map(|v| base64_ends(v.as_bytes()))
            .filter(|e| e.core >= MIN_FORM_BYTES)
            .collect();
        ends.sort();
        ends.dedup();
        if ends.is_empty() {
            return None;
        }
        let fail: Vec<Vec<u32>> = ends.iter().map(|e| failure(e.text.as_bytes())).collect();
        let found = ends.iter().zip(&fail).map(|(e, f)| found(e, f)).collect();
        let ends = ends.into_iter().map(|e| e.text.into_bytes()).collect();
        Some(Self { ends, fail, found })
    }

    /// After `matched` characters of end `k`, reading `b`: how many match.
    fn step(&self, k: usize, mut matched: usize, b: u8) -> usize {
        let core = &self.ends[k];
        loop {
            if core[matched] == b {
                return matched + 1;
            }
            if matched == 0 {
                return 0;
            }
            matched = self.fail[k][matched - 1] as usize;
        }
    }

    /// The parts of `line` that belong to a value's base64 begun, ended or
    /// wholly written on this line or across it, sorted and disjoint.
    fn spans(&self, line: &[u8], carry: &mut Carry) -> Vec<Range<usize>> {
        if line.is_empty() || !line.iter().all(|&b| is_base64_char(b)) {
            carry.matched.clear();
            return Vec::new();
        }
        carry.matched.resize(self.ends.len(), 0);
        let mut spans: Vec<Range<usize>> = Vec::new();
        let mut open = 0;
        for (k, matched) in carry.matched.iter_mut().enumerate() {
            let len = self.ends[k].len();
            let mut m = *matched as usize;
            for (i, &b) in line.iter().enumerate() {
                m = self.step(k, m, b);
                // Every occurrence, overlapping ones too.
                let form = self.found[k][m] as usize;
                if form > 0 {
                    spans.push((i + 1).saturating_sub(form)..i + 1);
                }
                if m == len {
                    m = self.fail[k][len - 1] as usize;
                }
            }
            *matched = m as u32;
            open = open.max(m);
        }
        // The text's end may begin an encoding that goes on next line.
        if open >= MIN_FORM_BYTES {
            spans.push(line.len().saturating_sub(open)..line.len());
        }
        spans.sort_by_key(|s| s.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
        for span in spans {
            match merged.last_mut() {
                Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
                _ => merged.push(span),
            }
        }
        merged
    }

    /// `text` with the base64 of values wrapped over its lines masked.
    fn mask_lines<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut carry = Carry::default();
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let (body, cr) = line.strip_suffix('\r').map_or((line, ""), |b| (b, "\r"));
            let mut at = 0;
            for span in self.spans(body.as_bytes(), &mut carry) {
                out.push_str(&body[at..span.start]);
                out.push_str(MASK);
                at = span.end;
                changed = true;
            }
            out.push_str(&body[at..]);
            out.push_str(cr);
        }
        if changed {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(text)
        }
    }
}

/// [`Wrapped::found`] for one end, from its failure function: a form ends
/// where the text does if its length is in the failure chain of `m`.
fn found(end: &EncodedEnd, fail: &[u32]) -> Vec<u32> {
    let len = end.text.len();
    let mut found = vec![0u32; len + 1];
    for m in 1..=len {
        found[m] = if m == end.core || m == end.unpadded || m == len {
            m as u32
        } else {
            found[fail[m - 1] as usize]
        };
    }
    found
}

/// KMP's failure function of `pattern` (see [`Wrapped::fail`]).
fn failure(pattern: &[u8]) -> Vec<u32> {
    let mut fail = vec![0u32; pattern.len()];
    let mut k = 0;
    for i in 1..pattern.len() {
        while k > 0 && pattern[i] != pattern[k] {
            k = fail[k - 1] as usize;
        }
        if pattern[i] == pattern[k] {
            k += 1;
        }
        fail[i] = k as u32;
    }
    fail
}

/// A character of standard or URL-safe base64, padding included.
fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
}

/// The base64 of `value` wherever it starts in a longer encoded text,
/// standard and URL-safe (see [`EncodedEnd`]).
fn base64_ends(value: &[u8]) -> Vec<EncodedEnd> {
    (0..3)
        .flat_map(|offset| {
            [
                base64_end(&STANDARD, value, offset),
                base64_end(&URL_SAFE, value, offset),
            ]
        })
        .collect()
}

/// The forms of one value a step might print.
fn forms(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    if value.contains('\n') {
        out.extend(
            value
                .lines()
                .map(|l| l.trim_end_matches('\r').to_string())
                .filter(|l| !l.trim().is_empty()),
        );
    }
    for end in base64_ends(value.as_bytes()) {
        // A value that ends the encoded text (alone, or after `user:`)
        // has a fixed end too, padding included: masked whole.
        out.push(end.text[..end.unpadded].to_string());
        let core = end.text[..end.core].to_string();
        out.push(end.text);
        // `base64` wraps at 76 columns, openssl at 64: a long value's
        // encoding is cut into lines at places that depend on what came
        // before it, so no line holds the whole core. Its blocks are
        // masked one by one instead; a wrapped line then shows at most
        // a few characters of the value's encoding at each end.
        if core.len() > WRAP_COLUMNS {
            out.extend(
                core.as_bytes()
                    .chunks(WRAPPED_BLOCK)
                    .filter(|b| b.len() == WRAPPED_BLOCK)
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            );
        }
        out.push(core);
    }
    // Percent-encoding as RFC 3986 wants it, as forms send it (`+` for a
    // space), with lowercase hex, and as Python's `quote` leaves `/`.
    let url = utf8_percent_encode(value, URL_ESCAPED).to_string();
    out.push(url.replace("%20", "+"));
    out.push(lowercase_escapes(&url));
    out.push(utf8_percent_encode(value, PATH_ESCAPED).to_string());
    out.push(url);
    let json = serde_json::to_string(value).expect("strings serialize");
    out.push(json[1..json.len() - 1].to_string());
    // Other JSON writers escape more: `/` as `\/` (PHP), what is not ASCII
    // as `\u00e9` (Python, PHP; `\u00E9` elsewhere), `<`, `>` and `&` as
    // `\u003c` (Go).
    for escapes in [
        JsonEscapes::SLASH,
        JsonEscapes::ASCII,
        JsonEscapes::ASCII | JsonEscapes::UPPER,
        JsonEscapes::ASCII | JsonEscapes::SLASH,
        JsonEscapes::HTML,
    ] {
        out.push(json_escaped(value, escapes));
    }
    out
}

/// Which characters a JSON writer escapes beyond what it must.
#[derive(Clone, Copy, PartialEq, Eq)]
struct JsonEscapes(u8);

impl JsonEscapes {
    const SLASH: Self = Self(1);
    const ASCII: Self = Self(2);
    const UPPER: Self = Self(4);
    const HTML: Self = Self(8);

    fn has(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for JsonEscapes {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// `value` as the inside of a JSON string, with `escapes`.
fn json_escaped(value: &str, escapes: JsonEscapes) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let unit = |out: &mut String, u: u16| {
        if escapes.has(JsonEscapes::UPPER) {
            out.push_str(&format!("\\u{u:04X}"));
        } else {
            out.push_str(&format!("\\u{u:04x}"));
        }
    };
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '/' if escapes.has(JsonEscapes::SLASH) => out.push_str("\\/"),
            '<' | '>' | '&' if escapes.has(JsonEscapes::HTML) => unit(&mut out, c as u16),
            c if (c as u32) < 0x20 => unit(&mut out, c as u16),
            c if !c.is_ascii() && escapes.has(JsonEscapes::ASCII) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    unit(&mut out, *u);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The shortest line a base64 tool wraps its output at.
const WRAP_COLUMNS: usize = 64;
/// Blocks of a long value's encoding masked on their own (see `forms`).
const WRAPPED_BLOCK: usize = 8;

/// `%2f` for `%2F`: some encoders write lowercase hex.
fn lowercase_escapes(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut hex_left = 0;
    for c in url.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            if c == '%' {
                hex_left = 2;
            }
            out.push(c);
        }
    }
    out
}

/// The base64 of `value` when it starts `offset` bytes into an encoded
/// text that it ends, by a padding `engine` (see [`EncodedEnd`]).
fn base64_end(engine: &impl Engine, value: &[u8], offset: usize) -> EncodedEnd {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(value);
    let encoded = engine.encode(&padded);
    // Character i carries bits [6i, 6i + 6); the value holds bits
    // [8 * offset, 8 * (offset + len)).
    let first = (8 * offset).div_ceil(6);
    let bits = 8 * (offset + value.len());
    EncodedEnd {
        text: encoded[first..].to_string(),
        core: bits / 6 - first,
        unpadded: bits.div_ceil(6) - first,
    }
}

#[cfg(test)]
mod tests;
