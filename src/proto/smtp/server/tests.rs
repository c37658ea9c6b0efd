//! The server's unit tests over an in-memory client: input in segments
//! (each arrives whole, as one TCP segment would), an optional read
//! failure, a lazily generated huge body, the replies captured, and a fake
//! STARTTLS that records where in the dialogue it happened.

#![allow(clippy::field_reassign_with_default)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;

use super::*;

enum Seg {
    Bytes(Vec<u8>),
    Fail(io::ErrorKind),
    /// `n` octets of 78-`x` lines, made as they are read.
    Lines(u64),
}

#[derive(Default)]
struct Shared {
    out: Vec<u8>,
    /// Output length when each start_tls ran.
    upgrades: Vec<usize>,
}

struct Mem {
    input: VecDeque<Seg>,
    shared: Rc<RefCell<Shared>>,
    tls: bool,
    /// Segments that arrive after the TLS handshake.
    after_tls: Option<VecDeque<Seg>>,
}

impl Read for Mem {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self.input.front_mut() {
            None => Ok(0),
            Some(Seg::Fail(k)) => {
                let k = *k;
                self.input.pop_front();
                Err(io::Error::new(k, "scripted"))
            }
            Some(Seg::Bytes(s)) => {
                let n = s.len().min(b.len());
                b[..n].copy_from_slice(&s[..n]);
                s.drain(..n);
                if s.is_empty() {
                    self.input.pop_front();
                }
                Ok(n)
            }
            Some(Seg::Lines(left)) => {
                let n = (b.len() as u64).min(*left) as usize;
                let start = *left;
                for (i, x) in b[..n].iter_mut().enumerate() {
                    // Position from the end, so the stream ends on CRLF.
                    let pos = (start - i as u64) % 80;
                    *x = match pos {
                        2 => b'\r',
                        1 => b'\n',
                        _ => b'x',
                    };
                }
                *left -= n as u64;
                if *left == 0 {
                    self.input.pop_front();
                }
                Ok(n)
            }
        }
    }
}

impl Write for Mem {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.shared.borrow_mut().out.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Exchange for Mem {
    fn is_tls(&self) -> bool {
        self.tls
    }
}

impl Upgrade for Mem {
    fn start_tls(mut self) -> Result<Self> {
        let mut sh = self.shared.borrow_mut();
        let at = sh.out.len();
        sh.upgrades.push(at);
        drop(sh);
        self.tls = true;
        // What the client sent in plain text and the server did not read
        // is still in flight at the handshake; a real TLS layer would take
        // it for a broken record. Here it is dropped like the server's
        // buffer, and the client's TLS segments follow.
        self.input = self.after_tls.take().unwrap_or_default();
        Ok(self)
    }
    fn tls_info(&self) -> Option<TlsInfo> {
        self.tls.then(|| TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
        })
    }
}

#[derive(Default)]
struct Rec {
    delivered: Vec<(Transaction, Vec<u8>)>,
    rcpt_asked: Vec<(String, Option<String>)>,
    auth_asked: Vec<(String, Vec<u8>)>,
    ended: Vec<Vec<Reply>>,
    /// The replies deliver gives (default: one 250 per recipient).
    answer: Option<Vec<Reply>>,
    /// Recipients the backend refuses with 550 5.1.1.
    unknown: Vec<String>,
}

impl Backend for Rec {
    fn rcpt(
        &mut self,
        _: &Session,
        tx: &Transaction,
        rcpt: &str,
    ) -> std::result::Result<(), Reply> {
        self.rcpt_asked
            .push((rcpt.to_string(), tx.rcpt_source_route.clone()));
        if self.unknown.iter().any(|u| u == rcpt) {
            return Err(reply(550, "5.1.1", "no such user"));
        }
        Ok(())
    }
    fn auth(&mut self, user: &str, password: &[u8]) -> AuthVerdict {
        self.auth_asked.push((user.to_string(), password.to_vec()));
        match (user, password) {
            ("bob", b"secret") => AuthVerdict::Ok,
            ("tmp", _) => AuthVerdict::Temporary,
            _ => AuthVerdict::Bad,
        }
    }
    fn deliver(&mut self, _: &Session, tx: &Transaction, message: &[u8]) -> Vec<Reply> {
        self.delivered.push((tx.clone(), message.to_vec()));
        self.answer.clone().unwrap_or_else(|| {
            tx.rcpts
                .iter()
                .map(|_| reply(250, "2.0.0", "stored"))
                .collect()
        })
    }
    fn transaction_end(&mut self, _: &Session, _: &Transaction, replies: &[Reply]) {
        self.ended.push(replies.to_vec());
    }
}

