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
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
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

/// The base64 of the values, for finding it wrapped over lines: each core
/// with its KMP failure function, so that a stream is read once, a byte at
/// a time, whatever the lines (a line never rescans the text before it).
#[derive(Debug)]
struct Wrapped {
    cores: Vec<Vec<u8>>,
    /// `fail[k][i]`: the longest proper prefix of `cores[k][..=i]` that is
    /// also its suffix.
    fail: Vec<Vec<u32>>,
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
        let mut cores: Vec<Vec<u8>> = values
            .iter()
            .flat_map(|v| base64_cores(v.as_bytes()))
            .filter(|c| c.len() >= MIN_FORM_BYTES)
            .map(String::into_bytes)
            .collect();
        cores.sort();
        cores.dedup();
        if cores.is_empty() {
            return None;
        }
        let fail = cores.iter().map(|core| failure(core)).collect();
        Some(Self { cores, fail })
    }

    /// After `matched` characters of core `k`, reading `b`: how many match.
    fn step(&self, k: usize, mut matched: usize, b: u8) -> usize {
        let core = &self.cores[k];
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
        carry.matched.resize(self.cores.len(), 0);
        let mut spans: Vec<Range<usize>> = Vec::new();
        let mut open = 0;
        for (k, matched) in carry.matched.iter_mut().enumerate() {
            let len = self.cores[k].len();
            let mut m = *matched as usize;
            for (i, &b) in line.iter().enumerate() {
                m = self.step(k, m, b);
                if m == len {
                    // Every occurrence, overlapping ones too.
                    spans.push((i + 1).saturating_sub(len)..i + 1);
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
/// standard and URL-safe: the characters that depend on its bytes alone.
fn base64_cores(value: &[u8]) -> Vec<String> {
    (0..3)
        .flat_map(|offset| {
            [
                base64_core(&STANDARD_NO_PAD, value, offset),
                base64_core(&URL_SAFE_NO_PAD, value, offset),
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
    let bytes = value.as_bytes();
    out.push(STANDARD.encode(bytes));
    for offset in 0..3 {
        for core in [
            base64_core(&STANDARD_NO_PAD, bytes, offset),
            base64_core(&URL_SAFE_NO_PAD, bytes, offset),
        ] {
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

/// The characters of the base64 of `value` that depend on its bytes alone
/// when it starts `offset` bytes into a longer encoded text.
fn base64_core(engine: &impl Engine, value: &[u8], offset: usize) -> String {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(value);
    let encoded = engine.encode(&padded);
    // Character i carries bits [6i, 6i + 6); the value holds bits
    // [8 * offset, 8 * (offset + len)).
    let first = (8 * offset).div_ceil(6);
    let end = (8 * (offset + value.len())) / 6;
    encoded.get(first..end).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(masker: &Masker, text: &str) -> String {
        masker.mask(text).into_owned()
    }

    #[test]
    fn masks_the_value_and_its_encodings() {
        let secret = "s3cr3t value/with+signs";
        let m = Masker::new([secret]);
        assert_eq!(masked(&m, &format!("token={secret}!")), "token=***!");
        let b64 = STANDARD.encode(secret);
        assert_eq!(masked(&m, &format!("b64 {b64} end")), "b64 *** end");
        let url = utf8_percent_encode(secret, URL_ESCAPED).to_string();
        assert_eq!(masked(&m, &format!("?q={url}&x=1")), "?q=***&x=1");
        assert_eq!(masked(&m, "nothing here"), "nothing here");
    }

    #[test]
    fn masks_base64_of_the_value_inside_a_longer_text() {
        let secret = "correct horse battery";
        let m = Masker::new([secret]);
        for prefix in ["", "u:", "user:", "x"] {
            let encoded = STANDARD.encode(format!("{prefix}{secret}@host"));
            let out = masked(&m, &encoded);
            assert!(out.contains(MASK), "{prefix:?}: {encoded} -> {out}");
            // What is left cannot be decoded back to the value.
            assert!(out.len() < encoded.len());
        }
    }

    #[test]
    fn masks_wrapped_base64_of_a_long_value() {
        let secret: String = (0..200)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let m = Masker::new([secret.as_str()]);
        for prefix in ["", "k=", "key: "] {
            let encoded = STANDARD.encode(format!("{prefix}{secret}"));
            for width in [64, 76] {
                for line in encoded.as_bytes().chunks(width) {
                    let line = std::str::from_utf8(line).unwrap();
                    let out = masked(&m, line);
                    let shown = out.replace(MASK, "");
                    assert!(
                        shown.len() <= 2 * (WRAPPED_BLOCK - 1) + 8,
                        "{line} -> {out}"
                    );
                }
            }
        }
        let lower = "a/b+c=d";
        let m = Masker::new([lower]);
        assert_eq!(masked(&m, "x a%2fb%2bc%3dd"), "x ***");
        assert_eq!(masked(&m, "x a/b%2Bc%3Dd"), "x ***");
    }

    /// Feeds `encoded` wrapped at `width` through a stream's masking and
    /// returns how many characters of it stay visible.
    fn visible_when_wrapped(m: &Masker, encoded: &str, width: usize) -> usize {
        let mut carry = Carry::default();
        encoded
            .as_bytes()
            .chunks(width)
            .map(|line| {
                let out = m.mask_line(line, &mut carry);
                let wrapped = m.wrapped.as_ref().unwrap();
                let longest = wrapped.cores.iter().map(Vec::len).max().unwrap();
                assert!(carry.matched.iter().all(|&n| (n as usize) < longest));
                String::from_utf8_lossy(&out).replace(MASK, "").len()
            })
            .sum()
    }

    /// The characters of `value`'s base64 that depend on it alone, when
    /// it follows `prefix` bytes.
    fn core_len(prefix: usize, value: usize) -> usize {
        (8 * (prefix + value)) / 6 - (8 * prefix).div_ceil(6)
    }

    /// `base64` wraps at 76 columns, openssl at 64, `base64 -w N` anywhere:
    /// masked line by line, a 100-character value's encoding showed 10
    /// characters at the line edges at 76 columns, and all of it when
    /// wrapped narrower than the value (review L5, attack #65).
    #[test]
    fn masks_base64_wrapped_at_any_width() {
        let long: String = (0..100)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        for secret in [long.as_str(), "p4ssw0rd-xyz", "s3cr3t"] {
            let m = Masker::new([secret]);
            for prefix in ["", "k=", "key: ", "a longer line before it\n"] {
                let text = format!("{prefix}{secret}\n");
                for engine in [STANDARD, URL_SAFE_NO_PAD] {
                    let encoded = engine.encode(&text);
                    for width in [1, 3, 4, 8, 13, 60, 64, 76, 200] {
                        let shown = visible_when_wrapped(&m, &encoded, width);
                        let allowed = encoded.len() - core_len(prefix.len(), secret.len())
                            + (MIN_FORM_BYTES - 1);
                        assert!(
                            shown <= allowed,
                            "{secret:?} after {prefix:?} at {width}: {shown} shown, {allowed} allowed"
                        );
                    }
                }
            }
        }
    }

    /// A task's output or a message holds its lines in one text.
    #[test]
    fn masks_base64_wrapped_in_a_multi_line_text() {
        let secret = "correct horse battery staple, and more of it";
        let m = Masker::new([secret, "-----BEGIN-----\nAAAA\n-----END-----"]);
        let encoded = STANDARD.encode(format!("user: {secret}"));
        let wrapped: Vec<&str> = encoded
            .as_bytes()
            .chunks(13)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        let out = masked(&m, &format!("before\r\n{}\r\nafter", wrapped.join("\r\n")));
        let shown = out.replace(MASK, "");
        let core = core_len("user: ".len(), secret.len());
        let visible = shown.len() - "before\r\n\r\nafter".len() - 2 * (wrapped.len() - 1);
        assert!(visible < encoded.len() - core + MIN_FORM_BYTES, "{out}");
        assert!(
            out.starts_with("before\r\n") && out.ends_with("\r\nafter"),
            "{out}"
        );
        // A multi-line value is still masked whole.
        assert_eq!(
            masked(&m, "x -----BEGIN-----\nAAAA\n-----END----- y"),
            "x *** y"
        );
    }

    /// Wrapped base64 of other data is left alone, and so are short words.
    #[test]
    fn other_wrapped_base64_is_not_masked() {
        let m = Masker::new(["correct horse battery staple", "p4ssw0rd-xyz"]);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..20_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let encoded = STANDARD.encode(&data);
        let mut carry = Carry::default();
        for line in encoded
            .as_bytes()
            .chunks(76)
            .chain([b"Done".as_slice(), b"OK"])
        {
            assert_eq!(m.mask_line(line, &mut carry), line);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any value, after any text, wrapped at any width: at most the
        /// first `MIN_FORM_BYTES - 1` characters of its encoding show.
        #[test]
        fn wrapped_base64_shows_at_most_a_few_characters(
            secret in "[ -~é€😀]{4,120}",
            prefix in "[ -~\n]{0,40}",
            width in 1usize..120,
            url_safe in proptest::bool::ANY,
        ) {
            let m = Masker::new([secret.as_str()]);
            let text = format!("{prefix}{secret}");
            let encoded = if url_safe {
                URL_SAFE_NO_PAD.encode(&text)
            } else {
                STANDARD.encode(&text)
            };
            let shown = visible_when_wrapped(&m, &encoded, width);
            let allowed = encoded.len() - core_len(prefix.len(), secret.len())
                + (MIN_FORM_BYTES - 1);
            proptest::prop_assert!(shown <= allowed, "{} shown, {} allowed", shown, allowed);
        }
    }

    /// JSON writers other than serde escape `/`, what is not ASCII, and
    /// `<`, `>`, `&` (attack #65).
    #[test]
    fn masks_json_escapes_of_other_writers() {
        let secret = "p/ss<wörd>&\"x\u{1F600}";
        let m = Masker::new([secret]);
        for printed in [
            r#"{"k":"p\/ss<wörd>&\"x😀"}"#,
            r#"{"k":"p/ss<w\u00f6rd>&\"x\ud83d\ude00"}"#,
            r#"{"k":"p/ss<w\u00F6rd>&\"x\uD83D\uDE00"}"#,
            r#"{"k":"p\/ss<w\u00f6rd>&\"x\ud83d\ude00"}"#,
            r#"{"k":"p/ss\u003cwörd\u003e\u0026\"x😀"}"#,
        ] {
            assert_eq!(masked(&m, printed), r#"{"k":"***"}"#, "{printed}");
        }
    }

    #[test]
    fn masks_each_line_of_a_multi_line_value() {
        let key = "-----BEGIN KEY-----\r\nAAAABBBBCCCC\nDDDDEEEE\n-----END KEY-----";
        let m = Masker::new([key]);
        assert_eq!(masked(&m, "AAAABBBBCCCC"), "***");
        assert_eq!(masked(&m, "x DDDDEEEE y"), "x *** y");
    }

    #[test]
    fn short_values_are_not_masked() {
        let m = Masker::new(["abc"]);
        assert!(m.is_empty());
        assert_eq!(masked(&m, "abc abc"), "abc abc");
    }

    /// Not a check: prints what streams of short base64-like lines cost
    /// with a 64 KiB secret (review L5 CPU). Run by hand:
    /// `cargo nextest run -p xene-agent -E 'test(mask_cost)' --run-ignored only --no-capture`.
    #[test]
    #[ignore]
    fn mask_cost_of_short_lines_with_a_long_secret() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let kubeconfig: String = (0..64 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b' ' + (state % 95) as u8)
            })
            .collect();
        let repetitive = "A".repeat(4 * 1024);
        let numbers: Vec<Vec<u8>> = (1..=2000).map(|i| i.to_string().into_bytes()).collect();
        let periodic: Vec<Vec<u8>> = (0..2000).map(|_| b"QUFBQUFBQUFB".to_vec()).collect();
        for (name, secret, lines) in [
            ("random 64 KiB secret, seq 1 2000", &kubeconfig, &numbers),
            (
                "'AAAA...' 4 KiB secret, 2000 lines of QUFB...",
                &repetitive,
                &periodic,
            ),
        ] {
            let start = std::time::Instant::now();
            let m = Masker::new([secret.as_str()]);
            println!(
                "{name}: masker built in {:.1} ms",
                start.elapsed().as_secs_f64() * 1e3
            );
            let mut carry = Carry::default();
            let start = std::time::Instant::now();
            for line in lines {
                std::hint::black_box(m.mask_line(line, &mut carry));
            }
            let spent = start.elapsed();
            println!(
                "{name}: {:.1} ms in all, {:.1} us a line",
                spent.as_secs_f64() * 1e3,
                spent.as_secs_f64() * 1e6 / lines.len() as f64
            );
        }
    }

    #[test]
    fn safe_cut_never_splits_a_value() {
        let m = Masker::new(["ABCDEFGH"]);
        assert_eq!(m.safe_cut(b"hello ABC"), 6);
        assert_eq!(m.safe_cut(b"hello world"), 11);
        // Called on masked text: a whole value is already `***`.
        let masked = m.mask_bytes(b"hello ABCDEFGH").into_owned();
        assert_eq!(m.safe_cut(&masked), masked.len());
        // Only a tail shorter than the value is held back.
        assert_eq!(m.safe_cut(b"ABCDEFG"), 0);
        assert_eq!(m.safe_cut(b"xxABCDEFG"), 2);
    }
}
