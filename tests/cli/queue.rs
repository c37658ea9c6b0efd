//! mail-queue tests: the spool, the tool's commands, and delivery from the
//! queue to a real Postfix and a real Dovecot LMTP server, read back over
//! IMAP.
//!
//! Entries are made through the library (`postline::queue::Spool::enqueue`,
//! what mail-send calls on a temporary failure), so these tests stand alone.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use postline::config::Account;
use postline::proto::tls::TlsMode;
use postline::queue::{RcptStatus, Spool, State};
use postline::send::{Envelope, Route};

use crate::harness::{TempDir, Tool, free_ports, python};
use crate::mta::{DOMAIN, Pair};

/// A plain SMTP route to 127.0.0.1:`port`.
fn smtp_route(port: u16) -> Route {
    Route::Server {
        server: Box::new(Account {
            host: Some("127.0.0.1".into()),
            port: Some(port),
            tls: Some(TlsMode::None),
            timeout: Some(30),
            ..Account::default()
        }),
    }
}

/// An LMTP route to 127.0.0.1:`port`.
fn lmtp_route(port: u16) -> Route {
    Route::Lmtp {
        target: format!("127.0.0.1:{port}"),
    }
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    free_ports(1)[0]
}

fn spool(qdir: &Path) -> Spool {
    Spool::open(qdir).expect("open spool")
}

fn message(tag: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@{DOMAIN}>\nTo: alice@{DOMAIN}\nSubject: {tag}\nMessage-ID: <{tag}@test>\n\nbody of {tag}\n.\nline after a dot\n"
    )
    .into_bytes()
}

fn enqueue(qdir: &Path, route: &Route, rcpts: &[&str], msg: &[u8], reason: &str) -> String {
    let env = Envelope {
        from: format!("alice@{DOMAIN}"),
        rcpts: rcpts.iter().map(|r| r.to_string()).collect(),
        ..Envelope::default()
    };
    spool(qdir)
        .enqueue(route, &env, msg, reason)
        .expect("enqueue")
}

fn state(qdir: &Path, id: &str) -> State {
    spool(qdir).load(id).expect("load state")
}

fn ids(qdir: &Path) -> Vec<String> {
    spool(qdir).ids().expect("ids")
}

/// mail-queue with `--queue-dir qdir` and no config.
fn mq(home: &Path, qdir: &Path) -> Tool {
    Tool::new("mail-queue", home).arg("--queue-dir").arg(qdir)
}

/// Messages in alice's INBOX (over IMAP) whose Subject is `tag`.
fn count_subject(msgs: &[Vec<u8>], tag: &str) -> usize {
    let want = format!("\nSubject: {tag}\n");
    msgs.iter()
        .filter(|m| {
            let m = crate::harness::crlf_to_lf(m);
            let text = String::from_utf8_lossy(&m);
            let head = text.split("\n\n").next().unwrap_or("");
            format!("\n{head}\n").contains(&want)
        })
        .count()
}