fn settings() -> Settings {
    Settings {
        protocol: Protocol::Smtp,
        hostname: "mx.example".into(),
        limits: Limits::default(),
        bare_lf: BareLf::Normalize,
        starttls: false,
        auth: false,
    }
}

struct Run {
    out: String,
    rec: Rec,
    summary: Summary,
    upgrades: Vec<usize>,
}

impl Run {
    /// The reply lines' codes, in order (continuation lines skipped).
    fn codes(&self) -> Vec<u16> {
        self.out
            .split("\r\n")
            .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
            .filter_map(|l| l[..3].parse().ok())
            .collect()
    }
}

fn run_with(s: &Settings, rec: Rec, segs: Vec<Seg>, after_tls: Option<Vec<Seg>>, tls: bool) -> Run {
    let shared = Rc::new(RefCell::new(Shared::default()));
    let mem = Mem {
        input: segs.into(),
        shared: shared.clone(),
        tls,
        after_tls: after_tls.map(Into::into),
    };
    let mut rec = rec;
    let summary = serve(mem, s, Peer::default(), &mut rec).unwrap();
    let sh = shared.borrow();
    Run {
        out: String::from_utf8_lossy(&sh.out).into_owned(),
        rec,
        summary,
        upgrades: sh.upgrades.clone(),
    }
}

fn run(s: &Settings, segs: &[&[u8]]) -> Run {
    let segs = segs.iter().map(|s| Seg::Bytes(s.to_vec())).collect();
    run_with(s, Rec::default(), segs, None, false)
}

const ENVELOPE: &[u8] = b"EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@mx.example>\r\n";

#[test]
fn one_message_is_stored_with_a_received_header_and_250() {
    let r = run(
        &settings(),
        &[
            ENVELOPE,
            b"DATA\r\n",
            b"Subject: hi\r\n\r\n..dotted\r\nbody\r\n.\r\n",
            b"QUIT\r\n",
        ],
    );
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 354, 250, 221],
        "{}",
        r.out
    );
    assert!(
        r.out.starts_with("220 mx.example ESMTP postline\r\n"),
        "{}",
        r.out
    );
    for cap in [
        "PIPELINING",
        "SIZE 36700160",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "CHUNKING",
    ] {
        assert!(
            r.out.contains(&format!("250-{cap}\r\n")) || r.out.contains(&format!("250 {cap}\r\n")),
            "{cap}: {}",
            r.out
        );
    }
    assert!(
        !r.out.contains("STARTTLS") && !r.out.contains("AUTH"),
        "{}",
        r.out
    );
    assert_eq!(r.rec.delivered.len(), 1);
    let (tx, msg) = &r.rec.delivered[0];
    assert_eq!(tx.mail_from, "a@x.example");
    assert_eq!(tx.rcpts, vec!["b@mx.example"]);
    let msg = String::from_utf8_lossy(msg);
    assert!(
        msg.starts_with("Received: from c.example\r\n\tby mx.example (postline) with ESMTP id "),
        "{msg}"
    );
    assert!(
        msg.ends_with("\r\nSubject: hi\r\n\r\n.dotted\r\nbody\r\n"),
        "{msg}"
    );
    assert_eq!(r.summary.accepted, 1);
    assert_eq!(r.summary.aborted, None);
    assert_eq!(r.rec.ended.len(), 1);
}

/// The smuggling shapes of the SMTP smuggling research (SEC Consult 2023)
/// as end-of-data candidates after the first message.
const SHAPES: &[(&str, &[u8])] = &[
    ("lflf", b"\n.\n"),
    ("crcr", b"\r.\r"),
    ("crlf", b"\r.\n"),
    ("lfcr", b"\n.\r"),
    ("lfcrlf", b"\n.\r\n"),
    ("crlflf", b"\r\n.\n"),
    ("crcrlf", b"\r.\r\n"),
    ("crlfcr", b"\r\n.\r"),
    ("nullbefore", b"\r\n\x00.\r\n"),
    ("nullafter", b"\r\n.\x00\r\n"),
    ("lflfcrlf", b"\n.\n\r\n"),
    ("crcrcrlf", b"\r\r.\r\r\n"),
];

