//! mail-trace `--json`: one JSON object per message (JSON Lines).
//!
//! Owns the documented key order of the schema in mail-trace(1)
//! (`"version": 1`) and writes it straight from the analysed [`Chain`]
//! into one reused buffer: no intermediate value tree, strings escaped in
//! one pass with runs that need no escaping copied whole. Guarantee: one
//! line per message, always valid JSON, byte for byte what `serde_json`
//! writes for the same keys and values (the tests compare the two).

use crate::trace::chain::{self, Chain};
use crate::trace::{Auth, Hop, MailDate};

/// Which bytes a JSON string cannot hold as they are: `"`, `\` and the
/// controls below 0x20 (as `serde_json` escapes them; DEL and non-ASCII
/// pass through).
const fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

const ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = needs_escape(i as u8);
        i += 1;
    }
    t
};

/// Nonzero when any of the eight bytes in `w` is below 0x20, `"` or `\\`
/// (the classic "has a byte less than / equal to" bit tricks: exact, no
/// false negatives; a false positive only sends the bytes one by one).
fn escape_bits(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    below_space | zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64))
}

/// `s` as a JSON string, appended to `buf`: the runs that need no
/// escaping copied whole.
fn string(buf: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    buf.reserve(b.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    while let Some(k) = next_escape(b, start) {
        buf.extend_from_slice(b.get(start..k).unwrap_or(&[]));
        start = k + 1;
        match b[k] {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0x08 => buf.extend_from_slice(b"\\b"),
            0x0c => buf.extend_from_slice(b"\\f"),
            c => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(c >> 4)]);
                buf.push(HEX[usize::from(c & 0xf)]);
            }
        }
    }
    buf.extend_from_slice(b.get(start..).unwrap_or(&[]));
    buf.push(b'"');
}

/// The first byte at or after `from` that needs escaping: sixteen, then
/// eight bytes at a time while none does (most text), then byte by byte
/// from the word that has one.
fn next_escape(b: &[u8], from: usize) -> Option<usize> {
    let word = |c: &[u8; 8]| escape_bits(u64::from_le_bytes(*c));
    let mut i = from;
    while let Some(c) = b.get(i..i + 16) {
        match (c.first_chunk::<8>(), c.last_chunk::<8>()) {
            (Some(lo), Some(hi)) if word(lo) | word(hi) == 0 => i += 16,
            _ => break,
        }
    }
    while let Some(c) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        if word(c) != 0 {
            break;
        }
        i += 8;
    }
    (i..b.len()).find(|&k| ESCAPE[usize::from(b[k])])
}

/// `"key":` (keys are ours: plain ASCII, nothing to escape).
fn key(buf: &mut Vec<u8>, k: &str) {
    buf.push(b'"');
    buf.extend_from_slice(k.as_bytes());
    buf.extend_from_slice(b"\":");
}

