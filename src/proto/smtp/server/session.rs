//! One server session: the input buffer the commands are read from (so
//! pipelined commands are answered in order, and replies written together
//! before any read that would wait), the state machine, STARTTLS, AUTH,
//! DATA and BDAT, and the hand-over to the [`Backend`].
//!
//! Guarantees (those of [`super`], kept here): nothing buffered before
//! STARTTLS survives it; DATA ends only where [`DataReader`] says; BDAT
//! consumes exactly its count; a DATA refused while more input is already
//! buffered behind it (a client that did not wait for the 354, the
//! pipelining smuggling shape) ends the session, so message text is never
//! run as commands; the input buffer is fixed in size and the message held
//! is at most the size limit.

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::command::{self, Command, Hello, Path};
use super::io::{Io, Line};
use super::{AuthVerdict, Backend, Protocol, Session, Settings, Summary, Transaction, Upgrade};
use super::{Peer, reply};
use crate::exit::{Error, Result};
use crate::proto::smtp::Reply;
use crate::proto::smtp::data::DataReader;

/// The longest AUTH exchange line (RFC 4954 4: at least 12288).
const AUTH_LINE: usize = 12288;

/// Why a session ends.
enum Flow {
    Go,
    Quit,
    Close(String),
}

/// A transaction in progress.
struct Tx {
    t: Transaction,
    /// BDAT chunks so far (CHUNKING): the reader and, once a chunk was
    /// refused, the reply every later chunk gets.
    chunks: Option<DataReader>,
    chunk_error: Option<Reply>,
}

struct Engine<'a, S, B> {
    io: Io<S>,
    settings: &'a Settings,
    backend: &'a mut B,
    session: Session,
    hello: Option<Hello>,
    tx: Option<Tx>,
    errors: u32,
    summary: Summary,
}

/// Is this I/O error the client going away or going silent (ended on the
/// wire, not an error of ours)?
fn peer_gone(e: &io::Error) -> Option<&'static str> {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Some("timeout"),
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Some("connection lost"),
        _ => None,
    }
}

pub(super) fn run<S: Upgrade, B: Backend>(
    mut stream: S,
    settings: &Settings,
    peer: Peer,
    backend: &mut B,
) -> Result<Summary> {
    if stream.idle().is_some() {
        stream.set_idle(settings.limits.idle);
    }
    let tls = stream.tls_info();
    let mut e = Engine {
        io: Io::new(stream, settings.limits.max_line),
        settings,
        backend,
        session: Session {
            peer,
            helo: String::new(),
            tls,
            auth_user: None,
            with: String::new(),
        },
        hello: None,
        tx: None,
        errors: 0,
        summary: Summary::default(),
    };
    let res = e.session_loop();
    e.abandon();
    let mut summary = std::mem::take(&mut e.summary);
    match res {
        Ok(Flow::Quit) | Ok(Flow::Go) => {}
        Ok(Flow::Close(why)) => summary.aborted = Some(why),
        Err(err) => match peer_gone(&err) {
            Some("timeout") => {
                let _ = e.io.queue(b"421 4.4.2 timeout, closing\r\n");
                let _ = e.io.flush();
                summary.aborted = Some("timeout".into());
            }
            Some(why) => summary.aborted = Some(why.into()),
            None => return Err(Error::net("smtp session", &err)),
        },
    }
    if let Some(s) = e.io.stream.as_mut() {
        s.close();
    }
    Ok(summary)
}

