//! mail-send against real peers: the harness Postfix (submission with AUTH
//! through Dovecot over STARTTLS, implicit-TLS smtps, a port without
//! STARTTLS) delivering over LMTP into the harness Dovecot, Dovecot's LMTP
//! directly, and dnsmasq for direct MX delivery. What arrives is read back
//! over IMAP (Python imaplib) and compared byte for byte with what was sent.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::dns::Dnsmasq;
use crate::harness::{TempDir, Tool, assert_bytes_eq};
use crate::mta::Pair;

const TIMEOUT: Duration = Duration::from_secs(15);

fn send(home: &Path) -> Tool {
    Tool::new("mail-send", home)
}

/// A one-off server on `port` with the harness certificate trusted.
fn via(t: Tool, pair: &Pair, port: u16, tls: &str) -> Tool {
    t.args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--tls",
        tls,
    ])
    .arg("--tls-ca-file")
    .arg(&pair.dovecot.cert)
}

/// With AUTH as alice, the password from the environment.
fn as_alice(t: Tool) -> Tool {
    t.args(["--user", "alice", "--password-env", "PL_PASS"])
        .env("PL_PASS", crate::harness::Dovecot::PASSWORD)
}

/// `user`'s INBOX over IMAP (LF line ends), waiting until it holds `n`
/// messages (Postfix delivers asynchronously).
fn inbox(pair: &Pair, user: &str, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = pair.dovecot.imap_fetch_all(user);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{user} has {} messages, want {n}\n{}",
            got.len(),
            std::fs::read_to_string(&pair.postfix.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `got` is `sent` with only trace fields (and the Date/Message-ID/From we
/// add when missing) above it.
fn check_identical(got: &[u8], sent: &[u8], added_ok: &[&str]) -> String {
    assert!(got.len() >= sent.len(), "{}", String::from_utf8_lossy(got));
    let (added, rest) = got.split_at(got.len() - sent.len());
    assert_bytes_eq(rest, sent, "delivered message after the added fields");
    let added = String::from_utf8_lossy(added).into_owned();
    for line in added.lines() {
        assert!(
            line.starts_with(' ')
                || line.starts_with('\t')
                || ["Return-Path:", "Delivered-To:", "Received:"]
                    .iter()
                    .chain(added_ok)
                    .any(|f| line.starts_with(f)),
            "unexpected added line {line:?} in\n{added}"
        );
    }
    added
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@client.example.test>\n\
         To: <alice@example.test>\n\
         Subject: {subject}\n\
         \n\
         first\n..x\n.x\n\nend. not\n...\nlast\n"
    )
    .into_bytes()
}

fn start(t: &TempDir) -> Option<Pair> {
    Pair::start(t.path())
}

#[test]
fn submits_over_starttls_with_auth_byte_identical_and_redacted_transcript() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let msg = message("submission");
    let out = as_alice(via(
        send(t.path()),
        &pair,
        pair.postfix.submission_port,
        "starttls",
    ))
    .args([
        "-v",
        "-i",
        "-f",
        "sender@client.example.test",
        "alice@example.test",
    ])
    .stdin(msg.clone())
    .run()
    .success();
    let err = out.stderr();
    assert!(err.contains("C: STARTTLS"), "{err}");
    assert!(err.contains("C: AUTH PLAIN <redacted>"), "{err}");
    assert!(err.contains("S: 235"), "{err}");
    assert!(
        err.contains("C: MAIL FROM:<sender@client.example.test> SIZE="),
        "{err}"
    );
    assert!(err.contains("delivered: 250"), "{err}");
    assert!(!err.contains("secret"), "password in the transcript: {err}");
    let plain_b64 = "AGFsaWNlAHNlY3JldA=="; // \0alice\0secret
    assert!(
        !err.contains(plain_b64),
        "credentials in the transcript: {err}"
    );
    let got = inbox(&pair, "alice", 1);
    assert_eq!(got.len(), 1);
    let added = check_identical(&got[0], &msg, &["Date:", "Message-ID:"]);
    assert!(
        added.contains("\nDate: ") || added.starts_with("Date: "),
        "{added}"
    );
    assert!(added.contains("Message-ID: <"), "{added}");
    // Postfix saw TLS and the login.
    let log = std::fs::read_to_string(&pair.postfix.log).unwrap_or_default();
    assert!(log.contains("sasl_username=alice"), "{log}");
}

#[test]
fn submits_over_implicit_tls_with_auth_login() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let msg = message("smtps");
    let out = as_alice(via(
        send(t.path()),
        &pair,
        pair.postfix.smtps_port,
        "implicit",
    ))
    .args(["--auth", "login", "-v", "-i", "alice@example.test"])
    .stdin(msg.clone())
    .run()
    .success();
    let err = out.stderr();
    assert!(err.contains("C: AUTH LOGIN"), "{err}");
    assert!(
        !err.contains("secret") && !err.contains("c2VjcmV0"),
        "{err}"
    );
    let got = inbox(&pair, "alice", 1);
    check_identical(&got[0], &msg, &["Date:", "Message-ID:"]);
}

