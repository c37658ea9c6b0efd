//! Hostile files for the store, the queue, mail-fetch's state and
//! mail-trace: planted or stale append journals, symlinks where we create
//! files, a queue entry without its message, state names that collide, a
//! huge sparse message. Each test failed before the fix it guards.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::*;
use crate::harness::{TempDir, is_root, python, python_read_mailbox, skip_unless};

/// A pid no process has (above any pid_max).
const DEAD_PID: i32 = 2_147_483_646;

fn deliver(home: &Path) -> Tool {
    Tool::new("mail-deliver", home)
}

fn arg(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn journal_for(mbox: &Path) -> PathBuf {
    PathBuf::from(format!("{}.postline-append", mbox.display()))
}

/// A small message whose body names it.
fn msg(n: usize) -> Vec<u8> {
    format!("From: a@example.org\nSubject: message {n}\n\nbody {n}\n").into_bytes()
}

/// A message of about `kib` KiB.
fn big(n: usize, kib: usize) -> Vec<u8> {
    let mut m = format!("From: a@example.org\nSubject: big {n}\n\n").into_bytes();
    for i in 0..kib * 16 {
        m.extend_from_slice(format!("{i:08} line of the big message {n:>24}\n").as_bytes());
    }
    m
}

fn uid_nobody() -> u32 {
    65534
}

/// The state a mail-deliver killed in the middle of its append leaves: the
/// mbox holds messages 1-3, then the first part of a 64 KiB message, and
/// the journal the killed writer recorded. Made for real: the writer runs
/// under a file size limit that cuts its write short, and strace kills it
/// before it can cut its partial append back. Returns the length before
/// the partial append.
fn killed_mid_append(t: &TempDir, mb: &Path) -> Option<u64> {
    if skip_unless(
        Path::new("/usr/bin/strace").exists() && Path::new("/usr/bin/prlimit").exists(),
        "strace(1) or prlimit(1) not installed",
    ) {
        return None;
    }
    for n in 1..=3 {
        deliver(t.path())
            .arg(arg(mb))
            .stdin(big(n, 48))
            .run()
            .success();
    }
    let start = fs::metadata(mb).unwrap().len();
    let limit = format!("--fsize={}", start + 16 * 1024);
    let killed = Tool::wrapped(
        &[
            "strace",
            "-f",
            "-o",
            "/dev/null",
            "-e",
            "trace=ftruncate",
            "-e",
            "inject=ftruncate:signal=SIGKILL:when=1",
            "prlimit",
            &limit,
        ],
        "mail-deliver",
        t.path(),
    )
    .arg(arg(mb))
    .stdin(big(4, 64))
    .run();
    assert_ne!(killed.code(), 0, "the injected SIGKILL did not happen");
    let len = fs::metadata(mb).unwrap().len();
    assert!(
        len > start && len < start + 64 * 1024,
        "no partial append left: {start} -> {len}"
    );
    assert!(
        journal_for(mb).exists(),
        "the killed writer left no journal"
    );
    // The killed writer's dotlock names a dead pid: the next writer breaks it.
    Some(start)
}

fn subjects(mb: &Path) -> Vec<String> {
    python_read_mailbox(mb)
        .iter()
        .map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or("(none)")
                .to_string()
        })
        .collect()
}

/// Positive control: a genuine journal of a writer killed mid-append, with
/// nothing written after it, is still repaired.
#[test]
fn a_killed_writers_partial_append_is_still_cut_off() {
    let t = TempDir::new();
    let mb = t.join("mbox");
    let Some(start) = killed_mid_append(&t, &mb) else {
        return;
    };
    deliver(t.path())
        .args(["--lock-timeout", "20", &arg(&mb)])
        .stdin(msg(5))
        .run()
        .success()
        .stderr_empty();
    assert_eq!(
        subjects(&mb),
        ["big 1", "big 2", "big 3", "message 5"],
        "the partial message was kept"
    );
    assert!(fs::metadata(&mb).unwrap().len() > start);
    assert!(!journal_for(&mb).exists());
}

