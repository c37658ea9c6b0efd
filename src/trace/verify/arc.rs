//! ARC chain validation (RFC 8617 5.2) for `mail-trace --verify`: the
//! crate's `verify_arc`, with what it lets through or words differently
//! closed here.
//!
//! What this adds to mail-auth 0.13 (each gap was found by ValiMail's ARC
//! validation suite, run offline in `trace_verify::arc_validation_suite_offline`):
//! - the result is one of RFC 8617's words: a chain that is there but cannot
//!   be validated is `fail` (the crate says `neutral` for a field it cannot
//!   parse, a body hash mismatch or a broken chain, `permerror` for a missing
//!   or unusable key); `none` only when the message carries no ARC field at
//!   all, so seals and results without any ARC-Message-Signature are a
//!   broken chain too; only a DNS error on a name that could be asked stays
//!   `temperror` (asked again later, not judged);
//! - every ARC-Seal and ARC-Message-Signature is read as an RFC 6376 3.2 tag
//!   list before anything else: no empty tag, no tag named outside
//!   `ALPHA *(ALPHA / DIGIT / "_")` (names are case-sensitive, so `S=` is
//!   not `s=`), no tag twice, every required tag there (RFC 8617 4.1.2,
//!   4.1.3: the seal's `t=` too), `d=` and `s=` names that DNS can be asked;
//! - an ARC-Message-Signature must not sign ARC-Seal fields (RFC 8617 4.1.2);
//! - keys under 1024 bits do not validate (RFC 8301 3.2), for every seal and
//!   the newest message signature.
//!
//! Guarantee: never panics, prints or fails on any input; every outcome is
//! an [`ArcCheck`] with a reason.

use mail_auth::hickory_resolver::proto::rr::{RData, RecordType};
use mail_auth::{AuthenticatedMessage, DkimResult};

use super::{ArcCheck, Verifier, arc_check};

/// The tags an ARC-Seal must carry (RFC 8617 4.1.3).
const SEAL_TAGS: &[&str] = &["a", "b", "cv", "d", "i", "s", "t"];
/// The tags an ARC-Message-Signature must carry (RFC 8617 4.1.2, with
/// RFC 6376 3.5's required DKIM tags but `v=`).
const AMS_TAGS: &[&str] = &["a", "b", "bh", "d", "h", "i", "s"];

/// Keys below this many bits do not validate (RFC 8301 3.2).
const MIN_RSA_BITS: u32 = 1024;

impl Verifier {
    /// The ARC chain of `msg`, judged.
    pub(super) async fn arc(&self, msg: &AuthenticatedMessage<'_>) -> ArcCheck {
        let out = self.auth.verify_arc(msg).await;
        let mut check = arc_check(&out);
        let fields = arc_fields(msg);
        if fields.seals.is_empty() && fields.signatures.is_empty() && fields.results.is_empty() {
            return check;
        }
        let fail = |mut c: ArcCheck, why: String| {
            c.result = "fail".into();
            c.reason = Some(why);
            c
        };
        if let Some(why) = structure(&fields) {
            return fail(check, why);
        }
        match out.result() {
            DkimResult::Pass => {}
            DkimResult::TempError(_) => return check,
            DkimResult::None => {
                return fail(
                    check,
                    "broken chain: ARC fields without a complete set".into(),
                );
            }
            _ => {
                let why = check
                    .reason
                    .take()
                    .unwrap_or_else(|| "the chain does not validate".into());
                return fail(check, why);
            }
        }
        // Pass by the crate: every key used must be long enough.
        let newest = out.sets().last().map(|s| {
            (
                s.signature.header.d.as_str(),
                s.signature.header.s.as_str(),
                "ARC-Message-Signature",
            )
        });
        let seals = out.sets().iter().map(|s| {
            (
                s.seal.header.d.as_str(),
                s.seal.header.s.as_str(),
                "ARC-Seal",
            )
        });
        for (d, s, what) in newest.into_iter().chain(seals) {
            if let Some(bits) = self.rsa_bits(d, s).await
                && bits < MIN_RSA_BITS
            {
                check = fail(
                    check,
                    format!(
                        "{what} d={d} s={s}: a {bits}-bit RSA key, under the {MIN_RSA_BITS} RFC 8301 allows"
                    ),
                );
                return check;
            }
        }
        check
    }

    /// The size of the RSA key at `s._domainkey.d`, when it is one.
    async fn rsa_bits(&self, d: &str, s: &str) -> Option<u32> {
        let name = format!("{s}._domainkey.{}.", d.trim_end_matches('.'));
        let l = self
            .auth
            .resolver()
            .lookup(name.as_str(), RecordType::TXT)
            .await
            .ok()?;
        for r in l.answers() {
            let RData::TXT(t) = &r.data else { continue };
            let text: Vec<u8> = t.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
            let text = String::from_utf8_lossy(&text);
            let tags = tag_list(text.as_bytes()).ok()?;
            let get = |k: &str| tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            if get("k").is_some_and(|k| !k.eq_ignore_ascii_case("rsa")) {
                return None;
            }
            use base64::Engine as _;
            let p: String = get("p")?.chars().filter(|c| !c.is_whitespace()).collect();
            let der = base64::engine::general_purpose::STANDARD.decode(p).ok()?;
            let key = openssl::pkey::PKey::public_key_from_der(&der).ok()?;
            return (key.id() == openssl::pkey::Id::RSA).then(|| key.bits());
        }
        None
    }
}

