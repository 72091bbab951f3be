//! 5-field cron lines (minute hour day-of-month month day-of-week) and time
//! zone names.
//!
//! Fields take `*`, numbers, lists (`1,15`), ranges (`1-5`), steps (`*/15`,
//! `0-30/10`, `5/10`), month names (`jan`) and day names (`mon`, with 0 and 7
//! both Sunday). `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly` and
//! `@yearly` (`@annually`) stand for their usual lines. As in Debian's cron,
//! when both day fields are restricted a day matching either one fires; when
//! either starts with `*` (`*/2` included) a day must match both.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// A cron line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Not five fields; the number found.
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), found {0}")]
    FieldCount(usize),
    /// An `@name` that is not one of the known shorthands.
    #[error("unknown shorthand {0:?}: expected @hourly, @daily, @weekly, @monthly or @yearly")]
    UnknownShorthand(String),
    /// A field with a value out of range or malformed.
    #[error("bad {field} {value:?}: {reason}")]
    Field {
        /// Which field (`minute`, `hour`, ...).
        field: &'static str,
        /// The field's text.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
}

/// A time zone that is not an IANA name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {name:?}{}", suggestion.as_ref().map_or_else(String::new, |s| format!("; did you mean {s:?}?")))]
pub struct TimezoneError {
    /// The name given.
    pub name: String,
    /// A known name close to it, if any.
    pub suggestion: Option<String>,
}

/// A parsed cron line: the set of allowed values of each field, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Whether each day field was written starting with `*`, which decides
    /// how the two combine.
    any_day_of_month: bool,
    any_day_of_week: bool,
    /// Neither the minute nor the hour field starts with `*`: a job at a
    /// fixed time of day, which Debian's cron keeps on the wall clock
    /// across daylight-saving changes (see [`Schedule::next_fire`]).
    fixed_time: bool,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
// 7 is accepted as Sunday and folded onto 0.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Schedule {
    /// Parses a 5-field cron line or an `@hourly`-style shorthand.
    pub fn parse(line: &str) -> Result<Schedule, CronError> {
        let line = line.trim();
        let expanded = match line {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            _ if line.starts_with('@') => {
                return Err(CronError::UnknownShorthand(line.to_string()));
            }
            _ => line,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(CronError::FieldCount(fields.len()));
        };
        let mut days_of_week = field(&DAY_OF_WEEK, dow)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(Schedule {
            minutes: field(&MINUTE, minute)?,
            hours: field(&HOUR, hour)?,
            days_of_month: field(&DAY_OF_MONTH, dom)?,
            months: field(&MONTH, month)?,
            days_of_week,
            any_day_of_month: dom.starts_with('*'),
            any_day_of_week: dow.starts_with('*'),
            fixed_time: !minute.starts_with('*') && !hour.starts_with('*'),
        })
    }

    /// Whether the schedule fires at `t` (seconds ignored).
    pub fn matches(&self, t: NaiveDateTime) -> bool {
        bit(self.months, t.month())
            && self.matches_day(t.date())
            && bit(self.hours, t.hour())
            && bit(self.minutes, t.minute())
    }

    fn matches_day(&self, d: NaiveDate) -> bool {
        let dom = bit(self.days_of_month, d.day());
        let dow = bit(self.days_of_week, d.weekday().num_days_from_sunday());
        // Debian's cron: when either field starts with `*` (`*/2` too) a
        // day must match both, else either. Testing only the other field
        // when one starts with `*` lost the step: `*/2` fired every day.
        if self.any_day_of_month || self.any_day_of_week {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first minute strictly after `after` when the schedule fires, in
    /// the same (naive, wall-clock) time; `None` for lines that never fire,
    /// like `0 0 30 2 *`. Time zones and DST are the caller's business.
    pub fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        // A leap day on a given weekday can be 40 years away (2088 -> 2128,
        // across 2100, which is no leap year); past that it never fires.
        let give_up = start.year() + 41;
        let mut t = start;
        while t.year() <= give_up {
            if !bit(self.months, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
            } else if !self.matches_day(t.date()) {
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
            } else if !bit(self.hours, t.hour()) {
                t = t.with_minute(0)? + Duration::hours(1);
            } else if !bit(self.minutes, t.minute()) {
                t += Duration::minutes(1);
            } else {
                return Some(t);
            }
        }
        None
    }
}

/// How far ahead [`Schedule::next_fire`] looks for a time-zone change
/// between two instants, in steps of this size (changes are months apart).
const TRANSITION_STEP: Duration = Duration::hours(6);

