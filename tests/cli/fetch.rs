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
        .stderr_has("30 messages")
        .stderr_one_line();
    assert_same_messages(python_read_mailbox(&dest), &want, "Maildir after run 1");
    // Nothing new: exit 1, nothing stored, nothing said.
    s.tool("imap", "none")
        .args(["--keep", "--maildir"])
        .arg(&dest)
        .run()
        .code_is(1)
        .stderr_empty();
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
    // Without the limit the rest come, and the server is empty; -q: silent.
    s.tool("imap", "starttls")
        .args(["-q", "--maildir"])
        .arg(&dest)
        .run()
        .success()
        .stderr_empty();
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

#[test]
fn pop3_plain_starttls_and_implicit_tls_store_byte_identical_messages() {
    let Some(s) = Server::start(15) else { return };
    let want = s.on_server();
    for tls in ["none", "starttls", "implicit"] {
        let dest = s.t.join(format!("out-{tls}/Maildir/"));
        s.tool_in("pop3", tls, &s.t.join(format!("home-{tls}")))
            .args(["--keep", "--maildir"])
            .arg(&dest)
            .run()
            .success()
            .stderr_has("15 messages");
        assert_same_messages(python_read_mailbox(&dest), &want, tls);
        s.tool_in("pop3", tls, &s.t.join(format!("home-{tls}")))
            .args(["--keep", "--maildir"])
            .arg(&dest)
            .run()
            .code_is(1);
        assert_eq!(python_read_mailbox(&dest).len(), 15, "{tls}: second run");
    }
    // Delete mode: everything stored, the server empty.
    let dest = s.t.join("out-del/Maildir/");
    s.tool("pop3", "starttls")
        .arg("--maildir")
        .arg(&dest)
        .run()
        .success();
    assert_same_messages(python_read_mailbox(&dest), &want, "delete mode");
    assert!(s.on_server().is_empty());
}

#[test]
fn mda_gets_each_message_with_quoted_sender_and_recipient_and_75_keeps_it() {
    let Some(s) = Server::start(8) else { return };
    let want = s.on_server();
    let out = s.t.join("mda");
    std::fs::create_dir_all(&out).unwrap();
    let d = out.display();
    // Message 3 is deferred (75) the first time.
    let mda = format!(
        "cat > {d}/tmp.$$ && if grep -q '^Subject: message 3$' {d}/tmp.$$ && [ ! -e {d}/allow ]; then rm {d}/tmp.$$; exit 75; fi; mv {d}/tmp.$$ {d}/$$.msg && printf '%s\\n' %F %T > {d}/$$.env"
    );
    s.tool("imap", "none")
        .args(["--mda", &mda, "--recipient", "it's me"])
        .run()
        .code_is(10)
        .stderr_has("exited 75");
    let read = |ext: &str| -> Vec<Vec<u8>> {
        dir_names(&out)
            .into_iter()
            .filter(|n| n.ends_with(ext))
            .map(|n| std::fs::read(out.join(n)).unwrap())
            .collect()
    };
    assert_eq!(read(".msg").len(), 7);
    for env in read(".env") {
        let env = String::from_utf8(env).unwrap();
        assert!(
            env.starts_with("sender") && env.ends_with("@example.test\nit's me\n"),
            "{env:?}"
        );
    }
    let left = s.on_server();
    assert_eq!(left.len(), 1);
    assert!(String::from_utf8_lossy(&left[0]).contains("Subject: message 3\n"));
    // Next run: the MDA takes it; all 8 stored once, server empty.
    std::fs::write(out.join("allow"), b"").unwrap();
    s.tool("imap", "none").args(["--mda", &mda]).run().success();
    assert_same_messages(read(".msg"), &want, "MDA");
    assert!(s.on_server().is_empty());
}

