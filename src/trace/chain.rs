//! The path a message took, computed from its parsed [`Trace`]: the hop
//! chain oldest first, the delay of every hop, the total transit time, the
//! anomalies worth a second look, and the authentication picture.
//!
//! This module owns the analysis, not the parsing (see [`super::received`],
//! [`super::date`], [`super::authres`]) and not the presentation (see
//! `tools::trace`). Like the rest of [`super`], it never prints, fails or
//! panics.
//!
//! Conventions: hops are numbered from 1, oldest first, in [`Anomaly::hop`]
//! and [`AuthEntry::hop`]. Only `Received:` fields make the chain;
//! `X-Received:` fields (Gmail's internal hops) are kept apart in
//! [`Chain::x_received`], oldest first, and never spliced in.
//!
//! DMARC alignment is computed offline, relaxed: the organisational domain
//! of a name comes from the Public Suffix List ([`crate::trace::psl`];
//! `mail.example.co.uk` gives `example.co.uk`), as [`Alignment::method`] says.

use super::date::{self, MailDate};
use super::received::{Hop, normalize_ip, trim};
use super::{AuthResults, HopKind, Trace};

/// Anomaly kind: a hop dated before the hop (or Date header) before it.
pub const CLOCK_SKEW: &str = "clock_skew";
/// Anomaly kind: the Date header is later than the first hop's date.
pub const DATE_AFTER_FIRST_HOP: &str = "date_after_first_hop";
/// Anomaly kind: the hop whose delay is larger than every other hop's
/// (informational; not reported when the largest delay is shared).
pub const LARGEST_DELAY: &str = "largest_delay";
/// Anomaly kind: a hop's sender does not match the previous hop's receiver.
pub const CHAIN_GAP: &str = "chain_gap";
/// Anomaly kind: the HELO is an address literal other than the connecting address.
pub const HELO_IP_MISMATCH: &str = "helo_ip_mismatch";
/// Anomaly kind: the receiver noted `(may be forged)`.
pub const MAY_BE_FORGED: &str = "may_be_forged";
/// Anomaly kind: a date without a usable zone, read as UTC.
pub const TZ_ASSUMED: &str = "tz_assumed";
/// Anomaly kind: a hop without a readable date.
pub const NO_DATE: &str = "no_date";
/// Anomaly kind (informational): a hop from the loopback address
/// (127.0.0.0/8, `::1`): one host handing the message to itself.
pub const LOOPBACK: &str = "loopback";
/// Anomaly kind (informational): a hop into or out of a content filter
/// (amavis, SpamAssassin, ClamAV, ... or received `by localhost`).
pub const CONTENT_FILTER: &str = "content_filter";
/// Anomaly kind (informational): a mailing list or forwarding boundary: a
/// `List-Id`/`List-Post` header (message-wide) or a hop whose `for`
/// address differs from the previous hop's.
pub const LIST_BOUNDARY: &str = "list_boundary";
/// Anomaly kind: a `DKIM-Signature` for a domain no
/// `Authentication-Results` (nor ARC-Authentication-Results) gives a
/// `dkim` result for, although some receiver did report results.
pub const DKIM_UNVERIFIED: &str = "dkim_unverified";
/// Anomaly kind: one receiver reports `pass` and another `fail` or
/// `softfail` for the same method (and domain, when both name one).
pub const AUTH_CONFLICT: &str = "auth_conflict";
/// Anomaly kind: an `Authentication-Results` reports `dmarc=pass` but the
/// offline alignment of its own SPF and DKIM passes with From fails.
pub const DMARC_MISALIGNED: &str = "dmarc_misaligned";
/// Anomaly kind: an ARC-Seal with `cv=fail`.
pub const ARC_FAIL: &str = "arc_fail";
/// Anomaly kind: an ARC set whose ARC-Seal, ARC-Message-Signature or
/// ARC-Authentication-Results is missing.
pub const ARC_INCOMPLETE: &str = "arc_incomplete";

/// Anomaly kinds that are information, not warnings: `--strict` ignores them.
pub const INFORMATIONAL: &[&str] = &[LARGEST_DELAY, LOOPBACK, CONTENT_FILTER, LIST_BOUNDARY];

/// Whether an anomaly kind is informational (see [`INFORMATIONAL`]).
pub fn is_informational(kind: &str) -> bool {
    INFORMATIONAL.contains(&kind)
}

/// Something in the trace worth a second look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// One of the `const` kinds of this module (`clock_skew`, ...).
    pub kind: &'static str,
    /// The hop concerned, numbered from 1 oldest first; `None` for the
    /// message as a whole.
    pub hop: Option<usize>,
    /// A sentence for people.
    pub text: String,
}

/// One method's verdict, reduced to what the picture needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `spf`, `dkim`, `dmarc`, ...
    pub method: String,
    /// `pass`, `fail`, ...
    pub result: String,
    /// The domain the verdict is about: `smtp.mailfrom`'s domain for SPF,
    /// `header.d` for DKIM, `header.from` for DMARC, when given.
    pub domain: Option<String>,
}

/// One `Authentication-Results` field, tied to a hop when its authserv-id
/// names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEntry {
    /// The authserv-id (`None` at Microsoft 365).
    pub authserv_id: Option<String>,
    /// The newest hop whose `by` equals the authserv-id (case-insensitive),
    /// numbered from 1 oldest first.
    pub hop: Option<usize>,
    /// The verdicts in order.
    pub verdicts: Vec<Verdict>,
}

/// One ARC set (RFC 8617): the three fields sharing an instance `i=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcSet {
    /// `i=`.
    pub instance: u32,
    /// The ARC-Seal's `cv=` (`none`, `pass`, `fail`).
    pub cv: Option<String>,
    /// The ARC-Seal's `d=` and `s=`.
    pub seal_domain: Option<String>,
    /// The ARC-Seal's `s=`.
    pub seal_selector: Option<String>,
    /// The ARC-Message-Signature's `d=`.
    pub signature_domain: Option<String>,
    /// The ARC-Message-Signature's `s=`.
    pub signature_selector: Option<String>,
    /// The ARC-Authentication-Results, tied to a hop like an
    /// `Authentication-Results`.
    pub results: Option<AuthEntry>,
    /// All three fields are present.
    pub complete: bool,
}

