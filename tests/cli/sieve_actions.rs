//! mail-deliver --sieve: the actions that send and remember. `redirect`
//! arriving through the harness's Postfix (read back over IMAP from its
//! Dovecot), the relay down (queued, or kept in INBOX, never lost),
//! `vacation` sent once per sender and never to lists, bulk or `<>`,
//! `duplicate` with a pinned clock, loop protection, the dry run, and
//! Pigeonhole's sieve-test on the same scripts.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::mta::Pair;

const TOOL: &str = "mail-deliver";

/// A personal message from alice (on the harness's test domain) to me.
const MSG: &[u8] = b"From: Alice <alice@example.test>\n\
To: Me <me@example.net>\n\
Subject: lunch?\n\
Message-ID: <lunch-1@example.test>\n\
\n\
Shall we?\n";

fn md_arg(p: &Path) -> String {
    format!("{}/", p.display())
}

fn script(home: &TempDir, text: &str) -> String {
    let p = home.join("s.sieve");
    fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn deliver(home: &TempDir, script: &str, md: &Path) -> Tool {
    Tool::new(TOOL, home.path())
        .args(["--sieve", script])
        .arg(md_arg(md))
}

/// `~/.config/postline/config.toml` with one default account on
/// 127.0.0.1:`port` (plain text), plus `extra` lines.
fn config(home: &TempDir, port: u16, extra: &str) {
    let dir = home.join(".config/postline");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("config.toml"),
        format!(
            "{extra}\n[account.relay]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ndefault = true\n"
        ),
    )
    .unwrap();
}

/// Every file under the Maildir's new/ and cur/ (folders included).
fn stored(md: &Path) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path
                    .parent()
                    .is_some_and(|d| d.ends_with("new") || d.ends_with("cur"))
                {
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(md, &mut out);
    out.sort();
    out
}

/// The queue entries' state files under the default spool.
fn queued(home: &TempDir) -> Vec<serde_json::Value> {
    let spool = home.join(".local/state/postline/queue");
    let mut out = Vec::new();
    for e in fs::read_dir(&spool).into_iter().flatten().flatten() {
        let st = e.path().join("state.json");
        if st.is_file() {
            out.push(serde_json::from_slice(&fs::read(st).unwrap()).unwrap());
        }
    }
    out
}

/// alice's INBOX over IMAP, once it holds `n` messages (Postfix delivers
/// asynchronously; the deadline only bounds a failing test).
fn inbox(pair: &Pair, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = pair.dovecot.imap_fetch_all("alice");
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "alice has {} messages, want {n}\n{}",
            got.len(),
            fs::read_to_string(&pair.postfix.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        l.split_once(':')
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    })
}

#[test]
fn redirect_arrives_through_postfix_from_the_original_sender() {
    let t = TempDir::new();
    let Some(pair) = Pair::start(t.path()) else {
        return;
    };
    let home = TempDir::new();
    config(&home, pair.postfix.plain_port, "");
    let md = home.join("Maildir");
    let s = script(
        &home,
        "require \"copy\";\nredirect \"alice@example.test\";\nredirect :copy \"alice+copy@example.test\";\n",
    );
    deliver(&home, &s, &md)
        .args([
            "-f",
            "original@client.example",
            "--recipient",
            "me@example.net",
        ])
        .stdin(MSG)
        .run()
        .success()
        .stderr_empty();
    // The first redirect has no :copy: the second keeps nothing either, so
    // nothing is stored here.
    assert!(stored(&md).is_empty(), "{:?}", stored(&md));
    let got = inbox(&pair, 2);
    assert_eq!(got.len(), 2);
    for m in &got {
        let text = String::from_utf8_lossy(m);
        // Dovecot writes the Return-Path from MAIL FROM: the original
        // sender's, kept as RFC 5228 asks.
        assert_eq!(
            header(&text, "Return-Path"),
            Some("<original@client.example>"),
            "{text}"
        );
        assert!(text.contains("Delivered-To: me@example.net\n"), "{text}");
        assert_eq!(text.matches("Return-Path:").count(), 1, "{text}");
        assert!(text.ends_with("\n\nShall we?\n"), "{text}");
        assert!(text.contains("Subject: lunch?\n"), "{text}");
    }

    // The relay down: the redirect waits in the queue, and mail-queue
    // sends it, with the same envelope, once the relay is back.
    config(&home, free_ports(1)[0], "");
    let s = script(&home, "redirect \"alice@example.test\";\n");
    deliver(&home, &s, &md)
        .args(["-f", "later@client.example"])
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("queued as");
    assert!(stored(&md).is_empty());
    config(&home, pair.postfix.plain_port, "");
    Tool::new("mail-queue", home.path())
        .arg("flush")
        .run()
        .success();
    assert!(queued(&home).is_empty());
    let got = inbox(&pair, 3);
    let text = String::from_utf8_lossy(&got[2]);
    assert_eq!(
        header(&text, "Return-Path"),
        Some("<later@client.example>"),
        "{text}"
    );
    assert!(text.ends_with("\n\nShall we?\n"), "{text}");
}

