//! Hostile-peer cases for SMTP and mail-send (see the module above): a
//! server that answers the end of DATA with a 3xx or before the message
//! was sent, that drips its greeting, that sends terminal escapes; and the
//! children mail-send and mail-fetch run (password commands, the MDA),
//! which must neither hang them, nor flood them, nor see their secrets.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::harness::TempDir;

/// The longest any of these runs may take: a hang guard, not a timing.
const GUARD: Duration = Duration::from_secs(30);

type Log = Arc<Mutex<Vec<String>>>;

/// What a scripted SMTP server does after the greeting and EHLO.
#[derive(Clone, Copy)]
struct Smtp {
    /// The greeting line, CRLF included.
    greeting: &'static str,
    /// The reply to DATA, CRLF included (may carry more than one reply).
    data: &'static str,
    /// The reply after the final dot, CRLF included ("" to send none).
    fin: &'static str,
}

const HONEST: Smtp = Smtp {
    greeting: "220 mx.test ESMTP\r\n",
    data: "354 go ahead\r\n",
    fin: "250 2.0.0 queued\r\n",
};

/// A scripted SMTP server for `conns` connections; every command line it
/// gets is logged (the message itself as one `<message>` entry).
fn smtp_server(conns: usize, s: Smtp) -> (Scripted, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let srv = Scripted::start(conns, move |_, tcp| {
        let mut w = Wire::new(tcp);
        w.send(s.greeting);
        while let Some(line) = w.line() {
            l.lock().unwrap().push(line.clone());
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" | "LHLO" => w.send("250-mx.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"),
                "AUTH" => w.send("235 2.7.0 ok\r\n"),
                "DATA" => {
                    w.send(s.data);
                    if !s.data.starts_with("354") {
                        continue;
                    }
                    // The message, up to its final dot (logged only when
                    // it came whole).
                    while let Some(b) = w.line() {
                        if b == "." {
                            l.lock().unwrap().push("<message>".into());
                            w.send(s.fin);
                            break;
                        }
                    }
                }
                "QUIT" => {
                    w.send("221 bye\r\n");
                    return;
                }
                _ => w.send("250 ok\r\n"),
            }
        }
    });
    (srv, log)
}

fn message() -> &'static str {
    "From: a@example.test\nTo: b@example.test\nSubject: t\n\nhello\n"
}

fn mail_send(home: &Path, port: u16) -> Tool {
    Tool::new("mail-send", home).args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--tls",
        "none",
    ])
}

/// The queue ids `mail-queue list --json` shows.
fn queued(home: &Path) -> Vec<String> {
    let out = Tool::new("mail-queue", home)
        .args(["list", "--json"])
        .run()
        .success();
    out.stdout_lines()
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some(v["id"].as_str()?.to_string())
        })
        .collect()
}

/// "354 go ahead again" after the final dot: mail-send said delivered
/// (exit 0, nothing queued). It is no delivery: 75 with --no-queue.
#[test]
fn a_354_after_the_final_dot_is_not_a_delivery() {
    let t = TempDir::new();
    let (srv, log) = smtp_server(
        1,
        Smtp {
            fin: "354 go ahead again\r\n",
            ..HONEST
        },
    );
    mail_send(t.path(), srv.port)
        .args(["--no-queue", "b@example.test"])
        .stdin(message())
        .run()
        .code_is(75)
        .stderr_one_line()
        .stderr_has("354 go ahead again");
    srv.join();
    assert!(log.lock().unwrap().contains(&"<message>".to_string()));
}

/// Without --no-queue the message is queued, and a flush against the same
/// server keeps it queued (mail-queue removed the entry before).
#[test]
fn a_354_after_the_final_dot_queues_and_a_flush_keeps_the_entry() {
    let t = TempDir::new();
    let (srv, log) = smtp_server(
        2,
        Smtp {
            fin: "354 go ahead again\r\n",
            ..HONEST
        },
    );
    mail_send(t.path(), srv.port)
        .arg("b@example.test")
        .stdin(message())
        .run()
        .success()
        .stderr_has("queued as ");
    let ids = queued(t.path());
    assert_eq!(ids.len(), 1, "queued once");
    Tool::new("mail-queue", t.path()).arg("flush").run();
    srv.join();
    let sent = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| *l == "<message>")
        .count();
    assert_eq!(
        sent,
        2,
        "the flush sent it again: {:?}",
        log.lock().unwrap()
    );
    assert_eq!(queued(t.path()), ids, "the flush must keep the entry");
}

