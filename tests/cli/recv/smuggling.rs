//! What a client can do to the protocol: every SMTP smuggling shape, BDAT
//! chunks past the size limit, SIZE=, mail loops, long command lines, too
//! many recipients. Sessions on stdin/stdout, the bytes written raw.

use super::*;

/// The end-of-data look-alikes of the SMTP smuggling research (names as in
/// hannob/smtpsmug; `nullafter` puts the NUL after the dot), each sent after
/// a CRLF-terminated line of the first message. The eleventh, `pipelining`,
/// has a test of its own below.
const SHAPES: &[(&str, &[u8])] = &[
    ("lflf", b"\n.\n"),
    ("crcr", b"\r.\r"),
    ("crlf", b"\r.\n"),
    ("lfcr", b"\n.\r"),
    ("lfcrlf", b"\n.\r\n"),
    ("crlflf", b"\r\n.\n"),
    ("crcrlf", b"\r.\r\n"),
    ("crlfcr", b"\r\n.\r"),
    ("nullbefore", b"\r\n\x00.\r\n"),
    ("nullafter", b"\r\n.\x00\r\n"),
];

/// The bytes after DATA's 354 for `shape`: the first message, the shape,
/// a smuggled transaction for bob, and a proper end of data.
fn smuggle(shape: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(
        b"From: alice@remote.test\r\nTo: bob@example.org\r\nSubject: first\r\n\r\nfirst part\r\n",
    );
    b.extend_from_slice(shape);
    b.extend_from_slice(
        b"MAIL FROM:<evil@evil.test>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n\
          From: ceo@example.org\r\nTo: bob@example.org\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n.\r\n",
    );
    b
}

/// What one shape did: the reply to the bytes, the replies that followed
/// (after QUIT), the messages stored.
struct Outcome {
    first: Reply,
    rest: Vec<Reply>,
    stored: Vec<Vec<u8>>,
    stderr: String,
}

fn run_shape(t: &TempDir, shape: &[u8], extra: &[&str]) -> Outcome {
    let boxes = Boxes::new(t, &["bob"]);
    let mut p = Piped::start(
        recv(t.path())
            .args(extra)
            .args(["--deliver", &boxes.template()]),
        t.path(),
    );
    p.c.hello(false);
    p.c.expect("MAIL FROM:<alice@remote.test>", 250);
    p.c.expect("RCPT TO:<bob@example.org>", 250);
    p.c.expect("DATA", 354);
    // One write: the look-alike and what follows it arrive together.
    p.c.send(smuggle(shape));
    let first = p.c.reply();
    p.c.send("QUIT\r\n");
    let (_, rest) = p.finish();
    Outcome {
        first,
        rest,
        stored: boxes.read("bob"),
        stderr: p.stderr(),
    }
}

/// What is wrong with an outcome (empty when it is right). At most one
/// message, never the smuggled one on its own, never a second DATA
/// executed, and the reply agrees with what was stored. `bare`: the shape
/// holds a bare CR or LF (refused with 5xx under `reject`, else normalised
/// into text of the one message).
fn check(name: &str, o: &Outcome, reject: bool, bare: bool) -> Vec<String> {
    let mut bad = Vec::new();
    let all: Vec<&Reply> = std::iter::once(&o.first).chain(&o.rest).collect();
    if o.stored.len() > 1 {
        bad.push(format!("{name}: {} messages stored", o.stored.len()));
    }
    if all.iter().any(|r| r.code == 354) {
        bad.push(format!("{name}: the smuggled DATA was executed"));
    }
    let oks = all.iter().filter(|r| r.code == 250).count();
    if oks > 1 {
        bad.push(format!("{name}: {oks} replies 250 after the first DATA"));
    }
    for m in &o.stored {
        if !contains(m, "first part") {
            bad.push(format!(
                "{name}: a stored message is not the first one: {:?}",
                String::from_utf8_lossy(m)
            ));
        }
    }
    match (o.first.ok(), o.stored.len()) {
        (true, 1) | (false, 0) => {}
        (ok, n) => bad.push(format!(
            "{name}: reply {:?} (ok {ok}) but {n} stored",
            o.first.lines
        )),
    }
    if o.first.code == 0 {
        bad.push(format!("{name}: no reply to the message: {}", o.stderr));
    }
    if reject && bare && (o.first.ok() || !(500..600).contains(&o.first.code)) {
        bad.push(format!(
            "{name}: --bare-lf reject answered {:?}",
            o.first.lines
        ));
    }
    if !reject && bare && o.first.ok() {
        // Normalised: the smuggled lines are text of the one message.
        let m = &o.stored[0];
        if !contains(m, "smuggled body") || !contains(m, "MAIL FROM:<evil@evil.test>") {
            bad.push(format!(
                "{name}: normalised, yet the text after the look-alike is missing: {:?}",
                String::from_utf8_lossy(m)
            ));
        }
    }
    bad
}

