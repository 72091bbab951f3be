//! Durations as people write them: `250ms`, `90s`, `5m`, `1h30m`, `2d`.

use std::time::Duration;

/// A duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was given.
    #[error("empty duration")]
    Empty,
    /// Not a number followed by a unit (`ms`, `s`, `m`, `h`, `d`); the text.
    #[error("bad duration {0:?}: expected a number with a unit, like 90s, 5m, 1h30m or 250ms")]
    Malformed(String),
    /// More than fits; the text.
    #[error("duration {0:?} is too long")]
    TooLong(String),
}

/// Parses a duration like `90s`, `5m` or `1h30m`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(text.to_string());
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(malformed());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| malformed())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis_per_unit: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(malformed()),
        };
        rest = &rest[unit_len..];
        total = value
            .checked_mul(millis_per_unit)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| DurationError::TooLong(text.to_string()))?;
    }
    Ok(Duration::from_millis(total))
}

/// A duration for people, as the UI shows it: `850ms`, `12.3s`, `4m 05s`,
/// `2h 03m` (rounded down past a minute).
pub fn human(ms: i64) -> String {
    spoken(ms, " ")
}

/// [`human`] in one word (`4m05s`, `2h03m`), for the CLI's tables, which
/// scripts split on whitespace.
pub fn compact(ms: i64) -> String {
    spoken(ms, "")
}

fn spoken(ms: i64, gap: &str) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{gap}{:02}s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{}h{gap}{:02}m", ms / 3_600_000, ms / 60_000 % 60)
    }
}

/// The shortest text that `parse` reads back as the same duration (to the millisecond).
pub fn format(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_people_spaced_and_in_one_word() {
        for (ms, spaced, one_word) in [
            (-5, "0ms", "0ms"),
            (850, "850ms", "850ms"),
            (12_340, "12.3s", "12.3s"),
            (245_000, "4m 05s", "4m05s"),
            (7_800_000, "2h 10m", "2h10m"),
        ] {
            assert_eq!(human(ms), spaced);
            assert_eq!(compact(ms), one_word);
        }
    }

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("2d").unwrap(), Duration::from_secs(172_800));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "10", "s", "5x", "1.5h", "-3s", "1h 30m"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(matches!(
            parse("99999999999999999999d"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse("9999999999999999d"),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn format_round_trips() {
        for text in ["90ms", "1m30s", "1h", "2d3h", "0s"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
