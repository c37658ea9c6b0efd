//! What an SMTP/LMTP server announces in its EHLO/LHLO reply
//! ([`Capabilities`]) and the ESMTP parameters the client builds from it
//! ([`MailParams`] for DSN, [`xtext`]).
//!
//! Guarantees: parsing never fails (an unknown keyword is ignored, a bad
//! SIZE is "no limit given"); AUTH mechanisms come out upper case, once
//! each, from both the `AUTH` and the old `AUTH=` form; xtext leaves no
//! byte that could break a command line.

use crate::proto::smtp::Reply;

/// DSN (RFC 3461) parameters for one transaction; used only when the server
/// offers DSN.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailParams<'a> {
    /// `RET=FULL|HDRS`.
    pub ret: Option<&'a str>,
    /// `ENVID=` (xtext-encoded here).
    pub envid: Option<&'a str>,
    /// `NOTIFY=` for every recipient (`NEVER` or `SUCCESS,FAILURE,DELAY`).
    pub notify: Option<&'a str>,
}

/// RFC 3461 xtext: `+`, `=`, controls, space and non-ASCII as `+XX`.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// What the server announced in its EHLO/LHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// EHLO or LHLO succeeded (false after a HELO fallback).
    pub extended: bool,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE (RFC 1870); `Some(0)` when no limit was given.
    pub size: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eightbitmime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status: bool,
    /// AUTH mechanisms, upper case (also from the old `AUTH=` form).
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Parse the lines after the first of an EHLO/LHLO reply.
    pub fn parse(reply: &Reply) -> Capabilities {
        let mut c = Capabilities {
            extended: true,
            ..Capabilities::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            let kw = kw.to_ascii_uppercase();
            match kw.as_str() {
                "PIPELINING" => c.pipelining = true,
                "SIZE" => c.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => c.eightbitmime = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "DSN" => c.dsn = true,
                "STARTTLS" => c.starttls = true,
                "ENHANCEDSTATUSCODES" => c.enhanced_status = true,
                _ => {}
            }
            let mechs: Vec<&str> = if kw == "AUTH" {
                words.collect()
            } else if let Some(first) = kw.strip_prefix("AUTH=") {
                let mut v = vec![first];
                v.extend(line.split_ascii_whitespace().skip(1));
                v
            } else {
                continue;
            };
            for m in mechs {
                let m = m.to_ascii_uppercase();
                if !m.is_empty() && !c.auth.contains(&m) {
                    c.auth.push(m);
                }
            }
        }
        c
    }
}