#[test]
fn wrong_password_is_77_and_nothing_is_sent() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    via(
        send(t.path()),
        &pair,
        pair.postfix.submission_port,
        "starttls",
    )
    .args(["--user", "alice", "--password-env", "PL_PASS"])
    .env("PL_PASS", "wrong")
    .args(["--no-queue", "alice@example.test"])
    .stdin(message("wrong password"))
    .run()
    .code_is(77)
    .stderr_has("535");
    pair.postfix.wait_queue_empty(TIMEOUT);
    assert!(pair.dovecot.imap_fetch_all("alice").is_empty());
}

#[test]
fn required_starttls_not_offered_sends_nothing_not_even_the_password() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let out = as_alice(via(
        send(t.path()),
        &pair,
        pair.postfix.plain_port,
        "starttls",
    ))
    .args(["-v", "--no-queue", "alice@example.test"])
    .stdin(message("no starttls"))
    .run()
    .code_is(75)
    .stderr_has("does not offer STARTTLS");
    let err = out.stderr();
    assert!(!err.contains("C: AUTH"), "{err}");
    assert!(!err.contains("C: MAIL"), "{err}");
    pair.postfix.wait_queue_empty(TIMEOUT);
    assert!(pair.dovecot.imap_fetch_all("alice").is_empty());
    let log = std::fs::read_to_string(&pair.postfix.log).unwrap_or_default();
    assert!(!log.contains("from=<"), "Postfix accepted something: {log}");
}

#[test]
fn every_smuggling_shape_arrives_as_one_message() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let mut msg =
        b"From: s@client.example.test\r\nTo: alice@example.test\r\nSubject: smuggle\r\n\r\n"
            .to_vec();
    msg.extend_from_slice(
        b"a\n.\nMAIL FROM:<evil@x>\nb\r\n.\rRCPT TO:<bob@x>\nc\n.\r\nDATA\r\nd\r\n.\r\nend\r\n",
    );
    via(send(t.path()), &pair, pair.postfix.smtp_port, "starttls")
        .args(["-i", "alice@example.test"])
        .stdin(msg)
        .run()
        .success();
    pair.postfix.wait_queue_empty(TIMEOUT);
    let got = inbox(&pair, "alice", 1);
    assert_eq!(got.len(), 1, "one message");
    let text = String::from_utf8_lossy(&got[0]);
    for needle in [
        "\n.\nMAIL FROM:<evil@x>\n",
        "RCPT TO:<bob@x>",
        "\nDATA\n",
        "\nend\n",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in {text}");
    }
}

#[test]
fn dash_t_with_bcc_removes_the_field_and_delivers_to_every_recipient() {
    let t = TempDir::new();
    let Some(mut pair) = start(&t) else { return };
    pair.dovecot.add_user("carol", &t.join("mail/carol"));
    pair.dovecot.add_user("dave", &t.join("mail/dave"));
    let msg = b"From: s@client.example.test\nTo: Alice <alice@example.test>\nBcc: carol@example.test\nSubject: bcc\n\nhidden\n";
    // dave is on the command line: added to the header recipients.
    via(send(t.path()), &pair, pair.postfix.smtp_port, "starttls")
        .args(["-t", "-i", "dave@example.test"])
        .stdin(msg.to_vec())
        .run()
        .success();
    for user in ["alice", "carol", "dave"] {
        let got = inbox(&pair, user, 1);
        let text = String::from_utf8_lossy(&got[0]);
        assert!(!text.contains("Bcc:"), "{user}: {text}");
        assert!(
            text.contains("Subject: bcc\n") && text.ends_with("\nhidden\n"),
            "{text}"
        );
    }
}

