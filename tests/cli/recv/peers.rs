//! Real clients: swaks over a pipe (`--pipe`, the inetd mode) and over TCP,
//! and Postfix as the sending MTA relaying to mail-recv over SMTP and over
//! LMTP. What was stored is read back with Python's `mailbox`.

use std::process::Command;

use super::*;
use crate::harness::{is_root, skip_unless};

fn swaks_available() -> bool {
    Command::new("swaks")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// swaks in a hermetic environment (the pinned clock reaches the
/// mail-recv it starts with `--pipe`), sending from alice@remote.test to
/// `to` with HELO client.test and a known subject and body.
fn swaks(home: &Path, to: &str, transport: &[&str]) -> std::process::Output {
    Command::new("swaks")
        .env_clear()
        .env("HOME", home)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("POSTLINE_NOW", NOW.to_string())
        .current_dir(home)
        .args(["--from", "alice@remote.test", "--to", to])
        .args(["--helo", "client.test", "--timeout", "60"])
        .args(["--header", "Subject: via swaks"])
        .args(["--body", "hello from swaks\n.a line with a dot\n"])
        .args(transport)
        .stdin(Stdio::null())
        .output()
        .expect("run swaks")
}

/// The checks every swaks/Postfix test makes on the one stored message.
#[track_caller]
fn check_stored(msg: &[u8], from_helo: &str, ip: Option<&str>, by: &str) {
    let h = header_block(msg);
    assert!(h.starts_with("Return-Path: <alice@remote.test>\n"), "{h}");
    let received = h
        .split("\nReceived: ")
        .nth(1)
        .expect("a Received header after Return-Path");
    assert!(received.starts_with(&format!("from {from_helo}")), "{h}");
    assert!(received.contains(&format!("by {by}")), "{h}");
    if let Some(ip) = ip {
        assert!(received.contains(&format!("[{ip}]")), "{h}");
    }
    assert!(h.contains("Subject: via swaks"), "{h}");
    assert!(
        contains(msg, "hello from swaks\n.a line with a dot\n"),
        "{msg:?}"
    );
}

#[test]
fn swaks_over_a_pipe() {
    if skip_unless(swaks_available(), "swaks is not installed") {
        return;
    }
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let cmd = format!(
        "'{}' --hostname {HOST} --domain {DOMAIN} --deliver '{}'",
        bin("mail-recv").display(),
        boxes.template()
    );
    let out = swaks(t.path(), "bob@example.org", &["--pipe", &cmd]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swaks: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1, "{text}");
    check_stored(&got[0], "client.test", None, HOST);
}

#[test]
fn swaks_over_tcp() {
    if skip_unless(swaks_available(), "swaks is not installed") {
        return;
    }
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let l = Listener::start(t.path(), || {
        recv(t.path()).args(["--deliver", &boxes.template()])
    });
    let port = l.port.to_string();
    let out = swaks(
        t.path(),
        "bob@example.org",
        &["--server", "127.0.0.1", "--port", &port],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks: {text}\n{}", l.stderr());
    // swaks saw the 250 after its dot, and only then quit.
    let lines: Vec<&str> = text.lines().collect();
    let dot = lines
        .iter()
        .position(|l| *l == " -> .")
        .expect("the final dot");
    assert!(lines[dot + 1].starts_with("<-  250"), "{text}");
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1, "{text}");
    check_stored(&got[0], "client.test", Some("127.0.0.1"), HOST);
    // An unknown local part is refused at RCPT: no backscatter later.
    let out = swaks(
        t.path(),
        "nobody@example.org",
        &["--server", "127.0.0.1", "--port", &port],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("<** 550"), "{text}");
}

/// Wait until `boxes` holds `n` messages for `user` (the hang guard fails
/// the test).
#[track_caller]
fn wait_stored(boxes: &Boxes, user: &str, n: usize, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + GUARD;
    while boxes.count(user) < n {
        assert!(Instant::now() < deadline, "not delivered: {}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The name mail-recv announces in the Postfix tests: not Postfix's own
/// (mx.example.org), or Postfix would see a loop back to itself.
const RECV_HOST: &str = "recv.example.org";

fn postfix_log(pf: &crate::mta::Postfix) -> String {
    std::fs::read_to_string(&pf.log).unwrap_or_default()
}

/// Postfix (tests/cli/mta.rs) with a SASL socket path that is never used:
/// `Postfix::start` without one writes an empty `smtpd_sasl_path`, which
/// smtpd refuses at startup ("bad string length 0 < 1").
fn postfix(t: &TempDir, lmtp_port: u16) -> crate::mta::Postfix {
    let cert = crate::harness::self_signed_cert(t.path());
    crate::mta::Postfix::start_with_auth(
        &t.join("postfix"),
        DOMAIN,
        lmtp_port,
        &cert.0,
        &cert.1,
        Some(&t.join("no-sasl-socket")),
    )
}

/// Postfix as the sending MTA: mail injected into Postfix goes out of its
/// queue over SMTP (virtual_transport smtp:[127.0.0.1]:PORT) to mail-recv,
/// which stores it.
#[test]
fn postfix_relays_to_mail_recv_over_smtp() {
    if skip_unless(is_root(), "Postfix needs root")
        || skip_unless(crate::mta::available(), "Postfix is not installed")
        || skip_unless(swaks_available(), "swaks is not installed")
    {
        return;
    }
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let l = Listener::start(t.path(), || {
        recv_as(t.path(), RECV_HOST).args(["--deliver", &boxes.template()])
    });
    // The LMTP port is not used: the transport is replaced below.
    let pf = postfix(&t, free_ports(1)[0]);
    let conf = pf.conf_dir.clone();
    let postconf = Command::new("postconf")
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(format!("virtual_transport = smtp:[127.0.0.1]:{}", l.port))
        .output()
        .expect("postconf");
    assert!(postconf.status.success(), "{postconf:?}");
    let reload = Command::new("postfix")
        .arg("-c")
        .arg(&conf)
        .arg("reload")
        .output()
        .expect("postfix reload");
    assert!(reload.status.success(), "{reload:?}");
    let deadline = Instant::now() + GUARD;
    while !postfix_log(&pf).contains("reload") {
        assert!(Instant::now() < deadline, "no reload: {}", postfix_log(&pf));
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = pf.smtp_port.to_string();
    let out = swaks(
        t.path(),
        "bob@example.org",
        &["--server", "127.0.0.1", "--port", &port],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_stored(&boxes, "bob", 1, &|| {
        format!("{}\n{}", postfix_log(&pf), l.stderr())
    });
    pf.wait_queue_empty(GUARD);
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1);
    check_stored(&got[0], "mx.example.org", Some("127.0.0.1"), RECV_HOST);
    // Postfix's own Received is below ours.
    let h = header_block(&got[0]);
    assert!(h.contains("by mx.example.org (Postfix)"), "{h}");
    let log = postfix_log(&pf);
    assert!(log.contains("status=sent"), "{log}");
}

/// Postfix's LMTP client delivering to `mail-recv --lmtp`.
#[test]
fn postfix_delivers_to_mail_recv_over_lmtp() {
    if skip_unless(is_root(), "Postfix needs root")
        || skip_unless(crate::mta::available(), "Postfix is not installed")
        || skip_unless(swaks_available(), "swaks is not installed")
    {
        return;
    }
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let l = Listener::start(t.path(), || {
        recv_as(t.path(), RECV_HOST).args(["--lmtp", "--deliver", &boxes.template()])
    });
    let pf = postfix(&t, l.port);
    let port = pf.smtp_port.to_string();
    let out = swaks(
        t.path(),
        "bob@example.org",
        &["--server", "127.0.0.1", "--port", &port],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_stored(&boxes, "bob", 1, &|| {
        format!("{}\n{}", postfix_log(&pf), l.stderr())
    });
    pf.wait_queue_empty(GUARD);
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1);
    check_stored(&got[0], "mx.example.org", Some("127.0.0.1"), RECV_HOST);
    assert!(header_block(&got[0]).contains("with LMTP"));
}