#[test]
fn no_smuggling_shape_stores_two_messages() {
    for bare in [BareLf::Normalize, BareLf::Reject] {
        for (name, shape) in SHAPES {
            for split in [false, true] {
                let mut s = settings();
                s.bare_lf = bare;
                let mut body = b"Subject: one\r\n\r\nmsg1".to_vec();
                body.extend_from_slice(shape);
                body.extend_from_slice(
                    b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@mx.example>\r\nDATA\r\nSubject: two\r\n\r\nmsg2\r\n.\r\nQUIT\r\n",
                );
                let mut segs: Vec<&[u8]> = vec![ENVELOPE, b"DATA\r\n"];
                let (a, b) = body.split_at(17);
                if split {
                    segs.push(a);
                    segs.push(b);
                } else {
                    segs.push(&body);
                }
                let r = run(&s, &segs);
                assert!(r.rec.delivered.len() <= 1, "{name}: {}", r.out);
                assert!(
                    r.rec
                        .rcpt_asked
                        .iter()
                        .all(|(a, _)| a != "victim@mx.example"),
                    "{name}: the smuggled RCPT ran: {}",
                    r.out
                );
                for (tx, msg) in &r.rec.delivered {
                    assert_eq!(tx.mail_from, "a@x.example", "{name}");
                    // The smuggled text is part of the one message.
                    assert!(
                        msg.windows(4).any(|w| w == b"msg2"),
                        "{name}: {:?}",
                        String::from_utf8_lossy(msg)
                    );
                    assert!(msg.ends_with(b"\r\nmsg2\r\n"), "{name}");
                }
                match bare {
                    BareLf::Normalize => {
                        assert_eq!(r.rec.delivered.len(), 1, "{name}: {}", r.out);
                        assert_eq!(
                            r.codes(),
                            vec![220, 250, 250, 250, 354, 250, 221],
                            "{name}: {}",
                            r.out
                        );
                    }
                    BareLf::Reject => {
                        let bare_in_shape =
                            shape.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n')
                                || shape.windows(2).any(|w| w[0] != b'\r' && w[1] == b'\n')
                                || shape[0] == b'\n'
                                || shape.last() == Some(&b'\r');
                        if bare_in_shape {
                            assert!(r.rec.delivered.is_empty(), "{name}: {}", r.out);
                            assert!(r.out.contains("550 5.6.11 "), "{name}: {}", r.out);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn pipelining_past_a_refused_data_never_runs_the_text_as_commands() {
    // The "pipelining" shape: the client sends the message without waiting
    // for 354; its one recipient is refused, so DATA is refused, and the
    // text behind it must not be read as commands.
    let mut rec = Rec::default();
    rec.unknown.push("nobody@mx.example".into());
    let segs = vec![Seg::Bytes(
        b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<nobody@mx.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@mx.example>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n"
            .to_vec(),
    )];
    let r = run_with(&settings(), rec, segs, None, false);
    assert!(r.rec.delivered.is_empty(), "{}", r.out);
    assert!(
        r.rec
            .rcpt_asked
            .iter()
            .all(|(a, _)| a != "victim@mx.example"),
        "{}",
        r.out
    );
    assert_eq!(r.codes(), vec![220, 250, 250, 550, 554], "{}", r.out);
    assert_eq!(
        r.summary.aborted.as_deref(),
        Some("improper pipelining after DATA")
    );
}

#[test]
fn a_transaction_pipelined_behind_the_final_dot_is_never_run() {
    // smtpsmug's "pipelining" shape: a proper end of data with a whole
    // second transaction behind it, sent before the dot's reply. The first
    // message is answered; the rest is never executed: 421 and the end.
    let r = run(
        &settings(),
        &[
            ENVELOPE,
            b"DATA\r\n",
            b"Subject: one\r\n\r\nmsg1\r\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@mx.example>\r\nDATA\r\nmsg2\r\n.\r\nQUIT\r\n",
        ],
    );
    assert_eq!(r.rec.delivered.len(), 1, "{}", r.out);
    assert!(
        r.rec
            .rcpt_asked
            .iter()
            .all(|(a, _)| a != "victim@mx.example"),
        "{}",
        r.out
    );
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 354, 250, 421],
        "{}",
        r.out
    );
    assert_eq!(
        r.summary.aborted.as_deref(),
        Some("improper pipelining after the end of data")
    );
    // A lone QUIT behind the dot is what many clients send: fine.
    let r = run(
        &settings(),
        &[
            ENVELOPE,
            b"DATA\r\n",
            b"Subject: one\r\n\r\nmsg1\r\n.\r\nquit\r\n",
        ],
    );
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 354, 250, 221],
        "{}",
        r.out
    );
    assert_eq!(r.summary.aborted, None);
}

#[test]
fn pipelined_commands_get_their_replies_in_order_in_one_write() {
    let r = run(
        &settings(),
        &[b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<bad>\r\nRCPT TO:<c@y>\r\nNOOP\r\nRSET\r\nVRFY x\r\nFROB\r\nQUIT\r\n"],
    );
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 501, 250, 250, 250, 252, 500, 221],
        "{}",
        r.out
    );
    assert_eq!(
        r.rec.ended,
        vec![Vec::<Reply>::new()],
        "RSET ends the transaction"
    );
}

fn tls_settings() -> Settings {
    let mut s = settings();
    s.starttls = true;
    s.auth = true;
    s
}

#[test]
fn starttls_drops_what_was_pipelined_behind_it() {
    let segs = vec![Seg::Bytes(
        b"EHLO c\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@mx.example>\r\n".to_vec(),
    )];
    let after = vec![Seg::Bytes(
        b"MAIL FROM:<a@x>\r\nEHLO c\r\nQUIT\r\n".to_vec(),
    )];
    let r = run_with(&tls_settings(), Rec::default(), segs, Some(after), false);
    assert_eq!(r.codes(), vec![220, 250, 220, 503, 250, 221], "{}", r.out);
    assert!(r.out.contains("250 STARTTLS\r\n"), "{}", r.out);
    // The handshake came right after the 220, and nothing was answered
    // for the injected commands.
    let first = r.out.find("220 2.0.0").unwrap();
    let line_end = first + r.out[first..].find("\r\n").unwrap() + 2;
    assert_eq!(r.upgrades, vec![line_end], "{}", r.out);
    assert!(r.rec.rcpt_asked.is_empty());
    // After TLS: no STARTTLS, but AUTH.
    let after_tls = &r.out[line_end..];
    assert!(
        !after_tls.contains("STARTTLS") && after_tls.contains("AUTH PLAIN LOGIN"),
        "{after_tls}"
    );
}

#[test]
fn starttls_twice_or_not_offered_is_refused() {
    let r = run(&settings(), &[b"EHLO c\r\nSTARTTLS\r\nQUIT\r\n"]);
    assert_eq!(r.codes(), vec![220, 250, 502, 221], "{}", r.out);
    let segs = vec![Seg::Bytes(b"EHLO c\r\nSTARTTLS\r\nQUIT\r\n".to_vec())];
    let r = run_with(&tls_settings(), Rec::default(), segs, None, true);
    assert_eq!(r.codes(), vec![220, 250, 503, 221], "{}", r.out);
    assert!(r.upgrades.is_empty());
}

#[test]
fn bdat_reads_exactly_its_octets_even_when_refusing() {
    // No MAIL: refused, but the 11 octets (which look like a command) are
    // consumed, not run.
    let r = run(
        &settings(),
        &[
            b"EHLO c\r\nBDAT 12\r\nRSET\r\nNOOP\r\n",
            b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 17\r\nSubj",
            b"ect: x\r\n\r\nhi BDAT 3 LAST\r\nyo\n",
            b"QUIT\r\n",
        ],
    );
    assert_eq!(
        r.codes(),
        vec![220, 250, 503, 250, 250, 250, 250, 221],
        "{}",
        r.out
    );
    assert_eq!(r.rec.delivered.len(), 1);
    let msg = String::from_utf8_lossy(&r.rec.delivered[0].1).into_owned();
    assert!(msg.ends_with("\r\nSubject: x\r\n\r\nhi yo\r\n"), "{msg:?}");
    assert!(msg.contains(" with ESMTP id "), "{msg}");
}

#[test]
fn bdat_over_the_size_is_consumed_and_refused_then_data_mixing_is_refused() {
    let mut s = settings();
    s.limits.max_size = 10;
    let r = run(
        &s,
        &[ENVELOPE, b"BDAT 8\r\n12345678BDAT 8\r\n12345678BDAT 2 LAST\r\nxxNOOP\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 1\r\nxDATA\r\n", b"RSET\r\nQUIT\r\n"],
    );
    assert_eq!(
        r.codes(),
        vec![
            220, 250, 250, 250, 250, 552, 552, 250, 250, 250, 250, 503, 250, 221
        ],
        "{}",
        r.out
    );
    assert!(r.rec.delivered.is_empty());
}

#[test]
fn lmtp_answers_a_refused_bdat_last_for_every_recipient() {
    let mut s = settings();
    s.protocol = Protocol::Lmtp;
    s.limits.max_size = 4;
    let r = run(
        &s,
        &[b"LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nBDAT 5\r\n12345BDAT 1 LAST\r\nxQUIT\r\n"],
    );
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 250, 552, 552, 552, 221],
        "{}",
        r.out
    );
    assert!(r.rec.delivered.is_empty());
}

