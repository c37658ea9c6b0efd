//! mail-fetch tests, against the harness's real Dovecot over IMAP and POP3
//! (plain, STARTTLS, implicit TLS), read back with independent readers
//! (Python's `mailbox`, Dovecot's own IMAP via `imaplib`).

use std::path::{Path, PathBuf};

use crate::harness::*;

/// A Dovecot with user `alice` whose INBOX holds `n` generated messages.
struct Server {
    dc: Dovecot,
    t: TempDir,
}

/// A message with some variety: `From ` lines in the body (mbox quoting),
/// a long line, a Return-Path for the envelope sender, numbered subjects.
fn message(i: usize, rng: &mut Rng) -> Vec<u8> {
    let mut m = format!(
        "Return-Path: <sender{i}@example.test>\nFrom: Sender <sender{i}@example.test>\nTo: alice@example.test\nSubject: message {i}\nMessage-ID: <m{i}.{}@example.test>\n\nHello {i}.\nFrom the start of a line\n>From quoted already\n",
        rng.next_u64()
    )
    .into_bytes();
    let lines = rng.range(1, 40);
    for _ in 0..lines {
        let len = rng.range(0, 120);
        let line: String = (0..len)
            .map(|_| (b'a' + rng.below(26) as u8) as char)
            .collect();
        m.extend_from_slice(line.as_bytes());
        m.push(b'\n');
    }
    m
}

/// Write `n` messages into the Maildir `md` (new/), as a server would hold them.
fn fill_maildir(md: &Path, n: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    for i in 0..n {
        let data = message(i, &mut rng);
        std::fs::write(
            md.join("new").join(format!(
                "{}.M{i}P1.test,S={}",
                1_700_000_000 + i,
                data.len()
            )),
            data,
        )
        .unwrap();
    }
    make_readable(md);
}

impl Server {
    /// None when the test must be skipped.
    fn start(n: usize) -> Option<Server> {
        if skip_unless(is_root(), "Dovecot needs root") {
            return None;
        }
        let t = TempDir::new();
        let md = t.join("mail/alice");
        fill_maildir(&md, n, 42);
        let mut dc = Dovecot::start(&t.join("dovecot"));
        dc.add_user("alice", &md);
        Some(Server { dc, t })
    }

    fn home(&self) -> PathBuf {
        let h = self.t.join("home");
        std::fs::create_dir_all(&h).unwrap();
        h
    }

    /// mail-fetch against alice over `proto` (imap/pop3) with `tls`.
    fn tool(&self, proto: &str, tls: &str) -> Tool {
        self.tool_in(proto, tls, &self.home())
    }

    /// [`Server::tool`] with its own HOME (and so its own state).
    fn tool_in(&self, proto: &str, tls: &str, home: &Path) -> Tool {
        std::fs::create_dir_all(home).unwrap();
        let port = match (proto, tls) {
            ("imap", "implicit") => self.dc.imaps_port,
            ("imap", _) => self.dc.imap_port,
            ("pop3", "implicit") => self.dc.pop3s_port,
            _ => self.dc.pop3_port,
        };
        Tool::new("mail-fetch", home)
            .env("PW", Dovecot::PASSWORD)
            .arg(format!("--{proto}"))
            .arg(format!("127.0.0.1:{port}"))
            .args(["--tls", tls, "--user", "alice", "--password-env", "PW"])
            .arg("--tls-ca-file")
            .arg(&self.dc.cert)
    }

