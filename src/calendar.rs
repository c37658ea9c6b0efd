//! Calendar maths: the one civil-date routine of the crate.
//!
//! Owns days since the epoch to and from (year, month, day) in the
//! proleptic Gregorian calendar (H. Hinnant's algorithms), leap years and
//! month lengths, and the three date formats postline writes: asctime for
//! mbox `From ` lines and mailq, RFC 5322 for Date fields and DSNs, and
//! RFC 3339 for mail-trace's JSON.
//!
//! Guarantee: total over every `i64` day count and `u64` second count that
//! a date can hold; no panic, no time zone database (everything is UTC or
//! an explicit offset).

use std::time::{SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Thu Nov 25 21:58:25 2026`, UTC.
pub fn asctime(when: SystemTime) -> String {
    let secs = when.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m as usize).saturating_sub(1) % 12],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

/// An RFC 5322 date for `secs` since the epoch, in UTC:
/// `Thu, 26 Nov 2026 00:40:48 +0000` (mail-send's Date field, DSN dates).
pub fn rfc5322_date(secs: u64) -> String {
    let secs = secs as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m as usize).saturating_sub(1) % 12],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Is `y` a leap year?
pub fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in month `m` (1-12) of year `y`; 0 for a month that does not exist.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 of `unix + shift` seconds with the given zone suffix
/// (`Z`, `+02:00`), fractional seconds only when `nanos` is not zero.
pub fn format_rfc3339(unix: i64, nanos: u32, shift: i64, suffix: &str) -> String {
    let t = unix.saturating_add(shift);
    let (y, mo, d) = civil_from_days(t.div_euclid(86_400));
    let secs = t.rem_euclid(86_400);
    let (h, mi, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(suffix);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn days_round_trip_across_eras_and_leap_days() {
        for z in (-800_000i64..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert!(is_leap(2000) && !is_leap(1900) && is_leap(2024));
    }

    #[test]
    fn the_three_formats() {
        let t = 1_795_643_905;
        assert_eq!(
            asctime(UNIX_EPOCH + Duration::from_secs(t)),
            "Wed Nov 25 21:58:25 2026"
        );
        assert_eq!(rfc5322_date(t), "Wed, 25 Nov 2026 21:58:25 +0000");
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(
            format_rfc3339(t as i64, 500_000_000, 3600, "+01:00"),
            "2026-11-25T22:58:25.5+01:00"
        );
    }
}