/// One `Received-SPF` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfEntry {
    /// The result, lower case.
    pub result: Option<String>,
    /// `client-ip=`.
    pub client_ip: Option<String>,
    /// `envelope-from=`.
    pub envelope_from: Option<String>,
    /// `helo=`.
    pub helo: Option<String>,
    /// `receiver=`.
    pub receiver: Option<String>,
    /// The newest hop whose `by` is the receiver, else whose `ip` is the
    /// client address; numbered from 1 oldest first.
    pub hop: Option<usize>,
}

/// One `DKIM-Signature` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimSig {
    /// `d=`, lower case.
    pub domain: Option<String>,
    /// `s=`.
    pub selector: Option<String>,
}

/// DMARC alignment of the From domain, computed offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alignment {
    /// The domain of the From header's address.
    pub from_domain: Option<String>,
    /// Domains SPF passed for (from `smtp.mailfrom`).
    pub spf_pass_domains: Vec<String>,
    /// Domains DKIM passed for (`header.d`).
    pub dkim_pass_domains: Vec<String>,
    /// An SPF pass for a domain in the From domain's organisation.
    pub spf_aligned: bool,
    /// A DKIM pass for a domain in the From domain's organisation.
    pub dkim_aligned: bool,
    /// Either aligned: DMARC would pass (policy aside).
    pub dmarc_pass: bool,
    /// How it was computed, in words.
    pub method: &'static str,
}

/// The analysis of one message's trace. The hops borrow their text from
/// the unfolded trace fields (see [`analyse_message`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Chain<'a> {
    /// `Received:` hops, oldest first.
    pub hops: Vec<Hop<'a>>,
    /// Seconds each hop took, parallel to `hops`: from the previous dated
    /// hop (the Date header for the first), `None` when either date is missing.
    pub delays: Vec<Option<f64>>,
    /// `X-Received:` hops, oldest first, apart from the chain.
    pub x_received: Vec<Hop<'a>>,
    /// The Date header.
    pub date: Option<MailDate>,
    /// Seconds from the Date header to the last hop.
    pub total_transit_s: Option<f64>,
    /// Anomalies in hop order, message-wide ones last.
    pub anomalies: Vec<Anomaly>,
    /// Every `Authentication-Results`, in header order (newest first).
    pub auth: Vec<AuthEntry>,
    /// ARC sets by instance, lowest first.
    pub arc: Vec<ArcSet>,
    /// Every `Received-SPF`, in header order.
    pub received_spf: Vec<SpfEntry>,
    /// Every `DKIM-Signature`, in header order.
    pub dkim_signatures: Vec<DkimSig>,
    /// DMARC alignment from the newest `Authentication-Results`.
    pub alignment: Alignment,
    /// What could not be read, in words.
    pub warnings: Vec<String>,
}

impl Chain<'_> {
    /// The same chain owning all its text.
    pub fn into_owned(self) -> Chain<'static> {
        Chain {
            hops: self.hops.into_iter().map(Hop::into_owned).collect(),
            delays: self.delays,
            x_received: self.x_received.into_iter().map(Hop::into_owned).collect(),
            date: self.date,
            total_transit_s: self.total_transit_s,
            anomalies: self.anomalies,
            auth: self.auth,
            arc: self.arc,
            received_spf: self.received_spf,
            dkim_signatures: self.dkim_signatures,
            alignment: self.alignment,
            warnings: self.warnings,
        }
    }
}

/// The text of [`Alignment::method`].
pub const ALIGNMENT_METHOD: &str = "relaxed; organisational domain from the Public Suffix List; from the newest Authentication-Results";

/// Analyse a header block (or a whole message): [`super::collect`] plus the
/// `Date:` and `From:` headers.
pub fn analyse(message: &[u8]) -> Chain<'static> {
    let data = crate::message::normalize(message.to_vec());
    let msg = crate::message::Message::new(data);
    analyse_message(&msg, &msg.fields(), &mut super::Buffers::default()).into_owned()
}

/// [`analyse`] of a message already normalised by
/// [`crate::message::normalize`], given its `fields()`: the same result
/// without copying and splitting the header block again. The trace fields
/// are read with `bufs` (see [`super::Buffers`]), which the hops borrow:
/// a caller that keeps it from message to message allocates it once.
pub fn analyse_message<'a>(
    msg: &crate::message::Message,
    fields: &[crate::message::Field<'_>],
    bufs: &'a mut super::Buffers,
) -> Chain<'a> {
    let mut date_header = None;
    let mut from_header = None;
    let mut warnings = Vec::new();
    for f in fields {
        if f.is("Date") && date_header.is_none() {
            let t = field_text(f);
            date_header = date::parse(&t);
            if date_header.is_none() {
                warnings.push(format!("Date header not understood: {t}"));
            }
        } else if f.is("From") && from_header.is_none() {
            from_header = Some(field_text(f));
        }
    }
    if let Some((n, line)) = msg.stray_line() {
        // The header block ends there for every reader; never silently,
        // since the trace fields after it are lost.
        warnings.push(format!(
            "header line {n} is not a field, so the header block ends there: '{}'",
            visible(line)
        ));
    }
    // `collect` normalises again. That changes nothing unless a CR is left
    // before a newline (from `\r\r\n`), so only then is the copy needed.
    // (A CR is looked for, then its newline: cheaper than setting up a
    // two-byte searcher per message.)
    let b = msg.bytes();
    let trace = if memchr::memchr_iter(b'\r', b).any(|k| b.get(k + 1) == Some(&b'\n')) {
        super::collect(msg.bytes())
    } else {
        super::collect_fields_in(fields, bufs)
    };
    let mut c = build(trace, date_header, from_header.as_deref());
    warnings.append(&mut c.warnings);
    c.warnings = warnings;
    c
}

/// [`crate::message::Field::text`], borrowing the value when it is one
/// line of valid UTF-8 (nearly every `Date:` and `From:`): unfolding
/// changes nothing there, so only the trim is left.
fn field_text<'f>(f: &crate::message::Field<'f>) -> std::borrow::Cow<'f, str> {
    if memchr::memchr2(b'\n', b'\r', f.value).is_none()
        && let Ok(s) = std::str::from_utf8(f.value)
    {
        return std::borrow::Cow::Borrowed(s.trim());
    }
    std::borrow::Cow::Owned(f.text())
}

