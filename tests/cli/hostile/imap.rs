//! Hostile IMAP servers against mail-fetch: UIDs that were not asked for,
//! literal sizes that are not numbers, literals and untagged floods far
//! larger than anything we hold, sizes that lie, and a greeting dripped a
//! byte at a time. Each scripted server speaks just enough IMAP for one
//! run (LOGIN, SELECT, UID SEARCH, UID FETCH, UID STORE, UID EXPUNGE).

use std::sync::{Arc, Mutex};

use super::*;
use crate::harness::{TempDir, maildir_new};

/// What a scripted mailbox holds and how it answers a body FETCH.
#[derive(Clone)]
struct Mailbox {
    /// UIDs UID SEARCH reports.
    uids: Vec<u32>,
    /// RFC822.SIZE answers (uid, claimed size).
    sizes: Vec<(u32, u64)>,
    /// Bytes sent after the SELECT's own lines (a flood, say).
    select_extra: fn(&mut Wire),
    /// Writes the untagged part of the answer to `UID FETCH set (UID BODY.PEEK[])`.
    fetch: fn(&mut Wire, &str),
}

fn nothing(_: &mut Wire) {}

/// One message's FETCH response, as a literal.
fn message(uid: u32, body: &str) -> String {
    format!(
        "* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n{body})\r\n",
        body.len()
    )
}

fn body(uid: u32) -> String {
    format!("From: a@example.org\r\nSubject: m{uid}\r\n\r\nbody {uid}\r\n")
}

/// Serve one connection of `mb`; every command line (tag stripped) is
/// recorded in the returned log.
fn serve(mb: Mailbox) -> (Scripted, Arc<Mutex<Vec<String>>>) {
    serve_each(vec![mb])
}

/// Serve connection `i` of `mbs[i]` (one port: the state file is named
/// after it).
fn serve_each(mbs: Vec<Mailbox>) -> (Scripted, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let s = Scripted::start(mbs.len(), move |i, tcp| {
        let mb = &mbs[i];
        log2.lock().unwrap().push(format!("connection {i}"));
        let mut w = Wire::new(tcp);
        w.send("* OK [CAPABILITY IMAP4rev1 UIDPLUS] scripted\r\n");
        while let Some(line) = w.line() {
            let (tag, cmd) = line.split_once(' ').unwrap_or((&line, ""));
            let tag = tag.to_string();
            let cmd = cmd.to_string();
            log2.lock().unwrap().push(cmd.clone());
            let upper = cmd.to_ascii_uppercase();
            if upper.starts_with("SELECT") {
                w.send(format!(
                    "* {} EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n",
                    mb.uids.len()
                ));
                (mb.select_extra)(&mut w);
            } else if upper.starts_with("UID SEARCH") {
                let list: Vec<String> = mb.uids.iter().map(u32::to_string).collect();
                w.send(format!("* SEARCH {}\r\n", list.join(" ")));
            } else if upper.starts_with("UID FETCH") && upper.contains("RFC822.SIZE") {
                for (uid, size) in &mb.sizes {
                    w.send(format!("* {uid} FETCH (UID {uid} RFC822.SIZE {size})\r\n"));
                }
            } else if upper.starts_with("UID FETCH") {
                let set = cmd.split_whitespace().nth(2).unwrap_or("").to_string();
                (mb.fetch)(&mut w, &set);
            } else if upper.starts_with("LOGOUT") {
                w.send(format!("* BYE bye\r\n{tag} OK done\r\n"));
                return;
            }
            w.send(format!("{tag} OK done\r\n"));
        }
    });
    (s, log)
}

fn fetch(home: &Path, port: u16) -> Tool {
    Tool::new("mail-fetch", home)
        .env("PW", "secret")
        .args(["--imap", &format!("127.0.0.1:{port}"), "--tls", "none"])
        .args(["--user", "alice", "--password-env", "PW", "--timeout", "20"])
}

