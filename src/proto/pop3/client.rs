//! The POP3 client session over any [`Exchange`] stream ([`Pop3`]):
//! the greeting, CAPA, STLS, the logins, STAT, LIST, UIDL, TOP, pipelined
//! RETR and DELE in bounded windows, QUIT; with the guarantees the module
//! docs of [`crate::proto::pop3`] list (nothing deleted by accident, no
//! plain-text fallback, secrets off the transcript, memory bounded by the
//! caller's limits).
//!
//! Only connecting and the STLS upgrade need the network stream
//! ([`Pop3::connect`], in `impl Pop3<tls::Stream>`); everything else runs
//! over an in-memory script as well, which is how it is tested.

use std::io::BufReader;
use std::time::Duration;

use crate::exit::{Error, Kind, Origin, Result};
use crate::proto::Exchange;
use crate::proto::pop3::response::{
    ReadError, capa_line, first_word, malformed, number_and_rest, read_listing,
};
use crate::proto::pop3::{
    Capa, MAX_MESSAGE_LINE, MAX_STATUS_LINE, Status, apop_digest, apop_timestamp, err_kind,
    parse_status, printable, read_line_into, read_multiline_limited,
};
use crate::proto::sasl::{self, Mechanism, Secret};
use crate::proto::tls::{self, Stream, TlsMode, TlsOptions};
use crate::proto::transcript::Transcript;

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

/// One POP3 session over a stream `S` (the network's [`Stream`] unless
/// said otherwise). Dropping it without [`Pop3::quit`] closes the
/// connection and deletes nothing.
pub struct Pop3<S: Exchange = Stream> {
    r: BufReader<S>,
    host: String,
    /// `host:port` for error contexts.
    hp: String,
    capa: Capa,
    timestamp: Option<String>,
    transcript: Transcript,
    /// Set after an error that may leave the stream out of step.
    broken: bool,
    /// The server accepted `UTF8` (RFC 6856).
    utf8: bool,
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
        mut transcript: Transcript,
    ) -> Result<Pop3> {
        let hp = tls::display_host_port(host, port);
        // tls::open in two steps, so a handshake error names the port too.
        let tcp = tls::connect(host, port, timeout)?;
        let stream = match mode {
            TlsMode::Implicit => {
                let s =
                    tls::handshake(tcp, host, tls).map_err(|e| e.within(format!("POP3 {hp}")))?;
                transcript.note("TLS established");
                s
            }
            TlsMode::Starttls | TlsMode::None => Stream::plain(tcp),
        };
        let mut p = Pop3::start(stream, host, port, transcript)?;
        if mode == TlsMode::Starttls {
            p = p.starttls(tls)?;
            p.read_capa()?;
        }
        Ok(p)
    }

    /// STLS (see [`Pop3::stls_request`]), the handshake, and a session
    /// that has forgotten what it learnt in plain text.
    fn starttls(mut self, opts: &TlsOptions) -> Result<Pop3> {
        self.stls_request()?;
        // The read buffer is empty (checked by stls_request), so nothing
        // is lost by unwrapping the stream for the handshake.
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
}