/// Another MDA appended a complete message after the killed writer's
/// partial one (under the same locks): the journal no longer describes the
/// end of the file, and cutting at its start would lose that message.
#[test]
fn a_message_appended_after_a_killed_writer_is_never_cut_off() {
    let t = TempDir::new();
    let mb = t.join("mbox");
    let Some(_) = killed_mid_append(&t, &mb) else {
        return;
    };
    let _ = fs::remove_file(format!("{}.lock", mb.display()));
    python(
        r#"
import fcntl, sys
with open(sys.argv[1], "ab") as f:
    fcntl.lockf(f, fcntl.LOCK_EX)
    f.write(b"\n\nFrom other@example.org Thu Jan  1 00:00:00 1970\nSubject: other MDA\n\nkept\n\n")
    f.flush()
"#,
        &[mb.as_os_str()],
    );
    let before = fs::read(&mb).unwrap();
    let out = deliver(t.path())
        .args(["--lock-timeout", "20", &arg(&mb)])
        .stdin(msg(5))
        .run();
    let after = fs::read(&mb).unwrap();
    assert!(after.starts_with(&before), "bytes were cut");
    let s = subjects(&mb);
    assert!(s.contains(&"other MDA".to_string()), "{s:?}");
    assert_eq!(s.last().map(String::as_str), Some("message 5"));
    assert!(!journal_for(&mb).exists(), "the stale journal stayed");
    out.success().stderr_has("left as it is").stderr_one_line();
}

/// A genuine journal that another user could have planted (owned by
/// someone else, or writable by others) is not trusted.
#[test]
fn a_journal_owned_by_another_user_or_writable_by_others_is_ignored() {
    if skip_unless(is_root(), "chown needs root") {
        return;
    }
    for case in ["owner", "mode"] {
        let t = TempDir::new();
        let mb = t.join("mbox");
        let Some(_) = killed_mid_append(&t, &mb) else {
            return;
        };
        let j = journal_for(&mb);
        match case {
            "owner" => std::os::unix::fs::chown(&j, Some(uid_nobody()), None).unwrap(),
            _ => fs::set_permissions(&j, fs::Permissions::from_mode(0o666)).unwrap(),
        }
        let before = fs::read(&mb).unwrap();
        let out = deliver(t.path())
            .args(["--lock-timeout", "20", &arg(&mb)])
            .stdin(msg(5))
            .run();
        let after = fs::read(&mb).unwrap();
        assert!(after.starts_with(&before), "{case}: bytes were cut");
        assert_eq!(subjects(&mb)[..3], ["big 1", "big 2", "big 3"], "{case}");
        out.success()
            .stderr_has("postline-append")
            .stderr_one_line();
    }
}

/// The forged journal of issue 11: a dead pid and a range from 0 wiped
/// three complete messages down to one.
#[test]
fn a_forged_journal_cuts_nothing() {
    let t = TempDir::new();
    let mb = t.join("mbox");
    for n in 1..=3 {
        deliver(t.path())
            .arg(arg(&mb))
            .stdin(msg(n))
            .run()
            .success();
    }
    let before = fs::read(&mb).unwrap();
    let j = journal_for(&mb);
    for forged in [
        "postline-append pid=999999 start=0 end=999999999999\n".to_string(),
        format!("postline-append pid={DEAD_PID} start=10 end=999999999999\n"),
    ] {
        fs::write(&j, forged).unwrap();
        fs::set_permissions(&j, fs::Permissions::from_mode(0o600)).unwrap();
        let out = deliver(t.path()).arg(arg(&mb)).stdin(msg(9)).run();
        assert!(
            fs::read(&mb).unwrap().starts_with(&before),
            "bytes were cut"
        );
        assert!(!j.exists(), "the forged journal stayed");
        out.success().stderr_has("left as it is").stderr_one_line();
    }
    assert_eq!(
        subjects(&mb),
        [
            "message 1",
            "message 2",
            "message 3",
            "message 9",
            "message 9"
        ]
    );
}

