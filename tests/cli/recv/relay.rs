//! Never an open relay, AUTH only over TLS, STARTTLS injection, implicit
//! TLS, and `--explain`.

use super::*;

/// Recipient forms that must never be relayed: another domain, and the
/// routing tricks that smuggle one into a local address.
const TRICKS: &[&str] = &[
    "bob%other.test@example.org",
    "other.test!bob@example.org",
    "@relay.test:carol@other.test",
    "@relay.test,@other.test:carol@other.test",
];

/// mail-recv with STARTTLS (the harness certificate) and the
/// checkpassword fixture.
fn tls_tool(t: &TempDir, cert: &(PathBuf, PathBuf)) -> Tool {
    let cp = checkpassword(t.path());
    recv(t.path())
        .arg("--tls-cert")
        .arg(&cert.0)
        .arg("--tls-key")
        .arg(&cert.1)
        .arg("--checkpassword")
        .arg(cp)
}

/// STARTTLS on `c` (after EHLO), the handshake, EHLO again.
fn starttls(
    mut c: Client<TcpStream>,
    cert: &Path,
) -> (Client<openssl::ssl::SslStream<TcpStream>>, Reply) {
    c.expect("STARTTLS", 220);
    let (s, rest) = c.into_parts();
    assert!(rest.is_empty(), "plain text after 220: {rest:?}");
    let mut c = Client::new(tls_connect(s, cert));
    let ehlo = c.expect("EHLO client.test", 250);
    (c, ehlo)
}

#[test]
fn unauthenticated_clients_never_relay() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let mut p = Piped::start(
        recv(t.path()).args(["--deliver", &boxes.template()]),
        t.path(),
    );
    p.c.hello(false);
    p.c.expect("MAIL FROM:<alice@remote.test>", 250);
    let r = p.c.cmd("RCPT TO:<carol@other.test>");
    assert_eq!(r.code, 550, "{:?}", r.lines);
    assert!(r.has("5.7.1"), "{:?}", r.lines);
    for rcpt in ["carol@example.org.other.test", "carol@sub.example.org"] {
        let r = p.c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(!r.ok(), "{rcpt}: {:?}", r.lines);
    }
    for rcpt in TRICKS {
        let r = p.c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(
            (500..600).contains(&r.code),
            "{rcpt} must be refused: {:?}",
            r.lines
        );
    }
    // The domain is matched without regard to case; the session is fine.
    p.c.expect("RCPT TO:<bob@EXAMPLE.org>", 250);
    p.c.expect("DATA", 354);
    p.c.send(data_block(&message("local")));
    assert_eq!(p.c.reply().code, 250);
    p.quit();
    assert_eq!(boxes.read("bob").len(), 1);
}

/// AUTH is neither offered nor accepted in plain text; over TLS, a wrong
/// password is 535; an authenticated client without --queue still cannot
/// relay.
#[test]
fn auth_only_over_tls_and_no_relay_without_queue() {
    let t = TempDir::new();
    let cert = crate::harness::self_signed_cert(t.path());
    let boxes = Boxes::new(&t, &["bob"]);
    let l = Listener::start(t.path(), || {
        tls_tool(&t, &cert).args(["--deliver", &boxes.template()])
    });
    let mut c = l.connect();
    let ehlo = c.hello(false);
    assert!(ehlo.has("STARTTLS"), "{:?}", ehlo.lines);
    assert!(
        !ehlo.has("AUTH"),
        "AUTH offered in plain text: {:?}",
        ehlo.lines
    );
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)));
    assert!(
        (500..600).contains(&r.code),
        "AUTH in plain text: {:?}",
        r.lines
    );
    let (mut c, ehlo) = starttls(c, &cert.0);
    assert!(ehlo.has("AUTH"), "{:?}", ehlo.lines);
    assert!(!ehlo.has("STARTTLS"), "{:?}", ehlo.lines);
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(USER, "wrong")));
    assert_eq!(r.code, 535, "{:?}", r.lines);
    c.expect(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)), 235);
    c.expect("MAIL FROM:<alice@example.org>", 250);
    let r = c.cmd("RCPT TO:<carol@other.test>");
    assert_eq!(r.code, 550, "{:?}", r.lines);
    assert!(r.has("5.7.1"), "{:?}", r.lines);
    c.quit();
}

/// The whole submission path: STARTTLS, AUTH PLAIN checked by a
/// checkpassword program, --queue: the outside recipient lands in the
/// mail-queue spool, the local one in its Maildir (with ESMTPSA in its
/// Received), and the routing tricks are refused even now.
#[test]
fn authenticated_relay_with_queue_lands_in_the_spool() {
    let t = TempDir::new();
    let cert = crate::harness::self_signed_cert(t.path());
    let boxes = Boxes::new(&t, &["bob"]);
    let l = Listener::start(t.path(), || {
        tls_tool(&t, &cert).args(["--queue", "--deliver", &boxes.template()])
    });
    let mut c = l.connect();
    c.hello(false);
    let (mut c, _) = starttls(c, &cert.0);
    c.expect(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)), 235);
    c.expect("MAIL FROM:<alice@example.org>", 250);
    c.expect("RCPT TO:<carol@other.test>", 250);
    for rcpt in TRICKS {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(
            (500..600).contains(&r.code),
            "{rcpt} must be refused: {:?}",
            r.lines
        );
    }
    c.expect("RCPT TO:<bob@example.org>", 250);
    c.expect("DATA", 354);
    c.send(data_block(&message("submitted")));
    let r = c.reply();
    assert_eq!(r.code, 250, "{:?} {}", r.lines, l.stderr());
    c.quit();

    let out = Tool::new("mail-queue", t.path())
        .args(["list", "--json"])
        .run()
        .success();
    let entries = out.stdout_lines();
    assert_eq!(entries.len(), 1, "one queue entry: {entries:?}");
    assert!(entries[0].contains("carol@other.test"), "{}", entries[0]);
    for absent in ["bob@example.org", "dave", "relay.test", "%", "!"] {
        assert!(!entries[0].contains(absent), "{absent} in {}", entries[0]);
    }
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1);
    let h = header_block(&got[0]);
    assert!(h.contains("ESMTPSA"), "{h}");
    assert!(contains(&got[0], "body of submitted"));
}

