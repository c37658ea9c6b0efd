//! What a submission adds to a message: the envelope taken from the
//! command line or the header (`-t`, with Bcc removed), the header fields a
//! sendmail caller may leave out (From, Date, Message-ID), and the domain
//! that qualifies a bare local part.
//!
//! Owns the rules mail-send applies to its input before anything is sent
//! or queued, so that they are tested here and not through a process.
//! Guarantees: the body is never touched (fields are only added at the top
//! or, with `-t`, Bcc dropped); every recipient appears once (the first
//! spelling kept); no sender or recipient leaves without a domain (a bare
//! `root` becomes `root@DOMAIN`, as Postfix appends myorigin), except the
//! null sender `<>`; never fails on input bytes, only when there is no
//! recipient at all.

use crate::exit::{Error, Kind, Result};
use crate::message::Message;
use crate::send::{Dsn, Envelope};

/// How a message is turned into what is sent: sendmail's flags, decided
/// once by the tool.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// `-t`: recipients from To, Cc and Bcc (and the arguments); Bcc removed.
    pub header_rcpts: bool,
    /// `-f`: the envelope sender as given (`<>` or empty: the null sender).
    pub from: Option<String>,
    /// `-F`: the full name for a From field that is added.
    pub fullname: Option<String>,
    /// DSN parameters for the envelope.
    pub dsn: Dsn,
    /// The domain a bare local part gets ([`local_domain`]).
    pub domain: String,
}

impl Submission {
    /// The message as sent and its envelope, from `input` and the argument
    /// recipients `rcpts`. `smtp_from` is the sender of a `-bs` dialogue's
    /// MAIL command: it wins over `-f` and the header, and `-t` does not
    /// apply (the dialogue named the recipients).
    pub fn prepare(
        &self,
        input: Vec<u8>,
        mut rcpts: Vec<String>,
        smtp_from: Option<String>,
    ) -> Result<(Vec<u8>, Envelope)> {
        // Empty input is a message of header fields only, as with sendmail.
        let mut msg = Message::new(input);
        let header_rcpts = self.header_rcpts && smtp_from.is_none();
        if header_rcpts {
            let mut from_headers = Vec::new();
            for name in ["To", "Cc", "Bcc"] {
                for v in msg.header_values(name) {
                    from_headers.extend(parse_address_list(&v));
                }
            }
            from_headers.extend(rcpts);
            rcpts = from_headers;
        }
        for r in &mut rcpts {
            *r = qualify(r, &self.domain);
        }
        // One RCPT per address, first spelling kept.
        let mut seen = std::collections::HashSet::new();
        rcpts.retain(|r| seen.insert(r.to_ascii_lowercase()));
        if rcpts.is_empty() {
            return Err(Error::new(
                Kind::Usage,
                "choosing recipients",
                if header_rcpts {
                    "no recipients in To, Cc, Bcc or the arguments"
                } else {
                    "no recipients given (name them, or use -t)"
                },
            ));
        }
        let header_from = msg
            .header_values("From")
            .first()
            .and_then(|v| parse_address_list(v).into_iter().next());
        let from = match (smtp_from, self.from.as_deref()) {
            (Some(f), _) => f,
            (None, Some(f)) => {
                let f = f.trim();
                if f == "<>" {
                    String::new()
                } else {
                    crate::message::bare_address(f)
                }
            }
            (None, None) => header_from.unwrap_or_else(|| crate::sysnames::login_name().into()),
        };
        let from = qualify(&from, &self.domain);

        let nl = if msg.bytes().windows(2).any(|w| w == b"\r\n") {
            "\r\n"
        } else {
            "\n"
        };
        let mut add = Vec::new();
        if msg.header_values("From").is_empty() {
            let addr = if from.is_empty() {
                qualify(crate::sysnames::login_name(), &self.domain)
            } else {
                from.clone()
            };
            add.push(match self.fullname.as_deref() {
                Some(n) if !n.is_empty() => format!("From: {} <{addr}>{nl}", quote_name(n)),
                _ => format!("From: {addr}{nl}"),
            });
        }
        if msg.header_values("Date").is_empty() {
            add.push(format!("Date: {}{nl}", rfc5322_now()));
        }
        if msg.message_id().is_none() {
            add.push(format!(
                "Message-ID: <{}>{nl}",
                new_message_id(&from, &self.domain)
            ));
        }
        let drop: &[&str] = if header_rcpts { &["Bcc"] } else { &[] };
        msg.replace_at_top(drop, &add);
        let env = Envelope {
            from,
            rcpts,
            dsn: self.dsn.clone(),
        };
        Ok((msg.into_bytes(), env))
    }
}