/// The body of a message (after the first blank line), LF line endings.
fn body(m: &[u8]) -> Vec<u8> {
    let m = crate::harness::crlf_to_lf(m);
    let i = m
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a header block");
    m[i + 2..].to_vec()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn malformed_and_unknown_ids_are_one_line_errors() {
    let tmp = TempDir::new();
    let q = tmp.join("q");
    for cmd in ["show", "hold", "release", "delete", "flush"] {
        for bad in ["../../etc/passwd", "0123", "0123456789ABCDEF012G", "x/y"] {
            mq(tmp.path(), &q)
                .args([cmd, bad])
                .run()
                .code_is(64)
                .stderr_one_line()
                .stderr_has("not a queue id");
        }
        mq(tmp.path(), &q)
            .args([cmd, "0123456789ABCDEF0123"])
            .run()
            .code_is(67)
            .stderr_one_line()
            .stderr_has("no such entry");
    }
    // Nothing was created from the bad ids.
    assert_eq!(crate::harness::dir_names(&q), vec!["tmp"]);
}

#[test]
fn list_show_json_hold_release_delete() {
    let tmp = TempDir::new();
    let q = tmp.join("q");
    let route = smtp_route(dead_port());
    let a = enqueue(
        &q,
        &route,
        &["bob@example.org", "carol@example.org"],
        &message("first"),
        "451 4.3.0 try again later",
    );
    let b = enqueue(&q, &route, &["dave@example.org"], &message("second"), "");
    assert!(a < b, "ids sort by arrival: {a} {b}");

    let out = mq(tmp.path(), &q).run().success().stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("-Queue ID-"), "{out}");
    assert!(lines[1].starts_with(&format!("{a}  ")), "{out}");
    assert!(lines[1].ends_with(&format!("alice@{DOMAIN}")), "{out}");
    assert!(
        lines[1].contains(&format!(" {} ", message("first").len())),
        "{out}"
    );
    assert!(lines[2].trim() == "(451 4.3.0 try again later)", "{out}");
    assert_eq!(lines[3].trim(), "bob@example.org");
    assert_eq!(lines[4].trim(), "carol@example.org");
    assert!(out.ends_with("-- 1 Kbytes in 2 Requests.\n"), "{out}");
    // `list` is the same as no command.
    assert_eq!(mq(tmp.path(), &q).arg("list").run().success().stdout(), out);

    let out = mq(tmp.path(), &q)
        .args(["list", "--json"])
        .run()
        .success()
        .stdout();
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[0]["id"], a.as_str());
    assert_eq!(objs[0]["from"], format!("alice@{DOMAIN}").as_str());
    assert_eq!(objs[0]["rcpts"][1]["addr"], "carol@example.org");
    assert_eq!(objs[0]["rcpts"][1]["status"], "pending");
    assert_eq!(objs[0]["last_error"], "451 4.3.0 try again later");
    assert_eq!(objs[0]["attempts"], 1);
    assert_eq!(objs[1]["attempts"], 0);
    assert_eq!(objs[0]["route"]["route"], "server");

    let out = mq(tmp.path(), &q)
        .args(["show", &a])
        .run()
        .success()
        .stdout();
    for want in [
        format!("Queue ID:   {a}\n"),
        format!("Sender:     alice@{DOMAIN}\n"),
        "Route:      server 127.0.0.1:".to_string(),
        "  bob@example.org  pending  451 4.3.0 try again later\n".to_string(),
        "Attempt log:\n".to_string(),
        "Headers:\n  From: Alice".to_string(),
        "  Subject: first\n".to_string(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in\n{out}");
    }
    assert!(!out.contains("body of first"), "{out}");
    let j: serde_json::Value = serde_json::from_str(
        &mq(tmp.path(), &q)
            .args(["show", "--json", &a])
            .run()
            .success()
            .stdout(),
    )
    .unwrap();
    assert_eq!(j["id"], a.as_str());

    // Held entries are marked and never tried, not even by flush.
    let out = mq(tmp.path(), &q)
        .args(["hold", &a.to_ascii_lowercase()])
        .run()
        .success()
        .stdout();
    assert_eq!(out, format!("{a}: held\n"));
    assert!(state(&q, &a).held);
    let out = mq(tmp.path(), &q).run().success().stdout();
    assert!(out.contains(&format!("{a}! ")), "{out}");
    let before = state(&q, &a);
    let out = mq(tmp.path(), &q)
        .args(["flush", &a])
        .run()
        .code_is(75)
        .stdout();
    assert!(out.contains(&format!("{a}: held, not tried")), "{out}");
    assert_eq!(state(&q, &a), before);

    mq(tmp.path(), &q).args(["release", &a]).run().success();
    let s = state(&q, &a);
    assert!(!s.held && s.next_try <= postline::queue::now());

    let out = mq(tmp.path(), &q)
        .args(["delete", &a, &b])
        .run()
        .success()
        .stdout();
    assert_eq!(out, format!("{a}: deleted\n{b}: deleted\n"));
    assert!(ids(&q).is_empty());
    assert_eq!(
        mq(tmp.path(), &q).run().success().stdout(),
        "Mail queue is empty\n"
    );
    assert_eq!(
        mq(tmp.path(), &q)
            .args(["list", "--json"])
            .run()
            .success()
            .stdout(),
        ""
    );
    mq(tmp.path(), &q).args(["show", &a]).run().code_is(67);
}

