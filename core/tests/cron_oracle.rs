//! Cron fire times against an independent implementation: Python's
//! `cronsim` (Debian cron's daylight-saving rules), over random lines, time
//! zones of both hemispheres and start times crowded around DST changes.
//! Installs `cronsim` with pip when it is missing.

use std::io::Write;
use std::process::{Command, Stdio};

use chrono::{DateTime, TimeZone, Utc};
use xene_core::cron::{Schedule, parse_timezone};

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Santiago",
    "Asia/Kolkata",
];
// Not Australia/Lord_Howe: its changes move the clock by 30 minutes, and
// cronsim, which advances hours by adding 3600 s, then misses whole-hour
// fires for the rest of that day (`0 */12 * * *` skips 12:00) where a cron
// checking every minute, and Xene, fire.

/// A small deterministic generator: the cases are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn field(rng: &mut Rng, max: u64, hot: &[u64]) -> String {
    let v = |rng: &mut Rng| {
        if !hot.is_empty() && rng.below(2) == 0 {
            hot[rng.below(hot.len() as u64) as usize]
        } else {
            rng.below(max + 1)
        }
    };
    match rng.below(6) {
        0 => "*".into(),
        1 => format!("*/{}", 1 + rng.below(max.min(20))),
        2 | 3 => v(rng).to_string(),
        4 => {
            let (a, b) = (v(rng), v(rng));
            if a == b {
                a.to_string()
            } else {
                format!("{},{}", a.min(b), a.max(b))
            }
        }
        _ => {
            let (a, b) = (v(rng), v(rng));
            format!("{}-{}", a.min(b), a.max(b))
        }
    }
}

fn line(rng: &mut Rng) -> String {
    let minute = field(rng, 59, &[0, 15, 30, 45]);
    // Hours around the changes (1-3 in most zones; 0 at Santiago).
    let hour = field(rng, 23, &[0, 1, 2, 3]);
    let dom = match rng.below(4) {
        0 => (1 + rng.below(28)).to_string(),
        _ => "*".into(),
    };
    let month = match rng.below(4) {
        0 => rng
            .pick(&["3", "4", "9", "10", "11", "3-4", "9-11"])
            .to_string(),
        _ => "*".into(),
    };
    let dow = match rng.below(4) {
        0 => rng.below(7).to_string(),
        1 => "1-5".into(),
        _ => "*".into(),
    };
    format!("{minute} {hour} {dom} {month} {dow}")
}

fn start(rng: &mut Rng) -> DateTime<Utc> {
    let year = 2021 + rng.below(9) as i32;
    // Months of the changes in both hemispheres, most of the time.
    let month = *[3u32, 4, 9, 10, 11, 1, 6]
        .get(rng.below(9) as usize)
        .unwrap_or(&3);
    let day = 1 + rng.below(28) as u32;
    let base = Utc.with_ymd_and_hms(year, month, day, 0, 0, 0).unwrap();
    base + chrono::Duration::seconds(rng.below(86_400) as i64)
}

fn python_has_cronsim() -> bool {
    Command::new("python3")
        .args(["-c", "import cronsim"])
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_cronsim() {
    if !python_has_cronsim() {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "cronsim"])
            .status()
            .expect("python3 must be installed for the cron oracle");
        assert!(status.success(), "pip install cronsim failed");
    }
}

#[test]
fn fire_times_match_cronsim() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = Vec::new();
    for i in 0..1200 {
        let zone = ZONES[i % ZONES.len()];
        cases.push((line(&mut rng), zone, start(&mut rng)));
    }
    compare_with_cronsim(&cases);
}