fn commands(log: &Arc<Mutex<Vec<String>>>, prefix: &str) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with(prefix))
        .cloned()
        .collect()
}

#[test]
fn uids_not_asked_for_are_neither_stored_nor_deleted_nor_remembered() {
    let home = TempDir::new();
    let md = home.join("Maildir/");
    // Asked for UID 1, the server sends UID 1 and UID 100 as well.
    let mb = Mailbox {
        uids: vec![1],
        sizes: Vec::new(),
        select_extra: nothing,
        fetch: |w, _| {
            w.send(message(1, &body(1)));
            w.send(message(100, &body(100)));
            // And one FETCH with a body but no UID at all.
            let b = body(101);
            w.send(format!("* 7 FETCH (BODY[] {{{}}}\r\n{b})\r\n", b.len()));
        },
    };
    let (s, log) = serve(mb.clone());
    fetch(home.path(), s.port)
        .arg("--maildir")
        .arg(&md)
        .run()
        .code_is(4)
        .stderr_has("UID 100")
        .stderr_has("not asked for");
    s.join();
    let got = maildir_new(&md);
    assert_eq!(got.len(), 1, "only the message asked for is stored");
    assert!(String::from_utf8_lossy(&got[0].1).contains("body 1"));
    let deleting: Vec<String> = commands(&log, "UID STORE")
        .into_iter()
        .chain(commands(&log, "UID EXPUNGE"))
        .collect();
    assert!(!deleting.is_empty(), "UID 1 is deleted");
    for c in &deleting {
        assert!(!c.contains("100"), "deleted what was not asked for: {c}");
    }

    // With --keep, the state must not jump past UID 1 to 100: the real
    // message 2 that arrives next must be fetched.
    let home = TempDir::new();
    let md = home.join("Maildir/");
    let mb2 = Mailbox {
        uids: vec![1, 2],
        sizes: Vec::new(),
        select_extra: nothing,
        fetch: |w, set| {
            if set.contains('2') {
                w.send(message(2, &body(2)));
            }
        },
    };
    let (s, log) = serve_each(vec![mb, mb2]);
    fetch(home.path(), s.port)
        .args(["--keep", "--maildir"])
        .arg(&md)
        .run()
        .code_is(4);
    fetch(home.path(), s.port)
        .args(["--keep", "--maildir"])
        .arg(&md)
        .run()
        .code_is(0);
    s.join();
    let second: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .skip_while(|c| *c != "connection 1")
        .filter(|c| c.starts_with("UID SEARCH"))
        .cloned()
        .collect();
    assert_eq!(second, ["UID SEARCH UID 2:*"], "state moved past UID 1");
    assert_eq!(maildir_new(&md).len(), 2);
}

#[test]
fn literal_sizes_that_are_not_numbers_are_protocol_errors() {
    for fetch_answer in [
        (|w: &mut Wire, _: &str| w.send("* 1 FETCH (UID 1 BODY[] {-5}\r\nhello\r\n)\r\n"))
            as fn(&mut Wire, &str),
        |w, _| w.send("* 1 FETCH (UID 1 BODY[] {1x2}\r\nhello\r\n)\r\n"),
        |w, _| w.send("* 1 FETCH (UID 1 BODY[] {99999999999999999999}\r\nhello\r\n)\r\n"),
    ] {
        let home = TempDir::new();
        let mb = Mailbox {
            uids: vec![1],
            sizes: Vec::new(),
            select_extra: nothing,
            fetch: fetch_answer,
        };
        let (s, log) = serve(mb);
        fetch(home.path(), s.port)
            .args(["--maildir", "Maildir/"])
            .run()
            .code_is(4)
            .stderr_has("literal")
            .stderr_one_line();
        s.join();
        assert!(commands(&log, "UID EXPUNGE").is_empty());
    }
}

