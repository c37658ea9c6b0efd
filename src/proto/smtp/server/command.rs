//! Reading one SMTP/LMTP command line into a [`Command`]: the verb, the
//! path of MAIL and RCPT with its ESMTP parameters, BDAT's count, AUTH's
//! mechanism.
//!
//! Guarantees: no panic on any bytes; every refusal is the [`Reply`] to
//! send (500 unknown or malformed, 501 bad arguments, 553 5.6.7 for a
//! non-ASCII address without SMTPUTF8, 555 unknown parameter); an address
//! that comes out holds no control octet, no space outside quotes, no `<`
//! or `>`, and is valid UTF-8.

use super::reply;
use crate::proto::smtp::Reply;

/// The greeting verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hello {
    Helo,
    Ehlo,
    Lhlo,
}

/// MAIL FROM's parameters.
#[derive(Debug, Clone, Default)]
pub(super) struct MailParams {
    pub size: Option<u64>,
    pub body_8bit: bool,
    pub smtputf8: bool,
}

/// One parsed command. Paths are checked later, when whether SMTPUTF8 is
/// in force is known ([`parse_path`]).
#[derive(Debug, Clone)]
pub(super) enum Command {
    Hello(Hello, String),
    Mail(Vec<u8>, MailParams),
    Rcpt(Vec<u8>),
    Data,
    Bdat(u64, bool),
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    Starttls,
    Auth(String, Option<Vec<u8>>),
}

/// The longest path between the brackets (RFC 5321 4.5.3.1.3: 256 with them).
const MAX_PATH: usize = 254;

fn syntax(text: &str) -> Reply {
    reply(501, "5.5.4", text)
}

