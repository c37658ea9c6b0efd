//! mail-recv's own listener (concurrent sessions, kill -9, SIGTERM), the
//! Received header read back by mail-trace, and `--log-json`.

use nix::sys::signal::Signal;
use serde_json::Value;

use super::*;

/// 20 sessions at once on one listener, each sending its own message: all
/// 20 stored, each exactly once.
#[test]
fn twenty_concurrent_sessions_all_stored_once() {
    const N: usize = 20;
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let l = Listener::start(t.path(), || {
        recv(t.path()).args(["--max-sessions", "20", "--deliver", &boxes.template()])
    });
    let start = std::sync::Arc::new(std::sync::Barrier::new(N));
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let start = start.clone();
            let port = l.port;
            std::thread::spawn(move || {
                // A session that fails to open must still reach the
                // barrier, or the other nineteen wait for it for ever.
                let opened = std::panic::catch_unwind(|| {
                    let mut c = tcp(port);
                    c.hello(false);
                    c
                });
                // Every session is open before any sends its message.
                start.wait();
                let mut c = opened.expect("session opened");
                let r = c.mail(
                    "alice@remote.test",
                    &["bob@example.org"],
                    &message(&format!("concurrent-{i:02}")),
                );
                c.quit();
                r
            })
        })
        .collect();
    let replies: Vec<Reply> = threads
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.code, 250, "session {i}: {:?} {}", r.lines, l.stderr());
    }
    let got = boxes.read("bob");
    assert_eq!(got.len(), N);
    for i in 0..N {
        let tag = format!("Subject: concurrent-{i:02}\n");
        let n = got.iter().filter(|m| contains(m, &tag)).count();
        assert_eq!(n, 1, "{tag:?} stored {n} times");
    }
}

/// Part of DATA sent, then mail-recv is killed with SIGKILL: nothing is
/// stored and the client never sees a 250.
#[test]
fn kill_9_mid_data_stores_nothing_and_says_nothing() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let mut l = Listener::start(t.path(), || {
        recv(t.path()).args(["--deliver", &boxes.template()])
    });
    let mut c = l.connect();
    c.hello(false);
    c.expect("MAIL FROM:<alice@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.org>", 250);
    c.expect("DATA", 354);
    let mut part = b"Subject: cut short\r\n\r\n".to_vec();
    part.extend(
        std::iter::repeat_n(b"0123456789abcdef0123456789abcdef\r\n".as_slice(), 2000).flatten(),
    );
    c.send(&part);
    // Time for mail-recv to read what was sent (if it has not, the test
    // is weaker, not wrong).
    std::thread::sleep(Duration::from_millis(300));
    l.signal(Signal::SIGKILL);
    let st = l.wait();
    assert!(!st.success());
    // The rest of the message, as a client that did not notice would.
    c.send(".\r\n");
    let after = c.rest();
    assert!(
        after.iter().all(|r| r.code != 250),
        "a 250 after kill -9: {after:?}"
    );
    assert_eq!(boxes.count("bob"), 0, "stored after kill -9");
}

/// SIGTERM while a session is in DATA: the session completes (250, then
/// QUIT), and mail-recv exits 0.
#[test]
fn sigterm_lets_the_session_in_progress_finish() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let mut l = Listener::start(t.path(), || {
        recv(t.path()).args(["--deliver", &boxes.template()])
    });
    let mut c = l.connect();
    c.hello(false);
    c.expect("MAIL FROM:<alice@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.org>", 250);
    c.expect("DATA", 354);
    c.send("Subject: graceful\r\n\r\nfirst half\r\n");
    l.signal(Signal::SIGTERM);
    // Time for the signal to land before the session goes on (if it has
    // not, the test is weaker, not wrong).
    std::thread::sleep(Duration::from_millis(200));
    c.send("second half\r\n.\r\n");
    let r = c.reply();
    assert_eq!(r.code, 250, "{:?} {}", r.lines, l.stderr());
    c.quit();
    let st = l.wait();
    assert_eq!(st.code(), Some(0), "{}", l.stderr());
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1);
    assert!(contains(&got[0], "first half\nsecond half\n"));
}

/// The Received header mail-recv wrote, parsed by mail-trace: every field.
fn trace(t: &TempDir, msg: &[u8]) -> Value {
    let out = Tool::new("mail-trace", t.path())
        .arg("--json")
        .stdin(msg.to_vec())
        .run()
        .success();
    let v: Value = serde_json::from_str(out.stdout().trim()).expect("mail-trace JSON");
    let hops = v["hops"].as_array().expect("hops").clone();
    assert_eq!(hops.len(), 1, "one Received: {v}");
    hops[0].clone()
}

