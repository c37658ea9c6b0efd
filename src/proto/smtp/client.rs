//! The SMTP/LMTP client over any [`Exchange`] stream (plain TCP, TLS, a
//! unix socket, an in-memory script): the dialogue whose guarantees the
//! module docs of [`crate::proto::smtp`] list: only the reply a stage
//! allows counts, a reply counts only for what the server was sent,
//! pipelined replies each get a fresh budget, no command injection,
//! STARTTLS never half done, credentials off the transcript, and every
//! recipient's fate in the [`Outcome`].
//!
//! Errors: network I/O is [`Kind::Temporary`] of [`Origin::Network`]; a
//! server out of step or speaking nonsense is [`Kind::Temporary`] of
//! [`Origin::Protocol`]; a refused AUTH is [`Kind::Auth`] of
//! [`Origin::Auth`]; a STARTTLS that cannot be trusted is
//! [`Kind::Temporary`] of [`Origin::Tls`].

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::exit::{Context, Error, Kind, Origin, Result};
use crate::proto::Exchange;
use crate::proto::sasl::{self, Mechanism, Secret};
use crate::proto::smtp::reply::out_of_step;
use crate::proto::smtp::{
    Capabilities, MAX_LINE, MAX_REPLY_LINES, MailParams, Protocol, Reply, Stage, encode_data,
    parse_reply, parse_reply_line, xtext,
};
use crate::proto::tls::{Stream, TlsOptions};
use crate::proto::transcript::Transcript;

/// A transcript shared by every connection of one run (`-v`).
pub type SharedTranscript = Arc<Mutex<Transcript>>;

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Delivered (or accepted for delivery): the final reply.
    Accepted(Reply),
    /// 4xx at `Stage`: keep the message, retry later.
    Temporary(Stage, Reply),
    /// 5xx at `Stage`: refused for good.
    Permanent(Stage, Reply),
}

/// One recipient and its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptResult {
    /// The address as given to [`Client::send`].
    pub rcpt: String,
    /// What happened.
    pub status: Status,
}

impl RcptResult {
    /// `None` when accepted, else the failure's kind.
    pub fn kind(&self) -> Option<Kind> {
        match &self.status {
            Status::Accepted(_) => None,
            Status::Temporary(..) => Some(Kind::Temporary),
            Status::Permanent(stage, r) => Some(r.kind(*stage)),
        }
    }
}

/// The outcome of one transaction, recipient by recipient, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every recipient's result.
    pub recipients: Vec<RcptResult>,
}

impl Outcome {
    /// The worst failure (temporary outranks permanent), `None` if all were accepted.
    pub fn worst(&self) -> Option<Kind> {
        let kinds: Vec<Kind> = self
            .recipients
            .iter()
            .filter_map(RcptResult::kind)
            .collect();
        crate::exit::worst(&kinds)
    }

    /// Were all recipients accepted?
    pub fn all_accepted(&self) -> bool {
        self.worst().is_none()
    }
}

/// An SMTP or LMTP client over a stream.
pub struct Client<S: Exchange> {
    stream: S,
    protocol: Protocol,
    buf: Vec<u8>,
    caps: Capabilities,
    transcript: Option<SharedTranscript>,
    data_sent: bool,
}

impl Client<Stream> {
    /// Connect to `addr` within `timeout`, with TCP_NODELAY and `timeout` as
    /// the idle time of every later exchange (see [`crate::proto::pace`]).
    pub fn connect_tcp(addr: SocketAddr, timeout: Duration, protocol: Protocol) -> Result<Self> {
        let ctx = format!("connecting to {addr}");
        let s = TcpStream::connect_timeout(&addr, timeout).net_context(&*ctx)?;
        let set = |r: io::Result<()>| r.net_context(&*ctx);
        set(s.set_nodelay(true))?;
        set(s.set_read_timeout(Some(timeout)))?;
        set(s.set_write_timeout(Some(timeout)))?;
        Ok(Client::new(Stream::plain(s), protocol))
    }
}

fn auth_error(ctx: &str, r: &Reply) -> Error {
    let e = |kind| Error::new(kind, ctx, format!("server said: {}", r.text()));
    if r.is_temporary() {
        e(Kind::Temporary)
    } else {
        e(Kind::Auth).from_origin(Origin::Auth)
    }
}

