//! The IMAP client mail-fetch reads mailboxes with (RFC 3501, with UIDPLUS,
//! IDLE and SASL-IR where offered): connecting (implicit TLS or a required
//! STARTTLS), LOGIN or AUTHENTICATE PLAIN/LOGIN/XOAUTH2, SELECT, UID SEARCH,
//! batched `UID FETCH ... BODY.PEEK[]`, flags, UID EXPUNGE and IDLE.
//!
//! Written on the stream of `tls.rs` rather than on the `imap` crate: that
//! crate cannot send STARTTLS on a client it did not connect itself, panics
//! on some server replies (an IDLE refused) and logs through `eprintln!`,
//! where our transcript must redact credentials. This client does only what
//! fetching needs, and its guarantees are:
//!
//! - **No panic, no plain text by surprise.** Every server reply, however
//!   malformed, becomes an [`Error`]; with [`TlsMode::Starttls`] a server
//!   that does not offer STARTTLS is refused before any credential is sent.
//! - **Exact bytes.** A message is the literal the server sent for
//!   `BODY[]`, byte for byte (CRLF line ends as on the wire).
//! - **Credentials never logged**: they go through
//!   [`Transcript::sent_secret`]; message literals appear in the
//!   transcript only as their size.
//! - **Memory and time follow what we asked for, not what the server
//!   sends.** Responses are read by [`Reader`] (over any `BufRead`, so the
//!   fuzz target drives it with arbitrary bytes) and handed on one at a
//!   time, never collected: a response's text is capped at [`MAX_TEXT`], a
//!   literal nobody asked for is read past in chunks, a message body is held
//!   only up to [`FetchLimits`] (`--max-size`, else [`MAX_MESSAGE`], and the
//!   batch's byte budget), judged by the bytes received rather than by the
//!   RFC822.SIZE claimed, and one command may bring at most
//!   [`MAX_UNTAGGED`] bytes it did not ask for.
//! - **Only what was asked for is a message.** A FETCH answer yields a
//!   message only for a UID in the request, at most once
//!   ([`FetchAnswer`]); a body for any other UID, or without one, is
//!   reported as [`Fetched::Unrequested`], so it is never stored, deleted or
//!   remembered.
//! - **Server text is shown escaped**: control characters in replies reach
//!   neither error messages nor the transcript raw ([`printable`]).
//! - Errors have kinds: network trouble is [`Kind::Temporary`], refused
//!   credentials [`Kind::Auth`], a refused or malformed command or reply
//!   (a literal size that is not a number, a flood) [`Kind::Unavailable`]
//!   (a protocol error).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use crate::exit::{Error, Kind, Result};
use crate::proto::sasl::{self, Mechanism, Secret};
use crate::proto::tls::{self, Stream, TlsMode, TlsOptions};
use crate::proto::transcript::Transcript;

/// How to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// AUTHENTICATE PLAIN when offered, else LOGIN.
    Auto,
    /// The LOGIN command.
    Login,
    /// AUTHENTICATE with this mechanism (never another).
    Sasl(Mechanism),
}

/// What SELECT told us about a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    /// UIDVALIDITY (0 when the server sent none).
    pub uidvalidity: u32,
    /// Messages in the folder.
    pub exists: u32,
    /// The next UID to be assigned, when sent.
    pub uidnext: Option<u32>,
}

/// One untagged or tagged response: its text with every literal cut out,
/// and the literals in order (kept, or read and dropped).
#[derive(Debug, Default)]
pub struct Response {
    /// The text, literals replaced by `{N}` markers as sent.
    pub text: Vec<u8>,
    /// The literals.
    pub literals: Vec<Literal>,
}

/// A literal of a response: held, or read past without holding it.
#[derive(Debug, PartialEq, Eq)]
pub enum Literal {
    /// Its bytes.
    Kept(Vec<u8>),
    /// Its size; the bytes were read in chunks and dropped.
    Dropped(u64),
}

/// Why reading a response failed.
#[derive(Debug)]
pub enum ReadError {
    /// The stream failed (a timeout, a reset).
    Io(std::io::Error),
    /// The stream ended (inside a response when the text says so).
    Closed(&'static str),
    /// The server sent something that cannot be IMAP, or more than we hold.
    Protocol(String),
    /// The tagged reply was NO or BAD (its text).
    Refused(String),
    /// The server said BYE (its text).
    Bye(String),
}

/// Largest text of one response, every line of it together: a SEARCH
/// answer for a million messages fits (about 7 MB); a server sending more
/// is broken or hostile.
pub const MAX_TEXT: usize = 16 << 20;
/// Largest literal read at all. Larger sizes end the session: even read
/// and dropped, 2 GiB is more than any mail server sends for one item.
pub const MAX_LITERAL: u64 = 1 << 31;
/// Largest message held when `--max-size` does not say less: a larger one
/// is read in chunks, dropped and left on the server.
pub const MAX_MESSAGE: u64 = 256 << 20;
/// Bytes of responses we did not ask for (text and literals) that one
/// command may bring before the session ends as a protocol error: far
/// above the unsolicited FLAGS updates of a busy million-message folder.
pub const MAX_UNTAGGED: u64 = 128 << 20;
/// Most UIDs one SEARCH may report (before duplicates are removed, twice
/// that is held at most).
pub const MAX_UIDS: usize = 1 << 21;

/// Asked before each literal with (text so far, start of the literal's
/// line, size): hold it (`Ok(true)`), read past it (`Ok(false)`) or end the
/// session as a protocol error (`Err`).
pub type KeepLiteral<'a> = dyn FnMut(&[u8], usize, u64) -> std::result::Result<bool, String> + 'a;

/// The response reader over any buffered stream: what [`Imap`] reads its
/// server with, and what the fuzz target drives with arbitrary bytes.
///
/// Guarantees: at most `max_text` bytes of text per response; a literal is
/// held only when the caller's `keep` says so (its size is the server's
/// word, capped at [`MAX_LITERAL`]), otherwise read in chunks and dropped;
/// a `{N}` that is not a number is a protocol error, never text; no panic
/// on any bytes. Lines go to the transcript with control characters
/// escaped, literals only as their size.
pub struct Reader<R> {
    r: R,
    max_text: usize,
    transcript: Transcript,
}

impl<R: BufRead> Reader<R> {
    /// A reader over `r` with the standard caps and no transcript.
    pub fn new(r: R) -> Reader<R> {
        Reader {
            r,
            max_text: MAX_TEXT,
            transcript: Transcript::off(),
        }
    }

