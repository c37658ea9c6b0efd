//! Delivery to a command (`-- COMMAND ARGS...`): its exit status and
//! stderr decide the reply after the dot (Postfix pipe(8)'s map), its
//! environment carries the envelope, and with --lmtp each recipient gets
//! its own run and its own reply, in order.

use super::*;

/// mail-recv delivering to `sh -c SCRIPT sh ARGS...`.
fn to_sh(t: &TempDir, script: &str, args: &[&Path]) -> Tool {
    to_sh_with(t, &[], script, args)
}

/// [`to_sh`] with more mail-recv options (before the `--`).
fn to_sh_with(t: &TempDir, opts: &[&str], script: &str, args: &[&Path]) -> Tool {
    let mut tool = recv(t.path())
        .args(opts)
        .args(["--", "/bin/sh", "-c", script, "sh"]);
    for a in args {
        tool = tool.arg(a);
    }
    tool
}

/// One message from alice@remote.test to `rcpts` through `tool`; the
/// reply after the dot.
fn one(t: &TempDir, tool: Tool, rcpts: &[&str]) -> Reply {
    let mut p = Piped::start(tool, t.path());
    p.c.hello(false);
    let r = p.c.mail("alice@remote.test", rcpts, &message("cmd"));
    p.quit();
    r
}