/// A config with one default account for the harness Postfix.
fn config(t: &TempDir, pair: &Pair) {
    let dir = t.join(".config/postline");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[account.other]\nhost = \"127.0.0.1\"\nport = 1\nfrom = [\"*@elsewhere.test\"]\n\n\
             [account.lab]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\ntls_ca_file = \"{}\"\n\
             user = \"alice\"\npassword_command = \"echo secret\"\ndefault = true\n",
            pair.postfix.submission_port,
            pair.dovecot.cert.display()
        ),
    )
    .unwrap();
}

#[test]
fn the_flag_sets_of_cron_php_mutt_and_git_are_accepted() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    config(&t, &pair);
    let with = |args: &[&str], subject: &str| {
        send(t.path())
            .args(args)
            .stdin(message(subject))
            .run()
            .success();
    };
    with(
        &[
            "-FCronDaemon",
            "-i",
            "-B8BITMIME",
            "-oem",
            "alice@example.test",
        ],
        "cron",
    );
    with(&["-t", "-i"], "php");
    with(
        &[
            "-oem",
            "-oi",
            "-f",
            "sender@client.example.test",
            "-N",
            "never",
            "-R",
            "hdrs",
            "--",
            "alice@example.test",
        ],
        "mutt",
    );
    with(
        &[
            "-i",
            "-f",
            "sender@client.example.test",
            "alice@example.test",
        ],
        "git",
    );
    with(
        &[
            "-F",
            "Name",
            "-odi",
            "-v",
            "-V",
            "envid1",
            "-bm",
            "-oi",
            "alice@example.test",
        ],
        "misc",
    );
    let got = inbox(&pair, "alice", 5);
    let subjects: Vec<String> = got
        .iter()
        .map(|m| {
            let s = String::from_utf8_lossy(m);
            s.lines()
                .find(|l| l.starts_with("Subject: "))
                .unwrap_or("")
                .to_string()
        })
        .collect();
    for s in ["cron", "php", "mutt", "git", "misc"] {
        assert!(
            subjects.contains(&format!("Subject: {s}")),
            "{s}: {subjects:?}"
        );
    }
}

#[test]
fn explain_names_the_account_and_why_and_sends_nothing() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    config(&t, &pair);
    let out = send(t.path())
        .args(["--explain", "-f", "me@elsewhere.test", "alice@example.test"])
        .stdin(message("explain"))
        .run()
        .success();
    let o = out.stdout();
    assert!(
        o.contains("route: account other, chosen because its from patterns match"),
        "{o}"
    );
    assert!(o.contains("nothing was sent"), "{o}");
    let out = send(t.path())
        .args([
            "--explain",
            "-f",
            "me@client.example.test",
            "alice@example.test",
        ])
        .stdin(message("explain"))
        .run()
        .success();
    let o = out.stdout();
    assert!(
        o.contains("route: account lab, chosen because default = true"),
        "{o}"
    );
    assert!(o.contains("tls: starttls, required"), "{o}");
    assert!(o.contains("auth: as alice"), "{o}");
    assert!(!o.contains("secret\n"), "{o}");
    pair.postfix.wait_queue_empty(TIMEOUT);
    assert!(pair.dovecot.imap_fetch_all("alice").is_empty());
}

#[test]
fn dash_bs_speaks_smtp_on_stdin_and_stdout() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    config(&t, &pair);
    let dialogue = "EHLO app.example\r\nMAIL FROM:<app@client.example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nFrom: app@client.example.test\r\nSubject: via bs\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n";
    let out = send(t.path()).arg("-bs").stdin(dialogue).run().success();
    let o = out.stdout();
    assert!(o.starts_with("220 "), "{o}");
    assert!(o.contains("354 "), "{o}");
    assert!(o.contains("250 2.0.0 Ok: delivered"), "{o}");
    assert!(o.ends_with("221 2.0.0 Bye\r\n"), "{o}");
    let got = inbox(&pair, "alice", 1);
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.ends_with("Subject: via bs\n\n.leading dot\nbody\n"),
        "{text}"
    );
}

#[test]
fn lmtp_reports_per_recipient_outcomes() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let msg = message("lmtp");
    send(t.path())
        .args(["--lmtp", &format!("127.0.0.1:{}", pair.dovecot.lmtp_port)])
        .args(["-i", "alice@example.test", "nobody@example.test"])
        .stdin(msg.clone())
        .run()
        .code_is(67)
        .stderr_has("<nobody@example.test>");
    let got = inbox(&pair, "alice", 1);
    check_identical(&got[0], &msg, &["Date:", "Message-ID:"]);
}

