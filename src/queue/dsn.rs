//! Delivery status notifications (RFC 3464) the queue sends to a message's
//! envelope sender: "failed" bounces (a 5xx, or expiry) and "delayed"
//! warnings.
//!
//! Owns the notification's format: a `multipart/report;
//! report-type=delivery-status` message with a human-readable part, a
//! `message/delivery-status` part (Reporting-MTA, Arrival-Date, then per
//! recipient Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
//! Last-Attempt-Date, Will-Retry-Until) and a `text/rfc822-headers` part with
//! the original header block (never the body: it may be large, and a bounce
//! should not carry content back past filters).
//!
//! Guarantees: the output is plain 7-bit-safe structure around the
//! original headers, with LF line endings (the SMTP client turns them into
//! CRLF); every field line is one line (replies' control characters become
//! spaces, diagnostics are cut at 900 bytes), and the MIME boundary never
//! occurs in the content. The notification itself is sent with the null
//! sender (`MAIL FROM:<>`), so it can never cause another bounce.

use crate::calendar::rfc5322_date;
use crate::queue::{Rcpt, RcptStatus};

/// Which notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The message will not be delivered to these recipients.
    Failed,
    /// Not delivered yet; still being retried.
    Delayed,
}

/// What a notification is about.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    /// Failed or delayed.
    pub action: Action,
    /// Our host name (Reporting-MTA, the From address's domain).
    pub reporting_mta: &'a str,
    /// The queue id of the original message.
    pub queue_id: &'a str,
    /// The original envelope sender (the notice's recipient).
    pub sender: &'a str,
    /// When the original arrived (seconds since the epoch).
    pub arrival: u64,
    /// Now (seconds since the epoch): Date and Last-Attempt-Date.
    pub now: u64,
    /// For delayed notices: retries go on until then.
    pub retry_until: Option<u64>,
    /// The recipients reported.
    pub rcpts: Vec<&'a Rcpt>,
    /// The original message (only its header block is used).
    pub original: &'a [u8],
}

/// The header block of `msg` (up to, not including, the blank line), with
/// LF line endings.
pub fn header_block(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len().min(8192));
    for line in msg.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.is_empty() {
            break;
        }
        out.extend_from_slice(body);
        out.push(b'\n');
    }
    out
}

/// Text safe for one 7-bit field line: control characters become spaces,
/// non-ASCII becomes `?`, at most `max` bytes.
fn field_text(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_control() {
                ' '
            } else if c.is_ascii() {
                c
            } else {
                '?'
            }
        })
        .collect();
    out.truncate(max);
    out.trim().to_string()
}

/// The RFC 3463 status in a reply `550 5.1.1 text`, when there is one.
fn enhanced_of(reply: &str) -> Option<String> {
    let mut words = reply.split_ascii_whitespace();
    let code = words.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let e = words.next()?;
    let parts: Vec<&str> = e.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[0].as_bytes()[0] == code.as_bytes()[0]
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| e.to_string())
}

/// Is `reply` a server's reply (starts with a 3-digit code)?
pub fn is_server_reply(reply: &str) -> bool {
    let b = reply.as_bytes();
    b.len() >= 3
        && (b'2'..=b'5').contains(&b[0])
        && b[..3].iter().all(u8::is_ascii_digit)
        && matches!(b.get(3), None | Some(b' ') | Some(b'-'))
}

/// The Status field for a recipient.
pub fn status_of(r: &Rcpt, action: Action) -> String {
    let enh = r.reply.as_deref().and_then(enhanced_of);
    match action {
        Action::Delayed => enh.filter(|e| e.starts_with('4')).unwrap_or("4.0.0".into()),
        // Expired while failing temporarily: the last temporary status, as
        // Postfix reports it, else "delivery time expired".
        Action::Failed if r.expired => enh
            .filter(|e| e.starts_with('4') || e.starts_with('5'))
            .unwrap_or("4.4.7".into()),
        Action::Failed => enh.filter(|e| e.starts_with('5')).unwrap_or("5.0.0".into()),
    }
}

/// A boundary that occurs nowhere in `content`.
fn boundary(queue_id: &str, now: u64, content: &[u8]) -> String {
    let mut b = format!("{queue_id}.{now}/postline");
    let mut n = 0u32;
    while memchr::memmem::find(content, b.as_bytes()).is_some() {
        n += 1;
        b = format!("{queue_id}.{now}.{n}/postline");
    }
    b
}