impl Client<Stream> {
    /// STARTTLS, the TLS handshake for `host` as `opts` say, and EHLO/LHLO
    /// `helo` again over TLS. Refuses when the server offered no STARTTLS
    /// ([`Kind::Temporary`], as Postfix defers: the policy is the caller's).
    pub fn starttls(self, host: &str, opts: &TlsOptions, helo: &str) -> Result<Client<Stream>> {
        let mut me = self;
        if !me.caps.starttls {
            return Err(Error::new(
                Kind::Temporary,
                format!("{host}: STARTTLS"),
                "TLS is required but the server does not offer STARTTLS; nothing was sent",
            )
            .from_origin(Origin::Tls));
        }
        let r = me.command("STARTTLS")?;
        if r.code != 220 {
            return Err(r.error(&format!("{host}: STARTTLS"), Stage::Mail));
        }
        if !me.buf.is_empty() {
            return Err(Error::new(
                Kind::Temporary,
                format!("{host}: STARTTLS"),
                "the server sent data after its 220 before the handshake (injection?)",
            )
            .from_origin(Origin::Tls));
        }
        let Client {
            stream,
            protocol,
            transcript,
            ..
        } = me;
        let stream = stream.upgrade(host, opts)?;
        let mut c = Client::new(stream, protocol);
        c.transcript = transcript;
        c.log(|t| t.note("TLS established"));
        c.hello(helo)?;
        Ok(c)
    }
}

fn check_address(a: &str) -> Result<()> {
    if a.bytes()
        .any(|b| matches!(b, b'\r' | b'\n' | 0 | b'<' | b'>'))
    {
        return Err(Error::new(
            Kind::Data,
            format!("address {a:?}"),
            "contains a character not allowed in an address",
        ));
    }
    Ok(())
}

impl<S: Exchange> Client<S> {
    /// Wrap a connected stream; nothing is read or written yet.
    pub fn new(stream: S, protocol: Protocol) -> Self {
        Client {
            stream,
            protocol,
            buf: Vec::new(),
            caps: Capabilities::default(),
            transcript: None,
            data_sent: false,
        }
    }

    /// Did the last transaction get as far as writing the message? When it
    /// did not and it failed, sending it again (on a new connection) can
    /// never duplicate it.
    pub fn data_was_sent(&self) -> bool {
        self.data_sent
    }

    /// Write every line sent and received to `t` (for `-v`).
    pub fn set_transcript(&mut self, t: Option<SharedTranscript>) {
        self.transcript = t;
    }

    fn log(&self, f: impl FnOnce(&mut Transcript)) {
        if let Some(t) = &self.transcript
            && let Ok(mut t) = t.lock()
        {
            f(&mut t);
        }
    }

