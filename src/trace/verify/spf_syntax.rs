//! The grammar of an SPF record (RFC 7208 section 12), checked before the
//! record reaches mail-auth, which is lenient where the RFC says a syntax
//! error anywhere is a permerror (4.6) and strict where it must not be
//! (modifier names with `-`, `_` or `.`).
//!
//! This module owns [`check`]: whether a record keeps the grammar, and the
//! record with its unknown modifiers removed (RFC 7208 6: they are
//! ignored), which is what the stub serves. It never panics and is linear
//! in the record.

use std::net::{Ipv4Addr, Ipv6Addr};

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keeps the grammar: the record to serve (unknown modifiers dropped).
    Valid(String),
    /// A syntax error, in words.
    Invalid(String),
}

/// Whether `record` (starting `v=spf1`) keeps RFC 7208's grammar.
pub fn check(record: &str) -> Verdict {
    let Some(rest) = strip_version(record) else {
        return Verdict::Invalid("not an SPF record".into());
    };
    let mut kept = vec!["v=spf1"];
    let (mut redirects, mut exps) = (0, 0);
    for term in rest.split(' ').filter(|t| !t.is_empty()) {
        match term_kind(term) {
            Err(why) => return Verdict::Invalid(format!("{term:?}: {why}")),
            Ok(Term::Redirect) => {
                redirects += 1;
                kept.push(term);
            }
            Ok(Term::Exp) => {
                exps += 1;
                kept.push(term);
            }
            Ok(Term::Mechanism) => kept.push(term),
            Ok(Term::Unknown) => {}
        }
    }
    if redirects > 1 || exps > 1 {
        return Verdict::Invalid("redirect= or exp= more than once".into());
    }
    Verdict::Valid(kept.join(" "))
}

fn strip_version(record: &str) -> Option<&str> {
    let head = record.get(..6)?;
    if !head.eq_ignore_ascii_case("v=spf1") {
        return None;
    }
    let rest = &record[6..];
    (rest.is_empty() || rest.starts_with(' ')).then_some(rest)
}

enum Term {
    Mechanism,
    Redirect,
    Exp,
    Unknown,
}

fn term_kind(term: &str) -> Result<Term, String> {
    // A modifier: a name, then `=` before any `:` or `/`.
    let stop = term.find([':', '/', '=']);
    if let Some(i) = stop
        && term.as_bytes()[i] == b'='
    {
        let (name, value) = (&term[..i], &term[i + 1..]);
        if !is_modifier_name(name) {
            return Err("bad modifier name".into());
        }
        return match name.to_ascii_lowercase().as_str() {
            "redirect" => domain_spec(value).map(|()| Term::Redirect),
            "exp" => domain_spec(value).map(|()| Term::Exp),
            _ => macro_string(value).map(|_| Term::Unknown),
        };
    }
    let body = term.strip_prefix(['+', '-', '?', '~']).unwrap_or(term);
    let end = body.find([':', '/']).unwrap_or(body.len());
    let (name, arg) = (body[..end].to_ascii_lowercase(), &body[end..]);
    match name.as_str() {
        "all" => none(arg),
        "include" | "exists" => match arg.strip_prefix(':') {
            Some(d) => domain_spec(d),
            None => Err("needs :domain".into()),
        },
        "a" | "mx" => a_arg(arg),
        "ptr" => match arg.strip_prefix(':') {
            Some(d) => domain_spec(d),
            None => none(arg),
        },
        "ip4" => {
            let net = arg.strip_prefix(':').ok_or("needs :network")?;
            let (ip, len) = split_len(net);
            ip.parse::<Ipv4Addr>().map_err(|_| "bad IPv4 network")?;
            cidr(len, 32)
        }
        "ip6" => {
            let net = arg.strip_prefix(':').ok_or("needs :network")?;
            let (ip, len) = split_len(net);
            ip.parse::<Ipv6Addr>().map_err(|_| "bad IPv6 network")?;
            cidr(len, 128)
        }
        _ => Err("unknown mechanism".into()),
    }
    .map(|()| Term::Mechanism)
}

fn none(arg: &str) -> Result<(), String> {
    if arg.is_empty() {
        Ok(())
    } else {
        Err("takes no argument".into())
    }
}

/// `ADDRESS/LEN` at the first `/`.
fn split_len(s: &str) -> (&str, Option<&str>) {
    match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    }
}

/// A CIDR length (without its `/`): `0`, or digits without a leading
/// zero, at most `max`.
fn cidr(len: Option<&str>, max: u32) -> Result<(), String> {
    let Some(l) = len else { return Ok(()) };
    let ok = !l.is_empty()
        && l.len() <= 3
        && l.bytes().all(|b| b.is_ascii_digit())
        && (l == "0" || !l.starts_with('0'))
        && l.parse::<u32>().is_ok_and(|n| n <= max);
    if ok {
        Ok(())
    } else {
        Err(format!("bad CIDR length /{l}"))
    }
}

