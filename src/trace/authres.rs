//! Parsers for the authentication verdicts receivers add to a message:
//! `Authentication-Results` (RFC 8601), `ARC-Authentication-Results`
//! (RFC 8617: the same payload after `i=N;`) and `Received-SPF` (RFC 7208
//! section 9.1).
//!
//! This module owns reading those values into [`AuthResults`] and
//! [`ReceivedSpf`]: the authserv-id and version, each method's result,
//! reason, `ptype.property=value` properties and comments (kept verbatim),
//! and the `none` form. It also recovers the layouts real receivers write
//! outside the grammar: Microsoft 365 (no authserv-id, bare `action=none`,
//! no space after `;`) and Yahoo (results glued to comments, stray
//! `from=domain` pairs between results, which are carried to the next
//! method).
//!
//! Guarantee: parsing never fails, panics or prints; anything outside the
//! grammar is named in `warnings` and the value is kept in `raw`. Work is
//! linear: comments nested any depth are matched with a counter.

use super::received::unfold;
use serde::Serialize;

/// One `Authentication-Results` or `ARC-Authentication-Results` value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthResults {
    /// ARC instance (`i=N`), for ARC-Authentication-Results only.
    pub instance: Option<u32>,
    /// Who made the verdicts; `None` when missing (Microsoft 365).
    pub authserv_id: Option<String>,
    /// The optional version after the authserv-id.
    pub version: Option<u32>,
    /// The verdicts in order.
    pub results: Vec<MethodResult>,
    /// The payload was `; none` (no method was evaluated).
    pub none: bool,
    /// The unfolded value.
    pub raw: String,
    /// What was outside the grammar, in words.
    pub warnings: Vec<String>,
}

/// One `method=result` with what follows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MethodResult {
    /// The method, lower case (`spf`, `dkim`, `dmarc`, `arc`, `compauth`).
    pub method: String,
    /// A method version (`dkim/1`).
    pub method_version: Option<String>,
    /// The result, lower case (`pass`, `fail`, `softfail`, `none`...).
    pub result: String,
    /// The `reason=` value.
    pub reason: Option<String>,
    /// The properties in order.
    pub properties: Vec<Property>,
    /// Comments, verbatim without their parentheses.
    pub comments: Vec<String>,
}

impl MethodResult {
    /// The value of `ptype.name` (case-insensitive), if present.
    pub fn property(&self, ptype: &str, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| {
                p.ptype
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case(ptype))
                    && p.name.eq_ignore_ascii_case(name)
            })
            .map(|p| p.value.as_str())
    }
}

/// `ptype.name=value`; `ptype` is `None` for the bare `key=value` pairs
/// Microsoft and Yahoo write (`action=none`, `from=example.com`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Property {
    /// `smtp`, `header`, `body`, `policy`, or `None`.
    pub ptype: Option<String>,
    /// The property name (`mailfrom`, `d`, `from`).
    pub name: String,
    /// The value, quotes removed.
    pub value: String,
}

/// One `Received-SPF` value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReceivedSpf {
    /// The result, lower case.
    pub result: Option<String>,
    /// The comment after the result, verbatim.
    pub comment: Option<String>,
    /// `client-ip=`.
    pub client_ip: Option<String>,
    /// `envelope-from=`, quotes and angle brackets removed.
    pub envelope_from: Option<String>,
    /// `helo=`.
    pub helo: Option<String>,
    /// `receiver=`.
    pub receiver: Option<String>,
    /// Every `key=value` pair in order (keys lower case).
    pub pairs: Vec<(String, String)>,
    /// The unfolded value.
    pub raw: String,
    /// What was outside the grammar.
    pub warnings: Vec<String>,
}

/// Parse an `Authentication-Results` value. Never fails.
pub fn parse(value: &str) -> AuthResults {
    let raw = unfold(value);
    let toks = tokenize(&raw);
    let mut out = AuthResults {
        raw: raw.clone(),
        ..AuthResults::default()
    };
    parse_payload(&toks, 0, &mut out);
    out
}