    /// What the server announced (empty before [`Client::hello`]).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The stream, e.g. to wrap it in TLS after STARTTLS.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Read one reply line (without its line end), at most [`MAX_LINE`] bytes.
    fn read_line(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() >= MAX_LINE {
                return Err(out_of_step(
                    "reading the server's reply",
                    format!("reply line longer than {MAX_LINE} bytes"),
                ));
            }
            let mut chunk = [0u8; 1024];
            let want = (MAX_LINE - self.buf.len()).min(chunk.len());
            let n = loop {
                match self.stream.read(&mut chunk[..want]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::net("reading the server's reply", &e)),
                }
            };
            if n == 0 {
                return Err(Error::new(
                    Kind::Temporary,
                    "reading the server's reply",
                    "connection closed by the server",
                )
                .from_origin(Origin::Network));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Read one complete (possibly multi-line) reply.
    pub fn read_reply(&mut self) -> Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            self.log(|t| t.received(&line));
            let (_, last, _) = parse_reply_line(&line)?;
            lines.push(line);
            if last {
                break;
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(out_of_step(
                    "reading the server's reply",
                    format!("reply longer than {MAX_REPLY_LINES} lines"),
                ));
            }
        }
        parse_reply(lines.iter().map(Vec::as_slice))
    }

    fn write(&mut self, data: &[u8], what: &str) -> Result<()> {
        self.expect_quiet(what)?;
        self.log(|t| t.sent(data));
        self.write_quiet(data, what)
    }

    /// Before anything is sent, every reply read so far must have been
    /// asked for: bytes already buffered would be taken for the reply to
    /// what we send next, which the server has not even seen yet.
    fn expect_quiet(&self, what: &str) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let first = self.buf.split(|&b| b == b'\n').next().unwrap_or_default();
        let shown = String::from_utf8_lossy(&first[..first.len().min(80)]);
        Err(out_of_step(
            format!("before sending {what}"),
            format!(
                "the server replied before it was asked ({:?}): out of step, nothing more sent",
                shown.trim_end()
            ),
        ))
    }

    /// Write without a transcript line (the message payload, secrets).
    fn write_quiet(&mut self, data: &[u8], what: &str) -> Result<()> {
        self.stream
            .write_all(data)
            .and_then(|()| self.stream.flush())
            .net_context(format!("sending {what}"))
    }

    /// Send one command line (CRLF added) and read its reply.
    pub fn command(&mut self, line: &str) -> Result<Reply> {
        let verb = line.split(' ').next().unwrap_or(line).to_string();
        self.write(format!("{line}\r\n").as_bytes(), &verb)?;
        self.read_reply().map_err(|e| e.within(verb))
    }

    /// Read the greeting; anything but 220 is an error (4xx temporary).
    pub fn greeting(&mut self) -> Result<Reply> {
        let r = self.read_reply().map_err(|e| e.within("greeting"))?;
        if r.code != 220 {
            return Err(r.error("greeting", Stage::Mail));
        }
        Ok(r)
    }

    /// EHLO (HELO when EHLO gets a 5xx) for SMTP, LHLO for LMTP; returns the
    /// capabilities announced.
    pub fn hello(&mut self, name: &str) -> Result<&Capabilities> {
        check_address(name)?;
        let verb = match self.protocol {
            Protocol::Smtp => "EHLO",
            Protocol::Lmtp => "LHLO",
        };
        let r = self.command(&format!("{verb} {name}"))?;
        if r.code == 250 {
            self.caps = Capabilities::parse(&r);
            return Ok(&self.caps);
        }
        if self.protocol == Protocol::Lmtp || !r.is_permanent() {
            return Err(r.error(verb, Stage::Mail));
        }
        let r = self.command(&format!("HELO {name}"))?;
        if r.code != 250 {
            return Err(r.error("HELO", Stage::Mail));
        }
        self.caps = Capabilities::default();
        Ok(&self.caps)
    }

    /// One mail transaction: MAIL FROM `from` (empty for the null sender),
    /// RCPT TO each of `rcpts`, DATA with `message` (see [`encode_data`]).
    ///
    /// Everything the server says is in the [`Outcome`], per recipient. An
    /// `Err` means the dialogue itself failed (connection lost, timeout,
    /// malformed reply, bad address): the fate of every recipient is then
    /// unknown and the whole message must be kept ([`Kind::Temporary`]).
    pub fn send(&mut self, from: &str, rcpts: &[&str], message: &[u8]) -> Result<Outcome> {
        self.send_with(from, rcpts, message, &MailParams::default())
    }

    /// [`Client::send`] with DSN parameters (used when the server offers DSN).
    pub fn send_with(
        &mut self,
        from: &str,
        rcpts: &[&str],
        message: &[u8],
        params: &MailParams<'_>,
    ) -> Result<Outcome> {
        self.data_sent = false;
        if rcpts.is_empty() {
            return Err(Error::new(
                Kind::Usage,
                "sending a message",
                "no recipients",
            ));
        }
        check_address(from)?;
        for r in rcpts {
            check_address(r)?;
        }
        let payload = encode_data(message);
        // The message size: the payload without the terminating ".\r\n".
        let size = payload.len() - 3;
        if let Some(limit) = self.caps.size.filter(|&l| l > 0 && size as u64 > l) {
            // The server announced it would refuse this: do not send it
            // (RFC 1870), refuse it the way the server would (552 5.3.4).
            let r = Reply {
                code: 552,
                enhanced: Some("5.3.4".into()),
                lines: vec![format!(
                    "message size {size} exceeds the server's limit of {limit} bytes (not sent)"
                )],
            };
            return Ok(Outcome {
                recipients: rcpts
                    .iter()
                    .map(|rc| RcptResult {
                        rcpt: rc.to_string(),
                        status: Status::Permanent(Stage::Mail, r.clone()),
                    })
                    .collect(),
            });
        }
        let mut mail = format!("MAIL FROM:<{from}>");
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if self.caps.eightbitmime && message.iter().any(|&b| b >= 0x80) {
            mail.push_str(" BODY=8BITMIME");
        }
        if self.caps.smtputf8 && (!from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii())) {
            mail.push_str(" SMTPUTF8");
        }
        let mut notify = String::new();
        if self.caps.dsn {
            for (k, v) in [("RET", params.ret), ("ENVID", params.envid)] {
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    mail.push_str(&format!(" {k}={}", xtext(v)));
                }
            }
            if let Some(n) = params.notify.filter(|n| !n.is_empty()) {
                notify = format!(" NOTIFY={}", xtext(n));
            }
        }
        let rcpt_lines: Vec<String> = rcpts
            .iter()
            .map(|r| format!("RCPT TO:<{r}>{notify}"))
            .collect();

        // With PIPELINING, DATA goes in the same batch (RFC 2920 allows it
        // last): one round trip for the whole envelope.
        let mut piped_data = None;
        let (mail_reply, rcpt_replies) = if self.caps.pipelining {
            let mut batch = format!("{mail}\r\n");
            for l in &rcpt_lines {
                batch.push_str(l);
                batch.push_str("\r\n");
            }
            batch.push_str("DATA\r\n");
            self.write(batch.as_bytes(), "MAIL FROM, RCPT TO and DATA")?;
            let m = self.read_reply().map_err(|e| e.within("MAIL FROM"))?;
            let mut rs = Vec::with_capacity(rcpts.len());
            for _ in rcpts {
                // Each reply of the batch has its own budget: a server
                // checking every recipient may take a while for each.
                self.stream.arm();
                rs.push(self.read_reply().map_err(|e| e.within("RCPT TO"))?);
            }
            self.stream.arm();
            piped_data = Some(self.read_reply().map_err(|e| e.within("DATA"))?);
            (m, rs)
        } else {
            let m = self.command(&mail)?;
            let mut rs = Vec::with_capacity(rcpts.len());
            if m.is_success() {
                for l in &rcpt_lines {
                    rs.push(self.command(l)?);
                }
            }
            (m, rs)
        };

        let fail = |stage: Stage, r: &Reply| {
            if r.is_permanent() {
                Status::Permanent(stage, r.clone())
            } else {
                Status::Temporary(stage, r.clone())
            }
        };
        let mut results: Vec<RcptResult> = rcpts
            .iter()
            .map(|r| RcptResult {
                rcpt: r.to_string(),
                status: fail(Stage::Mail, &mail_reply),
            })
            .collect();
        if !mail_reply.is_success() {
            self.abandon_data(piped_data.as_ref())?;
            return Ok(Outcome {
                recipients: results,
            });
        }
        let mut accepted = Vec::new();
        for (i, r) in rcpt_replies.iter().enumerate() {
            if r.is_success() {
                accepted.push(i);
                results[i].status = Status::Accepted(r.clone());
            } else {
                results[i].status = fail(Stage::Rcpt, r);
            }
        }
        if accepted.is_empty() {
            self.abandon_data(piped_data.as_ref())?;
            return Ok(Outcome {
                recipients: results,
            });
        }
        let data = match piped_data {
            Some(d) => d,
            None => self.command("DATA")?,
        };
        if data.code != 354 {
            for &i in &accepted {
                results[i].status = fail(Stage::Data, &data);
            }
            self.reset();
            return Ok(Outcome {
                recipients: results,
            });
        }
        self.log(|t| {
            t.note(&format!(
                "({} bytes of message and the final dot)",
                payload.len()
            ))
        });
        // The final reply can only answer a payload the server has seen:
        // one already here was sent before it (a server out of step, or
        // someone injecting replies) and must not be taken for it.
        self.expect_quiet("the message")?;
        self.data_sent = true;
        self.write_quiet(&payload, "the message")?;
        let finals = match self.protocol {
            Protocol::Smtp => 1,
            Protocol::Lmtp => accepted.len(),
        };
        for k in 0..finals {
            if k > 0 {
                // LMTP delivers recipient by recipient: each its own budget.
                self.stream.arm();
            }
            let r = self.read_reply().map_err(|e| e.within("end of DATA"))?;
            let targets: &[usize] = match self.protocol {
                Protocol::Smtp => &accepted,
                Protocol::Lmtp => &accepted[k..=k],
            };
            for &i in targets {
                results[i].status = if r.is_success() {
                    Status::Accepted(r.clone())
                } else {
                    fail(Stage::Final, &r)
                };
            }
        }
        Ok(Outcome {
            recipients: results,
        })
    }

    /// End a transaction that has no recipient: a pipelined DATA that a
    /// server accepted anyway gets an empty payload (and its refusal), then
    /// RSET.
    fn abandon_data(&mut self, piped: Option<&Reply>) -> Result<()> {
        if piped.is_some_and(|d| d.code == 354) {
            self.write(b".\r\n", "the end of an empty DATA")?;
            self.read_reply().map_err(|e| e.within("end of DATA"))?;
        }
        self.reset();
        Ok(())
    }

    /// RSET after a failed transaction; its own failure does not change an
    /// outcome already known (a broken connection shows at the next use).
    fn reset(&mut self) {
        let _ = self.command("RSET");
    }

    /// Authenticate with `mech` as `user`. A 535 (or any other 5xx) is
    /// [`Kind::Auth`], a 4xx [`Kind::Temporary`]. The secret and every SASL
    /// continuation reach the transcript only as `<redacted>`.
    pub fn auth(&mut self, mech: Mechanism, user: &str, secret: &Secret) -> Result<()> {
        let ctx = format!("AUTH {} as {user}", mech.name());
        let mut r = match mech {
            Mechanism::Plain => self.secret_line(
                &format!("AUTH PLAIN {}", sasl::plain(user, secret)),
                "AUTH PLAIN",
            )?,
            Mechanism::XOAuth2 => self.secret_line(
                &format!("AUTH XOAUTH2 {}", sasl::xoauth2(user, secret)),
                "AUTH XOAUTH2",
            )?,
            Mechanism::Login => {
                let r = self.command("AUTH LOGIN")?;
                if r.code != 334 {
                    return Err(auth_error(&ctx, &r));
                }
                let r = self.secret_line(&sasl::b64(user.as_bytes()), "")?;
                if r.code != 334 {
                    return Err(auth_error(&ctx, &r));
                }
                self.secret_line(&sasl::b64(secret.expose().as_bytes()), "")?
            }
        };
        if r.code == 334 {
            // XOAUTH2 sends its error as a challenge; an empty line ends it.
            r = self.command("")?;
        }
        if r.code == 235 {
            Ok(())
        } else {
            Err(auth_error(&ctx, &r))
        }
    }

    fn secret_line(&mut self, line: &str, shown: &str) -> Result<Reply> {
        self.expect_quiet("AUTH")?;
        self.log(|t| t.sent_secret(shown));
        self.write_quiet(format!("{line}\r\n").as_bytes(), "AUTH")?;
        self.read_reply().map_err(|e| e.within("AUTH"))
    }

    /// QUIT and read the reply (its content does not matter).
    pub fn quit(&mut self) -> Result<()> {
        self.command("QUIT").map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::script::{Script, Sink};

    /// A client whose server sends each line of `replies` on its own.
    fn client(protocol: Protocol, replies: &str) -> Client<Script> {
        Client::new(Script::lines(replies), protocol)
    }

    /// A client whose server sends `segments`, each arriving whole.
    fn client_segments(protocol: Protocol, segments: &[&str]) -> Client<Script> {
        Client::new(Script::segments(segments), protocol)
    }

    #[test]
    fn pipelined_send_with_per_recipient_results() {
        let mut c = client(
            Protocol::Smtp,
            "220 hi\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE\r\n250 ok\r\n250 ok\r\n550 5.1.1 no\r\n451 later\r\n354 go\r\n250 queued\r\n221 bye\r\n",
        );
        c.greeting().unwrap();
        c.hello("me.test").unwrap();
        let o = c
            .send("s@x", &["a@x", "b@x", "c@x"], b"Subject: t\n\nhi\n")
            .unwrap();
        c.quit().unwrap();
        assert!(matches!(o.recipients[0].status, Status::Accepted(_)));
        assert_eq!(o.recipients[1].kind(), Some(Kind::NoUser));
        assert_eq!(o.recipients[2].kind(), Some(Kind::Temporary));
        assert_eq!(o.worst(), Some(Kind::Temporary));
        let w = c.into_inner().sent().text();
        assert!(w.contains("MAIL FROM:<s@x> SIZE=18\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n"), "{w}");
        assert!(w.ends_with("Subject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n"), "{w}");
    }

    #[test]
    fn no_data_without_an_accepted_recipient_and_lmtp_replies() {
        let mut c = client(
            Protocol::Smtp,
            "250 mx\r\n250 ok\r\n550 no\r\n250 reset\r\n",
        );
        c.hello("me").unwrap();
        let o = c.send("", &["a@x"], b"x").unwrap();
        assert_eq!(o.worst(), Some(Kind::NoUser));
        let w = c.into_inner().sent().text();
        assert!(!w.contains("DATA") && w.ends_with("RSET\r\n"), "{w}");

        let mut c = client(
            Protocol::Lmtp,
            "250-lmtp\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 a done\r\n452 4.2.2 b over quota\r\n",
        );
        c.hello("me").unwrap();
        let o = c.send("s@x", &["a@x", "b@x"], b"x\n").unwrap();
        assert!(matches!(o.recipients[0].status, Status::Accepted(_)));
        assert!(matches!(
            o.recipients[1].status,
            Status::Temporary(Stage::Final, _)
        ));
        let s = c.into_inner();
        assert!(s.sent().text().starts_with("LHLO me\r\n"));
    }

    #[test]
    fn helo_fallback_errors_and_bounds() {
        let mut c = client(Protocol::Smtp, "500 what\r\n250 hi\r\n");
        assert!(!c.hello("me").unwrap().extended);
        let mut c = client(Protocol::Smtp, "421 busy\r\n");
        assert_eq!(c.greeting().unwrap_err().kind(), Kind::Temporary);
        let mut c = client(Protocol::Smtp, "554 go away\r\n");
        assert_eq!(c.greeting().unwrap_err().kind(), Kind::Unavailable);
        let mut c = client(Protocol::Smtp, "220 hi");
        assert_eq!(c.greeting().unwrap_err().kind(), Kind::Temporary);
        let long = format!("220 {}\r\n", "x".repeat(MAX_LINE * 3));
        let mut c = client(Protocol::Smtp, &long);
        assert_eq!(c.greeting().unwrap_err().kind(), Kind::Temporary);
        let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 5);
        let mut c = client(Protocol::Smtp, &many);
        assert_eq!(c.read_reply().unwrap_err().kind(), Kind::Temporary);
        let mut c = client(Protocol::Smtp, "250 mx\r\n");
        c.hello("me").unwrap();
        assert_eq!(
            c.send("a\r\nRSET", &["b@x"], b"x").unwrap_err().kind(),
            Kind::Data
        );
        assert_eq!(c.into_inner().sent().writes(), 1);
    }

    #[test]
    fn data_payload_is_one_write() {
        let mut c = client(
            Protocol::Smtp,
            "250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n",
        );
        c.hello("me").unwrap();
        c.send("s@x", &["a@x"], &b"line\n".repeat(1000)).unwrap();
        // EHLO, MAIL, RCPT, DATA, payload.
        assert_eq!(c.into_inner().sent().writes(), 5);
    }

    fn traced(c: &mut Client<Script>) -> Sink {
        let sink = Sink::default();
        c.set_transcript(Some(Arc::new(Mutex::new(Transcript::to(
            Box::new(sink.clone()),
            "",
        )))));
        sink
    }

    #[test]
    fn auth_mechanisms_never_reach_the_transcript_and_535_is_auth() {
        let pw = Secret::new("hunter2");
        let mut c = client(Protocol::Smtp, "235 ok\r\n");
        let sink = traced(&mut c);
        c.auth(Mechanism::Plain, "me", &pw).unwrap();
        let w = c.into_inner().sent().text();
        assert_eq!(w, format!("AUTH PLAIN {}\r\n", sasl::plain("me", &pw)));
        let t = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(t, "C: AUTH PLAIN <redacted>\nS: 235 ok\n");

        let mut c = client(
            Protocol::Smtp,
            "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8 bad\r\n",
        );
        let sink = traced(&mut c);
        let e = c.auth(Mechanism::Login, "me", &pw).unwrap_err();
        assert_eq!(e.kind(), Kind::Auth);
        let t = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(!t.contains("aHVudGVyMg") && !t.contains("hunter2"), "{t}");
        assert!(t.contains("C: <redacted>"), "{t}");

        // XOAUTH2's error comes as a challenge; an empty line ends it.
        let mut c = client(Protocol::Smtp, "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n535 no\r\n");
        let e = c.auth(Mechanism::XOAuth2, "me", &pw).unwrap_err();
        assert_eq!(e.kind(), Kind::Auth);
        assert!(c.into_inner().sent().text().ends_with("\r\n\r\n"));

        let mut c = client(Protocol::Smtp, "454 4.7.0 try later\r\n");
        let e = c.auth(Mechanism::Plain, "me", &pw).unwrap_err();
        assert_eq!(e.kind(), Kind::Temporary);
    }

    #[test]
    fn dsn_and_8bit_parameters_when_offered() {
        let mut c = client(
            Protocol::Smtp,
            "250-mx\r\n250-DSN\r\n250-8BITMIME\r\n250 SIZE 100000\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n",
        );
        let sink = traced(&mut c);
        c.hello("me").unwrap();
        let p = MailParams {
            ret: Some("HDRS"),
            envid: Some("a+b=c"),
            notify: Some("NEVER"),
        };
        c.send_with("s@x", &["a@x"], "Subject: \u{e9}\n\nx\n".as_bytes(), &p)
            .unwrap();
        let w = c.into_inner().sent().text();
        assert!(
            w.contains("MAIL FROM:<s@x> SIZE=18 BODY=8BITMIME RET=HDRS ENVID=a+2Bb+3Dc\r\n"),
            "{w}"
        );
        assert!(w.contains("RCPT TO:<a@x> NOTIFY=NEVER\r\n"), "{w}");
        // The message body is not in the transcript, only its size.
        let t = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(t.contains("-- (21 bytes of message"), "{t}");
        assert!(!t.contains("Subject"), "{t}");

        // Without DSN offered, no DSN parameters.
        let mut c = client(
            Protocol::Smtp,
            "250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n",
        );
        c.hello("me").unwrap();
        c.send_with("s@x", &["a@x"], b"x\n", &p).unwrap();
        let w = c.into_inner().sent().text();
        assert!(w.contains("MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\n"), "{w}");
    }

    #[test]
    fn pipelined_data_is_ended_cleanly_when_no_recipient_was_accepted() {
        let mut c = client(
            Protocol::Smtp,
            "250-mx\r\n250 PIPELINING\r\n250 ok\r\n550 no\r\n554 no valid recipients\r\n250 reset\r\n",
        );
        c.hello("me").unwrap();
        let o = c.send("s@x", &["a@x"], b"secret body\n").unwrap();
        assert_eq!(o.worst(), Some(Kind::NoUser));
        let w = c.into_inner().sent().text();
        assert!(w.ends_with("RCPT TO:<a@x>\r\nDATA\r\nRSET\r\n"), "{w}");
        // A server that says 354 anyway gets an empty payload, not the message.
        let mut c = client(
            Protocol::Smtp,
            "250-mx\r\n250 PIPELINING\r\n250 ok\r\n550 no\r\n354 go\r\n554 no\r\n250 reset\r\n",
        );
        c.hello("me").unwrap();
        c.send("s@x", &["a@x"], b"secret body\n").unwrap();
        let w = c.into_inner().sent().text();
        assert!(
            w.ends_with("DATA\r\n.\r\nRSET\r\n") && !w.contains("secret"),
            "{w}"
        );
    }

    /// Only the reply a stage allows counts: 2xx after the final dot (and
    /// to MAIL and RCPT), 354 only to DATA. A 3xx anywhere else is the
    /// server not following the protocol: temporary, the message kept.
    #[test]
    fn a_3xx_where_a_2xx_belongs_is_not_a_delivery() {
        for piped in [false, true] {
            let ehlo = if piped {
                "250-mx\r\n250 PIPELINING\r\n"
            } else {
                "250 mx\r\n"
            };
            // 354 again after the final dot.
            let mut c = client(
                Protocol::Smtp,
                &format!("{ehlo}250 ok\r\n250 ok\r\n354 go\r\n354 go ahead again\r\n"),
            );
            c.hello("me").unwrap();
            let o = c.send("s@x", &["a@x"], b"x\n").unwrap();
            assert!(
                matches!(&o.recipients[0].status, Status::Temporary(Stage::Final, r) if r.code == 354),
                "{o:?}"
            );
            assert_eq!(o.worst(), Some(Kind::Temporary));
            // A 3xx to MAIL FROM or RCPT TO.
            for (mail, rcpt) in [("334 what", "250 ok"), ("250 ok", "354 go")] {
                let mut c = client(
                    Protocol::Smtp,
                    &format!("{ehlo}{mail}\r\n{rcpt}\r\n354 go\r\n250 ok\r\n250 reset\r\n"),
                );
                c.hello("me").unwrap();
                let o = c.send("s@x", &["a@x"], b"x\n").unwrap();
                assert_eq!(o.worst(), Some(Kind::Temporary), "{mail} {rcpt}: {o:?}");
                let w = c.into_inner().sent().text();
                assert!(!w.contains("x\r\n.\r\n"), "the message was sent: {w}");
            }
        }
        // LMTP: every accepted recipient's own reply must be 2xx.
        let mut c = client(
            Protocol::Lmtp,
            "250 lmtp\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 a done\r\n354 b?\r\n",
        );
        c.hello("me").unwrap();
        let o = c.send("s@x", &["a@x", "b@x"], b"x\n").unwrap();
        assert!(matches!(o.recipients[0].status, Status::Accepted(_)));
        assert!(matches!(
            o.recipients[1].status,
            Status::Temporary(Stage::Final, _)
        ));
    }

    /// A final reply that was already there before the message was sent
    /// answers nothing we sent: a protocol error, never a delivery.
    #[test]
    fn a_reply_sent_before_the_message_is_a_protocol_error() {
        for ehlo in ["250 mx\r\n", "250-mx\r\n250 PIPELINING\r\n"] {
            let mut c = client_segments(
                Protocol::Smtp,
                &[
                    ehlo,
                    "250 ok\r\n250 ok\r\n",
                    "354 go\r\n250 queued before the data\r\n",
                ],
            );
            c.hello("me").unwrap();
            let e = c.send("s@x", &["a@x"], b"secret\n").unwrap_err();
            assert_eq!(e.kind(), Kind::Temporary);
            assert!(e.to_string().contains("before"), "{e}");
            assert!(!c.data_was_sent());
            let w = c.into_inner().sent().text();
            assert!(!w.contains("secret"), "{w}");
        }
        // Replies nobody asked for, before a command: out of step.
        let mut c = client_segments(Protocol::Smtp, &["220 hi\r\n250 extra\r\n", "250 mx\r\n"]);
        c.greeting().unwrap();
        assert_eq!(c.hello("me").unwrap_err().kind(), Kind::Temporary);
    }

    /// What the `smtp_stream` fuzz target checks, on streams built from
    /// reply fragments (the fuzzer needs nightly): no panic, and nobody
    /// accepted without a 2xx.
    #[test]
    fn arbitrary_server_streams_never_panic_nor_accept_without_a_2xx() {
        let frags: &[&str] = &[
            "220 hi\r\n",
            "250-mx\r\n",
            "250-PIPELINING\r\n",
            "250-AUTH LOGIN\r\n",
            "250 SIZE 10\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "334 VXNlcg==\r\n",
            "235 ok\r\n",
            "451 later\r\n",
            "550 no\r\n",
            "221 bye\r\n",
            "2",
            "\r\n",
            "\n",
            "999 x\r\n",
            "250-",
            "\x1b[31m",
            "\u{9b}",
            " ",
        ];
        let mut noise = crate::proto::script::Noise::new(0x9e37_79b9_7f4a_7c15, frags);
        for _ in 0..3000 {
            let segs = noise.segments(24);
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let proto = if noise.next().is_multiple_of(2) {
                Protocol::Smtp
            } else {
                Protocol::Lmtp
            };
            let mut c = client_segments(proto, &segs);
            if c.greeting().is_err() || c.hello("me").is_err() {
                continue;
            }
            if noise.next().is_multiple_of(2)
                && c.auth(Mechanism::Login, "u", &Secret::new("p")).is_err()
            {
                continue;
            }
            if let Ok(o) = c.send("s@x", &["a@x", "b@x"], b"x\n") {
                for r in &o.recipients {
                    if let Status::Accepted(rep) = &r.status {
                        assert!(rep.is_success(), "{segs:?}: {rep:?}");
                    }
                }
            }
            let _ = c.quit();
        }
    }

    #[test]
    fn a_message_over_the_announced_size_is_refused_without_sending() {
        let mut c = client(Protocol::Smtp, "250-mx\r\n250 SIZE 10\r\n");
        c.hello("me").unwrap();
        let o = c.send("s@x", &["a@x"], b"0123456789abcdef\n").unwrap();
        assert_eq!(o.worst(), Some(Kind::Unavailable));
        let w = c.into_inner().sent().text();
        assert_eq!(w, "EHLO me\r\n");
    }
}