    /// Cap the text of one response at `n` bytes instead of [`MAX_TEXT`].
    pub fn max_text(mut self, n: usize) -> Reader<R> {
        self.max_text = n.max(1);
        self
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &R {
        &self.r
    }

    /// The stream underneath, mutably.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.r
    }

    /// Read one response: a line, and each literal it announces plus the
    /// line that continues after it. `keep(text, line_start, size)` is asked
    /// before each literal, with the text so far (the literal's own line
    /// starts at `line_start`): `Ok(true)` holds it, `Ok(false)` reads past
    /// it, `Err` ends the session as a protocol error.
    pub fn read_response(
        &mut self,
        keep: &mut KeepLiteral<'_>,
    ) -> std::result::Result<Response, ReadError> {
        let mut resp = Response::default();
        loop {
            let start = resp.text.len();
            let room = self.max_text.saturating_sub(start);
            if room == 0 {
                return Err(too_long(self.max_text));
            }
            let n = (&mut self.r)
                .take(room as u64)
                .read_until(b'\n', &mut resp.text)
                .map_err(ReadError::Io)?;
            if !resp.text.ends_with(b"\n") || n == 0 {
                return Err(if n == room {
                    too_long(self.max_text)
                } else if start == 0 && n == 0 {
                    ReadError::Closed("the server closed the connection")
                } else {
                    ReadError::Closed("the server closed the connection in a reply")
                });
            }
            let line = &resp.text[start..];
            if self.transcript.is_on() {
                let shown = printable(line);
                self.transcript.received(shown.as_bytes());
            }
            let Some(size) = literal_size(line).map_err(|e| ReadError::Protocol(e.to_string()))?
            else {
                return Ok(resp);
            };
            if size > MAX_LITERAL {
                return Err(ReadError::Protocol(format!(
                    "literal too large ({size} octets; at most {MAX_LITERAL} are read)"
                )));
            }
            let lit = if keep(&resp.text, start, size).map_err(ReadError::Protocol)? {
                let mut lit = Vec::new();
                lit.try_reserve_exact(size as usize).map_err(|_| {
                    ReadError::Io(std::io::Error::new(
                        std::io::ErrorKind::OutOfMemory,
                        format!("out of memory for a literal of {size} octets"),
                    ))
                })?;
                (&mut self.r)
                    .take(size)
                    .read_to_end(&mut lit)
                    .map_err(ReadError::Io)?;
                if (lit.len() as u64) < size {
                    return Err(ReadError::Closed(
                        "the server closed the connection in a literal",
                    ));
                }
                Literal::Kept(lit)
            } else {
                // Read past it in the stream's own chunks: nothing of it is
                // held, however large the server says it is.
                let got = std::io::copy(&mut (&mut self.r).take(size), &mut std::io::sink())
                    .map_err(ReadError::Io)?;
                if got < size {
                    return Err(ReadError::Closed(
                        "the server closed the connection in a literal",
                    ));
                }
                Literal::Dropped(size)
            };
            if self.transcript.is_on() {
                self.transcript.note(&format!("{size} octets"));
            }
            resp.literals.push(lit);
        }
    }

    /// Read one response holding none of its literals; their sizes and the
    /// text are added to `untagged`, which may not pass `max` (a server
    /// cannot keep one command going with responses nobody asked for).
    pub fn read_dropping(
        &mut self,
        untagged: &mut u64,
        max: u64,
    ) -> std::result::Result<Response, ReadError> {
        let resp = self.read_response(&mut |_, _, size| {
            *untagged = untagged.saturating_add(size);
            if *untagged > max {
                Err(not_asked_for(max))
            } else {
                Ok(false)
            }
        })?;
        *untagged = untagged.saturating_add(resp.text.len() as u64);
        if *untagged > max {
            return Err(ReadError::Protocol(not_asked_for(max)));
        }
        Ok(resp)
    }
}

fn too_long(max: usize) -> ReadError {
    ReadError::Protocol(format!("a response longer than {} MiB", max >> 20))
}

fn not_asked_for(max: u64) -> String {
    format!(
        "the server sent more than {} MiB not asked for in answer to one command",
        max >> 20
    )
}

/// The caps of one FETCH answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Largest message held (bytes as received, not as claimed).
    pub message: u64,
    /// Bytes held for the whole answer: a message that would pass it
    /// (unless it is the first) is dropped and reported as deferred.
    pub batch: u64,
    /// Bytes of responses not asked for before the answer is refused.
    pub untagged: u64,
}

impl Default for FetchLimits {
    fn default() -> FetchLimits {
        FetchLimits {
            message: MAX_MESSAGE,
            batch: u64::MAX,
            untagged: MAX_UNTAGGED,
        }
    }
}

/// What one FETCH response of an answer amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A message asked for, whole: (UID, bytes).
    Message(u32, Vec<u8>),
    /// A message asked for whose body is larger than
    /// [`FetchLimits::message`]: read and dropped (UID, its size).
    TooLarge(u32, u64),
    /// A message asked for that did not fit the answer's byte budget: read
    /// and dropped; fetch it again.
    Deferred(u32),
    /// A message asked for whose body is NIL or cannot be read.
    Unreadable(u32),
    /// A body for a UID not asked for (or a second one for the same UID),
    /// or with no UID at all: dropped.
    Unrequested(Option<u32>),
}

/// Reading the answer to one `UID FETCH uids (UID BODY.PEEK[])`, one
/// [`Fetched`] at a time, over any [`Reader`].
///
/// Guarantees: only UIDs asked for, each at most once, come out as
/// messages; what is held at any time is at most one response's text plus
/// the kept bodies within [`FetchLimits`]; responses not asked for are read
/// past and counted against [`FetchLimits::untagged`].
pub struct FetchAnswer {
    tag: Vec<u8>,
    wanted: BTreeSet<u32>,
    kept: u64,
    untagged: u64,
    limits: FetchLimits,
    done: bool,
}

impl FetchAnswer {
    /// The answer to the command tagged `a{tag}`, which asked for `uids`.
    pub fn new(tag: u32, uids: &[u32], limits: FetchLimits) -> FetchAnswer {
        FetchAnswer {
            tag: format!("a{tag} ").into_bytes(),
            wanted: uids.iter().copied().collect(),
            kept: 0,
            untagged: 0,
            limits,
            done: false,
        }
    }