#[test]
fn exit_75_is_451_and_the_client_keeps_the_message() {
    let t = TempDir::new();
    let got = t.join("got");
    let r = one(
        &t,
        to_sh(&t, r#"cat > "$1"; exit 75"#, &[&got]),
        &["bob@example.org"],
    );
    assert_eq!(r.code, 451, "{:?}", r.lines);
    assert!(r.has("4.3.0"), "{:?}", r.lines);
    // The command did get the message: the 451 is its answer.
    let msg = std::fs::read(&got).expect("the command ran");
    assert!(contains(&msg, "body of cmd"));
}

#[test]
fn exit_0_is_250_and_the_command_gets_return_path_and_received() {
    let t = TempDir::new();
    let got = t.join("got");
    let r = one(
        &t,
        to_sh(&t, r#"cat > "$1""#, &[&got]),
        &["bob@example.org"],
    );
    assert_eq!(r.code, 250, "{:?}", r.lines);
    let msg = std::fs::read(&got).expect("the command ran");
    let h = header_block(&msg);
    assert!(h.starts_with("Return-Path: <alice@remote.test>"), "{h}");
    assert!(h.contains("Received: from client.test"), "{h}");
    assert!(contains(&msg, "\n.leading dot"), "un-stuffed: {msg:?}");
}

/// Exit codes as Postfix's pipe(8) maps them, and an enhanced status code
/// at the start of stderr taking precedence over the exit status.
#[test]
fn exit_codes_and_stderr_status_map_like_pipe8() {
    let cases: &[(&str, u16, &str)] = &[
        ("cat >/dev/null; exit 67", 5, "5.1.1"),
        ("cat >/dev/null; exit 69", 5, "5.3.0"),
        ("cat >/dev/null; exit 75", 4, "4.3.0"),
        (
            "cat >/dev/null; echo '5.2.2 mailbox full' >&2; exit 73",
            5,
            "5.2.2",
        ),
        (
            "cat >/dev/null; echo '4.2.2 over quota' >&2; exit 1",
            4,
            "4.2.2",
        ),
    ];
    let mut bad = Vec::new();
    for (script, class, esc) in cases {
        let t = TempDir::new();
        let r = one(&t, to_sh(&t, script, &[]), &["bob@example.org"]);
        if r.code / 100 != *class || !r.has(esc) {
            bad.push(format!("{script}: {:?}, want {class}xx {esc}", r.lines));
        }
        if esc == &"5.2.2" && !r.has("mailbox full") {
            bad.push(format!(
                "{script}: the command's text is missing: {:?}",
                r.lines
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// pipe(8), DIAGNOSTICS: "When the output begins with a 4.X.X or 5.X.X
/// enhanced status code, the status code takes precedence over the
/// non-zero exit status", even over EX_TEMPFAIL (75). The issue says the
/// same ("an enhanced status code at the start of the command's stderr
/// wins"); a command that says 5.2.2 means it.
#[test]
fn stderr_status_wins_over_exit_75() {
    let t = TempDir::new();
    let r = one(
        &t,
        to_sh(
            &t,
            "cat >/dev/null; echo '5.2.2 mailbox full' >&2; exit 75",
            &[],
        ),
        &["bob@example.org"],
    );
    assert_eq!(r.code / 100, 5, "{:?}", r.lines);
    assert!(r.has("5.2.2 mailbox full"), "{:?}", r.lines);
}

/// A command killed by a signal (here SIGKILL, by itself) is a temporary
/// failure: 451.
#[test]
fn a_killed_command_is_451() {
    let t = TempDir::new();
    let r = one(
        &t,
        to_sh(&t, "cat >/dev/null; kill -9 $$", &[]),
        &["bob@example.org"],
    );
    assert_eq!(r.code, 451, "{:?}", r.lines);
    assert!(r.has("4.3.0"), "{:?}", r.lines);
}

/// A command that outlives --mda-timeout is killed: 451.
#[test]
fn a_command_past_its_deadline_is_451() {
    let t = TempDir::new();
    let r = one(
        &t,
        to_sh_with(
            &t,
            &["--mda-timeout", "1"],
            "cat >/dev/null; exec sleep 120",
            &[],
        ),
        &["bob@example.org"],
    );
    assert_eq!(r.code, 451, "{:?}", r.lines);
}

/// The fixture `envdump` in `t`, executable.
fn envdump(t: &TempDir) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = t.join("envdump");
    std::fs::write(&p, crate::harness::fixture("mail-recv", "envdump")).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

/// `NAME`'s value in an envdump file (`None` when unset).
fn var(dump: &str, name: &str) -> Option<String> {
    let start = dump.find(&format!("{name}="))? + name.len() + 1;
    let rest = &dump[start..];
    if rest.starts_with("<unset>") {
        return None;
    }
    let rest = rest.strip_prefix('[').expect("envdump format");
    // Values may span lines; the next `]\n` followed by a NAME= or the end.
    let end = rest.find("]\n").expect("envdump format");
    Some(rest[..end].to_string())
}

#[test]
fn the_envelope_is_in_the_environment() {
    let t = TempDir::new();
    let dump = envdump(&t);
    let (env, msg) = (t.join("env"), t.join("msg"));
    let tool = recv(t.path())
        .env("TCPREMOTEIP", "192.0.2.7")
        .env("REMOTE_ADDR", "198.51.100.9")
        .arg("--")
        .arg(&dump)
        .arg(&env)
        .arg(&msg);
    let r = one(&t, tool, &["bob@example.org"]);
    assert_eq!(r.code, 250, "{:?}", r.lines);
    let names = crate::harness::dir_names(t.path());
    let env_file = names
        .iter()
        .find(|n| n.starts_with("env."))
        .unwrap_or_else(|| panic!("RECIPIENT set with one recipient: {names:?}"));
    let dump = std::fs::read_to_string(t.join(env_file)).expect("envdump ran");
    let get = |n: &str| var(&dump, n);
    assert_eq!(
        get("SENDER").as_deref(),
        Some("alice@remote.test"),
        "{dump}"
    );
    assert_eq!(
        get("RECIPIENT").as_deref(),
        Some("bob@example.org"),
        "{dump}"
    );
    assert_eq!(
        get("RECIPIENTS").as_deref(),
        Some("bob@example.org"),
        "{dump}"
    );
    assert_eq!(get("LOCAL").as_deref(), Some("bob"), "{dump}");
    assert_eq!(get("DOMAIN").as_deref(), Some("example.org"), "{dump}");
    // UCSPI's TCPREMOTEIP first, then REMOTE_ADDR.
    assert_eq!(
        get("CLIENT_ADDRESS").as_deref(),
        Some("192.0.2.7"),
        "{dump}"
    );
    assert_eq!(get("CLIENT_HELO").as_deref(), Some("client.test"), "{dump}");
    assert_eq!(get("CLIENT_PROTOCOL").as_deref(), Some("ESMTP"), "{dump}");
    assert!(get("SASL_USERNAME").is_none_or(|s| s.is_empty()), "{dump}");
    let msg_file = env_file.replacen("env.", "msg.", 1);
    let m = std::fs::read(t.join(msg_file)).expect("message");
    let h = header_block(&m);
    assert!(h.contains("[192.0.2.7]"), "{h}");
}

/// Two recipients, SMTP: one run, RECIPIENTS lists both (one a line),
/// RECIPIENT is not set; the address is REMOTE_ADDR's without TCPREMOTEIP.
#[test]
fn two_recipients_one_run_with_recipients() {
    let t = TempDir::new();
    let dump = envdump(&t);
    let (env, msg) = (t.join("env"), t.join("msg"));
    let tool = recv(t.path())
        .env("REMOTE_ADDR", "198.51.100.9")
        .arg("--")
        .arg(&dump)
        .arg(&env)
        .arg(&msg);
    let r = one(&t, tool, &["bob@example.org", "carol@example.org"]);
    assert_eq!(r.code, 250, "{:?}", r.lines);
    let dump = std::fs::read_to_string(&env).expect("one run, RECIPIENT unset");
    assert_eq!(var(&dump, "RECIPIENT"), None, "{dump}");
    assert_eq!(
        var(&dump, "RECIPIENTS").as_deref(),
        Some("bob@example.org\ncarol@example.org"),
        "{dump}"
    );
    assert_eq!(
        var(&dump, "CLIENT_ADDRESS").as_deref(),
        Some("198.51.100.9"),
        "{dump}"
    );
    assert!(std::fs::read(&msg).is_ok());
}

/// LMTP: one reply per recipient after the dot, in order, each the
/// outcome of that recipient's run.
#[test]
fn lmtp_replies_per_recipient_in_order() {
    let t = TempDir::new();
    let got = t.join("got");
    std::fs::create_dir(&got).unwrap();
    // Only bob and dave exist for the command.
    let script = r#"case "$RECIPIENT" in
  bob@example.org|dave@example.org) cat > "$1/$RECIPIENT" ;;
  *) echo "5.1.1 no such user" >&2; exit 67 ;;
esac"#;
    let mut p = Piped::start(
        recv(t.path())
            .arg("--lmtp")
            .args(["--", "/bin/sh", "-c", script, "sh"])
            .arg(&got),
        t.path(),
    );
    p.c.hello(true);
    p.c.expect("MAIL FROM:<alice@remote.test>", 250);
    for r in ["bob", "nobody", "dave"] {
        p.c.expect(&format!("RCPT TO:<{r}@example.org>"), 250);
    }
    p.c.expect("DATA", 354);
    p.c.send(data_block(&message("lmtp")));
    let replies: Vec<Reply> = (0..3).map(|_| p.c.reply()).collect();
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 550, 250], "{replies:?}");
    assert!(replies[1].has("5.1.1"), "{replies:?}");
    p.quit();
    assert_eq!(
        crate::harness::dir_names(&got),
        ["bob@example.org", "dave@example.org"]
    );
    let m = std::fs::read(got.join("bob@example.org")).unwrap();
    let h = header_block(&m);
    assert!(h.contains(" LMTP"), "{h}");
}

/// LMTP with the template: an unknown recipient is refused at RCPT, and
/// the replies after the dot are one per accepted recipient.
#[test]
fn lmtp_with_a_template_refuses_unknown_at_rcpt() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob", "carol"]);
    let mut p = Piped::start(
        recv(t.path()).args(["--lmtp", "--deliver", &boxes.template()]),
        t.path(),
    );
    // EHLO is not LMTP.
    let g = p.c.reply();
    assert_eq!(g.code, 220);
    let r = p.c.cmd("EHLO client.test");
    assert_eq!(r.code / 100, 5, "{:?}", r.lines);
    p.c.expect("LHLO client.test", 250);
    p.c.expect("MAIL FROM:<alice@remote.test>", 250);
    p.c.expect("RCPT TO:<bob@example.org>", 250);
    let r = p.c.cmd("RCPT TO:<nobody@example.org>");
    assert_eq!(r.code, 550, "{:?}", r.lines);
    assert!(r.has("5.1.1"), "{:?}", r.lines);
    p.c.expect("RCPT TO:<carol@example.org>", 250);
    p.c.expect("DATA", 354);
    p.c.send(data_block(&message("lmtp2")));
    let a = p.c.reply();
    let b = p.c.reply();
    assert_eq!((a.code, b.code), (250, 250), "{a:?} {b:?}");
    p.quit();
    assert_eq!(boxes.read("bob").len(), 1);
    assert_eq!(boxes.read("carol").len(), 1);
}