#[test]
fn lmtp_target_delivers_into_another_dovecot_user() {
    let Some(mut s) = Server::start(10) else {
        return;
    };
    // Added before anyone logs in: Dovecot notices a changed users file by
    // its mtime, which two writes in one second would not change.
    let bob = s.t.join("mail/bob");
    s.dc.add_user("bob", &bob);
    let want = s.on_server();
    let lmtp = format!("127.0.0.1:{}", s.dc.lmtp_port);
    s.tool("pop3", "none")
        .args(["--lmtp", &lmtp, "--recipient", "bob"])
        .run()
        .success();
    assert!(s.on_server().is_empty());
    let got = sorted(s.dc.imap_fetch_all("bob"));
    assert_eq!(got.len(), want.len());
    // Dovecot adds its trace fields at the top; the message follows intact.
    for w in &want {
        let from = w.windows(6).position(|x| x == b"From: ").unwrap();
        assert!(
            got.iter().any(|g| g.ends_with(&w[from..])),
            "not delivered intact: {}",
            String::from_utf8_lossy(&w[..from + 40])
        );
    }
}

#[test]
fn wrong_password_exits_3_and_names_the_account() {
    let Some(s) = Server::start(1) else { return };
    for proto in ["imap", "pop3"] {
        s.tool(proto, "none")
            .env("PW", "wrong")
            .args(["--keep", "--stdout"])
            .run()
            .code_is(3)
            .stderr_has("alice@127.0.0.1 (127.0.0.1:")
            .stderr_one_line();
    }
}

/// A fake server that greets with `greeting`, answers every line with
/// `reply(line)` and records what it received.
fn fake_server(
    greeting: &'static str,
    reply: fn(&str) -> String,
) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let _ = w.write_all(greeting.as_bytes());
        let mut got = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            got.push_str(&line);
            if w.write_all(reply(&line).as_bytes()).is_err() {
                break;
            }
        }
        let _ = tx.send(got);
    });
    (port, rx)
}

#[test]
fn required_starttls_not_offered_is_an_error_and_nothing_is_sent_in_clear() {
    let home = TempDir::new();
    let (port, rx) = fake_server("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake\r\n", |l| {
        let tag = l.split_whitespace().next().unwrap_or("*");
        format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n")
    });
    Tool::new("mail-fetch", home.path())
        .env("PW", "hunter2")
        .args(["--imap", &format!("127.0.0.1:{port}"), "--user", "alice"])
        .args(["--password-env", "PW", "--stdout"])
        .run()
        .code_is(4)
        .stderr_has("STARTTLS")
        .stderr_one_line();
    let got = rx.recv().unwrap();
    assert!(
        !got.contains("hunter2") && !got.to_ascii_uppercase().contains("LOGIN"),
        "{got}"
    );
    let (port, rx) = fake_server("+OK fake\r\n", |l| {
        if l.starts_with("CAPA") {
            "+OK\r\nUSER\r\nUIDL\r\n.\r\n".to_string()
        } else {
            "-ERR no\r\n".to_string()
        }
    });
    Tool::new("mail-fetch", home.path())
        .env("PW", "hunter2")
        .args(["--pop3", &format!("127.0.0.1:{port}"), "--user", "alice"])
        .args(["--password-env", "PW", "--stdout"])
        .run()
        .code_is(4)
        .stderr_has("STLS")
        .stderr_one_line();
    let got = rx.recv().unwrap();
    assert!(!got.contains("hunter2") && !got.contains("USER"), "{got}");
}

