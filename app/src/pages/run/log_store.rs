//! What the log pane shows, kept in memory: every step's lines per attempt,
//! as the run's feed brings them, with their stream, the ANSI style in
//! force where each starts, and the sections (`::group::` ...
//! `::endgroup::`) they form. Pure data, no view.
//!
//! Order: lines are kept in the order the server stored them, which is the
//! order the agent read them (see `agent/src/runtime/streams.rs` for what
//! that guarantees across stdout and stderr).

use std::collections::BTreeMap;

use xene_api::feed::LogChunk;
use xene_core::ansi::{self, Style};

/// Lines kept per step and attempt in the browser; the raw log (download)
/// has the rest.
const MAX_LINES: usize = 1_000_000;
/// Bytes of an unfinished line kept before it is shown as a line anyway.
const MAX_PARTIAL: usize = 64 * 1024;
/// Bytes of lines kept per step and attempt, and for the whole run (a long
/// run with chatty steps and retries would otherwise fill the tab's
/// memory); lines past either are counted in `dropped`.
const MAX_STEP_BYTES: usize = 64 * 1024 * 1024;
const MAX_STORE_BYTES: usize = 256 * 1024 * 1024;

/// What a line is to the sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    None,
    /// `::group::TITLE`: a section starts, shown as its title.
    Open,
    /// `::endgroup::`: a section ends; never shown.
    Close,
}

/// One line of output as it came, with the style in force where it starts.
#[derive(Debug, Clone)]
pub struct Line {
    pub raw: String,
    pub at: i64,
    pub style: Style,
    pub marker: Marker,
    pub stderr: bool,
}

/// A section: its title line and its last line (its `::endgroup::`, or the
/// line before the next `::group::`, or the log's last line while open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub end: usize,
    /// Ended (by `::endgroup::` or the next group): collapsed unless opened.
    pub closed: bool,
}

/// One step's lines for one attempt.
#[derive(Debug, Clone, Default)]
pub struct StepLog {
    pub lines: Vec<Line>,
    partial: String,
    partial_at: i64,
    partial_stderr: bool,
    /// The style carried from line to line, per stream (a program colours
    /// each stream on its own).
    style_out: Style,
    style_err: Style,
    sections: BTreeMap<usize, Section>,
    open: Option<usize>,
    /// Whether any line is a marker (then rows are computed, else every
    /// line is a row).
    markers: bool,
    pub dropped: usize,
    /// Bytes of its lines.
    bytes: usize,
    /// The most bytes it may hold now (the store's room counted in);
    /// `None`: `MAX_STEP_BYTES`.
    limit: Option<usize>,
}

impl StepLog {
    fn push(&mut self, raw: String, at: i64, stderr: bool) {
        let limit = self.limit.unwrap_or(MAX_STEP_BYTES);
        if self.lines.len() >= MAX_LINES || self.bytes + raw.len() > limit {
            self.dropped += 1;
            return;
        }
        self.bytes += raw.len();
        let i = self.lines.len();
        let trimmed = raw.trim_start();
        let marker = if trimmed.starts_with("::group::") {
            Marker::Open
        } else if trimmed.starts_with("::endgroup::") {
            Marker::Close
        } else {
            Marker::None
        };
        match marker {
            Marker::Open => {
                if let Some(start) = self.open.replace(i) {
                    self.sections.insert(
                        start,
                        Section {
                            end: i - 1,
                            closed: true,
                        },
                    );
                }
                self.sections.insert(
                    i,
                    Section {
                        end: i,
                        closed: false,
                    },
                );
                self.markers = true;
            }
            Marker::Close => {
                if let Some(start) = self.open.take() {
                    self.sections.insert(
                        start,
                        Section {
                            end: i,
                            closed: true,
                        },
                    );
                }
                self.markers = true;
            }
            Marker::None => {
                if let Some(start) = self.open
                    && let Some(s) = self.sections.get_mut(&start)
                {
                    s.end = i;
                }
            }
        }
        let carried = if stderr {
            &mut self.style_err
        } else {
            &mut self.style_out
        };
        let style = *carried;
        // Advance the carried style past this line.
        ansi::parse_line(&raw, carried);
        self.lines.push(Line {
            raw,
            at,
            style,
            marker,
            stderr,
        });
    }

    /// Takes a chunk of one stream; an unfinished line of the other stream
    /// ends where this one starts.
    pub fn absorb(&mut self, data: &str, at: i64, stderr: bool) {
        if !self.partial.is_empty() && self.partial_stderr != stderr {
            let line = std::mem::take(&mut self.partial);
            self.push(line, self.partial_at, self.partial_stderr);
        }
        let mut rest = data;
        while let Some(nl) = rest.find('\n') {
            let mut line = std::mem::take(&mut self.partial);
            let at = if line.is_empty() { at } else { self.partial_at };
            line.push_str(&rest[..nl]);
            self.push(line, at, stderr);
            rest = &rest[nl + 1..];
        }
        if !rest.is_empty() {
            if self.partial.is_empty() {
                self.partial_at = at;
                self.partial_stderr = stderr;
            }
            self.partial.push_str(rest);
            if self.partial.len() > MAX_PARTIAL {
                let line = std::mem::take(&mut self.partial);
                self.push(line, at, stderr);
            }
        }
    }