#[test]
fn redirect_with_the_relay_down_is_queued_or_kept_never_lost() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let dead = free_ports(1)[0];
    let s = script(&home, "redirect \"far@example.org\";\n");
    // Queued: the entry keeps the original sender and the new recipient.
    config(&home, dead, "");
    deliver(&home, &s, &md)
        .args(["-f", "original@client.example"])
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("queued as");
    assert!(stored(&md).is_empty());
    let q = queued(&home);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["from"], "original@client.example");
    assert_eq!(q[0]["rcpts"][0]["addr"], "far@example.org");
    assert_eq!(q[0]["route"]["route"], "account");
    assert_eq!(q[0]["route"]["name"], "relay");
    let spool = home.join(".local/state/postline/queue");
    let entry = fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("message").is_file())
        .unwrap();
    let sent = fs::read(entry.join("message")).unwrap();
    let text = String::from_utf8_lossy(&sent);
    assert!(!text.contains("Return-Path:"), "{text}");
    assert!(text.ends_with("\n\nShall we?\n"), "{text}");

    // No queue allowed: kept in INBOX, said on stderr.
    config(&home, dead, "[send]\nno_queue = true\n");
    deliver(&home, &s, &md)
        .args(["-f", "original@client.example"])
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("message kept in INBOX");
    assert_eq!(maildir_new(&md).len(), 1);
    assert_eq!(queued(&home).len(), 1);

    // No route at all (no config): kept in INBOX too.
    fs::remove_file(home.join(".config/postline/config.toml")).unwrap();
    deliver(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("no route");
    assert_eq!(maildir_new(&md).len(), 2);

    // Neither sent, queued nor stored (a file size limit stops the store):
    // exit 75, so the MTA keeps it.
    if skip_unless(
        Path::new("/usr/bin/prlimit").exists(),
        "prlimit(1) not installed",
    ) {
        return;
    }
    let md2 = home.join("Maildir2");
    Tool::wrapped(&["prlimit", "--fsize=100"], TOOL, home.path())
        .args(["--sieve", &s])
        .arg(md_arg(&md2))
        .stdin(MSG)
        .run()
        .code_is(75)
        .stderr_has("no route")
        .stderr_has("File too large");
    assert!(stored(&md2).is_empty());
}

