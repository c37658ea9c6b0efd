//! Hostile POP3 servers against mail-fetch: UIDLs reused across runs or
//! twice in one listing, malformed listings, control characters in server
//! text, a message far larger than LIST announced, a dripping greeting and
//! a slow but honest pipelining server.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::harness::{TempDir, maildir_new};

/// What RETR sends for a message.
#[derive(Clone)]
enum Body {
    /// These bytes (LF line ends; sent with CRLF, dot-stuffed).
    Text(String),
    /// About this many bytes of 80-byte lines, generated while sending.
    Flood(u64),
}

/// One message of a scripted mailbox.
#[derive(Clone)]
struct Mail {
    uidl: String,
    /// The size LIST announces; `None`: the true one.
    list: Option<u64>,
    body: Body,
}

fn mail(uidl: &str, text: &str) -> Mail {
    Mail {
        uidl: uidl.to_string(),
        list: None,
        body: Body::Text(text.to_string()),
    }
}

impl Mail {
    fn wire(&self) -> Vec<u8> {
        match &self.body {
            Body::Text(t) => {
                let mut w = Vec::new();
                for line in t.lines() {
                    if line.starts_with('.') {
                        w.push(b'.');
                    }
                    w.extend_from_slice(line.as_bytes());
                    w.extend_from_slice(b"\r\n");
                }
                w
            }
            Body::Flood(_) => Vec::new(),
        }
    }
    fn size(&self) -> u64 {
        match (&self.body, self.list) {
            (_, Some(s)) => s,
            (Body::Text(t), None) => t.lines().map(|l| l.len() as u64 + 2).sum(),
            (Body::Flood(n), None) => *n,
        }
    }
    /// The header block and its empty line (what `TOP n 0` sends).
    fn top(&self) -> Vec<u8> {
        let w = self.wire();
        match w.windows(4).position(|x| x == b"\r\n\r\n") {
            Some(i) => w[..i + 4].to_vec(),
            None => w,
        }
    }
}

/// How a scripted server behaves beyond its mailbox.
#[derive(Clone, Default)]
struct Quirks {
    pipelining: bool,
    top: bool,
    /// Wait this long before each answer to RETR and DELE.
    slow: Option<Duration>,
    /// Answer QUIT +OK but remove nothing (a buggy server).
    forget_deletes: bool,
    /// Answer QUIT -ERR.
    quit_err: bool,
    /// The UIDL answer, raw, instead of the mailbox's.
    uidl_raw: Option<Vec<u8>>,
    /// The answer to PASS instead of +OK.
    pass_reply: Option<Vec<u8>>,
    /// Drip this greeting a byte every 500 ms instead of a normal one.
    drip: Option<Vec<u8>>,
}

/// What a scripted session saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    commands: Vec<String>,
    /// Messages removed at QUIT.
    deleted: BTreeSet<u32>,
}

impl Seen {
    fn count(&self, cmd: &str) -> usize {
        self.commands.iter().filter(|c| *c == cmd).count()
    }
    fn has(&self, cmd: &str) -> bool {
        self.count(cmd) > 0
    }
}