    /// The next message event; `None` after the tagged OK.
    pub fn next<R: BufRead>(
        &mut self,
        r: &mut Reader<R>,
    ) -> std::result::Result<Option<Fetched>, ReadError> {
        while !self.done {
            let mut body_at: Option<usize> = None;
            let mut held = 0u64;
            let mut count = 0usize;
            let (wanted, limits, kept, untagged) = (
                &self.wanted,
                self.limits,
                &mut self.kept,
                &mut self.untagged,
            );
            let resp = r.read_response(&mut |text, line_start, size| {
                let i = count;
                count += 1;
                let line = &text[line_start..];
                if body_at.is_some() || !is_fetch(text) || !ends_with_body_item(line) {
                    *untagged = untagged.saturating_add(size);
                    if *untagged > limits.untagged {
                        return Err(not_asked_for(limits.untagged));
                    }
                    return Ok(false);
                }
                body_at = Some(i);
                let upper = line.to_ascii_uppercase();
                if let Some(uid) = item_number(&String::from_utf8_lossy(&upper), "UID ")
                    && !u32::try_from(uid).is_ok_and(|u| wanted.contains(&u))
                {
                    return Ok(false);
                }
                if size > limits.message || (*kept > 0 && kept.saturating_add(size) > limits.batch)
                {
                    return Ok(false);
                }
                *kept += size;
                held = size;
                Ok(true)
            })?;
            if resp.text.starts_with(&self.tag) {
                let rest = printable(&resp.text[self.tag.len()..]);
                if rest.to_ascii_uppercase().starts_with("OK") {
                    self.done = true;
                    return Ok(None);
                }
                return Err(ReadError::Refused(rest));
            }
            if is_bye(&resp.text) {
                return Err(ReadError::Bye(printable(&resp.text)));
            }
            let ev = self.judge(resp, body_at, held);
            if self.untagged > self.limits.untagged {
                return Err(ReadError::Protocol(not_asked_for(self.limits.untagged)));
            }
            if ev.is_some() {
                return Ok(ev);
            }
        }
        Ok(None)
    }

    /// What a complete response is; `None` for one that carries no body
    /// (a FLAGS update, any other untagged response), after counting it.
    fn judge(&mut self, mut resp: Response, body_at: Option<usize>, held: u64) -> Option<Fetched> {
        let upper = String::from_utf8_lossy(&resp.text).to_ascii_uppercase();
        let inline_body = body_at.is_none() && is_fetch(&resp.text) && upper.contains("BODY[] ");
        // Literals other than the body were counted as they were read.
        let text = resp.text.len() as u64;
        if body_at.is_none() && !inline_body {
            self.untagged = self.untagged.saturating_add(text);
            return None;
        }
        let uid = the_uid(&upper);
        let Some(uid) = uid.filter(|u| self.wanted.remove(u)) else {
            self.kept -= held;
            let body = match body_at.and_then(|i| resp.literals.get(i)) {
                Some(Literal::Kept(v)) => v.len() as u64,
                Some(Literal::Dropped(n)) => *n,
                None => 0,
            };
            self.untagged = self.untagged.saturating_add(text).saturating_add(body);
            return Some(Fetched::Unrequested(uid));
        };
        if let Some(i) = body_at {
            return Some(match resp.literals.get_mut(i) {
                Some(Literal::Kept(v)) => Fetched::Message(uid, std::mem::take(v)),
                Some(Literal::Dropped(n)) if *n > self.limits.message => Fetched::TooLarge(uid, *n),
                Some(Literal::Dropped(_)) => Fetched::Deferred(uid),
                None => Fetched::Unreadable(uid),
            });
        }
        // A body sent inline: a quoted string (rare but legal) or NIL.
        // Found in the bytes: the lossy text's offsets may differ.
        let at = resp
            .text
            .windows(7)
            .position(|w| w.eq_ignore_ascii_case(b"BODY[] "))
            .map_or(resp.text.len(), |i| i + 7);
        // It counts against the batch like a literal.
        Some(match quoted(&resp.text[at..]) {
            Some(b) if b.len() as u64 > self.limits.message => {
                Fetched::TooLarge(uid, b.len() as u64)
            }
            Some(b)
                if self.kept > 0
                    && self.kept.saturating_add(b.len() as u64) > self.limits.batch =>
            {
                Fetched::Deferred(uid)
            }
            Some(b) => {
                self.kept += b.len() as u64;
                Fetched::Message(uid, b)
            }
            None => Fetched::Unreadable(uid),
        })
    }
}

/// An IMAP connection (after the greeting).
pub struct Imap {
    r: Reader<BufReader<Stream>>,
    tag: u32,
    caps: Vec<String>,
    host: String,
    selected: Option<String>,
    /// The last I/O error was a read timeout.
    timed_out: bool,
}

/// Most SASL challenges answered in one AUTHENTICATE: LOGIN needs two, an
/// XOAUTH2 failure one more; a server asking for ever is not logging us in.
const MAX_CHALLENGES: usize = 4;

impl Imap {
    /// Connect, read the greeting and secure the connection as `mode` says.
    pub fn connect(
        host: &str,
        port: u16,
        mode: TlsMode,
        opts: &TlsOptions,
        timeout: Duration,
        transcript: Transcript,
    ) -> Result<Imap> {
        let stream = tls::open(host, port, mode, opts, timeout)?;
        let mut r = Reader::new(BufReader::with_capacity(1 << 16, stream));
        r.transcript = transcript;
        let mut c = Imap {
            r,
            tag: 0,
            caps: Vec::new(),
            host: tls::display_host_port(host, port),
            selected: None,
            timed_out: false,
        };
        let greeting = c.read_plain(&mut 0)?;
        let g = printable(&greeting.text);
        let upper = g.to_ascii_uppercase();
        if upper.starts_with("* BYE") {
            return Err(c.err(Kind::Temporary, "greeting", &g));
        }
        if !upper.starts_with("* OK") && !upper.starts_with("* PREAUTH") {
            return Err(c.err(Kind::Unavailable, "greeting", format!("not IMAP: {g}")));
        }
        c.note_caps(&g);
        if mode == TlsMode::Starttls {
            if c.caps.is_empty() {
                c.capability()?;
            }
            if !c.has("STARTTLS") {
                return Err(c.err(
                    Kind::Unavailable,
                    "STARTTLS",
                    "the server does not offer STARTTLS, which is required (use --tls implicit or, on a trusted network, --tls none)",
                ));
            }
            c.command("STARTTLS")?;
            // Anything buffered before the handshake would be injected
            // plain text (CVE-2011-0411 style): refuse it.
            if !c.r.get_ref().buffer().is_empty() {
                return Err(c.err(
                    Kind::Unavailable,
                    "STARTTLS",
                    "the server sent data after its STARTTLS reply",
                ));
            }
            let Imap {
                r, tag, host: h, ..
            } = c;
            let Reader { r, transcript, .. } = r;
            let plain = r.into_inner();
            let stream = plain.upgrade(host, opts)?;
            let mut r = Reader::new(BufReader::with_capacity(1 << 16, stream));
            r.transcript = transcript;
            r.transcript.note("TLS established");
            c = Imap {
                r,
                tag,
                caps: Vec::new(),
                host: h,
                selected: None,
                timed_out: false,
            };
            c.capability()?;
        } else if c.caps.is_empty() {
            c.capability()?;
        }
        Ok(c)
    }