impl<S: Exchange> Pop3<S> {
    /// Start a session over a connected `stream` to `host`:`port` (the
    /// names are for messages): read the greeting and ask CAPA (an `-ERR`
    /// is fine: old servers). No TLS upgrade: that is [`Pop3::connect`]'s.
    pub fn start(stream: S, host: &str, port: u16, transcript: Transcript) -> Result<Pop3<S>> {
        let mut p = Pop3 {
            r: BufReader::with_capacity(READ_BUFFER, stream),
            host: host.to_string(),
            hp: tls::display_host_port(host, port),
            capa: Capa::default(),
            timestamp: None,
            transcript,
            broken: false,
            utf8: false,
            line: Vec::with_capacity(512),
            out: Vec::with_capacity(4096),
        };
        let greeting = match p.read_status("greeting")? {
            Status::Ok(text) => text,
            Status::Err(text) => {
                return Err(p.server_error("greeting", &text, Kind::Temporary));
            }
            Status::Cont(_) => return Err(p.protocol_error("greeting", "a continuation line")),
        };
        p.timestamp = apop_timestamp(&greeting);
        p.read_capa()?;
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

    /// The plain-text half of STLS: refuse a server that does not offer it,
    /// send STLS, take its `+OK`, and refuse anything that came with it
    /// (the handshake is [`Pop3::connect`]'s, over the network stream).
    fn stls_request(&mut self) -> Result<()> {
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
            )
            .from_origin(Origin::Tls));
        }
        Ok(())
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
        // RFC 6856: UTF8 belongs to the AUTHORIZATION state. A server that
        // offers it may otherwise rewrite a message whose header holds raw
        // UTF-8 (Courier sends a notice instead of the message): we store
        // what the server holds, byte for byte, so we always ask.
        self.utf8_mode()?;
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
                self.capa.utf8 |= before.utf8;
            }
        }
        // A server that took UTF8 only after the login gets it now.
        self.utf8_mode()?;
        Ok(())
    }

    /// Did the server accept `UTF8`?
    pub fn utf8(&self) -> bool {
        self.utf8
    }

    /// Send `UTF8` when it is offered and not yet accepted; a refusal is
    /// not an error (the login or a later try may still succeed).
    fn utf8_mode(&mut self) -> Result<()> {
        if self.utf8 || !self.capa.utf8 {
            return Ok(());
        }
        self.simple("UTF8")?;
        match self.read_status("UTF8")? {
            Status::Ok(_) => self.utf8 = true,
            Status::Err(_) => {}
            Status::Cont(_) => return Err(self.protocol_error("UTF8", "a continuation line")),
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
        // Best effort close_notify; the server has answered already.
        self.r.get_mut().close();
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
        Error::protocol(
            self.ctx(cmd),
            format!("unexpected response from the server: {what}"),
        )
    }

    /// An `-ERR`: its response code decides the kind (see
    /// [`err_kind`]); a refused login is of [`Origin::Auth`], any other
    /// refusal keeps no origin (its kind says what it means).
    fn server_error(&self, cmd: &str, text: &str, default: Kind) -> Error {
        let kind = err_kind(text, default);
        let e = Error::new(
            kind,
            self.ctx(cmd),
            format!("server said: -ERR {}", printable(text)),
        );
        if kind == Kind::Auth {
            e.from_origin(Origin::Auth)
        } else {
            e
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::script::{Script, Sent, Sink};
    use std::io::{self, BufRead, Write};
    use std::net::TcpListener;

    // --- scripted servers in memory, for what a real server never does:
    // refuse STLS, inject bytes, break off, send garbage. Each segment
    // arrives whole; what the client sent is checked after the dialogue.

    /// A session with the server `script` (greeting and CAPA read), and
    /// the record of what the client sends.
    fn open(script: Script, t: Transcript) -> (Result<Pop3<Script>>, Sent) {
        let sent = script.sent();
        (Pop3::start(script, "127.0.0.1", 110, t), sent)
    }

    const GREET: &[u8] = b"+OK hi <1.2@x>\r\n";
    const CAPA_PIPE: &[u8] = b"+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n";

    #[test]
    fn utf8_is_asked_for_before_the_login_when_offered() {
        // Courier: UTF8 in the AUTHORIZATION state.
        let (p, sent) = open(
            Script::segments(&[
                GREET,
                b"+OK\r\nUSER\r\nUIDL\r\nUTF8 USER\r\n.\r\n",
                b"+OK UTF8 enabled\r\n",
                b"+OK\r\n",
                b"+OK\r\n",
                b"+OK\r\nUIDL\r\n.\r\n",
            ]),
            Transcript::off(),
        );
        let mut p = p.unwrap();
        p.login("u", &Secret::new("pw"), Login::User).unwrap();
        assert!(p.utf8());
        assert_eq!(
            sent.lines(),
            vec!["CAPA", "UTF8", "USER u", "PASS pw", "CAPA"]
        );
        // A refusal before the login is tried again after it.
        let (p, sent) = open(
            Script::segments(&[
                GREET,
                b"+OK\r\nUSER\r\nUTF8\r\n.\r\n",
                b"-ERR not yet\r\n",
                b"+OK\r\n",
                b"+OK\r\n",
                b"+OK\r\nUIDL\r\n.\r\n",
                b"+OK\r\n",
            ]),
            Transcript::off(),
        );
        let mut p = p.unwrap();
        p.login("u", &Secret::new("pw"), Login::User).unwrap();
        assert!(p.utf8());
        assert_eq!(
            sent.lines(),
            vec!["CAPA", "UTF8", "USER u", "PASS pw", "CAPA", "UTF8"]
        );
        // Not offered: not sent.
        let (p, sent) = open(Script::segments(&[GREET, CAPA_PIPE]), Transcript::off());
        let mut p = p.unwrap();
        let _ = p.login("u", &Secret::new("pw"), Login::User);
        assert!(!sent.lines().iter().any(|l| l == "UTF8"));
    }

    #[test]
    fn required_stls_not_offered_sends_nothing_more() {
        let (p, sent) = open(Script::segments(&[GREET, CAPA_PIPE]), Transcript::off());
        let e = p.unwrap().stls_request().unwrap_err();
        assert_eq!(e.kind(), Kind::Unavailable);
        assert!(e.to_string().contains("STLS"), "{e}");
        assert_eq!(sent.lines(), vec!["CAPA"]);
    }

    #[test]
    fn refused_stls_and_injected_bytes_are_errors() {
        let (p, sent) = open(
            Script::segments(&[&b"+OK hi\r\n"[..], b"-ERR no capa\r\n", b"-ERR not now\r\n"]),
            Transcript::off(),
        );
        let e = p.unwrap().stls_request().unwrap_err();
        assert_eq!(e.kind(), Kind::Unavailable, "{e}");
        assert_eq!(sent.lines(), vec!["CAPA", "STLS"]);

        let (p, sent) = open(
            Script::segments(&[
                &b"+OK hi\r\n"[..],
                b"+OK\r\nSTLS\r\n.\r\n",
                b"+OK go ahead\r\n+OK injected\r\n",
            ]),
            Transcript::off(),
        );
        let mut p = p.unwrap();
        let e = p.stls_request().unwrap_err();
        assert!(e.to_string().contains("before the TLS handshake"), "{e}");
        assert_eq!((e.kind(), e.origin()), (Kind::Temporary, Origin::Tls));
        assert!(p.is_broken());
        assert_eq!(sent.lines(), vec!["CAPA", "STLS"]);
    }

    #[test]
    fn broken_off_message_breaks_the_session_and_quit_sends_nothing() {
        let (p, sent) = open(
            Script::segments(&[
                GREET,
                b"-ERR\r\n",
                b"+OK\r\n",
                b"+OK\r\n",
                b"+OK 100 octets\r\nSubject: cut\r\n\r\nhalf a mess",
            ]),
            Transcript::off(),
        );
        let mut p = p.unwrap();
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
        assert_eq!((e.kind(), e.origin()), (Kind::Temporary, Origin::Network));
        assert_eq!(
            e.to_string(),
            "POP3 127.0.0.1:110: RETR 1: the server closed the connection"
        );
        let e = p.dele_many(&[1]).unwrap_err();
        assert!(e.to_string().contains("unusable"), "{e}");
        assert!(p.quit().is_err());
        assert_eq!(sent.lines(), vec!["CAPA", "USER u", "PASS pw", "RETR 1"]);
    }

    #[test]
    fn callback_error_stops_drains_and_keeps_the_session() {
        let sink = Sink::default();
        let (p, sent) = open(
            Script::segments(&[
                GREET,
                CAPA_PIPE,
                b"+OK\r\n",
                CAPA_PIPE,
                b"+OK\r\none\r\n.\r\n+OK\r\ntwo\r\n.\r\n-ERR [SYS/TEMP] gone\r\n",
                b"+OK\r\n",
                b"-ERR [SYS/TEMP] could not delete\r\n",
            ]),
            Transcript::to(Box::new(sink.clone()), ""),
        );
        let mut p = p.unwrap();
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
        assert_eq!(
            sent.lines(),
            [
                "CAPA",
                "AUTH PLAIN AHUAaHVudGVyMg==",
                "CAPA",
                "RETR 1",
                "RETR 2",
                "RETR 3",
                "NOOP",
                "QUIT"
            ]
        );
        // The three RETRs went out in one write (pipelined).
        assert!(sent.text().contains("RETR 1\r\nRETR 2\r\nRETR 3\r\n"));
        let t = sink.text();
        assert!(t.contains("C: AUTH PLAIN <redacted>"), "{t}");
        assert!(
            !t.contains("AHUAaHVudGVyMg") && !t.contains("hunter2"),
            "{t}"
        );
    }

    #[test]
    fn a_message_past_its_limit_breaks_the_session_without_a_quit() {
        let (p, sent) = open(
            Script::segments(&[
                GREET,
                CAPA_PIPE,
                b"+OK\r\n",
                CAPA_PIPE,
                b"+OK\r\none\r\n.\r\n+OK 10 octets\r\n",
                &[b'x'; 4096],
                b"\r\n.\r\n+OK\r\nthree\r\n.\r\n",
            ]),
            Transcript::off(),
        );
        let mut p = p.unwrap();
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
            sent.lines(),
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
        for (reply, kind, origin) in [
            (
                &b"220 smtp.example ESMTP\r\n"[..],
                Kind::Unavailable,
                Origin::Protocol,
            ),
            (b"\xff\xfe\r\n", Kind::Unavailable, Origin::Protocol),
            (
                b"\x1b[2J\x1b]0;x\x07\r\n",
                Kind::Unavailable,
                Origin::Protocol,
            ),
            (b"", Kind::Temporary, Origin::Network),
        ] {
            let (p, sent) = open(Script::segments(&[reply]), Transcript::off());
            let e = p.err().unwrap();
            assert_eq!((e.kind(), e.origin()), (kind, origin), "{e}");
            assert!(!e.to_string().contains(['\x1b', '\x07']), "{e}");
            assert!(e.to_string().contains("127.0.0.1:110: greeting"), "{e}");
            assert!(sent.lines().is_empty());
        }
    }

    #[test]
    fn listings_parse_and_bad_lines_are_errors() {
        let (p, sent) = open(
            Script::segments(&[
                &b"+OK\r\n"[..],
                b"+OK\r\nUIDL\r\n.\r\n",
                b"+OK\r\n",
                b"-ERR [AUTH] nope\r\n",
                b"+OK\r\n",
                b"+OK\r\n",
                b"+OK\r\nUIDL\r\nTOP\r\n.\r\n",
                b"+OK 2 30 extra\r\n",
                b"+OK 2 messages\r\n1 10\r\n2  20 x\r\n.\r\n",
                b"+OK\r\n1 abc\r\n2 d\xe9f\r\n.\r\n",
                b"+OK\r\n1 abc\r\n2 def\r\n.\r\n",
                b"+OK bye\r\n",
            ]),
            Transcript::off(),
        );
        let mut p = p.unwrap();
        let e = p.login("u", &Secret::new("pw"), Login::User).unwrap_err();
        assert_eq!((e.kind(), e.origin()), (Kind::Auth, Origin::Auth));
        assert!(!e.to_string().contains("pw"), "{e}");
        p.login("u", &Secret::new("pw"), Login::User).unwrap();
        assert!(p.capabilities().top);
        assert_eq!(p.stat().unwrap(), (2, 30));
        assert_eq!(p.list().unwrap(), vec![(1, 10), (2, 20)]);
        let e = p.uidl().unwrap_err();
        assert_eq!(
            (e.kind(), e.origin()),
            (Kind::Unavailable, Origin::Protocol)
        );
        assert!(e.to_string().contains("malformed listing line"), "{e}");
        // The listing was read to its end: the session goes on.
        assert_eq!(
            p.uidl().unwrap(),
            vec![(1, "abc".to_string()), (2, "def".to_string())]
        );
        p.quit().unwrap();
        assert_eq!(
            sent.lines(),
            [
                "CAPA", "USER u", "PASS pw", "USER u", "PASS pw", "CAPA", "STAT", "LIST", "UIDL",
                "UIDL", "QUIT"
            ]
        );
    }

    #[test]
    fn line_breaks_in_credentials_are_refused_before_sending() {
        let (p, sent) = open(Script::segments(&[GREET, b"-ERR\r\n"]), Transcript::off());
        let mut p = p.unwrap();
        let e = p
            .login("u\r\nDELE 1", &Secret::new("pw"), Login::User)
            .unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        let e = p
            .login("u", &Secret::new("pw\nx"), Login::User)
            .unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        drop(p);
        assert_eq!(sent.lines(), vec!["CAPA"]);
    }

    #[test]
    fn xoauth2_error_challenge_is_answered_and_plain_as_carries_the_authzid() {
        let sink = Sink::default();
        let (p, sent) = open(
            Script::segments(&[
                GREET,
                b"+OK\r\nSASL PLAIN XOAUTH2\r\n.\r\n",
                b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n",
                b"-ERR [AUTH] invalid token\r\n",
                b"+OK welcome\r\n",
                b"+OK\r\nUIDL\r\n.\r\n",
            ]),
            Transcript::to(Box::new(sink.clone()), ""),
        );
        let mut p = p.unwrap();
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
        let lines = sent.lines();
        assert_eq!(lines[1], format!("AUTH XOAUTH2 {ir}"));
        assert_eq!(lines[2], "");
        let t = sink.text();
        assert!(!t.contains("ya29") && !t.contains(&ir), "{t}");

        let (p, sent) = open(
            Script::segments(&[GREET, b"-ERR\r\n", b"+OK\r\n"]),
            Transcript::off(),
        );
        p.unwrap()
            .login("admin", &Secret::new("pw"), Login::PlainAs("bob"))
            .unwrap();
        let lines = sent.lines();
        let ir = lines[1].strip_prefix("AUTH PLAIN ").unwrap();
        assert_eq!(sasl::unb64(ir).unwrap(), b"bob\0admin\0pw");
    }

    #[test]
    fn a_timeout_keeps_its_io_kind_and_breaks_the_session() {
        let (p, sent) = open(
            Script::segments(&[GREET, CAPA_PIPE]).then_fail(io::ErrorKind::WouldBlock),
            Transcript::off(),
        );
        let mut p = p.unwrap();
        let e = p.noop().unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert_eq!((e.kind(), e.origin()), (Kind::Temporary, Origin::Network));
        assert_eq!(
            e.to_string(),
            "POP3 127.0.0.1:110: NOOP: timed out waiting for the server"
        );
        assert!(p.is_broken());
        assert!(p.quit().is_err());
        assert_eq!(sent.lines(), vec!["CAPA", "NOOP"]);
    }

    #[test]
    fn top_and_the_stream_it_runs_over() {
        let (p, sent) = open(
            Script::segments(&[
                GREET,
                b"+OK\r\nTOP\r\n.\r\n",
                b"+OK\r\nSubject: x\r\n..dot\r\n\r\n.\r\n",
                b"+OK\r\n",
            ])
            .encrypted(),
            Transcript::off(),
        );
        let mut p = p.unwrap();
        assert!(p.is_tls());
        assert_eq!(p.server(), "127.0.0.1:110");
        assert_eq!(p.top(1, 0).unwrap(), b"Subject: x\r\n.dot\r\n\r\n");
        p.quit().unwrap();
        assert_eq!(sent.lines(), vec!["CAPA", "TOP 1 0", "QUIT"]);
    }

    /// The one test on a real socket: the connect path, and a deadline that
    /// only a real clock can show.
    #[test]
    fn a_silent_server_times_out_as_a_temporary_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(GREET).unwrap();
            let mut r = io::BufReader::new(s);
            let mut got = Vec::new();
            let mut line = String::new();
            // Read what the client sends, answer nothing, until it hangs up.
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                got.push(line.trim_end().to_string());
                line.clear();
            }
            got
        });
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
        assert!(e.is_timeout(), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("POP3 127.0.0.1:{port}: CAPA: timed out")),
            "{e}"
        );
        assert_eq!(h.join().unwrap(), vec!["CAPA"]);
    }
}