/// A journal name that is a symlink: the append must neither write through
/// it (its target stays as it was) nor read it as a journal.
#[test]
fn a_symlinked_journal_is_neither_followed_nor_written_through() {
    let t = TempDir::new();
    let mb = t.join("mbox");
    for n in 1..=2 {
        deliver(t.path())
            .arg(arg(&mb))
            .stdin(msg(n))
            .run()
            .success();
    }
    let victim = t.join("victim");
    let forged = "postline-append pid=999999 start=0 end=999999999999\n";
    fs::write(&victim, forged).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&victim, journal_for(&mb)).unwrap();
    let before = fs::read(&mb).unwrap();
    let out = deliver(t.path()).arg(arg(&mb)).stdin(msg(3)).run();
    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        forged,
        "target overwritten"
    );
    assert!(
        fs::read(&mb).unwrap().starts_with(&before),
        "bytes were cut"
    );
    assert_eq!(subjects(&mb), ["message 1", "message 2", "message 3"]);
    assert!(
        fs::symlink_metadata(journal_for(&mb)).is_err(),
        "the planted link stayed"
    );
    out.success()
        .stderr_has("postline-append")
        .stderr_one_line();
}

/// A shared spool (mode 1777) in which the user nobody planted `name` as
/// a symbolic link to `target`.
fn planted_link(t: &TempDir, name: &str, target: &Path) -> PathBuf {
    let spool = t.join("spool");
    fs::create_dir_all(&spool).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o1777)).unwrap();
    let link = spool.join(name);
    symlink(target, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(uid_nobody()), None).unwrap();
    link
}