    /// `host:port`, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Does the server announce capability `cap` (case-insensitive)?
    pub fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    fn err(&self, kind: Kind, what: &str, cause: impl std::fmt::Display) -> Error {
        Error::new(kind, what.to_string(), cause)
    }

    fn note_caps(&mut self, line: &str) {
        let upper = line.to_ascii_uppercase();
        if let Some(i) = upper.find("[CAPABILITY ") {
            let rest = &line[i + 12..];
            let end = rest.find(']').unwrap_or(rest.len());
            self.caps = rest[..end].split_whitespace().map(str::to_string).collect();
        } else if upper.starts_with("* CAPABILITY ") {
            self.caps = line[13..].split_whitespace().map(str::to_string).collect();
        }
    }

    fn capability(&mut self) -> Result<()> {
        let mut lines = Vec::new();
        self.command_each("CAPABILITY", &mut |t| {
            if t.len() < 64 << 10 {
                lines.push(printable(t));
            }
        })?;
        for l in lines {
            self.note_caps(&l);
        }
        Ok(())
    }

    fn io_err(&mut self, e: &std::io::Error) -> Error {
        self.timed_out = matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        );
        Error::io(format!("talking to {}", self.host), e)
    }

    /// The error for a failed read during `what`.
    fn read_err(&mut self, e: ReadError, what: &str) -> Error {
        match e {
            ReadError::Io(e) => self.io_err(&e),
            ReadError::Closed(why) => {
                Error::new(Kind::Temporary, format!("talking to {}", self.host), why)
            }
            ReadError::Protocol(why) => self.err(
                Kind::Unavailable,
                &format!("reading the answer to {what} from {}", self.host),
                why,
            ),
            ReadError::Refused(rest) => {
                self.err(Kind::Unavailable, what, format!("the server said: {rest}"))
            }
            ReadError::Bye(t) => self.err(Kind::Temporary, what, format!("the server closed: {t}")),
        }
    }

    /// Read one response holding none of its literals (see
    /// [`Reader::read_dropping`]).
    fn read_plain(&mut self, untagged: &mut u64) -> Result<Response> {
        self.r
            .read_dropping(untagged, MAX_UNTAGGED)
            .map_err(|e| self.read_err(e, "a command"))
    }

    /// Send one command line (the tag is added) and read up to its tagged
    /// reply. NO and BAD are errors.
    fn command(&mut self, cmd: &str) -> Result<()> {
        self.command_each(cmd, &mut |_| {})
    }

    /// [`Imap::command`], handing the text of each untagged response to
    /// `on` as it arrives (none is kept after).
    fn command_each(&mut self, cmd: &str, on: &mut dyn FnMut(&[u8])) -> Result<()> {
        self.send(cmd, None)?;
        self.finish_tag(self.tag, cmd, on)
    }

    fn send(&mut self, cmd: &str, secret_shown: Option<&str>) -> Result<()> {
        self.tag += 1;
        let line = format!("a{} {cmd}\r\n", self.tag);
        match secret_shown {
            Some(shown) => self
                .r
                .transcript
                .sent_secret(&format!("a{} {shown}", self.tag)),
            None => self.r.transcript.sent(line.as_bytes()),
        }
        self.write_raw(line.as_bytes())
    }

    fn write_raw(&mut self, b: &[u8]) -> Result<()> {
        let s = self.r.get_mut().get_mut();
        s.write_all(b)
            .and_then(|()| s.flush())
            .map_err(|e| Error::io(format!("talking to {}", self.host), &e))
    }

    /// Read responses up to the tagged reply of command number `tag`,
    /// handing each untagged one's text to `on`.
    fn finish_tag(&mut self, tag: u32, what: &str, on: &mut dyn FnMut(&[u8])) -> Result<()> {
        let tag = format!("a{tag} ");
        let verb = {
            let mut w = what.split_whitespace();
            match (w.next(), w.next()) {
                (Some(u), Some(v)) if u.eq_ignore_ascii_case("UID") => format!("{u} {v}"),
                (Some(v), _) => v.to_string(),
                _ => what.to_string(),
            }
        };
        let mut untagged = 0u64;
        loop {
            let resp = self
                .r
                .read_dropping(&mut untagged, MAX_UNTAGGED)
                .map_err(|e| self.read_err(e, &verb))?;
            if resp.text.starts_with(tag.as_bytes()) {
                let rest = printable(&resp.text[tag.len()..]);
                if rest.to_ascii_uppercase().starts_with("OK") {
                    self.note_caps(&rest);
                    return Ok(());
                }
                return Err(self.read_err(ReadError::Refused(rest), &verb));
            }
            if is_bye(&resp.text) {
                return Err(self.read_err(ReadError::Bye(printable(&resp.text)), &verb));
            }
            on(&resp.text);
        }
    }

    /// Log in as `user`.
    pub fn login(&mut self, user: &str, pass: &Secret, how: Login) -> Result<()> {
        let offered: Vec<String> = self
            .caps
            .iter()
            .filter_map(|c| {
                c.get(..5)
                    .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                    .map(|_| c[5..].to_string())
            })
            .collect();
        let mech = match how {
            Login::Login => None,
            Login::Sasl(m) => Some(Mechanism::choose(Some(m), &offered)?),
            Login::Auto => {
                if offered.iter().any(|o| o.eq_ignore_ascii_case("PLAIN")) {
                    Some(Mechanism::Plain)
                } else {
                    None
                }
            }
        };
        let res = match mech {
            None => {
                if self.has("LOGINDISABLED") {
                    return Err(self.err(
                        Kind::Auth,
                        "LOGIN",
                        "the server does not allow LOGIN here (LOGINDISABLED)",
                    ));
                }
                let cmd = format!("LOGIN {} {}", quote(user), quote(pass.expose()));
                self.send(&cmd, Some(&format!("LOGIN {}", quote(user))))?;
                self.finish_tag(self.tag, "LOGIN", &mut |_| {})
            }
            Some(m) => self.authenticate(m, user, pass),
        };
        match res {
            Ok(()) => {
                // Capabilities may change after login.
                if !self
                    .caps
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case("IMAP4rev1"))
                {
                    self.capability()?;
                }
                Ok(())
            }
            Err(e) if e.kind() == Kind::Unavailable => Err(Error::new(
                Kind::Auth,
                format!("logging in as {user}"),
                e.to_string(),
            )),
            Err(e) => Err(e),
        }
    }

    fn authenticate(&mut self, m: Mechanism, user: &str, pass: &Secret) -> Result<()> {
        let first = match m {
            Mechanism::Plain => Some(sasl::plain(user, pass)),
            Mechanism::XOAuth2 => Some(sasl::xoauth2(user, pass)),
            Mechanism::Login => None,
        };
        let ir = self.has("SASL-IR");
        let what = format!("AUTHENTICATE {}", m.name());
        match (&first, ir) {
            (Some(resp), true) => {
                let cmd = format!("{what} {resp}");
                self.send(&cmd, Some(&what))?;
            }
            _ => self.send(&what, None)?,
        }
        let mut answers: Vec<String> = match (m, first, ir) {
            (Mechanism::Login, _, _) => vec![
                sasl::b64(user.as_bytes()),
                sasl::b64(pass.expose().as_bytes()),
            ],
            (_, Some(r), false) => vec![r],
            // XOAUTH2 failures come as a challenge with details: answer
            // it with an empty line so the server sends its NO.
            (_, _, _) => Vec::new(),
        };
        answers.reverse();
        let tag = format!("a{} ", self.tag);
        let mut untagged = 0u64;
        let mut challenges = 0;
        loop {
            let resp = self
                .r
                .read_dropping(&mut untagged, MAX_UNTAGGED)
                .map_err(|e| self.read_err(e, &what))?;
            if resp.text.starts_with(b"+") {
                challenges += 1;
                if challenges > MAX_CHALLENGES {
                    return Err(self.err(
                        Kind::Unavailable,
                        &what,
                        "the server keeps sending challenges",
                    ));
                }
                let ans = answers.pop().unwrap_or_default();
                self.r.transcript.sent_secret("");
                self.write_raw(format!("{ans}\r\n").as_bytes())?;
                continue;
            }
            if resp.text.starts_with(tag.as_bytes()) {
                let rest = printable(&resp.text[tag.len()..]);
                if rest.to_ascii_uppercase().starts_with("OK") {
                    self.note_caps(&rest);
                    return Ok(());
                }
                return Err(self.err(Kind::Unavailable, &what, format!("the server said: {rest}")));
            }
            if is_bye(&resp.text) {
                return Err(self.read_err(ReadError::Bye(printable(&resp.text)), &what));
            }
        }
    }

    /// SELECT `folder` (read-write: flags and deletions need it).
    pub fn select(&mut self, folder: &str) -> Result<Selected> {
        let mut sel = Selected {
            uidvalidity: 0,
            exists: 0,
            uidnext: None,
        };
        self.command_each(&format!("SELECT {}", quote(folder)), &mut |text| {
            // Only the head of a line carries what SELECT tells.
            let head = &text[..text.len().min(256)];
            let t = String::from_utf8_lossy(head).to_ascii_uppercase();
            let words: Vec<&str> = t.split_whitespace().take(3).collect();
            if words.len() >= 3 && words[2] == "EXISTS" {
                sel.exists = words[1].parse().unwrap_or(0);
            }
            if let Some(v) = bracket_number(&t, "[UIDVALIDITY ") {
                sel.uidvalidity = v;
            }
            if let Some(v) = bracket_number(&t, "[UIDNEXT ") {
                sel.uidnext = Some(v);
            }
        })?;
        self.selected = Some(folder.to_string());
        Ok(sel)
    }

    /// `UID SEARCH criteria`: the UIDs, ascending (at most [`MAX_UIDS`]).
    pub fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>> {
        let mut uids = Vec::new();
        let mut too_many = false;
        self.command_each(&format!("UID SEARCH {criteria}"), &mut |text| {
            if too_many {
                return;
            }
            let t = String::from_utf8_lossy(text);
            let mut w = t.split_whitespace();
            if w.next() == Some("*") && w.next().is_some_and(|s| s.eq_ignore_ascii_case("SEARCH")) {
                for n in w.filter_map(|n| n.parse::<u32>().ok()) {
                    uids.push(n);
                    // Repeated lines cannot grow the list past the cap:
                    // duplicates go first, then a real excess is an error.
                    if uids.len() >= 2 * MAX_UIDS {
                        uids.sort_unstable();
                        uids.dedup();
                        if uids.len() > MAX_UIDS {
                            too_many = true;
                            return;
                        }
                    }
                }
            }
        })?;
        if too_many {
            return Err(self.err(
                Kind::Unavailable,
                "UID SEARCH",
                format!("the server reported more than {MAX_UIDS} messages in one folder"),
            ));
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// The sizes (RFC822.SIZE) the server claims for `uids`, as (uid, size)
    /// in UID order; UIDs not asked for are ignored.
    pub fn uid_sizes(&mut self, uids: &[u32]) -> Result<Vec<(u32, u64)>> {
        let wanted: BTreeSet<u32> = uids.iter().copied().collect();
        let mut out = std::collections::BTreeMap::new();
        for chunk in uids.chunks(5000) {
            self.command_each(
                &format!("UID FETCH {} (RFC822.SIZE)", uid_set(chunk)),
                &mut |text| {
                    let t = String::from_utf8_lossy(text).to_ascii_uppercase();
                    if let (Some(uid), Some(size)) =
                        (item_number(&t, "UID "), item_number(&t, "RFC822.SIZE "))
                        && let Ok(uid) = u32::try_from(uid)
                        && wanted.contains(&uid)
                    {
                        out.insert(uid, size);
                    }
                },
            )?;
        }
        Ok(out.into_iter().collect())
    }

    /// Fetch the messages `uids` with one `UID FETCH` (BODY.PEEK[], so no
    /// \Seen is set) and hand each event to `f`, in the order the server
    /// sends them (see [`Imap::uid_fetch_read`]).
    pub fn uid_fetch(
        &mut self,
        uids: &[u32],
        limits: FetchLimits,
        f: &mut dyn FnMut(Fetched),
    ) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let tag = self.uid_fetch_send(uids)?;
        self.uid_fetch_read(tag, uids, limits, f)
    }

    /// Send `UID FETCH uids (UID BODY.PEEK[])` without waiting: the server
    /// streams the messages while we store the previous batch. Returns the
    /// command's tag for [`Imap::uid_fetch_read`], which must come before
    /// any other command is sent.
    pub fn uid_fetch_send(&mut self, uids: &[u32]) -> Result<u32> {
        self.send(
            &format!("UID FETCH {} (UID BODY.PEEK[])", uid_set(uids)),
            None,
        )?;
        Ok(self.tag)
    }

    /// Read the answer to the FETCH sent as `tag` for `uids`, one
    /// [`Fetched`] at a time, holding no more than `limits` allow. A UID the
    /// server no longer has is simply absent; one not asked for comes as
    /// [`Fetched::Unrequested`] and is never a message.
    pub fn uid_fetch_read(
        &mut self,
        tag: u32,
        uids: &[u32],
        limits: FetchLimits,
        f: &mut dyn FnMut(Fetched),
    ) -> Result<()> {
        // The command went out before the previous batch was stored: its
        // answer's exchange starts now, and again after each message asked
        // for (a fresh budget per message, so a slow but honest server
        // passes; responses not asked for earn none, so a drip cannot).
        self.r.get_mut().get_mut().arm();
        let mut answer = FetchAnswer::new(tag, uids, limits);
        loop {
            let ev = answer
                .next(&mut self.r)
                .map_err(|e| self.read_err(e, "UID FETCH"))?;
            match ev {
                None => return Ok(()),
                Some(ev @ Fetched::Unrequested(_)) => f(ev),
                Some(ev) => {
                    self.r.get_mut().get_mut().arm();
                    f(ev);
                }
            }
        }
    }

    /// Add `flags` (e.g. `\Seen`, `\Deleted`) to `uids`, silently.
    pub fn uid_add_flags(&mut self, uids: &[u32], flags: &str) -> Result<()> {
        for chunk in uids.chunks(5000) {
            self.command(&format!(
                "UID STORE {} +FLAGS.SILENT ({flags})",
                uid_set(chunk)
            ))?;
        }
        Ok(())
    }

    /// Remove `uids` from the selected folder: \Deleted, then UID EXPUNGE
    /// (UIDPLUS), else EXPUNGE (which also removes other \Deleted messages,
    /// as any IMAP client's expunge does).
    pub fn delete(&mut self, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.uid_add_flags(uids, "\\Deleted")?;
        if self.has("UIDPLUS") {
            for chunk in uids.chunks(5000) {
                self.command(&format!("UID EXPUNGE {}", uid_set(chunk)))?;
            }
        } else {
            self.command("EXPUNGE")?;
        }
        Ok(())
    }

    /// Wait with IDLE until the selected folder changes or `max` passes
    /// (then NOOP-style end); returns true when new mail may be there.
    pub fn idle(&mut self, max: Duration) -> Result<bool> {
        if !self.has("IDLE") {
            std::thread::sleep(max.min(Duration::from_secs(60)));
            return Ok(true);
        }
        self.send("IDLE", None)?;
        let mut untagged = 0u64;
        let first = self.read_plain(&mut untagged)?;
        if !first.text.starts_with(b"+") {
            let t = printable(&first.text);
            return Err(self.err(Kind::Unavailable, "IDLE", format!("the server said: {t}")));
        }
        let deadline = Instant::now() + max;
        let mut changed = false;
        let old = self.r.get_ref().get_ref().idle();
        while !changed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.r
                .get_mut()
                .get_mut()
                .set_idle(left.min(Duration::from_secs(60)));
            match self.read_plain(&mut untagged) {
                Ok(r) => {
                    let head = &r.text[..r.text.len().min(256)];
                    let t = String::from_utf8_lossy(head).to_ascii_uppercase();
                    if t.contains(" EXISTS") || t.contains(" RECENT") {
                        changed = true;
                    }
                    if is_bye(&r.text) {
                        self.r.get_mut().get_mut().set_idle(old);
                        return Err(self.err(Kind::Temporary, "IDLE", printable(&r.text)));
                    }
                }
                // A read timeout is the normal way out of a quiet IDLE
                // (servers send whole lines, so none was cut); anything
                // else ends it.
                Err(_) if self.timed_out => self.timed_out = false,
                Err(e) => {
                    self.r.get_mut().get_mut().set_idle(old);
                    return Err(e);
                }
            }
        }
        self.r.get_mut().get_mut().set_idle(old);
        self.r.transcript.sent(b"DONE\r\n");
        self.write_raw(b"DONE\r\n")?;
        self.finish_tag(self.tag, "IDLE", &mut |_| {})?;
        Ok(changed)
    }

    /// LOGOUT and close (errors ignored: the work is done).
    pub fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }
}