#[test]
fn received_header_reads_back_in_mail_trace() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let mut p = Piped::start(
        recv(t.path())
            .env("TCPREMOTEIP", "192.0.2.7")
            .args(["--deliver", &boxes.template()]),
        t.path(),
    );
    p.c.hello(false);
    let r =
        p.c.mail("alice@remote.test", &["bob@example.org"], &message("trace"));
    assert_eq!(r.code, 250, "{:?}", r.lines);
    p.quit();
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1);
    let h = header_block(&got[0]);
    assert!(h.starts_with("Return-Path: <alice@remote.test>\n"), "{h}");
    let hop = trace(&t, &got[0]);
    assert_eq!(hop["helo"], "client.test", "{hop}");
    assert_eq!(hop["ip"], "192.0.2.7", "{hop}");
    assert_eq!(hop["by"], HOST, "{hop}");
    assert_eq!(hop["with"], "ESMTP", "{hop}");
    assert_eq!(hop["for"], "bob@example.org", "{hop}");
    assert_eq!(hop["date"], NOW_ISO, "{hop}");
    assert_eq!(hop["tls_version"], Value::Null, "{hop}");
    let id = hop["id"].as_str().unwrap_or_default();
    assert!(
        !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric()),
        "id: {hop}"
    );

    // Two recipients: no `for` (it would disclose the other one).
    let boxes2 = Boxes::new(&t, &["carol"]);
    let mut p = Piped::start(
        recv(t.path())
            .env("TCPREMOTEIP", "192.0.2.7")
            .args(["--deliver", &boxes2.template()]),
        t.path(),
    );
    p.c.hello(false);
    let r = p.c.mail(
        "alice@remote.test",
        &["bob@example.org", "carol@example.org"],
        &message("two"),
    );
    assert_eq!(r.code, 250, "{:?}", r.lines);
    p.quit();
    let got2 = boxes.read("bob");
    assert_eq!(got2.len(), 2);
    let two = got2
        .iter()
        .find(|m| contains(m, "Subject: two"))
        .expect("second message");
    let hop2 = trace(&t, two);
    assert_eq!(hop2["for"], Value::Null, "{hop2}");
    assert_ne!(hop2["id"], hop["id"], "a fresh id per transaction");
}

/// Over STARTTLS on the listener: ESMTPS, the TLS version and cipher, the
/// loopback address, all read back by mail-trace.
#[test]
fn received_header_over_starttls_names_the_tls() {
    let t = TempDir::new();
    let cert = crate::harness::self_signed_cert(t.path());
    let boxes = Boxes::new(&t, &["bob"]);
    let l = Listener::start(t.path(), || {
        recv(t.path())
            .arg("--tls-cert")
            .arg(&cert.0)
            .arg("--tls-key")
            .arg(&cert.1)
            .args(["--deliver", &boxes.template()])
    });
    let mut c = l.connect();
    c.hello(false);
    c.expect("STARTTLS", 220);
    let (s, _) = c.into_parts();
    let tls = tls_connect(s, &cert.0);
    let version = tls.ssl().version_str().to_string();
    let cipher = tls.ssl().current_cipher().map(|c| c.name().to_string());
    let mut c = Client::new(tls);
    c.expect("EHLO client.test", 250);
    let r = c.mail("alice@remote.test", &["bob@example.org"], &message("tls"));
    assert_eq!(r.code, 250, "{:?}", r.lines);
    c.quit();
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1);
    let hop = trace(&t, &got[0]);
    assert_eq!(hop["with"], "ESMTPS", "{hop}");
    assert_eq!(hop["ip"], "127.0.0.1", "{hop}");
    assert_eq!(hop["helo"], "client.test", "{hop}");
    assert_eq!(hop["by"], HOST, "{hop}");
    assert_eq!(hop["for"], "bob@example.org", "{hop}");
    assert_eq!(hop["date"], NOW_ISO, "{hop}");
    assert_eq!(hop["tls_version"].as_str(), Some(version.as_str()), "{hop}");
    assert_eq!(hop["tls_cipher"].as_str(), cipher.as_deref(), "{hop}");
}

/// `--log-json`: one JSON object per transaction on stderr, with the
/// envelope, the id, the size and the final reply.
#[test]
fn log_json_one_record_per_transaction() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let mut p = Piped::start(
        recv(t.path()).env("TCPREMOTEIP", "192.0.2.7").args([
            "--log-json",
            "--max-size",
            "2000",
            "--deliver",
            &boxes.template(),
        ]),
        t.path(),
    );
    p.c.hello(false);
    let r = p.c.mail(
        "alice@remote.test",
        &["bob@example.org"],
        &message("logged"),
    );
    assert_eq!(r.code, 250);
    // A second transaction, refused after the dot (too big).
    p.c.expect("MAIL FROM:<carol@remote.test>", 250);
    p.c.expect("RCPT TO:<bob@example.org>", 250);
    p.c.expect("DATA", 354);
    p.c.send(data_block(&format!(
        "Subject: big\n\n{}",
        "0123456789abcdef\n".repeat(200)
    )));
    let r = p.c.reply();
    assert_eq!(r.code, 552, "{:?}", r.lines);
    p.quit();
    let err = p.stderr();
    let records: Vec<Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(records.len(), 2, "one record per transaction: {err}");
    let text = |v: &Value| v.to_string();
    let (ok, refused) = (&records[0], &records[1]);
    for (v, from) in [(ok, "alice@remote.test"), (refused, "carol@remote.test")] {
        assert!(v.is_object(), "{v}");
        for key in ["mail_from", "rcpts", "id", "size"] {
            assert!(v.get(key).is_some(), "no {key:?} in {v}");
        }
        assert_eq!(v["mail_from"], from, "{v}");
        assert!(text(&v["rcpts"]).contains("bob@example.org"), "{v}");
        assert!(text(v).contains("192.0.2.7"), "client address: {v}");
        assert!(text(v).contains("client.test"), "helo: {v}");
    }
    assert!(text(ok).contains("250"), "{ok}");
    assert!(text(refused).contains("552"), "{refused}");
    assert_ne!(ok["id"], refused["id"]);
    // The stored message's id is the logged one.
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1);
    let id = ok["id"].as_str().expect("id is a string");
    assert!(header_block(&got[0]).contains(&format!("id {id}")), "{id}");
}