#[test]
fn temporary_failure_without_queue_is_75() {
    let t = TempDir::new();
    let port = crate::harness::free_ports(1)[0];
    send(t.path())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--tls",
            "none",
        ])
        .args(["--no-queue", "alice@example.test"])
        .stdin(message("down"))
        .run()
        .code_is(75)
        .stderr_has("connecting to 127.0.0.1");
}

#[test]
fn usage_errors_are_64() {
    let t = TempDir::new();
    send(t.path()).arg("--bogus").run().code_is(64);
    send(t.path())
        .args(["--port", "25", "a@b.test"])
        .stdin("x\n")
        .run()
        .code_is(64)
        .stderr_has("needs --host");
    send(t.path())
        .args(["--host", "127.0.0.1"])
        .stdin("Subject: x\n\nx\n")
        .run()
        .code_is(64)
        .stderr_has("no recipients");
    // A bad value on the command line is a usage error naming the flag, not
    // a config error (78), and nothing is sent or queued.
    for (flag, value) in [
        ("--tls", "startls"),
        ("--tls-fingerprint", "zz"),
        ("--auth", "cram-md5x"),
    ] {
        send(t.path())
            .args(["--host", "127.0.0.1", flag, value, "a@b.test"])
            .stdin("Subject: x\n\nx\n")
            .run()
            .code_is(64)
            .stderr_one_line()
            .stderr_has(flag);
    }
}

fn mx_records(extra: &str) -> String {
    format!(
        "mx-host=example.test,dead.example.test,10
mx-host=example.test,mx.example.test,20
host-record=dead.example.test,::1
host-record=mx.example.test,127.0.0.1
dns-rr=nullmx.test,15,000000
host-record=nullmx.test,127.0.0.1
host-record=nomx.test,127.0.0.1
server=/servfail.test/127.0.0.1#9
{extra}"
    )
}

fn dns(t: &TempDir) -> Option<Dnsmasq> {
    if crate::harness::skip_unless(crate::dns::available(), "dnsmasq is not installed") {
        return None;
    }
    Some(Dnsmasq::start(&t.join("dns"), &mx_records("")))
}

fn direct(t: &TempDir, dns: &Dnsmasq, pair: &Pair) -> Tool {
    send(t.path()).args([
        "--direct",
        "--resolver",
        &dns.addr,
        "--mx-port",
        &pair.postfix.smtp_port.to_string(),
    ])
}

#[test]
fn direct_mx_falls_over_to_the_backup_and_uses_starttls() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let Some(dns) = dns(&t) else { return };
    let msg = message("direct");
    let out = direct(&t, &dns, &pair)
        .args(["-v", "-i", "alice@example.test"])
        .stdin(msg.clone())
        .run()
        .success();
    let err = out.stderr();
    let first = err.find("trying MX dead.example.test").expect(&err);
    let second = err.find("trying MX mx.example.test").expect(&err);
    assert!(first < second, "{err}");
    assert!(err.contains("C: STARTTLS"), "{err}");
    let got = inbox(&pair, "alice", 1);
    check_identical(&got[0], &msg, &["Date:", "Message-ID:"]);

    // --explain lists the MX hosts in order, sends nothing.
    let out = direct(&t, &dns, &pair)
        .args(["--explain", "alice@example.test"])
        .stdin(message("explained"))
        .run()
        .success();
    let o = out.stdout();
    let a = o.find("#1 dead.example.test (preference 10)").expect(&o);
    let b = o.find("#2 mx.example.test (preference 20)").expect(&o);
    assert!(a < b && o.contains("opportunistic"), "{o}");
}

#[test]
fn direct_null_mx_and_nxdomain_are_permanent_and_dns_down_is_temporary() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let Some(dns) = dns(&t) else { return };
    direct(&t, &dns, &pair)
        .args(["--no-queue", "bob@nullmx.test"])
        .stdin(message("null"))
        .run()
        .code_is(69)
        .stderr_has("null MX");
    direct(&t, &dns, &pair)
        .args(["--no-queue", "bob@nowhere.test"])
        .stdin(message("nx"))
        .run()
        .code_is(67)
        .stderr_has("NXDOMAIN");
    let dead = format!("127.0.0.1:{}", crate::harness::free_ports(1)[0]);
    send(t.path())
        .args([
            "--direct",
            "--resolver",
            &dead,
            "--timeout",
            "2",
            "--no-queue",
        ])
        .arg("alice@example.test")
        .stdin(message("dns down"))
        .run()
        .code_is(75);
    pair.postfix.wait_queue_empty(TIMEOUT);
    assert!(pair.dovecot.imap_fetch_all("alice").is_empty());
}

