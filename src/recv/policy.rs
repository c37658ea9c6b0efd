//! The relay decision of mail-recv: is a recipient ours, may it be
//! relayed, or is it refused, and why.
//!
//! Guarantee: **never an open relay.** A recipient is local only when its
//! domain (lower-cased, one trailing dot dropped) is exactly one of the
//! configured domains; anything else is relayed only for an authenticated
//! client of a server that queues (`--queue`). Addresses that route by
//! their local part or by a path (`a%b@dom`, `a!b@dom`, a quoted `"a@b"`,
//! the source route `@x:a@dom`) are refused whoever asks, so no parser
//! further down (a queue runner, an old MTA) can be talked into routing
//! them. The same [`Decision`] answers RCPT and `--explain ADDR`.

use crate::proto::smtp::Reply;

/// What happens to a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One of our domains: deliver here.
    Local {
        /// The local part, quotes removed, case kept.
        local: String,
        /// The domain, lower-cased, without a trailing dot.
        domain: String,
    },
    /// Another domain, for an authenticated client: queue for its MX.
    Relay {
        /// The domain, lower-cased, without a trailing dot.
        domain: String,
    },
    /// Refused with this reply.
    Refuse(Reply),
}

/// A verdict and the reason for it, in words (`--explain`, logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What happens.
    pub verdict: Verdict,
    /// Why, one line.
    pub reason: String,
}

/// The domains we receive for and whether relaying is possible at all.
#[derive(Debug, Clone)]
pub struct Policy {
    domains: Vec<String>,
    queue: bool,
}

/// A reply with an enhanced status code and one line of text.
pub fn reply(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
    Reply {
        code,
        enhanced: Some(enhanced.to_string()),
        lines: vec![text.into()],
    }
}

/// A domain as compared: lower-case, one trailing dot dropped.
pub fn canonical_domain(d: &str) -> String {
    let d = d.strip_suffix('.').unwrap_or(d);
    d.to_lowercase()
}

impl Policy {
    /// Receive for `domains`; relay for authenticated clients only when
    /// `queue` (there is a spool to relay through).
    pub fn new<S: AsRef<str>>(domains: &[S], queue: bool) -> Policy {
        Policy {
            domains: domains
                .iter()
                .map(|d| canonical_domain(d.as_ref()))
                .collect(),
            queue,
        }
    }

    /// The configured domains, canonical.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// Decide for `rcpt` (the RCPT TO address without brackets), for a
    /// client that is `authenticated` or not.
    pub fn decide(&self, rcpt: &str, authenticated: bool) -> Decision {
        let refuse = |code, enh: &str, text: &str, why: String| Decision {
            verdict: Verdict::Refuse(reply(code, enh, text)),
            reason: why,
        };
        if rcpt.starts_with('@') {
            return refuse(
                550,
                "5.7.1",
                "source routes are not accepted",
                "a source route (@host:...) never relays".into(),
            );
        }
        if rcpt.chars().any(char::is_control) {
            return refuse(
                501,
                "5.1.3",
                "bad recipient address syntax",
                "control characters in the address".into(),
            );
        }
        // RFC 5321 4.5.1: `<Postmaster>` without a domain must be accepted.
        if rcpt.eq_ignore_ascii_case("postmaster")
            && let Some(d) = self.domains.first()
        {
            return Decision {
                verdict: Verdict::Local {
                    local: "postmaster".into(),
                    domain: d.clone(),
                },
                reason: format!("postmaster without a domain is postmaster@{d}"),
            };
        }
        let Some((local, domain)) = split_address(rcpt) else {
            return refuse(
                501,
                "5.1.3",
                "bad recipient address syntax",
                "not local@domain (a quoted local part must be closed, a domain present)".into(),
            );
        };
        if let Some(c) = local.chars().find(|c| matches!(c, '%' | '!' | '@')) {
            return refuse(
                550,
                "5.7.1",
                "routing by the local part is not accepted",
                format!(
                    "the local part holds {c:?}: address routing (%-hack, bang path) never relays"
                ),
            );
        }
        if local.is_empty() {
            return refuse(
                501,
                "5.1.3",
                "bad recipient address syntax",
                "empty local part".into(),
            );
        }
        let domain = canonical_domain(&domain);
        if !valid_domain(&domain) {
            return refuse(
                501,
                "5.1.2",
                "bad recipient domain syntax",
                format!("{domain:?} is not a domain name or address literal"),
            );
        }
        if self.domains.contains(&domain) {
            return Decision {
                reason: format!("{domain} is one of our domains (--domain): delivered here"),
                verdict: Verdict::Local { local, domain },
            };
        }
        let why = match (authenticated, self.queue) {
            (true, true) => {
                return Decision {
                    reason: format!(
                        "{domain} is not ours; the client authenticated and --queue is on: queued for {domain}'s MX"
                    ),
                    verdict: Verdict::Relay { domain },
                };
            }
            (false, true) => "the client did not authenticate",
            (true, false) => "relaying needs --queue",
            (false, false) => "the client did not authenticate, and relaying needs --queue",
        };
        refuse(
            550,
            "5.7.1",
            "relaying denied",
            format!("{domain} is not one of our domains and {why}"),
        )
    }
}

