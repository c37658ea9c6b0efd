//! The date parser never panics and never yields an impossible date.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::trace::date;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Some(d) = date::parse(&s) {
        let _ = d.to_rfc3339_utc();
        let _ = d.to_rfc3339_local();
        assert!(d.nanos < 1_000_000_000);
    }
    let _ = date::parse_prefix(&s);
});
