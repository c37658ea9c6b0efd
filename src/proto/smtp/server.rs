//! The SMTP/LMTP server side (mail-recv): one session over any stream,
//! beside the client and sharing its [`Reply`] and capability vocabulary.
//!
//! This module owns the protocol only: reading commands and the message,
//! the session's state machine, the limits, STARTTLS and AUTH on the wire,
//! and the Received header. What happens to a recipient and to a message is
//! the caller's [`Backend`]: the server asks it at RCPT (may this address
//! receive?), at AUTH (are these credentials good?) and after the final dot
//! (store this message, durably, now), and answers the client only with
//! what the backend said.
//!
//! Guarantees (each has a test):
//!
//! - **250 after the dot means the backend stored it.** The final reply
//!   (each recipient's, with LMTP) is the backend's [`Backend::deliver`]
//!   answer; an error, a panic-free early EOF or a timeout before the dot
//!   stores nothing and sends no 250.
//! - **One message per DATA.** DATA ends only on CRLF `.` CRLF; a bare LF
//!   or bare CR is normalised to CRLF or refused ([`BareLf`]), never taken
//!   for an end of data, so no smuggling shape stores two messages.
//!   Commands already sent behind the final dot, before its reply, are
//!   never run (421 after the message's own reply; a lone QUIT is fine):
//!   they may be the tail of a message a lax relay did not dot-stuff.
//! - **BDAT reads exactly its octets**, even when the chunk is refused.
//! - **Nothing pipelined before STARTTLS is executed after it**
//!   (CVE-2011-0411): buffered plain-text input is discarded at the
//!   upgrade.
//! - **Bounded**: a command line of more than [`Limits::max_line`] octets
//!   is answered 500 5.5.2 and the session goes on; a message over
//!   [`Limits::max_size`] is read past and refused with 552 5.3.4; at most
//!   [`Limits::max_recipients`] recipients (452 beyond); memory held is at
//!   most the size limit plus a line; every read has a deadline (the
//!   stream's [`Exchange`] pace); after [`Limits::max_errors`] errors the
//!   session ends with 421.
//! - **Message text is never run as commands.** A DATA refused (no
//!   recipient) while more input is already buffered behind it means the
//!   client sent its message without waiting for the 354 (the
//!   "pipelining" smuggling shape): the refusal is sent and the session
//!   ends. A BDAT whose count cannot be read ends the session likewise.
//! - **Replies come only from the server or the backend, made safe**: a
//!   backend reply with a code outside 200..=599 becomes 451 4.3.0, a CR,
//!   LF or other control in its text becomes a space.
//! - **No panic on any bytes** a client sends.
//!
//! Layout: `command` (one command line parsed; address syntax),
//! `session` (the state machine, DATA/BDAT, STARTTLS, AUTH), `io` (the
//! input buffer and pending replies), `received` (the Received header),
//! and the DATA reader in [`super::data::DataReader`]. The streams it runs
//! over in mail-recv are [`crate::proto::tls::ServerStream`] over TCP or
//! [`crate::proto::stdio::Duplex`].
//!
//! Source routes (`<@a,@b:user@dom>`) are accepted syntactically and
//! stripped; the route is handed to the backend in
//! [`Transaction::rcpt_source_route`] (and kept in
//! [`Transaction::mail_source_route`] for MAIL) so its policy can refuse.

use std::net::IpAddr;
use std::time::Duration;

mod command;
mod io;
mod received;
mod session;
#[cfg(test)]
mod tests;

pub use super::Protocol;
use super::reply::Reply;
use crate::exit::Result;
use crate::proto::Exchange;

/// What to do with a bare LF or bare CR inside DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLf {
    /// Turn it into CRLF (the default; it never ends the data).
    Normalize,
    /// Refuse the message with 550 5.6.11 (read to its end, store nothing).
    Reject,
}

/// The session's limits. [`Limits::default`] has the safe defaults
/// (RFC 5321 4.5.3.1 minimums or more).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted, in octets (announced as `SIZE n`).
    pub max_size: u64,
    /// Recipients per transaction (RFC 5321: at least 100).
    pub max_recipients: usize,
    /// Longest command line, CRLF included (RFC 5321: 512).
    pub max_line: usize,
    /// Longest text line in DATA, CRLF included (RFC 5321: 1000); longer
    /// lines are accepted but counted (they are not an end of data).
    pub max_text_line: usize,
    /// More Received headers than this: 554 5.4.6 (a mail loop).
    pub max_received: usize,
    /// Errors (5xx/4xx to commands) before the session ends with 421.
    pub max_errors: u32,
    /// Idle time a read may wait (RFC 5321 server timeout: 5 minutes).
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_size: 35 * 1024 * 1024,
            max_recipients: 100,
            max_line: 512,
            max_text_line: 1000,
            max_received: 100,
            max_errors: 10,
            idle: Duration::from_secs(300),
        }
    }
}

/// How the session is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SMTP or LMTP (LHLO, one reply per recipient after the dot).
    pub protocol: Protocol,
    /// Our host name: the greeting, EHLO reply and the Received `by`.
    pub hostname: String,
    /// The limits.
    pub limits: Limits,
    /// Bare LF / bare CR in DATA.
    pub bare_lf: BareLf,
    /// Offer STARTTLS (the stream can [`Upgrade::start_tls`]).
    pub starttls: bool,
    /// Offer AUTH PLAIN LOGIN, only ever over TLS.
    pub auth: bool,
}