/// CVE-2011-0411: a command pipelined behind STARTTLS in plain text is
/// discarded, never run inside the TLS session.
#[test]
fn starttls_injection_is_not_executed() {
    let t = TempDir::new();
    let cert = crate::harness::self_signed_cert(t.path());
    let boxes = Boxes::new(&t, &["bob"]);
    let l = Listener::start(t.path(), || {
        tls_tool(&t, &cert).args(["--deliver", &boxes.template()])
    });
    let mut c = l.connect();
    c.hello(false);
    c.send("STARTTLS\r\nMAIL FROM:<x@y.test>\r\nRCPT TO:<bob@example.org>\r\n");
    let r = c.reply();
    assert_eq!(r.code, 220, "{:?}", r.lines);
    let (s, rest) = c.into_parts();
    assert!(
        rest.is_empty(),
        "plain-text replies to the injected commands: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let mut c = Client::new(tls_connect(s, &cert.0));
    c.expect("EHLO client.test", 250);
    // Had the injected MAIL run, RCPT would be accepted and DATA go on.
    let r = c.cmd("RCPT TO:<bob@example.org>");
    assert_eq!(r.code, 503, "the injected MAIL ran: {:?}", r.lines);
    let r = c.cmd("DATA");
    assert_eq!(r.code, 503, "{:?}", r.lines);
    // The TLS session itself works.
    let r = c.mail("alice@remote.test", &["bob@example.org"], &message("tls"));
    assert_eq!(r.code, 250, "{:?}", r.lines);
    c.quit();
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1);
    assert!(!contains(&got[0], "x@y.test"));
    assert!(header_block(&got[0]).contains("ESMTPS"));
}

/// --listen-tls: TLS from the first byte (port 465 style).
#[test]
fn implicit_tls_listener() {
    let t = TempDir::new();
    let cert = crate::harness::self_signed_cert(t.path());
    let boxes = Boxes::new(&t, &["bob"]);
    let l = Listener::start_with(t.path(), "--listen-tls", || {
        tls_tool(&t, &cert).args(["--deliver", &boxes.template()])
    });
    let s = TcpStream::connect(("127.0.0.1", l.port)).expect("connect");
    s.set_read_timeout(Some(GUARD)).unwrap();
    let mut c = Client::new(tls_connect(s, &cert.0));
    let ehlo = c.hello(false);
    assert!(!ehlo.has("STARTTLS"), "{:?}", ehlo.lines);
    let r = c.mail("alice@remote.test", &["bob@example.org"], &message("465"));
    assert_eq!(r.code, 250, "{:?}", r.lines);
    c.quit();
    let got = boxes.read("bob");
    assert_eq!(got.len(), 1);
    assert!(header_block(&got[0]).contains("ESMTPS"));
}

/// `--explain ADDR`: the decision and why, and an exit code that tells
/// an accepted recipient from a refused one.
#[test]
fn explain_prints_the_decision() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let cert = crate::harness::self_signed_cert(t.path());
    let explain = |queue: bool, addr: &str| {
        let mut tool = recv(t.path()).args(["--deliver", &boxes.template()]);
        if queue {
            // AUTH (over TLS only) is what makes a client able to relay.
            tool = tls_tool(&t, &cert).args(["--deliver", &boxes.template()]);
            tool = tool.arg("--queue");
        }
        tool.args(["--explain", addr]).run()
    };
    let local = explain(false, "bob@example.org").success();
    let text = local.stdout();
    assert!(text.contains("bob@example.org"), "{text}");
    assert!(text.contains("250"), "{text}");
    assert!(!text.contains("5.7.1"), "{text}");

    let refused = explain(false, "carol@other.test");
    assert_ne!(refused.code(), 0, "{}", refused.stdout());
    let text = refused.stdout() + &refused.stderr();
    assert!(text.contains("5.7.1"), "{text}");
    assert!(!text.contains("250"), "{text}");

    // No destination for the local part: refused at RCPT (no backscatter).
    let unknown = explain(false, "nobody@example.org");
    assert_ne!(unknown.code(), 0, "{}", unknown.stdout());
    assert!(unknown.stdout().contains("5.1.1"), "{}", unknown.stdout());

    for trick in TRICKS {
        let o = explain(true, trick);
        assert_ne!(o.code(), 0, "{trick}: {}", o.stdout());
        assert!(!o.stdout().contains("250"), "{trick}: {}", o.stdout());
    }

    // With --queue an outside recipient is relayed (queued) for
    // authenticated clients only: the output says both.
    let relayed = explain(true, "carol@other.test");
    let text = relayed.stdout() + &relayed.stderr();
    assert!(text.contains("5.7.1"), "unauthenticated: {text}");
    assert!(text.contains("queue"), "authenticated: {text}");
}