#[test]
fn a_bdat_count_that_cannot_be_read_ends_the_session() {
    let r = run(&settings(), &[ENVELOPE, b"BDAT x\r\nQUIT\r\n"]);
    assert_eq!(r.codes(), vec![220, 250, 250, 250, 501], "{}", r.out);
    assert_eq!(r.summary.aborted.as_deref(), Some("BDAT syntax"));
}

#[test]
fn size_limits_at_mail_and_data() {
    let mut s = settings();
    s.limits.max_size = 100;
    let big = format!("Subject: x\r\n\r\n{}\r\n.\r\n", "y".repeat(200));
    let r = run(
        &s,
        &[b"EHLO c\r\nMAIL FROM:<a@x> SIZE=101\r\nMAIL FROM:<a@x> SIZE=100\r\nRCPT TO:<b@y>\r\nDATA\r\n", big.as_bytes(), b"NOOP\r\nQUIT\r\n"],
    );
    assert_eq!(
        r.codes(),
        vec![220, 250, 552, 250, 250, 354, 552, 250, 221],
        "{}",
        r.out
    );
    assert!(r.out.contains("552 5.3.4 "), "{}", r.out);
    assert!(r.out.contains("250-SIZE 100\r\n"), "{}", r.out);
    assert!(r.rec.delivered.is_empty());
    assert_eq!(r.summary.refused, 1);
}