#[test]
fn several_accounts_from_the_config_are_fetched_concurrently_and_the_worst_outcome_wins() {
    let Some(mut s) = Server::start(20) else {
        return;
    };
    let bob = s.t.join("mail/bob");
    fill_maildir(&bob, 17, 7);
    s.dc.add_user("bob", &bob);
    let want_a = s.on_server();
    let want_b = sorted(s.dc.imap_fetch_all("bob"));
    // A second account on alice's mailbox, for her Lists folder.
    let lists = s.t.join("mail/alice/.Lists");
    fill_maildir(&lists, 5, 11);
    std::fs::write(lists.join("maildirfolder"), b"").unwrap();
    make_readable(&lists);
    let want_c: Vec<Vec<u8>> = sorted(
        s.dc.imap_fetch("alice", "Lists")
            .iter()
            .map(|m| crlf_to_lf(m))
            .collect(),
    );
    assert_eq!(want_c.len(), 5);
    let home = s.home();
    let cfg = home.join("fetch.toml");
    let (a, b, c) = (s.t.join("out/a/"), s.t.join("out/b/"), s.t.join("out/c/"));
    std::fs::write(
        &cfg,
        format!(
            r#"
[account.alice]
protocol = "imap"
host = "127.0.0.1"
port = {imap}
tls = "starttls"
tls_ca_file = "{ca}"
user = "alice"
password_env = "PW"
maildir = "{a}"

[account.bob]
protocol = "pop3"
host = "127.0.0.1"
port = {pop3s}
tls = "implicit"
tls_ca_file = "{ca}"
user = "bob"
password_env = "PW"
maildir = "{b}"

[account.alice-lists]
protocol = "imap"
host = "127.0.0.1"
port = {imap}
tls = "starttls"
tls_ca_file = "{ca}"
user = "alice"
password_env = "PW"
folders = ["Lists"]
maildir = "{c}"

[account.broken]
protocol = "pop3"
host = "127.0.0.1"
port = {pop3s}
user = "bob"
password_env = "POSTLINE_UNSET_VARIABLE"

[account.smarthost]
host = "smtp.example.org"
"#,
            imap = s.dc.imap_port,
            pop3s = s.dc.pop3s_port,
            ca = s.dc.cert.display(),
            a = a.display(),
            b = b.display(),
            c = c.display(),
        ),
    )
    .unwrap();
    Tool::new("mail-fetch", &home)
        .env("PW", Dovecot::PASSWORD)
        .arg("--config")
        .arg(&cfg)
        .args(["alice", "bob", "alice-lists"])
        .run()
        .success()
        .stderr_has("alice: 20 messages")
        .stderr_has("bob: 17 messages")
        .stderr_has("alice-lists: 5 messages");
    assert_same_messages(python_read_mailbox(&a), &want_a, "alice");
    assert_same_messages(python_read_mailbox(&b), &want_b, "bob");
    assert_same_messages(python_read_mailbox(&c), &want_c, "alice's Lists");
    // A named account that is not there is a config error (5).
    Tool::new("mail-fetch", &home)
        .env("PW", Dovecot::PASSWORD)
        .arg("--config")
        .arg(&cfg)
        .arg("carol")
        .run()
        .code_is(5)
        .stderr_has("known: alice, alice-lists, bob, broken, smarthost");
    // Every account: nothing new anywhere (1), but one without a password
    // (5): the worst wins.
    Tool::new("mail-fetch", &home)
        .env("PW", Dovecot::PASSWORD)
        .arg("--config")
        .arg(&cfg)
        .run()
        .code_is(5)
        .stderr_has("broken (127.0.0.1:")
        .stderr_has("POSTLINE_UNSET_VARIABLE")
        .stderr_one_line();
}