#[test]
fn vacation_answers_once_per_sender_and_never_lists_bulk_or_null() {
    let t = TempDir::new();
    let Some(pair) = Pair::start(t.path()) else {
        return;
    };
    let home = TempDir::new();
    config(&home, pair.postfix.plain_port, "");
    let md = home.join("Maildir");
    let s = script(
        &home,
        "require \"vacation\";\nvacation :days 7 \"I am away until Monday.\";\n",
    );
    let run = |msg: &[u8], from: &str, now: &str| {
        deliver(&home, &s, &md)
            .args(["-f", from, "--recipient", "me@example.net", "--now", now])
            .stdin(msg.to_vec())
            .run()
            .success()
    };
    run(MSG, "alice@example.test", "2030-01-01T10:00:00Z").stderr_empty();
    let second =
        b"From: Alice <alice@example.test>\nTo: me@example.net\nSubject: again\n\nHello?\n";
    run(second, "alice@example.test", "2030-01-02T10:00:00Z").stderr_has("already answered");
    let with = |h: &str| {
        let mut m = h.as_bytes().to_vec();
        m.extend_from_slice(b"From: x@example.test\nTo: me@example.net\nSubject: s\n\nx\n");
        m
    };
    run(
        &with("List-Id: <l.example.test>\n"),
        "bob@example.test",
        "2030-01-02T10:00:00Z",
    )
    .stderr_has("list mail");
    run(
        &with("Precedence: bulk\n"),
        "bob@example.test",
        "2030-01-02T10:00:00Z",
    )
    .stderr_has("Precedence: bulk");
    run(&with(""), "", "2030-01-02T10:00:00Z").stderr_has("null sender");
    run(&with(""), "owner-l@example.test", "2030-01-02T10:00:00Z").stderr_has("list address");
    // Every message is kept (vacation cancels no keep).
    assert_eq!(maildir_new(&md).len(), 6);
    // After the period alice is answered again: that second reply is the
    // marker that everything before it has been through Postfix.
    run(MSG, "alice@example.test", "2030-01-09T10:00:01Z").stderr_empty();
    let got = inbox(&pair, 2);
    assert_eq!(got.len(), 2, "exactly two replies reached alice");
    for m in &got {
        let text = String::from_utf8_lossy(m);
        assert_eq!(header(&text, "Return-Path"), Some("<>"), "{text}");
        assert_eq!(header(&text, "Subject"), Some("Auto: lunch?"), "{text}");
        assert_eq!(header(&text, "From"), Some("me@example.net"), "{text}");
        assert_eq!(
            header(&text, "Auto-Submitted"),
            Some("auto-replied (vacation)")
        );
        assert_eq!(header(&text, "In-Reply-To"), Some("<lunch-1@example.test>"));
        assert!(text.ends_with("\n\nI am away until Monday.\n"), "{text}");
    }
    // The store holds digests only, 0600, under $XDG_STATE_HOME.
    let mem = home.join(".local/state/postline/sieve/memory");
    let text = fs::read_to_string(&mem).unwrap();
    assert!(!text.contains("alice"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&mem).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn duplicate_seconds_and_last_with_a_pinned_clock() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let dups = |md: &Path| fs::read_dir(md.join(".Dups/new")).map_or(0, |d| d.count());
    let check = |text: &str, times: &[(&str, usize, usize)]| {
        let s = script(&home, text);
        let _ = fs::remove_dir_all(&md);
        let _ = fs::remove_dir_all(home.join(".local/state/postline/sieve"));
        for (now, inbox, dup) in times {
            deliver(&home, &s, &md)
                .args(["--now", now])
                .stdin(MSG)
                .run()
                .success();
            assert_eq!(
                (maildir_new(&md).len(), dups(&md)),
                (*inbox, *dup),
                "{text} at {now}"
            );
        }
    };
    // Remembered for 60 s from the first sight.
    check(
        "require [\"duplicate\", \"fileinto\", \"mailbox\"];\nif duplicate :seconds 60 { fileinto :create \"Dups\"; }\n",
        &[
            ("1000", 1, 0),
            ("1030", 1, 1),
            ("1059", 1, 2),
            ("1061", 2, 2),
        ],
    );
    // :last: 60 s from the last sight.
    check(
        "require [\"duplicate\", \"fileinto\", \"mailbox\"];\nif duplicate :seconds 60 :last { fileinto :create \"Dups\"; }\n",
        &[
            ("1000", 1, 0),
            ("1050", 1, 1),
            ("1100", 1, 2),
            ("1161", 2, 2),
        ],
    );
    // A dry run neither records nor needs the store.
    let s = script(
        &home,
        "require \"duplicate\";\nif duplicate :uniqueid \"x\" { discard; }\n",
    );
    for _ in 0..2 {
        let out = deliver(&home, &s, &md)
            .args(["--dry-run", "--now", "5000"])
            .stdin(MSG)
            .run()
            .success();
        assert_eq!(out.stdout_lines(), vec!["implicit keep: keep".to_string()]);
    }
    // POSTLINE_NOW pins the clock as --now does: remembered from 5000 for
    // the default 12 hours.
    deliver(&home, &s, &md)
        .env("POSTLINE_NOW", "5000")
        .stdin(MSG)
        .run()
        .success();
    let dry = |now: u64| {
        deliver(&home, &s, &md)
            .args(["--dry-run", "--now", &now.to_string()])
            .stdin(MSG)
            .run()
            .success()
            .stdout_lines()
    };
    let lines = dry(5000 + 12 * 3600 - 1);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("line 2: discard (because duplicate"),
        "{lines:?}"
    );
    assert_eq!(
        dry(5000 + 12 * 3600),
        vec!["implicit keep: keep".to_string()]
    );
}