#[test]
fn a_long_command_line_is_refused_and_the_session_goes_on() {
    let long = format!("NOOP {}\r\n", "z".repeat(600));
    let huge = format!("NOOP {}\r\n", "z".repeat(200_000));
    let r = run(
        &settings(),
        &[
            b"EHLO c\r\n",
            long.as_bytes(),
            huge.as_bytes(),
            b"NOOP\r\nQUIT\r\n",
        ],
    );
    assert_eq!(r.codes(), vec![220, 250, 500, 500, 250, 221], "{}", r.out);
    assert!(r.out.contains("500 5.5.2 line too long"), "{}", r.out);
}

#[test]
fn recipients_are_capped() {
    let mut s = settings();
    s.limits.max_recipients = 2;
    let r = run(&s, &[b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nRCPT TO:<d@y>\r\nQUIT\r\n"]);
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 250, 452, 221],
        "{}",
        r.out
    );
    assert!(r.out.contains("452 4.5.3 "), "{}", r.out);
}

#[test]
fn too_many_errors_end_the_session_with_421() {
    let mut s = settings();
    s.limits.max_errors = 3;
    let r = run(&s, &[b"FROB\r\nFROB\r\nFROB\r\nNOOP\r\n"]);
    assert_eq!(r.codes(), vec![220, 500, 500, 500, 421], "{}", r.out);
    assert_eq!(r.summary.aborted.as_deref(), Some("too many errors"));
}

#[test]
fn a_mail_loop_is_refused() {
    let mut s = settings();
    s.limits.max_received = 2;
    let r = run(
        &s,
        &[
            ENVELOPE,
            b"DATA\r\nReceived: a\r\nreceived: b\r\nRECEIVED: c\r\n\r\nbody\r\n.\r\n",
            b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nReceived: a\r\nReceived: b\r\n\r\nReceived: c\r\n.\r\nQUIT\r\n",
        ],
    );
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 354, 554, 250, 250, 354, 250, 221],
        "{}",
        r.out
    );
    assert!(r.out.contains("554 5.4.6 "), "{}", r.out);
    assert_eq!(r.rec.delivered.len(), 1);
}