/// The final reply arriving with the 354, before the message was sent,
/// answers nothing: mail-send took it for the final reply and exited 0.
#[test]
fn a_final_reply_sent_before_the_message_is_a_protocol_error() {
    let t = TempDir::new();
    // One connection: a refusal after the 354 may get a reconnect, so allow
    // a second one the script answers the same way.
    let (srv, log) = smtp_server(
        2,
        Smtp {
            data: "354 go ahead\r\n250 2.0.0 queued before you sent it\r\n",
            fin: "",
            ..HONEST
        },
    );
    mail_send(t.path(), srv.port)
        .args(["--no-queue", "b@example.test"])
        .stdin(message())
        .run()
        .code_is(75)
        .stderr_one_line()
        .stderr_has("replied before");
    drop(srv);
    assert!(
        !log.lock().unwrap().contains(&"<message>".to_string()),
        "the message was sent after the out-of-step reply: {:?}",
        log.lock().unwrap()
    );
}

/// A scripted POP3 server holding one message; every command is logged.
fn pop3_server(log: Log) -> Scripted {
    Scripted::start(1, move |_, tcp| {
        let msg = "Return-Path: <a@example.test>\r\nSubject: keep me\r\n\r\nbody\r\n";
        let mut w = Wire::new(tcp);
        w.send("+OK POP3 ready\r\n");
        while let Some(line) = w.line() {
            log.lock().unwrap().push(line.clone());
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "CAPA" => w.send("+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n"),
                "STAT" => w.send(format!("+OK 1 {}\r\n", msg.len())),
                "UIDL" => w.send("+OK\r\n1 uid-1\r\n.\r\n"),
                "LIST" => w.send(format!("+OK\r\n1 {}\r\n.\r\n", msg.len())),
                "RETR" => w.send(format!("+OK\r\n{msg}.\r\n")),
                "QUIT" => {
                    w.send("+OK bye\r\n");
                    return;
                }
                "USER" | "PASS" | "DELE" | "NOOP" | "RSET" => w.send("+OK\r\n"),
                _ => w.send("-ERR unknown\r\n"),
            }
        }
    })
}

/// mail-fetch --smtp: a 354 after the final dot made it DELE the message
/// on the POP3 server. It is not stored: the message stays.
#[test]
fn mail_fetch_keeps_the_message_when_the_smtp_target_says_354_after_the_dot() {
    let t = TempDir::new();
    let (smtp, smtp_log) = smtp_server(
        1,
        Smtp {
            fin: "354 go ahead again\r\n",
            ..HONEST
        },
    );
    let pop_log: Log = Arc::default();
    let pop = pop3_server(pop_log.clone());
    let out = Tool::new("mail-fetch", t.path())
        .args(["--pop3", &format!("127.0.0.1:{}", pop.port)])
        .args(["--tls", "none", "--user", "u", "--password-env", "PW"])
        .args(["--timeout", "5"])
        .args(["--smtp", &format!("127.0.0.1:{}", smtp.port)])
        .args(["--recipient", "me@example.test"])
        .env("PW", "pw")
        .run();
    pop.join();
    smtp.join();
    assert!(
        smtp_log.lock().unwrap().contains(&"<message>".to_string()),
        "the SMTP target got the message: {:?}",
        smtp_log.lock().unwrap()
    );
    let pop_log = pop_log.lock().unwrap();
    assert!(
        !pop_log
            .iter()
            .any(|l| l.to_ascii_uppercase().starts_with("DELE")),
        "deleted on the server: {pop_log:?}; stderr: {}",
        out.stderr()
    );
    assert_ne!(out.code(), 0, "{}", out.stderr());
}

/// Run `tool`, killing it when it outlives [`GUARD`] (then the test fails:
/// it hung).
fn run_guarded(tool: Tool) -> crate::harness::Outcome {
    use std::process::Stdio;
    let (mut cmd, stdin) = tool.command();
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tool");
    let mut si = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = si.write_all(&stdin);
    });
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > GUARD {
            // Not its output: a child it left behind may hold the pipes.
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {GUARD:?} (hung)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::harness::Outcome(child.wait_with_output().expect("output"))
}

/// Is process `pid` gone (or a zombie nobody needs to wait for)?
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z')),
    }
}