/// The domain that qualifies bare local parts: the configured one (`[send]
/// domain`), else the host's FQDN, else its host name (a name without a
/// dot still beats no domain at all; `[send] domain` is the fix).
pub fn local_domain(configured: Option<&str>) -> String {
    configured
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .or(crate::sysnames::fqdn())
        .unwrap_or(crate::sysnames::hostname())
        .to_string()
}

/// `addr` with a domain: a bare local part (`root`, or `root@` with an
/// empty domain) gets `@domain`; an address with a domain and the null
/// sender (empty) are returned as they are.
pub fn qualify(addr: &str, domain: &str) -> String {
    if addr.is_empty() {
        return String::new();
    }
    match addr.rsplit_once('@') {
        Some((_, d)) if !d.is_empty() => addr.to_string(),
        Some((local, _)) => format!("{local}@{domain}"),
        None => format!("{addr}@{domain}"),
    }
}

/// Without `-i`, a line holding only `.` ends the input (sendmail's rule):
/// `input` is cut before it.
pub fn cut_at_lone_dot(input: &mut Vec<u8>) {
    let mut pos = 0;
    while pos < input.len() {
        let end = input[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |i| pos + i + 1);
        let line = &input[pos..end];
        if line == b".\n" || line == b".\r\n" || line == b"." {
            input.truncate(pos);
            return;
        }
        pos = end;
    }
}

/// A display name as RFC 5322 allows it: as it is when every character is
/// an atom character or a space, else a quoted string.
pub fn quote_name(n: &str) -> String {
    if n.chars()
        .all(|c| c.is_ascii_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c))
    {
        n.to_string()
    } else {
        format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The current time as an RFC 5322 date (UTC).
pub fn rfc5322_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::calendar::rfc5322_date(now)
}