#[test]
fn auth_only_over_tls_and_its_flows() {
    use base64::Engine as _;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    // Plain text: AUTH is not offered and refused.
    let r = run(
        &tls_settings(),
        &[b"EHLO c\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\nQUIT\r\n"],
    );
    assert_eq!(r.codes(), vec![220, 250, 538, 221], "{}", r.out);
    assert!(r.rec.auth_asked.is_empty());
    let plain = format!("AUTH PLAIN {}\r\n", b64(b"\0bob\0secret"));
    let login = format!("AUTH LOGIN\r\n{}\r\n{}\r\n", b64(b"bob"), b64(b"wrong"));
    let cont = format!("AUTH PLAIN\r\n{}\r\n", b64(b"\0tmp\0x"));
    let script = format!(
        "EHLO c\r\n{login}AUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n!!!\r\n{cont}{plain}{plain}MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"
    );
    let segs = vec![Seg::Bytes(script.into_bytes())];
    let r = run_with(&tls_settings(), Rec::default(), segs, None, true);
    assert_eq!(
        r.codes(),
        vec![
            220, 250, 334, 334, 535, 334, 501, 334, 501, 334, 454, 235, 503, 250, 250, 354, 250,
            221
        ],
        "{}",
        r.out
    );
    assert!(r.out.contains("334 VXNlcm5hbWU6\r\n") && r.out.contains("334 UGFzc3dvcmQ6\r\n"));
    assert!(r.out.contains("235 2.7.0 ") && r.out.contains("535 5.7.8 "));
    assert_eq!(r.rec.auth_asked.len(), 3);
    let msg = String::from_utf8_lossy(&r.rec.delivered[0].1).into_owned();
    assert!(msg.contains(" with ESMTPSA id "), "{msg}");
    assert!(
        msg.contains("(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384)"),
        "{msg}"
    );
    // The password is nowhere in what the server wrote.
    assert!(!r.out.contains("secret") && !r.out.contains(&b64(b"\0bob\0secret")[4..]));
}

#[test]
fn an_auth_line_over_the_limit_is_refused_and_the_session_goes_on() {
    let long = format!("AUTH PLAIN\r\n{}\r\nNOOP\r\nQUIT\r\n", "A".repeat(20_000));
    let segs = vec![
        Seg::Bytes(b"EHLO c\r\n".to_vec()),
        Seg::Bytes(long.into_bytes()),
    ];
    let r = run_with(&tls_settings(), Rec::default(), segs, None, true);
    assert_eq!(r.codes(), vec![220, 250, 334, 500, 250, 221], "{}", r.out);
    assert!(r.out.contains("500 5.5.6 "), "{}", r.out);
    assert!(r.rec.auth_asked.is_empty());
}

#[test]
fn lmtp_gives_one_reply_per_recipient_and_pads_missing_ones() {
    let mut s = settings();
    s.protocol = Protocol::Lmtp;
    let mut rec = Rec::default();
    rec.answer = Some(vec![reply(250, "2.0.0", "ok"), reply(452, "4.2.2", "full")]);
    rec.unknown.push("x@y".into());
    let segs = vec![Seg::Bytes(
        b"EHLO c\r\nLHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<x@y>\r\nRCPT TO:<c@y>\r\nRCPT TO:<d@y>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n".to_vec(),
    )];
    let r = run_with(&s, rec, segs, None, false);
    assert!(
        r.out.starts_with("220 mx.example LMTP postline\r\n"),
        "{}",
        r.out
    );
    assert_eq!(
        r.codes(),
        vec![
            220, 500, 250, 250, 250, 550, 250, 250, 354, 250, 452, 451, 221
        ],
        "{}",
        r.out
    );
    let msg = String::from_utf8_lossy(&r.rec.delivered[0].1).into_owned();
    assert!(msg.contains(" with LMTP id "), "{msg}");
    // SMTP refuses LHLO.
    let r = run(&settings(), &[b"LHLO c\r\nQUIT\r\n"]);
    assert_eq!(r.codes(), vec![220, 500, 221], "{}", r.out);
}