/// The raw ARC fields of a message, in header order (newest first).
struct ArcFields<'x> {
    seals: Vec<&'x [u8]>,
    signatures: Vec<&'x [u8]>,
    results: Vec<&'x [u8]>,
}

fn arc_fields<'x>(msg: &AuthenticatedMessage<'x>) -> ArcFields<'x> {
    let mut f = ArcFields {
        seals: Vec::new(),
        signatures: Vec::new(),
        results: Vec::new(),
    };
    for (name, value) in &msg.headers {
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"ARC-Seal") {
            f.seals.push(value);
        } else if name.eq_ignore_ascii_case(b"ARC-Message-Signature") {
            f.signatures.push(value);
        } else if name.eq_ignore_ascii_case(b"ARC-Authentication-Results") {
            f.results.push(value);
        }
    }
    f
}

/// What makes the chain fail before any signature is checked, if anything.
fn structure(f: &ArcFields<'_>) -> Option<String> {
    if f.signatures.is_empty() || f.seals.is_empty() || f.results.is_empty() {
        return Some(format!(
            "broken chain: {} ARC-Seal, {} ARC-Message-Signature, {} ARC-Authentication-Results",
            f.seals.len(),
            f.signatures.len(),
            f.results.len()
        ));
    }
    for (what, values, required) in [
        ("ARC-Seal", &f.seals, SEAL_TAGS),
        ("ARC-Message-Signature", &f.signatures, AMS_TAGS),
    ] {
        for v in values {
            let tags = match tag_list(v) {
                Ok(t) => t,
                Err(e) => return Some(format!("{what}: {e}")),
            };
            let get = |k: &str| tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let i = get("i").unwrap_or("?");
            if let Some(t) = required.iter().find(|t| get(t).is_none()) {
                return Some(format!("{what} i={i}: no {t}= tag"));
            }
            for t in ["d", "s"] {
                let name = get(t).unwrap_or_default();
                if !dns_name(name) {
                    return Some(format!(
                        "{what} i={i}: {t}={name:?} is not a name DNS can be asked"
                    ));
                }
            }
            if what == "ARC-Message-Signature"
                && get("h")
                    .unwrap_or_default()
                    .split(':')
                    .any(|h| h.trim().eq_ignore_ascii_case("ARC-Seal"))
            {
                return Some(format!(
                    "{what} i={i}: signs ARC-Seal fields (RFC 8617 4.1.2 forbids it)"
                ));
            }
        }
    }
    None
}

/// An RFC 6376 3.2 tag list: `(name, value)` pairs, values with folding
/// and surrounding whitespace removed; an error for an empty tag (`;;`),
/// a name that is not `ALPHA *(ALPHA / DIGIT / "_")`, a value character
/// outside VALCHAR, or a name given twice.
fn tag_list(value: &[u8]) -> Result<Vec<(String, String)>, String> {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let parts: Vec<&[u8]> = value.split(|&b| b == b';').collect();
    let mut out: Vec<(String, String)> = Vec::new();
    for (n, part) in parts.iter().enumerate() {
        if part.iter().all(ws) {
            // A final `;` is allowed; an empty tag between two is not.
            if n + 1 == parts.len() && n > 0 {
                continue;
            }
            return Err("an empty tag".into());
        }
        let Some(eq) = part.iter().position(|&b| b == b'=') else {
            return Err(format!(
                "a tag without '=': {:?}",
                String::from_utf8_lossy(part).trim()
            ));
        };
        let name = String::from_utf8_lossy(&part[..eq]).trim().to_string();
        let ok_name = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok_name {
            return Err(format!("a bad tag name {name:?}"));
        }
        let raw = &part[eq + 1..];
        if let Some(b) = raw.iter().find(|b| !ws(b) && !(0x21..=0x7e).contains(*b)) {
            return Err(format!("{name}= holds the byte 0x{b:02x}"));
        }
        // Folding and runs of whitespace inside a value count for nothing
        // here (b=, bh= and p= may be folded anywhere).
        let v: Vec<&[u8]> = raw.split(|b| ws(b)).filter(|s| !s.is_empty()).collect();
        let v = String::from_utf8_lossy(&v.join(&b' ')).into_owned();
        if out.iter().any(|(k, _)| *k == name) {
            return Err(format!("{name}= twice"));
        }
        out.push((name, v));
    }
    Ok(out)
}

/// A domain or selector DNS can be asked about: dot-separated labels of
/// letters, digits and hyphens (underscores too, as in `_domainkey`), each
/// 1 to 63 bytes, not starting or ending with a hyphen.
fn dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists_rfc6376() {
        let ok = tag_list(b" a=rsa-sha256;\r\n b=AB CD\r\n EF=; cv = none ; t=1;").unwrap();
        assert_eq!(
            ok,
            [
                ("a".to_string(), "rsa-sha256".to_string()),
                ("b".to_string(), "AB CD EF=".to_string()),
                ("cv".to_string(), "none".to_string()),
                ("t".to_string(), "1".to_string()),
            ]
        );
        for bad in [
            &b"a=1;; b=2"[..],
            b"a=1; _=; b=2",
            b"a=1; ==; b=2",
            b"s=x; s=x",
            b"a=1; b",
            b"a=1; 9b=2",
            b"",
        ] {
            assert!(tag_list(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn dns_names() {
        for (n, ok) in [
            ("example.org", true),
            ("dummy", true),
            ("512", true),
            ("example...", false),
            ("***", false),
            ("", false),
            ("-a.example", false),
        ] {
            assert_eq!(dns_name(n), ok, "{n}");
        }
    }
}