/// The client as the listener or UCSPI environment saw it.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The client's address (None: unknown, e.g. a pipe).
    pub ip: Option<IpAddr>,
    /// The reverse-DNS name when the caller looked it up (TCPREMOTEHOST).
    pub host: Option<String>,
}

/// What TLS the session runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`.
    pub version: String,
    /// `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// What the session knows when a recipient or a message is decided.
#[derive(Debug, Clone)]
pub struct Session {
    /// The client.
    pub peer: Peer,
    /// The HELO/EHLO/LHLO argument, as sent (escaped when shown).
    pub helo: String,
    /// Set after STARTTLS or on an implicit-TLS stream.
    pub tls: Option<TlsInfo>,
    /// The authenticated user, after a successful AUTH.
    pub auth_user: Option<String>,
    /// Which protocol word the Received header carries (RFC 3848/6531):
    /// `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA`, `LMTP`, `UTF8SMTPS`...
    pub with: String,
}

/// One mail transaction: the envelope so far.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// The queue-style id of this transaction (Received `id`, logs).
    pub id: String,
    /// The reverse path without brackets; empty for `<>`.
    pub mail_from: String,
    /// `BODY=8BITMIME` was given.
    pub body_8bit: bool,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// The accepted recipients, in order.
    pub rcpts: Vec<String>,
    /// The source route (`@a,@b`) MAIL FROM carried before the mailbox:
    /// stripped from `mail_from` (RFC 5321 4.1.1.2 says to ignore it).
    pub mail_source_route: Option<String>,
    /// Set only while [`Backend::rcpt`] runs: the source route the client
    /// put before this recipient (`<@a,@b:user@dom>`), stripped from the
    /// `rcpt` argument. A source route never relays: a backend should
    /// refuse such a recipient (550 5.7.1) unless the mailbox is local.
    pub rcpt_source_route: Option<String>,
}

/// A backend's answer to AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Good credentials: 235.
    Ok,
    /// Bad credentials: 535 5.7.8.
    Bad,
    /// Could not check now: 454 4.7.0.
    Temporary,
}

/// What the server asks of its caller. Every answer the client receives
/// about a recipient or a message comes from here.
pub trait Backend {
    /// May `rcpt` (without brackets) receive in this transaction? `Ok` gives
    /// 250 2.1.5; an `Err` reply is sent as is (550 5.1.1, 550 5.7.1, 451).
    fn rcpt(
        &mut self,
        session: &Session,
        tx: &Transaction,
        rcpt: &str,
    ) -> std::result::Result<(), Reply>;

    /// Check credentials (only called over TLS).
    fn auth(&mut self, user: &str, password: &[u8]) -> AuthVerdict;

    /// Store `message` (the Received header first, then the client's bytes
    /// with CRLF line ends as received, un-stuffed) for every recipient of
    /// `tx`, durably, before returning. SMTP: one reply (index 0 is used);
    /// LMTP: one reply per recipient, in order. A 2xx is sent only when the
    /// message is durable.
    fn deliver(&mut self, session: &Session, tx: &Transaction, message: &[u8]) -> Vec<Reply>;

    /// A transaction ended (delivered, refused at DATA or after it, or
    /// reset): `replies` are the final replies sent (empty when the
    /// transaction was abandoned). For `--log-json`; the default does
    /// nothing.
    fn transaction_end(&mut self, _session: &Session, _tx: &Transaction, _replies: &[Reply]) {}
}

/// A stream the server can run over: an [`Exchange`] that may become TLS.
pub trait Upgrade: Exchange + Sized {
    /// Do the server-side TLS handshake on this stream; the caller has
    /// already discarded every plain-text byte it buffered.
    fn start_tls(self) -> Result<Self>;

    /// The TLS parameters when the stream is encrypted.
    fn tls_info(&self) -> Option<TlsInfo>;
}

/// What a session did (for `--log-json` and exit status).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Transactions that ended in at least one 2xx after the dot.
    pub accepted: u32,
    /// Transactions refused after the dot or at DATA.
    pub refused: u32,
    /// The session ended because of a timeout, too many errors or EOF
    /// without QUIT.
    pub aborted: Option<String>,
}

/// Run one session over `stream` until QUIT, EOF, a timeout or too many
/// errors. Errors are only I/O failures of the stream (logged by the
/// caller); protocol errors are answered on the wire.
///
/// Set [`Limits::idle`] as the stream's budget when it has one
/// ([`Exchange::idle`]). A timeout ends the session with `421 4.4.2`
/// (tried), EOF or a lost connection without QUIT with
/// [`Summary::aborted`] set; so do too many errors, a TLS handshake that
/// fails and a client pipelining past a refused DATA.
pub fn serve<S: Upgrade, B: Backend>(
    stream: S,
    settings: &Settings,
    peer: Peer,
    backend: &mut B,
) -> Result<Summary> {
    session::run(stream, settings, peer, backend)
}

/// A reply with one line (`enhanced` empty: none), for backends too:
/// `reply(550, "5.1.1", "no such user")`.
pub fn reply(code: u16, enhanced: &str, text: &str) -> Reply {
    Reply {
        code,
        enhanced: (!enhanced.is_empty()).then(|| enhanced.to_string()),
        lines: vec![text.to_string()],
    }
}