#[test]
fn every_smuggling_shape_stores_at_most_one_message() {
    let mut bad = Vec::new();
    for (name, shape) in SHAPES {
        let t = TempDir::new();
        let o = run_shape(&t, shape, &[]);
        bad.extend(check(name, &o, false, !name.starts_with("null")));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_smuggling_shape_with_bare_lf_reject_stores_at_most_one_and_bare_ends_get_5xx() {
    let mut bad = Vec::new();
    for (name, shape) in SHAPES {
        let t = TempDir::new();
        let o = run_shape(&t, shape, &["--bare-lf", "reject"]);
        bad.extend(check(name, &o, true, !name.starts_with("null")));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// smtpsmug's "pipelining" shape: a proper end of data with a whole second
/// transaction behind it in the same write, without waiting for the reply
/// to the dot (what Postfix 3.9's smtpd_forbid_unauth_pipelining refuses as
/// bad synchronisation). The issue counts it among the shapes that must
/// store at most one message, with or without --bare-lf reject.
#[test]
fn pipelined_transaction_behind_the_final_dot_is_not_stored() {
    let mut bad = Vec::new();
    for extra in [&[][..], &["--bare-lf", "reject"][..]] {
        let t = TempDir::new();
        let o = run_shape(&t, b"\r\n.\r\n", extra);
        bad.extend(check("pipelining", &o, false, false));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The other pipelining shape: DATA and the message sent without waiting
/// for 354, with the one recipient refused. DATA is refused, and the text
/// behind it (a whole smuggled transaction) is never run as commands.
#[test]
fn data_without_waiting_for_354_never_runs_the_text_as_commands() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let mut p = Piped::start(
        recv(t.path()).args(["--deliver", &boxes.template()]),
        t.path(),
    );
    p.c.hello(false);
    p.c.expect("MAIL FROM:<alice@remote.test>", 250);
    let r = p.c.cmd("RCPT TO:<nobody@example.org>");
    assert_eq!(r.code, 550, "{:?}", r.lines);
    let mut b = b"DATA\r\n".to_vec();
    b.extend(smuggle(b"\r\n.\r\n"));
    b.extend_from_slice(b"QUIT\r\n");
    p.c.send(b);
    let (_, replies) = p.finish();
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert!(
        !codes.iter().any(|&c| c == 250 || c == 354),
        "the text behind the refused DATA ran as commands: {replies:?}"
    );
    assert!(
        codes.first().is_some_and(|c| (500..600).contains(c)),
        "DATA without recipients: {replies:?}"
    );
    assert_eq!(boxes.count("bob"), 0);
}

/// A bare LF in the body of an otherwise proper message: stored with CRLF
/// (normalize, the default), refused with 5xx and nothing stored (reject).
#[test]
fn a_bare_lf_is_normalised_or_refused() {
    for reject in [false, true] {
        let t = TempDir::new();
        let boxes = Boxes::new(&t, &["bob"]);
        let mut tool = recv(t.path()).args(["--deliver", &boxes.template()]);
        if reject {
            tool = tool.args(["--bare-lf", "reject"]);
        }
        let mut p = Piped::start(tool, t.path());
        p.c.hello(false);
        p.c.expect("MAIL FROM:<alice@remote.test>", 250);
        p.c.expect("RCPT TO:<bob@example.org>", 250);
        p.c.expect("DATA", 354);
        p.c.send(b"Subject: bare\r\n\r\none\ntwo\r\n.\r\n");
        let r = p.c.reply();
        p.quit();
        let stored = boxes.read("bob");
        if reject {
            assert!((500..600).contains(&r.code), "{:?}", r.lines);
            assert!(stored.is_empty());
        } else {
            assert_eq!(r.code, 250, "{:?} {}", r.lines, p.stderr());
            assert_eq!(stored.len(), 1);
            assert!(contains(&stored[0], "one\ntwo\n"), "{:?}", stored[0]);
        }
    }
}

/// BDAT: a chunk that takes the message over --max-size is read to its
/// last octet and refused (552), the session goes on, and the next
/// transaction is stored. The refused chunk's bytes look like commands: had
/// the server read fewer octets, they would have been answered as such.
#[test]
fn bdat_chunk_over_the_size_limit_is_consumed_refused_and_the_session_goes_on() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let mut p = Piped::start(
        recv(t.path()).args(["--max-size", "1000", "--deliver", &boxes.template()]),
        t.path(),
    );
    let ehlo = p.c.hello(false);
    assert!(ehlo.has("CHUNKING"), "{:?}", ehlo.lines);
    assert!(ehlo.has("SIZE 1000"), "{:?}", ehlo.lines);
    p.c.expect("MAIL FROM:<alice@remote.test>", 250);
    p.c.expect("RCPT TO:<bob@example.org>", 250);
    let mut chunk = b"Subject: big\r\n\r\n".to_vec();
    while chunk.len() < 600 {
        chunk.extend_from_slice(b"XYZZY\r\n");
    }
    chunk.truncate(600);
    p.c.send(format!("BDAT {}\r\n", chunk.len()));
    p.c.send(&chunk);
    let r = p.c.reply();
    assert_eq!(r.code, 250, "first chunk: {:?}", r.lines);
    p.c.send(format!("BDAT {} LAST\r\n", chunk.len()));
    p.c.send(&chunk);
    let r = p.c.reply();
    assert_eq!(r.code, 552, "over the limit: {:?}", r.lines);
    // Exactly 600 octets were read: the next reply is NOOP's, not XYZZY's.
    let r = p.c.cmd("NOOP");
    assert_eq!(r.code, 250, "after the refused chunk: {:?}", r.lines);
    assert!(
        boxes.read("bob").is_empty(),
        "nothing of the refused message"
    );

    p.c.expect("MAIL FROM:<alice@remote.test>", 250);
    p.c.expect("RCPT TO:<bob@example.org>", 250);
    let small = b"Subject: small\r\n\r\nin one chunk\r\n";
    p.c.send(format!("BDAT {} LAST\r\n", small.len()));
    p.c.send(small);
    let r = p.c.reply();
    assert_eq!(r.code, 250, "{:?} {}", r.lines, p.stderr());
    p.quit();
    let stored = boxes.read("bob");
    assert_eq!(stored.len(), 1);
    assert!(stored[0].ends_with(b"Subject: small\n\nin one chunk\n"));
}

/// SIZE= over the limit: 552 at MAIL. DATA over the limit: 552 after the
/// dot, nothing stored, the session goes on.
#[test]
fn size_over_the_limit_is_552_at_mail_and_after_data() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let mut p = Piped::start(
        recv(t.path()).args(["--max-size", "1000", "--deliver", &boxes.template()]),
        t.path(),
    );
    p.c.hello(false);
    let r = p.c.cmd("MAIL FROM:<alice@remote.test> SIZE=5000");
    assert_eq!(r.code, 552, "{:?}", r.lines);
    assert!(r.has("5.3.4"), "{:?}", r.lines);
    p.c.expect("MAIL FROM:<alice@remote.test> SIZE=500", 250);
    p.c.expect("RCPT TO:<bob@example.org>", 250);
    p.c.expect("DATA", 354);
    let big = format!("Subject: big\n\n{}", "0123456789abcdef\n".repeat(200));
    p.c.send(data_block(&big));
    let r = p.c.reply();
    assert_eq!(r.code, 552, "{:?}", r.lines);
    p.c.expect("NOOP", 250);
    p.quit();
    assert!(boxes.read("bob").is_empty());
}

/// More than 100 Received headers: a mail loop, 554 5.4.6, nothing stored.
/// 100 exactly is still accepted.
#[test]
fn more_than_100_received_headers_is_a_loop() {
    for (n, stored) in [(101, 0), (100, 1)] {
        let t = TempDir::new();
        let boxes = Boxes::new(&t, &["bob"]);
        let mut p = Piped::start(
            recv(t.path()).args(["--deliver", &boxes.template()]),
            t.path(),
        );
        p.c.hello(false);
        let mut msg = String::new();
        for i in 0..n {
            msg.push_str(&format!(
                "Received: from h{i}.example.net by h{}.example.net; Sun, 06 Dec 2026 11:00:00 +0000\n",
                i + 1
            ));
        }
        msg.push_str("Subject: loop\n\nround and round\n");
        let r = p.c.mail("alice@remote.test", &["bob@example.org"], &msg);
        if stored == 0 {
            assert_eq!(r.code, 554, "{n} Received: {:?}", r.lines);
            assert!(r.has("5.4.6"), "{:?}", r.lines);
        } else {
            assert_eq!(r.code, 250, "{n} Received: {:?}", r.lines);
        }
        p.quit();
        assert_eq!(boxes.read("bob").len(), stored, "{n} Received headers");
    }
}

/// A command line over 512 octets: 500, and the session goes on (the rest
/// of that line is not taken for a command).
#[test]
fn a_long_command_line_is_500_and_the_session_goes_on() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["bob"]);
    let mut p = Piped::start(
        recv(t.path()).args(["--deliver", &boxes.template()]),
        t.path(),
    );
    p.c.hello(false);
    // The tail past 512 octets looks like a command of its own.
    let long = format!("NOOP {}QUIT", "x".repeat(600));
    let r = p.c.cmd(&long);
    assert_eq!(r.code, 500, "{:?}", r.lines);
    let r = p.c.cmd("NOOP");
    assert_eq!(r.code, 250, "the session goes on: {:?}", r.lines);
    let r =
        p.c.mail("alice@remote.test", &["bob@example.org"], &message("after"));
    assert_eq!(r.code, 250, "{:?}", r.lines);
    p.quit();
    assert_eq!(boxes.read("bob").len(), 1);
}

/// More recipients than --max-recipients: 452 for the extra ones, and the
/// message goes to those accepted.
#[test]
fn recipients_over_the_cap_get_452() {
    let t = TempDir::new();
    let boxes = Boxes::new(&t, &["a", "b", "c", "d"]);
    let mut p = Piped::start(
        recv(t.path()).args(["--max-recipients", "3", "--deliver", &boxes.template()]),
        t.path(),
    );
    p.c.hello(false);
    p.c.expect("MAIL FROM:<alice@remote.test>", 250);
    for u in ["a", "b", "c"] {
        p.c.expect(&format!("RCPT TO:<{u}@example.org>"), 250);
    }
    let r = p.c.cmd("RCPT TO:<d@example.org>");
    assert_eq!(r.code, 452, "{:?}", r.lines);
    p.c.expect("DATA", 354);
    p.c.send(data_block(&message("capped")));
    let r = p.c.reply();
    assert_eq!(r.code, 250, "{:?}", r.lines);
    p.quit();
    for u in ["a", "b", "c"] {
        assert_eq!(boxes.count(u), 1, "{u}");
    }
    assert_eq!(boxes.count("d"), 0);
}