/// The config of [`config`] with the default account's port replaced.
fn config_port(t: &TempDir, pair: &Pair, port: u16) {
    config(t, pair);
    let p = t.join(".config/postline/config.toml");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        &format!("port = {}\n", pair.postfix.submission_port),
        &format!("port = {port}\n"),
    );
    std::fs::write(&p, text).unwrap();
}

#[test]
fn server_down_queues_then_the_queue_delivers_once() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let down = crate::harness::free_ports(1)[0];
    config_port(&t, &pair, down);
    let msg = message("queued");
    let out = send(t.path())
        .args(["-i", "alice@example.test"])
        .stdin(msg.clone())
        .run()
        .success()
        .stderr_has("queued as ");
    let err = out.stderr();
    let id: String = err
        .split("queued as ")
        .nth(1)
        .unwrap_or("")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    assert_eq!(id.len(), 20, "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{down}")),
        "the reason: {err}"
    );
    // -bp lists it (as mail-queue list does).
    let out = send(t.path()).arg("-bp").run().success();
    assert!(out.stdout().contains(&id), "{}", out.stdout());

    // The server comes back (the account now points at it): one flush
    // delivers it, a second finds nothing to do.
    config(&t, &pair);
    Tool::new("mail-queue", t.path())
        .arg("flush")
        .run()
        .success();
    Tool::new("mail-queue", t.path())
        .arg("flush")
        .run()
        .success();
    pair.postfix.wait_queue_empty(TIMEOUT);
    let got = inbox(&pair, "alice", 1);
    assert_eq!(got.len(), 1, "delivered exactly once");
    check_identical(&got[0], &msg, &["Date:", "Message-ID:"]);
    let out = send(t.path()).arg("-bp").run().success();
    assert!(!out.stdout().contains(&id), "{}", out.stdout());
}

#[test]
fn installed_as_mailq_it_lists_the_queue() {
    let t = TempDir::new();
    let link = t.join("mailq");
    std::os::unix::fs::symlink(crate::harness::bin("mail-send"), &link).unwrap();
    let out = std::process::Command::new(&link)
        .env_clear()
        .env("HOME", t.path())
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An empty queue: no entries (JSON lines: none), nothing on stderr.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mixed_outcomes_queue_only_the_failed_recipient_and_never_resend_the_others() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new();
    let Some(mut pair) = start(&t) else { return };
    let carol = t.join("mail/carol");
    pair.dovecot.add_user("carol", &carol);
    // carol's mailbox cannot be written for now: Dovecot answers 4xx.
    std::fs::set_permissions(&carol, std::fs::Permissions::from_mode(0o000)).unwrap();
    let msg = message("mixed");
    let lmtp = format!("127.0.0.1:{}", pair.dovecot.lmtp_port);
    let out = send(t.path())
        .args([
            "--lmtp",
            &lmtp,
            "-i",
            "alice@example.test",
            "carol@example.test",
        ])
        .stdin(msg.clone())
        .run()
        .success()
        .stderr_has("queued as ");
    assert!(
        out.stderr().contains("<carol@example.test>"),
        "{}",
        out.stderr()
    );
    assert!(
        !out.stderr().contains("<alice@example.test>"),
        "{}",
        out.stderr()
    );
    assert_eq!(inbox(&pair, "alice", 1).len(), 1);

    std::fs::set_permissions(&carol, std::fs::Permissions::from_mode(0o700)).unwrap();
    Tool::new("mail-queue", t.path())
        .arg("flush")
        .run()
        .success();
    let got = inbox(&pair, "carol", 1);
    check_identical(&got[0], &msg, &["Date:", "Message-ID:"]);
    assert_eq!(
        pair.dovecot.imap_fetch_all("alice").len(),
        1,
        "alice got it once"
    );
}

