//! The POP3 client library (`src/proto/pop3.rs`) against the harness's real
//! Dovecot: plain, STLS and implicit TLS, every login, listings, pipelined
//! RETR byte for byte against the files on disk, DELE + QUIT read back over
//! IMAP (an independent reader).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postline::exit::{Error, Kind};
use postline::proto::pop3::{Login, Pop3};
use postline::proto::sasl::{Mechanism, Secret};
use postline::proto::tls::{TlsMode, TlsOptions};
use postline::proto::transcript::Transcript;

use crate::harness::*;

/// A Dovecot with user `alice` whose Maildir holds `n` messages written as
/// files (LF line ends), numbered by an `X-Seq` header.
struct Server {
    _t: TempDir,
    dc: Dovecot,
    /// The messages as written to disk, indexed by their X-Seq.
    files: Vec<Vec<u8>>,
}

/// Message `i`: headers, then a body chosen by `i` among the shapes that
/// matter to POP3 (lines that are or start with dots, long lines, sizes
/// from a few bytes to a few hundred kilobytes).
fn message(i: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender{i}@example.test\nTo: alice@example.test\nSubject: message {i}\nMessage-ID: <{i}@pop3.test>\nX-Seq: {i}\n\n"
    )
    .into_bytes();
    match i % 7 {
        0 => m.extend_from_slice(b".\n..\n...\n.starts with a dot\n..two dots\n. space\nend\n"),
        1 => m.extend_from_slice(b"short\n"),
        2 => {
            for l in 0..2000 {
                m.extend_from_slice(format!("line {l} of a longer body, {i}\n").as_bytes());
                if l % 100 == 0 {
                    m.extend_from_slice(b".\n");
                }
            }
        }
        3 => {
            // One line of 300 kB (unwrapped base64 or HTML happens).
            m.extend(std::iter::repeat_n(b'x', 300_000));
            m.extend_from_slice(b"\n.\n");
        }
        4 => m.extend_from_slice(b"ends with a dot line\n.\n"),
        5 => m.extend_from_slice(b"\n\n\n..\n\n"),
        _ => m.extend_from_slice(b"From the start\n>From quoted\nbody\n"),
    }
    m
}

fn setup(n: usize) -> Option<Server> {
    if skip_unless(is_root(), "Dovecot needs root") {
        return None;
    }
    let t = TempDir::new();
    let md = t.join("mail/alice");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let m = message(i);
        std::fs::write(
            md.join("new")
                .join(format!("{}.M{i}P1.pop3test", 1_700_000_000 + i)),
            &m,
        )
        .unwrap();
        files.push(m);
    }
    make_readable(&md);
    let mut dc = Dovecot::start(&t.join("dovecot"));
    dc.add_user("alice", &md);
    Some(Server { _t: t, dc, files })
}

impl Server {
    fn connect(&self, mode: TlsMode) -> Pop3 {
        self.try_connect(mode, &self.trusting(), Transcript::off())
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.dc.logs()))
    }

    fn try_connect(&self, mode: TlsMode, tls: &TlsOptions, t: Transcript) -> Result<Pop3, Error> {
        let port = match mode {
            TlsMode::Implicit => self.dc.pop3s_port,
            _ => self.dc.pop3_port,
        };
        Pop3::connect("127.0.0.1", port, mode, tls, Duration::from_secs(30), t)
    }

    /// TLS options trusting the harness's self-signed certificate.
    fn trusting(&self) -> TlsOptions {
        TlsOptions {
            ca_file: Some(self.dc.cert.clone()),
            ..TlsOptions::default()
        }
    }

    fn logged_in(&self, mode: TlsMode) -> Pop3 {
        let mut p = self.connect(mode);
        p.login("alice", &pass(), Login::Auto)
            .unwrap_or_else(|e| panic!("login: {e}\n{}", self.dc.logs()));
        p
    }

    /// The X-Seq numbers of what the server holds, read over IMAP.
    fn remaining(&self) -> BTreeSet<usize> {
        self.dc
            .imap_fetch_all("alice")
            .iter()
            .map(|m| seq_of(m))
            .collect()
    }
}

fn pass() -> Secret {
    Secret::new(Dovecot::PASSWORD)
}

