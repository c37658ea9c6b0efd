//! POP3 responses: status lines (`+OK`, `-ERR`, the SASL `+`), the
//! RFC 2449 response codes that decide what an `-ERR` means, the CAPA
//! listing, and the readers of lines and multi-line responses with their
//! limits (over any `BufRead`, so the fuzz target drives them with
//! arbitrary bytes).
//!
//! Guarantees: no panic on any bytes; a line longer than its limit, a
//! multi-line response longer than its limit and EOF are [`ReadError`]s
//! that stop reading where they happen (nothing held beyond the limit);
//! a multi-line body comes out un-dot-stuffed, its terminator removed and
//! its line ends as sent; server text reaches an error only through
//! [`printable`].

use std::io::{self, BufRead};

use crate::exit::{Error, Kind, Origin, Result};

/// The longest status line (`+OK ...`, `-ERR ...`) or line of a CAPA, LIST
/// or UIDL listing accepted, line end included. RFC 1939 allows 512; real
/// servers write longer error texts.
pub const MAX_STATUS_LINE: usize = 8 * 1024;

/// The longest line inside a retrieved message, line end included: 16 MiB.
/// RFC 5322 limits lines to 998 octets, but real mail carries megabytes of
/// unwrapped base64 or HTML on one line; the bound only stops a server that
/// never sends a line end from growing memory without limit. (The whole
/// message is bounded by the limit given to
/// [`Pop3::retr_limited`](crate::proto::pop3::Pop3::retr_limited).)
pub const MAX_MESSAGE_LINE: usize = 16 * 1024 * 1024;

/// What the server announced in its greeting and CAPA response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capa {
    /// PIPELINING: commands may be sent without waiting for answers.
    pub pipelining: bool,
    /// UIDL: unique ids are available.
    pub uidl: bool,
    /// TOP: headers can be read without the body.
    pub top: bool,
    /// STLS: the connection can be upgraded to TLS.
    pub stls: bool,
    /// USER: USER/PASS login is allowed.
    pub user: bool,
    /// SASL mechanisms offered for AUTH (upper case).
    pub sasl: Vec<String>,
    /// The greeting carried an APOP timestamp (`<...@...>`).
    pub apop: bool,
    /// The server answered CAPA with `+OK` (old servers say `-ERR`; then
    /// every flag above except `apop` is unknown rather than absent).
    pub known: bool,
    /// RESP-CODES: `-ERR` lines may carry `[CODE]`s.
    pub resp_codes: bool,
    /// UTF8 (RFC 6856): the server keeps raw UTF-8 headers as they are
    /// only for a client that said `UTF8` (Courier otherwise hands over a
    /// substitute notice instead of the message).
    pub utf8: bool,
}

/// One POP3 status line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// `+OK text`.
    Ok(String),
    /// `-ERR text`.
    Err(String),
    /// `+ text`: a SASL continuation (only during AUTH).
    Cont(String),
}

/// Parse one status line (with or without its line end).
///
/// Accepts `+OK`, `-ERR` (any case, text optional) and the SASL
/// continuation `+` / `+ text`; anything else is a protocol error
/// ([`Kind::Unavailable`]). The text is as sent: show it only through
/// [`printable`].
pub fn parse_status(line: &[u8]) -> Result<Status> {
    let line = trim_eol(line);
    let text = |rest: &[u8]| String::from_utf8_lossy(rest).trim().to_string();
    let bad = || {
        Error::protocol(
            "reading the server's response",
            format!(
                "malformed status line \"{}\"",
                printable(&String::from_utf8_lossy(&line[..line.len().min(200)]))
            ),
        )
    };
    let sep_ok = |rest: &[u8]| rest.is_empty() || rest[0] == b' ' || rest[0] == b'\t';
    if line.len() >= 3 && line[..3].eq_ignore_ascii_case(b"+OK") && sep_ok(&line[3..]) {
        Ok(Status::Ok(text(&line[3..])))
    } else if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"-ERR") && sep_ok(&line[4..]) {
        Ok(Status::Err(text(&line[4..])))
    } else if !line.is_empty() && line[0] == b'+' && sep_ok(&line[1..]) {
        Ok(Status::Cont(text(&line[1..])))
    } else {
        Err(bad())
    }
}