/// A header line as text a terminal shows safely: control characters
/// escaped, at most 80 characters.
fn visible(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", crate::proto::transcript::printable(&text[..i])),
        None => crate::proto::transcript::printable(&text).into_owned(),
    }
}

/// Build the chain from a trace, the Date header and the From header's value.
/// The trace is taken by value so that its hops move into the chain
/// instead of being copied.
pub fn build<'a>(
    mut trace: Trace<'a>,
    date_header: Option<MailDate>,
    from_header: Option<&str>,
) -> Chain<'a> {
    let mut hops = Vec::with_capacity(trace.hops.len());
    let mut x_received = Vec::new();
    let mut warnings = Vec::new();
    for (kind, hop) in std::mem::take(&mut trace.hops).into_iter().rev() {
        match kind {
            HopKind::Received => hops.push(hop),
            HopKind::XReceived => x_received.push(hop),
        }
    }
    let trace = &trace;
    for (i, h) in hops.iter().enumerate() {
        for w in &h.warnings {
            warnings.push(format!("hop {}: {w}", i + 1));
        }
    }

    let mut delays = Vec::with_capacity(hops.len());
    let mut prev = date_header;
    for h in &hops {
        delays.push(match (prev, h.date) {
            (Some(a), Some(b)) => Some(seconds_between(&a, &b)),
            _ => None,
        });
        if h.date.is_some() {
            prev = h.date;
        }
    }
    let total_transit_s = match (date_header, hops.iter().rev().find_map(|h| h.date)) {
        (Some(a), Some(b)) if !hops.is_empty() => Some(seconds_between(&a, &b)),
        _ => None,
    };

    let mut anomalies = anomalies(&hops, &delays, date_header);
    let auth = auth_entries(&trace.auth_results, &hops);
    let alignment = alignment(trace.auth_results.first(), from_header);
    let arc = arc_sets(trace, &hops);
    let received_spf = spf_entries(trace, &hops);
    let dkim_signatures: Vec<DkimSig> = trace
        .dkim_signatures
        .iter()
        .map(|s| DkimSig {
            domain: s.domain.clone(),
            selector: s.selector.clone(),
        })
        .collect();
    for l in &trace.list_headers {
        anomalies.push(Anomaly {
            kind: LIST_BOUNDARY,
            hop: None,
            text: format!("the message passed through a mailing list ({l})"),
        });
    }
    auth_anomalies(
        trace,
        &auth,
        &arc,
        &received_spf,
        &dkim_signatures,
        from_header,
        &mut anomalies,
    );
    Chain {
        hops,
        delays,
        x_received,
        date: date_header,
        total_transit_s,
        anomalies,
        auth,
        arc,
        received_spf,
        dkim_signatures,
        alignment,
        warnings,
    }
}

/// `b - a` in seconds, fractions kept.
fn seconds_between(a: &MailDate, b: &MailDate) -> f64 {
    let s = b.unix.saturating_sub(a.unix) as f64;
    s + (f64::from(b.nanos) - f64::from(a.nanos)) / 1e9
}

/// Seconds as people read them: `0s`, `1.5s`, `2m03s`, `1h02m`, `-3s`.
pub fn human_seconds(s: f64) -> String {
    let neg = s < 0.0;
    let a = s.abs();
    let body = if a < 10.0 && a.fract() != 0.0 {
        format!("{a:.1}s")
    } else if a < 60.0 {
        format!("{}s", a.round() as i64)
    } else if a < 3600.0 {
        let t = a.round() as i64;
        format!("{}m{:02}s", t / 60, t % 60)
    } else if a < 86400.0 * 2.0 {
        let t = (a / 60.0).round() as i64;
        format!("{}h{:02}m", t / 60, t % 60)
    } else {
        format!("{}d", (a / 86400.0).round() as i64)
    };
    if neg { format!("-{body}") } else { body }
}

fn anomalies(hops: &[Hop], delays: &[Option<f64>], date_header: Option<MailDate>) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut largest: Option<(usize, f64)> = None;
    let mut runner_up = f64::NEG_INFINITY;
    // The previous hop's single recipient, carried to the next hop.
    let mut prev_rcpt: Option<&str> = None;
    for (i, h) in hops.iter().enumerate() {
        let n = i + 1;
        let rcpt = h.for_addr.as_deref().and_then(single_rcpt);
        match delays[i] {
            Some(d) if d < 0.0 && i == 0 => out.push(Anomaly {
                kind: DATE_AFTER_FIRST_HOP,
                hop: Some(n),
                text: format!(
                    "the Date header is {} after the first hop's date (sender's clock or a rewritten Date)",
                    human_seconds(-d)
                ),
            }),
            Some(d) if d < 0.0 => out.push(Anomaly {
                kind: CLOCK_SKEW,
                hop: Some(n),
                text: format!(
                    "hop {n} is dated {} before the hop before it (clock skew at {})",
                    human_seconds(-d),
                    h.by.as_deref().unwrap_or("an unnamed receiver")
                ),
            }),
            Some(d) => {
                match largest {
                    Some((_, m)) if d <= m => runner_up = runner_up.max(d),
                    Some((_, m)) => {
                        runner_up = m;
                        largest = Some((i, d));
                    }
                    None => largest = Some((i, d)),
                }
            }
            None => {}
        }
        if h.date.is_none() {
            out.push(Anomaly {
                kind: NO_DATE,
                hop: Some(n),
                text: format!("hop {n} has no readable date"),
            });
        }
        if h.tz_assumed {
            out.push(Anomaly {
                kind: TZ_ASSUMED,
                hop: Some(n),
                text: format!("hop {n}'s date has no usable time zone; read as UTC"),
            });
        }
        if h.may_be_forged {
            out.push(Anomaly {
                kind: MAY_BE_FORGED,
                hop: Some(n),
                text: format!(
                    "the receiver of hop {n} noted the reverse DNS of {} may be forged",
                    h.ip.as_deref().unwrap_or("the client")
                ),
            });
        }
        if let Some(what) = content_filter(h) {
            out.push(Anomaly {
                kind: CONTENT_FILTER,
                hop: Some(n),
                text: format!("hop {n} passes through a content filter ({what})"),
            });
        } else if h.ip.as_deref().is_some_and(is_loopback) {
            out.push(Anomaly {
                kind: LOOPBACK,
                hop: Some(n),
                text: format!(
                    "hop {n} comes from the loopback address: a program on the same host as {} handed it over",
                    h.by.as_deref().unwrap_or("the receiver")
                ),
            });
        }
        if let Some(prev) = std::mem::replace(&mut prev_rcpt, rcpt)
            && let Some(cur) = rcpt
            && !prev.eq_ignore_ascii_case(cur)
        {
            out.push(Anomaly {
                kind: LIST_BOUNDARY,
                hop: Some(n),
                text: format!(
                    "hop {n} is for {cur} but the hop before was for {prev} (a list or forward)"
                ),
            });
        }
        if let Some(helo) = h.helo.as_deref()
            && let Some(helo_ip) = literal_ip(helo)
            && let Some(ip) = h.ip.as_deref()
            && normalize_ip(ip).as_deref().unwrap_or(ip) != helo_ip
        {
            out.push(Anomaly {
                kind: HELO_IP_MISMATCH,
                hop: Some(n),
                text: format!("hop {n}: HELO claims {helo_ip} but the client connected from {ip}"),
            });
        }
        if i > 0
            && let Some(by) = hops[i - 1].by.as_deref()
            && let Some(text) = gap(n, by, &hops[i - 1], h)
        {
            out.push(Anomaly {
                kind: CHAIN_GAP,
                hop: Some(n),
                text,
            });
        }
    }
    if let Some((i, d)) = largest
        && d > 0.0
        && d > runner_up
        && runner_up > f64::NEG_INFINITY
    {
        out.push(Anomaly {
            kind: LARGEST_DELAY,
            hop: Some(i + 1),
            text: format!(
                "the largest delay, {}, is at hop {}",
                human_seconds(d),
                i + 1
            ),
        });
    }
    if let Some(d) = date_header
        && d.tz_assumed
    {
        out.push(Anomaly {
            kind: TZ_ASSUMED,
            hop: None,
            text: "the Date header has no usable time zone; read as UTC".to_string(),
        });
    }
    out
}