#[test]
fn a_server_that_is_down_leaves_the_entry_with_its_error_and_a_backoff() {
    let tmp = TempDir::new();
    let q = tmp.join("q");
    let port = dead_port();
    let id = enqueue(
        &q,
        &smtp_route(port),
        &["bob@example.org"],
        &message("down"),
        "",
    );
    let t0 = postline::queue::now();
    // Due at once (no reason given), tried by `run`.
    let out = mq(tmp.path(), &q)
        .args(["run", "-v"])
        .run()
        .success()
        .stdout();
    assert!(
        out.contains(&format!("{id}: bob@example.org: deferred until")),
        "{out}"
    );
    let s = state(&q, &id);
    assert_eq!(s.attempts, 1);
    assert_eq!(s.rcpts[0].status, RcptStatus::Pending);
    let err = s.last_error().unwrap();
    assert!(err.contains("refused"), "{err}");
    assert!(err.contains(&port.to_string()), "{err}");
    assert!(s.next_try >= t0 + 300, "first retry after retry_min");
    // Not due again: `run` leaves it alone.
    mq(tmp.path(), &q)
        .args(["run", "-v"])
        .run()
        .success()
        .stdout_empty();
    assert_eq!(state(&q, &id).attempts, 1);
    // flush ignores the backoff; the second failure doubles the wait; the
    // entry is still waiting, so flush says 75.
    mq(tmp.path(), &q).arg("flush").run().code_is(75);
    let s = state(&q, &id);
    assert_eq!((s.attempts, s.log.len()), (2, 2));
    assert!(s.next_try >= postline::queue::now() + 600 - 5);
    // A config policy applies: retry_min from [queue].
    let conf = tmp.join("config.toml");
    fs::write(&conf, "[queue]\nretry_min = \"1h\"\nretry_max = \"90m\"\n").unwrap();
    mq(tmp.path(), &q)
        .arg("--config")
        .arg(&conf)
        .arg("flush")
        .run()
        .code_is(75);
    let s = state(&q, &id);
    assert!(
        s.next_try >= postline::queue::now() + 5400 - 5,
        "capped at retry_max"
    );
    assert!(s.next_try <= postline::queue::now() + 5400);
    // A bad config value is a config error.
    fs::write(&conf, "[queue]\nexpire = \"soon\"\n").unwrap();
    mq(tmp.path(), &q)
        .arg("--config")
        .arg(&conf)
        .arg("run")
        .run()
        .code_is(78)
        .stderr_one_line()
        .stderr_has("[queue] expire");
}

/// Is the Postfix pair's SMTP port accepting connections?
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn postfix_ctl(pair: &Pair, what: &str) {
    let out = std::process::Command::new("postfix")
        .arg("-c")
        .arg(&pair.postfix.conf_dir)
        .arg(what)
        .output()
        .expect("postfix runs");
    assert!(out.status.success(), "postfix {what}: {out:?}");
}

#[test]
fn server_down_then_up_delivers_exactly_once_through_postfix() {
    let tmp = TempDir::new();
    let Some(pair) = Pair::start(tmp.path()) else {
        return;
    };
    let q = tmp.join("q");
    let port = pair.postfix.smtp_port;
    postfix_ctl(&pair, "stop");
    wait_until("postfix to stop listening", || !listening(port));

    let msg = message("down-then-up");
    let rcpt = format!("alice@{DOMAIN}");
    let id = enqueue(&q, &smtp_route(port), &[&rcpt], &msg, "");
    mq(tmp.path(), &q).arg("run").run().success();
    let s = state(&q, &id);
    assert_eq!(s.attempts, 1);
    assert!(s.last_error().unwrap().contains("refused"), "{s:?}");

    postfix_ctl(&pair, "start");
    wait_until("postfix to listen again", || listening(port));
    // Not due yet: `run` leaves it; `flush` sends it.
    mq(tmp.path(), &q).arg("run").run().success();
    assert_eq!(state(&q, &id).attempts, 1);
    let out = mq(tmp.path(), &q).arg("flush").run().success().stdout();
    assert!(
        out.contains(&format!("{id}: {rcpt}: delivered: 250")),
        "{out}"
    );
    assert!(ids(&q).is_empty());
    // Again: nothing left to send.
    mq(tmp.path(), &q)
        .arg("flush")
        .run()
        .success()
        .stdout_empty();

    pair.postfix.wait_queue_empty(Duration::from_secs(60));
    let msgs = pair.dovecot.imap_fetch("alice", "INBOX");
    assert_eq!(count_subject(&msgs, "down-then-up"), 1, "exactly once");
    // Byte-identical apart from the trace headers Postfix and Dovecot add.
    assert_eq!(body(&msgs[0]), body(&msg));
    let got = crate::harness::crlf_to_lf(&msgs[0]);
    let head = String::from_utf8_lossy(&got);
    assert!(head.contains("Message-ID: <down-then-up@test>"), "{head}");
}