/// Parse a command line (its CRLF or LF removed).
pub(super) fn parse(line: &[u8]) -> Result<Command, Reply> {
    if line.contains(&0) {
        return Err(reply(500, "5.5.2", "NUL in command"));
    }
    let (verb, arg) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    let arg = trim(arg);
    let verb = verb.to_ascii_uppercase();
    let no_arg = |c: Command| {
        if arg.is_empty() {
            Ok(c)
        } else {
            Err(syntax("no parameters allowed"))
        }
    };
    match verb.as_slice() {
        b"EHLO" | b"HELO" | b"LHLO" => {
            let h = match verb[0] {
                b'E' => Hello::Ehlo,
                b'H' => Hello::Helo,
                _ => Hello::Lhlo,
            };
            let name = arg.split(|&b| b == b' ').next().unwrap_or(b"");
            if name.is_empty() {
                return Err(syntax("a domain name is required"));
            }
            if name.iter().any(|&b| b < 0x21 || b == 0x7f) {
                return Err(syntax("bad domain name"));
            }
            let name = std::str::from_utf8(name).map_err(|_| syntax("bad domain name"))?;
            Ok(Command::Hello(h, name.to_string()))
        }
        b"MAIL" => {
            let rest = strip_keyword(arg, b"FROM:")
                .ok_or_else(|| syntax("Syntax: MAIL FROM:<address>"))?;
            let (path, params) = split_path(rest)?;
            let mut p = MailParams::default();
            let mut seen: Vec<Vec<u8>> = Vec::new();
            for (key, value) in params_of(params)? {
                if seen.contains(&key) {
                    return Err(syntax("a parameter given twice"));
                }
                seen.push(key.clone());
                match (key.as_slice(), value) {
                    (b"SIZE", Some(v)) if !v.is_empty() && v.iter().all(u8::is_ascii_digit) => {
                        // 20 digits and more only say "too big".
                        p.size = Some(
                            std::str::from_utf8(v)
                                .ok()
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(u64::MAX),
                        );
                    }
                    (b"BODY", Some(v)) if v.eq_ignore_ascii_case(b"7BIT") => p.body_8bit = false,
                    (b"BODY", Some(v)) if v.eq_ignore_ascii_case(b"8BITMIME") => p.body_8bit = true,
                    (b"SMTPUTF8", None) => p.smtputf8 = true,
                    (b"RET", Some(v))
                        if v.eq_ignore_ascii_case(b"FULL") || v.eq_ignore_ascii_case(b"HDRS") => {}
                    (b"ENVID" | b"AUTH", Some(v)) if xtext_ok(v) => {}
                    (b"SIZE" | b"BODY" | b"SMTPUTF8" | b"RET" | b"ENVID" | b"AUTH", _) => {
                        return Err(syntax("bad parameter value"));
                    }
                    _ => return Err(reply(555, "5.5.4", "unsupported parameter")),
                }
            }
            Ok(Command::Mail(path.to_vec(), p))
        }
        b"RCPT" => {
            let rest =
                strip_keyword(arg, b"TO:").ok_or_else(|| syntax("Syntax: RCPT TO:<address>"))?;
            let (path, params) = split_path(rest)?;
            let mut seen: Vec<Vec<u8>> = Vec::new();
            for (key, value) in params_of(params)? {
                if seen.contains(&key) {
                    return Err(syntax("a parameter given twice"));
                }
                seen.push(key.clone());
                match (key.as_slice(), value) {
                    (b"NOTIFY", Some(v)) if notify_ok(v) => {}
                    (b"ORCPT", Some(v)) if orcpt_ok(v) => {}
                    (b"NOTIFY" | b"ORCPT", _) => return Err(syntax("bad parameter value")),
                    _ => return Err(reply(555, "5.5.4", "unsupported parameter")),
                }
            }
            Ok(Command::Rcpt(path.to_vec()))
        }
        b"DATA" => no_arg(Command::Data),
        b"BDAT" => {
            let mut words = arg.split(|&b| b == b' ').filter(|w| !w.is_empty());
            let n = words
                .next()
                .filter(|n| !n.is_empty() && n.len() <= 19 && n.iter().all(u8::is_ascii_digit))
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok());
            let last = match words.next() {
                None => Some(false),
                Some(w) if w.eq_ignore_ascii_case(b"LAST") => Some(true),
                Some(_) => None,
            };
            match (n, last, words.next()) {
                (Some(n), Some(last), None) => Ok(Command::Bdat(n, last)),
                _ => Err(syntax("Syntax: BDAT octets [LAST]")),
            }
        }
        b"RSET" => no_arg(Command::Rset),
        b"NOOP" => Ok(Command::Noop),
        b"QUIT" => no_arg(Command::Quit),
        b"VRFY" => Ok(Command::Vrfy),
        b"EXPN" => Ok(Command::Expn),
        b"HELP" => Ok(Command::Help),
        b"STARTTLS" => no_arg(Command::Starttls),
        b"AUTH" => {
            let mut words = arg.split(|&b| b == b' ').filter(|w| !w.is_empty());
            let mech = words
                .next()
                .ok_or_else(|| syntax("Syntax: AUTH mechanism [initial-response]"))?;
            let initial = words.next().map(<[u8]>::to_vec);
            if words.next().is_some() || mech.len() > 20 {
                return Err(syntax("Syntax: AUTH mechanism [initial-response]"));
            }
            Ok(Command::Auth(
                String::from_utf8_lossy(mech).to_ascii_uppercase(),
                initial,
            ))
        }
        _ if line.is_empty() => Err(reply(500, "5.5.2", "empty command")),
        _ => Err(reply(500, "5.5.1", "command not recognized")),
    }
}

/// Spaces off both ends.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `FROM:` / `TO:` (any case), then optional spaces (some clients send one).
fn strip_keyword<'a>(arg: &'a [u8], kw: &[u8]) -> Option<&'a [u8]> {
    if arg.len() < kw.len() || !arg[..kw.len()].eq_ignore_ascii_case(kw) {
        return None;
    }
    Some(trim(&arg[kw.len()..]))
}

/// `<path>` and what follows it: the path between the brackets (a `>`
/// inside a quoted local part does not end it).
fn split_path(s: &[u8]) -> Result<(&[u8], &[u8]), Reply> {
    let bad = || reply(501, "5.1.7", "the address must be in angle brackets");
    if s.first() != Some(&b'<') {
        return Err(bad());
    }
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate().skip(1) {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b'>' && !quoted {
            let rest = &s[i + 1..];
            if !rest.is_empty() && rest[0] != b' ' {
                return Err(bad());
            }
            return Ok((&s[1..i], rest));
        }
    }
    Err(bad())
}

