//! Hostile-peer cases for SMTP and mail-send (see the module above): a
//! server that answers the end of DATA with a 3xx or before the message
//! was sent, that drips its greeting, that sends terminal escapes; and the
//! children mail-send and mail-fetch run (password commands, the MDA),
//! which must neither hang them, nor flood them, nor see their secrets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

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
                "EHLO" | "LHLO" => w.send("250-mx.test\r\n250 8BITMIME\r\n"),
                "DATA" => {
                    w.send(s.data);
                    // The message, up to its final dot.
                    while let Some(b) = w.line() {
                        if b == "." {
                            break;
                        }
                    }
                    l.lock().unwrap().push("<message>".into());
                    w.send(s.fin);
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
        "--timeout",
        "5",
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
