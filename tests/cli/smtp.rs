//! The SMTP/LMTP client core (`postline::proto::smtp`) against real servers: the
//! harness's Postfix (relaying example.test over LMTP to Dovecot) and
//! Dovecot's LMTP directly. What arrives must be the message sent, byte for
//! byte, apart from the header fields the servers add at the top.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use postline::exit::Kind;
use postline::proto::smtp::{Client, Protocol, Stage, Status};

use crate::harness::{Dovecot, TempDir, assert_bytes_eq, dir_names, is_root, skip_unless};
use crate::mta;

const TIMEOUT: Duration = Duration::from_secs(10);

fn connect(port: u16, protocol: Protocol) -> Client<postline::proto::tls::Stream> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut c = Client::connect_tcp(addr, TIMEOUT, protocol).expect("connect");
    c.greeting().expect("greeting");
    c.hello("client.example.test").expect("hello");
    c
}

/// A message (LF line ends) with a body of dot and smuggling shapes.
fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@client.example.test>\n\
         To: <alice@example.test>\n\
         Subject: {subject}\n\
         Date: Wed, 25 Nov 2026 12:00:00 +0000\n\
         Message-ID: <{}@client.example.test>\n\
         \n\
         first\n.\n..x\n.x\n\n.\n\nend. not\n...\nlast\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

/// The message in `maildir/new` whose Subject is `subject` (waiting up to 10 s).
fn wait_delivered(maildir: &Path, subject: &str, log: &dyn Fn() -> String) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let needle = format!("\nSubject: {subject}\n");
    loop {
        for name in dir_names(&maildir.join("new")) {
            let data = std::fs::read(maildir.join("new").join(&name)).expect("read message");
            if String::from_utf8_lossy(&data).contains(&needle) {
                return data;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{subject:?} not delivered\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `got` is `sent` with only trace fields added at the top.
fn check_identical(got: &[u8], sent: &[u8]) {
    assert!(got.len() >= sent.len(), "{}", String::from_utf8_lossy(got));
    let (added, rest) = got.split_at(got.len() - sent.len());
    assert_bytes_eq(rest, sent, "delivered message after the added fields");
    let added = String::from_utf8_lossy(added);
    for line in added.lines() {
        assert!(
            line.starts_with(' ')
                || line.starts_with('\t')
                || ["Return-Path:", "Delivered-To:", "Received:"]
                    .iter()
                    .any(|f| line.starts_with(f)),
            "unexpected added line {line:?} in\n{added}"
        );
    }
}

#[test]
fn sends_through_postfix_with_per_recipient_results() {
    let t = TempDir::new();
    let Some(pair) = mta::Pair::start(t.path()) else {
        return;
    };
    let (dc, pf, maildir) = (&pair.dovecot, &pair.postfix, &pair.maildir);

    let mut c = connect(pf.smtp_port, Protocol::Smtp);
    assert!(c.capabilities().pipelining, "{:?}", c.capabilities());
    assert!(c.capabilities().starttls, "{:?}", c.capabilities());
    let msg = message("via postfix");
    let o = c
        .send(
            "sender@client.example.test",
            &["alice@example.test", "bob@unknown.invalid"],
            &msg,
        )
        .expect("send");
    c.quit().expect("quit");
    assert!(
        matches!(o.recipients[0].status, Status::Accepted(_)),
        "{o:?}"
    );
    match &o.recipients[1].status {
        // Postfix refuses it at RCPT: its error transport says why.
        Status::Permanent(Stage::Rcpt, r) => {
            assert_eq!(r.code, 550, "{r:?}");
            assert!(r.text().contains("no outside network"), "{r:?}");
        }
        s => panic!("unknown recipient: {s:?}"),
    }
    assert_eq!(o.recipients[1].kind(), Some(Kind::NoUser));
    assert_eq!(o.worst(), Some(Kind::NoUser));

    pf.wait_queue_empty(TIMEOUT);
    let log = || std::fs::read_to_string(&pf.log).unwrap_or_default() + &dc.logs();
    let got = wait_delivered(maildir, "via postfix", &log);
    check_identical(&got, &msg);
    assert_eq!(dc.log_errors(), Vec::<String>::new());
}

#[test]
fn sends_over_lmtp_one_reply_per_recipient() {
    if skip_unless(is_root(), "Dovecot needs root") {
        return;
    }
    let t = TempDir::new();
    let mut dc = Dovecot::start(&t.join("dovecot"));
    dc.add_user("alice", &t.join("mail/alice"));
    dc.add_user("carol", &t.join("mail/carol"));

    let mut c = connect(dc.lmtp_port, Protocol::Lmtp);
    let msg = message("over lmtp");
    let o = c
        .send(
            "sender@client.example.test",
            &[
                "alice@example.test",
                "nobody@example.test",
                "carol@example.test",
            ],
            &msg,
        )
        .expect("send");
    assert!(
        matches!(o.recipients[0].status, Status::Accepted(_)),
        "{o:?}"
    );
    assert!(
        matches!(o.recipients[1].status, Status::Permanent(Stage::Rcpt, _)),
        "{o:?}"
    );
    assert_eq!(o.recipients[1].kind(), Some(Kind::NoUser), "{o:?}");
    assert!(
        matches!(o.recipients[2].status, Status::Accepted(_)),
        "{o:?}"
    );

    // The smuggling shapes in CRLF and bare-CR form: they arrive as lines.
    let tricky = b"Subject: shapes\r\n\r\na\r\n.\rb\n.\r\nc\r\n".to_vec();
    let o = c
        .send("", &["alice@example.test"], &tricky)
        .expect("send shapes");
    assert!(o.all_accepted(), "{o:?}");
    c.quit().expect("quit");

    let log = || dc.logs();
    for user in ["alice", "carol"] {
        let got = wait_delivered(&t.join("mail").join(user), "over lmtp", &log);
        check_identical(&got, &msg);
    }
    let got = wait_delivered(&t.join("mail/alice"), "shapes", &log);
    check_identical(&got, b"Subject: shapes\n\na\n.\nb\n.\nc\n");
    assert_eq!(dc.log_errors(), Vec::<String>::new());
}
