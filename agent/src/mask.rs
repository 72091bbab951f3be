//! Secret values replaced by `***` in what a run reports (step output, task
//! outputs, error messages) before it leaves the agent.
//!
//! A value is also masked in the forms a step is likely to print it in: each
//! line of a multi-line value, its base64 (standard and URL-safe, at any
//! alignment inside a longer encoded text), its URL encoding and its JSON
//! string escaping. Forms shorter than `MIN_FORM_BYTES` are left alone:
//! masking them would shred the logs and hide little.

use std::borrow::Cow;

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
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut patterns: Vec<Vec<u8>> = values
            .into_iter()
            // Even the encodings of a short value would shred the logs.
            .filter(|v| v.len() >= MIN_FORM_BYTES)
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

    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.finder {
            Some(finder) if finder.is_match(text) => {
                Cow::Owned(finder.replace_all(text, &vec![MASK; self.patterns.len()]))
            }
            _ => Cow::Borrowed(text),
        }
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