/// Serve one POP3 session over `s` from `mbox`.
fn session(s: TcpStream, mbox: &[Mail], q: &Quirks) -> Seen {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // Writes whose failure (the client hung up) ends the script.
    let mut raw = s.try_clone().unwrap();
    let mut w = Wire::new(s);
    let mut seen = Seen::default();
    if let Some(drip) = &q.drip {
        for b in drip {
            if raw.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        return seen;
    }
    w.send("+OK scripted\r\n");
    let mut marked = BTreeSet::new();
    let msg = |arg: Option<&str>| -> Option<(u32, &Mail)> {
        let n: u32 = arg?.parse().ok()?;
        Some((n, mbox.get((n as usize).checked_sub(1)?)?))
    };
    while let Some(line) = w.line() {
        seen.commands.push(line.clone());
        let mut words = line.split(' ');
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let arg = words.next();
        if let (Some(d), "RETR" | "DELE") = (q.slow, verb.as_str()) {
            std::thread::sleep(d);
        }
        match verb.as_str() {
            "CAPA" => {
                let mut c = String::from("+OK\r\nUSER\r\nUIDL\r\n");
                if q.top {
                    c.push_str("TOP\r\n");
                }
                if q.pipelining {
                    c.push_str("PIPELINING\r\n");
                }
                c.push_str(".\r\n");
                w.send(c);
            }
            "USER" => w.send("+OK\r\n"),
            "PASS" => match &q.pass_reply {
                Some(r) => w.send(r),
                None => w.send("+OK\r\n"),
            },
            "STAT" => {
                let total: u64 = mbox.iter().map(Mail::size).sum();
                w.send(format!("+OK {} {total}\r\n", mbox.len()));
            }
            "LIST" => {
                let mut r = String::from("+OK\r\n");
                for (i, m) in mbox.iter().enumerate() {
                    r.push_str(&format!("{} {}\r\n", i + 1, m.size()));
                }
                r.push_str(".\r\n");
                w.send(r);
            }
            "UIDL" => match &q.uidl_raw {
                Some(raw) => w.send(raw),
                None => {
                    let mut r = String::from("+OK\r\n");
                    for (i, m) in mbox.iter().enumerate() {
                        r.push_str(&format!("{} {}\r\n", i + 1, m.uidl));
                    }
                    r.push_str(".\r\n");
                    w.send(r);
                }
            },
            "RETR" => match msg(arg) {
                Some((_, m)) => {
                    w.send(format!("+OK {} octets\r\n", m.size()));
                    match m.body {
                        Body::Text(_) => w.send(m.wire()),
                        Body::Flood(n) => {
                            let chunk = [b'x'; 78]
                                .iter()
                                .chain(b"\r\n")
                                .copied()
                                .cycle()
                                .take(80 * 819)
                                .collect::<Vec<u8>>();
                            let mut sent = 0u64;
                            while sent < n {
                                if raw.write_all(&chunk).is_err() {
                                    // The client hung up: the session is over.
                                    return seen;
                                }
                                sent += chunk.len() as u64;
                            }
                        }
                    }
                    w.send(".\r\n");
                }
                None => w.send("-ERR no such message\r\n"),
            },
            "TOP" => match msg(arg) {
                Some((_, m)) => {
                    w.send("+OK\r\n");
                    w.send(m.top());
                    w.send(".\r\n");
                }
                None => w.send("-ERR no such message\r\n"),
            },
            "DELE" => match msg(arg) {
                Some((n, _)) if marked.insert(n) => w.send("+OK marked\r\n"),
                Some(_) => w.send("-ERR already deleted\r\n"),
                None => w.send("-ERR no such message\r\n"),
            },
            "NOOP" => w.send("+OK\r\n"),
            "RSET" => {
                marked.clear();
                w.send("+OK\r\n");
            }
            "QUIT" => {
                if q.quit_err {
                    w.send("-ERR could not remove messages\r\n");
                } else {
                    if !q.forget_deletes {
                        seen.deleted = std::mem::take(&mut marked);
                    }
                    w.send("+OK bye\r\n");
                }
                return seen;
            }
            _ => w.send("-ERR unknown command\r\n"),
        }
    }
    seen
}

/// A scripted POP3 server: session `i` serves `mboxes[i]` with `quirks[i]`.
struct Server {
    s: Scripted,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(sessions: Vec<(Vec<Mail>, Quirks)>) -> Server {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let s = Scripted::start(sessions.len(), move |i, tcp| {
            let (mbox, q) = &sessions[i];
            let got = session(tcp, mbox, q);
            log.lock().unwrap().push(got);
        });
        Server { s, seen }
    }

    /// mail-fetch (as `tool`, e.g. [`measured`]) against this server, into
    /// the Maildir `dest`.
    fn fetch(&self, tool: Tool, dest: &Path) -> Tool {
        tool.env("PW", "pw")
            .args(["--pop3", &format!("127.0.0.1:{}", self.s.port)])
            .args(["--tls", "none", "--user", "u", "--password-env", "PW"])
            .arg("--maildir")
            .arg(dest)
    }

    /// Session `i` (waits for it to end).
    fn session(&self, i: usize) -> Seen {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.seen.lock().unwrap().get(i) {
                return s.clone();
            }
            assert!(Instant::now() < deadline, "session {i} never ended");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn join(self) {
        self.s.join();
    }
}

struct Setup {
    t: TempDir,
    home: PathBuf,
    dest: PathBuf,
}

fn setup() -> Setup {
    let t = TempDir::new();
    let home = t.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let dest = t.join("Maildir/");
    Setup { t, home, dest }
}

/// The bodies (LF line ends) stored in the Maildir, sorted.
fn stored(dest: &Path) -> Vec<String> {
    let mut v: Vec<String> = maildir_new(dest)
        .into_iter()
        .map(|(_, b)| String::from_utf8(b).unwrap())
        .collect();
    v.sort();
    v
}

const A: &str = "Subject: first\nMessage-ID: <a@x>\n\nbody of a\n";
/// The same size as A, another header.
const A2: &str = "Subject: other\nMessage-ID: <b@x>\n\nbody of a\n";
const B: &str = "Subject: second, longer\nMessage-ID: <c@x>\n\nanother body\n";
const C: &str = "Subject: third\nMessage-ID: <d@x>\n\nthird body\n";

#[test]
fn a_reused_uidl_with_another_size_is_new_mail_not_a_deletion() {
    let s = setup();
    let keep_all = Quirks {
        forget_deletes: true,
        ..Quirks::default()
    };
    let srv = Server::start(vec![
        (vec![mail("u1", A)], keep_all.clone()),
        (vec![mail("u1", B)], Quirks::default()),
    ]);
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .success();
    // The server forgot to delete A and reused its UIDL for B.
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .success()
        .stderr_has("1 message");
    let second = srv.session(1);
    assert!(second.has("RETR 1"), "{:?}", second.commands);
    assert_eq!(stored(&s.dest), vec![A.to_string(), B.to_string()]);
    assert_eq!(second.deleted, BTreeSet::from([1]));
    srv.join();
}

#[test]
fn a_reused_uidl_with_the_same_size_is_told_apart_by_its_header() {
    assert_eq!(A.len(), A2.len());
    let s = setup();
    let q = Quirks {
        top: true,
        forget_deletes: true,
        ..Quirks::default()
    };
    let srv = Server::start(vec![
        (vec![mail("u1", A)], q.clone()),
        // The same message again: deleted without storing it twice.
        (vec![mail("u1", A)], q.clone()),
        // Another message under the old UIDL, of the same size.
        (vec![mail("u1", A2)], q),
    ]);
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .success();
    // Nothing new (exit 1), the old message deleted.
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .code_is(1);
    let second = srv.session(1);
    assert!(!second.has("RETR 1"), "{:?}", second.commands);
    assert!(second.has("DELE 1"), "{:?}", second.commands);
    assert_eq!(stored(&s.dest), vec![A.to_string()]);
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .success()
        .stderr_has("1 message");
    let third = srv.session(2);
    assert!(third.has("RETR 1"), "{:?}", third.commands);
    assert_eq!(stored(&s.dest), vec![A.to_string(), A2.to_string()]);
    srv.join();
}

#[test]
fn a_uidl_twice_in_a_later_listing_is_never_deleted_on_the_state_alone() {
    let s = setup();
    let srv = Server::start(vec![
        (
            vec![mail("u1", A)],
            Quirks {
                forget_deletes: true,
                ..Quirks::default()
            },
        ),
        (vec![mail("u1", A), mail("u1", B)], Quirks::default()),
    ]);
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .success();
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .code_is(4)
        .stderr_has("UIDL u1")
        .stderr_has("1 message");
    let second = srv.session(1);
    assert!(!second.has("DELE 1"), "{:?}", second.commands);
    assert!(second.has("RETR 2"), "{:?}", second.commands);
    assert_eq!(stored(&s.dest), vec![A.to_string(), B.to_string()]);
    // B was stored in this session: deleting it by number is safe.
    assert_eq!(second.deleted, BTreeSet::from([2]));
    srv.join();
}

#[test]
fn duplicate_uidls_in_one_listing_are_each_stored_and_deleted_once() {
    let s = setup();
    let srv = Server::start(vec![
        (vec![mail("x", A), mail("x", B)], Quirks::default()),
        (
            vec![mail("y", C)],
            Quirks {
                quit_err: true,
                ..Quirks::default()
            },
        ),
    ]);
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .success()
        .stderr_has("UIDL x is listed for messages 1, 2")
        .stderr_has("2 messages")
        .stderr_has("2 deleted there");
    let first = srv.session(0);
    assert_eq!(first.count("DELE 1"), 1, "{:?}", first.commands);
    assert_eq!(first.count("DELE 2"), 1, "{:?}", first.commands);
    assert_eq!(first.deleted, BTreeSet::from([1, 2]));
    assert_eq!(stored(&s.dest), vec![A.to_string(), B.to_string()]);
    // A QUIT the server refuses deleted nothing: the summary must not
    // claim otherwise.
    let out = srv
        .fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .code_is(4);
    assert!(!out.stderr().contains("deleted there"), "{}", out.stderr());
    srv.join();
}

#[test]
fn a_malformed_uidl_line_is_a_protocol_error_and_server_text_is_escaped() {
    let s = setup();
    let srv = Server::start(vec![
        (
            vec![mail("u1", A)],
            Quirks {
                uidl_raw: Some(b"+OK\r\n1 u\x1b[31m1\r\n.\r\n".to_vec()),
                ..Quirks::default()
            },
        ),
        (
            vec![mail("u1", A)],
            Quirks {
                pass_reply: Some(b"-ERR \x1b]0;owned\x07 \xe2\x80\xaeno\r\n".to_vec()),
                ..Quirks::default()
            },
        ),
    ]);
    let out = srv
        .fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .code_is(4)
        .stderr_has("UIDL")
        .stderr_one_line();
    assert!(!out.stderr().contains('\x1b'), "{:?}", out.stderr());
    let out = srv
        .fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .code_is(3)
        .stderr_one_line();
    let err = out.stderr();
    assert!(
        !err.contains('\x1b') && !err.contains('\x07') && !err.contains('\u{202e}'),
        "{err:?}"
    );
    assert!(err.contains("owned"), "{err:?}");
    assert!(stored(&s.dest).is_empty());
    srv.join();
}

/// Peak RSS allowed for a run whose server floods one message: the
/// process itself plus a few MiB of read buffers, far below what the
/// server sends.
const FLOOD_RSS_KIB: u64 = 64 * 1024;

#[test]
fn a_message_far_larger_than_announced_is_cut_off_not_stored_and_nothing_is_deleted() {
    let s = setup();
    let mbox = vec![
        mail("u1", A),
        Mail {
            uidl: "u2".to_string(),
            list: Some(120),
            body: Body::Flood(300 << 20),
        },
        mail("u3", C),
    ];
    let q = Quirks {
        pipelining: true,
        ..Quirks::default()
    };
    let srv = Server::start(vec![(mbox.clone(), q.clone()), (mbox, q)]);
    let rss = s.t.join("rss");
    srv.fetch(measured("mail-fetch", &s.home, &rss), &s.dest)
        .run()
        .code_is(4)
        .stderr_has("message 2")
        .stderr_has("120");
    let peak = peak_rss_kib(&rss);
    assert!(peak < FLOOD_RSS_KIB, "peak RSS {peak} KiB");
    let first = srv.session(0);
    assert!(!first.has("QUIT"), "{:?}", first.commands);
    assert!(first.deleted.is_empty());
    // What came before the flood is stored; the flood is not.
    assert_eq!(stored(&s.dest), vec![A.to_string()]);
    // The next run does not retrieve it again, deletes what was stored and
    // fetches the rest; the oversized message stays and is reported.
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .code_is(4)
        .stderr_has("UIDL u2");
    let second = srv.session(1);
    assert!(!second.has("RETR 2"), "{:?}", second.commands);
    assert_eq!(second.deleted, BTreeSet::from([1, 3]));
    assert_eq!(stored(&s.dest), vec![A.to_string(), C.to_string()]);
    srv.join();
}

#[test]
fn a_dripping_greeting_is_cut_off_after_the_timeout() {
    let s = setup();
    let srv = Server::start(vec![(
        Vec::new(),
        Quirks {
            drip: Some(vec![b'x'; 120]),
            ..Quirks::default()
        },
    )]);
    let start = Instant::now();
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .args(["--timeout", "2"])
        .run()
        .code_is(2)
        .stderr_has("timed out")
        .stderr_one_line();
    // A hang guard, not a timing threshold: the drip lasts 60 s.
    assert!(start.elapsed() < Duration::from_secs(30));
    srv.join();
}

#[test]
fn a_slow_but_honest_pipelining_server_is_not_cut_off() {
    let s = setup();
    let mbox: Vec<Mail> = (1..=6)
        .map(|i| mail(&format!("u{i}"), &format!("Subject: {i}\n\nbody {i}\n")))
        .collect();
    let srv = Server::start(vec![(
        mbox,
        Quirks {
            pipelining: true,
            slow: Some(Duration::from_secs(1)),
            ..Quirks::default()
        },
    )]);
    // Each answer comes a second after the one before, well inside the
    // timeout; all six together take twice as long.
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .args(["--timeout", "3"])
        .run()
        .success()
        .stderr_has("6 messages");
    assert_eq!(srv.session(0).deleted, (1..=6).collect());
    assert_eq!(stored(&s.dest).len(), 6);
    srv.join();
}

#[test]
fn records_of_earlier_versions_never_delete_unverified_mail() {
    let s = setup();
    let srv = Server::start(vec![
        // With --keep the old record still counts: nothing fetched twice.
        (vec![mail("u1", A)], Quirks::default()),
        // Deleting, it is not enough: the message is fetched, then deleted.
        (vec![mail("u1", A)], Quirks::default()),
    ]);
    let dir = s.home.join(".local/state/postline/fetch");
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join(format!("pop3-u-127.0.0.1-{}.json", srv.s.port));
    std::fs::write(&state, r#"{"imap":{},"pop3":["u1"]}"#).unwrap();
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .arg("--keep")
        .run()
        .code_is(1);
    assert!(!srv.session(0).has("RETR 1"));
    assert!(stored(&s.dest).is_empty());
    std::fs::write(&state, r#"{"imap":{},"pop3":["u1"]}"#).unwrap();
    srv.fetch(Tool::new("mail-fetch", &s.home), &s.dest)
        .run()
        .success();
    let second = srv.session(1);
    assert!(second.has("RETR 1"), "{:?}", second.commands);
    assert_eq!(second.deleted, BTreeSet::from([1]));
    assert_eq!(stored(&s.dest), vec![A.to_string()]);
    srv.join();
}
