//! The Received header mail-recv prepends (RFC 5321 4.4, RFC 3848 and
//! RFC 6531 `with` words), in a shape mail-trace's parser
//! (`crate::trace::received`) reads back field for field.
//!
//! Guarantee: nothing a client sends can add a line, a comment or a clause
//! to the header: the HELO name, reverse-DNS name and recipient are
//! written only when they hold nothing but name characters (else `_`
//! replaces each odd character, or the clause is left out), so the header
//! is always one field of the shape below, folded with CRLF TAB at clause
//! boundaries to stay within 78 characters where the names allow:
//!
//! ```text
//! Received: from HELO (RDNS-or-unknown [IP])
//!     by HOST (postline) with ESMTPSA id ID
//!     (version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384)
//!     for <rcpt>; Sun, 6 Dec 2026 12:00:00 +0000
//! ```

use std::net::IpAddr;

use super::{Session, Transaction};

/// The longest name written (a DNS name is at most 253).
const MAX_NAME: usize = 255;

/// A host name or address literal as a safe token: letters, digits, `.-_`,
/// non-ASCII letters (U-labels, RFC 6531), and a whole `[...]` literal.
fn name_token(s: &str) -> String {
    let literal = s.len() > 2
        && s.starts_with('[')
        && s.ends_with(']')
        && s[1..s.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:-".contains(&b));
    if literal {
        return s.chars().take(MAX_NAME).collect();
    }
    let t: String = s
        .chars()
        .take(MAX_NAME)
        .map(|c| {
            if c.is_ascii_alphanumeric()
                || matches!(c, '.' | '-' | '_')
                || (!c.is_ascii() && c.is_alphanumeric())
            {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() {
        "unknown".to_string()
    } else {
        t
    }
}

/// An address as written after `[`: IPv4 as is, IPv6 as `IPv6:...`
/// (IPv4-mapped IPv6 written as IPv4).
fn ip_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// A TLS parameter as a token (OpenSSL names are letters, digits, `._-`).
fn tls_token(s: &str) -> String {
    s.chars()
        .take(64)
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect()
}

/// The recipient is written only when it cannot end the clause or the
/// field: no space, quote, parenthesis, `;`, bracket or control.
fn for_ok(rcpt: &str) -> bool {
    !rcpt.is_empty()
        && rcpt.len() <= 254
        && rcpt
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"\"();<>[]\\,".contains(c))
}

/// The Received field (name, value, final CRLF) for a message of `tx`
/// received by `hostname` in `session` at `now` (seconds since the epoch).
pub(crate) fn header(hostname: &str, session: &Session, tx: &Transaction, now: u64) -> String {
    let mut clauses = Vec::new();
    let helo = name_token(&session.helo);
    let rdns = session
        .peer
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .map(name_token);
    match (session.peer.ip, rdns) {
        (Some(ip), rdns) => clauses.push(format!(
            "from {helo} ({} {})",
            rdns.as_deref().unwrap_or("unknown"),
            ip_literal(ip)
        )),
        (None, Some(rdns)) => clauses.push(format!("from {helo} ({rdns})")),
        (None, None) => clauses.push(format!("from {helo}")),
    }
    let mut by = format!(
        "by {} (postline) with {} id {}",
        name_token(hostname),
        session.with,
        tls_token(&tx.id)
    );
    if by.len() > 70 {
        by = by.replacen(" with ", "\r\n\twith ", 1);
    }
    clauses.push(by);
    if let Some(tls) = &session.tls {
        clauses.push(format!(
            "(version={} cipher={})",
            tls_token(&tls.version),
            tls_token(&tls.cipher)
        ));
    }
    if let [rcpt] = tx.rcpts.as_slice()
        && for_ok(rcpt)
    {
        clauses.push(format!("for <{rcpt}>"));
    }
    // `by`, the TLS comment and `for` each start a line, as the MTAs whose
    // headers the trace parser knows best write them; the date follows the
    // `;` on the same line when it fits, else on its own.
    let mut out = String::from("Received:");
    for (i, c) in clauses.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { "\r\n\t" });
        out.push_str(c);
    }
    let date = crate::calendar::rfc5322_date(now);
    // Columns on the last line, a tab counted as 8.
    let line_len = match out.rfind('\n') {
        Some(i) => out.len() - i - 1 + 7,
        None => out.len(),
    };
    out.push(';');
    out.push_str(if line_len + 2 + date.len() > 78 {
        "\r\n\t"
    } else {
        " "
    });
    out.push_str(&date);
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Peer, TlsInfo};
    use super::*;
    use crate::trace::received;

    fn session(helo: &str, ip: Option<&str>, host: Option<&str>, with: &str) -> Session {
        Session {
            peer: Peer {
                ip: ip.map(|i| i.parse().unwrap()),
                host: host.map(str::to_string),
            },
            helo: helo.to_string(),
            tls: Some(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS_AES_256_GCM_SHA384".into(),
            }),
            auth_user: None,
            with: with.to_string(),
        }
    }

    fn tx(rcpts: &[&str]) -> Transaction {
        Transaction {
            id: "0123456789ABCDEF0123".into(),
            mail_from: "a@b.example".into(),
            rcpts: rcpts.iter().map(|s| s.to_string()).collect(),
            ..Transaction::default()
        }
    }

    /// 2026-12-06 12:00:00 UTC.
    const NOW: u64 = 1_796_558_400;

    #[test]
    fn the_trace_parser_reads_every_field_back() {
        let s = session(
            "client.example",
            Some("192.0.2.7"),
            Some("ptr.example"),
            "ESMTPSA",
        );
        let h = header("mx.example", &s, &tx(&["bob@mx.example"]), NOW);
        assert!(h.starts_with("Received: from client.example (ptr.example [192.0.2.7])\r\n\tby mx.example (postline) with ESMTPSA id 0123456789ABCDEF0123\r\n\t(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384)\r\n\tfor <bob@mx.example>; Sun, 6 Dec 2026 12:00:00 +0000\r\n"), "{h}");
        assert!(h.lines().all(|l| l.len() <= 78), "{h}");
        let value = h.strip_prefix("Received:").unwrap();
        let hop = received::parse(value);
        assert_eq!(hop.from.as_deref(), Some("client.example"));
        assert_eq!(hop.helo.as_deref(), Some("client.example"));
        assert_eq!(hop.rdns.as_deref(), Some("ptr.example"));
        assert_eq!(hop.ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(hop.by.as_deref(), Some("mx.example"));
        assert_eq!(hop.with.as_deref(), Some("ESMTPSA"));
        assert_eq!(hop.protocol.as_deref(), Some("ESMTPSA"));
        assert_eq!(hop.id.as_deref(), Some("0123456789ABCDEF0123"));
        assert_eq!(hop.tls_version.as_deref(), Some("TLSv1.3"));
        assert_eq!(hop.tls_cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
        assert_eq!(hop.for_addr.as_deref(), Some("bob@mx.example"));
        assert_eq!(hop.date.as_ref().map(|d| d.unix), Some(NOW as i64));
        assert!(hop.warnings.is_empty(), "{:?}", hop.warnings);
    }

    #[test]
    fn every_with_word_and_ipv6_read_back() {
        for with in [
            "SMTP",
            "ESMTP",
            "ESMTPS",
            "ESMTPA",
            "ESMTPSA",
            "LMTP",
            "LMTPS",
            "LMTPA",
            "LMTPSA",
            "UTF8SMTP",
            "UTF8SMTPS",
            "UTF8SMTPA",
            "UTF8SMTPSA",
            "UTF8LMTPSA",
        ] {
            let mut s = session("[IPv6:2001:db8::1]", Some("2001:db8::1"), None, with);
            s.tls = None;
            let h = header("mx.example", &s, &tx(&["a@x", "b@x"]), NOW);
            let hop = received::parse(h.strip_prefix("Received:").unwrap());
            assert_eq!(hop.protocol.as_deref(), Some(with), "{h}");
            assert_eq!(hop.ip.as_deref(), Some("2001:db8::1"), "{h}");
            assert_eq!(hop.for_addr, None, "{h}");
            assert!(h.contains("(unknown [IPv6:2001:db8::1])"), "{h}");
            assert_eq!(hop.date.as_ref().map(|d| d.unix), Some(NOW as i64));
        }
    }

    #[test]
    fn a_client_cannot_inject_lines_or_comments() {
        let s = session(
            "evil)\r\n\tby x (y) with Z; Mon, 1 Jan 2024 00:00:00 +0000\r\nX-Evil: 1 (",
            Some("192.0.2.7"),
            Some("ptr(\r\nX: y"),
            "ESMTP",
        );
        let h = header("mx.example", &s, &tx(&["\"a;b\"@x"]), NOW);
        assert_eq!(
            h.matches("\r\n").count(),
            h.matches("\r\n\t").count() + 1,
            "{h}"
        );
        assert!(!h.contains("X-Evil") || !h.contains("\nX-Evil"), "{h}");
        assert_eq!(h.matches('(').count(), 3, "{h}");
        let hop = received::parse(h.strip_prefix("Received:").unwrap());
        assert_eq!(hop.by.as_deref(), Some("mx.example"));
        assert_eq!(hop.ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(hop.for_addr, None);
        assert_eq!(hop.date.as_ref().map(|d| d.unix), Some(NOW as i64));
    }
}