/// `KEY=value` words, keys upper-cased.
#[allow(clippy::type_complexity)]
fn params_of(s: &[u8]) -> Result<Vec<(Vec<u8>, Option<&[u8]>)>, Reply> {
    let mut out = Vec::new();
    for w in s.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        if out.len() >= 16 {
            return Err(syntax("too many parameters"));
        }
        let (k, v) = match w.iter().position(|&b| b == b'=') {
            Some(i) => (&w[..i], Some(&w[i + 1..])),
            None => (w, None),
        };
        let key_ok = !k.is_empty() && k.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
        let value_ok = v.is_none_or(|v| {
            !v.is_empty() && v.iter().all(|&b| (0x21..0x7f).contains(&b) && b != b'=')
        });
        if !key_ok || !value_ok {
            return Err(syntax("bad parameter"));
        }
        out.push((k.to_ascii_uppercase(), v));
    }
    Ok(out)
}

/// RFC 3461 xtext: `+XX` hex escapes, no `+`/`=` otherwise.
fn xtext_ok(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'+' {
            if i + 2 >= v.len() {
                return false;
            }
            if !v[i + 1..i + 3].iter().all(|b| b.is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn notify_ok(v: &[u8]) -> bool {
    if v.eq_ignore_ascii_case(b"NEVER") {
        return true;
    }
    v.split(|&b| b == b',').all(|w| {
        [&b"SUCCESS"[..], b"FAILURE", b"DELAY"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
    })
}

fn orcpt_ok(v: &[u8]) -> bool {
    match v.iter().position(|&b| b == b';') {
        Some(i) if i > 0 => xtext_ok(&v[i + 1..]) && i + 1 < v.len(),
        _ => false,
    }
}

/// A checked path: the mailbox (empty for `<>`) and the source route that
/// was in front of it (`@a,@b`), stripped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Path {
    pub mailbox: String,
    pub route: Option<String>,
}

/// Check a path: `<>` only when `null_ok` (MAIL), 8-bit only when `utf8`
/// (SMTPUTF8 in force), `<postmaster>` alone allowed when `postmaster_ok`.
pub(super) fn parse_path(
    inside: &[u8],
    null_ok: bool,
    utf8: bool,
    postmaster_ok: bool,
) -> Result<Path, Reply> {
    let bad = || reply(501, "5.1.3", "bad address syntax");
    if inside.len() > MAX_PATH {
        return Err(reply(501, "5.1.3", "address too long"));
    }
    if inside.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(bad());
    }
    if !inside.is_ascii() {
        if !utf8 {
            return Err(reply(553, "5.6.7", "a non-ASCII address needs SMTPUTF8"));
        }
        if std::str::from_utf8(inside).is_err() {
            return Err(bad());
        }
    }
    if inside.is_empty() {
        return if null_ok {
            Ok(Path {
                mailbox: String::new(),
                route: None,
            })
        } else {
            Err(bad())
        };
    }
    let (route, mailbox) = if inside[0] == b'@' {
        let colon = inside.iter().position(|&b| b == b':').ok_or_else(bad)?;
        let route = &inside[..colon];
        let ok = route
            .split(|&b| b == b',')
            .all(|hop| hop.len() > 1 && hop[0] == b'@' && domain_ok(&hop[1..]));
        if !ok {
            return Err(bad());
        }
        (Some(route), &inside[colon + 1..])
    } else {
        (None, inside)
    };
    let text = std::str::from_utf8(mailbox).map_err(|_| bad())?;
    if postmaster_ok && route.is_none() && text.eq_ignore_ascii_case("postmaster") {
        return Ok(Path {
            mailbox: text.to_string(),
            route: None,
        });
    }
    let at = mailbox.iter().rposition(|&b| b == b'@').ok_or_else(bad)?;
    let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    if !local_ok(local) || !domain_ok(domain) {
        return Err(bad());
    }
    Ok(Path {
        mailbox: text.to_string(),
        route: route.map(|r| String::from_utf8_lossy(r).into_owned()),
    })
}

/// A dot-atom or a quoted string (RFC 5321 Local-part; UTF-8 allowed,
/// it was checked against SMTPUTF8 already).
fn local_ok(l: &[u8]) -> bool {
    if l.is_empty() {
        return false;
    }
    if l[0] == b'"' {
        if l.len() < 2 || l[l.len() - 1] != b'"' {
            return false;
        }
        let mut escaped = false;
        for &b in &l[1..l.len() - 1] {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                return false;
            }
        }
        return !escaped;
    }
    const SPECIALS: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
    l.split(|&b| b == b'.').all(|atom| {
        !atom.is_empty()
            && atom
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || SPECIALS.contains(&b) || b >= 0x80)
    })
}