/// `[":" domain-spec] [dual-cidr-length]` of `a` and `mx`.
fn a_arg(arg: &str) -> Result<(), String> {
    if arg.is_empty() {
        return Ok(());
    }
    if arg.starts_with('/') {
        return dual_cidr(arg);
    }
    let rest = arg.strip_prefix(':').ok_or("bad argument")?;
    // The domain-spec may hold `/` itself: try each split.
    let mut last = Err("bad domain-spec".to_string());
    for (i, _) in rest
        .match_indices('/')
        .chain(std::iter::once((rest.len(), "")))
    {
        match (domain_spec(&rest[..i]), dual_cidr(&rest[i..])) {
            (Ok(()), Ok(())) => return Ok(()),
            (Err(e), _) | (_, Err(e)) => last = Err(e),
        }
    }
    last
}

/// `[ "/" ip4-len ] [ "//" ip6-len ]`.
fn dual_cidr(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if let Some(v6) = s.strip_prefix("//") {
        return cidr(Some(v6), 128);
    }
    let s = s.strip_prefix('/').ok_or("bad CIDR length")?;
    match s.split_once("//") {
        Some((v4, v6)) => cidr(Some(v4), 32).and_then(|()| cidr(Some(v6), 128)),
        None => cidr(Some(s), 32),
    }
}

fn is_modifier_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A macro-string; returns whether it ends with a macro-expand, and the
/// byte where its trailing run of literals starts.
fn macro_string(s: &str) -> Result<(bool, usize), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut ends_expand = false;
    let mut lit_start = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                match b.get(i + 1) {
                    Some(b'%' | b'_' | b'-') => i += 2,
                    Some(b'{') => {
                        let close = s[i..].find('}').ok_or("unclosed %{")? + i;
                        macro_body(&s[i + 2..close])?;
                        i = close + 1;
                    }
                    _ => return Err("bad % escape".into()),
                }
                ends_expand = true;
                lit_start = i;
            }
            0x21..=0x7e => {
                ends_expand = false;
                i += 1;
            }
            _ => return Err("a character outside visible ASCII".into()),
        }
    }
    Ok((ends_expand, lit_start))
}

/// Inside `%{...}`: a macro letter, digits, an optional `r`, delimiters.
fn macro_body(m: &str) -> Result<(), String> {
    let mut b = m.bytes();
    if !b
        .next()
        .is_some_and(|c| b"slodiphcrtvSLODIPHCRTV".contains(&c))
    {
        return Err("bad macro letter".into());
    }
    let rest: Vec<u8> = b.collect();
    let mut i = 0;
    while i < rest.len() && rest[i].is_ascii_digit() {
        i += 1;
    }
    if i < rest.len() && (rest[i] == b'r' || rest[i] == b'R') {
        i += 1;
    }
    if rest[i..].iter().all(|c| b".-+,/_=".contains(c)) {
        Ok(())
    } else {
        Err("bad macro transformer".into())
    }
}

/// `macro-string domain-end`: ends with a macro-expand, or with
/// `.toplabel` and an optional dot.
fn domain_spec(s: &str) -> Result<(), String> {
    let (ends_expand, lit_start) = macro_string(s)?;
    if s.is_empty() {
        return Err("empty domain-spec".into());
    }
    if ends_expand {
        return Ok(());
    }
    let tail = &s[lit_start..];
    let tail = tail.strip_suffix('.').unwrap_or(tail);
    let Some((_, top)) = tail.rsplit_once('.') else {
        return Err("no .toplabel at the end".into());
    };
    if is_toplabel(top) {
        Ok(())
    } else {
        Err(format!("bad toplabel {top:?}"))
    }
}

fn is_toplabel(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && (b.iter().any(u8::is_ascii_alphabetic) || b.contains(&b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(r: &str) -> bool {
        matches!(check(r), Verdict::Valid(_))
    }

    #[test]
    fn valid_records() {
        for r in [
            "v=spf1 -all",
            "v=spf1",
            "V=SPF1 +a mx/24 a:example.com/24//64 ~all",
            "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 include:_spf.example.com -all",
            "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all",
            "v=spf1 a:foo:bar/baz.example.com",
            "v=spf1 mx:example.com//0 ptr ptr:example.org ?all",
            "v=spf1 redirect=_spf.example.com",
            "v=spf1 -all exp=explain._spf.%{d}",
            "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all",
            "v=spf1 a:%{d}",
            "v=spf1 a:example.com.",
        ] {
            assert!(ok(r), "{r}: {:?}", check(r));
        }
    }

    #[test]
    fn syntax_errors() {
        for r in [
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 ip6:::1/129",
            "v=spf1 ip4:1.2.3",
            "v=spf1 a:example.com/33",
            "v=spf1 a:museum",
            "v=spf1 a:111.222.33.44",
            "v=spf1 a:example.-com",
            "v=spf1 foo -all",
            "v=spf1 -all redirect=a.example.com redirect=b.example.com",
            "v=spf1 =bar",
            "v=spf1 moo.cow/far_out=man:dog/cat",
            "v=spf1 a:ex\u{e9}mple.com",
            "v=spf1 a:exa\x01mple.com",
            "v=spf1 exists:%{q}.example.com",
            "v=spf1 exists:%example.com",
            "v=spf1 all:foo",
            "v=spf1 -all exp=%{x}",
            "v=spf10 -all",
        ] {
            assert!(!ok(r), "{r} should be a syntax error");
        }
    }

    #[test]
    fn unknown_modifiers_are_dropped() {
        assert_eq!(
            check("v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all"),
            Verdict::Valid("v=spf1 ip4:1.2.3.4 -all".into())
        );
    }
}
