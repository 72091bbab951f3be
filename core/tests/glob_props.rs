//! Random globs against random paths: `artifact::Glob` (one pass over the
//! components, bounded) answers as a plain recursive matcher does, and its
//! base is the literal directory before the first wildcard.

use xene_core::artifact::Glob;

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

fn random_pattern(rng: &mut Rng) -> Vec<String> {
    const TOKENS: &[&str] = &["a", "b", "é", "*", "?", "[ab]", "[!a]", "[a-c]"];
    (0..=rng.below(4))
        .map(|_| {
            if rng.below(5) == 0 {
                return "**".to_string();
            }
            (0..=rng.below(3))
                .map(|_| TOKENS[rng.below(TOKENS.len())])
                .collect()
        })
        .collect()
}

fn random_path(rng: &mut Rng) -> Vec<String> {
    const CHARS: &[char] = &['a', 'b', 'c', 'é'];
    (0..=rng.below(5))
        .map(|_| {
            (0..=rng.below(3))
                .map(|_| CHARS[rng.below(CHARS.len())])
                .collect()
        })
        .collect()
}

/// The obvious matcher: exponential, fine for tiny inputs.
fn reference(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|k| reference(rest, &path[k..])),
        Some((p, rest)) => {
            !path.is_empty() && {
                let p: Vec<char> = p.chars().collect();
                let s: Vec<char> = path[0].chars().collect();
                component(&p, &s) && reference(rest, &path[1..])
            }
        }
    }
}

fn component(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|k| component(&p[1..], &s[k..])),
        Some('?') => !s.is_empty() && component(&p[1..], &s[1..]),
        Some('[') => {
            let end = p.iter().position(|&c| c == ']').unwrap();
            let class = &p[1..end];
            let (negated, class) = match class.first() {
                Some('!') => (true, &class[1..]),
                _ => (false, class),
            };
            let hit = |c: char| match class {
                [lo, '-', hi] => *lo <= c && c <= *hi,
                _ => class.contains(&c),
            };
            !s.is_empty() && hit(s[0]) != negated && component(&p[end + 1..], &s[1..])
        }
        Some(&c) => s.first() == Some(&c) && component(&p[1..], &s[1..]),
    }
}

#[test]
fn globs_match_as_the_obvious_matcher_does() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut matched = 0;
    for _ in 0..20_000 {
        let pattern = random_pattern(&mut rng);
        let text = pattern.join("/");
        let parsed = Glob::parse(&text);
        // `**` is allowed only as a whole component.
        let partial = pattern.iter().any(|c| c != "**" && c.contains("**"));
        let Ok(glob) = parsed else {
            assert!(partial, "{text}: {parsed:?}");
            continue;
        };
        assert!(!partial, "{text} parsed");
        let literal: Vec<&str> = pattern
            .iter()
            .take_while(|c| !c.contains(['*', '?', '[']))
            .map(String::as_str)
            .collect();
        assert_eq!(glob.base(), literal.join("/"), "{text}");
        for _ in 0..10 {
            let path = random_path(&mut rng);
            let want = reference(&pattern, &path);
            assert_eq!(glob.matches(&path.join("/")), want, "{text} on {path:?}");
            matched += usize::from(want);
        }
    }
    // The inputs are small enough that matches are common, not a fluke.
    assert!(matched > 5_000, "{matched}");
}