/// An address literal (`[1.2.3.4]`, `1.2.3.4`, `[IPv6:...]`), normalised.
fn literal_ip(s: &str) -> Option<String> {
    // `trim_start_matches('[')` and `trim_end_matches(']')` byte by byte.
    let t = trim(s);
    let b = t.as_bytes();
    let a = b.iter().take_while(|&&c| c == b'[').count();
    let z = b.len() - b[a..].iter().rev().take_while(|&&c| c == b']').count();
    let t = t.get(a..z)?;
    let t = t
        .strip_prefix("IPv6:")
        .or_else(|| t.strip_prefix("ipv6:"))
        .unwrap_or(t);
    // Only hex digits, dots and colons can make an address: a host name is
    // turned away before the parser tries it.
    if !t
        .bytes()
        .all(|c| c.is_ascii_hexdigit() || c == b'.' || c == b':')
        || t.parse::<std::net::IpAddr>().is_err()
    {
        return None;
    }
    normalize_ip(t)
}

/// [`literal_ip`] as it was written before the byte trims (for the test).
#[cfg(test)]
fn literal_ip_reference(s: &str) -> Option<String> {
    let t = trim(s).trim_start_matches('[').trim_end_matches(']');
    let t = t
        .strip_prefix("IPv6:")
        .or_else(|| t.strip_prefix("ipv6:"))
        .unwrap_or(t);
    if t.parse::<std::net::IpAddr>().is_err() {
        return None;
    }
    normalize_ip(t)
}

/// The organisational domain of a host name, lower case: see
/// [`crate::trace::psl::org_domain`].
pub fn org_domain(name: &str) -> String {
    crate::trace::psl::org_domain(name)
}

/// Whether two names have one organisational domain.
fn same_org(a: &str, b: &str) -> bool {
    // An organisational domain is whole labels at the end of the name, so
    // two names whose last labels differ have different ones. Checked
    // first, for top-level names (letters, digits, `-`, a letter among
    // them; addresses are their own organisation and never pass), since
    // it needs no copy and no look-up in the list.
    fn tld(n: &str) -> Option<&str> {
        // The last label after trailing dots, read backwards in one pass.
        let n = trim(n);
        let b = n.as_bytes();
        let mut end = b.len();
        while end > 0 && b[end - 1] == b'.' {
            end -= 1;
        }
        let mut start = end;
        let mut letter = false;
        while start > 0 && b[start - 1] != b'.' {
            let c = b[start - 1];
            if !(c.is_ascii_alphanumeric() || c == b'-') {
                return None;
            }
            letter |= c.is_ascii_alphabetic();
            start -= 1;
        }
        letter.then(|| n.get(start..end)).flatten()
    }
    if let (Some(x), Some(y)) = (tld(a), tld(b))
        && !x.eq_ignore_ascii_case(y)
    {
        return false;
    }
    let (mut x, mut y) = ([0u8; 256], [0u8; 256]);
    match (org_domain_in(a, &mut x), org_domain_in(b, &mut y)) {
        (Some(x), Some(y)) => x == y,
        _ => org_domain(a) == org_domain(b),
    }
}

/// [`org_domain`] of an ASCII name of up to 256 bytes, lower-cased into
/// `buf` (the same steps as [`crate::trace::psl::org_domain`], without a
/// `String`); `None` for any other name.
fn org_domain_in<'b>(name: &str, buf: &'b mut [u8; 256]) -> Option<&'b str> {
    let n = name.trim().trim_end_matches('.').as_bytes();
    let low = buf.get_mut(..n.len())?;
    if !n.is_ascii() {
        return None;
    }
    low.copy_from_slice(n);
    low.make_ascii_lowercase();
    let name = std::str::from_utf8(low).ok()?;
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    let bare = bare.strip_prefix("ipv6:").unwrap_or(bare);
    // Only hex digits, `.` and `:` make an address: a host name skips the
    // parser.
    if bare
        .bytes()
        .all(|c| c.is_ascii_hexdigit() || c == b'.' || c == b':')
        && bare.parse::<std::net::IpAddr>().is_ok()
    {
        return Some(bare);
    }
    Some(::psl::domain_str(name).unwrap_or(name))
}

