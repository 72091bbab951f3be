//! "Did you mean" for misspelt names, fields and time zones.

/// Longer words (and candidates) get no suggestion: every name a spec can
/// use is shorter, and the distance costs time in the product of the lengths.
pub const MAX_WORD_CHARS: usize = 64;

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word: Vec<char> = word.to_lowercase().chars().collect();
    if word.len() > MAX_WORD_CHARS {
        return None;
    }
    let limit = ((word.len() + 2) / 4).max(1);
    let mut best: Option<(usize, &str)> = None;
    let mut candidate = Vec::with_capacity(MAX_WORD_CHARS);
    for c in candidates {
        // Counting bytes first skips most of a long list cheaply: a distance
        // is at least the difference in length.
        if c.len() > 4 * MAX_WORD_CHARS || c.chars().count().abs_diff(word.len()) > limit {
            continue;
        }
        candidate.clear();
        candidate.extend(c.chars().flat_map(char::to_lowercase));
        if candidate.len() > MAX_WORD_CHARS {
            continue;
        }
        let d = distance(&word, &candidate);
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbours as one edit (optimal
/// string alignment), since `tset` for `test` is the commonest typo. Keeps
/// three rows, not the whole matrix.
fn distance(a: &[char], b: &[char]) -> usize {
    let (a, b) = if a.len() < b.len() { (b, a) } else { (a, b) };
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        distance(&a, &b)
    }

    #[test]
    fn suggests_close_names() {
        assert_eq!(closest("tset", ["test", "build"]), Some("test"));
        assert_eq!(
            closest("dependson", ["depends_on", "env"]),
            Some("depends_on")
        );
        assert_eq!(closest("xyz", ["depends_on", "env"]), None);
        assert_eq!(closest("imgae", ["image"]), Some("image"));
        assert_eq!(
            closest("Europe/Pariss", ["Europe/Paris"]),
            Some("Europe/Paris")
        );
    }

    #[test]
    fn distance_counts_edits_and_swaps() {
        assert_eq!(dist("", ""), 0);
        assert_eq!(dist("abc", ""), 3);
        assert_eq!(dist("", "abc"), 3);
        assert_eq!(dist("kitten", "sitting"), 3);
        assert_eq!(dist("sitting", "kitten"), 3);
        assert_eq!(dist("tset", "test"), 1);
        assert_eq!(dist("ab", "ba"), 1);
        assert_eq!(dist("ca", "abc"), 3);
    }

    /// A megabyte-long unknown name used to allocate a matrix of its length
    /// squared (terabytes) against a candidate of similar length.
    #[test]
    fn long_unknown_names_do_not_exhaust_memory() {
        let long = "a".repeat(1 << 20);
        assert_eq!(closest(&long, [long.as_str(), "b"]), None);
        let almost = "a".repeat(MAX_WORD_CHARS - 1) + "b";
        let target = "a".repeat(MAX_WORD_CHARS);
        assert_eq!(closest(&almost, [target.as_str()]), Some(target.as_str()));
    }
}