/// A field in one of the step forms, or a plain one: `*/N`, `A-B/N`,
/// `A/N` (from A to the field's end), a value, `*`. Values start at most
/// at `top`, so a day field never asks for a day a month lacks.
fn step_field(rng: &mut Rng, min: u64, max: u64, top: u64) -> String {
    let span = max - min;
    let a = min + rng.below(top - min + 1);
    match rng.below(5) {
        0 | 1 => format!("*/{}", 1 + rng.below(span)),
        2 => {
            let b = a + rng.below(max - a + 1);
            format!("{a}-{b}/{}", 1 + rng.below(span))
        }
        3 => format!("{a}/{}", 1 + rng.below(span)),
        _ => a.to_string(),
    }
}

/// A restricted day field that does not start with `*`.
fn restricted(rng: &mut Rng, min: u64, max: u64, top: u64) -> String {
    loop {
        let f = step_field(rng, min, max, top);
        if !f.starts_with('*') {
            return f;
        }
    }
}

/// Steps in every field, and `*/N` in one day field with the other day
/// field restricted (or `*`): whether a day must match both fields or
/// either depends on which starts with `*`, steps included.
#[test]
fn step_forms_match_cronsim() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut cases = Vec::new();
    for i in 0..600 {
        let zone = ZONES[i % ZONES.len()];
        let minute = step_field(&mut rng, 0, 59, 59);
        let hour = step_field(&mut rng, 0, 23, 23);
        let month = match rng.below(3) {
            0 => step_field(&mut rng, 1, 12, 12),
            _ => "*".into(),
        };
        let (dom, dow) = match i % 4 {
            0 => (
                format!("*/{}", 1 + rng.below(30)),
                restricted(&mut rng, 0, 7, 7),
            ),
            1 => (
                restricted(&mut rng, 1, 31, 28),
                format!("*/{}", 1 + rng.below(7)),
            ),
            2 => (format!("*/{}", 1 + rng.below(30)), "*".into()),
            _ => (
                step_field(&mut rng, 1, 31, 28),
                step_field(&mut rng, 0, 7, 7),
            ),
        };
        let line = format!("{minute} {hour} {dom} {month} {dow}");
        cases.push((line, zone, start(&mut rng)));
    }
    compare_with_cronsim(&cases);
}

/// The next fires of every case, from Xene and from cronsim, must agree.
fn compare_with_cronsim(cases: &[(String, &str, DateTime<Utc>)]) {
    ensure_cronsim();
    const COUNT: usize = 6;
    let input: Vec<(String, &str, i64, usize)> = cases
        .iter()
        .map(|(l, z, s)| (l.clone(), *z, s.timestamp(), COUNT))
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cron_oracle.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the oracle failed");
    let expected: Vec<Vec<i64>> = serde_json::from_slice(&output.stdout).unwrap();
    // An oracle that answers nothing must not pass for one that agrees.
    assert_eq!(expected.len(), cases.len(), "the oracle skipped cases");
    let full = expected.iter().filter(|w| w.len() == COUNT).count();
    assert!(
        full * 10 >= cases.len() * 9,
        "the oracle gave all {COUNT} fires for only {full} of {} cases",
        cases.len()
    );

    let mut wrong = Vec::new();
    for ((line, zone, start), want) in cases.iter().zip(&expected) {
        let schedule = Schedule::parse(line).unwrap();
        let tz = parse_timezone(zone).unwrap();
        let mut got = Vec::new();
        let mut at = *start;
        while got.len() < want.len() {
            let Some(next) = schedule.next_fire(tz, at) else {
                break;
            };
            got.push(next.timestamp());
            at = next;
        }
        if &got != want {
            let show = |v: &[i64]| -> Vec<String> {
                v.iter()
                    .map(|t| {
                        DateTime::from_timestamp(*t, 0)
                            .unwrap()
                            .with_timezone(&tz)
                            .to_rfc3339()
                    })
                    .collect()
            };
            wrong.push(format!(
                "{line:?} in {zone} after {}:\n  xene    {:?}\n  cronsim {:?}",
                start.with_timezone(&tz).to_rfc3339(),
                show(&got),
                show(want)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
}