#[test]
fn uidvalidity_change_fetches_the_folder_again_as_documented() {
    let Some(s) = Server::start(6) else { return };
    let dest = s.t.join("out/Maildir/");
    s.tool("imap", "none")
        .args(["--keep", "--maildir"])
        .arg(&dest)
        .run()
        .success();
    let out = std::process::Command::new("doveadm")
        .arg("-c")
        .arg(&s.dc.conf)
        .args([
            "mailbox",
            "update",
            "-u",
            "alice",
            "--uid-validity",
            "12345",
            "INBOX",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "doveadm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.tool("imap", "none")
        .args(["--keep", "--maildir"])
        .arg(&dest)
        .run()
        .success()
        .stderr_has("UIDVALIDITY changed");
    // Every message twice: the old UIDs mean nothing any more.
    let got = sorted(python_read_mailbox(&dest));
    let want = s.on_server();
    assert_eq!(got.len(), 12);
    for (i, w) in want.iter().enumerate() {
        assert_eq!(&got[2 * i], w);
        assert_eq!(&got[2 * i + 1], w);
    }
    // And then nothing new again.
    s.tool("imap", "none")
        .args(["--keep", "--maildir"])
        .arg(&dest)
        .run()
        .code_is(1);
}

/// kill -9 at random moments of a 1,000-message fetch, then a full run:
/// every message exactly once in the Maildir, none left on the server.
fn killed_fetches_lose_and_duplicate_nothing(proto: &str, seed: u64, target: &str) {
    let Some(s) = Server::start(1000) else { return };
    let want = s.on_server();
    assert_eq!(want.len(), 1000);
    std::fs::create_dir_all(s.t.join("out")).unwrap();
    let dest = s.t.join(if target == "--mbox" {
        "out/mbox"
    } else {
        "out/Maildir/"
    });
    let count = |dest: &Path| -> usize {
        if target == "--mbox" {
            std::fs::read(dest).map_or(0, |d| {
                d.split(|&c| c == b'\n')
                    .filter(|l| l.starts_with(b"From "))
                    .count()
            })
        } else {
            dir_names(&dest.join("new")).len()
        }
    };
    let mut rng = Rng::new(seed);
    for _ in 0..12 {
        // Small batches: many points where a kill can fall.
        let (mut cmd, _) = s
            .tool(proto, "none")
            .args(["--batch", "16", target])
            .arg(&dest)
            .command();
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.range(10, 300) as u64));
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("{proto}: killed with {} messages stored", count(&dest));
    }
    let out = s.tool(proto, "none").arg(target).arg(&dest).run();
    assert!(matches!(out.code(), 0 | 1), "final run: {}", out.stderr());
    assert_same_messages(python_read_mailbox(&dest), &want, "after kills");
    assert!(s.on_server().is_empty(), "left on the server");
    let state = dir_names(&s.home().join(".local/state/postline/fetch"));
    assert!(
        state.iter().all(|n| !n.contains(".tmp")),
        "temporary state files left: {state:?}"
    );
}

#[test]
fn imap_kill_9_during_a_large_fetch_loses_and_duplicates_nothing() {
    killed_fetches_lose_and_duplicate_nothing("imap", 1, "--maildir");
}

#[test]
fn kill_9_during_a_large_fetch_into_an_mbox_loses_and_duplicates_nothing() {
    killed_fetches_lose_and_duplicate_nothing("imap", 3, "--mbox");
}

#[test]
fn pop3_kill_9_during_a_large_fetch_loses_and_duplicates_nothing() {
    killed_fetches_lose_and_duplicate_nothing("pop3", 2, "--maildir");
}

