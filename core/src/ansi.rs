//! ANSI escape sequences in step output, turned into styled spans for the log
//! panes: SGR colours (the 16 basic ones, the 256-colour palette and true
//! colour) and attributes; every other escape sequence is dropped. A carriage
//! return keeps what follows it, as a terminal would show a progress bar.
//!
//! Bounded: a line longer than [`MAX_LINE_CHARS`] is cut (the raw log keeps
//! it whole), a sequence with more than [`MAX_PARAMS`] parameters is ignored.

/// Characters of one line shown; the rest is cut with a note.
pub const MAX_LINE_CHARS: usize = 20_000;
/// Parameters read from one escape sequence.
pub const MAX_PARAMS: usize = 32;

/// A colour: one of the 256 palette entries (0–15 are the themeable basic
/// ones), or true colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    /// A palette index.
    Indexed(u8),
    /// Red, green, blue.
    Rgb(u8, u8, u8),
}

/// The graphic state that applies to a span of text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// Foreground.
    pub fg: Option<Color>,
    /// Background.
    pub bg: Option<Color>,
    /// SGR 1.
    pub bold: bool,
    /// SGR 2.
    pub dim: bool,
    /// SGR 3.
    pub italic: bool,
    /// SGR 4.
    pub underline: bool,
    /// SGR 7: foreground and background swapped.
    pub inverse: bool,
}

/// Text in one style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Without escape sequences.
    pub text: String,
    /// How it looks.
    pub style: Style,
}

impl Style {
    /// Whether this is the terminal's default look.
    pub fn is_plain(&self) -> bool {
        *self == Style::default()
    }

    /// CSS classes for the basic colours and attributes (so themes can pick
    /// readable shades) and an inline style for 256 and true colours.
    pub fn css(&self) -> (String, String) {
        let (fg, bg) = if self.inverse {
            (self.bg, self.fg)
        } else {
            (self.fg, self.bg)
        };
        let mut classes = Vec::new();
        let mut style = String::new();
        for (color, kind) in [(fg, "fg"), (bg, "bg")] {
            match color {
                Some(Color::Indexed(i)) if i < 16 => classes.push(format!("ansi-{kind}-{i}")),
                Some(c) => {
                    let (r, g, b) = rgb(c);
                    let property = if kind == "fg" {
                        "color"
                    } else {
                        "background-color"
                    };
                    style.push_str(&format!("{property}:#{r:02x}{g:02x}{b:02x};"));
                }
                None => {}
            }
        }
        if self.inverse && fg.is_none() {
            classes.push("ansi-inverse".into());
        }
        for (on, name) in [
            (self.bold, "ansi-bold"),
            (self.dim, "ansi-dim"),
            (self.italic, "ansi-italic"),
            (self.underline, "ansi-underline"),
        ] {
            if on {
                classes.push(name.into());
            }
        }
        (classes.join(" "), style)
    }

