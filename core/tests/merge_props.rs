//! Random texts and random edits of them through the three-way merge: a side
//! that changed nothing gives the other side back, edits of lines apart
//! merge to both edits, edits of the same line conflict with both versions
//! shown, and the answer does not depend on which side is "mine".

use xene_core::merge::{OURS_MARKER, SPLIT_MARKER, THEIRS_MARKER, merge3};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Lines from a small alphabet, so that texts share and repeat lines;
/// sometimes without the last newline, sometimes with CRLF.
fn random_text(rng: &mut Rng) -> String {
    const LINES: &[&str] = &["a", "b", "c", "", "  - run: x", "é😀", "a"];
    let n = rng.below(9);
    let eol = if rng.below(5) == 0 { "\r\n" } else { "\n" };
    let mut text: String = (0..n)
        .map(|_| format!("{}{eol}", LINES[rng.below(LINES.len())]))
        .collect();
    if rng.below(4) == 0 {
        text.truncate(text.trim_end_matches(['\r', '\n']).len());
    }
    text
}

/// `text` with a few lines replaced, removed or added.
fn random_edit(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
    for _ in 0..=rng.below(3) {
        let at = rng.below(lines.len() + 1);
        match rng.below(3) {
            0 if at < lines.len() => lines[at] = format!("changed {}\n", rng.below(3)),
            1 if at < lines.len() => {
                lines.remove(at);
            }
            _ => lines.insert(at, format!("added {}\n", rng.below(3))),
        }
    }
    lines.concat()
}

#[test]
fn a_side_that_changed_nothing_gives_the_other_back() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2_000 {
        let base = random_text(&mut rng);
        let edited = random_edit(&mut rng, &base);
        let other = random_text(&mut rng);
        for (mine, theirs, want) in [
            (&edited, &base, &edited),
            (&base, &edited, &edited),
            (&edited, &edited, &edited),
            (&other, &base, &other),
            (&base, &other, &other),
        ] {
            assert_eq!(
                merge3(&base, mine, theirs),
                (want.clone(), true),
                "base {base:?}, mine {mine:?}, theirs {theirs:?}"
            );
        }
    }
}

#[test]
fn the_answer_does_not_depend_on_which_side_is_mine() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut conflicts = 0;
    for _ in 0..2_000 {
        let base = random_text(&mut rng);
        let mine = random_edit(&mut rng, &base);
        let theirs = random_edit(&mut rng, &base);
        let (a, a_clean) = merge3(&base, &mine, &theirs);
        let (b, b_clean) = merge3(&base, &theirs, &mine);
        assert_eq!(a_clean, b_clean, "base {base:?}, {mine:?}, {theirs:?}");
        if a_clean {
            assert_eq!(a, b, "base {base:?}, {mine:?}, {theirs:?}");
            assert!(!a.contains(OURS_MARKER), "{a:?}");
        } else {
            conflicts += 1;
            for marker in [OURS_MARKER, SPLIT_MARKER, THEIRS_MARKER] {
                assert!(a.contains(marker) && b.contains(marker), "{a:?} {b:?}");
            }
        }
    }
    // The generator reaches both outcomes.
    assert!(
        conflicts > 100 && conflicts < 1_900,
        "{conflicts} conflicts"
    );
}

/// A base of distinct lines in pairs: in each pair, one side may change the
/// first line (replace, remove, or add a line before it); the second line
/// stays, so no two changes touch.
#[test]
fn changes_lines_apart_merge_to_both_changes() {
    // Each shape: the lines' ending, whether the second line of every pair
    // is the same text (so the diff must line up repeats), and whether the
    // last line ends.
    for (shape, (eol, repeated, last_ends)) in [
        ("\n", false, true),
        ("\r\n", false, true),
        ("\n", true, true),
        ("\r\n", true, false),
        ("\n", false, false),
    ]
    .into_iter()
    .enumerate()
    {
        lines_apart(
            0x1234_5678_9abc_def1 + shape as u64,
            eol,
            repeated,
            last_ends,
        );
    }
}

fn lines_apart(seed: u64, eol: &str, repeated: bool, last_ends: bool) {
    let mut rng = Rng(seed);
    for _ in 0..1_000 {
        let pairs = rng.below(8);
        let base: Vec<String> = (0..pairs * 2)
            .map(|i| match (repeated, i % 2) {
                (true, 1) => format!("a{eol}"),
                _ => format!("line {i}{eol}"),
            })
            .collect();
        let (mut mine, mut theirs, mut want) = (Vec::new(), Vec::new(), Vec::new());
        for (k, pair) in base.chunks(2).enumerate() {
            let (first, second) = (&pair[0], &pair[1]);
            let changed: Vec<String> = match rng.below(3) {
                0 => vec![format!("new {k}{eol}")],
                1 => Vec::new(),
                _ => vec![format!("new {k}{eol}"), first.clone()],
            };
            let (changer, keeper) = match rng.below(3) {
                0 => (&mut mine, &mut theirs),
                1 => (&mut theirs, &mut mine),
                _ => {
                    for side in [&mut mine, &mut theirs, &mut want] {
                        side.extend([first.clone(), second.clone()]);
                    }
                    continue;
                }
            };
            changer.extend(changed.iter().cloned());
            keeper.push(first.clone());
            want.extend(changed);
            for side in [changer, keeper, &mut want] {
                side.push(second.clone());
            }
        }
        let (mut base, mut mine, mut theirs, mut want) =
            (base.concat(), mine.concat(), theirs.concat(), want.concat());
        if !last_ends {
            // Every pair ends on its kept second line, so all four texts
            // end on the same line: drop its ending everywhere.
            for text in [&mut base, &mut mine, &mut theirs, &mut want] {
                if let Some(cut) = text.strip_suffix(eol).map(str::len) {
                    text.truncate(cut);
                }
            }
        }
        assert_eq!(
            merge3(&base, &mine, &theirs),
            (want, true),
            "base {base:?}, mine {mine:?}, theirs {theirs:?}"
        );
    }
}

#[test]
fn different_changes_to_one_line_conflict_and_keep_both() {
    let mut rng = Rng(0x0bad_cafe_f00d_d00d);
    for _ in 0..1_000 {
        let n = 1 + rng.below(6);
        let base: Vec<String> = (0..n).map(|i| format!("line {i}\n")).collect();
        let at = rng.below(n);
        let mut mine = base.clone();
        let mut theirs = base.clone();
        mine[at] = "mine\n".into();
        theirs[at] = "theirs\n".into();
        let (merged, clean) = merge3(&base.concat(), &mine.concat(), &theirs.concat());
        assert!(!clean, "{merged:?}");
        let conflict = format!("{OURS_MARKER}mine\n{SPLIT_MARKER}theirs\n{THEIRS_MARKER}");
        let mut want = base.clone();
        want[at] = conflict;
        assert_eq!(merged, want.concat());
    }
}
