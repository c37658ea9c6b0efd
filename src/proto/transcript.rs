//! The protocol transcript behind `-v`: every line a client sends (`C:`) and
//! receives (`S:`), written to a sink the tool supplies (stderr).
//!
//! Guarantee: credentials never reach the sink. Clients send secrets only
//! through [`Transcript::sent_secret`], which writes the command verb and
//! `<redacted>` instead of the argument; SASL continuation lines go through
//! it too.
//!
//! Also owns [`printable`], the one escaper of text a peer chose (replies,
//! greetings, errors quoting them) before a terminal sees it: every line of
//! the transcript goes through it, and so does every diagnostic the tools
//! print (`tools::Ctx`). A server cannot recolour, retitle or rewrite the
//! user's terminal.

use std::borrow::Cow;
use std::io::Write;

/// `s` with every control character (C0, DEL, C1: ESC, BEL, CR, the 8-bit
/// CSI) and every bidirectional override written as a visible escape
/// (`\u{1b}`), so it shows as text and does nothing to a terminal. Text
/// without such characters is returned as is.
pub fn printable(s: &str) -> Cow<'_, str> {
    let bad =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if bad(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Where protocol lines go; off by default.
#[derive(Default)]
pub struct Transcript {
    sink: Option<Box<dyn Write + Send>>,
    prefix: String,
}

impl Transcript {
    /// No transcript.
    pub fn off() -> Transcript {
        Transcript::default()
    }

    /// Write lines to `sink`, each starting with `prefix` (e.g.
    /// `mail-send: smtp.example.org: `).
    pub fn to(sink: Box<dyn Write + Send>, prefix: impl Into<String>) -> Transcript {
        Transcript {
            sink: Some(sink),
            prefix: prefix.into(),
        }
    }

    /// Is a transcript being written?
    pub fn is_on(&self) -> bool {
        self.sink.is_some()
    }

    fn emit(&mut self, dir: &str, data: &[u8]) {
        if let Some(w) = self.sink.as_mut() {
            let text = String::from_utf8_lossy(data);
            for line in text.split_inclusive('\n') {
                let line = line.trim_end_matches(['\r', '\n']);
                let _ = writeln!(w, "{}{dir} {}", self.prefix, printable(line));
            }
        }
    }

    /// Lines sent (one or several, CRLF-separated).
    pub fn sent(&mut self, data: &[u8]) {
        self.emit("C:", data);
    }

    /// Lines received.
    pub fn received(&mut self, data: &[u8]) {
        self.emit("S:", data);
    }

    /// A line carrying a secret: only `shown` (e.g. `AUTH PLAIN`) is
    /// written, followed by `<redacted>`.
    pub fn sent_secret(&mut self, shown: &str) {
        let shown = if shown.is_empty() {
            "<redacted>".to_string()
        } else {
            format!("{shown} <redacted>")
        };
        self.emit("C:", shown.as_bytes());
    }

    /// A note that is not protocol traffic (e.g. "TLS established").
    pub fn note(&mut self, text: &str) {
        self.emit("--", text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_prefixed_and_secrets_redacted() {
        let buf = Buf::default();
        let mut t = Transcript::to(Box::new(buf.clone()), "x: ");
        t.sent(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
        t.received(b"250 ok\r\n");
        t.sent_secret("AUTH PLAIN");
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            out,
            "x: C: MAIL FROM:<a@b>\nx: C: RCPT TO:<c@d>\nx: S: 250 ok\nx: C: AUTH PLAIN <redacted>\n"
        );
        assert!(!Transcript::off().is_on());
    }

    #[test]
    fn peer_text_is_escaped_for_the_terminal() {
        assert!(matches!(printable("250 ok \u{e9}"), Cow::Borrowed(_)));
        assert_eq!(
            printable("451 \x1b[31mred\x1b]0;t\x07\r\u{9b}1m\u{202e}x"),
            "451 \\u{1b}[31mred\\u{1b}]0;t\\u{7}\\r\\u{9b}1m\\u{202e}x"
        );
        let buf = Buf::default();
        let mut t = Transcript::to(Box::new(buf.clone()), "");
        t.received(b"451 \x1b[2J gone\r\n");
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out, "S: 451 \\u{1b}[2J gone\n");
    }
}
