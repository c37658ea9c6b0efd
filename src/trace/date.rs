//! Our own parser for the dates found in mail headers, and RFC 3339 output.
//!
//! This module owns turning a `Date:` value or the stamp after a Received
//! field's `;` into an instant: RFC 5322 section 3.3 with every obsolete form
//! of section 4.3 (alphabetic zones, military letters read as `-0000`,
//! two- and three-digit years, comments and folding anywhere, missing
//! seconds, missing or wrong day of week), plus what MTAs really write:
//! asctime (`Wed Nov 25 21:58:25 2026`, with or without a zone after it),
//! fractional seconds, ISO-like stamps (`2024-01-02T03:04:05.123Z`,
//! `2024-01-02 03:04:05 +0000`), zones glued to the time or to a comment
//! (`17:40:44-0500`, `+0000(UTC)`) and zones given only as a comment
//! (`(PDT)`).
//!
//! Guarantee: parsing never panics and runs in time linear in the input (no
//! recursion: comments nested any depth are skipped with a counter), and it
//! never yields an impossible date: month, day (leap years included), hour,
//! minute, second (`60` allowed for a leap second) and zone offset are all
//! checked, and anything out of range is `None`.

use crate::calendar::{days_from_civil, days_in_month, format_rfc3339};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use std::fmt;

/// One parsed date: an instant plus what the writer said about its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MailDate {
    /// Seconds since 1970-01-01T00:00:00Z (a leap second `:60` counts as the
    /// first second of the next minute).
    pub unix: i64,
    /// Fraction of the second, in nanoseconds (digits past the ninth dropped).
    pub nanos: u32,
    /// The writer's offset from UTC in minutes (east positive), when it
    /// named one we know. `None` for `-0000` (RFC 5322: "UTC, local zone
    /// unknown"), military letters other than `Z`, unknown alphabetic zones
    /// and dates without any zone.
    pub offset_minutes: Option<i32>,
    /// True when the instant was computed by assuming UTC because the date
    /// carried no usable zone (none at all, or an alphabetic one we do not
    /// know). A `-0000` or military zone is a stated UTC and is not assumed.
    pub tz_assumed: bool,
}

impl MailDate {
    /// RFC 3339 in UTC, the fraction kept without trailing zeros:
    /// `2023-08-27T10:00:06Z`, `2018-04-22T02:54:16.987Z`.
    pub fn to_rfc3339_utc(&self) -> String {
        format_rfc3339(self.unix, self.nanos, 0, "Z")
    }

    /// RFC 3339 in the writer's own offset; an unknown offset is written
    /// `-00:00` as RFC 3339 section 4.3 asks.
    pub fn to_rfc3339_local(&self) -> String {
        match self.offset_minutes {
            Some(off) => {
                let sign = if off < 0 { '-' } else { '+' };
                let a = off.unsigned_abs();
                let suffix = format!("{sign}{:02}:{:02}", a / 60, a % 60);
                format_rfc3339(self.unix, self.nanos, i64::from(off) * 60, &suffix)
            }
            None => format_rfc3339(self.unix, self.nanos, 0, "-00:00"),
        }
    }
}

impl fmt::Display for MailDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339_utc())
    }
}

impl Serialize for MailDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("MailDate", 6)?;
        st.serialize_field("utc", &self.to_rfc3339_utc())?;
        st.serialize_field("local", &self.to_rfc3339_local())?;
        st.serialize_field("unix", &self.unix)?;
        st.serialize_field("nanos", &self.nanos)?;
        st.serialize_field("offset_minutes", &self.offset_minutes)?;
        st.serialize_field("tz_assumed", &self.tz_assumed)?;
        st.end()
    }
}

/// Parse a whole date value: the date, then only whitespace and comments
/// (one trailing alphabetic zone word, as in `+0000 GMT`, is also allowed).
pub fn parse(s: &str) -> Option<MailDate> {
    let (d, used) = parse_prefix(s)?;
    let mut c = Cursor {
        b: s.as_bytes(),
        pos: used,
    };
    c.skip_cfws();
    if c.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
        c.alpha_word();
        c.skip_cfws();
    }
    c.at_end().then_some(d)
}

