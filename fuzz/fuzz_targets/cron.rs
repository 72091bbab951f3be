//! Any text as a cron line or a time zone: parsing never panics, a
//! computed fire time is one the schedule matches, and fires in a zone with
//! daylight saving come strictly later each time.
#![no_main]

use chrono::{NaiveDate, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use xene_core::cron::{Schedule, check_timezone, parse_timezone};

fuzz_target!(|text: &str| {
    // Names past 64 characters get no suggestion; below, the suggestion
    // compares with every zone name, slow under instrumentation, so only
    // one input in eight tries it.
    if text.len() <= 64 && text.len().is_multiple_of(8) {
        let _ = check_timezone(text);
    }
    let Ok(schedule) = Schedule::parse(text) else {
        return;
    };
    let start = NaiveDate::from_ymd_opt(2024, 2, 28)
        .and_then(|d| d.and_hms_opt(23, 59, 30))
        .expect("a valid date");
    // Across Berlin's spring-forward night (2024-03-31), a few fires on.
    let tz = parse_timezone("Europe/Berlin").expect("a zone");
    let mut at = Utc.with_ymd_and_hms(2024, 3, 30, 22, 0, 0).unwrap();
    for _ in 0..4 {
        let Some(next) = schedule.next_fire(tz, at) else { break };
        assert!(next > at, "{text:?} fires at {next}, not after {at}");
        at = next;
    }
    if let Some(next) = schedule.next_after(start) {
        assert!(next > start);
        assert!(
            schedule.matches(next),
            "{text:?} fires at {next} but does not match it"
        );
    }
});