/// Run `python3 -c script` on `data` (as a file) and return stdout.
fn check_dsn(data: &[u8], tmp: &Path) -> serde_json::Value {
    let f = tmp.join("dsn.eml");
    fs::write(&f, data).unwrap();
    let out = python(
        r#"
import email, json, sys
from email import policy
m = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=policy.compat32)
parts = m.get_payload()
out = {
  'type': m.get_content_type(),
  'report_type': m.get_param('report-type'),
  'from': m['From'], 'to': m['To'], 'subject': m['Subject'],
  'defects': [str(d) for d in m.defects],
  'parts': [p.get_content_type() for p in parts],
}
ds = parts[1].get_payload()
out['per_message'] = dict(ds[0].items())
out['per_recipient'] = [dict(b.items()) for b in ds[1:]]
out['headers'] = parts[2].get_payload()
json.dump(out, sys.stdout)
"#,
        &[f.as_os_str()],
    );
    serde_json::from_slice(&out).expect("python printed JSON")
}

#[test]
fn a_permanent_failure_bounces_a_dsn_to_the_sender() {
    let tmp = TempDir::new();
    let Some(pair) = Pair::start(tmp.path()) else {
        return;
    };
    let q = tmp.join("q");
    let route = lmtp_route(pair.dovecot.lmtp_port);
    let msg = message("to-nobody");
    let id = enqueue(
        &q,
        &route,
        &[&format!("nobody@{DOMAIN}"), &format!("alice@{DOMAIN}")],
        &msg,
        "",
    );
    let out = mq(tmp.path(), &q)
        .args(["run", "-v"])
        .run()
        .success()
        .stdout();
    assert!(
        out.contains(&format!("{id}: nobody@{DOMAIN}: failed: 550")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{id}: alice@{DOMAIN}: delivered")),
        "{out}"
    );
    assert!(
        out.contains("failure notice to the sender queued as"),
        "{out}"
    );
    // The notice went out in the same run and the queue is empty.
    assert!(ids(&q).is_empty(), "{out}");
    let msgs = pair.dovecot.imap_fetch("alice", "INBOX");
    assert_eq!(count_subject(&msgs, "to-nobody"), 1);
    assert_eq!(
        count_subject(&msgs, "Undelivered Mail Returned to Sender"),
        1
    );
    let dsn = msgs
        .iter()
        .find(|m| {
            count_subject(
                std::slice::from_ref(*m),
                "Undelivered Mail Returned to Sender",
            ) == 1
        })
        .unwrap();
    // Sent with the null sender: Dovecot records it as the Return-Path.
    assert!(
        String::from_utf8_lossy(dsn).contains("Return-Path: <>"),
        "{}",
        String::from_utf8_lossy(dsn)
    );
    let j = check_dsn(dsn, tmp.path());
    assert_eq!(j["type"], "multipart/report");
    assert_eq!(j["report_type"], "delivery-status");
    assert_eq!(j["defects"], serde_json::json!([]));
    assert_eq!(
        j["parts"],
        serde_json::json!([
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ])
    );
    assert_eq!(j["per_recipient"].as_array().unwrap().len(), 1, "{j}");
    let r = &j["per_recipient"][0];
    assert_eq!(
        r["Final-Recipient"],
        format!("rfc822; nobody@{DOMAIN}").as_str()
    );
    assert_eq!(r["Action"], "failed");
    assert!(r["Status"].as_str().unwrap().starts_with("5."), "{r}");
    assert!(
        r["Diagnostic-Code"]
            .as_str()
            .unwrap()
            .starts_with("smtp; 550"),
        "{r}"
    );
    assert!(
        j["per_message"]["Reporting-MTA"]
            .as_str()
            .unwrap()
            .starts_with("dns; ")
    );
    assert!(j["per_message"]["Arrival-Date"].is_string());
    assert!(
        j["headers"]
            .as_str()
            .unwrap()
            .contains("Subject: to-nobody"),
        "{j}"
    );
    assert!(!j["headers"].as_str().unwrap().contains("body of"), "{j}");
}

#[test]
fn null_sender_failures_are_dropped_not_bounced() {
    let tmp = TempDir::new();
    let Some(pair) = Pair::start(tmp.path()) else {
        return;
    };
    let q = tmp.join("q");
    let env = Envelope {
        from: String::new(),
        rcpts: vec![format!("nobody@{DOMAIN}")],
        ..Envelope::default()
    };
    let id = spool(&q)
        .enqueue(
            &lmtp_route(pair.dovecot.lmtp_port),
            &env,
            &message("bounce-of-bounce"),
            "",
        )
        .unwrap();
    // NOTIFY=NEVER (RFC 3461): the sender asked for no notices.
    let env = Envelope {
        from: format!("alice@{DOMAIN}"),
        rcpts: vec![format!("nobody@{DOMAIN}")],
        dsn: postline::send::Dsn {
            notify: Some("NEVER".into()),
            ..Default::default()
        },
    };
    let never = spool(&q)
        .enqueue(
            &lmtp_route(pair.dovecot.lmtp_port),
            &env,
            &message("never"),
            "",
        )
        .unwrap();
    let out = mq(tmp.path(), &q).args(["flush"]).run().success().stdout();
    for i in [&id, &never] {
        assert!(
            out.contains(&format!(
                "{i}: nobody@{DOMAIN}: failed; no notice sent (null sender"
            )),
            "{out}"
        );
    }
    assert!(ids(&q).is_empty());
    assert!(pair.dovecot.imap_fetch("alice", "INBOX").is_empty());
}

/// Spawn mail-queue with `args`; the child.
fn spawn_mq(home: &Path, qdir: &Path, args: &[&str]) -> std::process::Child {
    let (mut cmd, _) = mq(home, qdir).args(args).command();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mail-queue")
}

fn tags(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

#[test]
fn kill_9_during_a_flush_loses_nothing_and_duplicates_at_most_one() {
    let tmp = TempDir::new();
    let Some(pair) = Pair::start(tmp.path()) else {
        return;
    };
    let q = tmp.join("q");
    let route = lmtp_route(pair.dovecot.lmtp_port);
    let n = 200;
    let tags = tags(n, "kill");
    let rcpt = format!("alice@{DOMAIN}");
    for t in &tags {
        enqueue(&q, &route, &[&rcpt], &message(t), "");
    }
    let mut child = spawn_mq(tmp.path(), &q, &["flush"]);
    wait_until("a part of the queue to be sent", || ids(&q).len() <= n - 40);
    child.kill().expect("kill -9");
    let _ = child.wait();
    let left = ids(&q).len();
    assert!(
        left > 0,
        "the flush finished before it was killed; make the queue longer"
    );
    mq(tmp.path(), &q).arg("flush").run().success();
    assert!(ids(&q).is_empty());
    let msgs = pair.dovecot.imap_fetch("alice", "INBOX");
    let mut dups = 0;
    for t in &tags {
        let c = count_subject(&msgs, t);
        assert!(c >= 1, "{t} was lost");
        dups += c - 1;
    }
    assert!(dups <= 1, "{dups} duplicates");
    assert_eq!(msgs.len(), n + dups);
}

#[test]
fn two_concurrent_runners_send_each_entry_exactly_once() {
    let tmp = TempDir::new();
    let Some(pair) = Pair::start(tmp.path()) else {
        return;
    };
    let q = tmp.join("q");
    let route = smtp_route(pair.postfix.smtp_port);
    let tags = tags(50, "pair");
    let rcpt = format!("alice@{DOMAIN}");
    for t in &tags {
        enqueue(&q, &route, &[&rcpt], &message(t), "");
    }
    let a = spawn_mq(tmp.path(), &q, &["flush", "-v"]);
    let b = spawn_mq(tmp.path(), &q, &["run", "-v"]);
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{:?} {} {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(ids(&q).is_empty());
    pair.postfix.wait_queue_empty(Duration::from_secs(60));
    let msgs = pair.dovecot.imap_fetch("alice", "INBOX");
    for t in &tags {
        assert_eq!(count_subject(&msgs, t), 1, "{t}");
    }
    assert_eq!(msgs.len(), tags.len());
}

/// Add Dovecot user `name` whose mailbox cannot be written (its Maildir
/// path is a regular file): LMTP answers 4xx for them, every time.
fn add_broken_user(pair: &mut Pair, tmp: &Path, name: &str) {
    let md = tmp.join("mail").join(name);
    pair.dovecot.add_user(name, &md);
    fs::remove_dir_all(&md).unwrap();
    fs::write(&md, "not a Maildir\n").unwrap();
}

#[test]
fn delay_warning_then_expiry_bounce_reach_the_sender() {
    let tmp = TempDir::new();
    let Some(mut pair) = Pair::start(tmp.path()) else {
        return;
    };
    add_broken_user(&mut pair, tmp.path(), "bob");
    let q = tmp.join("q");
    let route = lmtp_route(pair.dovecot.lmtp_port);
    let bob = format!("bob@{DOMAIN}");
    let id = enqueue(&q, &route, &[&bob], &message("slow"), "");

    // First attempt: temporary failure; the warning is due at once.
    let out = mq(tmp.path(), &q)
        .args(["run", "-v", "--warn-after", "0"])
        .run()
        .success()
        .stdout();
    assert!(
        out.contains(&format!("{id}: {bob}: deferred until")),
        "{out}"
    );
    assert!(
        out.contains("delay notice to the sender queued as"),
        "{out}"
    );
    let s = state(&q, &id);
    assert!(s.warned);
    let reply = s.rcpts[0].reply.clone().unwrap();
    assert!(reply.starts_with('4'), "{reply}");
    // Warned once only.
    let out = mq(tmp.path(), &q)
        .args(["flush", "--warn-after", "0"])
        .run()
        .code_is(75)
        .stdout();
    assert!(!out.contains("delay notice"), "{out}");
    assert_eq!(ids(&q), vec![id.clone()]);

    // Expired: a last try, then the bounce; the entry is gone.
    let out = mq(tmp.path(), &q)
        .args(["run", "-v", "--expire", "0"])
        .run()
        .success()
        .stdout();
    assert!(out.contains(&format!("{id}: {bob}: expired: 4")), "{out}");
    assert!(
        out.contains("failure notice to the sender queued as"),
        "{out}"
    );
    assert!(ids(&q).is_empty(), "{out}");

    let msgs = pair.dovecot.imap_fetch("alice", "INBOX");
    assert_eq!(msgs.len(), 2);
    let d = check_dsn(&msgs[0], tmp.path());
    assert_eq!(d["subject"], "Delayed Mail (still being retried)");
    assert_eq!(d["per_recipient"][0]["Action"], "delayed");
    assert!(d["per_recipient"][0]["Will-Retry-Until"].is_string(), "{d}");
    let f = check_dsn(&msgs[1], tmp.path());
    assert_eq!(f["subject"], "Undelivered Mail Returned to Sender");
    assert_eq!(f["type"], "multipart/report");
    assert_eq!(f["defects"], serde_json::json!([]));
    let r = &f["per_recipient"][0];
    assert_eq!(r["Final-Recipient"], format!("rfc822; {bob}").as_str());
    assert_eq!(r["Action"], "failed");
    assert!(r["Status"].as_str().unwrap().starts_with("4."), "{r}");
    assert!(
        r["Diagnostic-Code"]
            .as_str()
            .unwrap()
            .starts_with("smtp; 4"),
        "{r}"
    );
    assert!(
        f["headers"].as_str().unwrap().contains("Subject: slow\r\n"),
        "{f}"
    );
    let text = String::from_utf8_lossy(&msgs[1]).into_owned();
    assert!(text.contains("delivery time expired"), "{text}");
}

#[test]
fn run_watch_sends_new_entries_as_they_arrive() {
    let tmp = TempDir::new();
    let Some(pair) = Pair::start(tmp.path()) else {
        return;
    };
    let q = tmp.join("q");
    spool(&q);
    let mut watcher = spawn_mq(tmp.path(), &q, &["run", "--watch"]);
    let rcpt = format!("alice@{DOMAIN}");
    let route = lmtp_route(pair.dovecot.lmtp_port);
    for t in ["watch-1", "watch-2"] {
        enqueue(&q, &route, &[&rcpt], &message(t), "");
        wait_until("the watcher to send it", || ids(&q).is_empty());
    }
    let still_running = watcher.try_wait().unwrap().is_none();
    watcher.kill().unwrap();
    let _ = watcher.wait();
    assert!(still_running, "run --watch exited");
    let msgs = pair.dovecot.imap_fetch("alice", "INBOX");
    assert_eq!(count_subject(&msgs, "watch-1"), 1);
    assert_eq!(count_subject(&msgs, "watch-2"), 1);
}

#[test]
fn a_dead_destination_is_dialled_once_per_pass() {
    let tmp = TempDir::new();
    let q = tmp.join("q");
    let route = smtp_route(dead_port());
    let other = smtp_route(dead_port());
    let a = enqueue(&q, &route, &["a@example.org"], &message("d1"), "");
    let b = enqueue(&q, &route, &["b@example.org"], &message("d2"), "");
    let c = enqueue(&q, &other, &["c@example.org"], &message("d3"), "");
    let out = mq(tmp.path(), &q).arg("flush").run().code_is(75).stdout();
    let line = |id: &str| {
        out.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no line for {id} in {out}"))
            .to_string()
    };
    assert!(!line(&a).contains("not dialled again"), "{out}");
    assert!(line(&b).contains("not dialled again in this pass"), "{out}");
    // Another destination is tried on its own.
    assert!(!line(&c).contains("not dialled again"), "{out}");
    for id in [&a, &b, &c] {
        let s = state(&q, id);
        assert_eq!(s.attempts, 1);
        assert!(s.last_error().unwrap().contains("refused"), "{s:?}");
    }
}

#[test]
fn a_config_problem_keeps_entries_queued_instead_of_bouncing_them() {
    let tmp = TempDir::new();
    let q = tmp.join("q");
    let route = Route::Account {
        name: "work".into(),
    };
    let id = enqueue(&q, &route, &["a@example.org"], &message("cfg"), "");
    let out = mq(tmp.path(), &q).arg("flush").run().code_is(75).stdout();
    assert!(out.contains("deferred until"), "{out}");
    assert!(!out.contains("notice"), "{out}");
    let s = state(&q, &id);
    assert_eq!(s.rcpts[0].status, RcptStatus::Pending);
    assert!(
        s.last_error().unwrap().contains("account \"work\""),
        "{s:?}"
    );
    assert_eq!(ids(&q), vec![id]);
}

#[test]
fn an_unreadable_entry_is_reported_and_never_stalls_the_others() {
    let tmp = TempDir::new();
    let q = tmp.join("q");
    let route = smtp_route(dead_port());
    let bad = enqueue(&q, &route, &["a@example.org"], &message("bad"), "");
    let good = enqueue(&q, &route, &["b@example.org"], &message("good"), "");
    fs::write(q.join(&bad).join("state.json"), "{ not json").unwrap();
    let out = mq(tmp.path(), &q).arg("run").run().code_is(75);
    let err = out.stderr();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("queue entry {bad}")), "{err}");
    // The good one was tried all the same.
    assert_eq!(state(&q, &good).attempts, 1);
    let list = mq(tmp.path(), &q).run().success().stdout();
    assert!(list.contains(&format!("{bad}  (unreadable: ")), "{list}");
    assert!(list.contains(&good), "{list}");
    let json = mq(tmp.path(), &q)
        .args(["list", "--json"])
        .run()
        .success()
        .stdout();
    assert!(json.lines().next().unwrap().contains("\"error\""), "{json}");
    // An admin can still delete it.
    let out = mq(tmp.path(), &q)
        .args(["delete", &bad])
        .run()
        .success()
        .stdout();
    assert_eq!(out, format!("{bad}: deleted\n"));
    assert_eq!(ids(&q), vec![good]);
}

/// Copy the fixture spool `name` (tests/fixtures/mail-queue/NAME) to `to`.
fn fixture_spool(name: &str, to: &Path) {
    let src = crate::harness::project_dir()
        .join("tests/fixtures/mail-queue")
        .join(name);
    for e in fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        fs::create_dir_all(&dst).unwrap();
        for f in fs::read_dir(e.path()).unwrap() {
            let f = f.unwrap();
            fs::copy(f.path(), dst.join(f.file_name())).unwrap();
        }
    }
}