impl Schedule {
    /// The first fire strictly after `after` in time zone `tz`, with the
    /// daylight-saving behaviour of Debian's cron:
    ///
    /// - a job at a fixed time of day (neither minute nor hour starts with
    ///   `*`) follows the wall clock: a time in a spring-forward gap fires
    ///   once, at the first valid minute after the gap; a time repeated by a
    ///   fall-back fires once, at its first occurrence;
    /// - any other job fires at every instant whose wall-clock time matches,
    ///   so it skips the minutes a spring-forward removes and fires again in
    ///   an hour a fall-back repeats.
    ///
    /// `None` when the line never fires.
    pub fn next_fire(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.fixed_time {
            self.next_fixed(tz, after)
        } else {
            self.next_instant(tz, after)
        }
    }

    fn next_fixed(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cursor = after.with_timezone(&tz).naive_local();
        // A wall time in the gap moves on a minute at a time; a gap is at
        // most a day long.
        loop {
            let mut wall = self.next_after(cursor)?;
            let mut tries = 0;
            let instant = loop {
                match tz.from_local_datetime(&wall) {
                    chrono::LocalResult::Single(t) => break t,
                    chrono::LocalResult::Ambiguous(first, _) => break first,
                    chrono::LocalResult::None => {
                        tries += 1;
                        if tries > 24 * 60 {
                            return None;
                        }
                        wall += Duration::minutes(1);
                    }
                }
            };
            let instant = instant.with_timezone(&Utc);
            // Only from inside a repeated hour can the first occurrence of
            // the next wall-clock match lie before `after`.
            if instant > after {
                return Some(instant);
            }
            cursor = wall;
        }
    }

    fn next_instant(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        // Between two offset changes the wall clock runs with the instants,
        // so the first match of a stretch is the next wall-clock match,
        // unless that lies past the stretch's end: then the next stretch,
        // read with its own offset, starts just after the change.
        let mut from = after;
        let mut off = offset(after);
        for _ in 0..1024 {
            let wall = self.next_after(from.naive_utc() + off)?;
            let candidate = (wall - off).and_utc();
            let mut probe = from;
            let mut change = None;
            while probe < candidate {
                let next = (probe + TRANSITION_STEP).min(candidate);
                if offset(next) != off {
                    let (mut lo, mut hi) = (probe, next);
                    while hi - lo > Duration::seconds(1) {
                        let mid = lo + (hi - lo) / 2;
                        if offset(mid) == off {
                            lo = mid;
                        } else {
                            hi = mid;
                        }
                    }
                    change = Some(hi);
                    break;
                }
                probe = next;
            }
            let Some(changed_at) = change else {
                return Some(candidate);
            };
            off = offset(changed_at);
            from = changed_at - Duration::seconds(1);
        }
        None
    }
}

fn bit(set: u64, n: u32) -> bool {
    set & (1 << n) != 0
}

fn field(spec: &FieldSpec, text: &str) -> Result<u64, CronError> {
    let fail = |value: &str, reason: String| CronError::Field {
        field: spec.name,
        value: value.to_string(),
        reason,
    };
    let mut set = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| fail(item, format!("step {s:?} is not a number")))?;
                if step == 0 {
                    return Err(fail(item, "step must be at least 1".into()));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(spec, a).map_err(|r| fail(item, r))?,
                value(spec, b).map_err(|r| fail(item, r))?,
            )
        } else {
            let v = value(spec, range).map_err(|r| fail(item, r))?;
            // `5/10` means from 5 to the end, every 10.
            (v, if step.is_some() { spec.max } else { v })
        };
        if lo > hi {
            return Err(fail(item, format!("range {lo}-{hi} runs backwards")));
        }
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

fn value(spec: &FieldSpec, text: &str) -> Result<u32, String> {
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + spec.min);
    }
    if text.is_empty() {
        return Err("a value is missing".into());
    }
    let v: u32 = text.parse().map_err(|_| {
        if spec.names.is_empty() {
            format!("{text:?} is not a number")
        } else {
            format!(
                "{text:?} is not a number or a name like {:?}",
                spec.names[0]
            )
        }
    })?;
    if v < spec.min || v > spec.max {
        return Err(format!("{v} is out of range {}-{}", spec.min, spec.max));
    }
    Ok(v)
}

/// An IANA time zone by its exact name (`Europe/Paris`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, TimezoneError> {
    name.parse().map_err(|_| {
        let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
        let suggestion = names
            .clone()
            .find(|n| n.eq_ignore_ascii_case(name))
            .or_else(|| crate::suggest::closest(name, names))
            .map(str::to_string);
        TimezoneError {
            name: name.to_string(),
            suggestion,
        }
    })
}