/// Parse a date at the start of `s` (leading whitespace and comments
/// skipped) and say how many bytes it used. What follows is left alone,
/// except a comment right after the date that only names a zone, such as
/// `(PDT)` or `(Coordinated Universal Time)`, which is used up.
///
/// The work done is bounded by the length of the date's own tokens, so a
/// caller may try this at many positions of a long text.
pub fn parse_prefix(s: &str) -> Option<(MailDate, usize)> {
    let mut c = Cursor {
        b: s.as_bytes(),
        pos: 0,
    };
    c.skip_cfws();
    let first = c.peek()?;
    let parts = if first.is_ascii_digit() {
        let save = c.pos;
        let (_, n) = c.number()?;
        let iso = n == 4 && c.peek() == Some(b'-');
        c.pos = save;
        if iso {
            iso_form(&mut c)?
        } else {
            rfc_form(&mut c)?
        }
    } else if first.is_ascii_alphabetic() {
        let save = c.pos;
        let w = c.alpha_word();
        if day_name(w) {
            c.skip_cfws();
            if c.peek() == Some(b',') {
                c.pos += 1;
            }
            c.skip_cfws();
            match c.peek() {
                Some(b) if b.is_ascii_digit() => rfc_form(&mut c)?,
                Some(b) if b.is_ascii_alphabetic() => asctime_form(&mut c)?,
                _ => return None,
            }
        } else if month_number(w).is_some() {
            c.pos = save;
            asctime_form(&mut c)?
        } else {
            return None;
        }
    } else {
        return None;
    };
    let date = parts.finish()?;
    Some((date, c.pos))
}

/// What a form yields before validation.
#[derive(Debug, PartialEq)]
struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    zone: Zone,
}

/// The zone as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zone {
    /// A known offset in minutes.
    Known(i32),
    /// Stated as UTC with the local zone unknown (`-0000`, military letters).
    UtcUnknownLocal,
    /// An alphabetic zone we do not know: assume UTC.
    Unknown,
    /// No zone at all: assume UTC.
    Missing,
}

impl Parts {
    fn finish(self) -> Option<MailDate> {
        if !(1..=12).contains(&self.month)
            || self.day < 1
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        {
            return None;
        }
        let (offset, assumed) = match self.zone {
            Zone::Known(m) => (Some(m), false),
            Zone::UtcUnknownLocal => (None, false),
            Zone::Unknown | Zone::Missing => (None, true),
        };
        let days = days_from_civil(self.year, self.month, self.day);
        let local = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        Some(MailDate {
            unix: local - i64::from(offset.unwrap_or(0)) * 60,
            nanos: self.nanos,
            offset_minutes: offset,
            tz_assumed: assumed,
        })
    }
}

/// RFC 5322 from the day of month on: `day month year time [zone]`.
fn rfc_form(c: &mut Cursor<'_>) -> Option<Parts> {
    rfc_form_fast(c).or_else(|| rfc_form_general(c))
}

/// [`rfc_form`] for any layout.
fn rfc_form_general(c: &mut Cursor<'_>) -> Option<Parts> {
    let (day, nd) = c.number()?;
    if nd > 2 {
        return None;
    }
    c.skip_cfws_and_dash();
    let month = month_number(c.alpha_word())?;
    c.skip_cfws_and_dash();
    let (y, ny) = c.number()?;
    let year = full_year(y, ny)?;
    c.skip_cfws();
    let (hour, minute, second, nanos) = time(c)?;
    let zone = zone(c);
    Some(Parts {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
        zone,
    })
}

/// [`rfc_form`] for the layout nearly every MTA writes, `1 Jan 2024
/// 10:00:00` (one or two day digits, single spaces, seconds, no
/// fraction), read at fixed offsets; then the zone as [`rfc_form`] reads
/// it. `None`, with the cursor where it was, for anything else: the
/// general reader then decides, so both give the same answer.
fn rfc_form_fast(c: &mut Cursor<'_>) -> Option<Parts> {
    let b = c.b.get(c.pos..)?;
    let digit = |k: usize| {
        b.get(k)
            .filter(|x| x.is_ascii_digit())
            .map(|x| u32::from(x - b'0'))
    };
    let d0 = digit(0)?;
    let (day, at) = match digit(1) {
        Some(d1) => (d0 * 10 + d1, 2),
        None => (d0, 1),
    };
    // ` Mmm YYYY HH:MM:SS` after the day: 18 bytes.
    let t = b.get(at..at + 18)?;
    if t[0] != b' ' || t[4] != b' ' || t[9] != b' ' || t[12] != b':' || t[15] != b':' {
        return None;
    }
    let name = t.get(1..4)?;
    if !name.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let month = month_number(name)?;
    let n = |k: usize| digit(at + k);
    let year = n(5)? * 1000 + n(6)? * 100 + n(7)? * 10 + n(8)?;
    let hour = n(10)? * 10 + n(11)?;
    let minute = n(13)? * 10 + n(14)?;
    let second = n(16)? * 10 + n(17)?;
    // What follows the seconds must end them: no more digits, no fraction.
    if year == 0
        || b.get(at + 18)
            .is_some_and(|x| x.is_ascii_digit() || *x == b'.' || *x == b',')
    {
        return None;
    }
    c.pos += at + 18;
    let zone = zone(c);
    Some(Parts {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second,
        nanos: 0,
        zone,
    })
}