#[test]
fn version_1_entries_stay_readable_and_keep_their_fields() {
    let tmp = TempDir::new();
    let q = tmp.join("q");
    fixture_spool("v1", &q);
    let id = "1A2155BF21C0052A8000";
    let before = state(&q, id);
    // The clock is pinned an hour after the entry was created: past its
    // next try, far from its expiry, whatever today's date is.
    let now = (before.created + 3600).to_string();
    let mq = |home: &Path, q: &Path| mq(home, q).env("POSTLINE_NOW", &now);
    assert!(before.held);
    assert_eq!(before.dsn.envid.as_deref(), Some("v1-envid"));
    let out = mq(tmp.path(), &q).run().success().stdout();
    assert!(out.contains(&format!("{id}! ")), "{out}");
    // Only the pending recipient is listed.
    assert!(
        out.contains("carol@example.org") && !out.contains("bob@example.org"),
        "{out}"
    );
    let out = mq(tmp.path(), &q)
        .args(["show", id])
        .run()
        .success()
        .stdout();
    assert!(
        out.contains("  bob@example.org  delivered  250 2.0.0"),
        "{out}"
    );
    assert!(
        out.contains("Subject: a queued message in the version 1 format"),
        "{out}"
    );
    // Released and tried (port 9: nothing listens), the state keeps every
    // field it had and never resends the delivered recipient.
    mq(tmp.path(), &q).args(["release", id]).run().success();
    mq(tmp.path(), &q).args(["flush", id]).run().code_is(75);
    let after = state(&q, id);
    assert_eq!(after.rcpts[0], before.rcpts[0]);
    assert_eq!(after.attempts, 2);
    assert_eq!(after.dsn, before.dsn);
    assert_eq!((after.created, after.size), (before.created, before.size));
    assert!(!after.held);
}