/// Why hop `n` does not continue from the previous hop's `by`, if it does not.
fn gap(n: usize, by: &str, prev: &Hop, h: &Hop) -> Option<String> {
    // An address as the receiver's name (Gmail's internal hops) says
    // nothing checkable about the next sender's names.
    if literal_ip(by).is_some() {
        return None;
    }
    // At most three names (from, helo, rdns), each once: on the stack.
    let mut seen = [""; 3];
    let mut count = 0;
    for n in [h.from.as_deref(), h.helo.as_deref(), h.rdns.as_deref()]
        .into_iter()
        .flatten()
        .map(trim)
    {
        if !n.is_empty()
            && !seen[..count].iter().any(|m| m.eq_ignore_ascii_case(n))
            && let Some(slot) = seen.get_mut(count)
        {
            *slot = n;
            count += 1;
        }
    }
    let names = &seen[..count];
    if names.is_empty() {
        return None;
    }
    let by_l = trim(by).trim_end_matches('.');
    for name in names {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.eq_ignore_ascii_case(by_l) {
            return None;
        }
        let literal = literal_ip(bare);
        if let (Some(ip), Some(by_ip)) = (literal.as_deref(), prev.by_ip.as_deref())
            && normalize_ip(by_ip).as_deref() == Some(ip)
        {
            return None;
        }
        if literal.is_none() && by_l.contains('.') && same_org(bare, by_l) {
            return None;
        }
    }
    // A hop from the loopback (a content filter on the same host) continues
    // from whatever the previous hop's receiver was.
    if h.ip.as_deref().is_some_and(is_loopback) {
        return None;
    }
    // Written piece by piece: this is the anomaly nearly every message
    // with a gap has, and `format!` with a joined list costs several
    // times as much.
    const A: &str = " comes from ";
    const B: &str = " but the previous hop was received by ";
    let len = names.iter().map(|m| m.len() + 3).sum::<usize>() + by.len();
    let mut text = String::with_capacity(4 + 20 + A.len() + B.len() + len);
    text.push_str("hop ");
    push_decimal(&mut text, n);
    text.push_str(A);
    for (k, name) in names.iter().enumerate() {
        if k > 0 {
            text.push_str(" / ");
        }
        text.push_str(name);
    }
    text.push_str(B);
    text.push_str(by);
    Some(text)
}

/// `n` in decimal, appended to `out` (what `{n}` writes).
fn push_decimal(out: &mut String, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// A `for` value naming one recipient (not `multiple recipients`), bare.
fn single_rcpt(f: &str) -> Option<&str> {
    // `trim_start_matches('<')` and `trim_end_matches('>')` byte by byte.
    let t = trim(f);
    let b = t.as_bytes();
    let a = b.iter().take_while(|&&c| c == b'<').count();
    let z = b.len() - b[a..].iter().rev().take_while(|&&c| c == b'>').count();
    let f = trim(t.get(a..z)?);
    let spaced = if f.is_ascii() {
        f.bytes().any(|c| matches!(c, b'\t'..=b'\r' | b' '))
    } else {
        f.contains(char::is_whitespace)
    };
    (memchr::memchr(b'@', f.as_bytes()).is_some() && !spaced).then_some(f)
}

/// Words that name a content filter in a Received field.
const FILTER_WORDS: &[&str] = &[
    "amavis",
    "spamassassin",
    "spamd",
    "clamav",
    "clamsmtp",
    "mimedefang",
    "rspamd",
    "dspam",
];

/// What makes `h` a content-filter hop, if anything: a filter's name in
/// the field, or a receiver called `localhost`.
fn content_filter(h: &Hop) -> Option<String> {
    if let Some(w) = filter_word(h.raw.as_bytes()) {
        return Some(w.to_string());
    }
    // Final delivery over LMTP (Dovecot, Cyrus) is often stamped `by
    // localhost` too; that is a mailbox server, not a filter.
    if h.protocol.as_deref().is_some_and(|p| p.starts_with("LMTP")) {
        return None;
    }
    let by = trim(h.by.as_deref()?).trim_end_matches('.');
    (by.eq_ignore_ascii_case("localhost") || by.eq_ignore_ascii_case("localhost.localdomain"))
        .then(|| format!("received by {by}"))
}

/// The first of [`FILTER_WORDS`] that `raw` contains, ignoring ASCII case.
fn filter_word(raw: &[u8]) -> Option<&'static str> {
    // Every filter word contains one of four keys (`spam`, `clam`,
    // `amavis`, `mimedefang`): a field with none of them (nearly every
    // field) is turned away by one pass, before the eight searches.
    // Each key has an `m` at a known place: one pass for the `m`s (either
    // case), and the keys compared only there, ignoring case, so that
    // only a field that has one is lower-cased.
    let key_at = |p: usize| {
        let at = |from: usize, key: &[u8]| {
            raw.get(from..from + key.len())
                .is_some_and(|r| r.eq_ignore_ascii_case(key))
        };
        (p >= 3 && (at(p - 3, b"spam") || at(p - 3, b"clam")))
            || (p >= 1 && at(p - 1, b"amavis"))
            || at(p, b"mimedefang")
    };
    if !memchr::memchr2_iter(b'm', b'M', raw).any(key_at) {
        return None;
    }
    let low = raw.to_ascii_lowercase();
    FILTER_WORDS
        .iter()
        .copied()
        .find(|w| memchr::memmem::find(&low, w.as_bytes()).is_some())
}

fn is_loopback(ip: &str) -> bool {
    // A loopback address is written `127.` first or is IPv6 (with `:`):
    // anything else is turned away before the parser.
    if !ip.starts_with("127.") && !ip.contains(':') {
        return false;
    }
    ip.parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback())
}

/// The domain of an address (`Name <a@b.example>`, `a@b`), lower case.
pub fn address_domain(s: &str) -> Option<String> {
    let bare = bare_address(s);
    let at = memchr::memrchr(b'@', bare.as_bytes())?;
    let d = bare.get(at + 1..)?;
    let d = d.trim().trim_end_matches('>').trim_end_matches('.');
    if d.is_empty() {
        None
    } else {
        Some(d.to_ascii_lowercase())
    }
}

/// [`crate::message::bare_address`] without the copy.
fn bare_address(s: &str) -> &str {
    let s = s.trim();
    if let (Some(l), Some(r)) = (s.rfind('<'), s.rfind('>'))
        && l < r
    {
        return s.get(l + 1..r).unwrap_or("").trim();
    }
    s
}

