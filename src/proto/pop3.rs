//! The POP3 client mail-fetch retrieves with (RFC 1939, CAPA/PIPELINING/
//! UIDL/RESP-CODES per RFC 2449, STLS per RFC 2595, AUTH per RFC 5034, APOP).
//!
//! This module owns the client side of one POP3 session over a [`Stream`]:
//! the greeting, CAPA, STLS, the logins ([`Login`]: SASL PLAIN, LOGIN,
//! XOAUTH2, USER/PASS, APOP), STAT, LIST, UIDL, TOP, pipelined RETR and
//! DELE ([`Pop3::retr_limited`], [`Pop3::dele_many`]) and QUIT, plus the
//! response decoding (status lines, dot-unstuffing of multi-line
//! responses) and the [`header_digest`] that tells messages apart.
//!
//! Guarantees:
//!
//! - **Nothing is deleted by accident.** DELE only marks; the marks take
//!   effect at [`Pop3::quit`] and only when the server answers it `+OK`.
//!   A session dropped without `quit` (error, crash, kill) deletes nothing.
//!   After any I/O error, timeout or malformed response the session is
//!   marked broken: every later command, `quit` included, fails without
//!   sending anything, so a desynchronised stream can never turn into an
//!   unintended command or a commit.
//! - **No plain-text fallback.** With [`TlsMode::Starttls`] a server that
//!   does not offer STLS, or refuses it, is an error; bytes the server sent
//!   after its `+OK` to STLS but before the handshake (an injection attempt)
//!   are an error too.
//! - **Secrets stay secret.** Passwords, tokens and APOP digests go to the
//!   transcript only through [`Transcript::sent_secret`]; they never appear
//!   in errors. User names and passwords holding CR, LF or NUL are refused
//!   before anything is sent (no command injection).
//! - **No panic on any server bytes.** Status lines are limited to
//!   [`MAX_STATUS_LINE`] bytes, lines inside a message to
//!   [`MAX_MESSAGE_LINE`] bytes; longer lines, EOF in the middle of a
//!   response, and anything that is not `+OK`/`-ERR` are errors naming
//!   the server and the command.
//! - **Server text is shown escaped.** Text from the server reaches an
//!   error only through [`printable`]: no control character or bidi
//!   override from a peer gets to the user's terminal raw.
//! - **What a server sends never costs more memory than its limits.** A
//!   retrieved message is read up to the limit the caller gives for it
//!   ([`MAX_MESSAGE`] by default), whatever the server announced; past it
//!   reading stops in the middle of the message and the session is broken
//!   (no QUIT, so nothing is deleted). Preallocation follows the server's
//!   announced size only up to that limit.
//! - **Messages arrive as sent.** A retrieved message is un-dot-stuffed and
//!   its terminator removed; its line ends (CRLF on the wire) are kept, so
//!   the caller decides how to normalise.
//!
//! Error kinds: connection trouble, timeouts and EOF are
//! [`Kind::Temporary`]; a malformed or unexpected response (a bad status
//! line or listing line, a line over its limit) is a protocol error,
//! [`Kind::Unavailable`], as is `-ERR` to a command, with the server's
//! text, except `-ERR` to a login ([`Kind::Auth`]) and the
//! RFC 2449/3206 response codes `[SYS/TEMP]`, `[IN-USE]` and `[LOGIN-DELAY]`
//! ([`Kind::Temporary`]: the mailbox is locked or the server is busy, try
//! later) and `[AUTH]` ([`Kind::Auth`]).
//!
//! Speed: one [`BufReader`] with a large buffer for the whole session,
//! lines found with `memchr` and copied once, straight into the message
//! buffer (no per-line allocation); pipelined commands are written in
//! batches of up to [`RETR_WINDOW`] (RETR) or [`DELE_WINDOW`] (DELE)
//! outstanding commands, refilled when half have been answered. The window
//! bounds what is in flight so that neither side's socket buffers can fill
//! up while the other waits (the commands are tiny; the answers are read as
//! they come). Each answer of a window is an exchange of its own for the
//! connection's deadline ([`crate::proto::pace`]), so a slow but steady server is
//! not cut off in the middle of a long window, and a dripping one still is.

use std::io::{self, BufRead, BufReader, Write};
use std::time::Duration;

use crate::exit::{Error, Kind, Result};
use crate::proto::sasl::{self, Mechanism, Secret};
use crate::proto::tls::{self, Stream, TlsMode, TlsOptions};
use crate::proto::transcript::Transcript;

/// The longest status line (`+OK ...`, `-ERR ...`) or line of a CAPA, LIST
/// or UIDL listing accepted, line end included. RFC 1939 allows 512; real
/// servers write longer error texts.
pub const MAX_STATUS_LINE: usize = 8 * 1024;

/// The longest line inside a retrieved message, line end included: 16 MiB.
/// RFC 5322 limits lines to 998 octets, but real mail carries megabytes of
/// unwrapped base64 or HTML on one line; the bound only stops a server that
/// never sends a line end from growing memory without limit. (The whole
/// message is bounded by the limit given to [`Pop3::retr_limited`].)
pub const MAX_MESSAGE_LINE: usize = 16 * 1024 * 1024;

/// The largest message [`Pop3::retr_many`], [`Pop3::retr`] and
/// [`Pop3::top`] accept: 256 MiB, far above what mail servers take
/// (typically 25 to 150 MB) and a bound on what a server that never ends a
/// message can make us hold.
pub const MAX_MESSAGE: u64 = 256 << 20;

/// The most RETR commands outstanding at once when pipelining.
pub const RETR_WINDOW: usize = 64;

/// The most DELE commands outstanding at once when pipelining.
pub const DELE_WINDOW: usize = 256;

/// Read buffer size: large, so a plain-text session reads many messages per
/// system call.
const READ_BUFFER: usize = 256 * 1024;

/// The most bytes preallocated for one message on the server's word (the
/// size in `+OK 1234 octets`): a lying server cannot make us allocate more.
const MAX_PREALLOC: usize = 64 * 1024 * 1024;

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
}

/// How [`Pop3::login`] authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login<'a> {
    /// SASL PLAIN when the server offers it, else USER/PASS. (APOP only
    /// when asked: it needs the password stored in plain text on the
    /// server and rests on MD5.)
    Auto,
    /// USER and PASS.
    User,
    /// APOP with the greeting's timestamp (an error when there is none).
    Apop,
    /// AUTH with this SASL mechanism (an error when the server's CAPA does
    /// not list it).
    Sasl(Mechanism),
    /// SASL PLAIN with an authorization identity: log in as `user` with its
    /// password and act as the given identity (Dovecot master users).
    PlainAs(&'a str),
}