    /// Lines plus the unfinished one.
    pub fn len(&self) -> usize {
        self.lines.len() + usize::from(!self.partial.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Line `i` (0-based), the unfinished one included.
    pub fn line(&self, i: usize) -> Option<Line> {
        if let Some(l) = self.lines.get(i) {
            return Some(l.clone());
        }
        (i == self.lines.len() && !self.partial.is_empty()).then(|| Line {
            raw: self.partial.clone(),
            at: self.partial_at,
            style: if self.partial_stderr {
                self.style_err
            } else {
                self.style_out
            },
            marker: Marker::None,
            stderr: self.partial_stderr,
        })
    }

    /// Each section by its title line.
    pub fn sections(&self) -> &BTreeMap<usize, Section> {
        &self.sections
    }

    /// The lines shown, in order, given which sections are collapsed
    /// (`collapsed(start, section)`): `None` when that is every line.
    /// `::endgroup::` lines are never shown; a collapsed section shows its
    /// title only.
    pub fn rows(&self, collapsed: impl Fn(usize, &Section) -> bool) -> Option<Vec<u32>> {
        if !self.markers {
            return None;
        }
        let n = self.len();
        let mut out = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            let marker = self.lines.get(i).map_or(Marker::None, |l| l.marker);
            if marker != Marker::Close {
                out.push(i as u32);
            }
            match self.sections.get(&i) {
                Some(s) if marker == Marker::Open && collapsed(i, s) => i = s.end + 1,
                _ => i += 1,
            }
        }
        Some(out)
    }
}

/// A step's log: task, step, attempt.
pub type StepKey = (String, String, i64);

/// Every step's log of one run, per attempt, filled from its feed.
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    /// The last feed cursor seen: a reconnect resumes after it.
    pub cursor: i64,
    pub ended: bool,
    pub steps: BTreeMap<StepKey, StepLog>,
    /// Bytes of the lines of every step.
    bytes: usize,
}

impl LogStore {
    /// Takes one log chunk of the feed; one seen before changes nothing.
    pub fn absorb(&mut self, chunk: &LogChunk) {
        self.absorb_within(chunk, MAX_STORE_BYTES);
    }

    /// `absorb`, the store holding at most `max` bytes of lines.
    fn absorb_within(&mut self, chunk: &LogChunk, max: usize) {
        if chunk.cursor <= self.cursor {
            return;
        }
        self.cursor = chunk.cursor;
        let room = max.saturating_sub(self.bytes);
        let step = self
            .steps
            .entry((chunk.task.clone(), chunk.step.clone(), chunk.attempt))
            .or_default();
        let before = step.bytes;
        step.limit = Some(MAX_STEP_BYTES.min(before + room));
        step.absorb(&chunk.data, chunk.at, chunk.stream == "stderr");
        self.bytes += step.bytes - before;
    }

    /// The attempts of a step that logged anything, oldest first.
    pub fn attempts(&self, task: &str, step: &str) -> Vec<i64> {
        self.steps
            .keys()
            .filter(|(t, s, _)| t == task && s == step)
            .map(|k| k.2)
            .collect()
    }
}

/// `#L10` or `#L10-L20` as 1-based inclusive line numbers.
pub fn parse_range(hash: &str) -> Option<(usize, usize)> {
    let rest = hash.trim_start_matches('#').strip_prefix('L')?;
    let (a, b) = match rest.split_once('-') {
        Some((a, b)) => (a, b.trim_start_matches('L')),
        None => (rest, rest),
    };
    let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
    (a >= 1 && b >= 1).then(|| (a.min(b), a.max(b)))
}

pub fn range_hash((a, b): (usize, usize)) -> String {
    if a == b {
        format!("#L{a}")
    } else {
        format!("#L{a}-L{b}")
    }
}