/// As root in a shared spool, mail was appended to a root-only file
/// another user had linked to; and an mbox was created through a dangling
/// link.
#[test]
fn as_root_an_mbox_linked_by_another_user_is_refused() {
    if skip_unless(
        is_root(),
        "needs root (delivering as root into a shared spool)",
    ) {
        return;
    }
    let t = TempDir::new();
    let secret = t.join("secret");
    fs::write(&secret, "root only\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let link = planted_link(&t, "alice", &secret);
    deliver(t.path())
        .arg(arg(&link))
        .stdin(msg(1))
        .run()
        .code_is(73)
        .stderr_has("symbolic link")
        .stderr_one_line();
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root only\n");

    let nowhere = t.join("cron-job");
    let dangling = planted_link(&t, "bob", &nowhere);
    deliver(t.path())
        .arg(arg(&dangling))
        .stdin(msg(2))
        .run()
        .code_is(73)
        .stderr_one_line();
    assert!(
        !nowhere.exists(),
        "a file was created through a dangling link"
    );

    // A link whose owner owns the target too is the owner's own business.
    let own = t.join("own-mbox");
    fs::write(&own, "").unwrap();
    std::os::unix::fs::chown(&own, Some(uid_nobody()), None).unwrap();
    let ok = planted_link(&t, "carol", &own);
    deliver(t.path())
        .arg(arg(&ok))
        .stdin(msg(3))
        .run()
        .success();
    assert_eq!(subjects(&own), ["message 3"]);
}

/// The same for a Maildir: the Maildir itself, or its new/, linked by
/// another user into a directory of root's.
#[test]
fn as_root_a_maildir_linked_by_another_user_is_refused() {
    if skip_unless(
        is_root(),
        "needs root (delivering as root into a shared spool)",
    ) {
        return;
    }
    let t = TempDir::new();
    let private = t.join("private");
    fs::create_dir_all(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let link = planted_link(&t, "alice", &private);
    deliver(t.path())
        .arg(format!("{}/", arg(&link)))
        .stdin(msg(1))
        .run()
        .code_is(73)
        .stderr_has("symbolic link")
        .stderr_one_line();
    assert_eq!(fs::read_dir(&private).unwrap().count(), 0, "written into");

    // A Maildir of nobody's whose new/ nobody pointed at root's directory.
    let md = t.join("spool").join("bob");
    for sub in ["tmp", "cur"] {
        fs::create_dir_all(md.join(sub)).unwrap();
    }
    symlink(&private, md.join("new")).unwrap();
    for p in [md.clone(), md.join("tmp"), md.join("cur")] {
        std::os::unix::fs::chown(&p, Some(uid_nobody()), None).unwrap();
    }
    std::os::unix::fs::lchown(md.join("new"), Some(uid_nobody()), None).unwrap();
    deliver(t.path())
        .arg(format!("{}/", arg(&md)))
        .stdin(msg(2))
        .run()
        .code_is(73)
        .stderr_one_line();
    assert_eq!(fs::read_dir(&private).unwrap().count(), 0, "written into");
}

mod queue {
    use super::*;
    use postline::queue::Spool;
    use postline::send::{Envelope, Route};

    fn entry(qdir: &Path) -> String {
        let env = Envelope {
            from: "alice@example.org".into(),
            rcpts: vec!["bob@example.org".into()],
            ..Envelope::default()
        };
        let route = Route::Lmtp {
            target: "127.0.0.1:1".into(),
        };
        Spool::open(qdir)
            .unwrap()
            .enqueue(&route, &env, &msg(1), "451 later")
            .unwrap()
    }

    fn mq(home: &Path, qdir: &Path) -> Tool {
        Tool::new("mail-queue", home).arg("--queue-dir").arg(qdir)
    }

    /// A state save wrote through a planted `state.json.tmp` link.
    #[test]
    fn a_state_save_never_writes_through_a_planted_link() {
        let t = TempDir::new();
        let q = t.join("q");
        let id = entry(&q);
        let victim = t.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        symlink(&victim, q.join(&id).join("state.json.tmp")).unwrap();
        mq(t.path(), &q).args(["hold", &id]).run().success();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(Spool::open(&q).unwrap().load(&id).unwrap().held);
    }

    /// An entry whose message file is gone was reported "being sent by
    /// another runner" on every run, for ever.
    #[test]
    fn an_entry_without_its_message_is_reported_once_and_held() {
        let t = TempDir::new();
        let q = t.join("q");
        let id = entry(&q);
        fs::remove_file(q.join(&id).join("message")).unwrap();
        let list = mq(t.path(), &q).run().success().stdout();
        assert!(list.contains("message file is missing"), "{list}");
        let show = mq(t.path(), &q)
            .args(["show", &id])
            .run()
            .success()
            .stdout();
        assert!(
            show.lines()
                .any(|l| l.starts_with("Message:") && l.contains("missing")),
            "{show}"
        );
        // Due now whatever the clock says.
        let far = (postline::queue::now() + 10 * 86400).to_string();
        let first = mq(t.path(), &q).env("POSTLINE_NOW", &far).arg("run").run();
        assert_eq!(first.code(), 75, "stderr: {}", first.stderr());
        let err = first.stderr();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&id) && err.contains("message file is missing"),
            "{err}"
        );
        assert!(!err.contains("another runner"), "{err}");
        let s = Spool::open(&q).unwrap().load(&id).unwrap();
        assert!(s.held, "not held");
        assert!(
            s.last_error()
                .is_some_and(|e| e.contains("message file is missing")),
            "{:?}",
            s.last_error()
        );
        // Reported once: the next run leaves the held entry alone.
        mq(t.path(), &q)
            .env("POSTLINE_NOW", &far)
            .arg("run")
            .run()
            .success()
            .stderr_empty();
        assert!(
            Spool::open(&q).unwrap().exists(&id),
            "the entry was dropped"
        );
    }
}

/// mail-trace needs only header blocks, but a 2 GB sparse file took 4.2 GB:
/// a "line" of 2 GB of NUL bytes was read whole. Message files (with and
/// without the empty line ending the header block, given directly or in
/// a Maildir) and an mbox whose body or header is one such line.
#[test]
fn mail_trace_holds_no_more_than_a_header_block_of_a_huge_file() {
    const HOP: &str =
        "Received: from a.example.org by b.example.org; Thu, 1 Jan 2026 00:00:00 +0000\n";
    let t = TempDir::new();
    let md = t.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(md.join(sub)).unwrap();
    }
    let cases = [
        (
            "headers-then-nul",
            format!("{HOP}Subject: x\n"),
            t.join("a.eml"),
        ),
        ("nul-at-once", String::new(), t.join("b.eml")),
        (
            "maildir",
            format!("{HOP}Subject: x\n"),
            md.join("new").join("1.x"),
        ),
        (
            "mbox-body",
            format!("From a@b Thu Jan  1 00:00:00 2026\n{HOP}Subject: x\n\n"),
            t.join("c.mbox"),
        ),
        (
            "mbox-header",
            format!("From a@b Thu Jan  1 00:00:00 2026\n{HOP}X-Big: "),
            t.join("d.mbox"),
        ),
    ];
    for (name, head, path) in cases {
        fs::write(&path, head).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        let target = if name == "maildir" {
            md.clone()
        } else {
            path.clone()
        };
        let rss = t.join(format!("{name}.rss"));
        let out = measured("mail-trace", t.path(), &rss)
            .arg("--json")
            .arg(&target)
            .run();
        let _ = fs::remove_file(&path);
        let kib = peak_rss_kib(&rss);
        assert!(kib < 64 * 1024, "{name}: peak RSS {kib} KiB");
        if name != "nul-at-once" {
            assert!(
                out.stdout().contains("b.example.org"),
                "{name}: hop not traced: {} {}",
                out.stdout(),
                out.stderr()
            );
        }
        // One line per thing to say (the cut, a file with no header field).
        for l in out.stderr().lines() {
            assert!(
                l.starts_with("mail-trace: ") && l.len() < 300 && !l.contains('\0'),
                "{name}: {l:?}"
            );
        }
    }
}