impl<S: Upgrade, B: Backend> Engine<'_, S, B> {
    fn lmtp(&self) -> bool {
        self.settings.protocol == Protocol::Lmtp
    }

    fn session_loop(&mut self) -> io::Result<Flow> {
        let word = if self.lmtp() { "LMTP" } else { "ESMTP" };
        let greeting = format!("220 {} {word} postline\r\n", self.settings.hostname);
        self.io.queue(greeting.as_bytes())?;
        loop {
            if self.errors >= self.settings.limits.max_errors {
                self.io.queue(b"421 4.7.0 too many errors, closing\r\n")?;
                self.io.flush()?;
                return Ok(Flow::Close("too many errors".into()));
            }
            let flow = match self.io.line(self.settings.limits.max_line)? {
                Line::Eof => Flow::Close("connection closed without QUIT".into()),
                Line::TooLong => {
                    self.answer(reply(500, "5.5.2", "line too long"))?;
                    Flow::Go
                }
                Line::Text(l) => match command::parse(&l) {
                    Ok(c) => self.command(c)?,
                    Err(r) => {
                        if matches!(l.get(..4), Some(v) if v.eq_ignore_ascii_case(b"BDAT")) {
                            // The octets behind a BDAT whose count cannot
                            // be read cannot be told from commands.
                            self.answer(r)?;
                            self.io.flush()?;
                            return Ok(Flow::Close("BDAT syntax".into()));
                        }
                        self.answer(r)?;
                        Flow::Go
                    }
                },
            };
            match flow {
                Flow::Go => {}
                end => {
                    self.io.flush()?;
                    return Ok(end);
                }
            }
        }
    }

    /// Queue a reply to a command; a 4xx/5xx counts as an error.
    fn answer(&mut self, r: Reply) -> io::Result<()> {
        if r.code >= 400 {
            self.errors += 1;
        }
        self.send(&r)
    }

    fn send(&mut self, r: &Reply) -> io::Result<()> {
        let text = format_reply(r);
        self.io.queue(text.as_bytes())
    }

    /// The `with` word (RFC 3848, RFC 6531) for the session as it is now.
    fn update_with(&mut self) {
        let utf8 = self.tx.as_ref().is_some_and(|t| t.t.smtputf8);
        let base = match (self.lmtp(), self.hello) {
            (true, _) => "LMTP",
            (false, Some(Hello::Helo)) | (false, None) => "SMTP",
            (false, _) => "ESMTP",
        };
        let mut w = String::new();
        if utf8 && base != "SMTP" {
            w.push_str("UTF8");
            w.push_str(if self.lmtp() { "LMTP" } else { "SMTP" });
        } else {
            w.push_str(base);
        }
        if self.session.tls.is_some() {
            w.push('S');
        }
        if self.session.auth_user.is_some() {
            w.push('A');
        }
        self.session.with = w;
    }

    /// End the transaction in progress without a message (RSET, HELO,
    /// STARTTLS, the end of the session).
    fn abandon(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.backend.transaction_end(&self.session, &tx.t, &[]);
        }
    }

    fn command(&mut self, c: Command) -> io::Result<Flow> {
        match c {
            Command::Hello(h, name) => self.hello(h, name),
            Command::Mail(path, params) => self.mail(&path, params),
            Command::Rcpt(path) => self.rcpt(&path),
            Command::Data => self.data(),
            Command::Bdat(n, last) => self.bdat(n, last),
            Command::Rset => {
                self.abandon();
                self.answer(reply(250, "2.0.0", "OK"))?;
                Ok(Flow::Go)
            }
            Command::Noop => {
                self.answer(reply(250, "2.0.0", "OK"))?;
                Ok(Flow::Go)
            }
            Command::Quit => {
                self.answer(reply(221, "2.0.0", "bye"))?;
                Ok(Flow::Quit)
            }
            Command::Vrfy => {
                self.answer(reply(252, "2.5.0", "cannot VRFY; send mail and see"))?;
                Ok(Flow::Go)
            }
            Command::Expn => {
                self.answer(reply(502, "5.5.1", "EXPN not available"))?;
                Ok(Flow::Go)
            }
            Command::Help => {
                self.answer(reply(
                    214,
                    "2.0.0",
                    "commands: EHLO HELO LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS AUTH",
                ))?;
                Ok(Flow::Go)
            }
            Command::Starttls => self.starttls(),
            Command::Auth(mech, initial) => self.auth(&mech, initial),
        }
    }

    fn hello(&mut self, h: Hello, name: String) -> io::Result<Flow> {
        let ok = match h {
            Hello::Lhlo => self.lmtp(),
            Hello::Ehlo | Hello::Helo => !self.lmtp(),
        };
        if !ok {
            let which = if self.lmtp() { "LHLO" } else { "EHLO or HELO" };
            self.answer(reply(
                500,
                "5.5.1",
                &format!("this is {}: use {which}", self.word()),
            ))?;
            return Ok(Flow::Go);
        }
        self.abandon();
        self.session.helo = name;
        self.hello = Some(h);
        self.update_with();
        let host = self.settings.hostname.clone();
        if h == Hello::Helo {
            self.answer(reply(250, "", &host))?;
            return Ok(Flow::Go);
        }
        let mut lines = vec![
            host,
            "PIPELINING".to_string(),
            format!("SIZE {}", self.settings.limits.max_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
            "CHUNKING".to_string(),
        ];
        if self.settings.starttls && self.session.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        if self.settings.auth && self.session.tls.is_some() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        self.answer(Reply {
            code: 250,
            enhanced: None,
            lines,
        })?;
        Ok(Flow::Go)
    }

    fn word(&self) -> &'static str {
        if self.lmtp() { "LMTP" } else { "SMTP" }
    }

    fn mail(&mut self, path: &[u8], p: command::MailParams) -> io::Result<Flow> {
        if self.hello.is_none() {
            let which = if self.lmtp() { "LHLO" } else { "EHLO/HELO" };
            self.answer(reply(503, "5.5.1", &format!("send {which} first")))?;
            return Ok(Flow::Go);
        }
        if self.tx.is_some() {
            self.answer(reply(503, "5.5.1", "nested MAIL command"))?;
            return Ok(Flow::Go);
        }
        let Path { mailbox, route } = match command::parse_path(path, true, p.smtputf8, false) {
            Ok(p) => p,
            Err(r) => {
                self.answer(r)?;
                return Ok(Flow::Go);
            }
        };
        if p.size.is_some_and(|n| n > self.settings.limits.max_size) {
            self.answer(reply(552, "5.3.4", "message size exceeds fixed limit"))?;
            return Ok(Flow::Go);
        }
        self.tx = Some(Tx {
            t: Transaction {
                id: crate::queue::new_id(),
                mail_from: mailbox,
                mail_source_route: route,
                body_8bit: p.body_8bit,
                smtputf8: p.smtputf8,
                ..Transaction::default()
            },
            chunks: None,
            chunk_error: None,
        });
        self.update_with();
        self.answer(reply(250, "2.1.0", "OK"))?;
        Ok(Flow::Go)
    }

    fn rcpt(&mut self, path: &[u8]) -> io::Result<Flow> {
        let Some(tx) = self.tx.as_mut() else {
            self.answer(reply(503, "5.5.1", "need MAIL before RCPT"))?;
            return Ok(Flow::Go);
        };
        if tx.chunks.is_some() {
            self.answer(reply(503, "5.5.1", "RCPT in the middle of BDAT"))?;
            return Ok(Flow::Go);
        }
        let Path { mailbox, route } = match command::parse_path(path, false, tx.t.smtputf8, true) {
            Ok(p) => p,
            Err(r) => {
                self.answer(r)?;
                return Ok(Flow::Go);
            }
        };
        if tx.t.rcpts.len() >= self.settings.limits.max_recipients {
            self.answer(reply(452, "4.5.3", "too many recipients"))?;
            return Ok(Flow::Go);
        }
        tx.t.rcpt_source_route = route;
        let verdict = self.backend.rcpt(&self.session, &tx.t, &mailbox);
        tx.t.rcpt_source_route = None;
        match verdict {
            Ok(()) => {
                tx.t.rcpts.push(mailbox);
                self.answer(reply(250, "2.1.5", "OK"))?;
            }
            Err(r) => {
                let mut r = sanitize(r);
                if r.code < 400 {
                    // A refusal must not read as an acceptance.
                    r = reply(451, "4.3.0", "recipient refused");
                }
                self.answer(r)?;
            }
        }
        Ok(Flow::Go)
    }

    /// Why DATA or BDAT cannot start now, if it cannot.
    fn data_refusal(&self, bdat: bool) -> Option<Reply> {
        match &self.tx {
            None => Some(reply(503, "5.5.1", "need MAIL first")),
            Some(tx) if tx.t.rcpts.is_empty() => Some(reply(
                if self.lmtp() { 503 } else { 554 },
                "5.5.1",
                "no valid recipients",
            )),
            Some(tx) if !bdat && (tx.chunks.is_some() || tx.chunk_error.is_some()) => {
                Some(reply(503, "5.5.1", "DATA in the middle of BDAT"))
            }
            _ => None,
        }
    }

    fn data(&mut self) -> io::Result<Flow> {
        if let Some(r) = self.data_refusal(false) {
            self.answer(r)?;
            if !self.io.buffered().is_empty() {
                // The client sent on without waiting for 354: what
                // follows is message text, not commands.
                self.io.flush()?;
                return Ok(Flow::Close("improper pipelining after DATA".into()));
            }
            return Ok(Flow::Go);
        }
        self.answer(reply(354, "", "end data with <CR><LF>.<CR><LF>"))?;
        let l = &self.settings.limits;
        let mut reader = DataReader::dot(l.max_size, l.max_text_line, self.settings.bare_lf);
        loop {
            let n = reader.feed(self.io.buffered());
            self.io.consume(n);
            if reader.is_done() {
                break;
            }
            if self.io.fill()? == 0 {
                return Ok(Flow::Close("connection closed in DATA".into()));
            }
        }
        // Commands already sent behind the final dot, before its reply
        // (smtpsmug's "pipelining" shape; Postfix 3.9 refuses it with
        // smtpd_forbid_unauth_pipelining): they may be the tail of a
        // message that a lax relay forwarded with an end-of-data look-alike
        // unstuffed, so they are never run. The message itself ended
        // properly and is answered; then 421 and the session ends (a
        // honest pipelining client retries the rest on a new connection).
        // A lone QUIT behind the dot is what many clients send: allowed.
        let early = !self.io.buffered().is_empty() && !is_lone_quit(self.io.buffered());
        self.complete(reader)?;
        if early {
            self.answer(reply(
                421,
                "4.5.0",
                "commands sent before the reply to the end of data; closing",
            ))?;
            self.io.flush()?;
            return Ok(Flow::Close(
                "improper pipelining after the end of data".into(),
            ));
        }
        Ok(Flow::Go)
    }

    fn bdat(&mut self, n: u64, last: bool) -> io::Result<Flow> {
        let refusal = self.data_refusal(true);
        let l = &self.settings.limits;
        let (max_size, max_text, bare) = (l.max_size, l.max_text_line, self.settings.bare_lf);
        let mut left = n;
        if let Some(r) = refusal {
            self.skip(&mut left)?;
            if left > 0 {
                return Ok(Flow::Close("connection closed in BDAT".into()));
            }
            self.answer(r)?;
            return Ok(Flow::Go);
        }
        let Some(tx) = self.tx.as_mut() else {
            return Ok(Flow::Go);
        };
        let mut reader = tx
            .chunks
            .take()
            .unwrap_or_else(|| DataReader::chunked(max_size, max_text, bare));
        while left > 0 {
            let avail = self.io.buffered();
            let k = avail.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            if k == 0 {
                if self.io.fill()? == 0 {
                    return Ok(Flow::Close("connection closed in BDAT".into()));
                }
                continue;
            }
            if self.tx.as_ref().is_some_and(|t| t.chunk_error.is_none()) {
                reader.feed(&self.io.buffered()[..k]);
            }
            self.io.consume(k);
            left -= k as u64;
        }
        let Some(tx) = self.tx.as_mut() else {
            return Ok(Flow::Go);
        };
        if tx.chunk_error.is_none() && reader.is_over() {
            tx.chunk_error = Some(reply(552, "5.3.4", "message size exceeds fixed limit"));
        }
        if let Some(err) = tx.chunk_error.clone() {
            if last {
                // The end of the message: with LMTP, one reply for each
                // recipient, as after a final dot.
                let tx = self.tx.take().map(|t| t.t).unwrap_or_default();
                let n = if self.lmtp() {
                    tx.rcpts.len().max(1)
                } else {
                    1
                };
                let replies = vec![err; n];
                self.summary.refused += 1;
                for r in &replies {
                    self.answer(r.clone())?;
                }
                self.backend.transaction_end(&self.session, &tx, &replies);
                return Ok(Flow::Go);
            }
            self.answer(err)?;
            return Ok(Flow::Go);
        }
        if last {
            reader.finish();
            self.complete(reader)?;
        } else {
            tx.chunks = Some(reader);
            self.answer(reply(250, "2.0.0", &format!("{n} octets received")))?;
        }
        Ok(Flow::Go)
    }

    /// Read and drop `left` octets.
    fn skip(&mut self, left: &mut u64) -> io::Result<()> {
        while *left > 0 {
            let k = self
                .io
                .buffered()
                .len()
                .min(usize::try_from(*left).unwrap_or(usize::MAX));
            if k == 0 {
                if self.io.fill()? == 0 {
                    return Ok(());
                }
                continue;
            }
            self.io.consume(k);
            *left -= k as u64;
        }
        Ok(())
    }

    /// The message is in: refuse it or hand it to the backend, and answer.
    fn complete(&mut self, reader: DataReader) -> io::Result<()> {
        // `with` for this transaction (SMTPUTF8 is decided per message).
        self.update_with();
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        let tx = tx.t;
        let l = &self.settings.limits;
        let refusal = if reader.is_over() {
            Some(reply(552, "5.3.4", "message size exceeds fixed limit"))
        } else if reader.refused_for_bare_lf() {
            Some(reply(
                550,
                "5.6.11",
                "bare CR or LF in the message; use CRLF",
            ))
        } else if reader.received() > l.max_received {
            Some(reply(
                554,
                "5.4.6",
                "too many Received headers: a mail loop",
            ))
        } else {
            None
        };
        let n = if self.lmtp() { tx.rcpts.len() } else { 1 };
        let replies: Vec<Reply> = match refusal {
            Some(r) => vec![r; n],
            None => {
                let now = crate::queue::now();
                let header =
                    super::received::header(&self.settings.hostname, &self.session, &tx, now);
                let mut message = reader.into_message();
                message.splice(0..0, header.into_bytes());
                let got = self.backend.deliver(&self.session, &tx, &message);
                drop(message);
                (0..n)
                    .map(|i| {
                        got.get(i)
                            .cloned()
                            .map(sanitize)
                            .unwrap_or_else(|| reply(451, "4.3.0", "no answer from delivery"))
                    })
                    .collect()
            }
        };
        if replies.iter().any(Reply::is_success) {
            self.summary.accepted += 1;
        } else {
            self.summary.refused += 1;
        }
        for r in &replies {
            self.send(r)?;
        }
        self.backend.transaction_end(&self.session, &tx, &replies);
        self.update_with();
        Ok(())
    }

    fn starttls(&mut self) -> io::Result<Flow> {
        if self.session.tls.is_some() {
            self.answer(reply(503, "5.5.1", "TLS already active"))?;
            return Ok(Flow::Go);
        }
        if !self.settings.starttls {
            self.answer(reply(502, "5.5.1", "STARTTLS not available"))?;
            return Ok(Flow::Go);
        }
        self.answer(reply(220, "2.0.0", "ready to start TLS"))?;
        self.io.flush()?;
        // CVE-2011-0411: whatever came with STARTTLS in plain text is
        // dropped, never executed under TLS.
        self.io.discard();
        self.abandon();
        self.hello = None;
        self.session.helo.clear();
        self.session.auth_user = None;
        let Some(stream) = self.io.stream.take() else {
            return Ok(Flow::Close("stream lost".into()));
        };
        match stream.start_tls() {
            Ok(s) => {
                self.session.tls = s.tls_info();
                self.io.stream = Some(s);
                self.update_with();
                Ok(Flow::Go)
            }
            Err(e) => Ok(Flow::Close(format!("TLS handshake failed: {e}"))),
        }
    }

    fn auth(&mut self, mech: &str, initial: Option<Vec<u8>>) -> io::Result<Flow> {
        let refusal = if !self.settings.auth {
            Some(reply(502, "5.5.1", "AUTH not available"))
        } else if self.session.tls.is_none() {
            Some(reply(538, "5.7.11", "encryption required for AUTH"))
        } else if self.hello.is_none() {
            Some(reply(503, "5.5.1", "send EHLO first"))
        } else if self.session.auth_user.is_some() {
            Some(reply(503, "5.5.1", "already authenticated"))
        } else if self.tx.is_some() {
            Some(reply(
                503,
                "5.5.1",
                "AUTH not allowed in a mail transaction",
            ))
        } else if mech != "PLAIN" && mech != "LOGIN" {
            Some(reply(504, "5.5.4", "unrecognized authentication mechanism"))
        } else {
            None
        };
        if let Some(r) = refusal {
            self.answer(r)?;
            return Ok(Flow::Go);
        }
        let creds = if mech == "PLAIN" {
            let resp = match initial {
                Some(i) => Ok(i),
                None => self.challenge("")?,
            };
            resp.and_then(|r| decode(&r)).and_then(|mut raw| {
                let parts: Vec<&[u8]> = raw.splitn(3, |&b| b == 0).collect();
                let got = match parts.as_slice() {
                    [authz, user, pass] if authz.is_empty() || authz == user => {
                        Ok((user.to_vec(), pass.to_vec()))
                    }
                    [_, _, _] => Err(reply(535, "5.7.8", "authentication credentials invalid")),
                    _ => Err(reply(501, "5.5.2", "malformed PLAIN response")),
                };
                // The decoded response holds the password too.
                raw.iter_mut().for_each(|b| *b = 0);
                got
            })
        } else {
            let user = match initial {
                Some(i) => Ok(i),
                None => self.challenge("VXNlcm5hbWU6")?,
            }
            .and_then(|r| decode(&r));
            match user {
                Ok(u) => match self.challenge("UGFzc3dvcmQ6")?.and_then(|r| decode(&r)) {
                    Ok(p) => Ok((u, p)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        };
        let (user, mut pass) = match creds {
            Ok(c) => c,
            Err(r) => {
                self.answer(r)?;
                return Ok(Flow::Go);
            }
        };
        let user = match String::from_utf8(user) {
            Ok(u) if !u.is_empty() && !u.chars().any(char::is_control) => Some(u),
            _ => None,
        };
        let verdict = match &user {
            Some(u) => self.backend.auth(u, &pass),
            None => AuthVerdict::Bad,
        };
        // The password leaves memory as soon as it is checked.
        pass.iter_mut().for_each(|b| *b = 0);
        match verdict {
            AuthVerdict::Ok => {
                self.session.auth_user = user;
                self.update_with();
                self.answer(reply(235, "2.7.0", "authentication successful"))?;
            }
            AuthVerdict::Bad => {
                self.answer(reply(535, "5.7.8", "authentication credentials invalid"))?
            }
            AuthVerdict::Temporary => {
                self.answer(reply(454, "4.7.0", "temporary authentication failure"))?
            }
        }
        Ok(Flow::Go)
    }

    /// Send a 334 challenge and read the answer: the line, or the reply
    /// that ends the exchange (`*`, too long); EOF is an I/O error.
    fn challenge(&mut self, text: &str) -> io::Result<std::result::Result<Vec<u8>, Reply>> {
        self.io.queue(format!("334 {text}\r\n").as_bytes())?;
        match self.io.line(AUTH_LINE)? {
            Line::Eof => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in AUTH",
            )),
            Line::TooLong => Ok(Err(reply(500, "5.5.6", "authentication line too long"))),
            Line::Text(l) if l == b"*" => Ok(Err(reply(501, "5.0.0", "authentication cancelled"))),
            Line::Text(l) => Ok(Ok(l)),
        }
    }
}