#[test]
fn certificates_are_verified_unless_pinned() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let port = pair.postfix.submission_port.to_string();
    // Self-signed and not trusted: refused, nothing sent, no password.
    let out = as_alice(send(t.path()))
        .args(["--host", "127.0.0.1", "--port", &port, "-v", "--no-queue"])
        .arg("alice@example.test")
        .stdin(message("untrusted"))
        .run()
        .code_is(75)
        .stderr_has("TLS handshake");
    assert!(!out.stderr().contains("C: AUTH"), "{}", out.stderr());
    // Pinned by its SHA-256: accepted.
    let fp = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&pair.dovecot.cert)
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout);
    let fp = fp.trim().rsplit('=').next().unwrap().to_string();
    as_alice(send(t.path()))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--tls-fingerprint",
            &fp,
        ])
        .args(["-i", "alice@example.test"])
        .stdin(message("pinned"))
        .run()
        .success();
    // A wrong pin: refused.
    let wrong = format!("{}00", &fp[..fp.len() - 2]).replace(":00", ":01");
    as_alice(send(t.path()))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--tls-fingerprint",
            &wrong,
        ])
        .args(["--no-queue", "alice@example.test"])
        .stdin(message("wrong pin"))
        .run()
        .code_is(75)
        .stderr_has("does not match the pinned");
    let got = inbox(&pair, "alice", 1);
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("Subject: pinned\n"));
}

#[test]
fn dsn_and_8bitmime_parameters_reach_postfix_and_8bit_arrives_intact() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let mut msg = message("eight bit");
    msg.extend_from_slice("caf\u{e9} \u{2603}\n".as_bytes());
    let out = via(send(t.path()), &pair, pair.postfix.smtp_port, "starttls")
        .args([
            "-v",
            "-i",
            "-N",
            "success,failure",
            "-R",
            "hdrs",
            "-V",
            "env 1",
        ])
        .arg("alice@example.test")
        .stdin(msg.clone())
        .run()
        .success();
    let err = out.stderr();
    assert!(
        err.contains(" BODY=8BITMIME RET=HDRS ENVID=env+201"),
        "{err}"
    );
    assert!(
        err.contains("RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE"),
        "{err}"
    );
    let got = inbox(&pair, "alice", 1);
    check_identical(&got[0], &msg, &["Date:", "Message-ID:"]);
}

#[test]
fn lmtp_over_a_unix_socket() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let sock = pair.dovecot.dir.join("run/lmtp");
    if crate::harness::skip_unless(sock.exists(), "Dovecot has no LMTP unix socket") {
        return;
    }
    let msg = message("unix lmtp");
    send(t.path())
        .arg("--lmtp")
        .arg(&sock)
        .args(["-i", "alice@example.test"])
        .stdin(msg.clone())
        .run()
        .success();
    let got = inbox(&pair, "alice", 1);
    check_identical(&got[0], &msg, &["Date:", "Message-ID:"]);
}

#[test]
fn a_queue_flush_reuses_one_connection_per_destination() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let down = crate::harness::free_ports(1)[0];
    config_port(&t, &pair, down);
    for i in 0..3 {
        send(t.path())
            .args(["-i", "alice@example.test"])
            .stdin(message(&format!("reuse {i}")))
            .run()
            .success()
            .stderr_has("queued as ");
    }
    config(&t, &pair);
    let out = Tool::new("mail-queue", t.path())
        .args(["-v", "flush"])
        .run()
        .success();
    let err = out.stderr();
    assert_eq!(err.matches("C: STARTTLS").count(), 1, "{err}");
    assert_eq!(err.matches("C: AUTH PLAIN <redacted>").count(), 1, "{err}");
    assert_eq!(err.matches("C: DATA").count(), 3, "{err}");
    assert_eq!(inbox(&pair, "alice", 3).len(), 3);
}

#[test]
fn direct_without_mx_uses_the_address_and_servfail_is_temporary() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let Some(dns) = dns(&t) else { return };
    let out = direct(&t, &dns, &pair)
        .args([
            "--timeout",
            "2",
            "--explain",
            "bob@nomx.test",
            "carol@servfail.test",
        ])
        .stdin(message("implicit"))
        .run()
        .success();
    let o = out.stdout();
    assert!(
        o.contains("mx: nomx.test has no MX; its own address (implicit MX) 127.0.0.1:"),
        "{o}"
    );
    assert!(o.contains("mx: servfail.test: temporary failure"), "{o}");
    // The implicit MX is really used: the harness Postfix there refuses
    // the foreign domain at RCPT, and says so.
    direct(&t, &dns, &pair)
        .args(["--no-queue", "bob@nomx.test"])
        .stdin(message("implicit"))
        .run()
        .code_is(67)
        .stderr_has("no outside network");
    direct(&t, &dns, &pair)
        .args(["--timeout", "2", "--no-queue", "carol@servfail.test"])
        .stdin(message("servfail"))
        .run()
        .code_is(75);
}