/// A Maildir++ folder's `maildirfolder` marker planted as a link to
/// nowhere: creating the marker created the link's target (as root, say
/// /etc/nologin).
#[test]
fn a_folder_marker_is_never_created_through_a_link() {
    let t = TempDir::new();
    let md = t.join("Maildir");
    let folder = md.join(".Lists");
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(folder.join(sub)).unwrap();
    }
    let nowhere = t.join("nologin");
    symlink(&nowhere, folder.join("maildirfolder")).unwrap();
    let out = deliver(t.path())
        .args(["--folder", "Lists"])
        .arg(format!("{}/", arg(&md)))
        .stdin(msg(1))
        .run();
    assert!(!nowhere.exists(), "created through the link");
    out.success();
    assert_eq!(
        python_read_mailbox(&folder).len(),
        1,
        "the message was not delivered"
    );
}

/// mail-fetch into an mbox says what mail-deliver says about a journal it
/// did not trust (it used to drop the note silently).
#[test]
fn mail_fetch_reports_an_untrusted_journal_too() {
    let t = TempDir::new();
    let mb = t.join("mbox");
    deliver(t.path())
        .arg(arg(&mb))
        .stdin(msg(1))
        .run()
        .success();
    let j = journal_for(&mb);
    fs::write(&j, "postline-append pid=999999 start=0 end=999999999999\n").unwrap();
    fs::set_permissions(&j, fs::Permissions::from_mode(0o600)).unwrap();
    let body = String::from_utf8(msg(2)).unwrap().replace('\n', "\r\n");
    let srv = Scripted::start(1, move |_, s| {
        let mut w = Wire::new(s);
        w.send("+OK hi\r\n");
        while let Some(l) = w.line() {
            let cmd = l.to_ascii_uppercase();
            let reply = if cmd.starts_with("CAPA") {
                "+OK\r\nUIDL\r\nUSER\r\n.\r\n".to_string()
            } else if cmd.starts_with("STAT") {
                format!("+OK 1 {}\r\n", body.len())
            } else if cmd.starts_with("LIST") {
                format!("+OK\r\n1 {}\r\n.\r\n", body.len())
            } else if cmd.starts_with("UIDL") {
                "+OK\r\n1 u1\r\n.\r\n".to_string()
            } else if cmd.starts_with("RETR") || cmd.starts_with("TOP") {
                format!("+OK\r\n{body}.\r\n")
            } else if cmd.starts_with("QUIT") {
                w.send("+OK bye\r\n");
                return;
            } else {
                "+OK\r\n".to_string()
            };
            w.send(reply);
        }
    });
    Tool::new("mail-fetch", t.path())
        .env("PW", "pw")
        .args(["--pop3", &format!("127.0.0.1:{}", srv.port)])
        .args([
            "--tls",
            "none",
            "--user",
            "u",
            "--password-env",
            "PW",
            "--keep",
        ])
        .arg("--mbox")
        .arg(&mb)
        .run()
        .success()
        .stderr_has("left as it is");
    srv.join();
    assert!(!j.exists(), "the forged journal stayed");
    assert_eq!(subjects(&mb), ["message 1", "message 2"]);
}