/// `{N}` at the end of a line (before CRLF): the size of the literal that
/// follows. Braces holding a word that is not a number (`{-5}`, `{1x2}`,
/// more digits than any size) are an error: read as text they would make
/// the literal's bytes pass for responses. Braces around nothing or around
/// words with spaces are text.
fn literal_size(line: &[u8]) -> std::result::Result<Option<u64>, &'static str> {
    let Some(l) = line.strip_suffix(b"\n") else {
        return Ok(None);
    };
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let Some(l) = l.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = l.iter().rposition(|&c| c == b'{') else {
        return Ok(None);
    };
    let inner = &l[open + 1..];
    let digits = inner.strip_suffix(b"+").unwrap_or(inner);
    if inner.is_empty() || inner.iter().any(|c| c.is_ascii_whitespace()) {
        return Ok(None);
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err("a literal size that is not a number");
    }
    if digits.len() > 12 {
        return Err("literal too large");
    }
    // At most 12 ASCII digits: always a valid u64.
    Ok(std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok()))
}

/// Does this response start `* N FETCH `?
fn is_fetch(text: &[u8]) -> bool {
    let Some(rest) = text.strip_prefix(b"* ") else {
        return false;
    };
    let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    n > 0
        && rest
            .get(n..n + 7)
            .is_some_and(|w| w.eq_ignore_ascii_case(b" FETCH "))
}