#[test]
fn the_pinned_clock_decides_expiry_not_todays_date() {
    // The same fixture judged six days after it was created: expired, so
    // the pending recipient is bounced to the sender and the entry leaves.
    let tmp = TempDir::new();
    let q = tmp.join("q");
    fixture_spool("v1", &q);
    let id = "1A2155BF21C0052A8000";
    let created = state(&q, id).created;
    let now = (created + 6 * 86_400).to_string();
    mq(tmp.path(), &q)
        .env("POSTLINE_NOW", &now)
        .args(["release", id])
        .run()
        .success();
    mq(tmp.path(), &q)
        .env("POSTLINE_NOW", &now)
        .args(["flush", id])
        .run();
    let left = ids(&q);
    assert!(!left.contains(&id.to_string()), "{left:?}");
    assert_eq!(left.len(), 1, "one bounce queued: {left:?}");
    let bounce = state(&q, &left[0]);
    assert_eq!(bounce.from, "");
    assert_eq!(bounce.created, created + 6 * 86_400);
}

#[test]
fn a_flush_sends_many_entries_over_one_connection_and_v_shows_the_dialogue() {
    let tmp = TempDir::new();
    let Some(pair) = Pair::start(tmp.path()) else {
        return;
    };
    let q = tmp.join("q");
    let route = smtp_route(pair.postfix.smtp_port);
    let rcpt = format!("alice@{DOMAIN}");
    let tags = tags(20, "onecon");
    for t in &tags {
        enqueue(&q, &route, &[&rcpt], &message(t), "");
    }
    let out = mq(tmp.path(), &q).args(["flush", "-v"]).run().success();
    let err = out.stderr();
    assert!(
        err.contains(&format!("C: MAIL FROM:<alice@{DOMAIN}>")),
        "{err}"
    );
    assert!(err.contains("S: 250"), "{err}");
    assert_eq!(err.matches("C: EHLO").count(), 1, "{err}");
    assert_eq!(out.stdout().lines().count(), 20);
    // Postfix's own account of the session: one connection, 20 messages.
    let mut line = String::new();
    wait_until("postfix to log the session", || {
        let log = fs::read_to_string(&pair.postfix.log).unwrap_or_default();
        line = log
            .lines()
            // (The harness's readiness probes show as commands=0/0.)
            .filter(|l| {
                l.contains("smtpd") && l.contains("disconnect from") && l.contains(" mail=")
            })
            .collect::<Vec<_>>()
            .join("\n");
        !line.is_empty()
    });
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains(" mail=20 ") && line.contains(" data=20 "),
        "{line}"
    );
    pair.postfix.wait_queue_empty(Duration::from_secs(60));
    let msgs = pair.dovecot.imap_fetch("alice", "INBOX");
    for t in &tags {
        assert_eq!(count_subject(&msgs, t), 1, "{t}");
    }
}