#[test]
fn expect_lines_say_what_vacation_and_redirect_would_send() {
    let home = TempDir::new();
    // A route in the config changes nothing in the expectations.
    config(&home, free_ports(1)[0], "");
    let dir = home.join("cases");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("a.eml"), MSG).unwrap();
    let mut list = b"List-Id: <l.example.test>\n".to_vec();
    list.extend_from_slice(MSG);
    fs::write(dir.join("b.eml"), &list).unwrap();
    for n in ["a", "b"] {
        fs::write(
            dir.join(format!("{n}.expect")),
            "# from: alice@example.test\n# to: me@example.net\n",
        )
        .unwrap();
    }
    let s = script(
        &home,
        "require \"vacation\";\nvacation :days 2 \"away\";\nredirect \"far@example.org\";\n",
    );
    let expect = |update: bool| {
        let mut t = Tool::new(TOOL, home.path())
            .args(["--sieve", &s, "--expect"])
            .arg(&dir);
        if update {
            t = t.arg("--expect-update");
        }
        t.run()
    };
    expect(true).success();
    assert_eq!(
        fs::read_to_string(dir.join("a.expect")).unwrap(),
        "# from: alice@example.test\n# to: me@example.net\n\
         vacation \"away\" :days 2 => would reply to <alice@example.test>: \"Auto: lunch?\"\n\
         redirect \"far@example.org\" => would send to <far@example.org> from <alice@example.test>\n"
    );
    assert_eq!(
        fs::read_to_string(dir.join("b.expect")).unwrap(),
        "# from: alice@example.test\n# to: me@example.net\n\
         vacation \"away\" :days 2 => not carried out: the message is list mail (List-Id)\n\
         redirect \"far@example.org\" => would send to <far@example.org> from <alice@example.test>\n"
    );
    let out = expect(false).success();
    assert!(
        out.stdout().contains("2 passed, 0 failed"),
        "{}",
        out.stdout()
    );
    assert!(queued(&home).is_empty());
}

#[test]
fn dry_run_shows_what_would_be_sent_and_sends_nothing() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    config(&home, free_ports(1)[0], "");
    let s = script(
        &home,
        "require [\"vacation\", \"copy\"];\nredirect :copy \"far@example.org\";\nvacation :subject \"Away\" \"back soon\";\n",
    );
    let out = deliver(&home, &s, &md)
        .args([
            "--dry-run",
            "--json",
            "-f",
            "alice@example.test",
            "--recipient",
            "me@example.net",
        ])
        .stdin(MSG)
        .run()
        .success();
    let recs: Vec<serde_json::Value> = out
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3, "{}", out.stdout());
    assert_eq!(recs[0]["action"], "redirect");
    assert_eq!(recs[0]["send"], true);
    assert_eq!(recs[0]["envelope_from"], "alice@example.test");
    assert_eq!(recs[0]["envelope_to"][0], "far@example.org");
    assert_eq!(recs[0]["route"], "account relay (default = true)");
    assert_eq!(recs[1]["action"], "vacation");
    assert_eq!(recs[1]["send"], true);
    assert_eq!(recs[1]["envelope_to"][0], "alice@example.test");
    assert_eq!(recs[1]["reply_subject"], "Away");
    assert_eq!(recs[1]["days"], 7);
    assert_eq!(recs[2]["action"], "keep");
    // Nothing was sent or queued or stored or remembered.
    assert!(queued(&home).is_empty());
    assert!(stored(&md).is_empty());
    assert!(!home.join(".local/state/postline/sieve/memory").exists());
    // The text form says the same.
    let out = deliver(&home, &s, &md)
        .args([
            "--dry-run",
            "-f",
            "alice@example.test",
            "--recipient",
            "me@example.net",
        ])
        .stdin(MSG)
        .run()
        .success();
    let lines = out.stdout_lines();
    assert!(
        lines[0].ends_with("[would send to <far@example.org> from <alice@example.test> via account relay (default = true)]"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("[would reply to <alice@example.test>: \"Away\""),
        "{lines:?}"
    );
}