/// Not a test: how fast is it? `cargo test --release --test cli --
/// fetch::speed_probe --ignored --nocapture` (POSTLINE_PROBE_N messages).
#[test]
#[ignore]
fn speed_probe() {
    let n: usize = std::env::var("POSTLINE_PROBE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let protos = std::env::var("POSTLINE_PROBE_PROTOS").unwrap_or_else(|_| "imap pop3".into());
    for proto in protos.split_whitespace() {
        let Some(s) = Server::start(n) else { return };
        let idx = std::process::Command::new("doveadm")
            .arg("-c")
            .arg(&s.dc.conf)
            .args(["index", "-u", "alice", "INBOX"])
            .output()
            .unwrap();
        assert!(idx.status.success());
        let dest = s.t.join("out/Maildir/");
        let t0 = std::time::Instant::now();
        let tls = std::env::var("POSTLINE_PROBE_TLS").unwrap_or_else(|_| "none".into());
        let extra = std::env::var("POSTLINE_PROBE_ARGS").unwrap_or_default();
        let wrap = std::env::var("POSTLINE_PROBE_WRAP").unwrap_or_default();
        let tool = if wrap.is_empty() {
            s.tool(proto, &tls)
        } else {
            let w: Vec<&str> = wrap.split_whitespace().collect();
            let port = if proto == "imap" {
                s.dc.imap_port
            } else {
                s.dc.pop3_port
            };
            Tool::wrapped(&w, "mail-fetch", &s.home())
                .env("PW", Dovecot::PASSWORD)
                .arg(format!("--{proto}"))
                .arg(format!("127.0.0.1:{port}"))
                .args(["--tls", "none", "--user", "alice", "--password-env", "PW"])
        };
        let out = tool
            .args(extra.split_whitespace())
            .arg("--maildir")
            .arg(&dest)
            .run();
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "{proto}: {n} messages in {secs:.2} s = {:.0} msg/s (exit {}) {}",
            n as f64 / secs,
            out.code(),
            out.stderr()
        );
        assert_eq!(dir_names(&dest.join("new")).len(), n);
    }
}

#[test]
fn verbose_transcript_never_shows_the_password_and_every_login_works() {
    let Some(s) = Server::start(3) else { return };
    let want = s.on_server();
    for (i, auth) in ["plain", "login"].iter().enumerate() {
        for proto in ["imap", "pop3"] {
            let home = s.t.join(format!("home-{proto}-{auth}"));
            let dest = s.t.join(format!("out-{proto}-{auth}/"));
            let out = s
                .tool_in(proto, "starttls", &home)
                .args(["-v", "--keep", "--auth", auth, "--maildir"])
                .arg(&dest)
                .run()
                .success();
            let err = out.stderr();
            assert!(err.contains("C: "), "no transcript: {err}");
            assert!(err.contains("<redacted>"), "{err}");
            assert!(
                !err.contains(Dovecot::PASSWORD),
                "password in the transcript: {err}"
            );
            // Neither base64 form of the credentials either.
            for b64 in ["AGFsaWNlAHNlY3JldA==", "c2VjcmV0"] {
                assert!(!err.contains(b64), "credentials in the transcript: {err}");
            }
            assert_same_messages(python_read_mailbox(&dest), &want, auth);
            let _ = i;
        }
    }
    // POP3's own logins.
    for auth in ["apop", "user"] {
        let dest = s.t.join(format!("out-pop3-{auth}/"));
        let out = s
            .tool_in("pop3", "none", &s.t.join(format!("home-{auth}")))
            .args(["-v", "--keep", "--auth", auth, "--maildir"])
            .arg(&dest)
            .run()
            .success();
        assert!(
            !out.stderr().contains(Dovecot::PASSWORD),
            "{}",
            out.stderr()
        );
        assert_same_messages(python_read_mailbox(&dest), &want, auth);
    }
}

/// Deliver one message to alice over Dovecot's LMTP.
fn lmtp_to_alice(s: &Server, body: &str) {
    use std::io::{BufRead, BufReader, Write};
    let c = std::net::TcpStream::connect(("127.0.0.1", s.dc.lmtp_port)).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut w = c;
    let mut line = String::new();
    let data = format!("Subject: pushed\r\n\r\n{body}\r\n.\r\n");
    for cmd in [
        "",
        "LHLO t\r\n",
        "MAIL FROM:<x@example.test>\r\n",
        "RCPT TO:<alice>\r\n",
        "DATA\r\n",
        &data,
        "QUIT\r\n",
    ] {
        w.write_all(cmd.as_bytes()).unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        assert!(
            line.starts_with('2') || line.starts_with('3'),
            "{cmd}: {line}"
        );
    }
}