fn opt_str(buf: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => string(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

fn uint(buf: &mut Vec<u8>, n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn opt_uint(buf: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(n) => uint(buf, n),
        None => buf.extend_from_slice(b"null"),
    }
}

fn boolean(buf: &mut Vec<u8>, v: bool) {
    buf.extend_from_slice(if v { b"true" } else { b"false" });
}

/// A float as `serde_json` writes it (shortest round trip; `null` if not
/// finite).
fn opt_f64(buf: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(f) => {
            if serde_json::to_writer(&mut *buf, &f).is_err() {
                buf.extend_from_slice(b"null");
            }
        }
        None => buf.extend_from_slice(b"null"),
    }
}

/// Two digits, zero-padded.
fn two(buf: &mut Vec<u8>, n: u32) {
    buf.push(b'0' + (n / 10 % 10) as u8);
    buf.push(b'0' + (n % 10) as u8);
}

/// The `YYYY-MM-DD` of the day last written by [`date`]: a message's
/// dates are nearly always one or two days, so the calendar is worked out
/// once for each.
#[derive(Default)]
struct Day {
    /// Days since 1970-01-01 and their text, once one is written.
    last: Option<(i64, [u8; 10])>,
}

/// A date as [`MailDate::to_rfc3339_utc`] writes it, without building a
/// `String` for the common years 0-9999.
fn date(buf: &mut Vec<u8>, d: Option<MailDate>, cache: &mut Day) {
    let Some(d) = d else {
        buf.extend_from_slice(b"null");
        return;
    };
    let t = d.unix;
    let days = t.div_euclid(86_400);
    let ymd = match cache.last {
        Some((n, text)) if n == days => text,
        _ => {
            let (y, mo, day) = crate::calendar::civil_from_days(days);
            if !(0..=9999).contains(&y) {
                string(buf, &d.to_rfc3339_utc());
                return;
            }
            let digit = |n: u32| b'0' + (n % 10) as u8;
            let y = y as u32;
            let text = [
                digit(y / 1000),
                digit(y / 100),
                digit(y / 10),
                digit(y),
                b'-',
                digit(mo / 10),
                digit(mo),
                b'-',
                digit(day / 10),
                digit(day),
            ];
            cache.last = Some((days, text));
            text
        }
    };
    let secs = t.rem_euclid(86_400) as u32;
    buf.push(b'"');
    buf.extend_from_slice(&ymd);
    buf.push(b'T');
    two(buf, secs / 3600);
    buf.push(b':');
    two(buf, secs % 3600 / 60);
    buf.push(b':');
    two(buf, secs % 60);
    if d.nanos > 0 {
        let mut digits = [0u8; 9];
        let mut n = d.nanos;
        for slot in digits.iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let mut len = 9;
        while len > 0 && digits[len - 1] == b'0' {
            len -= 1;
        }
        buf.push(b'.');
        buf.extend_from_slice(&digits[..len]);
    }
    buf.extend_from_slice(b"Z\"");
}

fn auth(buf: &mut Vec<u8>, a: Option<&Auth>) {
    match a {
        None => buf.extend_from_slice(b"null"),
        Some(Auth::Authenticated) => buf.extend_from_slice(b"true"),
        Some(Auth::User(u)) => string(buf, u),
        Some(other) => string(buf, &other.describe()),
    }
}

/// A hop, keys in the documented order. Each key goes out with the comma
/// before it as one literal.
fn hop(buf: &mut Vec<u8>, h: &Hop, delay: Option<f64>, days: &mut Day) {
    // The connecting host's names are often one name three times: its
    // JSON is escaped once and copied.
    buf.extend_from_slice(b"{\"from\":");
    let from_at = buf.len();
    opt_str(buf, h.from.as_deref());
    let from_end = buf.len();
    buf.extend_from_slice(b",\"helo\":");
    let same = |a: Option<&str>, b: Option<&str>| a.is_some() && a == b;
    if same(h.helo.as_deref(), h.from.as_deref()) {
        buf.extend_from_within(from_at..from_end);
    } else {
        opt_str(buf, h.helo.as_deref());
    }
    buf.extend_from_slice(b",\"rdns\":");
    if same(h.rdns.as_deref(), h.from.as_deref()) {
        buf.extend_from_within(from_at..from_end);
    } else {
        opt_str(buf, h.rdns.as_deref());
    }
    buf.extend_from_slice(b",\"ip\":");
    opt_str(buf, h.ip.as_deref());
    buf.extend_from_slice(b",\"port\":");
    opt_uint(buf, h.port.map(u64::from));
    buf.extend_from_slice(b",\"by\":");
    opt_str(buf, h.by.as_deref());
    buf.extend_from_slice(b",\"by_ip\":");
    opt_str(buf, h.by_ip.as_deref());
    buf.extend_from_slice(b",\"with\":");
    let with_at = buf.len();
    opt_str(buf, h.with.as_deref());
    let with_end = buf.len();
    buf.extend_from_slice(b",\"protocol\":");
    // The protocol is often the WITH value as written (`ESMTPS`).
    if same(h.protocol.as_deref(), h.with.as_deref()) {
        buf.extend_from_within(with_at..with_end);
    } else {
        opt_str(buf, h.protocol.as_deref());
    }
    buf.extend_from_slice(b",\"tls_version\":");
    opt_str(buf, h.tls_version.as_deref());
    buf.extend_from_slice(b",\"tls_cipher\":");
    opt_str(buf, h.tls_cipher.as_deref());
    buf.extend_from_slice(b",\"auth\":");
    auth(buf, h.auth.as_ref());
    buf.extend_from_slice(b",\"id\":");
    opt_str(buf, h.id.as_deref());
    buf.extend_from_slice(b",\"for\":");
    opt_str(buf, h.for_addr.as_deref());
    buf.extend_from_slice(b",\"via\":");
    opt_str(buf, h.via.as_deref());
    buf.extend_from_slice(b",\"envelope_from\":");
    opt_str(buf, h.envelope_from.as_deref());
    buf.extend_from_slice(b",\"date\":");
    date(buf, h.date, days);
    buf.extend_from_slice(b",\"tz_assumed\":");
    boolean(buf, h.tz_assumed);
    buf.extend_from_slice(b",\"delay_s\":");
    opt_f64(buf, delay);
    buf.extend_from_slice(b",\"raw\":");
    string(buf, &h.raw);
    buf.push(b'}');
}

/// `[a,b,...]` with `each` writing one element.
fn list<T>(
    buf: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T),
) {
    buf.push(b'[');
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        each(buf, x);
    }
    buf.push(b']');
}