#[test]
fn a_looping_message_is_neither_redirected_nor_answered() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    config(&home, free_ports(1)[0], "[deliver]\nmax_received = 3\n");
    let s = script(
        &home,
        "require \"vacation\";\nredirect \"far@example.org\";\nvacation \"away\";\n",
    );
    let mut msg = b"Received: from a by b; Tue, 1 Jul 2025 10:00:00 +0000\n".repeat(4);
    msg.extend_from_slice(MSG);
    let out = deliver(&home, &s, &md)
        .args([
            "--dry-run",
            "-f",
            "alice@example.test",
            "--recipient",
            "me@example.net",
        ])
        .stdin(msg.clone())
        .run()
        .success();
    for l in &out.stdout_lines()[..2] {
        assert!(
            l.contains("not carried out: the message has 4 Received fields (more than 3)"),
            "{l}"
        );
    }
    deliver(&home, &s, &md)
        .args(["-f", "alice@example.test", "--recipient", "me@example.net"])
        .stdin(msg)
        .run()
        .success()
        .stderr_has(
            "redirect to far@example.org not carried out: the message has 4 Received fields",
        )
        .stderr_has("no vacation reply: the message has 4 Received fields");
    // Kept, never lost; nothing queued.
    assert_eq!(maildir_new(&md).len(), 1);
    assert!(queued(&home).is_empty());
    // Three are fine: the relay is down, so the redirect is queued.
    let mut msg = b"Received: from a by b; Tue, 1 Jul 2025 10:00:00 +0000\n".repeat(3);
    msg.extend_from_slice(MSG);
    deliver(&home, &s, &md)
        .args(["-f", "alice@example.test", "--recipient", "me@example.net"])
        .stdin(msg)
        .run()
        .success()
        .stderr_has("queued as");
    assert_eq!(
        queued(&home).len(),
        2,
        "the redirect and the vacation reply"
    );
}

// ---------------------------------------------------------------------------
// Differential: Pigeonhole's sieve-test reports vacation (with its period
// and handle), redirect and the keep; our --dry-run must say the same.
// ---------------------------------------------------------------------------

const DIFF_SCRIPTS: &[&str] = &[
    "require \"vacation\";\nvacation \"I am away\";",
    "require \"vacation\";\nvacation :days 3 :subject \"away\" \"I am away\";",
    "require \"vacation\";\nvacation :days 0 :from \"me@example.net\" :addresses [\"b@example.net\"] :handle \"h\" \"away\";",
    "require \"vacation\";\nvacation :days 30 :mime \"Content-Type: text/plain\n\naway\";",
    "require [\"vacation\", \"fileinto\"];\nif header :contains \"subject\" \"lunch\" { vacation \"later\"; fileinto \"Lunch\"; }",
    "require \"vacation\";\nvacation \"a\";\nvacation \"b\";",
    "require [\"vacation\", \"variables\"];\nif header :matches \"subject\" \"*\" { set \"s\" \"${1}\"; }\nvacation :subject \"Re: ${s}\" \"${s} later\";",
    "require \"copy\";\nredirect :copy \"q@example.org\";\nredirect \"r@example.org\";",
    "require [\"vacation\", \"copy\"];\nredirect :copy \"q@example.org\";\nvacation \"away\";\ndiscard;",
];