#[test]
fn a_message_over_max_size_is_judged_by_its_bytes_not_by_the_size_claimed() {
    let home = TempDir::new();
    let md = home.join("Maildir/");
    // UID 1 claims 100 bytes and sends 5000; UID 2 is honest.
    let mb = Mailbox {
        uids: vec![1, 2],
        sizes: vec![(1, 100), (2, 100)],
        select_extra: nothing,
        fetch: |w, _| {
            w.send(message(1, &format!("{}\r\n", "x".repeat(4998))));
            w.send(message(2, &body(2)));
        },
    };
    let (s, log) = serve(mb);
    fetch(home.path(), s.port)
        .args(["--max-size", "1000", "--maildir"])
        .arg(&md)
        .run()
        .code_is(10)
        .stderr_has("UID 1")
        .stderr_has("size limit");
    s.join();
    let got = maildir_new(&md);
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0].1).contains("body 2"));
    for c in commands(&log, "UID STORE")
        .into_iter()
        .chain(commands(&log, "UID EXPUNGE"))
    {
        assert_eq!(c.split_whitespace().nth(2), Some("2"), "{c}");
    }
}

/// Send `total` bytes of a literal in 1 MB writes of one reused buffer
/// (the test never holds the literal).
fn send_big_literal(w: &mut Wire, total: u64) {
    let mut chunk = vec![b'x'; 1_000_000];
    for i in (0..chunk.len()).step_by(100) {
        chunk[i + 98] = b'\r';
        chunk[i + 99] = b'\n';
    }
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.send(&chunk[..n]);
        left -= n as u64;
    }
}

/// What a run may hold at most, whatever the server sends: the binary and
/// its libraries, one line (16 MiB) and buffers; nothing in proportion to
/// a literal over the cap or to untagged responses.
const PEAK_RSS_KIB: u64 = 96 * 1024;

#[test]
fn a_300_mb_literal_is_not_held_and_the_message_is_left_on_the_server() {
    let home = TempDir::new();
    let md = home.join("Maildir/");
    let mb = Mailbox {
        uids: vec![1, 2],
        sizes: Vec::new(),
        select_extra: nothing,
        fetch: |w, _| {
            w.send("* 1 FETCH (UID 1 BODY[] {300000000}\r\n");
            send_big_literal(w, 300_000_000);
            w.send(")\r\n");
            w.send(message(2, &body(2)));
        },
    };
    let (s, log) = serve(mb);
    let rss = home.join("rss");
    measured("mail-fetch", home.path(), &rss)
        .env("PW", "secret")
        .args(["--imap", &format!("127.0.0.1:{}", s.port), "--tls", "none"])
        .args(["--user", "alice", "--password-env", "PW", "--maildir"])
        .arg(&md)
        .run()
        .code_is(10)
        .stderr_has("UID 1")
        .stderr_has("300000000");
    s.join();
    let peak = peak_rss_kib(&rss);
    eprintln!("peak RSS {peak} KiB (bound {PEAK_RSS_KIB})");
    assert!(peak < PEAK_RSS_KIB, "peak RSS {peak} KiB");
    let got = maildir_new(&md);
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0].1).contains("body 2"));
    for c in commands(&log, "UID EXPUNGE") {
        assert_eq!(c, "UID EXPUNGE 2");
    }
}

#[test]
fn a_flood_of_untagged_responses_and_literals_not_asked_for_is_not_held() {
    let home = TempDir::new();
    let md = home.join("Maildir/");
    let mb = Mailbox {
        uids: vec![1],
        sizes: Vec::new(),
        // 100 MB of untagged lines during SELECT ...
        select_extra: |w| {
            let line = format!("* OK [ALERT] {}\r\n", "y".repeat(80));
            let block = line.repeat(10_000);
            for _ in 0..100 {
                w.send(&block);
            }
        },
        // ... and a 100 MB literal in an untagged response during FETCH.
        fetch: |w, _| {
            w.send("* 1 FETCH (UID 1 FLAGS () X-JUNK {100000000}\r\n");
            send_big_literal(w, 100_000_000);
            w.send(")\r\n");
            w.send(message(1, &body(1)));
        },
    };
    let (s, _) = serve(mb);
    let rss = home.join("rss");
    measured("mail-fetch", home.path(), &rss)
        .env("PW", "secret")
        .args(["--imap", &format!("127.0.0.1:{}", s.port), "--tls", "none"])
        .args(["--user", "alice", "--password-env", "PW", "--maildir"])
        .arg(&md)
        .run()
        .code_is(0);
    s.join();
    let peak = peak_rss_kib(&rss);
    eprintln!("peak RSS {peak} KiB (bound {PEAK_RSS_KIB})");
    assert!(peak < PEAK_RSS_KIB, "peak RSS {peak} KiB");
    assert_eq!(maildir_new(&md).len(), 1);
}