fn strings(buf: &mut Vec<u8>, v: &[String]) {
    list(buf, v, |buf, s| string(buf, s));
}

fn entry(buf: &mut Vec<u8>, e: &chain::AuthEntry) {
    buf.push(b'{');
    key(buf, "authserv_id");
    opt_str(buf, e.authserv_id.as_deref());
    buf.push(b',');
    key(buf, "hop");
    opt_uint(buf, e.hop.map(|h| h as u64));
    buf.push(b',');
    key(buf, "verdicts");
    list(buf, &e.verdicts, |buf, v| {
        buf.push(b'{');
        key(buf, "method");
        string(buf, &v.method);
        buf.push(b',');
        key(buf, "result");
        string(buf, &v.result);
        buf.push(b',');
        key(buf, "domain");
        opt_str(buf, v.domain.as_deref());
        buf.push(b'}');
    });
    buf.push(b'}');
}

fn sig(buf: &mut Vec<u8>, domain: Option<&str>, selector: Option<&str>) {
    buf.push(b'{');
    key(buf, "domain");
    opt_str(buf, domain);
    buf.push(b',');
    key(buf, "selector");
    opt_str(buf, selector);
    buf.push(b'}');
}

/// The `--json` line for one message (no newline), into `buf`; with
/// `--verify`, the fresh verdicts under `"verify"` (before `"warnings"`).
pub(super) fn line(
    source: &str,
    c: &Chain,
    verify: Option<&crate::trace::verify::Verification>,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    let mut days = Day::default();
    buf.extend_from_slice(b"{\"version\":1,");
    key(buf, "source");
    string(buf, source);
    buf.push(b',');
    key(buf, "hops");
    list(buf, c.hops.iter().zip(&c.delays), |buf, (h, d)| {
        hop(buf, h, *d, &mut days)
    });
    buf.push(b',');
    key(buf, "x_received");
    list(buf, &c.x_received, |buf, h| hop(buf, h, None, &mut days));
    buf.push(b',');
    key(buf, "date");
    date(buf, c.date, &mut days);
    buf.push(b',');
    key(buf, "total_transit_s");
    opt_f64(buf, c.total_transit_s);
    buf.push(b',');
    key(buf, "anomalies");
    list(buf, &c.anomalies, |buf, a| {
        buf.push(b'{');
        key(buf, "kind");
        string(buf, a.kind);
        buf.push(b',');
        key(buf, "hop");
        opt_uint(buf, a.hop.map(|h| h as u64));
        buf.push(b',');
        key(buf, "text");
        string(buf, &a.text);
        buf.push(b'}');
    });
    buf.push(b',');
    key(buf, "auth");
    buf.push(b'{');
    key(buf, "results");
    list(buf, &c.auth, entry);
    buf.push(b',');
    key(buf, "arc");
    list(buf, &c.arc, |buf, s| {
        buf.push(b'{');
        key(buf, "instance");
        uint(buf, u64::from(s.instance));
        buf.push(b',');
        key(buf, "cv");
        opt_str(buf, s.cv.as_deref());
        buf.push(b',');
        key(buf, "seal");
        sig(buf, s.seal_domain.as_deref(), s.seal_selector.as_deref());
        buf.push(b',');
        key(buf, "signature");
        sig(
            buf,
            s.signature_domain.as_deref(),
            s.signature_selector.as_deref(),
        );
        buf.push(b',');
        key(buf, "results");
        match &s.results {
            Some(e) => entry(buf, e),
            None => buf.extend_from_slice(b"null"),
        }
        buf.push(b',');
        key(buf, "complete");
        boolean(buf, s.complete);
        buf.push(b'}');
    });
    buf.push(b',');
    key(buf, "received_spf");
    list(buf, &c.received_spf, |buf, s| {
        buf.push(b'{');
        key(buf, "result");
        opt_str(buf, s.result.as_deref());
        buf.push(b',');
        key(buf, "client_ip");
        opt_str(buf, s.client_ip.as_deref());
        buf.push(b',');
        key(buf, "envelope_from");
        opt_str(buf, s.envelope_from.as_deref());
        buf.push(b',');
        key(buf, "helo");
        opt_str(buf, s.helo.as_deref());
        buf.push(b',');
        key(buf, "receiver");
        opt_str(buf, s.receiver.as_deref());
        buf.push(b',');
        key(buf, "hop");
        opt_uint(buf, s.hop.map(|h| h as u64));
        buf.push(b'}');
    });
    buf.push(b',');
    key(buf, "dkim_signatures");
    list(buf, &c.dkim_signatures, |buf, s| {
        sig(buf, s.domain.as_deref(), s.selector.as_deref())
    });
    buf.push(b',');
    let a = &c.alignment;
    key(buf, "alignment");
    buf.push(b'{');
    key(buf, "from_domain");
    opt_str(buf, a.from_domain.as_deref());
    buf.push(b',');
    key(buf, "spf_pass_domains");
    strings(buf, &a.spf_pass_domains);
    buf.push(b',');
    key(buf, "dkim_pass_domains");
    strings(buf, &a.dkim_pass_domains);
    buf.push(b',');
    key(buf, "spf_aligned");
    boolean(buf, a.spf_aligned);
    buf.push(b',');
    key(buf, "dkim_aligned");
    boolean(buf, a.dkim_aligned);
    buf.push(b',');
    key(buf, "dmarc_pass");
    boolean(buf, a.dmarc_pass);
    buf.push(b',');
    key(buf, "method");
    string(buf, a.method);
    buf.extend_from_slice(b"}}");
    buf.push(b',');
    if let Some(v) = verify {
        // Rare and nested: serde writes it (plain structs of strings and
        // numbers; should it ever fail, the key says so instead).
        key(buf, "verify");
        let at = buf.len();
        if serde_json::to_writer(&mut *buf, v).is_err() {
            buf.truncate(at);
            buf.extend_from_slice(b"{\"error\":\"cannot serialise\"}");
        }
        buf.push(b',');
    }
    key(buf, "warnings");
    strings(buf, &c.warnings);
    buf.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut all = String::new();
        for c in 0u32..0x200 {
            all.extend(char::from_u32(c));
        }
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "tab\tnl\ncr\r\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            "\u{e9}t\u{e9} \u{1f600} \u{fffd}",
            "\"\"",
            all.as_str(),
        ] {
            let mut buf = Vec::new();
            string(&mut buf, s);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    /// The word-at-a-time search finds the first byte to escape wherever
    /// it is: in a 16-byte block, an 8-byte word or the tail.
    #[test]
    fn next_escape_finds_every_position() {
        for len in 0..40 {
            for fill in [b'a', 0x7f, 0xc3, b' '] {
                for esc in [
                    None,
                    Some(b'"'),
                    Some(b'\\'),
                    Some(b'\n'),
                    Some(0x01),
                    Some(0x1f),
                ] {
                    for at in 0..len.max(1) {
                        let mut b = vec![fill; len];
                        if let (Some(e), Some(slot)) = (esc, b.get_mut(at)) {
                            *slot = e;
                        }
                        for from in 0..=len {
                            let want = (from..len).find(|&k| ESCAPE[usize::from(b[k])]);
                            assert_eq!(next_escape(&b, from), want, "{b:?} {from}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn numbers_and_dates_as_before() {
        for n in [0u64, 7, 10, 99, 100, 65535, u64::MAX] {
            let mut buf = Vec::new();
            uint(&mut buf, n);
            assert_eq!(buf, n.to_string().as_bytes());
        }
        for f in [0.0, -0.0, 1.0, -3.0, 0.5, 1e21, 123456.789, -1e-7, f64::NAN] {
            let mut buf = Vec::new();
            opt_f64(&mut buf, Some(f));
            assert_eq!(buf, serde_json::to_vec(&f).unwrap(), "{f}");
        }
        let mut kept = Day::default();
        let mut unix = -70_000_000_000i64;
        while unix < 300_000_000_000 {
            for nanos in [0, 1, 500_000_000, 123_456_789, 999_999_999] {
                let d = MailDate {
                    unix,
                    nanos,
                    offset_minutes: None,
                    tz_assumed: false,
                };
                // With a fresh cache, and with the one kept from the
                // dates before (same day, next day or far away).
                let want = serde_json::to_string(&d.to_rfc3339_utc()).unwrap();
                for cache in [&mut Day::default(), &mut kept] {
                    let mut buf = Vec::new();
                    date(&mut buf, Some(d), cache);
                    assert_eq!(String::from_utf8(buf).unwrap(), want);
                }
            }
            unix += 7_919_993;
        }
        // Second by second over day boundaries, one cache throughout.
        for day in [-719_529i64, -1, 0, 1, 20_000, 2_932_896] {
            for unix in day * 86_400 - 3..day * 86_400 + 3 {
                let d = MailDate {
                    unix,
                    nanos: 0,
                    offset_minutes: None,
                    tz_assumed: false,
                };
                let mut buf = Vec::new();
                date(&mut buf, Some(d), &mut kept);
                assert_eq!(
                    String::from_utf8(buf).unwrap(),
                    serde_json::to_string(&d.to_rfc3339_utc()).unwrap()
                );
            }
        }
    }
}