/// Base64 as AUTH sends it (`=` alone: empty).
fn decode(s: &[u8]) -> std::result::Result<Vec<u8>, Reply> {
    if s == b"=" {
        return Ok(Vec::new());
    }
    STANDARD
        .decode(s)
        .map_err(|_| reply(501, "5.5.2", "invalid base64"))
}

/// A backend's reply made safe to send: a code in 200..=599 (else 451),
/// no CR, LF or other control in its text, an enhanced code of the
/// right class only.
/// Is `buf` exactly one QUIT command (any case), as pipelined behind a
/// final dot by clients that end the session there?
fn is_lone_quit(buf: &[u8]) -> bool {
    buf.eq_ignore_ascii_case(b"QUIT\r\n")
}

fn sanitize(mut r: Reply) -> Reply {
    if !(200..=599).contains(&r.code) {
        return reply(451, "4.3.0", "internal error");
    }
    let class = (b'0' + (r.code / 100) as u8) as char;
    r.enhanced = r.enhanced.filter(|e| {
        e.starts_with(class) && e.len() <= 11 && e.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    });
    for l in &mut r.lines {
        *l = l
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
    }
    if r.lines.is_empty() {
        r.lines.push(String::new());
    }
    r
}

/// A reply on the wire: every line with the code (and enhanced code).
fn format_reply(r: &Reply) -> String {
    let mut out = String::new();
    let n = r.lines.len().max(1);
    for i in 0..n {
        let sep = if i + 1 == n { ' ' } else { '-' };
        out.push_str(&format!("{}{sep}", r.code));
        if let Some(e) = &r.enhanced {
            out.push_str(e);
            out.push(' ');
        }
        out.push_str(r.lines.get(i).map_or("", String::as_str));
        if out.ends_with(' ') && r.lines.get(i).is_none_or(String::is_empty) {
            out.pop();
        }
        out.push_str("\r\n");
    }
    out
}