/// asctime from the month on: `month day time [zone] year [zone]`.
fn asctime_form(c: &mut Cursor<'_>) -> Option<Parts> {
    let month = month_number(c.alpha_word())?;
    c.skip_cfws();
    let (day, nd) = c.number()?;
    if nd > 2 {
        return None;
    }
    c.skip_cfws();
    let (hour, minute, second, nanos) = time(c)?;
    // `date(1)` writes the zone between the time and the year.
    let save = c.pos;
    let mut zone = zone(c);
    c.skip_cfws();
    let (y, ny) = match c.number() {
        Some(v) => v,
        None => {
            c.pos = save;
            return None;
        }
    };
    let year = full_year(y, ny)?;
    if zone == Zone::Missing {
        zone = self::zone(c);
    }
    Some(Parts {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
        zone,
    })
}

/// `YYYY-MM-DD[T ]HH:MM[:SS[.frac]][zone]`.
fn iso_form(c: &mut Cursor<'_>) -> Option<Parts> {
    let (y, ny) = c.number()?;
    if ny != 4 || !c.eat(b'-') {
        return None;
    }
    let (month, nm) = c.number()?;
    if nm > 2 || !c.eat(b'-') {
        return None;
    }
    let (day, nd) = c.number()?;
    if nd > 2 {
        return None;
    }
    if !(c.eat(b'T') || c.eat(b't')) {
        let save = c.pos;
        c.skip_ws();
        if c.pos == save {
            return None;
        }
    }
    let (hour, minute, second, nanos) = time(c)?;
    let zone = if c.eat(b'Z') || c.eat(b'z') {
        Zone::Known(0)
    } else {
        zone(c)
    };
    Some(Parts {
        year: i64::from(y),
        month,
        day,
        hour,
        minute,
        second,
        nanos,
        zone,
    })
}

/// `HH:MM[:SS[.frac]]`, whitespace allowed around the colons (obs-time).
fn time(c: &mut Cursor<'_>) -> Option<(u32, u32, u32, u32)> {
    let (hour, nh) = c.number()?;
    if nh > 2 {
        return None;
    }
    c.skip_ws();
    if !c.eat(b':') {
        return None;
    }
    c.skip_ws();
    let (minute, nm) = c.number()?;
    if nm != 2 {
        return None;
    }
    let save = c.pos;
    c.skip_ws();
    let mut second = 0;
    let mut nanos = 0;
    if c.eat(b':') {
        c.skip_ws();
        let (s, ns) = c.number()?;
        if ns != 2 {
            return None;
        }
        second = s;
        if matches!(c.peek(), Some(b'.') | Some(b','))
            && c.peek_at(1).is_some_and(|b| b.is_ascii_digit())
        {
            c.pos += 1;
            nanos = c.fraction();
        }
    } else {
        c.pos = save;
    }
    Some((hour, minute, second, nanos))
}

/// The zone after a time, if any; a following comment that only names a
/// zone is used up, and supplies the zone when none was written.
fn zone(c: &mut Cursor<'_>) -> Zone {
    let save = c.pos;
    c.skip_ws();
    let mut zone = Zone::Missing;
    match c.peek() {
        Some(b'+') | Some(b'-') => match numeric_zone(c) {
            Some(z) => zone = z,
            None => c.pos = save,
        },
        Some(b) if b.is_ascii_alphabetic() => {
            let at = c.pos;
            let w = c.alpha_word();
            match alpha_zone(w) {
                Some(z) => {
                    zone = z;
                    // `GMT+0100`, `UTC-05:00`
                    if matches!(z, Zone::Known(0)) && matches!(c.peek(), Some(b'+') | Some(b'-')) {
                        let before = c.pos;
                        match numeric_zone(c) {
                            Some(n) => zone = n,
                            None => c.pos = before,
                        }
                    }
                }
                None if plausible_unknown_zone(w) => zone = Zone::Unknown,
                None => c.pos = at,
            }
        }
        _ => c.pos = save,
    }
    if zone == Zone::Missing {
        c.pos = save;
    }
    // A comment naming the zone: `(PDT)`, `(UTC)`.
    let after = c.pos;
    c.skip_ws();
    if c.peek() == Some(b'(') {
        match c.comment() {
            Some(inner) if zone_comment(inner) => {
                if zone == Zone::Missing || zone == Zone::Unknown {
                    let word = inner.trim();
                    if let Some(z @ Zone::Known(_)) = alpha_zone(word.as_bytes()) {
                        zone = z;
                    }
                }
            }
            _ => c.pos = after,
        }
    } else {
        c.pos = after;
    }
    zone
}