/// Run mail-fetch with `mode` (`--idle` or `--daemon 1`) in the
/// background; new mail delivered meanwhile must arrive in the Maildir.
fn background_mode_fetches_new_mail(mode: &[&str]) {
    let Some(s) = Server::start(2) else { return };
    let dest = s.t.join("out/Maildir/");
    let (mut cmd, _) = s
        .tool("imap", "none")
        .args(mode)
        .args(["-q", "--maildir"])
        .arg(&dest)
        .command();
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let wait_for = |n: usize| {
        // Generous: this waits for an event, it does not measure speed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while dir_names(&dest.join("new")).len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {n} arrived",
                dir_names(&dest.join("new")).len()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for(2);
    lmtp_to_alice(&s, "new while waiting");
    wait_for(3);
    let _ = child.kill();
    let _ = child.wait();
    // Killed maybe before it deleted the new one: a normal run finishes
    // the deletion and stores nothing again.
    let out = s.tool("imap", "none").arg("--maildir").arg(&dest).run();
    assert_eq!(out.code(), 1, "{}", out.stderr());
    let got = python_read_mailbox(&dest);
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .any(|m| m.ends_with(b"Subject: pushed\n\nnew while waiting\n"))
    );
    assert!(s.on_server().is_empty());
}

#[test]
fn idle_fetches_new_mail_as_it_arrives() {
    background_mode_fetches_new_mail(&["--idle"]);
}

#[test]
fn daemon_polls_and_fetches_new_mail() {
    background_mode_fetches_new_mail(&["--daemon", "1"]);
}

#[test]
fn a_second_fetcher_on_the_same_account_exits_8_and_a_missing_folder_does_not_stop_the_others() {
    let Some(s) = Server::start(4) else { return };
    let want = s.on_server();
    let home = s.home();
    let dir = home.join(".local/state/postline/fetch");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = dir.join(format!("imap-alice-127.0.0.1-{}.lock", s.dc.imap_port));
    let f = std::fs::File::create(&lock).unwrap();
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let dest = s.t.join("out/Maildir/");
    s.tool("imap", "none")
        .arg("--maildir")
        .arg(&dest)
        .run()
        .code_is(8)
        .stderr_has("another mail-fetch");
    assert!(!dest.exists(), "nothing done");
    drop(held);
    s.tool("imap", "none")
        .args(["--folder", "Nope", "--folder", "INBOX", "--maildir"])
        .arg(&dest)
        .run()
        .code_is(4)
        .stderr_has("folder Nope")
        .stderr_has("4 messages");
    assert_same_messages(python_read_mailbox(&dest), &want, "INBOX");
}

