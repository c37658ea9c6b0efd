//! mail-trace on headers real servers wrote: a message sent over SMTP (plain
//! and with STARTTLS) to the harness's Postfix, relayed over LMTP to its
//! Dovecot, traced from the file Dovecot delivered into the Maildir.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Dovecot, TempDir, Tool, dir_names};
use crate::mta::{self, Postfix};

/// Send one message with Python's smtplib to 127.0.0.1:`port`, with
/// STARTTLS (certificate not verified: the sender side is not under test)
/// when `tls`.
fn send(port: u16, subject: &str, tls: bool) {
    let script = r#"
import smtplib, ssl, sys, email.utils
port, subject, tls = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
msg = ("From: Sender <sender@client.example.test>\r\n"
       "To: <alice@example.test>\r\n"
       "Subject: " + subject + "\r\n"
       "Date: " + email.utils.formatdate(usegmt=True) + "\r\n"
       "Message-ID: " + email.utils.make_msgid(domain="client.example.test") + "\r\n"
       "\r\nhello\r\n")
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.test", timeout=30)
if tls:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s.starttls(context=ctx)
    s.ehlo("client.example.test")
s.sendmail("sender@client.example.test", ["alice@example.test"], msg)
s.quit()
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(subject)
        .arg(if tls { "1" } else { "0" })
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "smtplib send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The delivered message in `maildir/new` whose Subject is `subject`.
fn wait_delivered(maildir: &std::path::Path, subject: &str, pf: &Postfix, dc: &Dovecot) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let needle = format!("Subject: {subject}\n");
    loop {
        for name in dir_names(&maildir.join("new")) {
            let data = std::fs::read(maildir.join("new").join(&name)).expect("read message");
            let text = String::from_utf8_lossy(&data);
            if text.contains(&needle) || text.contains(&format!("Subject: {subject}\r\n")) {
                return data;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{subject:?} not delivered to {}\npostfix log:\n{}\n{}",
            maildir.display(),
            std::fs::read_to_string(&pf.log).unwrap_or_default(),
            dc.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn trace(home: &TempDir, msg: &std::path::Path) -> Value {
    let out = Tool::new("mail-trace", home.path())
        .arg("--json")
        .arg(msg)
        .run()
        .success();
    let mut lines = out.stdout_lines();
    assert_eq!(lines.len(), 1, "{}", out.stdout());
    serde_json::from_str(&lines.remove(0)).expect("JSON")
}

/// Check the two hops of a message that went SMTP -> Postfix -> LMTP -> Dovecot.
fn check(v: &Value, tls: bool) {
    let ctx = serde_json::to_string_pretty(v).unwrap();
    let hops = v["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 2, "{ctx}");
    let (smtp, lmtp) = (&hops[0], &hops[1]);

    // Postfix's smtpd, from the smtplib client.
    assert_eq!(smtp["ip"], "127.0.0.1", "{ctx}");
    assert_eq!(smtp["helo"], "client.example.test", "{ctx}");
    assert_eq!(smtp["by"], "mx.example.test", "{ctx}");
    assert_eq!(smtp["for"], "alice@example.test", "{ctx}");
    assert!(smtp["id"].is_string(), "{ctx}");
    if tls {
        assert_eq!(smtp["with"], "ESMTPS", "{ctx}");
        assert_eq!(smtp["protocol"], "ESMTPS", "{ctx}");
        let ver = smtp["tls_version"].as_str().expect("tls_version");
        assert!(ver.starts_with("TLSv1."), "{ctx}");
        assert!(smtp["tls_cipher"].is_string(), "{ctx}");
    } else {
        assert_eq!(smtp["with"], "ESMTP", "{ctx}");
        assert_eq!(smtp["protocol"], "ESMTP", "{ctx}");
        assert!(smtp["tls_version"].is_null(), "{ctx}");
        assert!(smtp["tls_cipher"].is_null(), "{ctx}");
    }

    // Dovecot's LMTP, from Postfix's lmtp client.
    assert_eq!(lmtp["protocol"], "LMTP", "{ctx}");
    assert_eq!(lmtp["ip"], "127.0.0.1", "{ctx}");
    assert_eq!(lmtp["from"], "mx.example.test", "{ctx}");
    assert_eq!(lmtp["envelope_from"], "sender@client.example.test", "{ctx}");
    assert_eq!(lmtp["for"], "alice@example.test", "{ctx}");

    for h in hops {
        assert!(h["date"].is_string(), "date not parsed: {ctx}");
        assert_eq!(h["tz_assumed"], false, "{ctx}");
        let d = h["delay_s"].as_f64().expect("delay_s");
        assert!(d >= 0.0, "negative delay: {ctx}");
    }
    assert!(v["date"].is_string(), "{ctx}");
    assert!(
        v["total_transit_s"].as_f64().is_some_and(|t| t >= 0.0),
        "{ctx}"
    );
    let kinds: Vec<&str> = v["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    for bad in [
        "chain_gap",
        "clock_skew",
        "date_after_first_hop",
        "no_date",
        "tz_assumed",
        "helo_ip_mismatch",
        "may_be_forged",
        "list_boundary",
        // Dovecot stamps "by localhost with LMTP": final delivery, not a filter.
        "content_filter",
    ] {
        assert!(!kinds.contains(&bad), "{bad}: {ctx}");
    }
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{ctx}");
}

#[test]
fn traces_what_postfix_and_dovecot_lmtp_wrote() {
    let t = TempDir::new();
    let Some(pair) = mta::Pair::start(t.path()) else {
        return;
    };
    let (dc, pf, maildir) = (&pair.dovecot, &pair.postfix, &pair.maildir);

    for (subject, tls) in [("plain smtp", false), ("with starttls", true)] {
        send(pf.smtp_port, subject, tls);
        pf.wait_queue_empty(Duration::from_secs(10));
        let data = wait_delivered(maildir, subject, pf, dc);
        let msg = t.join(format!("{}.eml", subject.replace(' ', "-")));
        std::fs::write(&msg, &data).expect("copy message");
        let v = trace(&t, &msg);
        check(&v, tls);
    }
    assert_eq!(dc.log_errors(), Vec::<String>::new());
}