/// A message [`Pop3::retr_limited`] stopped reading: it went past `limit`
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// Its message number.
    pub msgno: u32,
    /// The limit it went past.
    pub limit: u64,
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
        Error::new(
            Kind::Unavailable,
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
fn trim_eol(line: &[u8]) -> &[u8] {
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
    fn into_error(self, context: String) -> Error {
        match self {
            // The exchange budget (crate::proto::pace) says which limit was hit.
            ReadError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                Error::new(Kind::Temporary, context, e)
            }
            ReadError::Io(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Error::new(Kind::Temporary, context, "timed out waiting for the server")
            }
            ReadError::Io(e) => Error::io(context, &e),
            ReadError::Eof => {
                Error::new(Kind::Temporary, context, "the server closed the connection")
            }
            // Not a connection problem: the server breaks the protocol.
            ReadError::TooLong(max) => Error::new(
                Kind::Unavailable,
                context,
                format!("the server sent a line longer than {max} bytes"),
            ),
            ReadError::TooBig(max) => Error::new(
                Kind::Unavailable,
                context,
                format!("the server sent more than {max} bytes"),
            ),
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
fn read_listing<R: BufRead + ?Sized>(
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
fn capa_line(capa: &mut Capa, line: &[u8]) {
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
        "SASL" => {
            capa.sasl = words.map(|w| w.to_ascii_uppercase()).collect();
        }
        _ => {}
    }
}

/// The APOP timestamp in a greeting's text: the last `<...>` holding an `@`.
pub fn apop_timestamp(greeting: &str) -> Option<String> {
    let end = greeting.rfind('>')?;
    let start = greeting[..end].rfind('<')?;
    let ts = &greeting[start..=end];
    (ts.contains('@') && ts.bytes().all(|b| (0x21..0x7f).contains(&b))).then(|| ts.to_string())
}

/// The APOP digest: lower-case hex MD5 of the timestamp followed by the
/// secret (RFC 1939, section 7).
pub fn apop_digest(timestamp: &str, secret: &Secret) -> String {
    let mut data = Vec::with_capacity(timestamp.len() + secret.expose().len());
    data.extend_from_slice(timestamp.as_bytes());
    data.extend_from_slice(secret.expose().as_bytes());
    md5(&data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest of a message's header block (up to its first empty line, CR
/// before LF dropped), as lower-case hex: the same for `RETR` and `TOP n 0`
/// of one message, so mail-fetch can tell a message from another that a
/// server lists under the same UIDL and size. Not a security measure: the
/// server chooses what it sends either way.
pub fn header_digest(msg: &[u8]) -> String {
    let mut head = Vec::with_capacity(msg.len().min(64 * 1024));
    for line in msg.split_inclusive(|&b| b == b'\n') {
        let l = trim_eol(line);
        // The first 64 KiB tell messages apart as well as all of it would.
        if l.is_empty() || head.len() >= 64 * 1024 {
            break;
        }
        head.extend_from_slice(l);
        head.push(b'\n');
    }
    md5(&head).iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 (RFC 1321), for APOP and [`header_digest`]; small enough not to
/// need a dependency.
fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
    // K[i] = floor(|sin(i + 1)| * 2^32), exact in f64 (checked by the RFC
    // 1321 test vectors below).
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for block in msg.chunks_exact(64) {
        let mut m = [0u32; 16];
        for (i, w) in block.chunks_exact(4).enumerate() {
            m[i] = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        }
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rot = S[(i / 16) * 4 + i % 4];
            let t = d;
            d = c;
            c = b;
            b = b.wrapping_add(
                a.wrapping_add(f)
                    .wrapping_add(k[i])
                    .wrapping_add(m[g])
                    .rotate_left(rot),
            );
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// Refuse values that would break out of a command line.
fn check_arg(what: &str, value: &str) -> Result<()> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Error::new(
            Kind::Config,
            format!("POP3 login: the {what}"),
            "contains a line break or NUL",
        ));
    }
    Ok(())
}

/// One POP3 session. Dropping it without [`Pop3::quit`] closes the
/// connection and deletes nothing.
pub struct Pop3 {
    r: BufReader<Stream>,
    host: String,
    /// `host:port` for error contexts.
    hp: String,
    capa: Capa,
    timestamp: Option<String>,
    transcript: Transcript,
    /// Set after an error that may leave the stream out of step.
    broken: bool,
    /// Scratch line buffer for status lines and listings.
    line: Vec<u8>,
    /// Scratch buffer for batched commands.
    out: Vec<u8>,
}

impl Pop3 {
    /// Connect, read the greeting, ask CAPA (an `-ERR` is fine: old
    /// servers), and with [`TlsMode::Starttls`] upgrade with STLS (a server
    /// that does not offer or refuses it is an error: never plain text),
    /// then ask CAPA again over TLS.
    pub fn connect(
        host: &str,
        port: u16,
        mode: TlsMode,
        tls: &TlsOptions,
        timeout: Duration,
        transcript: Transcript,
    ) -> Result<Pop3> {
        let hp = tls::display_host_port(host, port);
        // tls::open in two steps, so a handshake error names the port too.
        let tcp = tls::connect(host, port, timeout)?;
        let stream = match mode {
            TlsMode::Implicit => {
                tls::handshake(tcp, host, tls).map_err(|e| e.within(format!("POP3 {hp}")))?
            }
            TlsMode::Starttls | TlsMode::None => Stream::plain(tcp),
        };
        let mut p = Pop3 {
            r: BufReader::with_capacity(READ_BUFFER, stream),
            host: host.to_string(),
            hp,
            capa: Capa::default(),
            timestamp: None,
            transcript,
            broken: false,
            line: Vec::with_capacity(512),
            out: Vec::with_capacity(4096),
        };
        if mode == TlsMode::Implicit {
            p.transcript.note("TLS established");
        }
        let greeting = match p.read_status("greeting")? {
            Status::Ok(text) => text,
            Status::Err(text) => {
                return Err(p.server_error("greeting", &text, Kind::Temporary));
            }
            Status::Cont(_) => return Err(p.protocol_error("greeting", "a continuation line")),
        };
        p.timestamp = apop_timestamp(&greeting);
        p.read_capa()?;
        if mode == TlsMode::Starttls {
            p = p.starttls(tls)?;
            p.read_capa()?;
        }
        Ok(p)
    }

    /// What the server announced (after STLS, what it announced over TLS;
    /// after [`Pop3::login`], what it announced then).
    pub fn capabilities(&self) -> &Capa {
        &self.capa
    }

    /// Is the session unusable after an error that may have left the
    /// stream out of step (every later command fails without sending)?
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Is the session encrypted?
    pub fn is_tls(&self) -> bool {
        self.r.get_ref().is_tls()
    }

    /// `host:port` of the server, as used in error messages.
    pub fn server(&self) -> &str {
        &self.hp
    }

    /// Do not pipeline, whatever the server announced (for servers whose
    /// PIPELINING is broken).
    pub fn disable_pipelining(&mut self) {
        self.capa.pipelining = false;
    }

    fn starttls(mut self, opts: &TlsOptions) -> Result<Pop3> {
        if self.capa.known && !self.capa.stls {
            return Err(Error::new(
                Kind::Unavailable,
                self.ctx("STLS"),
                "the server does not offer STLS; refusing to continue without TLS",
            ));
        }
        self.send("STLS", "STLS")?;
        match self.read_status("STLS")? {
            Status::Ok(_) => {}
            Status::Err(text) => {
                return Err(Error::new(
                    err_kind(&text, Kind::Unavailable),
                    self.ctx("STLS"),
                    format!(
                        "server said: -ERR {}; refusing to continue without TLS",
                        printable(&text)
                    ),
                ));
            }
            Status::Cont(_) => return Err(self.protocol_error("STLS", "a continuation line")),
        }
        if !self.r.buffer().is_empty() {
            // Whatever came with the +OK was sent before TLS, by whoever
            // sits on the path: it must not be read as if it were
            // protected (the STARTTLS injection attack).
            self.broken = true;
            return Err(Error::new(
                Kind::Temporary,
                self.ctx("STLS"),
                "the server sent data after +OK before the TLS handshake",
            ));
        }
        // The read buffer is empty (checked above), so nothing is lost by
        // unwrapping the stream for the handshake.
        let upgraded = self
            .r
            .into_inner()
            .upgrade(&self.host, opts)
            .map_err(|e| e.within(format!("POP3 {}: STLS", self.hp)))?;
        let mut p = Pop3 {
            r: BufReader::with_capacity(READ_BUFFER, upgraded),
            // RFC 2595: forget what was learned in plain text.
            capa: Capa::default(),
            ..self
        };
        p.transcript.note("TLS established");
        Ok(p)
    }

    /// Ask CAPA; `-ERR` leaves everything unknown (`known` false).
    fn read_capa(&mut self) -> Result<()> {
        self.send("CAPA", "CAPA")?;
        let apop = self.timestamp.is_some();
        match self.read_status("CAPA")? {
            Status::Ok(_) => {
                let mut capa = Capa {
                    known: true,
                    apop,
                    ..Capa::default()
                };
                self.listing("CAPA", &mut |l| {
                    capa_line(&mut capa, l);
                    Ok(())
                })?;
                self.capa = capa;
            }
            Status::Err(_) => {
                self.capa = Capa {
                    apop,
                    ..Capa::default()
                };
            }
            Status::Cont(_) => return Err(self.protocol_error("CAPA", "a continuation line")),
        }
        Ok(())
    }

    /// Log in as `user`. A refusal is [`Kind::Auth`] (or
    /// [`Kind::Temporary`] for `[IN-USE]`, `[SYS/TEMP]`, `[LOGIN-DELAY]`).
    pub fn login(&mut self, user: &str, pass: &Secret, how: Login) -> Result<()> {
        check_arg("user name", user)?;
        check_arg("password", pass.expose())?;
        match how {
            Login::Auto => {
                if self.offers(Mechanism::Plain) {
                    self.auth(Mechanism::Plain, user, pass, None)?;
                } else {
                    self.user_pass(user, pass)?;
                }
            }
            Login::User => self.user_pass(user, pass)?,
            Login::Apop => self.apop(user, pass)?,
            Login::Sasl(m) => {
                if self.capa.known {
                    Mechanism::choose(Some(m), &self.capa.sasl)
                        .map_err(|e| e.within(format!("POP3 {}", self.hp)))?;
                }
                self.auth(m, user, pass, None)?;
            }
            Login::PlainAs(authzid) => {
                check_arg("authorization identity", authzid)?;
                self.auth(Mechanism::Plain, user, pass, Some(authzid))?;
            }
        }
        // Capabilities may change after login (RFC 2449, section 5).
        if self.capa.known {
            let before = self.capa.clone();
            self.read_capa()?;
            if !self.capa.known {
                self.capa = before;
            } else {
                // Login-phase capabilities are no longer announced; keep them.
                self.capa.sasl = before.sasl;
                self.capa.stls |= before.stls;
                self.capa.user |= before.user;
            }
        }
        Ok(())
    }

    fn offers(&self, m: Mechanism) -> bool {
        self.capa
            .sasl
            .iter()
            .any(|s| s.eq_ignore_ascii_case(m.name()))
    }

    fn user_pass(&mut self, user: &str, pass: &Secret) -> Result<()> {
        let cmd = format!("USER {user}");
        self.send(&cmd, "USER")?;
        self.expect_login_ok("USER")?;
        self.send_secret(&format!("PASS {}", pass.expose()), "PASS", "PASS")?;
        self.expect_login_ok("PASS")
    }

    fn apop(&mut self, user: &str, pass: &Secret) -> Result<()> {
        let Some(ts) = self.timestamp.clone() else {
            return Err(Error::new(
                Kind::Unavailable,
                self.ctx("APOP"),
                "the server's greeting has no APOP timestamp",
            ));
        };
        if user.contains(' ') {
            return Err(Error::new(
                Kind::Config,
                self.ctx("APOP"),
                "the user name contains a space",
            ));
        }
        let digest = apop_digest(&ts, pass);
        self.send_secret(
            &format!("APOP {user} {digest}"),
            &format!("APOP {user}"),
            "APOP",
        )?;
        self.expect_login_ok("APOP")
    }

    /// AUTH with an initial response (RFC 5034 allows it for every
    /// mechanism) for PLAIN and XOAUTH2; LOGIN in two challenges.
    fn auth(
        &mut self,
        m: Mechanism,
        user: &str,
        pass: &Secret,
        authzid: Option<&str>,
    ) -> Result<()> {
        let ctx = format!("AUTH {}", m.name());
        match m {
            Mechanism::Plain => {
                let ir = match authzid {
                    None => sasl::plain(user, pass),
                    Some(z) => {
                        let mut v = Vec::new();
                        v.extend_from_slice(z.as_bytes());
                        v.push(0);
                        v.extend_from_slice(user.as_bytes());
                        v.push(0);
                        v.extend_from_slice(pass.expose().as_bytes());
                        sasl::b64(&v)
                    }
                };
                self.send_secret(&format!("AUTH PLAIN {ir}"), "AUTH PLAIN", &ctx)?;
            }
            Mechanism::XOAuth2 => {
                let ir = sasl::xoauth2(user, pass);
                self.send_secret(&format!("AUTH XOAUTH2 {ir}"), "AUTH XOAUTH2", &ctx)?;
            }
            Mechanism::Login => {
                self.send("AUTH LOGIN", &ctx)?;
                self.expect_cont(&ctx)?;
                let u = sasl::b64(user.as_bytes());
                self.send(&u, &ctx)?;
                self.expect_cont(&ctx)?;
                self.send_secret(&sasl::b64(pass.expose().as_bytes()), "", &ctx)?;
            }
        }
        // A continuation now is an error report (XOAUTH2 sends one as a
        // base64 JSON challenge and expects an empty line) or a server that
        // ignored the initial response: answer with an empty line or a
        // cancel, and take the final -ERR.
        for _ in 0..3 {
            match self.read_status(&ctx)? {
                Status::Ok(_) => return Ok(()),
                Status::Err(text) => return Err(self.server_error(&ctx, &text, Kind::Auth)),
                Status::Cont(_) => {
                    let reply = if m == Mechanism::XOAuth2 { "" } else { "*" };
                    self.send(reply, &ctx)?;
                }
            }
        }
        Err(self.protocol_error(&ctx, "endless continuation lines"))
    }

    fn expect_cont(&mut self, ctx: &str) -> Result<()> {
        match self.read_status(ctx)? {
            Status::Cont(_) => Ok(()),
            Status::Err(text) => Err(self.server_error(ctx, &text, Kind::Auth)),
            Status::Ok(_) => Err(self.protocol_error(ctx, "+OK where a challenge was due")),
        }
    }

    fn expect_login_ok(&mut self, ctx: &str) -> Result<()> {
        match self.read_status(ctx)? {
            Status::Ok(_) => Ok(()),
            Status::Err(text) => Err(self.server_error(ctx, &text, Kind::Auth)),
            Status::Cont(_) => Err(self.protocol_error(ctx, "a continuation line")),
        }
    }

    /// STAT: (message count, total size in octets).
    pub fn stat(&mut self) -> Result<(u32, u64)> {
        self.simple("STAT")?;
        let text = self.simple_ok("STAT")?;
        let mut w = text.split_ascii_whitespace();
        match (
            w.next().and_then(|s| s.parse().ok()),
            w.next().and_then(|s| s.parse().ok()),
        ) {
            (Some(n), Some(size)) => Ok((n, size)),
            _ => Err(self.protocol_error(
                "STAT",
                &format!("malformed answer \"{}\"", printable(&text)),
            )),
        }
    }

    /// LIST: every (message number, size in octets).
    pub fn list(&mut self) -> Result<Vec<(u32, u64)>> {
        self.simple("LIST")?;
        self.simple_ok("LIST")?;
        let mut v = Vec::new();
        self.listing("LIST", &mut |l| {
            let (n, rest) = number_and_rest(l).ok_or_else(|| malformed(l))?;
            let size = std::str::from_utf8(first_word(rest))
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| malformed(l))?;
            v.push((n, size));
            Ok(())
        })?;
        Ok(v)
    }

    /// UIDL: every (message number, unique id). [`Kind::Unavailable`] when
    /// the server lacks UIDL.
    pub fn uidl(&mut self) -> Result<Vec<(u32, String)>> {
        self.simple("UIDL")?;
        self.simple_ok("UIDL")?;
        let mut v = Vec::new();
        self.listing("UIDL", &mut |l| {
            let (n, rest) = number_and_rest(l).ok_or_else(|| malformed(l))?;
            let uid = first_word(rest);
            // RFC 1939: 1 to 70 characters in 0x21..0x7E.
            if uid.is_empty() || uid.len() > 70 || !uid.iter().all(|b| (0x21..0x7f).contains(b)) {
                return Err(malformed(l));
            }
            // Checked ASCII above.
            v.push((n, String::from_utf8_lossy(uid).into_owned()));
            Ok(())
        })?;
        Ok(v)
    }

    /// TOP: the header of message `msgno` and the first `lines` lines of
    /// its body, decoded like [`Pop3::retr_many`] does, at most
    /// [`MAX_MESSAGE`] bytes.
    pub fn top(&mut self, msgno: u32, lines: u32) -> Result<Vec<u8>> {
        self.top_limited(msgno, lines, MAX_MESSAGE)
    }

    /// [`Pop3::top`] taking at most `limit` bytes: a longer answer breaks
    /// the session (reading stops in its middle) and is an error.
    pub fn top_limited(&mut self, msgno: u32, lines: u32, limit: u64) -> Result<Vec<u8>> {
        let cmd = format!("TOP {msgno} {lines}");
        self.usable(&cmd)?;
        self.send(&cmd, &cmd)?;
        self.simple_ok(&cmd)?;
        let mut msg = Vec::new();
        if let Err(e) = read_multiline_limited(&mut self.r, &mut msg, MAX_MESSAGE_LINE, limit) {
            self.broken = true;
            return Err(e.into_error(self.ctx(&cmd)));
        }
        Ok(msg)
    }

    /// RETR one message (see [`Pop3::retr_many`]).
    pub fn retr(&mut self, msgno: u32) -> Result<Vec<u8>> {
        let mut got = None;
        self.retr_many(&[msgno], &mut |_, m| {
            got = Some(m);
            Ok(())
        })?;
        got.ok_or_else(|| self.protocol_error("RETR", "no message"))
    }

    /// RETR every message in `msgnos`, in order, calling `f` with each:
    /// un-dot-stuffed, terminator removed, line ends as sent (CRLF).
    /// Messages are limited to [`MAX_MESSAGE`] bytes; a larger one is an
    /// error that breaks the session (see [`Pop3::retr_limited`]).
    ///
    /// Pipelined (at most [`RETR_WINDOW`] outstanding) when the server
    /// announced PIPELINING, one at a time otherwise. When `f` returns an
    /// error, or the server answers `-ERR` to a RETR, no more commands are
    /// sent, the answers already due are read and discarded (so the session
    /// stays usable, e.g. to DELE what was stored and QUIT), and the first
    /// error is returned.
    pub fn retr_many(
        &mut self,
        msgnos: &[u32],
        f: &mut dyn FnMut(u32, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let msgs: Vec<(u32, u64)> = msgnos.iter().map(|&n| (n, MAX_MESSAGE)).collect();
        match self.retr_limited(&msgs, f)? {
            None => Ok(()),
            Some(t) => Err(Error::new(
                Kind::Unavailable,
                self.ctx(&format!("RETR {}", t.msgno)),
                format!("the message is larger than {} bytes", t.limit),
            )),
        }
    }

    /// [`Pop3::retr_many`] with a size limit for each message: `msgs` holds
    /// (message number, most bytes accepted).
    ///
    /// A message that goes past its limit is not read further and not
    /// passed to `f`: `Ok(Some(TooLarge))` names it. The messages before it
    /// were passed to `f`; the session is then broken (the rest of that
    /// message is still on its way, so no command can be sent any more, and
    /// [`Pop3::quit`] fails without sending: nothing marked is deleted).
    /// So what a server sends never costs more memory than the limits.
    pub fn retr_limited(
        &mut self,
        msgs: &[(u32, u64)],
        f: &mut dyn FnMut(u32, Vec<u8>) -> Result<()>,
    ) -> Result<Option<TooLarge>> {
        let msgnos: Vec<u32> = msgs.iter().map(|(n, _)| *n).collect();
        let msgnos = &msgnos[..];
        self.usable("RETR")?;
        let window = if self.capa.pipelining { RETR_WINDOW } else { 1 };
        let (mut sent, mut done) = (0usize, 0usize);
        let mut first_err: Option<Error> = None;
        loop {
            if first_err.is_none() && sent < msgnos.len() && sent - done <= window / 2 {
                let upto = msgnos.len().min(done + window);
                self.send_batch("RETR", &msgnos[sent..upto])?;
                sent = upto;
            }
            if done == sent {
                break;
            }
            let (n, limit) = msgs[done];
            done += 1;
            let ctx = format!("RETR {n}");
            // Each reply is an exchange of its own: the replies of a
            // window are read without a write in between, which would
            // otherwise hold them all to one budget (crate::proto::pace).
            self.r.get_mut().arm();
            match self.read_status(&ctx)? {
                Status::Ok(text) => {
                    let hint = first_word(text.as_bytes());
                    // The server's word decides at most the preallocation,
                    // and never beyond the limit.
                    let cap = std::str::from_utf8(hint)
                        .ok()
                        .and_then(|s| s.parse::<usize>().ok())
                        .map_or(16 * 1024, |s| s.saturating_add(s / 16).min(MAX_PREALLOC))
                        .min(usize::try_from(limit).unwrap_or(usize::MAX));
                    let mut msg = Vec::with_capacity(if first_err.is_none() { cap } else { 0 });
                    match read_multiline_limited(&mut self.r, &mut msg, MAX_MESSAGE_LINE, limit) {
                        Ok(()) => {}
                        Err(ReadError::TooBig(_)) => {
                            self.broken = true;
                            self.transcript.note(&format!(
                                "message {n}: more than {limit} bytes; stopped reading, session abandoned"
                            ));
                            // An error `f` returned first still wins: it
                            // says why this batch was not stored.
                            return match first_err {
                                Some(e) => Err(e),
                                None => Ok(Some(TooLarge { msgno: n, limit })),
                            };
                        }
                        Err(e) => {
                            self.broken = true;
                            return Err(e.into_error(self.ctx(&ctx)));
                        }
                    }
                    if self.transcript.is_on() {
                        self.transcript
                            .received(format!("(message {n}: {} octets)", msg.len()).as_bytes());
                    }
                    if first_err.is_none()
                        && let Err(e) = f(n, msg)
                    {
                        first_err = Some(e);
                    }
                }
                Status::Err(text) => {
                    if first_err.is_none() {
                        first_err = Some(self.server_error(&ctx, &text, Kind::Unavailable));
                    }
                }
                Status::Cont(_) => return Err(self.protocol_error(&ctx, "a continuation line")),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// DELE every message in `msgnos` (pipelined like [`Pop3::retr_many`]).
    /// The deletions take effect only at [`Pop3::quit`]. Every answer is
    /// read; the first `-ERR` is returned after that.
    pub fn dele_many(&mut self, msgnos: &[u32]) -> Result<()> {
        self.usable("DELE")?;
        let window = if self.capa.pipelining { DELE_WINDOW } else { 1 };
        let (mut sent, mut done) = (0usize, 0usize);
        let mut first_err: Option<Error> = None;
        while done < msgnos.len() {
            if sent < msgnos.len() && sent - done <= window / 2 {
                let upto = msgnos.len().min(done + window);
                self.send_batch("DELE", &msgnos[sent..upto])?;
                sent = upto;
            }
            let n = msgnos[done];
            done += 1;
            let ctx = format!("DELE {n}");
            // One budget per reply, as in retr_many.
            self.r.get_mut().arm();
            match self.read_status(&ctx)? {
                Status::Ok(_) => {}
                Status::Err(text) => {
                    if first_err.is_none() {
                        first_err = Some(self.server_error(&ctx, &text, Kind::Unavailable));
                    }
                }
                Status::Cont(_) => return Err(self.protocol_error(&ctx, "a continuation line")),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// RSET: unmark every message marked for deletion.
    pub fn rset(&mut self) -> Result<()> {
        self.simple("RSET")?;
        self.simple_ok("RSET").map(drop)
    }

    /// NOOP: keep the session alive, check it still answers.
    pub fn noop(&mut self) -> Result<()> {
        self.simple("NOOP")?;
        self.simple_ok("NOOP").map(drop)
    }

    /// QUIT: the server deletes the marked messages and answers. `-ERR`
    /// means the deletions may not have happened (an error); a broken
    /// session sends nothing and fails.
    pub fn quit(mut self) -> Result<()> {
        self.simple("QUIT")?;
        self.simple_ok("QUIT")?;
        if let Stream::Tls(s) = self.r.get_mut() {
            // Best effort close_notify; the server has answered already.
            let _ = s.shutdown();
        }
        Ok(())
    }

    // --- plumbing -----------------------------------------------------------

    fn ctx(&self, cmd: &str) -> String {
        format!("POP3 {}: {cmd}", self.hp)
    }

    fn usable(&self, cmd: &str) -> Result<()> {
        if self.broken {
            return Err(Error::new(
                Kind::Temporary,
                self.ctx(cmd),
                "the connection is unusable after an earlier error",
            ));
        }
        Ok(())
    }

    /// A malformed or unexpected response: the stream cannot be trusted.
    fn protocol_error(&mut self, cmd: &str, what: &str) -> Error {
        self.broken = true;
        Error::new(
            Kind::Unavailable,
            self.ctx(cmd),
            format!("unexpected response from the server: {what}"),
        )
    }

    fn server_error(&self, cmd: &str, text: &str, default: Kind) -> Error {
        Error::new(
            err_kind(text, default),
            self.ctx(cmd),
            format!("server said: -ERR {}", printable(text)),
        )
    }

    /// Send a command without arguments after checking the session.
    fn simple(&mut self, cmd: &str) -> Result<()> {
        self.usable(cmd)?;
        self.send(cmd, cmd)
    }

    /// Read the answer to a simple command: its `+OK` text, or an error.
    fn simple_ok(&mut self, cmd: &str) -> Result<String> {
        match self.read_status(cmd)? {
            Status::Ok(text) => Ok(text),
            Status::Err(text) => Err(self.server_error(cmd, &text, Kind::Unavailable)),
            Status::Cont(_) => Err(self.protocol_error(cmd, "a continuation line")),
        }
    }

    fn write_out(&mut self, cmd: &str) -> Result<()> {
        let r = self
            .r
            .get_mut()
            .write_all(&self.out)
            .and_then(|_| self.r.get_mut().flush());
        if let Err(e) = r {
            self.broken = true;
            return Err(ReadError::Io(e).into_error(self.ctx(cmd)));
        }
        Ok(())
    }

    fn send(&mut self, line: &str, cmd: &str) -> Result<()> {
        self.usable(cmd)?;
        self.out.clear();
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.transcript.sent(line.as_bytes());
        self.write_out(cmd)
    }

    fn send_secret(&mut self, line: &str, shown: &str, cmd: &str) -> Result<()> {
        self.usable(cmd)?;
        self.out.clear();
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.transcript.sent_secret(shown);
        let r = self.write_out(cmd);
        // Do not leave the secret in a buffer that lives on.
        self.out.iter_mut().for_each(|b| *b = 0);
        self.out.clear();
        r
    }

    /// Write `VERB n` for every `n` in one write.
    fn send_batch(&mut self, verb: &str, msgnos: &[u32]) -> Result<()> {
        self.out.clear();
        for n in msgnos {
            use std::io::Write as _;
            let _ = write!(self.out, "{verb} {n}\r\n");
        }
        if self.transcript.is_on() {
            let text = self.out.clone();
            self.transcript.sent(&text);
        }
        self.write_out(verb)
    }

    fn read_status(&mut self, cmd: &str) -> Result<Status> {
        self.line.clear();
        if let Err(e) = read_line_into(&mut self.r, &mut self.line, MAX_STATUS_LINE) {
            self.broken = true;
            return Err(e.into_error(self.ctx(cmd)));
        }
        self.transcript.received(&self.line);
        match parse_status(&self.line) {
            Ok(s) => Ok(s),
            Err(e) => {
                self.broken = true;
                Err(e.within(self.ctx(cmd)))
            }
        }
    }

    /// Read a listing's lines (after its `+OK`), passing each to `f`.
    fn listing(&mut self, cmd: &str, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        let mut count = 0usize;
        let verbose = self.transcript.is_on() && cmd == "CAPA";
        let mut shown: Vec<Vec<u8>> = Vec::new();
        let res = read_listing(&mut self.r, &mut line, &mut |l| {
            count += 1;
            if verbose {
                shown.push(l.to_vec());
            }
            f(l)
        });
        self.line = line;
        for l in &shown {
            self.transcript.received(l);
        }
        if self.transcript.is_on() && cmd != "CAPA" {
            self.transcript
                .received(format!("({count} lines)").as_bytes());
        }
        match res {
            Err(e) => {
                self.broken = true;
                Err(e.into_error(self.ctx(cmd)))
            }
            // The listing was read to its end: the stream is in step, but
            // a bad line means the server's answer cannot be used.
            Ok(Err(e)) => Err(e.within(self.ctx(cmd))),
            Ok(Ok(())) => Ok(()),
        }
    }
}

fn malformed(line: &[u8]) -> Error {
    Error::new(
        Kind::Unavailable,
        "",
        format!(
            "malformed listing line \"{}\"",
            printable(&String::from_utf8_lossy(&line[..line.len().min(200)]))
        ),
    )
}

/// A leading message number and the rest after the spaces.
fn number_and_rest(l: &[u8]) -> Option<(u32, &[u8])> {
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
fn first_word(l: &[u8]) -> &[u8] {
    let end = l
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(l.len());
    &l[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

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
    fn md5_matches_rfc_1321() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let vectors: [(&[u8], &str); 7] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"a", "0cc175b9c0f1b6a831c399e269772661"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                b"abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in vectors {
            assert_eq!(
                hex(md5(input)),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn apop_digest_matches_rfc_1939() {
        let greeting = "POP3 server ready <1896.697170952@dbc.mtview.ca.us>";
        let ts = apop_timestamp(greeting).unwrap();
        assert_eq!(ts, "<1896.697170952@dbc.mtview.ca.us>");
        assert_eq!(
            apop_digest(&ts, &Secret::new("tanstaaf")),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
        assert_eq!(apop_timestamp("Dovecot ready."), None);
        assert_eq!(apop_timestamp("ready <no-at-sign>"), None);
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
    fn header_digest_is_the_same_for_retr_and_top_and_tells_headers_apart() {
        let retr = b"Subject: x\r\nFrom: a\r\n\r\nbody\r\n";
        let top = b"Subject: x\r\nFrom: a\r\n\r\n";
        assert_eq!(header_digest(retr), header_digest(top));
        assert_eq!(
            header_digest(b"Subject: x\nFrom: a\n\nother\n"),
            header_digest(retr)
        );
        assert_ne!(
            header_digest(b"Subject: y\r\nFrom: a\r\n\r\nbody\r\n"),
            header_digest(retr)
        );
        assert_eq!(header_digest(retr).len(), 32);
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
            "",
        ] {
            capa_line(&mut c, l.as_bytes());
        }
        assert!(c.top && c.uidl && c.resp_codes && c.pipelining && c.user && c.stls);
        assert_eq!(c.sasl, vec!["PLAIN", "LOGIN"]);
        assert!(!c.apop && !c.known);
    }

    // --- scripted servers on loopback sockets, for what a real server
    // never does: refuse STLS, inject bytes, break off, send garbage.

    enum Step {
        /// Send these bytes.
        Send(&'static [u8]),
        /// Read one line, which must start with this.
        Expect(&'static str),
        /// Close the connection.
        Close,
    }

    /// Serve `script` to one client; the thread returns every line the
    /// client sent (until it closed the connection).
    fn serve(script: Vec<Step>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut got = Vec::new();
            let read = |r: &mut BufReader<TcpStream>, got: &mut Vec<String>| {
                let mut line = String::new();
                let n = r.read_line(&mut line).unwrap_or(0);
                if n > 0 {
                    got.push(line.trim_end().to_string());
                }
                n
            };
            for step in script {
                match step {
                    Step::Send(b) => {
                        let _ = w.write_all(b);
                    }
                    Step::Expect(p) => {
                        read(&mut r, &mut got);
                        let last = got.last().cloned().unwrap_or_default();
                        assert!(last.starts_with(p), "expected {p:?}, got {last:?}");
                    }
                    Step::Close => {
                        let _ = w.shutdown(std::net::Shutdown::Both);
                        return got;
                    }
                }
            }
            while read(&mut r, &mut got) > 0 {}
            got
        });
        (port, h)
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    fn open(port: u16, mode: TlsMode, t: Transcript) -> Result<Pop3> {
        Pop3::connect(
            "127.0.0.1",
            port,
            mode,
            &TlsOptions::default(),
            Duration::from_secs(10),
            t,
        )
    }

    const GREET: &[u8] = b"+OK hi <1.2@x>\r\n";
    const CAPA_PIPE: &[u8] = b"+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n";

    #[test]
    fn required_stls_not_offered_sends_nothing_more() {
        let (port, h) = serve(vec![
            Step::Send(GREET),
            Step::Expect("CAPA"),
            Step::Send(CAPA_PIPE),
        ]);
        let e = open(port, TlsMode::Starttls, Transcript::off())
            .err()
            .unwrap();
        assert_eq!(e.kind(), Kind::Unavailable);
        assert!(e.to_string().contains("STLS"), "{e}");
        assert_eq!(h.join().unwrap(), vec!["CAPA"]);
    }

    #[test]
    fn refused_stls_and_injected_bytes_are_errors() {
        let (port, h) = serve(vec![
            Step::Send(b"+OK hi\r\n"),
            Step::Expect("CAPA"),
            Step::Send(b"-ERR no capa\r\n"),
            Step::Expect("STLS"),
            Step::Send(b"-ERR not now\r\n"),
        ]);
        let e = open(port, TlsMode::Starttls, Transcript::off())
            .err()
            .unwrap();
        assert_eq!(e.kind(), Kind::Unavailable, "{e}");
        assert_eq!(h.join().unwrap(), vec!["CAPA", "STLS"]);

        let (port, h) = serve(vec![
            Step::Send(b"+OK hi\r\n"),
            Step::Expect("CAPA"),
            Step::Send(b"+OK\r\nSTLS\r\n.\r\n"),
            Step::Expect("STLS"),
            Step::Send(b"+OK go ahead\r\n+OK injected\r\n"),
        ]);
        let e = open(port, TlsMode::Starttls, Transcript::off())
            .err()
            .unwrap();
        assert!(e.to_string().contains("before the TLS handshake"), "{e}");
        assert_eq!(h.join().unwrap(), vec!["CAPA", "STLS"]);
    }

    #[test]
    fn broken_off_message_breaks_the_session_and_quit_sends_nothing() {
        let (port, h) = serve(vec![
            Step::Send(GREET),
            Step::Expect("CAPA"),
            Step::Send(b"-ERR\r\n"),
            Step::Expect("USER u"),
            Step::Send(b"+OK\r\n"),
            Step::Expect("PASS"),
            Step::Send(b"+OK\r\n"),
            Step::Expect("RETR 1"),
            Step::Send(b"+OK 100 octets\r\nSubject: cut\r\n\r\nhalf a mess"),
            Step::Close,
        ]);
        let mut p = open(port, TlsMode::None, Transcript::off()).unwrap();
        assert!(p.capabilities().apop && !p.capabilities().known);
        p.login("u", &Secret::new("pw"), Login::Auto).unwrap();
        let mut calls = 0;
        let e = p
            .retr_many(&[1], &mut |_, _| {
                calls += 1;
                Ok(())
            })
            .unwrap_err();
        assert_eq!(calls, 0);
        assert_eq!(e.kind(), Kind::Temporary);
        assert_eq!(
            e.to_string(),
            format!("POP3 127.0.0.1:{port}: RETR 1: the server closed the connection")
        );
        let e = p.dele_many(&[1]).unwrap_err();
        assert!(e.to_string().contains("unusable"), "{e}");
        assert!(p.quit().is_err());
        assert_eq!(
            h.join().unwrap(),
            vec!["CAPA", "USER u", "PASS pw", "RETR 1"]
        );
    }

    #[test]
    fn callback_error_stops_drains_and_keeps_the_session() {
        let (port, h) = serve(vec![
            Step::Send(GREET),
            Step::Expect("CAPA"),
            Step::Send(CAPA_PIPE),
            Step::Expect("AUTH PLAIN"),
            Step::Send(b"+OK\r\n"),
            Step::Expect("CAPA"),
            Step::Send(CAPA_PIPE),
            Step::Expect("RETR 1"),
            Step::Expect("RETR 2"),
            Step::Expect("RETR 3"),
            Step::Send(b"+OK\r\none\r\n.\r\n+OK\r\ntwo\r\n.\r\n-ERR [SYS/TEMP] gone\r\n"),
            Step::Expect("NOOP"),
            Step::Send(b"+OK\r\n"),
            Step::Expect("QUIT"),
            Step::Send(b"-ERR [SYS/TEMP] could not delete\r\n"),
        ]);
        let sink = Sink::default();
        let mut p = open(
            port,
            TlsMode::None,
            Transcript::to(Box::new(sink.clone()), ""),
        )
        .unwrap();
        p.login("u", &Secret::new("hunter2"), Login::Auto).unwrap();
        assert!(p.capabilities().pipelining);
        let mut seen = Vec::new();
        let e = p
            .retr_many(&[1, 2, 3], &mut |n, m| {
                seen.push((n, m));
                Err(Error::new(Kind::CantCreate, "storing", "disk gone"))
            })
            .unwrap_err();
        assert_eq!(e.kind(), Kind::CantCreate);
        assert_eq!(seen, vec![(1, b"one\r\n".to_vec())]);
        p.noop().unwrap();
        let e = p.quit().unwrap_err();
        assert_eq!(e.kind(), Kind::Temporary);
        let lines = h.join().unwrap();
        assert_eq!(
            lines[..2],
            [
                "CAPA".to_string(),
                "AUTH PLAIN AHUAaHVudGVyMg==".to_string()
            ]
        );
        let t = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(t.contains("C: AUTH PLAIN <redacted>"), "{t}");
        assert!(
            !t.contains("AHUAaHVudGVyMg") && !t.contains("hunter2"),
            "{t}"
        );
    }

    #[test]
    fn a_message_past_its_limit_breaks_the_session_without_a_quit() {
        let (port, h) = serve(vec![
            Step::Send(GREET),
            Step::Expect("CAPA"),
            Step::Send(CAPA_PIPE),
            Step::Expect("AUTH PLAIN"),
            Step::Send(b"+OK\r\n"),
            Step::Expect("CAPA"),
            Step::Send(CAPA_PIPE),
            Step::Expect("RETR 1"),
            Step::Expect("RETR 2"),
            Step::Expect("RETR 3"),
            Step::Send(b"+OK\r\none\r\n.\r\n+OK 10 octets\r\n"),
            Step::Send(&[b'x'; 4096]),
            Step::Send(b"\r\n.\r\n+OK\r\nthree\r\n.\r\n"),
        ]);
        let mut p = open(port, TlsMode::None, Transcript::off()).unwrap();
        p.login("u", &Secret::new("pw"), Login::Auto).unwrap();
        let mut seen = Vec::new();
        let t = p
            .retr_limited(&[(1, 100), (2, 100), (3, 100)], &mut |n, m| {
                seen.push((n, m));
                Ok(())
            })
            .unwrap();
        assert_eq!(
            t,
            Some(TooLarge {
                msgno: 2,
                limit: 100
            })
        );
        assert_eq!(seen, vec![(1, b"one\r\n".to_vec())]);
        assert!(p.is_broken());
        assert!(p.quit().is_err());
        assert_eq!(
            h.join().unwrap(),
            vec![
                "CAPA",
                "AUTH PLAIN AHUAcHc=",
                "CAPA",
                "RETR 1",
                "RETR 2",
                "RETR 3"
            ]
        );
    }

    #[test]
    fn garbage_from_the_server_is_a_protocol_error_and_eof_a_temporary_one() {
        for (reply, kind) in [
            (&b"220 smtp.example ESMTP\r\n"[..], Kind::Unavailable),
            (b"\xff\xfe\r\n", Kind::Unavailable),
            (b"\x1b[2J\x1b]0;x\x07\r\n", Kind::Unavailable),
            (b"", Kind::Temporary),
        ] {
            let (port, h) = serve(vec![Step::Send(reply), Step::Close]);
            let e = open(port, TlsMode::None, Transcript::off()).err().unwrap();
            assert_eq!(e.kind(), kind, "{e}");
            assert!(!e.to_string().contains(['\x1b', '\x07']), "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("127.0.0.1:{port}: greeting")),
                "{e}"
            );
            h.join().unwrap();
        }
    }

    #[test]
    fn listings_parse_and_bad_lines_are_errors() {
        let (port, h) = serve(vec![
            Step::Send(b"+OK\r\n"),
            Step::Expect("CAPA"),
            Step::Send(b"+OK\r\nUIDL\r\n.\r\n"),
            Step::Expect("USER"),
            Step::Send(b"+OK\r\n"),
            Step::Expect("PASS"),
            Step::Send(b"-ERR [AUTH] nope\r\n"),
            Step::Expect("USER"),
            Step::Send(b"+OK\r\n"),
            Step::Expect("PASS"),
            Step::Send(b"+OK\r\n"),
            Step::Expect("CAPA"),
            Step::Send(b"+OK\r\nUIDL\r\nTOP\r\n.\r\n"),
            Step::Expect("STAT"),
            Step::Send(b"+OK 2 30 extra\r\n"),
            Step::Expect("LIST"),
            Step::Send(b"+OK 2 messages\r\n1 10\r\n2  20 x\r\n.\r\n"),
            Step::Expect("UIDL"),
            Step::Send(b"+OK\r\n1 abc\r\n2 d\xe9f\r\n.\r\n"),
            Step::Expect("UIDL"),
            Step::Send(b"+OK\r\n1 abc\r\n2 def\r\n.\r\n"),
            Step::Expect("QUIT"),
            Step::Send(b"+OK bye\r\n"),
        ]);
        let mut p = open(port, TlsMode::None, Transcript::off()).unwrap();
        let e = p.login("u", &Secret::new("pw"), Login::User).unwrap_err();
        assert_eq!(e.kind(), Kind::Auth);
        assert!(!e.to_string().contains("pw"), "{e}");
        p.login("u", &Secret::new("pw"), Login::User).unwrap();
        assert!(p.capabilities().top);
        assert_eq!(p.stat().unwrap(), (2, 30));
        assert_eq!(p.list().unwrap(), vec![(1, 10), (2, 20)]);
        let e = p.uidl().unwrap_err();
        assert_eq!(e.kind(), Kind::Unavailable);
        assert!(e.to_string().contains("malformed listing line"), "{e}");
        // The listing was read to its end: the session goes on.
        assert_eq!(
            p.uidl().unwrap(),
            vec![(1, "abc".to_string()), (2, "def".to_string())]
        );
        p.quit().unwrap();
        h.join().unwrap();
    }

    #[test]
    fn line_breaks_in_credentials_are_refused_before_sending() {
        let (port, h) = serve(vec![
            Step::Send(GREET),
            Step::Expect("CAPA"),
            Step::Send(b"-ERR\r\n"),
        ]);
        let mut p = open(port, TlsMode::None, Transcript::off()).unwrap();
        let e = p
            .login("u\r\nDELE 1", &Secret::new("pw"), Login::User)
            .unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        let e = p
            .login("u", &Secret::new("pw\nx"), Login::User)
            .unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        drop(p);
        assert_eq!(h.join().unwrap(), vec!["CAPA"]);
    }

    #[test]
    fn xoauth2_error_challenge_is_answered_and_plain_as_carries_the_authzid() {
        let (port, h) = serve(vec![
            Step::Send(GREET),
            Step::Expect("CAPA"),
            Step::Send(b"+OK\r\nSASL PLAIN XOAUTH2\r\n.\r\n"),
            Step::Expect("AUTH XOAUTH2 "),
            Step::Send(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
            Step::Expect(""),
            Step::Send(b"-ERR [AUTH] invalid token\r\n"),
            Step::Expect("AUTH XOAUTH2 "),
            Step::Send(b"+OK welcome\r\n"),
            Step::Expect("CAPA"),
            Step::Send(b"+OK\r\nUIDL\r\n.\r\n"),
            Step::Close,
        ]);
        let sink = Sink::default();
        let mut p = open(
            port,
            TlsMode::None,
            Transcript::to(Box::new(sink.clone()), ""),
        )
        .unwrap();
        let token = Secret::new("ya29.token");
        let e = p
            .login("u@example.com", &token, Login::Sasl(Mechanism::XOAuth2))
            .unwrap_err();
        assert_eq!(e.kind(), Kind::Auth, "{e}");
        p.login("u@example.com", &token, Login::Sasl(Mechanism::XOAuth2))
            .unwrap();
        // Login-phase capabilities survive the CAPA after login.
        assert!(p.capabilities().uidl);
        assert_eq!(p.capabilities().sasl, vec!["PLAIN", "XOAUTH2"]);
        let ir = sasl::xoauth2("u@example.com", &token);
        let lines = h.join().unwrap();
        assert_eq!(lines[1], format!("AUTH XOAUTH2 {ir}"));
        assert_eq!(lines[2], "");
        let t = sink.text();
        assert!(!t.contains("ya29") && !t.contains(&ir), "{t}");

        let (port, h) = serve(vec![
            Step::Send(GREET),
            Step::Expect("CAPA"),
            Step::Send(b"-ERR\r\n"),
            Step::Expect("AUTH PLAIN "),
            Step::Send(b"+OK\r\n"),
            Step::Close,
        ]);
        let mut p = open(port, TlsMode::None, Transcript::off()).unwrap();
        p.login("admin", &Secret::new("pw"), Login::PlainAs("bob"))
            .unwrap();
        let lines = h.join().unwrap();
        let ir = lines[1].strip_prefix("AUTH PLAIN ").unwrap();
        assert_eq!(sasl::unb64(ir).unwrap(), b"bob\0admin\0pw");
    }

    #[test]
    fn a_silent_server_times_out_as_a_temporary_error() {
        let (port, h) = serve(vec![Step::Send(GREET), Step::Expect("CAPA")]);
        let e = Pop3::connect(
            "127.0.0.1",
            port,
            TlsMode::None,
            &TlsOptions::default(),
            Duration::from_millis(300),
            Transcript::off(),
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), Kind::Temporary);
        assert!(
            e.to_string()
                .starts_with(&format!("POP3 127.0.0.1:{port}: CAPA: timed out")),
            "{e}"
        );
        assert_eq!(h.join().unwrap(), vec!["CAPA"]);
    }
}