/// `+hhmm`, `-hhmm` or `+hh:mm`; `-0000` is UTC with the local zone unknown.
fn numeric_zone(c: &mut Cursor<'_>) -> Option<Zone> {
    let neg = c.peek() == Some(b'-');
    c.pos += 1;
    let (v, n) = c.number()?;
    let (h, m) = match n {
        4 => (v / 100, v % 100),
        2 if c.peek() == Some(b':') => {
            c.pos += 1;
            let (m, nm) = c.number()?;
            if nm != 2 {
                return None;
            }
            (v, m)
        }
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    let mins = i32::try_from(h * 60 + m).ok()?;
    Some(if neg && mins == 0 {
        Zone::UtcUnknownLocal
    } else if neg {
        Zone::Known(-mins)
    } else {
        Zone::Known(mins)
    })
}

/// RFC 5322 4.3 zones plus UTC; military letters (but `Z`) are `-0000`.
fn alpha_zone(w: &[u8]) -> Option<Zone> {
    let hours = |h: i32| Some(Zone::Known(h * 60));
    // Every zone known is one to three letters: upper-cased on the stack.
    let mut up = [0u8; 3];
    let u = up.get_mut(..w.len())?;
    u.copy_from_slice(w);
    u.make_ascii_uppercase();
    match &*u {
        b"UT" | b"GMT" | b"UTC" | b"Z" => hours(0),
        b"EST" => hours(-5),
        b"EDT" => hours(-4),
        b"CST" => hours(-6),
        b"CDT" => hours(-5),
        b"MST" => hours(-7),
        b"MDT" => hours(-6),
        b"PST" => hours(-8),
        b"PDT" => hours(-7),
        [l] if *l != b'J' => Some(Zone::UtcUnknownLocal),
        _ => None,
    }
}

/// An alphabetic word we take for an unknown zone (`CEST`, `JST`): short,
/// and not one of the Received keywords that may follow a date.
fn plausible_unknown_zone(w: &[u8]) -> bool {
    (2..=5).contains(&w.len())
        && !["from", "by", "via", "with", "id", "for"]
            .iter()
            .any(|k| k.as_bytes().eq_ignore_ascii_case(w))
}

/// A comment after a date that only names a zone: short, one leading
/// alphabetic word, then letters, digits, spaces, `+-:.` only.
fn zone_comment(inner: &str) -> bool {
    let t = inner.trim();
    let first = t.split_ascii_whitespace().next().unwrap_or("");
    !t.is_empty()
        && t.len() <= 40
        && first.bytes().all(|b| b.is_ascii_alphabetic())
        && !first.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" +-:.".contains(&b))
}

/// The first three letters of `w`, lower case, as one number (`None`
/// when `w` is shorter or they are not all ASCII letters).
fn key3(w: &[u8]) -> Option<u32> {
    match w {
        [a, b, c, ..]
            if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() && c.is_ascii_alphabetic() =>
        {
            Some(u32::from_le_bytes([a | 0x20, b | 0x20, c | 0x20, 0]))
        }
        _ => None,
    }
}

/// [`key3`] of a lower-case name, at compile time.
const fn key3_of(name: &str) -> u32 {
    let b = name.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], 0])
}