    /// Every message on the server (LF line ends), sorted.
    fn on_server(&self) -> Vec<Vec<u8>> {
        sorted(self.dc.imap_fetch_all("alice"))
    }
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[track_caller]
fn assert_same_messages(got: Vec<Vec<u8>>, want: &[Vec<u8>], what: &str) {
    let got = sorted(got);
    assert_eq!(got.len(), want.len(), "{what}: message count");
    for (g, w) in got.iter().zip(want) {
        assert_bytes_eq(g, w, what);
    }
}

#[test]
fn imap_keep_stores_every_message_once_and_second_run_finds_nothing() {
    let Some(s) = Server::start(30) else { return };
    let want = s.on_server();
    assert_eq!(want.len(), 30);
    let dest = s.t.join("out/Maildir/");
    s.tool("imap", "none")
        .args(["--keep", "--maildir"])
        .arg(&dest)
        .run()
        .success()
        .stderr_has("30 messages");
    assert_same_messages(python_read_mailbox(&dest), &want, "Maildir after run 1");
    // Nothing new: exit 1, nothing stored.
    s.tool("imap", "none")
        .args(["--keep", "--maildir"])
        .arg(&dest)
        .run()
        .code_is(1);
    assert_eq!(python_read_mailbox(&dest).len(), 30);
    // Still all on the server.
    assert_eq!(s.on_server(), want);
    // A new message arrives: only it is fetched.
    let md = s.t.join("mail/alice");
    std::fs::write(
        md.join("new/1800000000.Mnew.test"),
        b"Subject: late\n\nlate one\n",
    )
    .unwrap();
    make_readable(&md);
    s.tool("imap", "none")
        .args(["--keep", "--maildir"])
        .arg(&dest)
        .run()
        .success()
        .stderr_has("1 message ");
    let got = python_read_mailbox(&dest);
    assert_eq!(got.len(), 31);
    assert!(got.contains(&b"Subject: late\n\nlate one\n".to_vec()));
}

#[test]
fn imap_delete_mode_empties_the_server_of_exactly_what_was_stored() {
    let Some(s) = Server::start(25) else { return };
    let want = s.on_server();
    let dest = s.t.join("out/Maildir/");
    // A size limit leaves the big ones; the rest go.
    let limit = 700;
    let (small, big): (Vec<_>, Vec<_>) = want
        .iter()
        .cloned()
        .partition(|m| (m.len() + m.iter().filter(|&&c| c == b'\n').count()) as u64 <= limit);
    assert!(
        !small.is_empty() && !big.is_empty(),
        "test data has both sizes"
    );
    s.tool("imap", "starttls")
        .args(["--max-size", &limit.to_string(), "--maildir"])
        .arg(&dest)
        .run()
        .code_is(10)
        .stderr_has("over the size limit");
    assert_same_messages(python_read_mailbox(&dest), &sorted(small), "stored");
    assert_eq!(s.on_server(), sorted(big.clone()), "left on the server");
    // Without the limit the rest come, and the server is empty.
    s.tool("imap", "starttls")
        .arg("--maildir")
        .arg(&dest)
        .run()
        .success();
    assert_same_messages(python_read_mailbox(&dest), &want, "stored at the end");
    assert!(s.on_server().is_empty());
    s.tool("imap", "starttls")
        .arg("--maildir")
        .arg(&dest)
        .run()
        .code_is(1);
}

#[test]
fn imap_implicit_tls_into_mbox_and_stdout() {
    let Some(s) = Server::start(12) else { return };
    let want = s.on_server();
    let mbox = s.t.join("out/mbox");
    std::fs::create_dir_all(s.t.join("out")).unwrap();
    s.tool("imap", "implicit")
        .args(["--keep", "--mbox"])
        .arg(&mbox)
        .run()
        .success();
    assert_same_messages(python_read_mailbox(&mbox), &want, "mbox");
    // stdout: an mboxrd stream, nothing deleted even without --keep.
    let out = s
        .tool_in("imap", "implicit", &s.t.join("home2"))
        .arg("--stdout")
        .run()
        .success();
    let file = s.t.join("out/stdout.mbox");
    std::fs::write(&file, &out.0.stdout).unwrap();
    assert_same_messages(python_read_mailbox(&file), &want, "stdout");
    assert_eq!(s.on_server(), want);
}