/// Parse an `ARC-Authentication-Results` value: `i=N;` then the payload.
pub fn parse_arc(value: &str) -> AuthResults {
    let raw = unfold(value);
    let toks = tokenize(&raw);
    let mut out = AuthResults {
        raw: raw.clone(),
        ..AuthResults::default()
    };
    let mut pos = 0;
    if let (Some(T::Word(k)), Some(T::Eq), Some(T::Word(n))) =
        (toks.first(), toks.get(1), toks.get(2))
        && k.eq_ignore_ascii_case("i")
    {
        out.instance = n.parse().ok();
        if out.instance.is_none() {
            out.warnings.push(format!("bad ARC instance '{n}'"));
        }
        pos = 3;
        if matches!(toks.get(pos), Some(T::Semi)) {
            pos += 1;
        }
    } else {
        out.warnings.push("no ARC instance (i=N)".to_string());
    }
    parse_payload(&toks, pos, &mut out);
    out
}

/// Parse a `Received-SPF` value. Never fails.
pub fn parse_received_spf(value: &str) -> ReceivedSpf {
    let raw = unfold(value);
    let toks = tokenize(&raw);
    let mut out = ReceivedSpf {
        raw: raw.clone(),
        ..ReceivedSpf::default()
    };
    let mut i = 0;
    if let Some(T::Word(r)) = toks.first()
        && !matches!(toks.get(1), Some(T::Eq))
    {
        out.result = Some(r.to_ascii_lowercase());
        i = 1;
    } else {
        out.warnings.push("no SPF result".to_string());
    }
    while let Some(t) = toks.get(i) {
        match t {
            T::Comment(c) => {
                if out.comment.is_none() {
                    out.comment = Some(c.trim().to_string());
                }
                i += 1;
            }
            T::Semi => i += 1,
            T::Word(k) if matches!(toks.get(i + 1), Some(T::Eq)) => {
                let v = match toks.get(i + 2) {
                    Some(T::Word(v) | T::Quoted(v)) => {
                        i += 3;
                        v.clone()
                    }
                    _ => {
                        i += 2;
                        String::new()
                    }
                };
                let key = k.to_ascii_lowercase();
                let slot = match key.as_str() {
                    "client-ip" => Some(&mut out.client_ip),
                    "envelope-from" => Some(&mut out.envelope_from),
                    "helo" => Some(&mut out.helo),
                    "receiver" => Some(&mut out.receiver),
                    _ => None,
                };
                if let Some(slot) = slot
                    && slot.is_none()
                {
                    let clean = if key == "envelope-from" {
                        strip_angle(&v)
                    } else {
                        v.clone()
                    };
                    *slot = Some(clean);
                }
                out.pairs.push((key, v));
            }
            other => {
                out.warnings
                    .push(format!("not understood: {}", describe(other)));
                i += 1;
            }
        }
    }
    out
}

/// A DKIM-style tag list (`DKIM-Signature`, `ARC-Seal`,
/// `ARC-Message-Signature`, RFC 6376 3.2), read simply: `tag=value` pairs
/// between semicolons, tags lower case, all whitespace removed from values.
/// Pairs without `=` are skipped. Never fails.
pub fn parse_tags(value: &str) -> Vec<(String, String)> {
    value
        .split(';')
        .filter_map(|part| {
            let (k, v) = part.split_once('=')?;
            let k = k.trim().to_ascii_lowercase();
            if k.is_empty() {
                return None;
            }
            let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            Some((k, v))
        })
        .collect()
}

/// The parts of a `DKIM-Signature`, `ARC-Seal` or `ARC-Message-Signature`
/// the authentication picture needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// `i=`: the ARC instance, or for DKIM the agent identity (kept in `identity`).
    pub instance: Option<u32>,
    /// `d=`, lower case.
    pub domain: Option<String>,
    /// `s=`.
    pub selector: Option<String>,
    /// DKIM's `i=` (`user@domain`), as written.
    pub identity: Option<String>,
    /// ARC-Seal's `cv=` (`none`, `pass`, `fail`), lower case.
    pub cv: Option<String>,
}

