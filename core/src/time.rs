//! Moments as text, the same in the UI and the CLI.
//! Plain arithmetic rather than a calendar library: the browser bundle
//! carries this too.

/// Days since 1970-01-01 as a date (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Milliseconds since the epoch as date and time of day in UTC:
/// `(year, month, day, hour, minute, second, millisecond)`.
fn parts(ms: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(secs.div_euclid(86_400));
    (
        y,
        m,
        d,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms.rem_euclid(1000),
    )
}

/// `2026-11-30 19:05:01 UTC`.
pub fn utc_text(ms: i64) -> String {
    let (y, m, d, h, min, s, _) = parts(ms);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02} UTC")
}

/// `2026-11-30T19:05:01.250Z` (RFC 3339, to the millisecond).
pub fn rfc3339_millis(ms: i64) -> String {
    let (y, m, d, h, min, s, milli) = parts(ms);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_around_the_epoch_leap_days_and_far_years() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        // 2024-02-29 12:34:56.789 UTC
        assert_eq!(
            rfc3339_millis(1_709_210_096_789),
            "2024-02-29T12:34:56.789Z"
        );
        assert_eq!(utc_text(1_709_210_096_789), "2024-02-29 12:34:56 UTC");
        // 2100 is not a leap year: Feb 28 is followed by Mar 1.
        assert_eq!(utc_text(4_107_456_000_000), "2100-02-28 00:00:00 UTC");
        assert_eq!(utc_text(4_107_542_400_000), "2100-03-01 00:00:00 UTC");
    }
}