/// `vacation:SECONDS:HANDLE[:subject=S][:from=F]`, `redirect:ADDR`,
/// `store:FOLDER`, `discard`, sorted.
fn pigeonhole(out: &str) -> Vec<String> {
    let mut acts: Vec<String> = Vec::new();
    // The vacation being read: seconds, handle, subject, from.
    let mut vac: Option<[String; 4]> = None;
    let finish = |vac: &mut Option<[String; 4]>, acts: &mut Vec<String>| {
        if let Some([secs, handle, subject, from]) = vac.take() {
            acts.push(format!("vacation:{secs}:{handle}{subject}{from}"));
        }
    };
    for line in out.lines() {
        let l = line.trim_start();
        if let Some(rest) = l.strip_prefix("=> ") {
            if let (Some(v), Some((k, val))) = (vac.as_mut(), rest.split_once(':')) {
                let val = val.trim();
                match k.trim() {
                    "seconds" => v[0] = val.to_string(),
                    "handle" => v[1] = val.to_string(),
                    "subject" => v[2] = format!(":subject={val}"),
                    "from" => v[3] = format!(":from={val}"),
                    _ => {}
                }
            }
            continue;
        }
        if vac.is_some() && !l.is_empty() && !l.starts_with("START MESSAGE") {
            finish(&mut vac, &mut acts);
        }
        if l.starts_with("* send vacation message") {
            vac = Some(Default::default());
        } else if let Some(f) = l.strip_prefix("* store message in folder: ") {
            acts.push(format!("store:{f}"));
        } else if l.trim_end() == "* discard" {
            acts.push("discard".into());
        } else if let Some(a) = l.strip_prefix("* redirect message to: ") {
            acts.push(format!("redirect:{}", a.trim_matches(['<', '>'])));
        }
    }
    finish(&mut vac, &mut acts);
    acts.sort();
    acts
}

fn ours(stdout: &str) -> Vec<String> {
    let mut acts: Vec<String> = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v["action"].as_str().unwrap() {
            "keep" => acts.push("store:INBOX".into()),
            "fileinto" => acts.push(format!("store:{}", v["mailbox"].as_str().unwrap())),
            "discard" => acts.push("discard".into()),
            "redirect" => acts.push(format!("redirect:{}", v["address"].as_str().unwrap())),
            "vacation" => {
                let mut s = format!(
                    "vacation:{}:{}",
                    v["days"].as_u64().unwrap() * 86_400,
                    // sieve-test prints a handle's first line as the value.
                    v["handle"].as_str().unwrap().lines().next().unwrap_or("")
                );
                if let Some(x) = v["subject"].as_str() {
                    s.push_str(&format!(":subject={x}"));
                }
                if let Some(x) = v["from"].as_str() {
                    s.push_str(&format!(":from={x}"));
                }
                acts.push(s);
            }
            other => acts.push(other.to_string()),
        }
    }
    acts.sort();
    acts
}

#[test]
fn same_vacation_and_redirect_as_pigeonhole_sieve_test() {
    let home = TempDir::new();
    let Some(scratch) = crate::sieve::sieve_test_scratch(&home) else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let md = home.join("Maildir");
    let list = b"From: x@lists.example.org\nTo: me@example.net\nSubject: [l] lunch news\nList-Id: <l.example.org>\n\nx\n";
    let mut compared = 0;
    for (si, text) in DIFF_SCRIPTS.iter().enumerate() {
        let s = home.join(format!("d{si}.sieve"));
        fs::write(&s, text).unwrap();
        fs::set_permissions(&s, fs::Permissions::from_mode(0o644)).unwrap();
        for (mi, msg) in [MSG, &list[..]].iter().enumerate() {
            let m = home.join(format!("m{mi}.eml"));
            fs::write(&m, msg).unwrap();
            fs::set_permissions(&m, fs::Permissions::from_mode(0o644)).unwrap();
            let out = crate::sieve::run_sieve_test(
                &scratch,
                &s,
                &m,
                "alice@example.test",
                "me@example.net",
            );
            let err = String::from_utf8_lossy(&out.stderr);
            let theirs = if err.contains("resolved with successful implicit keep") {
                " * store message in folder: INBOX\n".to_string()
            } else {
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            let got = deliver(&home, &s.display().to_string(), &md)
                .args([
                    "--dry-run",
                    "--json",
                    "-f",
                    "alice@example.test",
                    "--recipient",
                    "me@example.net",
                ])
                .stdin(*msg)
                .run()
                .success();
            assert_eq!(
                ours(&got.stdout()),
                pigeonhole(&theirs),
                "script {si} ({text:?}) on message {mi}:\nours:\n{}\nsieve-test:\n{theirs}\n{err}",
                got.stdout()
            );
            compared += 1;
        }
    }
    assert_eq!(compared, DIFF_SCRIPTS.len() * 2);
    assert!(stored(&md).is_empty());
}