/// Read a `DKIM-Signature` (`arc` false) or an ARC-Seal /
/// ARC-Message-Signature (`arc` true: `i=` is the instance number).
pub fn parse_signature(value: &str, arc: bool) -> Signature {
    let mut out = Signature::default();
    for (k, v) in parse_tags(value) {
        let v = v.trim_matches('"').to_string();
        match k.as_str() {
            "d" if out.domain.is_none() => {
                out.domain = Some(v.trim_end_matches('.').to_ascii_lowercase());
            }
            "s" if out.selector.is_none() => out.selector = Some(v),
            "i" if arc && out.instance.is_none() => out.instance = v.parse().ok(),
            "i" if !arc && out.identity.is_none() => out.identity = Some(v),
            "cv" if out.cv.is_none() => out.cv = Some(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    out
}

fn strip_angle(v: &str) -> String {
    let v = v.trim();
    let v = v.strip_prefix('<').unwrap_or(v);
    v.strip_suffix('>').unwrap_or(v).to_string()
}

/// The authres payload from token `pos` on.
fn parse_payload(toks: &[T], mut pos: usize, out: &mut AuthResults) {
    // authserv-id, unless the value starts straight with `method=result`
    match (toks.get(pos), toks.get(pos + 1)) {
        (Some(T::Word(_)), Some(T::Eq)) => {
            out.warnings.push("no authserv-id".to_string());
        }
        (Some(T::Word(id) | T::Quoted(id)), _) => {
            out.authserv_id = Some(id.clone());
            pos += 1;
            if let Some(T::Word(v)) = toks.get(pos)
                && !matches!(toks.get(pos + 1), Some(T::Eq))
                && v.bytes().all(|b| b.is_ascii_digit())
            {
                out.version = v.parse().ok();
                pos += 1;
            }
        }
        _ => out.warnings.push("no authserv-id".to_string()),
    }
    // The rest: segments between semicolons.
    let mut pending: Vec<Property> = Vec::new();
    let mut seg_start = pos;
    let mut i = pos;
    loop {
        let at_end = i >= toks.len();
        if at_end || matches!(toks.get(i), Some(T::Semi)) {
            if let Some(seg) = toks.get(seg_start..i.min(toks.len())) {
                segment(seg, seg_start == pos, &mut pending, out);
            }
            if at_end {
                break;
            }
            seg_start = i + 1;
        }
        i += 1;
    }
    if !pending.is_empty() {
        out.warnings
            .push("properties after the last result".to_string());
    }
}

/// A segment between semicolons: `method=result [reason] [props]`, the
/// word `none`, or (before the first semicolon / in Yahoo's layout) stray
/// pairs that go to the next result.
fn segment(seg: &[T], first: bool, pending: &mut Vec<Property>, out: &mut AuthResults) {
    if seg.is_empty() {
        return;
    }
    let mut i = 0;
    let mut current: Option<MethodResult> = None;
    // `none`
    if let [T::Word(w)] = seg
        && w.eq_ignore_ascii_case("none")
        && !first
    {
        out.none = true;
        return;
    }
    if let (Some(T::Word(m)), Some(T::Eq), Some(T::Word(r))) = (seg.first(), seg.get(1), seg.get(2))
        && is_keyword(r)
        && !first_is_ptype(m)
    {
        let (method, version) = match m.split_once('/') {
            Some((a, b)) => (a.trim().to_string(), Some(b.trim().to_string())),
            None => (m.clone(), None),
        };
        current = Some(MethodResult {
            method: method.to_ascii_lowercase(),
            method_version: version,
            result: r.to_ascii_lowercase(),
            properties: std::mem::take(pending),
            ..MethodResult::default()
        });
        i = 3;
    }
    while let Some(t) = seg.get(i) {
        match t {
            T::Comment(c) => {
                if let Some(m) = current.as_mut() {
                    m.comments.push(c.trim().to_string());
                }
                i += 1;
            }
            T::Word(k) if matches!(seg.get(i + 1), Some(T::Eq)) => {
                let value = match seg.get(i + 2) {
                    Some(T::Word(v) | T::Quoted(v)) => {
                        i += 3;
                        v.clone()
                    }
                    _ => {
                        i += 2;
                        String::new()
                    }
                };
                let prop = match k.split_once('.') {
                    Some((t, n)) => Property {
                        ptype: Some(t.to_ascii_lowercase()),
                        name: n.to_string(),
                        value,
                    },
                    None => Property {
                        ptype: None,
                        name: k.to_ascii_lowercase(),
                        value,
                    },
                };
                match current.as_mut() {
                    Some(m)
                        if prop.ptype.is_none() && prop.name == "reason" && m.reason.is_none() =>
                    {
                        m.reason = Some(prop.value);
                    }
                    Some(m) => m.properties.push(prop),
                    None => pending.push(prop),
                }
            }
            other => {
                out.warnings
                    .push(format!("not understood: {}", describe(other)));
                i += 1;
            }
        }
    }
    if let Some(m) = current {
        out.results.push(m);
    }
}

/// RFC 8601 Keyword: letters, digits and `-`, not ending in `-`.
fn is_keyword(w: &str) -> bool {
    !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !w.ends_with('-')
}

/// `header.from=...` at the start of a segment is a stray property.
fn first_is_ptype(m: &str) -> bool {
    m.contains('.')
}

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, PartialEq, Eq)]
enum T {
    Word(String),
    Quoted(String),
    Comment(String),
    Eq,
    Semi,
}

fn describe(t: &T) -> String {
    let s = match t {
        T::Word(w) => format!("'{w}'"),
        T::Quoted(q) => format!("\"{q}\""),
        T::Comment(c) => format!("({c})"),
        T::Eq => "'='".to_string(),
        T::Semi => "';'".to_string(),
    };
    if s.chars().count() > 64 {
        s.chars().take(61).chain("...".chars()).collect()
    } else {
        s
    }
}

/// Words, quoted strings (unescaped), comments (depth counter), `=`, `;`.
fn tokenize(s: &str) -> Vec<T> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let text = |a: usize, z: usize| s.get(a..z).unwrap_or("").to_string();
    while let Some(&c) = b.get(i) {
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b';' => {
                out.push(T::Semi);
                i += 1;
            }
            b'=' => {
                out.push(T::Eq);
                i += 1;
            }
            b'(' => {
                let start = i + 1;
                let mut depth = 0usize;
                let mut end = b.len();
                while let Some(&d) = b.get(i) {
                    i += 1;
                    match d {
                        b'\\' if b.get(i).is_some_and(u8::is_ascii) => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                end = i - 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                out.push(T::Comment(text(start, end.max(start))));
            }
            b'"' => {
                i += 1;
                let mut v = Vec::new();
                while let Some(&d) = b.get(i) {
                    i += 1;
                    if d == b'\\' && b.get(i).is_some_and(u8::is_ascii) {
                        v.extend(b.get(i));
                        i += 1;
                    } else if d == b'"' {
                        break;
                    } else {
                        v.push(d);
                    }
                }
                out.push(T::Quoted(String::from_utf8_lossy(&v).into_owned()));
            }
            _ => {
                let start = i;
                while let Some(&d) = b.get(i) {
                    if matches!(d, b' ' | b'\t' | b'\r' | b'\n' | b'(' | b';' | b'=' | b'"') {
                        break;
                    }
                    i += 1;
                }
                out.push(T::Word(text(start, i)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8601_examples() {
        let a = parse("example.com; none");
        assert_eq!(a.authserv_id.as_deref(), Some("example.com"));
        assert!(a.none);
        assert!(a.results.is_empty());

        let a = parse(
            "example.com;\n          spf=pass smtp.mailfrom=example.net\n          header.from=example.net;\n      dkim=pass (good signature) header.d=example.com header.b=\"abc+/=\";\n      auth=pass (cram-md5) smtp.auth=sender@example.net",
        );
        assert_eq!(a.results.len(), 3);
        assert_eq!(a.results[0].method, "spf");
        assert_eq!(a.results[0].result, "pass");
        assert_eq!(
            a.results[0].property("smtp", "mailfrom"),
            Some("example.net")
        );
        assert_eq!(a.results[0].property("header", "from"), Some("example.net"));
        assert_eq!(a.results[1].comments, vec!["good signature"]);
        assert_eq!(a.results[1].property("header", "b"), Some("abc+/="));
        assert_eq!(
            a.results[2].property("smtp", "auth"),
            Some("sender@example.net")
        );
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);

        let a = parse(
            "mail-router.example.net 1; dkim/1=fail (bad signature) reason=\"key too short\" header.d=example.com header.i=@example.com",
        );
        assert_eq!(a.version, Some(1));
        let r = &a.results[0];
        assert_eq!(r.method_version.as_deref(), Some("1"));
        assert_eq!(r.reason.as_deref(), Some("key too short"));
        assert_eq!(r.property("header", "i"), Some("@example.com"));

        // comments may hold semicolons
        let a = parse(
            "mx.example.com; dkim=pass (2048-bit key; unprotected) header.d=example.com header.s=s1",
        );
        assert_eq!(a.results.len(), 1);
        assert_eq!(a.results[0].comments, vec!["2048-bit key; unprotected"]);
    }

    #[test]
    fn microsoft_365_layout() {
        let a = parse(
            "spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=example.com; dkim=pass (signature was verified) header.d=example.com;dmarc=pass action=none header.from=example.com;compauth=pass reason=100",
        );
        assert_eq!(a.authserv_id, None);
        let names: Vec<_> = a
            .results
            .iter()
            .map(|r| (r.method.as_str(), r.result.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("spf", "pass"),
                ("dkim", "pass"),
                ("dmarc", "pass"),
                ("compauth", "pass")
            ]
        );
        assert_eq!(a.results[0].comments, vec!["sender IP is 1.2.3.4"]);
        assert_eq!(a.results[1].property("header", "d"), Some("example.com"));
        assert_eq!(
            a.results[2].properties[0],
            Property {
                ptype: None,
                name: "action".into(),
                value: "none".into()
            }
        );
        assert_eq!(a.results[3].reason.as_deref(), Some("100"));
        assert_eq!(a.warnings, vec!["no authserv-id"]);
    }

    #[test]
    fn yahoo_layouts() {
        let a = parse(
            "atlas-production.v2-mail-prod1-gq1.omega.yahoo.com;\n dkim=pass header.i=@gmail.com header.s=20230601;\n spf=pass smtp.mailfrom=gmail.com;\n dmarc=pass(p=NONE sp=QUARANTINE dis=NONE) header.from=gmail.com;",
        );
        assert_eq!(a.results.len(), 3);
        assert_eq!(a.results[2].comments, vec!["p=NONE sp=QUARANTINE dis=NONE"]);
        assert_eq!(a.results[2].property("header", "from"), Some("gmail.com"));
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);

        let a = parse(
            "mta1234.mail.bf1.yahoo.com  from=example.com; domainkeys=neutral (no sig);  from=example.com; dkim=pass (ok)",
        );
        assert_eq!(a.authserv_id.as_deref(), Some("mta1234.mail.bf1.yahoo.com"));
        assert_eq!(a.results.len(), 2);
        assert_eq!(a.results[0].method, "domainkeys");
        assert_eq!(a.results[0].properties[0].name, "from");
        assert_eq!(a.results[1].method, "dkim");
        assert_eq!(a.results[1].properties[0].value, "example.com");
    }

    #[test]
    fn arc_and_received_spf() {
        let a = parse_arc(
            "i=1; mx.google.com;\n       dkim=pass header.i=@example.com header.s=s1 header.b=abc;\n       spf=pass (google.com: domain of a@example.com designates 192.0.2.1 as permitted sender) smtp.mailfrom=a@example.com;\n       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com",
        );
        assert_eq!(a.instance, Some(1));
        assert_eq!(a.authserv_id.as_deref(), Some("mx.google.com"));
        assert_eq!(a.results.len(), 3);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);

        let s = parse_received_spf(
            "pass (mybox.example.org: domain of\n myname@example.com designates 192.0.2.1 as permitted sender)\n receiver=mybox.example.org; client-ip=192.0.2.1;\n envelope-from=\"<myname@example.com>\"; helo=foo.example.com;",
        );
        assert_eq!(s.result.as_deref(), Some("pass"));
        assert!(
            s.comment
                .as_deref()
                .unwrap()
                .starts_with("mybox.example.org: domain of myname@example.com")
        );
        assert_eq!(s.client_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(s.envelope_from.as_deref(), Some("myname@example.com"));
        assert_eq!(s.helo.as_deref(), Some("foo.example.com"));
        assert_eq!(s.receiver.as_deref(), Some("mybox.example.org"));
        assert_eq!(s.pairs.len(), 4);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);

        let s = parse_received_spf(
            "Pass (protection.outlook.com: domain of example.com designates 40.107.1.2 as permitted sender) receiver=protection.outlook.com; client-ip=40.107.1.2; helo=mail.example.com; pr=C",
        );
        assert_eq!(s.result.as_deref(), Some("pass"));
        assert_eq!(s.pairs.last(), Some(&("pr".to_string(), "C".to_string())));
        let s = parse_received_spf(
            "None (no SPF record) identity=mailfrom; client-ip=192.0.2.1; helo=x; envelope-from=<>; receiver=y",
        );
        assert_eq!(s.result.as_deref(), Some("none"));
        assert_eq!(s.envelope_from.as_deref(), Some(""));
    }

    #[test]
    fn hostile_input() {
        for s in [
            "",
            ";",
            "=",
            "a=",
            "; none",
            "x; =;=;",
            "\"",
            "(",
            "x (((((",
            "x; spf=pass (",
            "a b c d; e f g",
        ] {
            let _ = parse(s);
            let _ = parse_arc(s);
            let _ = parse_received_spf(s);
        }
        let deep = format!("x; spf=pass {}y{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(parse(&deep).results.len(), 1);
        let big = "spf=pass a.b=c; ".repeat(60_000);
        assert_eq!(parse(&big).results.len(), 60_000);
        let _ = parse_received_spf(&"k=v ".repeat(200_000));
        for s in ["", ";;", "=", "d", "i=; cv=", "i=99999999999999999999"] {
            let _ = parse_signature(s, true);
            let _ = parse_signature(s, false);
        }
    }

    #[test]
    fn signatures() {
        let d = parse_signature(
            "v=1; a=rsa-sha256; c=relaxed/relaxed;\n d=Example.COM; s=sel 2024;\n i=@example.com; h=from:to; bh=abc; b=de\n f",
            false,
        );
        assert_eq!(d.domain.as_deref(), Some("example.com"));
        assert_eq!(d.selector.as_deref(), Some("sel2024"));
        assert_eq!(d.identity.as_deref(), Some("@example.com"));
        assert_eq!(d.instance, None);
        let a = parse_signature(
            "i=2; a=rsa-sha256; t=1; cv=Fail; d=fwd.example; s=arc; b=x",
            true,
        );
        assert_eq!(a.instance, Some(2));
        assert_eq!(a.cv.as_deref(), Some("fail"));
        assert_eq!(a.domain.as_deref(), Some("fwd.example"));
    }
}