#[test]
fn smtp_target_hands_every_message_to_a_real_postfix() {
    let t = TempDir::new();
    let Some(mut pair) = crate::mta::Pair::start(t.path()) else {
        return;
    };
    let carol = t.join("mail/carol");
    fill_maildir(&carol, 6, 9);
    pair.dovecot.add_user("carol", &carol);
    let want = sorted(pair.dovecot.imap_fetch_all("carol"));
    assert_eq!(want.len(), 6);
    let home = t.join("home");
    std::fs::create_dir_all(&home).unwrap();
    Tool::new("mail-fetch", &home)
        .env("PW", Dovecot::PASSWORD)
        .args(["--imap", &format!("127.0.0.1:{}", pair.dovecot.imap_port)])
        .args(["--tls", "none", "--user", "carol", "--password-env", "PW"])
        .args(["--smtp", &format!("127.0.0.1:{}", pair.postfix.smtp_port)])
        .args(["--recipient", "alice@example.test"])
        .run()
        .success();
    assert!(pair.dovecot.imap_fetch_all("carol").is_empty());
    // Postfix delivers from its queue: wait for the mail to arrive.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let got = loop {
        let got = pair.dovecot.imap_fetch_all("alice");
        if got.len() >= want.len() || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(got.len(), want.len(), "delivered through Postfix");
    // Postfix adds Received and (these test messages have none) Date: every
    // original header line is there, and the body is intact.
    for w in &want {
        let body = w.windows(2).position(|x| x == b"\n\n").unwrap();
        let g = got
            .iter()
            .find(|g| g.ends_with(&w[body..]))
            .unwrap_or_else(|| panic!("body not delivered intact: {}", String::from_utf8_lossy(w)));
        for line in w[..body].split(|&c| c == b'\n') {
            assert!(
                g.windows(line.len()).any(|x| x == line),
                "header line lost: {}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

#[test]
fn xoauth2_sends_the_token_from_password_command_and_never_logs_it() {
    let home = TempDir::new();
    let (port, rx) = fake_server(
        "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] fake\r\n",
        |l| {
            let tag = l.split_whitespace().next().unwrap_or("*");
            format!("{tag} NO [AUTHENTICATIONFAILED] token expired\r\n")
        },
    );
    let out = Tool::new("mail-fetch", home.path())
        .args(["--imap", &format!("127.0.0.1:{port}"), "--tls", "none"])
        .args(["--user", "alice@example.test", "--auth", "xoauth2"])
        .args(["--password-command", "echo ya29.TOKEN", "-v", "--stdout"])
        .run()
        .code_is(3)
        .stderr_has("token expired")
        .stderr_has("AUTHENTICATE XOAUTH2 <redacted>");
    let got = rx.recv().unwrap();
    // base64("user=alice@example.test\x01auth=Bearer ya29.TOKEN\x01\x01")
    let want = "dXNlcj1hbGljZUBleGFtcGxlLnRlc3QBYXV0aD1CZWFyZXIgeWEyOS5UT0tFTgEB";
    assert!(!out.stderr().contains("TOKEN") && !out.stderr().contains(want));
    assert!(
        got.contains(&format!("AUTHENTICATE XOAUTH2 {want}")),
        "{got}"
    );
}

#[test]
fn max_messages_takes_the_rest_next_run() {
    let Some(s) = Server::start(7) else { return };
    let want = s.on_server();
    for proto in ["imap", "pop3"] {
        let home = s.t.join(format!("home-{proto}"));
        // No trailing slash: --maildir still makes a Maildir.
        let dest = s.t.join(format!("out-{proto}"));
        for (n, code) in [(3, 0), (6, 0), (7, 0), (7, 1)] {
            s.tool_in(proto, "none", &home)
                .args(["--keep", "--max-messages", "3", "--maildir"])
                .arg(&dest)
                .run()
                .code_is(code);
            assert_eq!(python_read_mailbox(&dest).len(), n, "{proto}");
        }
        assert_same_messages(python_read_mailbox(&dest), &want, proto);
    }
}

/// The progress line on a terminal (under `script`). Ignored by default:
/// it needs the fetch to last longer than one progress tick (250 ms).
#[test]
#[ignore]
fn progress_line_on_a_terminal() {
    let Some(s) = Server::start(3000) else { return };
    let dest = s.t.join("out/Maildir/");
    let home = s.home();
    let cmd = format!(
        "{} --imap 127.0.0.1:{} --tls none --user alice --password-env PW --batch 20 --maildir {}",
        bin("mail-fetch").display(),
        s.dc.imap_port,
        dest.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("PW", Dovecot::PASSWORD)
        .env("HOME", &home)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" msg/s, "), "{text:?}");
    assert!(
        text.contains("\r\x1b[K"),
        "progress line not cleared: {text:?}"
    );
    assert!(text.contains("3000 messages (4.3 MB)"), "{text:?}");
}

#[test]
fn a_pinned_certificate_is_accepted_without_a_ca_and_a_wrong_pin_or_no_trust_is_refused() {
    let Some(s) = Server::start(2) else { return };
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&s.dc.cert)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let fp = text.trim().rsplit('=').next().unwrap().to_string();
    let run = |pin: Option<&str>, home: &str| {
        let mut t = Tool::new("mail-fetch", &s.t.join(home))
            .env("PW", Dovecot::PASSWORD)
            .args(["--imap", &format!("127.0.0.1:{}", s.dc.imaps_port)])
            .args([
                "--tls",
                "implicit",
                "--user",
                "alice",
                "--password-env",
                "PW",
            ])
            .args(["--keep", "--stdout"]);
        if let Some(p) = pin {
            t = t.args(["--tls-fingerprint", p]);
        }
        std::fs::create_dir_all(s.t.join(home)).unwrap();
        t.run()
    };
    // Self-signed, not trusted: refused, nothing fetched.
    run(None, "h1").code_is(2).stdout_empty();
    let wrong = "00:".repeat(31) + "00";
    run(Some(&wrong), "h2")
        .code_is(2)
        .stderr_has("does not match")
        .stdout_empty();
    let out = run(Some(&fp), "h3").success();
    assert_eq!(
        out.stdout().matches("\nFrom ").count() + 1,
        2,
        "{}",
        out.stdout()
    );
}

#[test]
fn a_full_disk_stops_the_run_keeps_the_rest_on_the_server_and_the_next_run_finishes() {
    let Some(s) = Server::start(200) else { return };
    let want = s.on_server();
    let mnt = s.t.join("small");
    let _fs = Tmpfs::mount(&mnt, "120k");
    let dest = mnt.join("Maildir/");
    s.tool("imap", "none")
        .args(["--batch", "16", "--maildir"])
        .arg(&dest)
        .run()
        .code_is(10)
        .stderr_has("No space left on device");
    let stored = python_read_mailbox(&dest);
    let left = s.on_server();
    assert!(
        !stored.is_empty() && !left.is_empty(),
        "{} stored",
        stored.len()
    );
    let mut all = stored.clone();
    all.extend(left);
    assert_same_messages(all, &want, "stored + left on the server");
    // More room: the next run stores the rest, once.
    let ok = std::process::Command::new("mount")
        .args(["-o", "remount,size=8m"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success());
    s.tool("imap", "none")
        .args(["--batch", "16", "--maildir"])
        .arg(&dest)
        .run()
        .success();
    assert_same_messages(python_read_mailbox(&dest), &want, "after the second run");
    assert!(s.on_server().is_empty());
}

/// Issue 13, defect 2: a run without `--keep` after a `--keep` run deletes
/// what the earlier run stored, over IMAP as over POP3, stores nothing
/// again, and says what it deleted (exit 1: no new mail).
fn delete_after_keep_deletes_what_was_stored(proto: &str) {
    let Some(s) = Server::start(12) else { return };
    let want = s.on_server();
    let dest = s.t.join("out/Maildir/");
    s.tool(proto, "none")
        .args(["--keep", "--maildir"])
        .arg(&dest)
        .run()
        .success()
        .stderr_has("12 messages");
    assert_eq!(s.on_server(), want, "{proto}: --keep leaves everything");
    s.tool(proto, "none")
        .arg("--maildir")
        .arg(&dest)
        .run()
        .code_is(1)
        .stderr_has("no new mail")
        .stderr_has("12 deleted there")
        .stderr_one_line();
    assert_same_messages(python_read_mailbox(&dest), &want, "stored once");
    assert!(s.on_server().is_empty(), "{proto}: the server is empty");
    // Nothing left: nothing said.
    s.tool(proto, "none")
        .arg("--maildir")
        .arg(&dest)
        .run()
        .code_is(1)
        .stderr_empty();
}

#[test]
fn imap_delete_after_keep_deletes_what_was_stored() {
    delete_after_keep_deletes_what_was_stored("imap");
}

#[test]
fn pop3_delete_after_keep_deletes_what_was_stored() {
    delete_after_keep_deletes_what_was_stored("pop3");
}
