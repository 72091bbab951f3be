//! Any text as a cron line or a time zone: parsing never panics, and a
//! computed fire time is one the schedule matches.
#![no_main]

use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;
use xene_core::cron::{Schedule, check_timezone};

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
    if let Some(next) = schedule.next_after(start) {
        assert!(next > start);
        assert!(
            schedule.matches(next),
            "{text:?} fires at {next} but does not match it"
        );
    }
});