#[test]
fn the_final_reply_is_the_backends() {
    let mut rec = Rec::default();
    rec.answer = Some(vec![reply(451, "4.3.0", "try later")]);
    let segs = vec![Seg::Bytes(
        [ENVELOPE, b"DATA\r\nhi\r\n.\r\nQUIT\r\n"].concat(),
    )];
    let r = run_with(&settings(), rec, segs, None, false);
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 354, 451, 221],
        "{}",
        r.out
    );
    assert_eq!(r.summary.accepted, 0);
    assert_eq!(r.summary.refused, 1);
    // A backend reply with a bad code or CRLF in it cannot break the wire.
    let mut rec = Rec::default();
    rec.answer = Some(vec![Reply {
        code: 250,
        enhanced: Some("2.0.0".into()),
        lines: vec!["ok\r\n250 smuggled".into()],
    }]);
    let segs = vec![Seg::Bytes(
        [ENVELOPE, b"DATA\r\nhi\r\n.\r\nQUIT\r\n"].concat(),
    )];
    let r = run_with(&settings(), rec, segs, None, false);
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 354, 250, 221],
        "{}",
        r.out
    );
    let mut rec = Rec::default();
    rec.answer = Some(vec![]);
    let segs = vec![Seg::Bytes(
        [ENVELOPE, b"DATA\r\nhi\r\n.\r\nQUIT\r\n"].concat(),
    )];
    let r = run_with(&settings(), rec, segs, None, false);
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 354, 451, 221],
        "{}",
        r.out
    );
}