/// The RFC 2449 response code at the start of an `-ERR` text
/// (`[IN-USE] text` gives `IN-USE`), upper-cased.
pub fn response_code(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('[')?;
    let end = rest.find(']')?;
    let code = &rest[..end];
    if code.is_empty() || code.contains(char::is_whitespace) {
        return None;
    }
    Some(code.to_ascii_uppercase())
}

/// The kind of an `-ERR` with `text`: the response code decides where there
/// is one (see the module docs), `default` otherwise.
pub fn err_kind(text: &str, default: Kind) -> Kind {
    match response_code(text).as_deref() {
        Some(c) if c == "SYS/TEMP" || c.starts_with("SYS/TEMP/") => Kind::Temporary,
        Some("IN-USE") | Some("LOGIN-DELAY") => Kind::Temporary,
        Some("AUTH") => Kind::Auth,
        Some(c) if c == "SYS/PERM" || c.starts_with("SYS/PERM/") => Kind::Unavailable,
        _ => default,
    }
}

/// `text` from the server, safe to show on a terminal: control characters
/// (C0, DEL, C1) and the Unicode bidirectional overrides, which could
/// move the cursor, recolour or rewrite what the user sees, are written
/// as `\u{..}` escapes.
pub fn printable(text: &str) -> String {
    crate::proto::transcript::printable(text).into_owned()
}

/// A line without its CRLF or LF.
pub(super) fn trim_eol(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// Why reading a line failed (turned into an [`Error`] with context by the
/// caller, which knows the server and the command).
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed or timed out.
    Io(io::Error),
    /// The server closed the connection (in the middle of a line, or where
    /// a line was due).
    Eof,
    /// A line longer than the limit.
    TooLong(usize),
    /// A multi-line response longer than its limit (reading stopped there,
    /// in the middle of the response).
    TooBig(u64),
}

impl ReadError {
    pub(super) fn into_error(self, context: String) -> Error {
        match self {
            // The exchange budget (crate::proto::pace) says which limit was
            // hit; a socket timeout (Linux says WouldBlock) gets a sentence
            // of its own. Both keep their I/O kind: `Error::is_timeout`.
            ReadError::Io(e) if e.kind() == io::ErrorKind::WouldBlock => Error::net(
                context,
                &io::Error::new(e.kind(), "timed out waiting for the server"),
            ),
            ReadError::Io(e) => Error::net(context, &e),
            ReadError::Eof => {
                Error::new(Kind::Temporary, context, "the server closed the connection")
                    .from_origin(Origin::Network)
            }
            // Not a connection problem: the server breaks the protocol.
            ReadError::TooLong(max) => Error::protocol(
                context,
                format!("the server sent a line longer than {max} bytes"),
            ),
            ReadError::TooBig(max) => {
                Error::protocol(context, format!("the server sent more than {max} bytes"))
            }
        }
    }
}

/// Append one line, line end included, from `r` to `out`. At most `max`
/// bytes are taken; EOF before the line end is [`ReadError::Eof`].
pub fn read_line_into<R: BufRead + ?Sized>(
    r: &mut R,
    out: &mut Vec<u8>,
    max: usize,
) -> std::result::Result<(), ReadError> {
    let mut taken = 0usize;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        if buf.is_empty() {
            return Err(ReadError::Eof);
        }
        let (n, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if taken + n > max {
            return Err(ReadError::TooLong(max));
        }
        out.extend_from_slice(&buf[..n]);
        r.consume(n);
        taken += n;
        if done {
            return Ok(());
        }
    }
}

/// Read the body of a multi-line response (after its `+OK` line) from `r`,
/// appending it to `out` un-dot-stuffed and without the terminating `.`
/// line; line ends are kept as sent.
///
/// Per RFC 1939 a line starting with `.` loses that dot, and a line that is
/// only `.` ends the response. A bare-LF `.` line ends it too (servers that
/// send LF line ends). Lines may be up to `max_line` bytes.
pub fn read_multiline<R: BufRead + ?Sized>(
    r: &mut R,
    out: &mut Vec<u8>,
    max_line: usize,
) -> std::result::Result<(), ReadError> {
    read_multiline_limited(r, out, max_line, u64::MAX)
}