/// The X-Seq header's number.
fn seq_of(m: &[u8]) -> usize {
    let text = String::from_utf8_lossy(&m[..m.len().min(4096)]);
    text.lines()
        .find_map(|l| l.strip_prefix("X-Seq: "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no X-Seq in {:?}", &text[..text.len().min(300)]))
}

/// A transcript sink the test can read back.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The certificate's SHA-256 fingerprint, as openssl computes it.
fn openssl_fingerprint(cert: &Path) -> [u8; 32] {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl x509");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.trim().rsplit('=').next().expect("fingerprint");
    postline::proto::tls::parse_fingerprint(hex).expect("openssl's fingerprint parses")
}

#[test]
fn plain_session_capabilities_and_listings_agree() {
    let Some(s) = setup(20) else { return };
    let mut p = s.connect(TlsMode::None);
    assert!(!p.is_tls());
    let c = p.capabilities().clone();
    assert!(
        c.known && c.pipelining && c.uidl && c.top && c.stls && c.user,
        "{c:?}"
    );
    assert!(c.sasl.iter().any(|m| m == "PLAIN"), "{c:?}");
    p.login("alice", &pass(), Login::User).unwrap();
    let (count, total) = p.stat().unwrap();
    assert_eq!(count, 20);
    let list = p.list().unwrap();
    let uidl = p.uidl().unwrap();
    assert_eq!(
        list.iter().map(|x| x.0).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<u32>>()
    );
    assert_eq!(
        uidl.iter().map(|x| x.0).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<u32>>()
    );
    assert_eq!(list.iter().map(|x| x.1).sum::<u64>(), total);
    let uids: BTreeSet<&String> = uidl.iter().map(|x| &x.1).collect();
    assert_eq!(uids.len(), 20, "unique ids are unique: {uidl:?}");
    // LIST sizes are the CRLF sizes of the files (RFC 1939: exact octets).
    let mut crlf_sizes: Vec<u64> = s
        .files
        .iter()
        .map(|f| (f.len() + f.iter().filter(|&&b| b == b'\n').count()) as u64)
        .collect();
    let mut listed: Vec<u64> = list.iter().map(|x| x.1).collect();
    crlf_sizes.sort();
    listed.sort();
    assert_eq!(listed, crlf_sizes);
    // TOP 0: the header and the blank line after it, nothing more.
    let head = p.top(1, 0).unwrap();
    let file = &s.files[seq_of(&head)];
    let end = file.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    assert_bytes_eq(&crlf_to_lf(&head), &file[..end], "TOP 1 0");
    // The same ids from a second session (what --keep relies on).
    p.quit().unwrap();
    let mut p = s.logged_in(TlsMode::None);
    assert_eq!(p.uidl().unwrap(), uidl);
    p.quit().unwrap();
}

#[test]
fn stls_and_implicit_tls_verify_the_certificate() {
    let Some(s) = setup(3) else { return };
    // STLS, certificate trusted through ca_file, SASL PLAIN.
    let sink = Sink::default();
    let mut p = s
        .try_connect(
            TlsMode::Starttls,
            &s.trusting(),
            Transcript::to(Box::new(sink.clone()), ""),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", s.dc.logs()));
    assert!(p.is_tls());
    assert!(!p.capabilities().stls, "{:?}", p.capabilities());
    assert!(p.capabilities().known);
    p.login("alice", &pass(), Login::Sasl(Mechanism::Plain))
        .unwrap();
    assert_eq!(p.stat().unwrap().0, 3);
    p.quit().unwrap();
    let t = sink.text();
    assert!(
        t.contains("C: STLS\n") && t.contains("-- TLS established"),
        "{t}"
    );
    assert!(t.contains("C: AUTH PLAIN <redacted>"), "{t}");
    assert!(!t.contains(Dovecot::PASSWORD), "{t}");

    // Implicit TLS, SASL LOGIN.
    let mut p = s.connect(TlsMode::Implicit);
    assert!(p.is_tls());
    p.login("alice", &pass(), Login::Sasl(Mechanism::Login))
        .unwrap();
    assert_eq!(p.list().unwrap().len(), 3);
    p.quit().unwrap();

    // Not trusted: the self-signed certificate is refused, both ways.
    for mode in [TlsMode::Implicit, TlsMode::Starttls] {
        let e = s
            .try_connect(mode, &TlsOptions::default(), Transcript::off())
            .err()
            .expect("an untrusted certificate is refused");
        assert_eq!(e.kind(), Kind::Temporary, "{e}");
        assert!(e.to_string().contains("TLS handshake"), "{e}");
    }

    // Pinned: the right fingerprint is accepted without a CA, a wrong one
    // refused even with the CA.
    let fp = openssl_fingerprint(&s.dc.cert);
    let pinned = TlsOptions {
        fingerprint: Some(fp),
        ..TlsOptions::default()
    };
    let p = s
        .try_connect(TlsMode::Implicit, &pinned, Transcript::off())
        .unwrap();
    p.quit().unwrap();
    let mut wrong = fp;
    wrong[0] ^= 1;
    let wrong = TlsOptions {
        fingerprint: Some(wrong),
        ..s.trusting()
    };
    let e = s
        .try_connect(TlsMode::Implicit, &wrong, Transcript::off())
        .err()
        .expect("a wrong pin is refused");
    assert_eq!(e.kind(), Kind::Temporary);
    assert!(e.to_string().contains("does not match the pinned"), "{e}");
}

#[test]
fn wrong_password_is_an_auth_error_for_every_login() {
    let Some(s) = setup(1) else { return };
    let wrong = Secret::new("not-the-password");
    for how in [
        Login::Auto,
        Login::User,
        Login::Sasl(Mechanism::Plain),
        Login::Sasl(Mechanism::Login),
    ] {
        let mut p = s.connect(TlsMode::None);
        let e = p.login("alice", &wrong, how).unwrap_err();
        assert_eq!(e.kind(), Kind::Auth, "{how:?}: {e}");
        assert!(!e.to_string().contains("not-the-password"), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("127.0.0.1:{}", s.dc.pop3_port)),
            "{e}"
        );
    }
    // XOAUTH2 is not offered by this Dovecot: refused before sending.
    let mut p = s.connect(TlsMode::None);
    let e = p
        .login("alice", &pass(), Login::Sasl(Mechanism::XOAuth2))
        .unwrap_err();
    assert_eq!(e.kind(), Kind::Unavailable, "{e}");
    // The USER/PASS transcript shows the user, never the password.
    let sink = Sink::default();
    let mut p = s
        .try_connect(
            TlsMode::None,
            &TlsOptions::default(),
            Transcript::to(Box::new(sink.clone()), ""),
        )
        .unwrap();
    p.login("alice", &pass(), Login::User).unwrap();
    p.quit().unwrap();
    let t = sink.text();
    assert!(
        t.contains("C: USER alice\n") && t.contains("C: PASS <redacted>\n"),
        "{t}"
    );
    assert!(!t.contains(Dovecot::PASSWORD), "{t}");
}

/// Retrieve `msgnos` and check each against the file it came from.
fn retrieve_and_compare(s: &Server, p: &mut Pop3, msgnos: &[u32]) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    p.retr_many(msgnos, &mut |n, m| {
        order.push(n);
        assert!(m.ends_with(b"\r\n"), "message {n} keeps its CRLF ends");
        let seq = seq_of(&m);
        assert!(seen.insert(seq), "message {seq} twice");
        assert_bytes_eq(&crlf_to_lf(&m), &s.files[seq], &format!("message {seq}"));
        Ok(())
    })
    .unwrap_or_else(|e| panic!("retr_many: {e}\n{}", s.dc.logs()));
    assert_eq!(order, msgnos, "messages arrive in the order asked");
    seen
}

#[test]
fn retr_many_pipelined_returns_every_message_byte_identical() {
    let Some(s) = setup(200) else { return };
    let mut p = s.logged_in(TlsMode::None);
    assert!(p.capabilities().pipelining);
    let all: Vec<u32> = (1..=200).collect();
    let seen = retrieve_and_compare(&s, &mut p, &all);
    assert_eq!(seen, (0..200).collect());
    p.quit().unwrap();

    // Over TLS, and one at a time, the same bytes.
    let mut p = s.logged_in(TlsMode::Implicit);
    p.disable_pipelining();
    let some: Vec<u32> = (1..=200).step_by(9).collect();
    let seen = retrieve_and_compare(&s, &mut p, &some);
    assert_eq!(seen.len(), some.len());
    let one = p.retr(7).unwrap();
    assert!(s.files.iter().any(|f| *f == crlf_to_lf(&one)));
    p.quit().unwrap();
    // Retrieving deletes nothing.
    assert_eq!(s.remaining().len(), 200);
}

#[test]
fn dele_many_and_quit_remove_exactly_those_and_a_drop_removes_nothing() {
    let Some(s) = setup(40) else { return };
    // Marked, but the connection is dropped before QUIT: nothing goes.
    let mut p = s.logged_in(TlsMode::None);
    p.dele_many(&(1..=40).collect::<Vec<u32>>()).unwrap();
    drop(p);
    assert_eq!(s.remaining(), (0..40).collect());

    // Delete the messages whose X-Seq is odd, found by retrieving them.
    let mut p = s.logged_in(TlsMode::Starttls);
    let mut odd = Vec::new();
    p.retr_many(&(1..=40).collect::<Vec<u32>>(), &mut |n, m| {
        if seq_of(&m) % 2 == 1 {
            odd.push(n);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(odd.len(), 20);
    p.dele_many(&odd).unwrap();
    // A message already marked cannot be retrieved: -ERR, Unavailable.
    let e = p.retr(odd[0]).unwrap_err();
    assert_eq!(e.kind(), Kind::Unavailable, "{e}");
    assert!(e.to_string().contains(&format!("RETR {}", odd[0])), "{e}");
    p.quit().unwrap();
    assert_eq!(s.remaining(), (0..40).filter(|i| i % 2 == 0).collect());

    // RSET undoes marks.
    let mut p = s.logged_in(TlsMode::None);
    p.dele_many(&[1, 2]).unwrap();
    p.rset().unwrap();
    p.quit().unwrap();
    assert_eq!(s.remaining().len(), 20);
}

#[test]
fn a_failing_callback_stops_and_only_stored_messages_are_deleted() {
    let Some(s) = setup(100) else { return };
    let mut p = s.logged_in(TlsMode::None);
    let mut stored: Vec<(u32, usize)> = Vec::new();
    let e = p
        .retr_many(&(1..=100).collect::<Vec<u32>>(), &mut |n, m| {
            if stored.len() == 10 {
                return Err(Error::new(Kind::Temporary, "storing", "target said 75"));
            }
            stored.push((n, seq_of(&m)));
            Ok(())
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "storing: target said 75");
    // The session is still in step: delete what was stored and quit.
    let nos: Vec<u32> = stored.iter().map(|x| x.0).collect();
    p.dele_many(&nos).unwrap();
    assert_eq!(p.stat().unwrap().0, 90);
    p.quit().unwrap();
    let want: BTreeSet<usize> = (0..100)
        .filter(|i| !stored.iter().any(|x| x.1 == *i))
        .collect();
    assert_eq!(s.remaining(), want);
}

#[test]
fn apop_logs_in_with_the_greeting_timestamp() {
    let Some(s) = setup(2) else { return };
    let mut p = s.connect(TlsMode::None);
    // The harness enables Dovecot's APOP mechanism (its passdb holds plain
    // passwords), so the greeting carries a timestamp.
    assert!(p.capabilities().apop, "{:?}", p.capabilities());
    let e = p
        .login("alice", &Secret::new("wrong"), Login::Apop)
        .unwrap_err();
    assert_eq!(e.kind(), Kind::Auth, "{e}");
    let sink = Sink::default();
    let mut p = s
        .try_connect(
            TlsMode::None,
            &TlsOptions::default(),
            Transcript::to(Box::new(sink.clone()), ""),
        )
        .unwrap();
    p.login("alice", &pass(), Login::Apop)
        .unwrap_or_else(|e| panic!("{e}\n{}", s.dc.logs()));
    assert_eq!(p.stat().unwrap().0, 2);
    p.quit().unwrap();
    let t = sink.text();
    assert!(t.contains("C: APOP alice <redacted>\n"), "{t}");
    // Auto never picks APOP, even when the greeting offers it.
    let sink = Sink::default();
    let mut p = s
        .try_connect(
            TlsMode::None,
            &TlsOptions::default(),
            Transcript::to(Box::new(sink.clone()), ""),
        )
        .unwrap();
    assert!(p.capabilities().apop);
    p.login("alice", &pass(), Login::Auto).unwrap();
    p.quit().unwrap();
    let t = sink.text();
    assert!(t.contains("C: AUTH PLAIN <redacted>\n"), "{t}");
    assert!(!t.contains("C: APOP"), "{t}");
}