/// Does this line (ending in `{N}` CRLF) announce the literal of `BODY[]`?
fn ends_with_body_item(line: &[u8]) -> bool {
    let Some(open) = line.iter().rposition(|&c| c == b'{') else {
        return false;
    };
    let before = line[..open].trim_ascii_end();
    before.len() >= 6 && before[before.len() - 6..].eq_ignore_ascii_case(b"BODY[]")
}

/// Is this an untagged BYE?
fn is_bye(text: &[u8]) -> bool {
    text.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"* BYE"))
}

/// An IMAP quoted string at the start of `b` (after spaces), unescaped;
/// `None` for NIL or anything else.
fn quoted(b: &[u8]) -> Option<Vec<u8>> {
    let b = b.trim_ascii_start().strip_prefix(b"\"")?;
    let mut out = Vec::new();
    let mut it = b.iter();
    while let Some(&c) = it.next() {
        match c {
            b'"' => return Some(out),
            b'\\' => out.push(*it.next()?),
            c => out.push(c),
        }
    }
    None
}

/// Server text fit for a terminal: lossy UTF-8, trailing CRLF removed,
/// every other control character escaped (`\x1b`), so a peer can neither
/// move the cursor nor retitle the window through our messages.
pub fn printable(b: &[u8]) -> String {
    let t = String::from_utf8_lossy(b);
    crate::proto::transcript::printable(t.trim_end_matches(['\r', '\n'])).into_owned()
}

