//! SMTP/LMTP replies: [`Reply`], the parsing of reply lines and whole
//! replies, and the [`Stage`] a reply answers, which decides what a
//! non-positive reply means ([`Reply::kind`]).
//!
//! Guarantees: no panic on any bytes; a malformed line, a line that does
//! not continue the reply it is in, or an incomplete reply is a
//! [`Kind::Temporary`] error of [`Origin::Protocol`] (a server speaking
//! nonsense may be fine tomorrow, so the message is kept); a 4xx is
//! temporary at every stage, a 5xx permanent ([`Kind::NoUser`] for 550,
//! 551 and 553 to RCPT TO). Shared by the client and, later, the server
//! (which writes replies of the same shape).

use crate::exit::{Error, Kind, Origin, Result};

/// The longest reply line accepted, CRLF included (RFC 5321 asks for 512;
/// real servers send longer EHLO and error lines).
pub const MAX_LINE: usize = 4096;
/// The most lines one reply may have.
pub const MAX_REPLY_LINES: usize = 1000;

/// One server reply: the code, the enhanced status code when the first line
/// carries one, and the text of every line (without code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The RFC 3463 enhanced status (`"5.1.1"`), when present.
    pub enhanced: Option<String>,
    /// The text of each line, the enhanced status removed from the first.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx: done. The only reply that completes MAIL, RCPT, the end of
    /// DATA (and each LMTP recipient after it); a 3xx there is a server out
    /// of step, never a success.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: refused for good.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The reply as one line: `550 5.1.1 text text`.
    pub fn text(&self) -> String {
        let mut s = self.code.to_string();
        if let Some(e) = &self.enhanced {
            s.push(' ');
            s.push_str(e);
        }
        for l in &self.lines {
            if !l.is_empty() {
                s.push(' ');
                s.push_str(l);
            }
        }
        s
    }

    /// The kind of a non-positive reply at `stage` (see the module docs).
    pub fn kind(&self, stage: Stage) -> Kind {
        if self.code < 500 {
            Kind::Temporary
        } else if stage == Stage::Rcpt && matches!(self.code, 550 | 551 | 553) {
            Kind::NoUser
        } else {
            Kind::Unavailable
        }
    }

    /// The error for this reply at `stage`, as the server's words.
    pub(crate) fn error(&self, context: &str, stage: Stage) -> Error {
        Error::new(
            self.kind(stage),
            context,
            format!("server said: {}", self.text()),
        )
    }
}

/// One line of a reply: code, whether it is the last line, and its text.
///
/// Accepts `250-text`, `250 text` and a bare `250`; anything else is a
/// temporary error (a server speaking nonsense may be fine tomorrow).
pub fn parse_reply_line(line: &[u8]) -> Result<(u16, bool, &[u8])> {
    let bad = || {
        out_of_step(
            "reading the server's reply",
            format!("malformed reply line {:?}", String::from_utf8_lossy(line)),
        )
    };
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    if !(b'2'..=b'5').contains(&line[0]) {
        return Err(bad());
    }
    let code =
        (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    match line.get(3) {
        None => Ok((code, true, &[])),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(bad()),
    }
}

/// Split an RFC 3463 status (`x.y.z` whose class matches the code) off `text`.
fn split_enhanced(code: u16, text: &str) -> (Option<String>, String) {
    let (word, rest) = match text.find(' ') {
        Some(i) => (&text[..i], text[i + 1..].to_string()),
        None => (text, String::new()),
    };
    let parts: Vec<&str> = word.split('.').collect();
    let ok = parts.len() == 3
        && parts[0].len() == 1
        && parts[0].as_bytes()[0] == b'0' + (code / 100) as u8
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()));
    if ok {
        (Some(word.to_string()), rest)
    } else {
        (None, text.to_string())
    }
}

/// Parse a complete reply from its lines (CRLF or LF already removed).
pub fn parse_reply<'a, I: IntoIterator<Item = &'a [u8]>>(lines: I) -> Result<Reply> {
    let mut code = None;
    let mut texts = Vec::new();
    let mut done = false;
    for line in lines {
        if done {
            return Err(out_of_step(
                "reading the server's reply",
                "lines after the last line of a reply",
            ));
        }
        let (c, last, text) = parse_reply_line(line)?;
        if *code.get_or_insert(c) != c {
            return Err(out_of_step(
                "reading the server's reply",
                format!(
                    "reply codes differ within one reply ({} and {c})",
                    code.unwrap_or(c)
                ),
            ));
        }
        texts.push(String::from_utf8_lossy(text).into_owned());
        done = last;
    }
    let Some(code) = code.filter(|_| done) else {
        return Err(out_of_step(
            "reading the server's reply",
            "incomplete reply",
        ));
    };
    let (enhanced, first) = split_enhanced(code, &texts[0]);
    texts[0] = first;
    Ok(Reply {
        code,
        enhanced,
        lines: texts,
    })
}

/// The stage of a transaction a reply answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// The DATA command (before the payload).
    Data,
    /// The reply after the final dot.
    Final,
}

/// The server broke the protocol (a malformed or unasked-for reply): a
/// temporary failure, since SMTP keeps the message for a server that may
/// speak sense tomorrow, of [`Origin::Protocol`].
pub(crate) fn out_of_step(context: impl Into<String>, cause: impl std::fmt::Display) -> Error {
    Error::new(Kind::Temporary, context, cause).from_origin(Origin::Protocol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::smtp::Capabilities;

    fn reply(s: &[u8]) -> Result<Reply> {
        let lines: Vec<&[u8]> = s.split(|&b| b == b'\n').collect();
        parse_reply(lines)
    }

    #[test]
    fn parses_single_and_multi_line_replies() {
        let r = reply(b"550 5.1.1 <x@y>: user unknown").unwrap();
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced.as_deref(), Some("5.1.1"));
        assert_eq!(r.lines, vec!["<x@y>: user unknown"]);
        assert_eq!(r.text(), "550 5.1.1 <x@y>: user unknown");
        let r = reply(b"250-mx.example\n250-PIPELINING\n250-SIZE 1000\n250-AUTH PLAIN login\n250-AUTH=XOAUTH2\n250 8BITMIME").unwrap();
        assert_eq!(r.lines.len(), 6);
        let c = Capabilities::parse(&r);
        assert!(c.pipelining && c.eightbitmime && !c.starttls);
        assert_eq!(c.size, Some(1000));
        assert_eq!(c.auth, vec!["PLAIN", "LOGIN", "XOAUTH2"]);
        let r = reply(b"250").unwrap();
        assert_eq!((r.code, r.enhanced.clone()), (250, None));
        // A class that does not match the code is text, not a status.
        assert_eq!(reply(b"250 5.1.1 ok").unwrap().enhanced, None);
    }

    #[test]
    fn malformed_replies_are_temporary_errors() {
        for bad in [
            &b""[..],
            b"25",
            b"abc hello",
            b"650 nope",
            b"250x",
            b"250-a\n251 b",
            b"250-a",
            b"250 a\n250 b",
            b"\xff\xfe\xfd",
        ] {
            let e = reply(bad).unwrap_err();
            assert_eq!(e.kind(), Kind::Temporary, "{bad:?}");
        }
    }
}