    fn apply(&mut self, params: &[u16]) {
        if params.is_empty() {
            *self = Style::default();
            return;
        }
        let mut i = 0;
        while i < params.len() {
            let p = params[i];
            match p {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                7 => self.inverse = true,
                22 => {
                    self.bold = false;
                    self.dim = false;
                }
                23 => self.italic = false,
                24 => self.underline = false,
                27 => self.inverse = false,
                30..=37 => self.fg = Some(Color::Indexed((p - 30) as u8)),
                39 => self.fg = None,
                40..=47 => self.bg = Some(Color::Indexed((p - 40) as u8)),
                49 => self.bg = None,
                90..=97 => self.fg = Some(Color::Indexed((p - 90 + 8) as u8)),
                100..=107 => self.bg = Some(Color::Indexed((p - 100 + 8) as u8)),
                38 | 48 => {
                    let (color, used) = extended(&params[i + 1..]);
                    if let Some(c) = color {
                        if p == 38 {
                            self.fg = Some(c);
                        } else {
                            self.bg = Some(c);
                        }
                    }
                    i += used;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// `5;N` or `2;R;G;B` after a 38 or 48; returns how many parameters it used.
fn extended(rest: &[u16]) -> (Option<Color>, usize) {
    match rest {
        [5, n, ..] => (Some(Color::Indexed((*n).min(255) as u8)), 2),
        [2, r, g, b, ..] => (
            Some(Color::Rgb(
                (*r).min(255) as u8,
                (*g).min(255) as u8,
                (*b).min(255) as u8,
            )),
            4,
        ),
        [5] | [2, ..] => (None, rest.len()),
        _ => (None, 0),
    }
}

/// A colour's red, green and blue (the xterm palette for indices).
pub fn rgb(color: Color) -> (u8, u8, u8) {
    const BASIC: [(u8, u8, u8); 16] = [
        (0, 0, 0),
        (205, 49, 49),
        (13, 188, 121),
        (229, 229, 16),
        (36, 114, 200),
        (188, 63, 188),
        (17, 168, 205),
        (229, 229, 229),
        (102, 102, 102),
        (241, 76, 76),
        (35, 209, 139),
        (245, 245, 67),
        (59, 142, 234),
        (214, 112, 214),
        (41, 184, 219),
        (255, 255, 255),
    ];
    match color {
        Color::Rgb(r, g, b) => (r, g, b),
        Color::Indexed(i) if i < 16 => BASIC[i as usize],
        Color::Indexed(i) if i < 232 => {
            let i = i - 16;
            let level = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
            (level(i / 36), level((i / 6) % 6), level(i % 6))
        }
        Color::Indexed(i) => {
            let v = 8 + (i - 232) * 10;
            (v, v, v)
        }
    }
}

/// Splits one line (without its newline) into styled spans, starting from
/// `state` and leaving in it the style in force at the end of the line, so
/// that a colour set on one line carries on to the next as in a terminal.
pub fn parse_line(line: &str, state: &mut Style) -> Vec<Span> {
    // What a terminal would show after the last carriage return.
    let line = match line.trim_end_matches('\r').rfind('\r') {
        Some(cr) => &line[cr + 1..],
        None => line.trim_end_matches('\r'),
    };
    let mut spans: Vec<Span> = Vec::new();
    let mut text = String::new();
    let mut shown = 0usize;
    let mut chars = line.chars().peekable();
    let flush = |text: &mut String, spans: &mut Vec<Span>, style: Style| {
        if text.is_empty() {
            return;
        }
        match spans.last_mut() {
            Some(last) if last.style == style => last.text.push_str(text),
            _ => spans.push(Span {
                text: std::mem::take(text),
                style,
            }),
        }
        text.clear();
    };
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            match chars.peek() {
                Some('[') => {
                    chars.next();
                    let mut params: Vec<u16> = Vec::new();
                    let mut current: Option<u32> = None;
                    let mut too_many = false;
                    let mut fin = None;
                    for c in chars.by_ref() {
                        match c {
                            '0'..='9' => {
                                let d = c as u32 - '0' as u32;
                                current = Some((current.unwrap_or(0) * 10 + d).min(65_535));
                            }
                            ';' | ':' => {
                                if params.len() < MAX_PARAMS {
                                    params.push(current.take().unwrap_or(0) as u16);
                                } else {
                                    too_many = true;
                                }
                            }
                            '\u{40}'..='\u{7e}' => {
                                fin = Some(c);
                                break;
                            }
                            // Intermediate and private bytes: part of the sequence.
                            _ => {}
                        }
                    }
                    if let Some(v) = current {
                        if params.len() < MAX_PARAMS {
                            params.push(v as u16);
                        } else {
                            too_many = true;
                        }
                    }
                    if fin == Some('m') && !too_many {
                        flush(&mut text, &mut spans, *state);
                        state.apply(&params);
                    }
                }
                Some(']') => {
                    // OSC (titles, hyperlinks): up to BEL or ESC \.
                    chars.next();
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            chars.next_if_eq(&'\\');
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            }
            continue;
        }
        if shown >= MAX_LINE_CHARS {
            flush(&mut text, &mut spans, *state);
            spans.push(Span {
                text: " [… line cut; the raw log has it whole]".into(),
                style: Style {
                    dim: true,
                    ..Style::default()
                },
            });
            return spans;
        }
        if c.is_control() && c != '\t' {
            continue;
        }
        text.push(c);
        shown += 1;
    }
    flush(&mut text, &mut spans, *state);
    spans
}

/// The line's text without escape sequences, for search.
pub fn plain(line: &str) -> String {
    let mut style = Style::default();
    parse_line(line, &mut style)
        .into_iter()
        .map(|s| s.text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(line: &str) -> Vec<(String, Style)> {
        let mut s = Style::default();
        parse_line(line, &mut s)
            .into_iter()
            .map(|s| (s.text, s.style))
            .collect()
    }

    #[test]
    fn plain_text_is_one_plain_span() {
        assert_eq!(spans("hello"), vec![("hello".into(), Style::default())]);
        assert!(spans("").is_empty());
    }

    #[test]
    fn basic_bright_256_and_true_colours() {
        let s = spans("a\x1b[31mred\x1b[0m \x1b[1;92mok\x1b[38;5;208mor\x1b[48;2;1;2;3mbg");
        assert_eq!(s[0].0, "a");
        assert_eq!(
            s[1],
            (
                "red".into(),
                Style {
                    fg: Some(Color::Indexed(1)),
                    ..Style::default()
                }
            )
        );
        assert_eq!(s[2].0, " ");
        assert_eq!(s[3].1.fg, Some(Color::Indexed(10)));
        assert!(s[3].1.bold);
        assert_eq!(s[4].1.fg, Some(Color::Indexed(208)));
        assert_eq!(s[5].1.bg, Some(Color::Rgb(1, 2, 3)));
        assert_eq!(s[5].1.css().1, "color:#ff8700;background-color:#010203;");
        assert_eq!(s[1].1.css().0, "ansi-fg-1");
    }

    #[test]
    fn colon_separated_true_colour() {
        let s = spans("\x1b[38:2:255:0:0mx");
        assert_eq!(s[0].1.fg, Some(Color::Rgb(255, 0, 0)));
    }

    #[test]
    fn style_carries_over_lines() {
        let mut state = Style::default();
        parse_line("\x1b[34mblue starts", &mut state);
        let next = parse_line("still blue\x1b[39m", &mut state);
        assert_eq!(next[0].style.fg, Some(Color::Indexed(4)));
        assert_eq!(state, Style::default());
    }

    #[test]
    fn other_sequences_and_controls_are_dropped() {
        assert_eq!(plain("\x1b[2K\x1b[1Gdone\x07"), "done");
        assert_eq!(plain("\x1b]0;title\x07text"), "text");
        assert_eq!(plain("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"), "link");
        assert_eq!(plain("10%\r50%\r100%"), "100%");
        assert_eq!(plain("tab\there\r"), "tab\there");
    }

    #[test]
    fn bounded() {
        let long = "x".repeat(MAX_LINE_CHARS + 10);
        let s = spans(&long);
        assert_eq!(s[0].0.len(), MAX_LINE_CHARS);
        assert!(s[1].0.contains("cut"));
        // Absurd parameter lists are ignored, not overflowed.
        let many = format!("\x1b[{}31mx", "1;".repeat(1000));
        assert_eq!(spans(&many)[0].1, Style::default());
        let huge = "\x1b[99999999999999999999mx";
        assert_eq!(spans(huge)[0].0, "x");
        // A truncated sequence at the end of the line is dropped.
        assert_eq!(plain("a\x1b[38;5"), "a");
        assert_eq!(plain("a\x1b"), "a");
    }

    #[test]
    fn palette() {
        assert_eq!(rgb(Color::Indexed(16)), (0, 0, 0));
        assert_eq!(rgb(Color::Indexed(231)), (255, 255, 255));
        assert_eq!(rgb(Color::Indexed(232)), (8, 8, 8));
        assert_eq!(rgb(Color::Indexed(255)), (238, 238, 238));
    }
}