#[test]
fn endless_chatter_ends_the_run_as_a_protocol_error() {
    let home = TempDir::new();
    let mb = Mailbox {
        uids: vec![1],
        sizes: Vec::new(),
        // Untagged lines without end (until the client goes away).
        select_extra: |w| {
            let block = "* 1 RECENT\r\n".repeat(100_000);
            for _ in 0..1000 {
                w.send(&block);
            }
        },
        fetch: |_, _| {},
    };
    let (s, _) = serve(mb);
    fetch(home.path(), s.port)
        .args(["--maildir", "Maildir/"])
        .run()
        .code_is(4)
        .stderr_has("not asked for")
        .stderr_one_line();
    s.join();
}

#[test]
fn a_dripping_greeting_is_cut_off_after_the_timeout() {
    let home = TempDir::new();
    let s = Scripted::start(1, |_, mut tcp| {
        // 40 s to send the greeting, if nobody hangs up first.
        for b in b"* OK [CAPABILITY IMAP4rev1] a very slow hello from here\r\n"
            .iter()
            .take(40)
        {
            if tcp.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    });
    let start = std::time::Instant::now();
    Tool::new("mail-fetch", home.path())
        .env("PW", "secret")
        .args(["--imap", &format!("127.0.0.1:{}", s.port), "--tls", "none"])
        .args(["--user", "alice", "--password-env", "PW", "--timeout", "2"])
        .args(["--maildir", "Maildir/"])
        .run()
        .code_is(2)
        .stderr_has("timed out")
        .stderr_one_line();
    // A hang guard, not a measurement.
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    s.join();
}

#[test]
fn control_characters_from_the_server_never_reach_the_terminal() {
    let home = TempDir::new();
    let s = Scripted::start(1, |_, tcp| {
        let mut w = Wire::new(tcp);
        w.send("* OK [CAPABILITY IMAP4rev1] hi\r\n");
        while let Some(line) = w.line() {
            let tag = line.split_whitespace().next().unwrap_or("*").to_string();
            w.send(format!("{tag} NO \x1b[31mred\x07 \x1b]0;title\x07\r\n"));
        }
    });
    let out = Tool::new("mail-fetch", home.path())
        .env("PW", "secret")
        .args(["--imap", &format!("127.0.0.1:{}", s.port), "--tls", "none"])
        .args(["--user", "alice", "--password-env", "PW", "-v"])
        .args(["--maildir", "Maildir/"])
        .run()
        .code_is(3);
    s.join();
    let err = out.stderr();
    assert!(err.contains("red"), "{err}");
    assert!(
        !err.bytes().any(|b| b == 0x1b || b == 0x07),
        "raw control characters: {err:?}"
    );
}

/// Each answer to a body FETCH: every UID of the set asked for (`a:b` or a
/// single number, or a comma list of those).
fn each_asked(w: &mut Wire, set: &str) {
    for part in set.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
        for uid in a..=b {
            w.send(message(uid, &body(uid)));
        }
    }
}

