//! The `vacation` action (RFC 5230): whether a reply may be sent, and the
//! reply itself. Sending it is the caller's (through `send::Sender` or the
//! queue), and so is remembering it (through [`super::duplicate::Memory`]).
//!
//! Guarantees ([`decide`]): no reply to the null sender, to
//! `MAILER-DAEMON`, `LISTSERV`, `majordomo`, `owner-*`, `*-owner` or
//! `*-request`, to a message with `Auto-Submitted` other than `no`, with
//! `Precedence: bulk`, `list` or `junk`, with `X-Auto-Response-Suppress`
//! naming `OOF` or `All`, or with a `List-*` field; none
//! unless one of the user's addresses (the recipient, `:addresses`,
//! `:from`) is in To, Cc, Bcc or their Resent- forms (RFC 5230 4.5); none
//! to the user; at most one per sender and handle per period (`:days`,
//! at least 1). The reply goes to the envelope sender from the null
//! sender (RFC 5230 5.1), with In-Reply-To, References and
//! `Auto-Submitted: auto-replied`; no text from the message reaches a
//! header with a line break in it.

use super::duplicate::{Remember, Seen, vacation_key};
use super::mime;
use crate::message::{self, Message};

/// `:days` when not given.
pub const DEFAULT_DAYS: u64 = 7;
/// The shortest period (RFC 5230 4.1: at least one day).
pub const MIN_DAYS: u64 = 1;
/// The longest period honoured.
pub const MAX_DAYS: u64 = 365;

/// The tags of a `vacation` command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `:days`
    pub days: Option<u64>,
    /// `:subject`
    pub subject: Option<String>,
    /// `:from`
    pub from: Option<String>,
    /// `:addresses`
    pub addresses: Vec<String>,
    /// `:mime`: the reason is a MIME entity (its header fields, a blank
    /// line, its body).
    pub mime: bool,
    /// `:handle`
    pub handle: Option<String>,
    /// Without `:handle`, the handle made from the script's text before
    /// variables are expanded (set by the evaluator, as Pigeonhole does:
    /// a reason built from the message must not answer every message).
    pub auto_handle: Option<String>,
}

impl Options {
    /// The period in days, within [`MIN_DAYS`]..=[`MAX_DAYS`].
    pub fn days(&self) -> u64 {
        self.days.unwrap_or(DEFAULT_DAYS).clamp(MIN_DAYS, MAX_DAYS)
    }

    /// The handle: as given, else made from the reason, `:subject`, `:from`
    /// and `:mime` (RFC 5230 4.2; spelled as Pigeonhole spells it, so a
    /// changed text answers again).
    pub fn handle(&self, reason: &str) -> String {
        match self.handle.as_ref().or(self.auto_handle.as_ref()) {
            Some(h) => h.clone(),
            None => format!(
                "{reason}{}{}{}",
                self.subject.as_deref().unwrap_or("<default-subject>"),
                self.from.as_deref().unwrap_or("<default-from>"),
                if self.mime { "<MIME>" } else { "<NO-MIME>" }
            ),
        }
    }
}

/// What the message and the delivery tell the decision.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The message as delivered (LF line ends).
    pub message: &'a [u8],
    /// The envelope sender (None or "" for the null sender).
    pub sender: Option<&'a str>,
    /// The envelope recipient (the user), when known.
    pub recipient: Option<&'a str>,
    /// Now, seconds since the epoch.
    pub now: i64,
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// RCPT TO: the envelope sender of the message.
    pub to: String,
    /// The From field.
    pub from: String,
    /// The Subject (before encoding).
    pub subject: String,
    /// The whole reply (LF line ends); sent with `MAIL FROM:<>`.
    pub message: Vec<u8>,
    /// What to remember once it is sent or queued.
    pub remember: Remember,
}