#[test]
fn fields_added_when_missing_and_a_lone_dot_ends_input_without_dash_i() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let lmtp = format!("127.0.0.1:{}", pair.dovecot.lmtp_port);
    let bare = b"Subject: bare\n\nbody\n.\nafter the dot\n".to_vec();
    send(t.path())
        .args([
            "--lmtp",
            &lmtp,
            "-FCron Daemon",
            "-f",
            "root@client.example.test",
        ])
        .args(["-U", "-n", "-Am", "alice@example.test"])
        .stdin(bare)
        .run()
        .success();
    let got = inbox(&pair, "alice", 1);
    let added = check_identical(
        &got[0],
        b"Subject: bare\n\nbody\n",
        &["From:", "Date:", "Message-ID:"],
    );
    assert!(
        added.contains("From: Cron Daemon <root@client.example.test>\n"),
        "{added}"
    );
    assert!(
        added.contains("Message-ID: <") && added.contains("@client.example.test>\n"),
        "{added}"
    );
}

#[test]
fn installed_as_sendmail_it_is_mail_send_and_dash_q_runs_the_queue() {
    let t = TempDir::new();
    let link = t.join("sendmail");
    std::os::unix::fs::symlink(crate::harness::bin("mail-send"), &link).unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        use std::io::Write;
        let mut c = std::process::Command::new(&link)
            .env_clear()
            .env("HOME", t.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin).unwrap();
        c.wait_with_output().unwrap()
    };
    let out = run(
        &["--explain", "--lmtp", "/run/x.sock", "-t", "-i"],
        b"To: a@b.test\n\nx\n",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(
        o.contains("to <a@b.test>") && o.contains("/run/x.sock"),
        "{o}"
    );
    let out = run(&["-q"], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Cron's exact command line and From field (issue 13, defect 3): a bare
/// local part never reaches the server as a sender or a recipient; it is
/// qualified with `[send] domain`, else the host's FQDN (as Postfix does
/// with myorigin). Only `<>` goes without a domain.
#[test]
fn bare_senders_and_recipients_are_qualified_with_the_domain() {
    let t = TempDir::new();
    let Some(pair) = start(&t) else { return };
    let lmtp = format!("127.0.0.1:{}", pair.dovecot.lmtp_port);
    let cron = b"From: root (Cron Daemon)\nTo: alice\nSubject: cron\n\nbody\n".to_vec();
    let cron_flags = ["-FCronDaemon", "-i", "-B8BITMIME", "-oem"];

    // No config: the sender gets the host's name, never `<root>`.
    for extra in [&[][..], &["-f", "root"][..]] {
        let out = send(t.path())
            .args(["--lmtp", &lmtp, "-v"])
            .args(cron_flags)
            .args(extra)
            .arg("alice@example.test")
            .stdin(cron.clone())
            .run()
            .success();
        let err = out.stderr();
        assert!(err.contains("C: MAIL FROM:<root@"), "{extra:?}: {err}");
        assert!(!err.contains("MAIL FROM:<root>"), "{extra:?}: {err}");
    }

    // `[send] domain` qualifies the sender and a bare recipient alike.
    let dir = t.join(".config/postline");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "[send]\ndomain = \"example.test\"\n",
    )
    .unwrap();
    let out = send(t.path())
        .args(["--lmtp", &lmtp, "-v"])
        .args(cron_flags)
        .arg("alice")
        .stdin(cron.clone())
        .run()
        .success();
    let err = out.stderr();
    assert!(err.contains("C: MAIL FROM:<root@example.test>"), "{err}");
    assert!(err.contains("C: RCPT TO:<alice@example.test>"), "{err}");
    let got = inbox(&pair, "alice", 3);
    assert_eq!(got.len(), 3);

    // The null sender stays null.
    let out = send(t.path())
        .args([
            "--lmtp",
            &lmtp,
            "-v",
            "-i",
            "-f",
            "<>",
            "alice@example.test",
        ])
        .stdin(cron)
        .run()
        .success();
    assert!(out.stderr().contains("C: MAIL FROM:<>"), "{}", out.stderr());
}