fn verdicts(ar: &AuthResults) -> Vec<Verdict> {
    ar.results
        .iter()
        .map(|r| {
            let domain = match r.method.as_str() {
                "spf" => r
                    .property("smtp", "mailfrom")
                    .map(|v| address_domain(v).unwrap_or_else(|| v.to_ascii_lowercase()))
                    .or_else(|| r.property("smtp", "helo").map(str::to_ascii_lowercase)),
                "dkim" => r
                    .property("header", "d")
                    .map(str::to_ascii_lowercase)
                    .or_else(|| {
                        r.property("header", "i")
                            .and_then(|i| i.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
                    }),
                "dmarc" => r.property("header", "from").map(str::to_ascii_lowercase),
                _ => None,
            };
            Verdict {
                method: r.method.clone(),
                result: r.result.clone(),
                domain,
            }
        })
        .collect()
}

fn auth_entries(results: &[AuthResults], hops: &[Hop]) -> Vec<AuthEntry> {
    results
        .iter()
        .map(|ar| {
            let hop = ar.authserv_id.as_deref().and_then(|id| hop_by(hops, id));
            AuthEntry {
                authserv_id: ar.authserv_id.clone(),
                hop,
                verdicts: verdicts(ar),
            }
        })
        .collect()
}

/// The newest hop whose `by` is `id` (case-insensitive), numbered from 1.
fn hop_by(hops: &[Hop], id: &str) -> Option<usize> {
    let id = trim(id).trim_end_matches('.');
    hops.iter()
        .rposition(|h| {
            h.by.as_deref()
                .is_some_and(|b| b.trim_end_matches('.').eq_ignore_ascii_case(id))
        })
        .map(|i| i + 1)
}

fn arc_sets(trace: &Trace, hops: &[Hop]) -> Vec<ArcSet> {
    let mut ids: Vec<u32> = trace
        .arc_seals
        .iter()
        .chain(&trace.arc_message_signatures)
        .filter_map(|s| s.instance)
        .chain(trace.arc_auth_results.iter().filter_map(|a| a.instance))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|i| {
            let seal = trace.arc_seals.iter().find(|s| s.instance == Some(i));
            let sig = trace
                .arc_message_signatures
                .iter()
                .find(|s| s.instance == Some(i));
            let aar = trace
                .arc_auth_results
                .iter()
                .find(|a| a.instance == Some(i));
            ArcSet {
                instance: i,
                cv: seal.and_then(|s| s.cv.clone()),
                seal_domain: seal.and_then(|s| s.domain.clone()),
                seal_selector: seal.and_then(|s| s.selector.clone()),
                signature_domain: sig.and_then(|s| s.domain.clone()),
                signature_selector: sig.and_then(|s| s.selector.clone()),
                results: aar.map(|a| AuthEntry {
                    authserv_id: a.authserv_id.clone(),
                    hop: a.authserv_id.as_deref().and_then(|id| hop_by(hops, id)),
                    verdicts: verdicts(a),
                }),
                complete: seal.is_some() && sig.is_some() && aar.is_some(),
            }
        })
        .collect()
}

fn spf_entries(trace: &Trace, hops: &[Hop]) -> Vec<SpfEntry> {
    trace
        .received_spf
        .iter()
        .map(|s| {
            let hop = s
                .receiver
                .as_deref()
                .and_then(|r| hop_by(hops, r))
                .or_else(|| {
                    let ip = normalize_ip(s.client_ip.as_deref()?)?;
                    hops.iter()
                        .rposition(|h| h.ip.as_deref() == Some(ip.as_str()))
                        .map(|i| i + 1)
                });
            SpfEntry {
                result: s.result.clone(),
                client_ip: s.client_ip.clone(),
                envelope_from: s.envelope_from.clone(),
                helo: s.helo.clone(),
                receiver: s.receiver.clone(),
                hop,
            }
        })
        .collect()
}

fn is_failure(result: &str) -> bool {
    matches!(result, "fail" | "softfail" | "permerror")
}