/// [`read_multiline`] that appends at most `limit` bytes of body: past
/// that it stops reading, in the middle of the response, with
/// [`ReadError::TooBig`]. So a response never grows `out` by more than
/// `limit` plus one line end, whatever the server sends.
pub fn read_multiline_limited<R: BufRead + ?Sized>(
    r: &mut R,
    out: &mut Vec<u8>,
    max_line: usize,
    limit: u64,
) -> std::result::Result<(), ReadError> {
    let base = out.len();
    loop {
        let start = out.len();
        // A line may carry a stuffing dot, and the terminator is 3 bytes:
        // allow that much past what the body may still take.
        let room = limit
            .saturating_sub((start - base) as u64)
            .saturating_add(3);
        let line_max = usize::try_from(room).map_or(max_line, |r| r.min(max_line));
        match read_line_into(r, out, line_max) {
            Ok(()) => {}
            Err(ReadError::TooLong(_)) if line_max < max_line => {
                out.truncate(start);
                return Err(ReadError::TooBig(limit));
            }
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
        if out[start] == b'.' {
            let line = &out[start..];
            if line == b".\r\n" || line == b".\n" {
                out.truncate(start);
                return Ok(());
            }
            // Dot-stuffed: drop the first byte of the line (it is at the
            // end of `out`, so this moves only the line).
            out.copy_within(start + 1.., start);
            out.pop();
        }
        if (out.len() - base) as u64 > limit {
            return Err(ReadError::TooBig(limit));
        }
    }
}

/// Call `f` with every line of a multi-line listing (CAPA, LIST, UIDL),
/// un-dot-stuffed and without its line end; lines are limited to
/// [`MAX_STATUS_LINE`]. `line` is a scratch buffer reused for every line.
pub(super) fn read_listing<R: BufRead + ?Sized>(
    r: &mut R,
    line: &mut Vec<u8>,
    f: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> std::result::Result<Result<()>, ReadError> {
    let mut outcome = Ok(());
    loop {
        line.clear();
        read_line_into(r, line, MAX_STATUS_LINE)?;
        let l = trim_eol(line);
        if l == b"." {
            return Ok(outcome);
        }
        let l = l.strip_prefix(b".").unwrap_or(l);
        // Keep reading to the end after a bad line, so the caller knows
        // whether the stream is still in step.
        if outcome.is_ok() {
            outcome = f(l);
        }
    }
}

/// Update `capa` from one CAPA line.
pub(super) fn capa_line(capa: &mut Capa, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_ascii_whitespace();
    let Some(first) = words.next() else { return };
    match first.to_ascii_uppercase().as_str() {
        "PIPELINING" => capa.pipelining = true,
        "UIDL" => capa.uidl = true,
        "TOP" => capa.top = true,
        "STLS" => capa.stls = true,
        "USER" => capa.user = true,
        "RESP-CODES" => capa.resp_codes = true,
        "UTF8" => capa.utf8 = true,
        "SASL" => {
            capa.sasl = words.map(|w| w.to_ascii_uppercase()).collect();
        }
        _ => {}
    }
}

pub(super) fn malformed(line: &[u8]) -> Error {
    Error::protocol(
        "",
        format!(
            "malformed listing line \"{}\"",
            printable(&String::from_utf8_lossy(&line[..line.len().min(200)]))
        ),
    )
}

/// A leading message number and the rest after the spaces.
pub(super) fn number_and_rest(l: &[u8]) -> Option<(u32, &[u8])> {
    let w = first_word(l);
    let n = std::str::from_utf8(w).ok()?.parse().ok()?;
    let rest = &l[w.len()..];
    let skip = rest
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count();
    Some((n, &rest[skip..]))
}

/// The bytes up to the first space or tab.
pub(super) fn first_word(l: &[u8]) -> &[u8] {
    let end = l
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(l.len());
    &l[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pop3::apop_timestamp;
    use std::io::{BufReader, Read};

    /// splitmix64, for reproducible noise without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn multiline(wire: &[u8], bufsize: usize) -> std::result::Result<Vec<u8>, ReadError> {
        let mut r = BufReader::with_capacity(bufsize, wire);
        let mut out = Vec::new();
        read_multiline(&mut r, &mut out, 1024).map(|_| out)
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(
            parse_status(b"+OK ready\r\n").unwrap(),
            Status::Ok("ready".into())
        );
        assert_eq!(parse_status(b"+OK\r\n").unwrap(), Status::Ok("".into()));
        assert_eq!(
            parse_status(b"+ok 2 320\n").unwrap(),
            Status::Ok("2 320".into())
        );
        assert_eq!(
            parse_status(b"-ERR [IN-USE] locked\r\n").unwrap(),
            Status::Err("[IN-USE] locked".into())
        );
        assert_eq!(parse_status(b"+ \r\n").unwrap(), Status::Cont("".into()));
        assert_eq!(
            parse_status(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n").unwrap(),
            Status::Cont("eyJzdGF0dXMiOiI0MDEifQ==".into())
        );
        for bad in [
            &b""[..],
            b"\r\n",
            b"OK\r\n",
            b"+OKAY\r\n",
            b"-ERROR x\r\n",
            b"220 smtp\r\n",
            b"*",
        ] {
            let e = parse_status(bad).unwrap_err();
            assert_eq!(e.kind(), Kind::Unavailable, "{bad:?}");
        }
    }

    #[test]
    fn response_codes_decide_the_kind() {
        assert_eq!(
            err_kind("[IN-USE] Mailbox locked", Kind::Auth),
            Kind::Temporary
        );
        assert_eq!(
            err_kind("[SYS/TEMP] try later", Kind::Unavailable),
            Kind::Temporary
        );
        assert_eq!(err_kind("[LOGIN-DELAY] wait", Kind::Auth), Kind::Temporary);
        assert_eq!(
            err_kind("[AUTH] Authentication failed.", Kind::Unavailable),
            Kind::Auth
        );
        assert_eq!(err_kind("[SYS/PERM] gone", Kind::Auth), Kind::Unavailable);
        assert_eq!(
            err_kind("no such message", Kind::Unavailable),
            Kind::Unavailable
        );
        assert_eq!(err_kind("[not a code", Kind::Auth), Kind::Auth);
        assert_eq!(response_code("[auth] x").as_deref(), Some("AUTH"));
        assert_eq!(response_code("x [AUTH]"), None);
    }

    #[test]
    fn multiline_responses_are_unstuffed_and_keep_line_ends() {
        for bufsize in [1, 2, 3, 7, 64, 8192] {
            // `..` lines, a stuffed lone dot, a dot line in the middle, CRLF kept.
            let wire = b"Subject: x\r\n\r\n..\r\n...\r\n..foo\r\n. \r\nmid.\r\n.\r\n+OK next\r\n";
            let mut r = BufReader::with_capacity(bufsize, &wire[..]);
            let mut out = Vec::new();
            read_multiline(&mut r, &mut out, 1024).unwrap();
            assert_eq!(out, b"Subject: x\r\n\r\n.\r\n..\r\n.foo\r\n \r\nmid.\r\n");
            // The reader stops right after the terminator.
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, b"+OK next\r\n");
            // Bare LF servers.
            assert_eq!(multiline(b"a\n..b\n.\n", bufsize).unwrap(), b"a\n.b\n");
            // Empty message.
            assert_eq!(multiline(b".\r\n", bufsize).unwrap(), b"");
        }
    }

    #[test]
    fn multiline_errors_on_eof_and_long_lines() {
        assert!(matches!(multiline(b"a\r\nb\r\n", 4), Err(ReadError::Eof)));
        assert!(matches!(multiline(b"a\r\n.", 4), Err(ReadError::Eof)));
        assert!(matches!(multiline(b"", 4), Err(ReadError::Eof)));
        let long = [b'x'; 2000];
        assert!(matches!(
            multiline(&long, 64),
            Err(ReadError::TooLong(1024))
        ));
        let e = ReadError::Eof.into_error("POP3 h:1: RETR 3".into());
        assert_eq!(e.kind(), Kind::Temporary);
        assert_eq!(
            e.to_string(),
            "POP3 h:1: RETR 3: the server closed the connection"
        );
    }

    /// Dot-stuff `msg` the way a server does (RFC 1939), CRLF line ends.
    fn stuff(msg: &[u8]) -> Vec<u8> {
        let mut w = Vec::new();
        for line in msg.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                w.push(b'.');
            }
            w.extend_from_slice(line);
        }
        w.extend_from_slice(b".\r\n");
        w
    }

    #[test]
    fn random_messages_round_trip_through_stuffing() {
        let mut rng = Rng(7);
        let pieces: [&[u8]; 8] = [b".", b"..", b"x", b"\r\n", b". ", b"From ", b"\r", b"\xff"];
        for _ in 0..2000 {
            let mut msg = Vec::new();
            for _ in 0..rng.below(40) {
                msg.extend_from_slice(pieces[rng.below(pieces.len())]);
                if rng.below(3) == 0 {
                    msg.extend_from_slice(b"\r\n");
                }
            }
            msg.extend_from_slice(b"\r\n");
            let got = multiline(&stuff(&msg), 1 + rng.below(16)).unwrap();
            assert_eq!(got, msg);
        }
    }

    #[test]
    fn noise_never_panics() {
        let mut rng = Rng(42);
        let alphabet = b".\r\n+-OKER x[]<>@";
        for i in 0..20000 {
            let len = rng.below(64);
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    if i % 2 == 0 {
                        alphabet[rng.below(alphabet.len())]
                    } else {
                        rng.next() as u8
                    }
                })
                .collect();
            let _ = parse_status(&data);
            let _ = multiline(&data, 1 + rng.below(8));
            let mut line = Vec::new();
            let mut r = BufReader::with_capacity(1 + rng.below(8), &data[..]);
            let _ = read_listing(&mut r, &mut line, &mut |l| {
                let mut c = Capa::default();
                capa_line(&mut c, l);
                let _ = number_and_rest(l);
                Ok(())
            });
            let _ = apop_timestamp(&String::from_utf8_lossy(&data));
            if let Some(c) = response_code(&String::from_utf8_lossy(&data)) {
                assert!(!c.is_empty());
            }
        }
    }

    #[test]
    fn limited_multiline_stops_at_the_limit_whatever_comes() {
        // Body "abc\r\n.d\r\n": 9 bytes after unstuffing.
        let wire = b"abc\r\n..d\r\n.\r\n+OK next\r\n";
        for bufsize in [1, 3, 64] {
            let mut r = BufReader::with_capacity(bufsize, &wire[..]);
            let mut out = Vec::new();
            read_multiline_limited(&mut r, &mut out, 1024, 9).unwrap();
            assert_eq!(out, b"abc\r\n.d\r\n");
            let mut r = BufReader::with_capacity(bufsize, &wire[..]);
            let mut out = Vec::new();
            let e = read_multiline_limited(&mut r, &mut out, 1024, 8).unwrap_err();
            assert!(matches!(e, ReadError::TooBig(8)), "{e:?}");
            assert!(out.len() <= 8 + 3, "{}", out.len());
        }
        // A server that never ends its line nor its message: reading stops
        // just past the limit, long before the line limit.
        struct Endless;
        impl Read for Endless {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                b.fill(b'x');
                Ok(b.len())
            }
        }
        let mut r = BufReader::new(Endless);
        let mut out = Vec::new();
        let e = read_multiline_limited(&mut r, &mut out, 1 << 30, 1000).unwrap_err();
        assert!(matches!(e, ReadError::TooBig(1000)), "{e:?}");
        assert!(out.len() <= 1003);
        // Endless short lines too.
        let lines = b"x\r\n".repeat(10_000);
        let mut r = BufReader::new(&lines[..]);
        let mut out = Vec::new();
        let e = read_multiline_limited(&mut r, &mut out, 1 << 30, 1000).unwrap_err();
        assert!(matches!(e, ReadError::TooBig(1000)), "{e:?}");
        assert!(out.len() <= 1003);
    }

    #[test]
    fn printable_escapes_what_could_drive_a_terminal() {
        assert_eq!(printable("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(
            printable("a\x1b[31mb\x07c\u{202e}d\u{9b}e\x7f"),
            "a\\u{1b}[31mb\\u{7}c\\u{202e}d\\u{9b}e\\u{7f}"
        );
    }

    #[test]
    fn capa_lines_set_flags() {
        let mut c = Capa::default();
        for l in [
            "CAPA",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "PIPELINING",
            "AUTH-RESP-CODE",
            "USER",
            "SASL plain LOGIN",
            "stls",
            "UTF8 USER",
            "",
        ] {
            capa_line(&mut c, l.as_bytes());
        }
        assert!(c.top && c.uidl && c.resp_codes && c.pipelining && c.user && c.stls && c.utf8);
        assert_eq!(c.sasl, vec!["PLAIN", "LOGIN"]);
        assert!(!c.apop && !c.known);
    }
}
