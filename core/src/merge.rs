//! A three-way merge of line-based texts, for the editor: when someone saved
//! a version while this edit was under way, their changes and these are
//! both kept, and where they touch the same lines both are shown between
//! conflict markers for a person to resolve.

/// The line that opens a conflict; "yours" is the edit being saved.
pub const OURS_MARKER: &str = "<<<<<<< yours\n";
/// The line between the two sides of a conflict.
pub const SPLIT_MARKER: &str = "=======\n";
/// The line that closes a conflict; "theirs" is the version saved meanwhile.
pub const THEIRS_MARKER: &str = ">>>>>>> theirs\n";

/// A three-way merge of line-based texts: the changes from `base` to `mine`
/// and from `base` to `theirs`, both applied; where both changed the same
/// or touching lines differently, conflict markers around the two versions.
/// Answers the text and whether it merged cleanly.
pub fn merge3(base: &str, mine: &str, theirs: &str) -> (String, bool) {
    let b: Vec<&str> = base.split_inclusive('\n').collect();
    let m: Vec<&str> = mine.split_inclusive('\n').collect();
    let t: Vec<&str> = theirs.split_inclusive('\n').collect();
    // (base start, base end, mine?, replacement lines)
    let mut hunks: Vec<(usize, usize, bool, Vec<&str>)> = Vec::new();
    for (other, is_mine) in [(&m, true), (&t, false)] {
        // Each op starts where the one before ended: similar's ops have the
        // right lengths but at times the wrong indices (mitsuhiko/similar#78),
        // which put a change in the wrong place.
        let (mut old_at, mut new_at) = (0, 0);
        for op in similar::capture_diff_slices(similar::Algorithm::Myers, &b, other) {
            let (tag, old, new) = op.as_tag_tuple();
            let (old, new) = (old_at..old_at + old.len(), new_at..new_at + new.len());
            (old_at, new_at) = (old.end, new.end);
            if tag != similar::DiffTag::Equal {
                hunks.push((old.start, old.end, is_mine, other[new].to_vec()));
            }
        }
    }
    hunks.sort_by_key(|h| (h.0, h.1));
    let mut out = String::new();
    let mut clean = true;
    let mut at = 0;
    let mut i = 0;
    while i < hunks.len() {
        // A region: every hunk that overlaps or touches the ones before it.
        let (start, mut end) = (hunks[i].0, hunks[i].1);
        let mut j = i + 1;
        while j < hunks.len() && hunks[j].0 <= end {
            end = end.max(hunks[j].1);
            j += 1;
        }
        let region = &hunks[i..j];
        // One side's text for the region: its hunks applied to base.
        let side = |mine: bool| -> Option<String> {
            let mut text = String::new();
            let mut p = start;
            let mut any = false;
            for h in region.iter().filter(|h| h.2 == mine) {
                any = true;
                text.extend(b[p..h.0.max(p)].iter().copied());
                text.extend(h.3.iter().copied());
                p = p.max(h.1);
            }
            text.extend(b[p..end].iter().copied());
            any.then_some(text)
        };
        out.extend(b[at..start].iter().copied());
        match (side(true), side(false)) {
            (Some(x), None) | (None, Some(x)) => out.push_str(&x),
            (Some(x), Some(y)) if x == y => out.push_str(&x),
            (Some(x), Some(y)) => {
                clean = false;
                let nl = |s: &str| {
                    if s.is_empty() || s.ends_with('\n') {
                        ""
                    } else {
                        "\n"
                    }
                };
                out.push_str(OURS_MARKER);
                out.push_str(&x);
                out.push_str(nl(&x));
                out.push_str(SPLIT_MARKER);
                out.push_str(&y);
                out.push_str(nl(&y));
                out.push_str(THEIRS_MARKER);
            }
            (None, None) => {}
        }
        at = end;
        i = j;
    }
    out.extend(b[at.min(b.len())..].iter().copied());
    (out, clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_changes_to_different_lines_and_marks_the_same_lines() {
        let base = "a\nb\nc\nd\n";
        let (m, clean) = merge3(base, "a\nB\nc\nd\n", "a\nb\nc\nD\n");
        assert_eq!((m.as_str(), clean), ("a\nB\nc\nD\n", true));
        let (m, clean) = merge3(base, "a\nmine\nc\nd\n", "a\ntheirs\nc\nd\n");
        assert!(!clean);
        assert_eq!(
            m,
            "a\n<<<<<<< yours\nmine\n=======\ntheirs\n>>>>>>> theirs\nc\nd\n"
        );
        let (m, clean) = merge3(base, "x\na\nb\nc\nd\n", "a\nb\nc\nd\ny\n");
        assert_eq!((m.as_str(), clean), ("x\na\nb\nc\nd\ny\n", true));
        let (m, clean) = merge3(base, "a\nb\nc\nd\n", "a\nb\nc\nd\n");
        assert_eq!((m.as_str(), clean), (base, true));
        let (m, clean) = merge3(base, "a\nb2\nc\nd\n", "a\nb2\nc\nd\n");
        assert_eq!((m.as_str(), clean), ("a\nb2\nc\nd\n", true));
        // Found by review: one change overlapping two on the other side
        // panicked.
        let (m, clean) = merge3("a\nb\nc\nd\ne\n", "a\nX\ne\n", "a\nB\nc\nD\ne\n");
        assert!(!clean);
        assert_eq!(
            m,
            "a\n<<<<<<< yours\nX\n=======\nB\nc\nD\n>>>>>>> theirs\ne\n"
        );
        // Both insert at the same place.
        let (m, clean) = merge3("a\n", "a\nx\n", "a\ny\n");
        assert_eq!(m, "a\n<<<<<<< yours\nx\n=======\ny\n>>>>>>> theirs\n");
        assert!(!clean);
    }

    #[test]
    fn edge_cases() {
        let (m, clean) = merge3("a\nb", "a\nmine", "a\ntheirs");
        assert!(!clean);
        assert_eq!(
            m,
            "a\n<<<<<<< yours\nmine\n=======\ntheirs\n>>>>>>> theirs\n"
        );
        // The ops similar answered here placed mine's lines one line early.
        let base = "  - run: x\nc\n\nb\na\n";
        let mine = "a\na\na\na\né\n";
        assert_eq!(merge3(base, mine, base), (mine.to_string(), true));
        // Empty texts on any side.
        assert_eq!(merge3("", "", ""), (String::new(), true));
        assert_eq!(merge3("", "x\n", ""), ("x\n".to_string(), true));
        assert_eq!(merge3("a\n", "", "a\n"), (String::new(), true));
    }
}