/// Delete mode flags each stored batch \Deleted and expunges once, when
/// the folder is done (an expunge per batch made the server stop and
/// delete files between batches); the expunge names exactly the UIDs
/// stored and comes after the last FETCH.
#[test]
fn stored_batches_are_flagged_as_they_go_and_expunged_once_at_the_end() {
    let home = TempDir::new();
    let md = home.join("Maildir/");
    let mb = Mailbox {
        uids: vec![1, 2, 3, 4, 5],
        sizes: Vec::new(),
        select_extra: nothing,
        fetch: each_asked,
    };
    let (s, log) = serve(mb);
    fetch(home.path(), s.port)
        .args(["--batch", "2", "--maildir"])
        .arg(&md)
        .run()
        .success();
    s.join();
    assert_eq!(maildir_new(&md).len(), 5);
    let stores = commands(&log, "UID STORE");
    assert_eq!(stores.len(), 3, "one \\Deleted flag per batch: {stores:?}");
    assert!(stores.iter().all(|c| c.contains("\\Deleted")));
    assert_eq!(commands(&log, "UID EXPUNGE"), vec!["UID EXPUNGE 1:5"]);
    let all = log.lock().unwrap().clone();
    let last_fetch = all
        .iter()
        .rposition(|c| c.to_ascii_uppercase().starts_with("UID FETCH"));
    let expunge = all
        .iter()
        .position(|c| c.to_ascii_uppercase().starts_with("UID EXPUNGE"));
    assert!(
        expunge > last_fetch,
        "expunged before the last batch was read: {all:?}"
    );
}

/// A session that breaks after a batch was flagged \Deleted, before the
/// expunge: the messages stay on the server (flagged), recorded as stored;
/// the next run expunges them without fetching them again.
#[test]
fn messages_flagged_but_not_expunged_are_deleted_by_the_next_run_not_fetched_again() {
    let home = TempDir::new();
    let md = home.join("Maildir/");
    fn fetch_then_die(w: &mut Wire, set: &str) {
        if set == "5" {
            // The third batch: the connection drops mid-answer.
            w.send("* 5 FETCH (UID 5 BODY[] {500}\r\nFrom: a@example.org\r\n");
            w.close();
            return;
        }
        each_asked(w, set);
    }
    let first = Mailbox {
        uids: vec![1, 2, 3, 4, 5],
        sizes: Vec::new(),
        select_extra: nothing,
        fetch: fetch_then_die,
    };
    let second = Mailbox {
        uids: vec![1, 2, 3, 4, 5],
        sizes: Vec::new(),
        select_extra: nothing,
        fetch: each_asked,
    };
    let (s, log) = serve_each(vec![first, second]);
    let run1 = fetch(home.path(), s.port)
        .args(["--batch", "2", "--maildir"])
        .arg(&md)
        .run();
    assert_ne!(
        run1.code(),
        0,
        "the broken session must not look like success"
    );
    assert_eq!(maildir_new(&md).len(), 4);
    {
        let all = log.lock().unwrap();
        let first: Vec<&String> = all.iter().take_while(|c| *c != "connection 1").collect();
        assert!(
            first.iter().any(|c| c.starts_with("UID STORE 1:2 +FLAGS")),
            "the first batch was not flagged in the first session: {first:?}"
        );
        assert!(
            !first.iter().any(|c| c.starts_with("UID EXPUNGE")),
            "expunged before the folder was done: {first:?}"
        );
    }
    fetch(home.path(), s.port)
        .args(["--batch", "2", "--maildir"])
        .arg(&md)
        .run()
        .success();
    s.join();
    assert_eq!(maildir_new(&md).len(), 5, "each message once");
    let all = log.lock().unwrap().clone();
    let second_start = all.iter().position(|c| c == "connection 1").unwrap();
    let fetched_again: Vec<&String> = all[second_start..]
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("UID FETCH"))
        .collect();
    assert!(
        fetched_again
            .iter()
            .all(|c| !c.contains(" 1") && !c.contains("1:")),
        "stored messages were fetched again: {fetched_again:?}"
    );
    assert!(
        all[second_start..].iter().any(|c| c == "UID EXPUNGE 1:5"),
        "the second run did not expunge all five: {all:?}"
    );
}