/// `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "1 line", "12,345 lines".
pub fn count_text(n: usize) -> String {
    if n == 1 {
        "1 line".into()
    } else {
        format!("{} lines", thousands(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(cursor: i64, attempt: i64, stream: &str, data: &str) -> LogChunk {
        LogChunk {
            cursor,
            attempt,
            task: "t".into(),
            step: "s".into(),
            stream: stream.into(),
            offset: 0,
            data: data.into(),
            at: 5,
        }
    }

    fn key(attempt: i64) -> StepKey {
        ("t".into(), "s".into(), attempt)
    }

    #[test]
    fn chunks_become_lines_across_partial_writes() {
        let mut store = LogStore::default();
        store.absorb(&chunk(1, 1, "stdout", "one\ntw"));
        store.absorb(&chunk(2, 1, "stdout", "o\nthree"));
        // A resent chunk changes nothing.
        store.absorb(&chunk(2, 1, "stdout", "o\nthree"));
        let step = &store.steps[&key(1)];
        assert_eq!(step.lines.len(), 2);
        assert_eq!(step.lines[1].raw, "two");
        assert_eq!(step.len(), 3);
        assert_eq!(step.line(2).unwrap().raw, "three");
        assert_eq!(store.cursor, 2);
    }

    #[test]
    fn streams_stay_in_order_and_stderr_is_marked() {
        let mut store = LogStore::default();
        store.absorb(&chunk(1, 1, "stdout", "compiling\n"));
        store.absorb(&chunk(2, 1, "stderr", "error: something broke\n"));
        // An unfinished stdout line ends where stderr starts.
        store.absorb(&chunk(3, 1, "stdout", "half"));
        store.absorb(&chunk(4, 1, "stderr", "more\n"));
        let step = &store.steps[&key(1)];
        let lines: Vec<(&str, bool)> = step
            .lines
            .iter()
            .map(|l| (l.raw.as_str(), l.stderr))
            .collect();
        assert_eq!(
            lines,
            [
                ("compiling", false),
                ("error: something broke", true),
                ("half", false),
                ("more", true)
            ]
        );
    }

    #[test]
    fn lines_past_the_byte_budgets_are_counted_as_dropped() {
        // A step's own budget.
        let mut step = StepLog {
            limit: Some(10),
            ..StepLog::default()
        };
        step.absorb("12345\n67890\nabc\n", 0, false);
        assert_eq!((step.lines.len(), step.dropped), (2, 1));
        // The store's, shared by every step and attempt.
        let mut store = LogStore::default();
        store.absorb_within(&chunk(1, 1, "stdout", "12345\n"), 8);
        store.absorb_within(&chunk(2, 2, "stdout", "678\n9\n"), 8);
        let kept = |a: i64| store.steps[&key(a)].lines.len();
        let dropped = |a: i64| store.steps[&key(a)].dropped;
        assert_eq!((kept(1), kept(2), dropped(2)), (1, 1, 1));
    }

    #[test]
    fn each_attempt_keeps_its_own_log() {
        let mut store = LogStore::default();
        store.absorb(&chunk(1, 1, "stderr", "first try fails\n"));
        store.absorb(&chunk(2, 2, "stdout", "second try works\n"));
        assert_eq!(store.attempts("t", "s"), [1, 2]);
        assert_eq!(store.steps[&key(1)].lines[0].raw, "first try fails");
        assert_eq!(store.steps[&key(2)].lines[0].raw, "second try works");
        assert_eq!(store.steps[&key(2)].len(), 1);
    }

    #[test]
    fn ended_sections_collapse_the_open_one_stays_and_endgroup_never_shows() {
        let mut step = StepLog::default();
        step.absorb(
            "a\n::group::Build\nb\nc\n::endgroup::\nd\n::group::One\nx\n::group::Open\ne\n",
            0,
            false,
        );
        let s = step.sections();
        assert_eq!(
            s[&1],
            Section {
                end: 4,
                closed: true
            }
        );
        assert_eq!(
            s[&6],
            Section {
                end: 7,
                closed: true
            }
        );
        assert_eq!(
            s[&8],
            Section {
                end: 9,
                closed: false
            }
        );
        // By default: ended sections collapsed, the open one open.
        let rows = step.rows(|_, s| s.closed).unwrap();
        assert_eq!(rows, [0, 1, 5, 6, 8, 9]);
        // All open: every line but the `::endgroup::`.
        let rows = step.rows(|_, _| false).unwrap();
        assert_eq!(rows, [0, 1, 2, 3, 5, 6, 7, 8, 9]);
        // A stray `::endgroup::` is hidden too.
        let mut step = StepLog::default();
        step.absorb("a\n::endgroup::\nb\n", 0, false);
        assert_eq!(step.rows(|_, s| s.closed).unwrap(), [0, 2]);
        // No markers: every line, without a list.
        let mut step = StepLog::default();
        step.absorb("a\nb\n", 0, false);
        assert_eq!(step.rows(|_, _| true), None);
    }

    #[test]
    fn ranges_and_counts() {
        assert_eq!(parse_range("#L10"), Some((10, 10)));
        assert_eq!(parse_range("#L20-L10"), Some((10, 20)));
        assert_eq!(parse_range("#L0"), None);
        assert_eq!(parse_range("#x"), None);
        assert_eq!(range_hash((3, 7)), "#L3-L7");
        assert_eq!(count_text(0), "0 lines");
        assert_eq!(count_text(1), "1 line");
        assert_eq!(count_text(999), "999 lines");
        assert_eq!(count_text(100_006), "100,006 lines");
        assert_eq!(count_text(1_000_000), "1,000,000 lines");
    }

    #[test]
    fn colour_carries_to_the_next_line_of_its_stream() {
        let mut step = StepLog::default();
        step.absorb("\x1b[31mred\n", 0, false);
        step.absorb("plain\n", 0, true);
        step.absorb("still\n", 0, false);
        assert_eq!(step.lines[1].style.fg, None);
        assert_eq!(step.lines[2].style.fg, Some(ansi::Color::Indexed(1)));
    }
}