#[test]
fn sequence_and_address_errors() {
    let r = run(
        &settings(),
        &[b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n", b"HELO c\r\nMAIL FROM:<a@x>\r\nMAIL FROM:<a@x>\r\nRCPT TO:<>\r\nRCPT TO:<b\x01@y>\r\nRCPT TO:<j\xc3\xb6rg@y>\r\nRCPT TO:<@r.example:b@y>\r\nRCPT TO:<postmaster>\r\nQUIT\r\n"],
    );
    assert_eq!(
        r.codes(),
        vec![
            220, 503, 503, 503, 250, 250, 503, 501, 501, 553, 250, 250, 221
        ],
        "{}",
        r.out
    );
    assert_eq!(
        r.rec.rcpt_asked,
        vec![
            ("b@y".to_string(), Some("@r.example".to_string())),
            ("postmaster".to_string(), None)
        ]
    );
    // SMTPUTF8 allows the non-ASCII address, and the Received says so.
    let r = run(
        &settings(),
        &["EHLO c\r\nMAIL FROM:<j\u{f6}rg@x> SMTPUTF8\r\nRCPT TO:<m\u{fc}ller@y>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n".as_bytes()],
    );
    assert_eq!(
        r.codes(),
        vec![220, 250, 250, 250, 354, 250, 221],
        "{}",
        r.out
    );
    let msg = String::from_utf8_lossy(&r.rec.delivered[0].1).into_owned();
    assert!(msg.contains(" with UTF8SMTP id "), "{msg}");
    assert!(r.rec.delivered[0].0.smtputf8);
}

#[test]
fn timeout_and_eof_end_the_session() {
    let segs = vec![
        Seg::Bytes(b"EHLO c\r\n".to_vec()),
        Seg::Fail(io::ErrorKind::WouldBlock),
    ];
    let r = run_with(&settings(), Rec::default(), segs, None, false);
    assert!(
        r.out.ends_with("421 4.4.2 timeout, closing\r\n"),
        "{}",
        r.out
    );
    assert_eq!(r.summary.aborted.as_deref(), Some("timeout"));
    // EOF in DATA: nothing stored, no 250 for it.
    let r = run(&settings(), &[ENVELOPE, b"DATA\r\nhalf a message\r\n"]);
    assert_eq!(r.codes(), vec![220, 250, 250, 250, 354], "{}", r.out);
    assert!(r.rec.delivered.is_empty());
    assert!(r.summary.aborted.is_some());
    assert_eq!(r.rec.ended, vec![Vec::<Reply>::new()]);
    // Another I/O error is the caller's to report.
    let shared = Rc::new(RefCell::new(Shared::default()));
    let mem = Mem {
        input: vec![Seg::Fail(io::ErrorKind::PermissionDenied)].into(),
        shared,
        tls: false,
        after_tls: None,
    };
    assert!(serve(mem, &settings(), Peer::default(), &mut Rec::default()).is_err());
}

#[test]
fn a_huge_message_is_read_past_in_bounded_memory() {
    let mut s = settings();
    s.limits.max_size = 1 << 20;
    let shared = Rc::new(RefCell::new(Shared::default()));
    let mem = Mem {
        input: vec![
            Seg::Bytes([ENVELOPE, b"DATA\r\n"].concat()),
            Seg::Lines(200 << 20),
            Seg::Bytes(b".\r\nQUIT\r\n".to_vec()),
        ]
        .into(),
        shared: shared.clone(),
        tls: false,
        after_tls: None,
    };
    let mut rec = Rec::default();
    let summary = serve(mem, &s, Peer::default(), &mut rec).unwrap();
    let out = String::from_utf8_lossy(&shared.borrow().out).into_owned();
    assert!(
        out.contains("552 5.3.4 ") && out.ends_with("221 2.0.0 bye\r\n"),
        "{out}"
    );
    assert!(rec.delivered.is_empty());
    assert_eq!(summary.refused, 1);
    // The reader itself: what it holds stays under the limit.
    let mut reader = crate::proto::smtp::data::DataReader::dot(1 << 20, 1000, BareLf::Normalize);
    let line = [b"x".repeat(78), b"\r\n".to_vec()].concat();
    let chunk = line.repeat(800);
    let mut max_cap = 0;
    for _ in 0..(3 << 20) / chunk.len() {
        assert_eq!(reader.feed(&chunk), chunk.len());
        max_cap = max_cap.max(reader.capacity());
    }
    assert!(reader.is_over());
    assert!(max_cap <= (1 << 20) + 4096, "{max_cap}");
    assert_eq!(reader.capacity(), 0);
    assert_eq!(reader.feed(b".\r\nNOOP"), 3);
    assert!(reader.is_done());
}

#[test]
fn no_panic_on_arbitrary_client_bytes() {
    let frags = [
        "EHLO c\r\n",
        "HELO c\r\n",
        "LHLO c\r\n",
        "MAIL FROM:<a@x>\r\n",
        "MAIL FROM:<>\r\n",
        "RCPT TO:<b@y>\r\n",
        "DATA\r\n",
        "BDAT 3\r\n",
        "BDAT 2 LAST\r\n",
        "BDAT 99999999999\r\n",
        "RSET\r\n",
        "NOOP\r\n",
        "STARTTLS\r\n",
        "AUTH PLAIN\r\n",
        "AUTH LOGIN\r\n",
        "*\r\n",
        "AGJvYgBzZWNyZXQ=\r\n",
        "\r\n.\r\n",
        ".\r\n",
        "\n.\n",
        "\r",
        "\n",
        ".",
        "\0",
        "x",
        "Received: x\r\n",
        "\u{9b}",
        " ",
        "QUIT\r\n",
        "SIZE=1",
        "<",
        ">",
        ":",
    ];
    let mut noise = crate::proto::script::Noise::new(0x2545_f491_4f6c_dd1d, &frags);
    for _ in 0..3000 {
        let segs = noise.segments(30);
        let mut s = tls_settings();
        s.limits.max_size = 64;
        s.limits.max_line = 40;
        if noise.next().is_multiple_of(2) {
            s.protocol = Protocol::Lmtp;
        }
        if noise.next().is_multiple_of(2) {
            s.bare_lf = BareLf::Reject;
        }
        let tls = noise.next().is_multiple_of(3);
        let segs: Vec<Seg> = segs
            .into_iter()
            .map(|x| Seg::Bytes(x.into_bytes()))
            .collect();
        let after = noise
            .segments(8)
            .into_iter()
            .map(|x| Seg::Bytes(x.into_bytes()))
            .collect();
        let r = run_with(&s, Rec::default(), segs, Some(after), tls);
        // Every reply line is well formed, and a 250 after a dot only
        // follows a delivery.
        for l in r.out.split_terminator("\r\n") {
            assert!(
                l.len() >= 3 && l.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "{l:?}"
            );
        }
        assert!(r.summary.accepted as usize <= r.rec.delivered.len());
    }
}