/// Checks that `name` is an IANA time zone, suggesting a close one when not.
pub fn check_timezone(name: &str) -> Result<(), TimezoneError> {
    parse_timezone(name).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn fires(line: &str, zone: &str, after: &str, count: usize) -> Vec<String> {
        let schedule = Schedule::parse(line).unwrap();
        let tz = parse_timezone(zone).unwrap();
        let mut t = tz
            .from_local_datetime(&at(after))
            .earliest()
            .unwrap()
            .with_timezone(&Utc);
        (0..count)
            .map(|_| {
                t = schedule.next_fire(tz, t).unwrap();
                t.with_timezone(&tz)
                    .format("%Y-%m-%d %H:%M %:z")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn daylight_saving_changes_in_both_hemispheres() {
        // Berlin springs forward 02:00 -> 03:00 on 2026-03-29: a 02:30 job
        // fires once, at 03:00; a job every 30 minutes skips the gap.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-03-28 12:00", 3),
            [
                "2026-03-29 03:00 +02:00",
                "2026-03-30 02:30 +02:00",
                "2026-03-31 02:30 +02:00"
            ]
        );
        assert_eq!(
            fires("*/30 * * * *", "Europe/Berlin", "2026-03-29 01:10", 3),
            [
                "2026-03-29 01:30 +01:00",
                "2026-03-29 03:00 +02:00",
                "2026-03-29 03:30 +02:00"
            ]
        );
        // Berlin falls back 03:00 -> 02:00 on 2026-10-25: a 02:30 job fires
        // once (the first 02:30), a job every 30 minutes fires in both hours.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-10-24 12:00", 2),
            ["2026-10-25 02:30 +02:00", "2026-10-26 02:30 +01:00"]
        );
        assert_eq!(
            fires("*/30 2 * * *", "Europe/Berlin", "2026-10-25 01:50", 5),
            [
                "2026-10-25 02:00 +02:00",
                "2026-10-25 02:30 +02:00",
                "2026-10-25 02:00 +01:00",
                "2026-10-25 02:30 +01:00",
                "2026-10-26 02:00 +01:00"
            ]
        );
        // Sydney springs forward 02:00 -> 03:00 on 2026-10-04 and falls back
        // 03:00 -> 02:00 on 2026-04-05.
        assert_eq!(
            fires("15 2 * * *", "Australia/Sydney", "2026-10-03 12:00", 2),
            ["2026-10-04 03:00 +11:00", "2026-10-05 02:15 +11:00"]
        );
        assert_eq!(
            fires("15 2 * * *", "Australia/Sydney", "2026-04-04 12:00", 2),
            ["2026-04-05 02:15 +11:00", "2026-04-06 02:15 +10:00"]
        );
        // Two fixed times in one gap fire once together.
        assert_eq!(
            fires("0,30 2 * * *", "Australia/Sydney", "2026-10-03 12:00", 2),
            ["2026-10-04 03:00 +11:00", "2026-10-05 02:00 +11:00"]
        );
        assert_eq!(
            fires("0 0 * * *", "UTC", "2026-01-01 00:00", 1),
            ["2026-01-02 00:00 +00:00"]
        );
    }

    fn next(line: &str, after: &str) -> String {
        let s = Schedule::parse(line).unwrap();
        s.next_after(at(after)).map_or("never".into(), |t| {
            t.format("%Y-%m-%d %H:%M %a").to_string()
        })
    }

    #[test]
    fn computes_next_fire_times() {
        assert_eq!(
            next("0 3 * * *", "2025-01-01 03:00"),
            "2025-01-02 03:00 Thu"
        );
        assert_eq!(
            next("*/15 * * * *", "2025-01-01 10:07"),
            "2025-01-01 10:15 Wed"
        );
        assert_eq!(next("@hourly", "2025-12-31 23:30"), "2026-01-01 00:00 Thu");
        assert_eq!(
            next("0 9 * * mon-fri", "2025-01-03 10:00"),
            "2025-01-06 09:00 Mon"
        );
        assert_eq!(
            next("0 0 29 feb *", "2025-01-01 00:00"),
            "2028-02-29 00:00 Tue"
        );
        assert_eq!(next("0 0 30 2 *", "2025-01-01 00:00"), "never");
        assert_eq!(
            next("0 0 13 * 5", "2025-01-01 00:00"),
            "2025-01-03 00:00 Fri"
        );
        assert_eq!(
            next("0 12 * * 7", "2025-01-01 00:00"),
            "2025-01-05 12:00 Sun"
        );
        assert_eq!(
            next("5/20 1-2 * JAN,dec *", "2025-01-01 01:50"),
            "2025-01-01 02:05 Wed"
        );
    }

    /// `*/2` in a day field fired every day: a field starting with `*`
    /// was taken to allow every day, whatever its step.
    #[test]
    fn steps_in_day_fields_follow_debian_cron() {
        let fires = |line: &str, after: &str, count: usize| {
            let s = Schedule::parse(line).unwrap();
            let mut t = at(after);
            (0..count)
                .map(|_| {
                    t = s.next_after(t).unwrap();
                    t.format("%m-%d %a").to_string()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fires("0 12 */2 * *", "2026-01-01 00:00", 4),
            ["01-01 Thu", "01-03 Sat", "01-05 Mon", "01-07 Wed"]
        );
        // Odd days, then a 31st and the 1st in a row.
        assert_eq!(
            fires("0 12 */2 * *", "2026-01-28 00:00", 3),
            ["01-29 Thu", "01-31 Sat", "02-01 Sun"]
        );
        // One day field starting with `*`: a day must match both.
        assert_eq!(
            fires("0 12 */2 * mon", "2026-01-01 00:00", 3),
            ["01-05 Mon", "01-19 Mon", "02-09 Mon"]
        );
        assert_eq!(
            fires("0 12 1-10 * */2", "2026-01-01 00:00", 4),
            ["01-01 Thu", "01-03 Sat", "01-04 Sun", "01-06 Tue"]
        );
        // Both restricted: either.
        assert_eq!(
            fires("0 12 1-3/2 * 1-5/4", "2026-01-01 00:00", 4),
            ["01-01 Thu", "01-02 Fri", "01-03 Sat", "01-05 Mon"]
        );
        // 7 is Sunday in a step too; `A/N` runs to the field's end.
        assert_eq!(
            fires("0 0 * * 1-7/3", "2026-01-01 00:00", 3),
            ["01-04 Sun", "01-05 Mon", "01-08 Thu"]
        );
        assert_eq!(
            fires("0 0 20/5 * *", "2026-01-01 00:00", 3),
            ["01-20 Tue", "01-25 Sun", "01-30 Fri"]
        );
    }

    /// With one day field starting with `*`, a day must match both, and a
    /// date on a weekday can be decades away; finding it stays quick.
    #[test]
    fn rare_days_are_found_far_ahead() {
        assert_eq!(
            next("0 0 29 2 */7", "2088-03-01 00:00"),
            "2128-02-29 00:00 Sun"
        );
        assert_eq!(
            next("27 1 18 10 */7", "2026-10-19 00:00"),
            "2037-10-18 01:27 Sun"
        );
        let fire = fires("0 0 29 2 */7", "America/New_York", "2088-03-01 00:00", 1);
        assert_eq!(fire, ["2128-02-29 00:00 -05:00"]);
        let fire = fires("*/30 * 29 2 */7", "America/New_York", "2088-03-01 00:00", 1);
        assert_eq!(fire, ["2128-02-29 00:00 -05:00"]);
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let cases = [
            (
                "* * * *",
                "expected 5 fields (minute hour day-of-month month day-of-week), found 4",
            ),
            ("60 * * * *", "bad minute \"60\": 60 is out of range 0-59"),
            ("* 5-1 * * *", "bad hour \"5-1\": range 5-1 runs backwards"),
            (
                "* * 0 * *",
                "bad day-of-month \"0\": 0 is out of range 1-31",
            ),
            (
                "* * * foo *",
                "bad month \"foo\": \"foo\" is not a number or a name like \"jan\"",
            ),
            ("*/0 * * * *", "bad minute \"*/0\": step must be at least 1"),
            ("* * * * 1,", "bad day-of-week \"\": a value is missing"),
            (
                "@daly",
                "unknown shorthand \"@daly\": expected @hourly, @daily, @weekly, @monthly or @yearly",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                Schedule::parse(line).unwrap_err().to_string(),
                want,
                "{line}"
            );
        }
    }

    #[test]
    fn checks_time_zones() {
        assert!(check_timezone("Europe/Paris").is_ok());
        assert!(check_timezone("UTC").is_ok());
        assert_eq!(
            check_timezone("europe/paris").unwrap_err().to_string(),
            "unknown time zone \"europe/paris\"; did you mean \"Europe/Paris\"?"
        );
        assert_eq!(
            check_timezone("Europe/Pariss").unwrap_err().to_string(),
            "unknown time zone \"Europe/Pariss\"; did you mean \"Europe/Paris\"?"
        );
        assert_eq!(check_timezone("Mars/Base").unwrap_err().suggestion, None);
    }
}