/// A greeting dripped one byte a second never ends: mail-send must give
/// up after about --timeout with 75 and say why.
#[test]
fn a_dripped_greeting_ends_with_75() {
    let t = TempDir::new();
    let srv = Scripted::start(1, |_, mut tcp| {
        let start = Instant::now();
        for b in b"220 ".iter().cycle() {
            if tcp.write_all(&[*b]).is_err() || start.elapsed() > GUARD {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let out = run_guarded(
        mail_send(t.path(), srv.port)
            .args(["--timeout", "3", "--no-queue", "b@example.test"])
            .stdin(message()),
    )
    .code_is(75)
    .stderr_one_line();
    let err = out.stderr();
    assert!(err.contains("greeting") && err.contains("time"), "{err}");
    srv.join();
}

/// A password command that never ends hung mail-send, holding an SMTP
/// connection open meanwhile. It gets the account's timeout, its process
/// group is killed, and it runs before any connection is made.
#[test]
fn a_hanging_password_command_is_cut_off_before_connecting() {
    let t = TempDir::new();
    let (srv, log) = smtp_server(1, HONEST);
    let pidfile = t.join("pid");
    let cmd = format!("sleep 1000 & echo $! > {}; wait", pidfile.display());
    run_guarded(
        mail_send(t.path(), srv.port)
            .args(["--timeout", "2", "--user", "u", "--password-command", &cmd])
            .args(["--no-queue", "b@example.test"])
            .stdin(message()),
    )
    .code_is(75)
    .stderr_one_line()
    .stderr_has("password_command");
    assert!(
        log.lock().unwrap().is_empty(),
        "connected while the password command ran: {:?}",
        log.lock().unwrap()
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(gone(&pid), "the password command's child {pid} still runs");
}

/// mail-fetch too: a hanging password command ends the run.
#[test]
fn mail_fetch_cuts_off_a_hanging_password_command() {
    let t = TempDir::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let out = run_guarded(
        Tool::new("mail-fetch", t.path())
            .args(["--pop3", &format!("127.0.0.1:{port}"), "--tls", "none"])
            .args(["--user", "u", "--password-command", "exec sleep 1000"])
            .args(["--timeout", "2", "--maildir"])
            .arg(t.join("Maildir")),
    );
    assert_ne!(out.code(), 0, "{}", out.stderr());
    let out = out.stderr_has("password_command");
    l.set_nonblocking(true).unwrap();
    assert!(l.accept().is_err(), "connected: {}", out.stderr());
}

/// A password command printing hundreds of megabytes: mail-send held all
/// of it (1 GB took 1.96 GB). What is read is capped.
#[test]
fn a_flooding_password_command_is_capped() {
    let t = TempDir::new();
    let (srv, _log) = smtp_server(1, HONEST);
    let rss = t.join("rss");
    let out = measured("mail-send", t.path(), &rss)
        .args(["--host", "127.0.0.1", "--port", &srv.port.to_string()])
        .args(["--tls", "none", "--timeout", "5", "--user", "u"])
        .args([
            "--password-command",
            "head -c 200000000 /dev/zero | tr '\\0' x",
        ])
        .args(["--no-queue", "b@example.test"])
        .stdin(message())
        .run()
        .code_is(75)
        .stderr_one_line()
        .stderr_has("password_command");
    let kib = peak_rss_kib(&rss);
    assert!(kib < 48 * 1024, "peak RSS {kib} KiB; {}", out.stderr());
}

/// A failing password command made mail-send exit 78 without queueing:
/// cron takes 78 for permanent and the mail was lost. It is temporary.
#[test]
fn a_failing_password_command_queues() {
    let t = TempDir::new();
    let (srv, _log) = smtp_server(2, HONEST);
    let send = |extra: &[&str]| {
        mail_send(t.path(), srv.port)
            .args(["--user", "u", "--password-command", "exit 3"])
            .args(extra)
            .arg("b@example.test")
            .stdin(message())
            .run()
    };
    send(&["--no-queue"])
        .code_is(75)
        .stderr_one_line()
        .stderr_has("password_command");
    send(&[]).success().stderr_has("queued as ");
    assert_eq!(queued(t.path()).len(), 1);
}

/// A 451 holding a colour escape and an OSC title sequence reached the
/// terminal raw. Everything a peer says is shown escaped: the error line
/// and the -v transcript.
#[test]
fn server_text_never_reaches_the_terminal_raw() {
    let t = TempDir::new();
    let (srv, _log) = smtp_server(
        4,
        Smtp {
            data: "451 4.3.0 \x1b[31mred\x1b]0;pwned\x07 \u{9b}1m\r\n",
            ..HONEST
        },
    );
    for v in [false, true] {
        let out = mail_send(t.path(), srv.port)
            .args(["--no-queue", "b@example.test"])
            .args(if v { &["-v"][..] } else { &[][..] })
            .stdin(message())
            .run()
            .code_is(75);
        let err = out.stderr();
        assert!(
            !err.chars().any(|c| c.is_control() && c != '\n'),
            "raw control characters: {err:?}"
        );
        assert!(err.contains("red") && err.contains("pwned"), "{err}");
    }
    // Queued, then flushed and listed: the reply shown on stdout too.
    mail_send(t.path(), srv.port)
        .arg("b@example.test")
        .stdin(message())
        .run()
        .success();
    let flush = Tool::new("mail-queue", t.path()).arg("flush").run();
    let list = Tool::new("mail-queue", t.path())
        .arg("list")
        .run()
        .success();
    for out in [flush.stdout(), flush.stderr(), list.stdout()] {
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "raw control characters: {out:?}"
        );
    }
    assert!(flush.stdout().contains("pwned"), "{}", flush.stdout());
}

/// A scripted POP3 server for an MDA test, and the mail-fetch run.
fn fetch_to_mda(t: &TempDir, mda: &str, extra: &[&str]) -> (crate::harness::Outcome, Log) {
    let log: Log = Arc::default();
    let pop = pop3_server(log.clone());
    let out = run_guarded(
        Tool::new("mail-fetch", t.path())
            .args(["--pop3", &format!("127.0.0.1:{}", pop.port)])
            .args(["--tls", "none", "--user", "u", "--password-env", "PW"])
            .args(["--timeout", "5", "--mda", mda])
            .args(extra)
            .env("PW", "the-pop-password"),
    );
    // Not joined: a run that failed before connecting leaves it waiting.
    drop(pop);
    (out, log)
}

/// `--password-env` leaked the variable to every MDA child. The child
/// gets no password variable.
#[test]
fn mda_children_never_see_the_password_variable() {
    let t = TempDir::new();
    let envfile = t.join("env");
    let mda = format!("env > {}; cat > /dev/null", envfile.display());
    let (out, _) = fetch_to_mda(&t, &mda, &[]);
    let out = out.success();
    let env = std::fs::read_to_string(&envfile).unwrap();
    assert!(
        env.contains("HOME="),
        "the MDA ran with an environment: {env}"
    );
    assert!(
        !env.contains("the-pop-password") && !env.contains("PW="),
        "the password variable reached the MDA: {}",
        out.stderr()
    );
}

/// Nor does it see the `password_env` of any account in the config.
#[test]
fn mda_children_never_see_any_accounts_password_variable() {
    let t = TempDir::new();
    let log: Log = Arc::default();
    let pop = pop3_server(log);
    let envfile = t.join("env");
    let cfg = t.join(".config/postline");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.toml"),
        format!(
            "[account.pop]\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             user = \"u\"\npassword_env = \"PW\"\nmda = \"env > {}; cat > /dev/null\"\n\n\
             [account.other]\nhost = \"smtp.example.test\"\nuser = \"o\"\npassword_env = \"OTHER_SECRET\"\n",
            pop.port,
            envfile.display()
        ),
    )
    .unwrap();
    let out = run_guarded(
        Tool::new("mail-fetch", t.path())
            .env("PW", "the-pop-password")
            .env("OTHER_SECRET", "another-accounts-password"),
    )
    .success();
    drop(pop);
    let env = std::fs::read_to_string(&envfile).unwrap();
    assert!(
        env.contains("HOME="),
        "the MDA ran with an environment: {env}"
    );
    for (var, value) in [
        ("PW=", "the-pop-password"),
        ("OTHER_SECRET=", "another-accounts-password"),
    ] {
        assert!(
            !env.contains(var) && !env.contains(value),
            "{var} reached the MDA: {}",
            out.stderr()
        );
    }
}

/// An MDA that never exits hung mail-fetch. It gets a deadline, its
/// process group is killed, and the message stays on the server.
#[test]
fn a_hanging_mda_is_killed_and_the_message_kept() {
    let t = TempDir::new();
    let pidfile = t.join("pid");
    let mda = format!(
        "cat > /dev/null; sleep 1000 & echo $! > {}; wait",
        pidfile.display()
    );
    let (out, log) = fetch_to_mda(&t, &mda, &["--mda-timeout", "2"]);
    let log = log.lock().unwrap();
    assert!(
        !log.iter()
            .any(|l| l.to_ascii_uppercase().starts_with("DELE")),
        "deleted on the server: {log:?}"
    );
    assert_ne!(out.code(), 0, "{}", out.stderr());
    let out = out.stderr_has("MDA");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(
        gone(&pid),
        "the MDA's child {pid} still runs: {}",
        out.stderr()
    );
}