/// The contradictions in the authentication picture.
fn auth_anomalies(
    trace: &Trace,
    auth: &[AuthEntry],
    arc: &[ArcSet],
    spf: &[SpfEntry],
    dkim: &[DkimSig],
    from_header: Option<&str>,
    out: &mut Vec<Anomaly>,
) {
    // Every verdict with who gave it: A-R, ARC-A-R, Received-SPF.
    let mut all: Vec<(String, Option<usize>, Verdict)> = Vec::new();
    for e in auth {
        let who = e
            .authserv_id
            .clone()
            .unwrap_or_else(|| "(no authserv-id)".to_string());
        for v in &e.verdicts {
            all.push((who.clone(), e.hop, v.clone()));
        }
    }
    for set in arc {
        if let Some(e) = &set.results {
            let who = format!(
                "{} (ARC i={})",
                e.authserv_id.as_deref().unwrap_or("(no authserv-id)"),
                set.instance
            );
            for v in &e.verdicts {
                all.push((who.clone(), e.hop, v.clone()));
            }
        }
    }
    for s in spf {
        if let Some(r) = &s.result {
            let domain = s
                .envelope_from
                .as_deref()
                .and_then(address_domain)
                .or_else(|| s.helo.as_ref().map(|h| h.to_ascii_lowercase()));
            let who = format!(
                "Received-SPF{}",
                s.receiver
                    .as_deref()
                    .map(|r| format!(" by {r}"))
                    .unwrap_or_default()
            );
            all.push((
                who,
                s.hop,
                Verdict {
                    method: "spf".to_string(),
                    result: r.clone(),
                    domain,
                },
            ));
        }
    }
    // DKIM signatures nobody verified.
    if !all.is_empty() {
        for sig in dkim {
            let Some(d) = sig.domain.as_deref() else {
                continue;
            };
            let seen = all.iter().any(|(_, _, v)| {
                v.method == "dkim"
                    && v.domain
                        .as_deref()
                        .is_none_or(|x| x.eq_ignore_ascii_case(d))
            });
            if !seen {
                out.push(Anomaly {
                    kind: DKIM_UNVERIFIED,
                    hop: None,
                    text: format!(
                        "a DKIM-Signature for d={d} (s={}) has no dkim result in any Authentication-Results",
                        sig.selector.as_deref().unwrap_or("?")
                    ),
                });
            }
        }
    }
    // pass here, fail there.
    let mut reported: Vec<(String, Option<String>)> = Vec::new();
    for (who_p, hop_p, p) in all.iter().filter(|(_, _, v)| v.result == "pass") {
        if !matches!(p.method.as_str(), "spf" | "dkim" | "dmarc") {
            continue;
        }
        for (who_f, hop_f, f) in all.iter().filter(|(_, _, v)| is_failure(&v.result)) {
            let same_domain = match (&p.domain, &f.domain) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => p.method != "dkim",
            };
            let key = (p.method.clone(), p.domain.clone());
            if f.method != p.method || !same_domain || reported.contains(&key) {
                continue;
            }
            reported.push(key);
            let at = |h: &Option<usize>| h.map(|h| format!(" (hop {h})")).unwrap_or_default();
            out.push(Anomaly {
                kind: AUTH_CONFLICT,
                hop: hop_f.or(*hop_p),
                text: format!(
                    "{}=pass{} from {who_p}{} but {}={} from {who_f}{}",
                    p.method,
                    p.domain
                        .as_deref()
                        .map(|d| format!(" for {d}"))
                        .unwrap_or_default(),
                    at(hop_p),
                    f.method,
                    f.result,
                    at(hop_f)
                ),
            });
        }
    }
    // dmarc=pass that the receiver's own verdicts do not support.
    // (With no Authentication-Results there is nothing to check.)
    if !trace.auth_results.is_empty()
        && let Some(fd) = from_header.and_then(address_domain)
    {
        for (ar, e) in trace.auth_results.iter().zip(auth) {
            if !e
                .verdicts
                .iter()
                .any(|v| v.method == "dmarc" && v.result == "pass")
            {
                continue;
            }
            let a = alignment(Some(ar), from_header);
            if !a.dmarc_pass {
                out.push(Anomaly {
                    kind: DMARC_MISALIGNED,
                    hop: e.hop,
                    text: format!(
                        "{} reports dmarc=pass but no SPF or DKIM pass it reports is aligned with From {fd}",
                        e.authserv_id.as_deref().unwrap_or("an Authentication-Results without authserv-id")
                    ),
                });
            }
        }
    }
    for set in arc {
        if set.cv.as_deref() == Some("fail") {
            out.push(Anomaly {
                kind: ARC_FAIL,
                hop: set.results.as_ref().and_then(|r| r.hop),
                text: format!(
                    "ARC-Seal i={} ({}) says the chain before it failed (cv=fail)",
                    set.instance,
                    set.seal_domain.as_deref().unwrap_or("no d=")
                ),
            });
        }
        if !set.complete {
            out.push(Anomaly {
                kind: ARC_INCOMPLETE,
                hop: set.results.as_ref().and_then(|r| r.hop),
                text: format!(
                    "ARC set i={} lacks its {}",
                    set.instance,
                    [
                        (!trace
                            .arc_seals
                            .iter()
                            .any(|s| s.instance == Some(set.instance)))
                        .then_some("ARC-Seal"),
                        (!trace
                            .arc_message_signatures
                            .iter()
                            .any(|s| s.instance == Some(set.instance)))
                        .then_some("ARC-Message-Signature"),
                        set.results
                            .is_none()
                            .then_some("ARC-Authentication-Results"),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" and ")
                ),
            });
        }
    }
}