/// A new Message-ID (without the angle brackets): seconds, a tag hashed
/// from the time in nanoseconds, the process and the sender, and the
/// sender's domain (`domain` for the null sender).
pub fn new_message_id(from: &str, domain: &str) -> String {
    use sha2::{Digest, Sha256};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(now.as_nanos().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(from.as_bytes());
    let d = h.finalize();
    let tag: String = d[..10].iter().map(|b| format!("{b:02x}")).collect();
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
        .unwrap_or(domain);
    format!("{}.{tag}@{domain}", now.as_secs())
}

/// The addresses in an address-list header value (RFC 5322): display names,
/// quoted strings, comments and groups handled; only addr-specs returned.
pub fn parse_address_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quote, mut depth, mut angle) = (false, 0usize, false);
    let mut chars = v.chars().peekable();
    let push = |cur: &mut String, out: &mut Vec<String>| {
        let a = crate::message::bare_address(cur);
        let a = a.trim();
        if !a.is_empty() && !a.contains(char::is_whitespace) {
            out.push(a.to_string());
        } else if let Some(last) = a.split_whitespace().last()
            && last.contains('@')
        {
            out.push(last.to_string());
        }
        cur.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if quote || depth > 0 => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' if depth == 0 => {
                quote = !quote;
                cur.push(c);
            }
            '(' if !quote => depth += 1,
            ')' if !quote && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            '<' if !quote => {
                angle = true;
                cur.push(c);
            }
            '>' if !quote => {
                angle = false;
                cur.push(c);
            }
            ':' if !quote && !angle => cur.clear(),
            ',' | ';' if !quote && !angle => push(&mut cur, &mut out),
            _ => cur.push(c),
        }
    }
    push(&mut cur, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> Submission {
        Submission {
            domain: "example.org".into(),
            ..Submission::default()
        }
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            parse_address_list(r#""Doe, John" <j@x.org>, b@y.org (Bee), Group: c@z, d@z;, <e@w>"#),
            vec!["j@x.org", "b@y.org", "c@z", "d@z", "e@w"]
        );
        assert_eq!(
            parse_address_list("undisclosed-recipients:;"),
            Vec::<String>::new()
        );
        assert_eq!(parse_address_list("Name a@b"), vec!["a@b"]);
        assert_eq!(parse_address_list("root (Cron Daemon)"), vec!["root"]);
    }

    #[test]
    fn lone_dot_ends_input_without_i() {
        let mut v = b"a\n.\nb\n".to_vec();
        cut_at_lone_dot(&mut v);
        assert_eq!(v, b"a\n");
        let mut v = b"a\n..\nb\n".to_vec();
        cut_at_lone_dot(&mut v);
        assert_eq!(v, b"a\n..\nb\n");
    }

    #[test]
    fn dates_look_right() {
        let d = rfc5322_now();
        assert!(d.ends_with(" +0000") && d.len() > 25, "{d}");
    }

    #[test]
    fn names_are_quoted_only_when_needed() {
        assert_eq!(quote_name("Cron Daemon"), "Cron Daemon");
        assert_eq!(quote_name("Doe, J. \"x\""), "\"Doe, J. \\\"x\\\"\"");
    }

    #[test]
    fn bare_local_parts_get_the_domain_and_the_null_sender_stays() {
        assert_eq!(qualify("root", "h.example"), "root@h.example");
        assert_eq!(qualify("root@", "h.example"), "root@h.example");
        assert_eq!(qualify("a@b.example", "h.example"), "a@b.example");
        assert_eq!(qualify("", "h.example"), "");
        assert_eq!(local_domain(Some("  d.example ")), "d.example");
        assert!(!local_domain(None).is_empty());
        assert!(!local_domain(Some("")).is_empty());
    }

    #[test]
    fn crons_message_gets_a_qualified_envelope() {
        let input = b"From: root (Cron Daemon)\nTo: root\nSubject: x\n\nbody\n".to_vec();
        let s = Submission {
            fullname: Some("CronDaemon".into()),
            ..sub()
        };
        let (msg, env) = s.prepare(input, vec!["root".into()], None).unwrap();
        assert_eq!(env.from, "root@example.org");
        assert_eq!(env.rcpts, vec!["root@example.org"]);
        let text = String::from_utf8(msg).unwrap();
        // The From field is the caller's; only Date and Message-ID are added.
        assert!(text.contains("From: root (Cron Daemon)\n"), "{text}");
        assert!(text.contains("@example.org>\n"), "{text}");
        assert!(text.ends_with("\n\nbody\n"), "{text}");
        // -f <> is the null sender; the added From names the login.
        let s = Submission {
            from: Some("<>".into()),
            ..sub()
        };
        let (msg, env) = s
            .prepare(b"\nx\n".to_vec(), vec!["a@b".into()], None)
            .unwrap();
        assert_eq!(env.from, "");
        let login = format!("From: {}@example.org\n", crate::sysnames::login_name());
        assert!(String::from_utf8(msg).unwrap().starts_with(&login));
    }

    #[test]
    fn dash_t_reads_the_header_removes_bcc_and_keeps_one_of_each() {
        let input = b"From: Me <me@x.org>\r\nTo: a@x.org, B <b@x.org>\r\nCc: A@x.org\r\nBcc: hidden@y.org\r\nSubject: s\r\n\r\nbody\r\n".to_vec();
        let s = Submission {
            header_rcpts: true,
            fullname: Some("Ignored, since From is there".into()),
            ..sub()
        };
        let (msg, env) = s.prepare(input, vec!["extra".into()], None).unwrap();
        assert_eq!(env.from, "me@x.org");
        assert_eq!(
            env.rcpts,
            vec!["a@x.org", "b@x.org", "hidden@y.org", "extra@example.org"]
        );
        let text = String::from_utf8(msg).unwrap();
        assert!(!text.contains("Bcc") && !text.contains("hidden"), "{text}");
        assert!(text.contains("Date: ") && text.contains("\r\nMessage-ID: <"));
        assert!(text.ends_with("\r\n\r\nbody\r\n"), "{text}");
        // In -bs the dialogue's recipients count, not the header's.
        let (_, env) = s
            .prepare(
                b"To: a@x.org\n\nx\n".to_vec(),
                vec!["r@x.org".into()],
                Some("s@x.org".into()),
            )
            .unwrap();
        assert_eq!((env.from.as_str(), env.rcpts.len()), ("s@x.org", 1));
        let e = s.prepare(b"\nx\n".to_vec(), vec![], None).unwrap_err();
        assert_eq!(e.kind(), Kind::Usage);
    }
}