/// Header fields whose presence marks list mail (RFC 2369, 2919).
const LIST_FIELDS: &[&str] = &[
    "List-Id",
    "List-Help",
    "List-Subscribe",
    "List-Unsubscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// Recipient fields that must hold one of the user's addresses.
const RCPT_FIELDS: &[&str] = &["To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc"];

fn same_address(a: &str, b: &str) -> bool {
    let strip = |x: &str| -> String {
        let x = x.to_ascii_lowercase();
        match x.split_once('@') {
            Some((l, d)) => format!("{}@{d}", l.split_once('+').map_or(l, |(u, _)| u)),
            None => x,
        }
    };
    a.eq_ignore_ascii_case(b) || strip(a) == strip(b)
}

/// A header value with every line break and control character made a
/// space: message and script text must not start a new field.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// `s` as an unstructured header value: as is when printable ASCII, else
/// RFC 2047 encoded words (UTF-8, base64, at most 45 octets each).
pub fn encode_header(s: &str) -> String {
    if s.chars().all(|c| (' '..='~').contains(&c)) {
        return s.to_string();
    }
    super::mime::encode_2047(s, "\n ")
}

/// Whether to reply, and the reply; `Err` says why not.
pub fn decide(
    reason: &str,
    opts: &Options,
    cx: Context<'_>,
    seen: &dyn Seen,
) -> Result<Reply, String> {
    let sender = match cx.sender.map(message::bare_address) {
        Some(s) if !s.is_empty() => s,
        _ => return Err("the sender is the null sender <>".into()),
    };
    // The sender becomes the reply's `To: <...>` and its RCPT: nothing that
    // could end the bracket, the line or the field (the envelope comes from
    // the caller, but an mbox's From_ line is anybody's text).
    if sender
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '"'))
        || !sender.contains('@')
    {
        return Err(format!(
            "the sender <{}> is not an address a reply can go to",
            one_line(&sender)
        ));
    }
    let local = sender
        .rsplit_once('@')
        .map_or(sender.as_str(), |(l, _)| l)
        .to_ascii_lowercase();
    if ["mailer-daemon", "listserv", "majordomo"].contains(&local.as_str())
        || local.starts_with("owner-")
        || local.ends_with("-owner")
        || local.ends_with("-request")
    {
        return Err(format!("the sender <{sender}> is a mailer or list address"));
    }
    let msg = Message::new(cx.message.to_vec());
    let fields = msg.fields();
    let first = |name: &str| mime::header_values(&fields, name).into_iter().next();
    if let Some(a) = first("Auto-Submitted") {
        let v = a
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if v != "no" {
            return Err(format!("the message is Auto-Submitted: {}", one_line(&a)));
        }
    }
    if let Some(p) = first("Precedence") {
        let v = p.trim().to_ascii_lowercase();
        if ["bulk", "list", "junk"].contains(&v.as_str()) {
            return Err(format!("the message has Precedence: {v}"));
        }
    }
    if let Some(f) = LIST_FIELDS.iter().find(|f| fields.iter().any(|x| x.is(f))) {
        return Err(format!("the message is list mail ({f})"));
    }
    // Microsoft's X-Auto-Response-Suppress ([MS-OXCMAIL] 2.2.3.2.20): OOF
    // or All asks for no out-of-office reply (Pigeonhole honours it too).
    for v in mime::header_values(&fields, "X-Auto-Response-Suppress") {
        if v.split(',')
            .any(|t| ["oof", "all"].contains(&t.trim().to_ascii_lowercase().as_str()))
        {
            return Err(format!(
                "the message has X-Auto-Response-Suppress: {}",
                one_line(&v)
            ));
        }
    }
    let mut mine: Vec<String> = Vec::new();
    if let Some(r) = cx.recipient {
        mine.push(message::bare_address(r));
    }
    mine.extend(opts.addresses.iter().map(|a| message::bare_address(a)));
    let from_addr = opts
        .from
        .as_deref()
        .map(|f| mime::addresses(f).into_iter().next().unwrap_or_default())
        .filter(|a| a.contains('@'));
    if let Some(f) = &from_addr {
        mine.push(f.clone());
    }
    mine.retain(|a| a.contains('@'));
    if mine.is_empty() {
        return Err("the user's address is unknown (give --recipient or :addresses)".into());
    }
    if mine.iter().any(|m| same_address(m, &sender)) {
        return Err(format!("the sender <{sender}> is the user"));
    }
    // The user's address the message was written to: the reply comes
    // from it (the sender knows that one; Pigeonhole does the same).
    let addressed = RCPT_FIELDS.iter().find_map(|name| {
        mime::header_values(&fields, name)
            .iter()
            .flat_map(|v| mime::addresses(v))
            .find_map(|a| mine.iter().find(|m| same_address(m, &a)).cloned())
    });
    let Some(addressed) = addressed else {
        return Err(format!(
            "none of the user's addresses ({}) is in To, Cc or Bcc",
            mine.join(", ")
        ));
    };
    let handle = opts.handle(reason);
    let key = vacation_key(&handle, &sender);
    let days = opts.days();
    if seen.seen(&key, cx.now) {
        return Err(format!(
            "<{sender}> was already answered in the last {days} day(s)"
        ));
    }
    let from_field = match &opts.from {
        Some(f) if from_addr.is_some() => one_line(f),
        _ => addressed.clone(),
    };
    let from_bare = from_addr.unwrap_or(addressed);
    let subject = match &opts.subject {
        Some(s) => one_line(s),
        None => match first("Subject").map(|s| one_line(&s)) {
            Some(s) if !s.is_empty() => format!("Auto: {s}"),
            _ => "Automated reply".into(),
        },
    };
    let domain = from_bare.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let mut h = String::new();
    h.push_str(&format!("From: {from_field}\n"));
    h.push_str(&format!("To: <{sender}>\n"));
    h.push_str(&format!("Subject: {}\n", encode_header(&subject)));
    h.push_str(&format!(
        "Date: {}\n",
        crate::calendar::rfc5322_date(cx.now.max(0) as u64)
    ));
    h.push_str(&format!(
        "Message-ID: <{}>\n",
        crate::compose::new_message_id(&from_bare, domain)
    ));
    if let Some(id) = msg.message_id() {
        let id = format!("<{}>", one_line(&id));
        h.push_str(&format!("In-Reply-To: {id}\n"));
        let refs = first("References").map(|r| one_line(&r));
        match refs {
            Some(r) if !r.is_empty() => h.push_str(&format!("References: {r}\n {id}\n")),
            _ => h.push_str(&format!("References: {id}\n")),
        }
    }
    h.push_str("Auto-Submitted: auto-replied (vacation)\n");
    h.push_str("MIME-Version: 1.0\n");
    let body = reason.replace("\r\n", "\n");
    let mut out = h.into_bytes();
    if opts.mime {
        // The reason is the entity: its own Content-Type and body. Without
        // a header block it is text/plain.
        let entity = body.trim_start_matches('\n');
        let has_fields = entity.split('\n').next().is_some_and(|l| {
            l.split_once(':').is_some_and(|(n, _)| {
                !n.is_empty() && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            })
        });
        if !has_fields {
            out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\n\n");
        }
        out.extend_from_slice(entity.as_bytes());
    } else {
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\n");
        out.extend_from_slice(if body.is_ascii() {
            b"Content-Transfer-Encoding: 7bit\n\n"
        } else {
            b"Content-Transfer-Encoding: 8bit\n\n"
        });
        out.extend_from_slice(body.as_bytes());
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    Ok(Reply {
        to: sender,
        from: from_field,
        subject,
        message: out,
        remember: Remember {
            key,
            seconds: days * 86_400,
            refresh: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sieve::duplicate::Memory;

    const MSG: &[u8] = b"From: Alice <alice@example.org>\n\
To: Me <me@example.net>\n\
Subject: lunch =?UTF-8?Q?caf=C3=A9?=\n\
Message-ID: <m1@example.org>\n\
References: <m0@example.org>\n\
\n\
Shall we?\n";

    fn cx<'a>(msg: &'a [u8], sender: Option<&'a str>) -> Context<'a> {
        Context {
            message: msg,
            sender,
            recipient: Some("me+work@example.net"),
            now: 1_767_225_600,
        }
    }

    fn with_header(h: &str) -> Vec<u8> {
        let mut m = h.as_bytes().to_vec();
        m.extend_from_slice(MSG);
        m
    }

    #[test]
    fn the_reply_answers_the_envelope_sender() {
        let r = decide(
            "I am away.",
            &Options::default(),
            cx(MSG, Some("alice@example.org")),
            &(),
        )
        .unwrap();
        assert_eq!(r.to, "alice@example.org");
        assert_eq!(r.subject, "Auto: lunch café");
        let text = String::from_utf8(r.message).unwrap();
        assert!(text.starts_with("From: me+work@example.net\nTo: <alice@example.org>\n"));
        assert!(text.contains("\nSubject: =?UTF-8?B?"), "{text}");
        assert!(text.contains("\nIn-Reply-To: <m1@example.org>\n"));
        assert!(text.contains("\nReferences: <m0@example.org>\n <m1@example.org>\n"));
        assert!(text.contains("\nAuto-Submitted: auto-replied (vacation)\n"));
        assert!(text.ends_with("\n\nI am away.\n"));
        assert_eq!(r.remember.seconds, 7 * 86_400);
    }

    #[test]
    fn no_reply_to_lists_bulk_robots_or_the_null_sender() {
        let o = Options::default();
        let s = Some("alice@example.org");
        for h in [
            "List-Id: <x.example.org>\n",
            "Precedence: bulk\n",
            "Precedence: junk\n",
            "Auto-Submitted: auto-generated\n",
            "List-Unsubscribe: <mailto:x@example.org>\n",
            "X-Auto-Response-Suppress: DR, OOF\n",
            "X-Auto-Response-Suppress: All\n",
        ] {
            let m = with_header(h);
            assert!(decide("r", &o, cx(&m, s), &()).is_err(), "{h}");
        }
        for h in ["Auto-Submitted: no\n", "X-Auto-Response-Suppress: DR, RN\n"] {
            let m = with_header(h);
            assert!(decide("r", &o, cx(&m, s), &()).is_ok(), "{h}");
        }
        for snd in [
            None,
            Some(""),
            Some("MAILER-DAEMON@example.org"),
            Some("owner-rust@example.org"),
            Some("rust-request@example.org"),
            Some("me@example.net"),
            Some("a@example.org>\nBcc: x@example.com"),
            Some("a b@example.org"),
            Some("nodomain"),
        ] {
            assert!(decide("r", &o, cx(MSG, snd), &()).is_err(), "{snd:?}");
        }
        let e = decide("r", &o, cx(MSG, Some("a b@example.org")), &()).unwrap_err();
        assert!(e.contains("not an address a reply can go to"), "{e}");
    }

    #[test]
    fn only_when_addressed_to_the_user() {
        let m = b"From: a@example.org\nTo: other@example.com\n\nx\n";
        let o = Options::default();
        let e = decide("r", &o, cx(m, Some("a@example.org")), &()).unwrap_err();
        assert!(e.contains("none of the user's addresses"), "{e}");
        let o = Options {
            addresses: vec!["other@example.com".into()],
            ..Options::default()
        };
        // The reply comes from the address the message was written to.
        let r = decide("r", &o, cx(m, Some("a@example.org")), &()).unwrap();
        assert_eq!(r.from, "other@example.com");
    }

    #[test]
    fn once_per_sender_and_period() {
        let mut mem = Memory::empty();
        let o = Options {
            days: Some(0),
            ..Options::default()
        };
        let c = cx(MSG, Some("Alice@Example.org"));
        let r = decide("r", &o, c, &mem).unwrap();
        assert_eq!(r.remember.seconds, 86_400, ":days 0 is one day");
        mem.remember(&r.remember, c.now);
        assert!(decide("r", &o, c, &mem).is_err());
        let later = Context {
            now: c.now + 86_400,
            ..c
        };
        assert!(decide("r", &o, later, &mem).is_ok());
        // Another handle answers again.
        let o2 = Options {
            handle: Some("other".into()),
            ..o
        };
        assert!(decide("r", &o2, c, &mem).is_ok());
    }

    #[test]
    fn script_text_cannot_add_header_fields() {
        let o = Options {
            subject: Some("hi\nBcc: victim@example.com".into()),
            from: Some("Me <me@example.net>\nX-Evil: 1".into()),
            ..Options::default()
        };
        let r = decide("r", &o, cx(MSG, Some("alice@example.org")), &()).unwrap();
        let text = String::from_utf8(r.message).unwrap();
        assert!(!text.contains("\nBcc:"), "{text}");
        assert!(!text.contains("\nX-Evil:"), "{text}");
    }

    #[test]
    fn mime_reasons_bring_their_own_content_type() {
        let o = Options {
            mime: true,
            ..Options::default()
        };
        let reason = "Content-Type: text/html\n\n<p>away</p>\n";
        let r = decide(reason, &o, cx(MSG, Some("alice@example.org")), &()).unwrap();
        let text = String::from_utf8(r.message).unwrap();
        assert!(text.contains("MIME-Version: 1.0\nContent-Type: text/html\n\n<p>away</p>\n"));
        assert_eq!(text.matches("Content-Type").count(), 1);
    }
}