fn alignment(newest: Option<&AuthResults>, from_header: Option<&str>) -> Alignment {
    let from_domain = from_header.and_then(address_domain);
    let vs = newest.map(verdicts).unwrap_or_default();
    let pass_domains = |method: &str| -> Vec<String> {
        let mut v: Vec<String> = vs
            .iter()
            .filter(|x| x.method == method && x.result == "pass")
            .filter_map(|x| x.domain.clone())
            .collect();
        v.dedup();
        v
    };
    let spf = pass_domains("spf");
    let dkim = pass_domains("dkim");
    let aligned = |ds: &[String]| {
        from_domain
            .as_deref()
            .is_some_and(|f| ds.iter().any(|d| same_org(d, f)))
    };
    let spf_aligned = aligned(&spf);
    let dkim_aligned = aligned(&dkim);
    Alignment {
        from_domain,
        spf_pass_domains: spf,
        dkim_pass_domains: dkim,
        spf_aligned,
        dkim_aligned,
        dmarc_pass: spf_aligned || dkim_aligned,
        method: ALIGNMENT_METHOD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_org_uses_the_public_suffix_list() {
        assert!(same_org("mail.example.co.uk", "example.co.uk"));
        assert!(same_org("MX.b.example.com.", "a.example.com"));
        // Two registrants under one public suffix are two organisations
        // (the last two labels alone said `co.uk` for both).
        assert!(!same_org("mail.example.co.uk", "mail.other.co.uk"));
        assert!(!same_org("alice.github.io", "bob.github.io"));
        assert!(!same_org("example.com", "example.net"));
    }

    fn block(s: &str) -> Chain<'static> {
        analyse(s.as_bytes())
    }

    const SKEW: &str = "Received: from b.example (b.example [192.0.2.2]) by c.example with ESMTP id 3; Mon, 1 Jan 2024 10:00:05 +0000\n\
Received: from a.example (a.example [192.0.2.1]) by b.example with ESMTP id 2; Mon, 1 Jan 2024 10:00:10 +0000\n\
Received: from client.example (client.example [192.0.2.9]) by a.example with ESMTPSA id 1; Mon, 1 Jan 2024 10:00:02 +0000\n\
From: A <a@a.example>\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\n\n";

    #[test]
    fn a_stray_header_line_is_named_not_skipped_silently() {
        let c = analyse(b"Received: from a by b; 1 Jan 2024 00:00:00 +0000\nquite Delivered-To: x@y\x1b[31m\nReceived: from c by d; 1 Jan 2024 00:00:00 +0000\n\nbody\n");
        assert_eq!(c.hops.len(), 1);
        assert!(
            c.warnings.iter().any(|w| w
                == "header line 2 is not a field, so the header block ends there: 'quite Delivered-To: x@y\\u{1b}[31m'"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn delays_oldest_first() {
        let c = block(SKEW);
        assert_eq!(c.hops.len(), 3);
        assert_eq!(c.hops[0].by.as_deref(), Some("a.example"));
        assert_eq!(c.delays, vec![Some(2.0), Some(8.0), Some(-5.0)]);
        assert_eq!(c.total_transit_s, Some(5.0));
        let kinds: Vec<_> = c.anomalies.iter().map(|a| (a.kind, a.hop)).collect();
        assert_eq!(kinds, vec![(CLOCK_SKEW, Some(3)), (LARGEST_DELAY, Some(2))]);
    }

    #[test]
    fn gap_and_helo_literal() {
        let c = block(
            "Received: from other.example (other.example [198.51.100.1]) by c.example with ESMTP; Mon, 1 Jan 2024 10:00:05 +0000\n\
Received: from [10.0.0.1] (x.example [192.0.2.1]) by b.example with ESMTP; Mon, 1 Jan 2024 10:00:01 +0000\n\n",
        );
        let kinds: Vec<_> = c.anomalies.iter().map(|a| (a.kind, a.hop)).collect();
        assert!(kinds.contains(&(HELO_IP_MISMATCH, Some(1))), "{kinds:?}");
        assert!(kinds.contains(&(CHAIN_GAP, Some(2))), "{kinds:?}");
    }

    #[test]
    fn same_organisation_is_no_gap() {
        let c = block(
            "Received: from relay.example.org (relay.example.org [192.0.2.3]) by mx.example.net; Mon, 1 Jan 2024 10:00:05 +0000\n\
Received: from c (c [192.0.2.1]) by out.example.org; Mon, 1 Jan 2024 10:00:01 +0000\n\n",
        );
        assert!(
            c.anomalies.iter().all(|a| a.kind != CHAIN_GAP),
            "{:?}",
            c.anomalies
        );
    }

    #[test]
    fn alignment_relaxed() {
        let c = block(
            "Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=bounce@mail.example.org; dkim=pass header.d=other.example\n\
Received: from a (a [192.0.2.1]) by mx.example.net; Mon, 1 Jan 2024 10:00:01 +0000\n\
From: x@example.org\n\n",
        );
        assert_eq!(c.auth[0].hop, Some(1));
        assert!(c.alignment.spf_aligned);
        assert!(!c.alignment.dkim_aligned);
        assert!(c.alignment.dmarc_pass);
        assert_eq!(c.alignment.from_domain.as_deref(), Some("example.org"));
    }

    #[test]
    fn alignment_under_a_two_label_public_suffix() {
        // SPF passed for another registrant under co.uk: not aligned; DKIM
        // for a subdomain of the From domain's organisation: aligned.
        let c = block(
            "Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=b@mail.other.co.uk; dkim=pass header.d=mail.example.co.uk\n\
Received: from a (a [192.0.2.1]) by mx.example.net; Mon, 1 Jan 2024 10:00:01 +0000\n\
From: x@news.example.co.uk\n\n",
        );
        assert!(!c.alignment.spf_aligned, "{:?}", c.alignment);
        assert!(c.alignment.dkim_aligned, "{:?}", c.alignment);
        assert!(c.alignment.dmarc_pass);
    }

    #[test]
    fn human() {
        assert_eq!(human_seconds(0.0), "0s");
        assert_eq!(human_seconds(1.5), "1.5s");
        assert_eq!(human_seconds(123.0), "2m03s");
        assert_eq!(human_seconds(-3.0), "-3s");
    }

    /// The quick answers give what the slow ones give.
    #[test]
    fn content_filter_words_and_organisations_as_before() {
        for raw in [
            "from localhost by x with ESMTP",
            "by mail (amavisd-new, port 10024)",
            "by x (SpamAssassin) (ClamAV) with SMTP",
            "from a (clamsmtp) by b",
            "via RSPAMD and DSPAM",
            "MIMEDefang 2.84 and spamd",
            "example.com mail.example.com spa m clam",
            "am mim spa cla",
        ] {
            let reference = FILTER_WORDS
                .iter()
                .copied()
                .find(|w| raw.to_ascii_lowercase().contains(w));
            assert_eq!(filter_word(raw.as_bytes()), reference, "{raw}");
        }
        let long = format!("{} spamd", "x".repeat(600));
        assert_eq!(filter_word(long.as_bytes()), Some("spamd"));
        assert_eq!(filter_word(b"by X (AMaViSd-new)"), Some("amavis"));
        assert_eq!(filter_word(b"SPAMASSASSIN"), Some("spamassassin"));
        let long_name = format!("{}.example.com", "a".repeat(300));
        let names = [
            "mail.example.com",
            "example.com.",
            "MX.Example.COM",
            "a.example.co.uk",
            "b.example.co.uk",
            "example.org",
            "localhost",
            "foo.localhost",
            "[192.0.2.1]",
            "192.0.2.1",
            "2001:db8::1",
            "x.github.io",
            "y.github.io",
            "",
            " spaced.example.com ",
            "xn--p1ai",
            "a.xn--p1ai",
            "EXAMPLE.COM..",
            "[IPv6:2001:DB8::1]",
            "ipv6:::1",
            "[10.0.0.1",
            "deadbeef.com",
            "cafe",
            "mail.example.co.uk.",
            "\u{a0}mail.example.com",
            "h\u{e9}.example.com",
            "H\u{c9}.EXAMPLE.COM",
            "x-y.example.c0m",
            "ex ample.com",
            &long_name,
        ];
        for a in names {
            for b in names {
                assert_eq!(
                    same_org(a, b),
                    org_domain(a) == org_domain(b),
                    "{a:?} {b:?}"
                );
            }
        }
        for s in [
            "[192.0.2.1]",
            "[[192.0.2.1]]",
            "192.0.2.1]",
            "[IPv6:2001:DB8::1]",
            "[ipv6:::1]",
            "[IPV6:::1]",
            " [10.0.0.1] ",
            "[]",
            "[",
            "]",
            "",
            "mx.example.com",
            "[\u{e9}]",
            "\u{a0}[192.0.2.1]",
            "[::ffff:192.0.2.1]",
        ] {
            assert_eq!(literal_ip(s), literal_ip_reference(s), "{s:?}");
        }
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "10.0.0.1",
            "1127.0.0.1",
            "x",
        ] {
            assert_eq!(
                is_loopback(ip),
                ip.parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback()),
                "{ip}"
            );
        }
    }
}