/// A domain (labels of letters, digits, `-`, `_`, UTF-8) or an address
/// literal `[...]`.
fn domain_ok(d: &[u8]) -> bool {
    if d.is_empty() || d.len() > 253 + 2 {
        return false;
    }
    if d[0] == b'[' {
        return d.len() > 2
            && d[d.len() - 1] == b']'
            && d[1..d.len() - 1]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b".:-".contains(&b));
    }
    let d = d.strip_suffix(b".").unwrap_or(d);
    d.split(|&b| b == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        let ok = |s: &[u8]| parse_path(s, true, false, true).unwrap();
        assert_eq!(ok(b"a@b.example").mailbox, "a@b.example");
        assert_eq!(ok(b"").mailbox, "");
        assert_eq!(ok(b"Postmaster").mailbox, "Postmaster");
        assert_eq!(ok(b"\"a b\"@x").mailbox, "\"a b\"@x");
        let r = ok(b"@r1.example,@r2.example:u@x.example");
        assert_eq!(r.mailbox, "u@x.example");
        assert_eq!(r.route.as_deref(), Some("@r1.example,@r2.example"));
        for bad in [
            &b"a"[..],
            b"a@",
            b"@x",
            b"a b@x",
            b"a@x\x00",
            b"a@x\r",
            b"a..b@x",
            b"@:a@x",
            b"a@[1.2.3.4",
        ] {
            assert_eq!(
                parse_path(bad, true, false, false).unwrap_err().code,
                501,
                "{bad:?}"
            );
        }
        assert!(parse_path(b"", false, false, false).is_err());
        let e = parse_path("j\u{f6}rg@x".as_bytes(), false, false, false).unwrap_err();
        assert_eq!((e.code, e.enhanced.as_deref()), (553, Some("5.6.7")));
        assert!(parse_path("j\u{f6}rg@x".as_bytes(), false, true, false).is_ok());
        assert!(parse_path(b"j\xffrg@x", false, true, false).is_err());
    }

    #[test]
    fn commands_parse_case_insensitively_with_parameters() {
        let Command::Mail(p, m) =
            parse(b"mail from:<a@b> size=100 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=x+41").unwrap()
        else {
            panic!()
        };
        assert_eq!(p, b"a@b");
        assert_eq!(m.size, Some(100));
        assert!(m.body_8bit && m.smtputf8);
        assert!(matches!(parse(b"MAIL FROM: <a@b>"), Ok(Command::Mail(..))));
        assert_eq!(parse(b"MAIL FROM:<a@b> FOO=1").unwrap_err().code, 555);
        assert_eq!(parse(b"MAIL FROM:<a@b> SIZE=x").unwrap_err().code, 501);
        assert_eq!(
            parse(b"MAIL FROM:<a@b> SIZE=1 SIZE=2").unwrap_err().code,
            501
        );
        assert_eq!(parse(b"MAIL FROM:a@b").unwrap_err().code, 501);
        assert_eq!(parse(b"MAIL FROM:<a@b>x").unwrap_err().code, 501);
        assert!(matches!(
            parse(b"RCPT TO:<a@b> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40b"),
            Ok(Command::Rcpt(_))
        ));
        assert_eq!(
            parse(b"RCPT TO:<a@b> NOTIFY=SOMETIMES").unwrap_err().code,
            501
        );
        assert!(matches!(
            parse(b"bdat 10 last"),
            Ok(Command::Bdat(10, true))
        ));
        assert!(matches!(parse(b"BDAT 0"), Ok(Command::Bdat(0, false))));
        for bad in [
            &b"BDAT"[..],
            b"BDAT x",
            b"BDAT 1 FIRST",
            b"BDAT 1 LAST x",
            b"BDAT -1",
        ] {
            assert_eq!(parse(bad).unwrap_err().code, 501, "{bad:?}");
        }
        assert_eq!(parse(b"DATA x").unwrap_err().code, 501);
        assert_eq!(parse(b"NO\0OP").unwrap_err().code, 500);
        assert_eq!(parse(b"").unwrap_err().code, 500);
        assert_eq!(parse(b"FROB").unwrap_err().code, 500);
        assert!(
            matches!(parse(b"ehlo  x.example "), Ok(Command::Hello(Hello::Ehlo, h)) if h == "x.example")
        );
        assert_eq!(parse(b"EHLO").unwrap_err().code, 501);
        assert!(
            matches!(parse(b"AUTH plain AGEAYg=="), Ok(Command::Auth(m, Some(_))) if m == "PLAIN")
        );
    }
}