/// Split at the `@` that ends the local part. A quoted local part is
/// unquoted (`"a b"@x` is `a b`); an `@` inside quotes stays in the local
/// part (where [`Policy::decide`] refuses it).
fn split_address(addr: &str) -> Option<(String, String)> {
    let mut local = String::new();
    let rest = if let Some(q) = addr.strip_prefix('"') {
        let mut chars = q.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => local.push(chars.next()?.1),
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => local.push(c),
            }
        }
        let rest = &q[end?..];
        rest.strip_prefix('@')?
    } else {
        let at = addr.rfind('@')?;
        local.push_str(&addr[..at]);
        &addr[at + 1..]
    };
    if rest.is_empty() || rest.contains('@') {
        return None;
    }
    Some((local, rest.to_string()))
}

/// A domain name (labels of letters, digits, `-`, or any non-ASCII for
/// SMTPUTF8) or an address literal `[...]`, as [`canonical_domain`] gives it.
pub fn valid_domain(d: &str) -> bool {
    if let Some(inner) = d.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'));
    }
    !d.is_empty()
        && d.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && l.chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Policy {
        Policy::new(&["Example.ORG", "[192.0.2.1]", "mail.example.net."], true)
    }

    fn code(d: &Decision) -> Option<(u16, String)> {
        match &d.verdict {
            Verdict::Refuse(r) => Some((r.code, r.enhanced.clone().unwrap_or_default())),
            _ => None,
        }
    }

    #[test]
    fn our_domains_are_local_in_any_case_and_with_a_trailing_dot() {
        let p = ours();
        for a in [
            "Bob@example.org",
            "bob@EXAMPLE.ORG",
            "bob@example.org.",
            "bob@Mail.Example.Net",
        ] {
            let d = p.decide(a, false);
            assert!(
                matches!(&d.verdict, Verdict::Local { local, .. } if local == "Bob" || local == "bob"),
                "{a}: {d:?}"
            );
        }
        let d = p.decide("\"bob smith\"@example.org", false);
        assert_eq!(
            d.verdict,
            Verdict::Local {
                local: "bob smith".into(),
                domain: "example.org".into()
            }
        );
        let d = p.decide("x@[192.0.2.1]", false);
        assert!(matches!(d.verdict, Verdict::Local { .. }), "{d:?}");
        let d = p.decide("PostMaster", false);
        assert!(matches!(d.verdict, Verdict::Local { ref domain, .. } if domain == "example.org"));
    }

    #[test]
    fn open_relay_probes_are_refused() {
        let p = ours();
        for a in [
            "a%b@example.org",
            "b@other.example%example.org@example.org",
            "other.example!b@example.org",
            "\"b@other.example\"@example.org",
            "@example.org:b@other.example",
            "@x,@y:b@example.org",
            "b@other.example",
            "b@example.org.other.example",
            "b@[192.0.2.2]",
            "b@[127.0.0.1]",
            "b@sub.example.org",
            "b@example.org@other.example",
            "b@other.example@example.org",
        ] {
            let d = p.decide(a, false);
            let (c, _) = code(&d).unwrap_or_else(|| panic!("{a} not refused: {d:?}"));
            assert!(c >= 500, "{a}: {d:?}");
            // Authentication never makes a routing trick relay.
            if a.contains(['%', '!', '"', ':']) {
                assert!(
                    code(&p.decide(a, true)).is_some(),
                    "{a} relayed when authenticated"
                );
            }
        }
        assert_eq!(
            code(&p.decide("b@other.example", false)),
            Some((550, "5.7.1".into()))
        );
    }

    #[test]
    fn relaying_needs_authentication_and_the_queue() {
        let d = ours().decide("b@Other.Example", true);
        assert_eq!(
            d.verdict,
            Verdict::Relay {
                domain: "other.example".into()
            }
        );
        let no_queue = Policy::new(&["example.org"], false);
        let d = no_queue.decide("b@other.example", true);
        assert_eq!(code(&d), Some((550, "5.7.1".into())));
        assert!(d.reason.contains("--queue"), "{}", d.reason);
        let d = ours().decide("b@other.example", false);
        assert!(d.reason.contains("did not authenticate"), "{}", d.reason);
    }

    #[test]
    fn malformed_addresses_are_syntax_errors() {
        let p = ours();
        for a in [
            "",
            "bob",
            "@",
            "bob@",
            "\"bob@example.org",
            "bob@exa mple.org",
            "bob@-x.org",
            "a\r\nb@example.org",
            "bob@a..b",
        ] {
            let d = p.decide(a, true);
            let (c, _) = code(&d).unwrap_or_else(|| panic!("{a:?} accepted: {d:?}"));
            assert!(c == 501 || c == 550, "{a:?}: {d:?}");
        }
    }
}