/// The notification message (LF line endings).
pub fn build(n: &Notice<'_>) -> Vec<u8> {
    let host = field_text(n.reporting_mta, 200);
    let headers = header_block(n.original);
    let b = boundary(n.queue_id, n.now, &headers);
    let mut human = String::new();
    let mut status = String::new();
    let subject = match n.action {
        Action::Failed => {
            human.push_str(
                "This is the mail system (postline mail-queue).\n\n\
                 Your message could not be delivered to one or more recipients.\n\
                 It will not be tried again. The reasons are below; the headers of\n\
                 your message are attached.\n\n",
            );
            "Undelivered Mail Returned to Sender"
        }
        Action::Delayed => {
            human.push_str(
                "This is the mail system (postline mail-queue).\n\n\
                 This is only a warning; you need not send your message again.\n\
                 It has not yet been delivered to the recipients below",
            );
            if let Some(t) = n.retry_until {
                human.push_str(&format!(
                    ",\nand delivery will be tried until {}",
                    rfc5322_date(t)
                ));
            }
            human.push_str(".\n\n");
            "Delayed Mail (still being retried)"
        }
    };
    status.push_str(&format!("Reporting-MTA: dns; {host}\n"));
    status.push_str(&format!(
        "X-Postline-Queue-ID: {}\n",
        field_text(n.queue_id, 40)
    ));
    if !n.sender.is_empty() {
        status.push_str(&format!(
            "X-Postline-Sender: rfc822; {}\n",
            field_text(n.sender, 300)
        ));
    }
    status.push_str(&format!("Arrival-Date: {}\n", rfc5322_date(n.arrival)));
    for r in &n.rcpts {
        let addr = field_text(&r.addr, 300);
        let reply = r.reply.as_deref().unwrap_or("no reason recorded");
        let why = if r.expired {
            format!(
                "delivery time expired; last error: {}",
                field_text(reply, 700)
            )
        } else {
            field_text(reply, 900)
        };
        human.push_str(&format!("<{addr}>: {why}\n"));
        status.push('\n');
        status.push_str(&format!("Final-Recipient: rfc822; {addr}\n"));
        status.push_str(match n.action {
            Action::Failed => "Action: failed\n",
            Action::Delayed => "Action: delayed\n",
        });
        status.push_str(&format!("Status: {}\n", status_of(r, n.action)));
        if let Some(h) = &r.host {
            status.push_str(&format!("Remote-MTA: dns; {}\n", field_text(h, 200)));
        }
        if is_server_reply(reply) {
            status.push_str(&format!(
                "Diagnostic-Code: smtp; {}\n",
                field_text(reply, 900)
            ));
        } else {
            status.push_str(&format!(
                "X-Postline-Diagnostic: {}\n",
                field_text(reply, 900)
            ));
        }
        status.push_str(&format!("Last-Attempt-Date: {}\n", rfc5322_date(n.now)));
        if let (Action::Delayed, Some(t)) = (n.action, n.retry_until) {
            status.push_str(&format!("Will-Retry-Until: {}\n", rfc5322_date(t)));
        }
        debug_assert!(r.status != RcptStatus::Delivered);
    }

    let mut out = Vec::with_capacity(2048 + headers.len());
    let mut put = |s: &str| out.extend_from_slice(s.as_bytes());
    put(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\n\
         To: <{}>\n\
         Subject: {subject}\n\
         Date: {}\n\
         Message-ID: <{}.{}@{host}>\n\
         Auto-Submitted: auto-replied\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status;\n\
         \tboundary=\"{b}\"\n\
         \n\
         This is a MIME-encapsulated message.\n\
         \n\
         --{b}\n\
         Content-Type: text/plain; charset=us-ascii\n\
         Content-Description: Notification\n\
         \n",
        field_text(n.sender, 300),
        rfc5322_date(n.now),
        field_text(n.queue_id, 40),
        match n.action {
            Action::Failed => "bounce",
            Action::Delayed => "delay",
        },
    ));
    put(&human);
    put(&format!(
        "\n--{b}\n\
         Content-Type: message/delivery-status\n\
         Content-Description: Delivery report\n\
         \n"
    ));
    put(&status);
    put(&format!(
        "\n--{b}\n\
         Content-Type: text/rfc822-headers\n\
         Content-Description: {} message headers\n\
         \n",
        match n.action {
            Action::Failed => "Undelivered",
            Action::Delayed => "Delayed",
        }
    ));
    out.extend_from_slice(&headers);
    out.extend_from_slice(format!("\n--{b}--\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(addr: &str, reply: &str, expired: bool) -> Rcpt {
        Rcpt {
            addr: addr.into(),
            status: RcptStatus::Failed,
            reply: Some(reply.into()),
            host: Some("mx.example.org".into()),
            expired,
            bounced: false,
        }
    }

    #[test]
    fn server_replies_are_told_from_our_reasons() {
        assert!(is_server_reply("421 4.3.2 shutting down"));
        assert!(is_server_reply("250"));
        assert!(!is_server_reply(
            "203.0.113.5:25: connecting: Connection refused"
        ));
        assert!(!is_server_reply("connection closed by the server"));
        assert!(!is_server_reply("600 odd"));
    }

    #[test]
    fn statuses_come_from_replies_or_defaults() {
        let r = rcpt("a@x", "550 5.1.1 no such user", false);
        assert_eq!(status_of(&r, Action::Failed), "5.1.1");
        let r = rcpt("a@x", "554 relay denied", false);
        assert_eq!(status_of(&r, Action::Failed), "5.0.0");
        let r = rcpt("a@x", "connecting to x: Connection refused", true);
        assert_eq!(status_of(&r, Action::Failed), "4.4.7");
        let r = rcpt("a@x", "451 4.3.0 try later", true);
        assert_eq!(status_of(&r, Action::Failed), "4.3.0");
        assert_eq!(status_of(&r, Action::Delayed), "4.3.0");
        let r = rcpt("a@x", "452 5.2.2 odd", false);
        assert_eq!(status_of(&r, Action::Delayed), "4.0.0");
    }

    #[test]
    fn a_bounce_is_a_well_formed_report() {
        let a = rcpt(
            "bob@example.org",
            "550 5.1.1 <bob@example.org>: unknown\r\nuser",
            false,
        );
        let b = rcpt("carol@example.org", "connect: refused", true);
        let orig = b"From: alice@example.test\r\nSubject: hi\r\n\tthere\r\n\r\nsecret body\r\n";
        let n = Notice {
            action: Action::Failed,
            reporting_mta: "mta.example.test",
            queue_id: "0123456789ABCDEF0123",
            sender: "alice@example.test",
            arrival: 0,
            now: 86_400,
            retry_until: None,
            rcpts: vec![&a, &b],
            original: orig,
        };
        let out = String::from_utf8(build(&n)).unwrap();
        let b = "0123456789ABCDEF0123.86400/postline";
        assert!(out.contains(&format!("boundary=\"{b}\"\n")), "{out}");
        for want in [
            "To: <alice@example.test>\n",
            "Content-Type: message/delivery-status\n",
            "Reporting-MTA: dns; mta.example.test\n",
            "Arrival-Date: Thu, 1 Jan 1970 00:00:00 +0000\n",
            "\nFinal-Recipient: rfc822; bob@example.org\nAction: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.example.org\nDiagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: unknown  user\n",
            "Final-Recipient: rfc822; carol@example.org\nAction: failed\nStatus: 4.4.7\n",
            "X-Postline-Diagnostic: connect: refused\n",
            "Content-Type: text/rfc822-headers\n",
            "From: alice@example.test\nSubject: hi\n\tthere\n\n",
            "<carol@example.org>: delivery time expired; last error: connect: refused\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        assert!(out.ends_with(&format!("\n--{b}--\n")));
        assert!(!out.contains("secret body"));
        assert!(!out.contains('\r'));
        assert_eq!(out.matches(&format!("--{b}\n")).count(), 3);
    }

    #[test]
    fn the_boundary_avoids_the_content_and_delays_say_until_when() {
        let r = Rcpt {
            status: RcptStatus::Pending,
            ..rcpt("a@x", "451 4.7.1 greylisted", false)
        };
        let orig = b"X-Evil: --ID.5/postline\n\nbody\n";
        let n = Notice {
            action: Action::Delayed,
            reporting_mta: "h",
            queue_id: "ID",
            sender: "s@x",
            arrival: 0,
            now: 5,
            retry_until: Some(86_400 * 5),
            rcpts: vec![&r],
            original: orig,
        };
        let out = String::from_utf8(build(&n)).unwrap();
        assert!(out.contains("boundary=\"ID.5.1/postline\""), "{out}");
        assert!(out.contains("Action: delayed\nStatus: 4.7.1\n"), "{out}");
        assert!(out.contains("Will-Retry-Until: Tue, 6 Jan 1970 00:00:00 +0000\n"));
        assert!(out.contains("Subject: Delayed Mail (still being retried)\n"));
    }
}