/// The number after `[NAME ` in a response code.
fn bracket_number(t: &str, key: &str) -> Option<u32> {
    let i = t.find(key)?;
    let rest = &t[i + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The number after a FETCH item name (`UID `, `RFC822.SIZE `), matched
/// as a whole item (after `(` or a space).
fn item_number(t: &str, key: &str) -> Option<u64> {
    let mut from = 0;
    while let Some(i) = t[from..].find(key) {
        let at = from + i;
        let ok = at > 0 && matches!(t.as_bytes()[at - 1], b'(' | b' ');
        let rest = &t[at + key.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if ok && end > 0 {
            return rest[..end].parse().ok();
        }
        from = at + key.len();
    }
    None
}

/// The UID of a FETCH response: its `UID` item, when every `UID` item in
/// it agrees (a response naming two UIDs belongs to neither).
fn the_uid(t: &str) -> Option<u32> {
    let mut uid = None;
    let mut from = 0;
    while let Some(i) = t[from..].find("UID ") {
        let at = from + i;
        from = at + 4;
        if at == 0 || !matches!(t.as_bytes()[at - 1], b'(' | b' ') {
            continue;
        }
        let rest = &t[at + 4..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if end == 0 {
            continue;
        }
        let u: u32 = rest[..end].parse().ok()?;
        if uid.is_some_and(|v| v != u) {
            return None;
        }
        uid = Some(u);
    }
    uid
}

/// An IMAP quoted string (backslash and quote escaped); control characters
/// cannot be quoted and are dropped, so a name can never end a command.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            '\r' | '\n' | '\0' => {}
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// A compact UID set: ascending UIDs as `1:5,7,9:12`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 7, 9, 10]), "1:3,5,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn literals_and_items_parse() {
        assert_eq!(
            literal_size(b"* 1 FETCH (UID 4 BODY[] {123}\r\n"),
            Ok(Some(123))
        );
        assert!(literal_size(b"* 1 FETCH (UID 4 BODY[] {12x}\r\n").is_err());
        assert_eq!(literal_size(b"a1 OK done\r\n"), Ok(None));
        assert_eq!(literal_size(b"* OK [ALERT] {see below}\r\n"), Ok(None));
        let t = "* 3 FETCH (RFC822.SIZE 99 UID 12)";
        assert_eq!(item_number(t, "UID "), Some(12));
        assert_eq!(item_number(t, "RFC822.SIZE "), Some(99));
        assert_eq!(item_number("* 3 FETCH (XUID 5)", "UID "), None);
        assert_eq!(the_uid("* 3 FETCH (XUID 5 UID 4 FLAGS () UID 4)"), Some(4));
        assert_eq!(the_uid("* 3 FETCH (UID 4 UID 5)"), None);
        assert_eq!(the_uid("* 3 FETCH (\u{e9}UID 4 UID 99999999999)"), None);
        assert_eq!(
            bracket_number("* OK [UIDVALIDITY 1234] x", "[UIDVALIDITY "),
            Some(1234)
        );
        assert_eq!(quote("a\"b\\c\r\n"), "\"a\\\"b\\\\c\"");
    }

    /// The events of one FETCH answer for `uids` read from `wire`.
    fn answer(
        wire: impl Read,
        uids: &[u32],
        limits: FetchLimits,
    ) -> (Vec<Fetched>, Option<ReadError>) {
        let mut r = Reader::new(BufReader::with_capacity(7, wire));
        let mut a = FetchAnswer::new(1, uids, limits);
        let mut evs = Vec::new();
        loop {
            match a.next(&mut r) {
                Ok(Some(ev)) => evs.push(ev),
                Ok(None) => return (evs, None),
                Err(e) => return (evs, Some(e)),
            }
        }
    }

    fn protocol(e: Option<ReadError>) -> String {
        match e {
            Some(ReadError::Protocol(m)) => m,
            other => panic!("not a protocol error: {other:?}"),
        }
    }

    #[test]
    fn literal_sizes_that_are_not_numbers_are_protocol_errors() {
        for bad in ["{-5}", "{1x2}", "{+}", "{9999999999999}"] {
            let wire = format!("* 1 FETCH (UID 1 BODY[] {bad}\r\nhello\r\n)\r\na1 OK\r\n");
            let (evs, e) = answer(wire.as_bytes(), &[1], FetchLimits::default());
            assert!(evs.is_empty(), "{bad}");
            assert!(protocol(e).contains("literal"), "{bad}");
        }
        // Larger than anything read at all, though a number.
        let wire = b"* 1 FETCH (UID 1 BODY[] {3000000000}\r\n";
        let (_, e) = answer(&wire[..], &[1], FetchLimits::default());
        assert!(protocol(e).contains("literal too large"));
    }

    #[test]
    fn a_huge_literal_is_read_past_not_held() {
        let size = 20_000_000u64;
        let wire = b"* 1 FETCH (UID 1 BODY[] {20000000}\r\n"
            .chain(std::io::repeat(b'x').take(size))
            .chain(&b")\r\n* 2 FETCH (UID 2 BODY[] {2}\r\nok)\r\na1 OK done\r\n"[..]);
        let limits = FetchLimits {
            message: 1024,
            ..FetchLimits::default()
        };
        let (evs, e) = answer(wire, &[1, 2], limits);
        assert!(e.is_none(), "{e:?}");
        assert_eq!(
            evs,
            [
                Fetched::TooLarge(1, size),
                Fetched::Message(2, b"ok".to_vec())
            ]
        );
        // Not asked for at all: read past too, and counted.
        let wire = b"* 1 FETCH (UID 1 X-JUNK {20000000}\r\n"
            .chain(std::io::repeat(b'x').take(size))
            .chain(&b")\r\na1 OK done\r\n"[..]);
        let limits = FetchLimits {
            untagged: 1 << 20,
            ..FetchLimits::default()
        };
        let (evs, e) = answer(wire, &[1], limits);
        assert!(evs.is_empty());
        assert!(protocol(e).contains("not asked for"));
    }

    #[test]
    fn only_uids_asked_for_become_messages_and_each_once() {
        let wire = concat!(
            "* 1 FETCH (UID 1 BODY[] {2}\r\nm1)\r\n",
            "* 9 FETCH (UID 100 BODY[] {4}\r\nm100)\r\n",
            "* 1 FETCH (UID 1 BODY[] {5}\r\nagain)\r\n",
            "* 3 FETCH (BODY[] {4}\r\nnone)\r\n",
            "* 2 FETCH (BODY[] {2}\r\nm2 UID 2)\r\n",
            "* 4 FETCH (BODY[] {2}\r\nm4 UID 4)\r\n",
            "* 5 FETCH (FLAGS (\\Seen) UID 5)\r\n",
            "* 6 FETCH (UID 6 BODY[] \"a \\\"q\\\" b\")\r\n",
            "* 7 FETCH (UID 7 BODY[] NIL)\r\n",
            "* 8 FETCH (UID 2 UID 3 BODY[] {2}\r\nm3)\r\n",
            "* 9 FETCH (X \u{ff}\u{fe}\u{fd}\u{fc} UID 3 BODY[] \"q\")\r\n",
            "a1 OK done\r\n"
        );
        let (evs, e) = answer(wire.as_bytes(), &[1, 2, 3, 5, 6, 7], FetchLimits::default());
        assert!(e.is_none(), "{e:?}");
        assert_eq!(
            evs,
            [
                Fetched::Message(1, b"m1".to_vec()),
                Fetched::Unrequested(Some(100)),
                Fetched::Unrequested(Some(1)),
                Fetched::Unrequested(None),
                Fetched::Message(2, b"m2".to_vec()),
                Fetched::Unrequested(Some(4)),
                Fetched::Message(6, b"a \"q\" b".to_vec()),
                Fetched::Unreadable(7),
                Fetched::Unrequested(None),
                Fetched::Message(3, b"q".to_vec()),
            ]
        );
    }

    #[test]
    fn invalid_utf_8_does_not_shift_where_an_inline_body_is_cut() {
        let wire = b"* 9 FETCH (X \xff\xfe\xfd\xfc\xfb\xfa\xf9 UID 3 BODY[] \"q\")\r\na1 OK\r\n";
        let (evs, e) = answer(&wire[..], &[3], FetchLimits::default());
        assert!(e.is_none(), "{e:?}");
        assert_eq!(evs, [Fetched::Message(3, b"q".to_vec())]);
    }

    #[test]
    fn the_batch_budget_counts_bytes_received() {
        let wire = concat!(
            "* 1 FETCH (UID 1 BODY[] {8}\r\n12345678)\r\n",
            "* 2 FETCH (UID 2 BODY[] {8}\r\n12345678)\r\n",
            "* 3 FETCH (UID 3 BODY[] \"12345678\")\r\n",
            "* 4 FETCH (UID 4 BODY[] {2}\r\n12)\r\n",
            "a1 OK done\r\n"
        );
        let limits = FetchLimits {
            batch: 10,
            ..FetchLimits::default()
        };
        let (evs, e) = answer(wire.as_bytes(), &[1, 2, 3, 4], limits);
        assert!(e.is_none(), "{e:?}");
        assert_eq!(
            evs,
            [
                Fetched::Message(1, b"12345678".to_vec()),
                Fetched::Deferred(2),
                Fetched::Deferred(3),
                Fetched::Message(4, b"12".to_vec()),
            ]
        );
    }

    #[test]
    fn floods_long_lines_refusals_and_ends_are_errors() {
        // Untagged lines without end.
        let flood = b"* 1 RECENT\r\n".repeat(10_000);
        let limits = FetchLimits {
            untagged: 64 << 10,
            ..FetchLimits::default()
        };
        let (_, e) = answer(&flood[..], &[1], limits);
        assert!(protocol(e).contains("not asked for"));
        // One line longer than the text cap.
        let mut r = Reader::new(&b"* OK xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"[..])
            .max_text(16);
        let e = r.read_dropping(&mut 0, u64::MAX).err();
        assert!(protocol(e).contains("longer than"));
        // Literals of one response cannot add up past the text cap either.
        let many = b"* 1 FETCH (X {1}\r\nx".repeat(1000);
        let mut r = Reader::new(&many[..]).max_text(4096);
        assert!(protocol(r.read_dropping(&mut 0, u64::MAX).err()).contains("longer than"));
        let (_, e) = answer(&b"a1 NO \x1b[31mno\r\n"[..], &[1], FetchLimits::default());
        assert!(matches!(e, Some(ReadError::Refused(t)) if t == "NO \\u{1b}[31mno"));
        let (_, e) = answer(&b"* BYE going\r\n"[..], &[1], FetchLimits::default());
        assert!(matches!(e, Some(ReadError::Bye(_))));
        let (_, e) = answer(
            &b"* 1 FETCH (UID 1 BODY[] {10}\r\nshort"[..],
            &[1],
            FetchLimits::default(),
        );
        assert!(matches!(e, Some(ReadError::Closed(_))));
        let (_, e) = answer(&b""[..], &[1], FetchLimits::default());
        assert!(matches!(e, Some(ReadError::Closed(_))));
    }

    #[test]
    fn server_text_is_printable() {
        assert_eq!(
            printable(b"NO \x1b]0;x\x07 ok\r\n"),
            "NO \\u{1b}]0;x\\u{7} ok"
        );
        assert_eq!(
            printable("caf\u{e9} \u{9b}".as_bytes()),
            "caf\u{e9} \\u{9b}"
        );
    }
}