/// Which of `names` (lower case, first three letters unique) `w` is,
/// whole or as its three-letter abbreviation, ASCII case ignored: the
/// first three letters pick the only candidate, with no lower-cased copy.
fn name_index(names: &[&str], keys: &[u32], w: &[u8]) -> Option<usize> {
    let key = key3(w)?;
    let i = keys.iter().position(|&k| k == key)?;
    (w.len() == 3 || names.get(i)?.as_bytes().eq_ignore_ascii_case(w)).then_some(i)
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

const DAY_KEYS: [u32; 7] = {
    let mut k = [0; 7];
    let mut i = 0;
    while i < 7 {
        k[i] = key3_of(DAYS[i]);
        i += 1;
    }
    k
};

fn day_name(w: &[u8]) -> bool {
    name_index(&DAYS, &DAY_KEYS, w).is_some()
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

const MONTH_KEYS: [u32; 12] = {
    let mut k = [0; 12];
    let mut i = 0;
    while i < 12 {
        k[i] = key3_of(MONTHS[i]);
        i += 1;
    }
    k
};

fn month_number(w: &[u8]) -> Option<u32> {
    let i = name_index(&MONTHS, &MONTH_KEYS, w)?;
    u32::try_from(i + 1).ok()
}

/// RFC 5322 4.3: two digits 00-49 -> 20xx, 50-99 -> 19xx; three digits +1900.
fn full_year(y: u32, digits: usize) -> Option<i64> {
    let y = i64::from(y);
    match digits {
        1 | 2 if y < 50 => Some(2000 + y),
        1 | 2 => Some(1900 + y),
        3 => Some(1900 + y),
        4 if y >= 1 => Some(y),
        _ => None,
    }
}

/// A byte cursor; every position it stops at is an ASCII boundary.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.b.get(self.pos + k).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn eat(&mut self, want: u8) -> bool {
        if self.peek() == Some(want) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// Whitespace and comments; an unclosed comment runs to the end.
    fn skip_cfws(&mut self) {
        loop {
            self.skip_ws();
            if self.peek() == Some(b'(') {
                self.comment();
            } else {
                return;
            }
        }
    }

    fn skip_cfws_and_dash(&mut self) {
        self.skip_cfws();
        if self.eat(b'-') {
            self.skip_cfws();
        }
    }

    /// A comment at the cursor (which is on `(`): its inner text, nested
    /// comments included. Iterative; an unclosed comment runs to the end.
    fn comment(&mut self) -> Option<&'a str> {
        let start = self.pos + 1;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'\\' if self.peek().is_some_and(|n| n.is_ascii()) => self.pos += 1,
                b'(' => depth += 1,
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return self
                            .b
                            .get(start..self.pos - 1)
                            .and_then(|s| std::str::from_utf8(s).ok());
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// ASCII letters at the cursor (possibly none).
    fn alpha_word(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        self.b.get(start..self.pos).unwrap_or(&[])
    }

    /// Digits at the cursor: value and count; `None` if none or more than 9.
    fn number(&mut self) -> Option<(u32, usize)> {
        let start = self.pos;
        let mut v: u32 = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            self.pos += 1;
            if self.pos - start <= 9 {
                v = v * 10 + u32::from(b - b'0');
            }
        }
        let n = self.pos - start;
        (1..=9).contains(&n).then_some((v, n))
    }

    /// Fraction digits at the cursor as nanoseconds (past nine dropped).
    fn fraction(&mut self) -> u32 {
        let mut v: u32 = 0;
        let mut n = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            self.pos += 1;
            if n < 9 {
                v = v * 10 + u32::from(b - b'0');
                n += 1;
            }
        }
        while n < 9 {
            v *= 10;
            n += 1;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Option<String> {
        parse(s).map(|d| d.to_rfc3339_utc())
    }

    #[test]
    fn rfc5322_forms() {
        assert_eq!(
            utc("Sun, 27 Aug 2023 03:00:06 -0700").as_deref(),
            Some("2023-08-27T10:00:06Z")
        );
        assert_eq!(
            utc("27 Aug 2023 03:00:06 -0700").as_deref(),
            Some("2023-08-27T10:00:06Z")
        );
        // wrong day of week is tolerated
        assert_eq!(
            utc("Fri, 27 Aug 2023 03:00:06 +0000").as_deref(),
            Some("2023-08-27T03:00:06Z")
        );
        // seconds missing
        assert_eq!(
            utc("Mon, 6 Jul 2015 09:01 +0200").as_deref(),
            Some("2015-07-06T07:01:00Z")
        );
        // folded, comments everywhere
        assert_eq!(
            utc("Mon,\r\n  6 (day) Jul\n\t2015 09:01:20\r\n +0000 (UTC)").as_deref(),
            Some("2015-07-06T09:01:20Z")
        );
        // full names, dashes
        assert_eq!(
            utc("Monday, 6 July 2015 09:01:20 +0000").as_deref(),
            Some("2015-07-06T09:01:20Z")
        );
        assert_eq!(
            utc("6-Jul-2015 09:01:20 +0000").as_deref(),
            Some("2015-07-06T09:01:20Z")
        );
        let d = parse("Mon, 6 Jul 2015 09:01:20 +0530").unwrap();
        assert_eq!(d.offset_minutes, Some(330));
        assert!(!d.tz_assumed);
        assert_eq!(d.to_rfc3339_local(), "2015-07-06T09:01:20+05:30");
    }

    #[test]
    fn obsolete_zones() {
        assert_eq!(
            utc("Wed, 12 Feb 2003 14:22:21 PST").as_deref(),
            Some("2003-02-12T22:22:21Z")
        );
        assert_eq!(
            utc("Wed, 12 Feb 2003 14:22:21 pdt").as_deref(),
            Some("2003-02-12T21:22:21Z")
        );
        for (z, h) in [
            ("UT", 0),
            ("GMT", 0),
            ("EST", -5),
            ("EDT", -4),
            ("CST", -6),
            ("CDT", -5),
            ("MST", -7),
            ("MDT", -6),
        ] {
            let d = parse(&format!("1 Jan 2020 12:00:00 {z}")).unwrap();
            assert_eq!(d.offset_minutes, Some(h * 60), "{z}");
            assert_eq!(d.unix, 1_577_880_000 - i64::from(h) * 3600, "{z}");
        }
        // military letters are -0000: UTC, local zone unknown
        let d = parse("1 Jan 2020 12:00:00 A").unwrap();
        assert_eq!((d.offset_minutes, d.tz_assumed), (None, false));
        assert_eq!(d.to_rfc3339_utc(), "2020-01-01T12:00:00Z");
        assert_eq!(d.to_rfc3339_local(), "2020-01-01T12:00:00-00:00");
        let d = parse("1 Jan 2020 12:00:00 -0000").unwrap();
        assert_eq!((d.offset_minutes, d.tz_assumed), (None, false));
        // unknown alphabetic zone: read as UTC, flagged
        let d = parse("1 Jan 2020 12:00:00 CEST").unwrap();
        assert_eq!((d.offset_minutes, d.tz_assumed), (None, true));
        assert_eq!(d.to_rfc3339_utc(), "2020-01-01T12:00:00Z");
        // zone only as a comment
        let d = parse("Thu, 1 Jan 2020 12:00:00 (PDT)").unwrap();
        assert_eq!((d.offset_minutes, d.tz_assumed), (Some(-420), false));
        // numeric offset wins over the comment
        assert_eq!(
            utc("Thu, 20 Feb 2003 16:13:20 -0700 (PST)").as_deref(),
            Some("2003-02-20T23:13:20Z")
        );
        // zones glued to time or comment
        assert_eq!(
            utc("Thu, 6 May 2004 17:40:44-0500").as_deref(),
            Some("2004-05-06T22:40:44Z")
        );
        assert_eq!(
            utc("Thu, 6 May 2004 17:40:44 +0000(UTC)").as_deref(),
            Some("2004-05-06T17:40:44Z")
        );
        assert_eq!(
            utc("Thu, 6 May 2004 17:40:44 -0700(PDT)").as_deref(),
            Some("2004-05-07T00:40:44Z")
        );
        assert_eq!(
            utc("Thu, 6 May 2004 17:40:44 GMT+0200").as_deref(),
            Some("2004-05-06T15:40:44Z")
        );
        assert_eq!(
            utc("Thu, 6 May 2004 17:40:44 +0000 GMT").as_deref(),
            Some("2004-05-06T17:40:44Z")
        );
    }

    #[test]
    fn years() {
        assert_eq!(
            utc("Wed, 26 Mar 03 20:43:24 -0600").as_deref(),
            Some("2003-03-27T02:43:24Z")
        );
        assert_eq!(
            utc("8 Mar 04 12:23:56 -0000").as_deref(),
            Some("2004-03-08T12:23:56Z")
        );
        assert_eq!(
            utc("8 Mar 49 12:23:56 +0000").as_deref(),
            Some("2049-03-08T12:23:56Z")
        );
        assert_eq!(
            utc("8 Mar 50 12:23:56 +0000").as_deref(),
            Some("1950-03-08T12:23:56Z")
        );
        assert_eq!(
            utc("8 Mar 99 12:23:56 +0000").as_deref(),
            Some("1999-03-08T12:23:56Z")
        );
        assert_eq!(
            utc("8 Mar 103 12:23:56 +0000").as_deref(),
            Some("2003-03-08T12:23:56Z")
        );
        assert_eq!(utc("8 Mar 12003 12:23:56 +0000"), None);
    }

    #[test]
    fn asctime() {
        let d = parse("Wed Nov 25 21:58:25 2026").unwrap();
        assert!(d.tz_assumed);
        assert_eq!(d.offset_minutes, None);
        assert_eq!(d.to_rfc3339_utc(), "2026-11-25T21:58:25Z");
        assert_eq!(
            utc("Fri Feb 07 10:18:12 2003 -0800").as_deref(),
            Some("2003-02-07T18:18:12Z")
        );
        assert_eq!(
            utc("Fri Feb  7 10:18:12 PST 2003").as_deref(),
            Some("2003-02-07T18:18:12Z")
        );
        assert_eq!(
            utc("Feb  7 10:18:12 2003").as_deref(),
            Some("2003-02-07T10:18:12Z")
        );
    }

    #[test]
    fn fractions_and_iso() {
        let d = parse("Sun, 22 Apr 2018 02:54:16.987 +0000 (UTC)").unwrap();
        assert_eq!(d.nanos, 987_000_000);
        assert_eq!(d.to_rfc3339_utc(), "2018-04-22T02:54:16.987Z");
        assert_eq!(
            utc("2024-01-02T03:04:05.123Z").as_deref(),
            Some("2024-01-02T03:04:05.123Z")
        );
        assert_eq!(
            utc("2024-01-02T03:04:05.123456+01:00").as_deref(),
            Some("2024-01-02T02:04:05.123456Z")
        );
        assert_eq!(
            utc("2024-01-02 03:04:05 +0000").as_deref(),
            Some("2024-01-02T03:04:05Z")
        );
        assert_eq!(
            utc("2024-01-02 03:04:05.1234567891 -0100").as_deref(),
            Some("2024-01-02T04:04:05.123456789Z")
        );
        let d = parse("2024-01-02T03:04:05").unwrap();
        assert!(d.tz_assumed);
    }

    #[test]
    fn impossible_dates_are_none() {
        for s in [
            "31 Apr 2023 10:00:00 +0000",
            "29 Feb 2023 10:00:00 +0000",
            "30 Feb 2024 10:00:00 +0000",
            "0 Jan 2024 10:00:00 +0000",
            "1 Jan 2024 24:00:00 +0000",
            "1 Jan 2024 23:60:00 +0000",
            "1 Jan 2024 23:59:61 +0000",
            "1 Foo 2024 23:59:59 +0000",
            "1 Jan 2024 23:59:59 +2400",
            "1 Jan 2024 23:59:59 +0060",
            "2024-13-01T00:00:00Z",
            "Mon, 1 Jan 2024",
            "",
            "((((",
            "Mon, 1 Jan 2024 10:00:00 +0000 trailing garbage words",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
        assert_eq!(
            utc("29 Feb 2024 10:00:00 +0000").as_deref(),
            Some("2024-02-29T10:00:00Z")
        );
        assert_eq!(
            utc("29 Feb 2000 10:00:00 +0000").as_deref(),
            Some("2000-02-29T10:00:00Z")
        );
        assert_eq!(parse("29 Feb 1900 10:00:00 +0000"), None);
        // leap second
        assert_eq!(
            utc("31 Dec 2016 23:59:60 +0000").as_deref(),
            Some("2017-01-01T00:00:00Z")
        );
    }

    #[test]
    fn epoch_arithmetic() {
        assert_eq!(parse("1 Jan 1970 00:00:00 +0000").unwrap().unix, 0);
        assert_eq!(
            parse("Thu, 01 Jan 1970 00:00:00 +0100").unwrap().unix,
            -3600
        );
        assert_eq!(
            utc("1 Jan 1900 00:00:00 +0000").as_deref(),
            Some("1900-01-01T00:00:00Z")
        );
        for days in [-800_000i64, -1, 0, 1, 11_016, 19_723, 2_932_896] {
            let (y, m, d) = crate::calendar::civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn prefix_stops_after_the_date() {
        let s = "Thu, 20 Mar 03 10:06:43 +0100 for <asrg@ietf.org>";
        let (d, used) = parse_prefix(s).unwrap();
        assert_eq!(d.to_rfc3339_utc(), "2003-03-20T09:06:43Z");
        assert_eq!(s[used..].trim(), "for <asrg@ietf.org>");
        let s = "Sun Nov 13 14:50:12 2005 (envelope-from <a@b>)";
        let (_, used) = parse_prefix(s).unwrap();
        assert_eq!(s[used..].trim(), "(envelope-from <a@b>)");
        let s = "Mon, 6 Jul 2015 09:01:20 +0000 (UTC)\n\t(envelope-from x@y)";
        let (_, used) = parse_prefix(s).unwrap();
        assert_eq!(s[used..].trim(), "(envelope-from x@y)");
    }

    /// The fixed-layout reader gives what the general one gives, and
    /// leaves the cursor alone when it declines.
    #[test]
    fn the_fast_rfc_form_agrees_with_the_general_one() {
        let mut n = 0;
        for day in ["1", "01", "31", "0", "001", "9"] {
            for sp in [" ", "  ", "-", "\t"] {
                for month in ["Jan", "jan", "MAY", "Foo", "Sept", "Ja1", "é"] {
                    for year in ["2024", "0000", "0001", "99", "12003", "2024 "] {
                        for time in [
                            "10:00:00",
                            "23:59:60",
                            "24:00:00",
                            "10:00",
                            "10:00:00.5",
                            "10:00:00,25",
                            "10:00:001",
                            "1:00:00",
                            "10 :00:00",
                            "10:0:00",
                        ] {
                            for zone in [
                                "",
                                " +0000",
                                " -0000",
                                " +2400",
                                "+0100",
                                " GMT",
                                " (PDT)",
                                " +0200 (CEST)",
                                " x",
                                ".",
                                ",",
                                "0",
                                " +00001",
                            ] {
                                let s = format!("{day}{sp}{month} {year} {time}{zone}");
                                let mut fast = Cursor {
                                    b: s.as_bytes(),
                                    pos: 0,
                                };
                                let mut general = Cursor {
                                    b: s.as_bytes(),
                                    pos: 0,
                                };
                                let want = rfc_form_general(&mut general);
                                match rfc_form_fast(&mut fast) {
                                    Some(p) => {
                                        n += 1;
                                        assert_eq!(Some(p), want, "{s:?}");
                                        assert_eq!(fast.pos, general.pos, "{s:?}");
                                    }
                                    None => assert_eq!(fast.pos, 0, "{s:?}"),
                                }
                                let mut c = Cursor {
                                    b: s.as_bytes(),
                                    pos: 0,
                                };
                                assert_eq!(rfc_form(&mut c), want, "{s:?}");
                            }
                        }
                    }
                }
            }
        }
        // The usual stamps did take the fast path.
        assert!(n > 500, "{n}");
        // Names of days and months, whole or abbreviated, any case.
        for (w, want) in [
            ("Sun", true),
            ("sunday", true),
            ("SUNDAY", true),
            ("sund", false),
            ("su", false),
            ("ESMTPS", false),
            ("Thu", true),
            ("thurs", false),
        ] {
            assert_eq!(day_name(w.as_bytes()), want, "{w}");
        }
        for (w, want) in [
            ("Nov", Some(11)),
            ("november", Some(11)),
            ("MAY", Some(5)),
            ("june", Some(6)),
            ("jun", Some(6)),
            ("juni", None),
            ("Sept", None),
            ("de", None),
            ("", None),
        ] {
            assert_eq!(month_number(w.as_bytes()), want, "{w}");
        }
        for (w, want) in [
            ("gmt", Some(Zone::Known(0))),
            ("Pdt", Some(Zone::Known(-420))),
            ("a", Some(Zone::UtcUnknownLocal)),
            ("j", None),
            ("J", None),
            ("z", Some(Zone::Known(0))),
            ("CEST", None),
            ("", None),
        ] {
            assert_eq!(alpha_zone(w.as_bytes()), want, "{w}");
        }
    }

    #[test]
    fn hostile_input_is_bounded() {
        let deep = format!(
            "Mon, 1 Jan 2024 10:00:00 +0000 {}x{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(parse(&deep).is_some());
        let unclosed = format!("Mon, 1 Jan 2024 10:00:00 {}", "(".repeat(100_000));
        let _ = parse(&unclosed);
        let big = "9".repeat(1_000_000);
        assert_eq!(parse(&big), None);
        let _ = parse(&format!("1 Jan 2024 10:00:00.{big}"));
        let _ = parse("\u{e9}\u{e9} 1 Jan");
    }
}
