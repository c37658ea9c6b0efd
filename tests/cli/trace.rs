//! mail-trace through its CLI: the table, `--json` with its exact keys,
//! delays from a fixture with known dates, anomalies, `--strict`, exit 65,
//! mbox and Maildir input, no colour when piped.

use std::fs;

use serde_json::Value;

use crate::harness::{TempDir, Tool, fixture};

const HOP_KEYS: &[&str] = &[
    "from",
    "helo",
    "rdns",
    "ip",
    "port",
    "by",
    "by_ip",
    "with",
    "protocol",
    "tls_version",
    "tls_cipher",
    "auth",
    "id",
    "for",
    "via",
    "envelope_from",
    "date",
    "tz_assumed",
    "delay_s",
    "raw",
];

const MESSAGE_KEYS: &[&str] = &[
    "version",
    "source",
    "hops",
    "x_received",
    "date",
    "total_transit_s",
    "anomalies",
    "auth",
    "warnings",
];

fn fx(name: &str) -> Vec<u8> {
    fixture("mail-trace", name)
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn trace_json(home: &TempDir, input: Vec<u8>) -> Value {
    let out = Tool::new("mail-trace", home.path())
        .arg("--json")
        .stdin(input)
        .run()
        .success();
    let mut v = json_lines(&out.stdout());
    assert_eq!(v.len(), 1);
    v.remove(0)
}

fn kinds(v: &Value) -> Vec<(String, Option<u64>)> {
    v["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap().to_string(), a["hop"].as_u64()))
        .collect()
}

#[test]
fn table_has_a_row_per_hop_and_a_timeline() {
    let home = TempDir::new();
    let out = Tool::new("mail-trace", home.path())
        .stdin(fx("gmail-to-postfix.eml"))
        .run()
        .success()
        .stderr_empty();
    let text = out.stdout();
    assert!(text.contains("4 hops"), "{text}");
    assert!(text.contains("1 X-Received apart"), "{text}");
    for row in [
        "smtp.gmail.com",
        "mx.example.com",
        "imap.example.com",
        "ESMTPSA",
        "LMTP",
        "TLSv1.3",
        "2024-03-04 09:15:03",
    ] {
        assert!(text.contains(row), "missing {row}: {text}");
    }
    assert!(text.contains("timeline:"), "{text}");
    assert!(text.contains("DMARC alignment of From gmail.com"), "{text}");
    // Piped: no escape codes, even with a TERM.
    assert!(!text.contains('\x1b'), "{text}");
}

#[test]
fn json_has_exactly_the_documented_keys() {
    let home = TempDir::new();
    for name in ["gmail-to-postfix.eml", "office365.eml", "delays.eml"] {
        let v = trace_json(&home, fx(name));
        assert_eq!(keys(&v), sorted(MESSAGE_KEYS), "{name}");
        assert_eq!(v["version"], 1);
        assert_eq!(v["source"], "-");
        for h in v["hops"]
            .as_array()
            .unwrap()
            .iter()
            .chain(v["x_received"].as_array().unwrap())
        {
            assert_eq!(keys(h), sorted(HOP_KEYS), "{name}");
        }
    }
}

#[test]
fn hops_are_oldest_first_and_x_received_apart() {
    let home = TempDir::new();
    let v = trace_json(&home, fx("gmail-to-postfix.eml"));
    let by: Vec<&str> = v["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["by"].as_str().unwrap())
        .collect();
    assert_eq!(
        by,
        [
            "smtp.gmail.com",
            "2002:a5d:4e0f:0:b0:33d:9ab3:1234",
            "mx.example.com",
            "imap.example.com"
        ]
    );
    assert_eq!(v["x_received"].as_array().unwrap().len(), 1);
    assert_eq!(v["hops"][0]["date"], "2024-03-04T09:15:01Z");
    assert_eq!(v["hops"][0]["auth"], true);
    assert_eq!(v["date"], "2024-03-04T09:15:00Z");
    assert_eq!(v["auth"]["results"][0]["hop"], 3);
    assert_eq!(v["auth"]["alignment"]["dmarc_pass"], true);
}

#[test]
fn delays_are_computed() {
    let home = TempDir::new();
    let v = trace_json(&home, fx("delays.eml"));
    let delays: Vec<f64> = v["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["delay_s"].as_f64().unwrap())
        .collect();
    // Date 12:00:05; hops 13:00:10+0100, 12:00:30.250, 12:01:30.
    assert_eq!(delays, [5.0, 20.25, 59.75]);
    assert_eq!(v["total_transit_s"].as_f64(), Some(85.0));
    assert_eq!(v["hops"][1]["date"], "2024-01-02T12:00:30.25Z");
    assert_eq!(v["hops"][2]["tls_version"], "TLSv1.3");
    assert_eq!(
        kinds(&v),
        [("largest_delay".to_string(), Some(3))],
        "a clean chain"
    );
    // Informational only: --strict passes.
    Tool::new("mail-trace", home.path())
        .arg("--strict")
        .stdin(fx("delays.eml"))
        .run()
        .success();
}

#[test]
fn clock_skew_and_gap_are_flagged_and_strict_fails() {
    let home = TempDir::new();
    let v = trace_json(&home, fx("skew.eml"));
    assert!(
        kinds(&v).contains(&("clock_skew".to_string(), Some(2))),
        "{v}"
    );
    assert_eq!(v["hops"][1]["delay_s"].as_f64(), Some(-20.0));
    let v = trace_json(&home, fx("gap.eml"));
    assert!(
        kinds(&v).contains(&("chain_gap".to_string(), Some(2))),
        "{v}"
    );
    for name in ["skew.eml", "gap.eml"] {
        Tool::new("mail-trace", home.path())
            .arg("--strict")
            .stdin(fx(name))
            .run()
            .code_is(1);
    }
    let out = Tool::new("mail-trace", home.path())
        .stdin(fx("skew.eml"))
        .run()
        .success();
    assert!(out.stdout().contains("[clock_skew]"), "{}", out.stdout());
}

#[test]
fn no_headers_is_exit_65() {
    let home = TempDir::new();
    Tool::new("mail-trace", home.path())
        .run()
        .code_is(65)
        .stderr_one_line()
        .stdout_empty();
    Tool::new("mail-trace", home.path())
        .stdin("just a body line\n")
        .run()
        .code_is(65);
    Tool::new("mail-trace", home.path())
        .arg(home.join("missing.eml"))
        .run()
        .code_is(65)
        .stderr_has("missing.eml");
}

#[test]
fn mbox_and_maildir_inputs() {
    let home = TempDir::new();
    let mut mbox = Vec::new();
    for name in ["delays.eml", "skew.eml", "gap.eml"] {
        mbox.extend_from_slice(b"From alice@example.com Tue Jan  2 12:00:00 2024\n");
        mbox.extend_from_slice(&fx(name));
        if !mbox.ends_with(b"\n\n") {
            mbox.push(b'\n');
        }
    }
    let path = home.join("box.mbox");
    fs::write(&path, &mbox).unwrap();
    let out = Tool::new("mail-trace", home.path())
        .arg("--json")
        .arg(&path)
        .run()
        .success();
    let v = json_lines(&out.stdout());
    assert_eq!(v.len(), 3);
    assert!(v[0]["source"].as_str().unwrap().ends_with("box.mbox[1]"));
    assert_eq!(v[1]["hops"][1]["delay_s"].as_f64(), Some(-20.0));
    // The same mbox on stdin.
    let out = Tool::new("mail-trace", home.path())
        .arg("--json")
        .stdin(mbox)
        .run()
        .success();
    assert_eq!(json_lines(&out.stdout()).len(), 3);

    let md = home.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(md.join(sub)).unwrap();
    }
    fs::write(md.join("new/2.host"), fx("skew.eml")).unwrap();
    fs::write(md.join("cur/1.host:2,S"), fx("delays.eml")).unwrap();
    fs::write(md.join("tmp/3.host"), fx("gap.eml")).unwrap();
    let out = Tool::new("mail-trace", home.path())
        .arg("--json")
        .arg(&md)
        .run()
        .success();
    let v = json_lines(&out.stdout());
    assert_eq!(v.len(), 2, "tmp/ is not read");
    assert!(v[0]["source"].as_str().unwrap().contains("cur/1.host"));
    assert!(v[1]["source"].as_str().unwrap().contains("new/2.host"));

    let out = Tool::new("mail-trace", home.path())
        .arg("--summary")
        .arg(&md)
        .arg(&path)
        .run()
        .success();
    let text = out.stdout();
    assert!(text.starts_with("relay"), "{text}");
    let mx = text
        .lines()
        .find(|l| l.starts_with("mx.example.org"))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = mx.split_whitespace().collect();
    assert_eq!(cols[1], "5", "{text}");
}

#[test]
fn corpus_traces_without_warnings_or_errors() {
    let home = TempDir::new();
    let dir = crate::harness::project_dir().join("tests/fixtures/mail-trace/corpus");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let out = Tool::new("mail-trace", home.path())
        .arg("--json")
        .args(&files)
        .run()
        .success();
    let v = json_lines(&out.stdout());
    assert_eq!(v.len(), files.len());
    for m in &v {
        assert!(!m["hops"].as_array().unwrap().is_empty(), "{m}");
        for h in m["hops"].as_array().unwrap() {
            assert_eq!(keys(h), sorted(HOP_KEYS));
        }
    }
    let forged = v
        .iter()
        .find(|m| m["source"].as_str().unwrap().contains("may-be-forged"))
        .unwrap();
    assert!(kinds(forged).contains(&("may_be_forged".to_string(), Some(1))));
}

#[test]
fn no_colour_when_piped_or_no_color() {
    let home = TempDir::new();
    for env in [("NO_COLOR", "1"), ("TERM", "xterm-256color")] {
        let out = Tool::new("mail-trace", home.path())
            .env(env.0, env.1)
            .stdin(fx("skew.eml"))
            .run()
            .success();
        assert!(!out.stdout().contains('\x1b'), "{}", out.stdout());
    }
}

#[test]
fn broken_pipe_is_quiet() {
    let home = TempDir::new();
    let mut mbox = Vec::new();
    for _ in 0..2000 {
        mbox.extend_from_slice(b"From a@b Tue Jan  2 12:00:00 2024\n");
        mbox.extend_from_slice(&fx("delays.eml"));
        mbox.push(b'\n');
    }
    let path = home.join("big.mbox");
    fs::write(&path, &mbox).unwrap();
    let bin = crate::harness::bin("mail-trace");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' '{}' | head -n 1",
            bin.display(),
            path.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The keys of a JSON object in the order they were written, with each
/// value kept for a further look (serde_json's `Value` sorts its keys).
#[derive(Debug)]
enum Ordered {
    Object(Vec<(String, Ordered)>),
    Array(Vec<Ordered>),
    Other,
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = m.next_entry::<String, Ordered>()? {
                    v.push((k, x));
                }
                Ok(Ordered::Object(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = s.next_element::<Ordered>()? {
                    v.push(x);
                }
                Ok(Ordered::Array(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl Ordered {
    fn keys(&self) -> Vec<&str> {
        match self {
            Ordered::Object(v) => v.iter().map(|(k, _)| k.as_str()).collect(),
            _ => panic!("not an object: {self:?}"),
        }
    }
    fn get(&self, key: &str) -> &Ordered {
        match self {
            Ordered::Object(v) => &v.iter().find(|(k, _)| k == key).expect(key).1,
            _ => panic!("not an object: {self:?}"),
        }
    }
    fn items(&self) -> &[Ordered] {
        match self {
            Ordered::Array(v) => v,
            _ => panic!("not an array: {self:?}"),
        }
    }
}

#[test]
fn json_keys_are_in_the_documented_order() {
    let home = TempDir::new();
    for name in [
        "gmail-to-postfix.eml",
        "auth-contradictions.eml",
        "delays.eml",
    ] {
        let out = Tool::new("mail-trace", home.path())
            .arg("--json")
            .stdin(fx(name))
            .run()
            .success();
        let line = out.stdout();
        let v: Ordered = serde_json::from_str(line.trim_end()).expect("JSON");
        assert_eq!(v.keys(), MESSAGE_KEYS, "{name}");
        let hops = v
            .get("hops")
            .items()
            .iter()
            .chain(v.get("x_received").items());
        let mut n = 0;
        for h in hops {
            assert_eq!(h.keys(), HOP_KEYS, "{name}");
            n += 1;
        }
        assert!(n > 0, "{name}");
        for a in v.get("anomalies").items() {
            assert_eq!(a.keys(), ["kind", "hop", "text"], "{name}");
        }
        assert_eq!(
            v.get("auth").keys(),
            [
                "results",
                "arc",
                "received_spf",
                "dkim_signatures",
                "alignment"
            ],
            "{name}"
        );
    }
}

#[test]
fn authentication_picture_and_contradictions() {
    let home = TempDir::new();
    let v = trace_json(&home, fx("auth-contradictions.eml"));
    let k = kinds(&v);
    for want in [
        ("dkim_unverified", None),
        ("auth_conflict", Some(5)),
        ("dmarc_misaligned", Some(5)),
        ("arc_fail", None),
        ("arc_incomplete", None),
    ] {
        assert!(
            k.contains(&(want.0.to_string(), want.1)),
            "missing {want:?} in {k:?}"
        );
    }
    let dkim_unverified: Vec<&Value> = v["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "dkim_unverified")
        .collect();
    assert_eq!(dkim_unverified.len(), 1, "{v}");
    assert!(
        dkim_unverified[0]["text"]
            .as_str()
            .unwrap()
            .contains("other.example")
    );

    let auth = &v["auth"];
    assert_eq!(auth["results"][0]["authserv_id"], "mx.example.net");
    assert_eq!(auth["results"][0]["hop"], 5);
    assert_eq!(auth["results"][1]["authserv_id"], "list.example.org");
    assert_eq!(auth["results"][1]["hop"], 2);
    let arc = auth["arc"].as_array().unwrap();
    assert_eq!(arc.len(), 2);
    assert_eq!(arc[0]["instance"], 1);
    assert_eq!(arc[0]["cv"], "none");
    assert_eq!(arc[0]["seal"]["domain"], "example.org");
    assert_eq!(arc[0]["signature"]["selector"], "arc1");
    assert_eq!(arc[0]["results"]["authserv_id"], "list.example.org");
    assert_eq!(arc[0]["results"]["hop"], 2);
    assert_eq!(arc[0]["complete"], true);
    assert_eq!(arc[1]["instance"], 2);
    assert_eq!(arc[1]["cv"], "fail");
    assert_eq!(arc[1]["results"], Value::Null);
    assert_eq!(arc[1]["complete"], false);
    let spf = &auth["received_spf"][0];
    assert_eq!(spf["result"], "fail");
    assert_eq!(spf["client_ip"], "198.51.100.7");
    assert_eq!(spf["envelope_from"], "a@sender.example");
    assert_eq!(spf["hop"], 5);
    let sigs = auth["dkim_signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0]["domain"], "sender.example");
    assert_eq!(sigs[0]["selector"], "s1");
    assert_eq!(sigs[1]["domain"], "other.example");

    Tool::new("mail-trace", home.path())
        .arg("--strict")
        .stdin(fx("auth-contradictions.eml"))
        .run()
        .code_is(1);
    let out = Tool::new("mail-trace", home.path())
        .stdin(fx("auth-contradictions.eml"))
        .run()
        .success();
    let text = out.stdout();
    for want in [
        "authentication:",
        "Received-SPF by mx.example.net (hop 5): spf=fail",
        "DKIM-Signature: d=other.example s=x",
        "ARC i=1 cv=none",
        "ARC i=2 cv=fail",
        "[auth_conflict]",
        "[dmarc_misaligned]",
    ] {
        assert!(text.contains(want), "missing {want}: {text}");
    }
}

#[test]
fn an_honest_message_has_no_auth_contradictions() {
    let home = TempDir::new();
    for name in ["gmail-to-postfix.eml", "office365.eml"] {
        let v = trace_json(&home, fx(name));
        for (kind, _) in kinds(&v) {
            assert!(
                ![
                    "dkim_unverified",
                    "auth_conflict",
                    "dmarc_misaligned",
                    "arc_fail"
                ]
                .contains(&kind.as_str()),
                "{name}: {kind} in {v}"
            );
        }
    }
}

#[test]
fn internal_hops_and_list_boundaries_are_informational() {
    let home = TempDir::new();
    let v = trace_json(&home, fx("internal.eml"));
    let k = kinds(&v);
    assert!(
        k.contains(&("content_filter".to_string(), Some(2))),
        "{k:?}"
    );
    assert!(k.contains(&("loopback".to_string(), Some(3))), "{k:?}");
    assert!(!k.iter().any(|(x, _)| x == "chain_gap"), "{k:?}");
    // Only informational anomalies: --strict is content.
    Tool::new("mail-trace", home.path())
        .arg("--strict")
        .stdin(fx("internal.eml"))
        .run()
        .success();

    let v = trace_json(&home, fx("auth-contradictions.eml"));
    let k = kinds(&v);
    assert!(k.contains(&("list_boundary".to_string(), Some(3))), "{k:?}");
    assert!(k.contains(&("list_boundary".to_string(), None)), "{k:?}");
    assert!(
        k.contains(&("content_filter".to_string(), Some(4))),
        "{k:?}"
    );
    assert!(k.contains(&("loopback".to_string(), Some(5))), "{k:?}");

    // A List-Id alone is informational too.
    let mut msg = b"List-Id: <l.example.org>\n".to_vec();
    msg.extend(fx("delays.eml"));
    let v = trace_json(&home, msg.clone());
    assert!(kinds(&v).contains(&("list_boundary".to_string(), None)));
    Tool::new("mail-trace", home.path())
        .arg("--strict")
        .stdin(msg)
        .run()
        .success();
}

#[test]
fn a_line_that_ends_the_header_block_is_a_warning_in_json_and_the_table() {
    let home = TempDir::new();
    let msg = b"Received: from a.example by b.example; Mon, 1 Jan 2024 00:00:00 +0000\n\
quite Delivered-To: x@example.org\n\
Received: from c.example by a.example; Mon, 1 Jan 2024 00:00:00 +0000\n\
\n\
body\n"
        .to_vec();
    let v = trace_json(&home, msg.clone());
    let warnings = v["warnings"].as_array().expect("warnings").clone();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("header line 2 is not a field"))),
        "{warnings:?}"
    );
    let out = Tool::new("mail-trace", home.path())
        .stdin(msg)
        .run()
        .success();
    assert!(
        out.stdout().contains("quite Delivered-To: x@example.org"),
        "{}",
        out.stdout()
    );
}

#[test]
fn header_text_reaches_the_table_escaped() {
    let home = TempDir::new();
    let msg = b"Received: from evil\x1b]0;pwned\x07 (x [192.0.2.1]) by mx\x1b[2J.example with ESMTP id \x1b[31mRED; Mon, 1 Jan 2024 00:00:00 +0000\n\
Authentication-Results: mx.example; spf=pass smtp.mailfrom=a\x1b[31m@example.org\n\
\n\
body\n"
        .to_vec();
    let out = Tool::new("mail-trace", home.path())
        .stdin(msg)
        .run()
        .success();
    let text = out.stdout();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(text.contains("evil\\u{1b}]0"), "{text}");
}

/// An mbox of several pieces (mail-trace reads an mbox with --json or
/// --summary on several threads, piece by piece): every fixture and corpus
/// message many times over, with CRLF ones, quoted `>From ` body lines,
/// messages without header fields and anomalies that --strict fails on.
fn many_pieces_mbox() -> (Vec<u8>, usize) {
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    for dir in ["", "corpus"] {
        let d = crate::harness::project_dir()
            .join("tests/fixtures/mail-trace")
            .join(dir);
        let mut names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml" || x == "txt"))
            .collect();
        names.sort();
        msgs.extend(names.iter().map(|p| fs::read(p).unwrap()));
    }
    assert!(msgs.len() > 20);
    let mut mbox = b"\n\n".to_vec();
    let mut i = 0;
    while mbox.len() < 3 << 20 {
        let m = &msgs[i % msgs.len()];
        mbox.extend_from_slice(b"From a@b Tue Jan  2 12:00:00 2024\n");
        match i % 7 {
            // CRLF line endings.
            3 => mbox.extend_from_slice(
                &String::from_utf8_lossy(m)
                    .replace('\n', "\r\n")
                    .into_bytes(),
            ),
            // No header fields at all.
            5 => mbox.extend_from_slice(b"\na body line\n>From quoted\n"),
            _ => mbox.extend_from_slice(m),
        }
        if !mbox.ends_with(b"\n") {
            mbox.push(b'\n');
        }
        mbox.push(b'\n');
        i += 1;
    }
    (mbox, i)
}

#[test]
fn an_mbox_on_several_threads_gives_what_one_thread_gives() {
    let home = TempDir::new();
    let path = home.join("box.mbox");
    let (mbox, count) = many_pieces_mbox();
    fs::write(&path, &mbox).unwrap();
    let run = |args: &[&str], threads: &str, stdin: bool| {
        let mut t = Tool::new("mail-trace", home.path())
            .args(args)
            .arg("--threads")
            .arg(threads);
        t = if stdin {
            t.stdin(mbox.clone())
        } else {
            t.arg(&path)
        };
        let o = t.run();
        (o.code(), o.stdout(), o.stderr())
    };
    for args in [&["--json"][..], &["--summary"], &["--json", "--strict"]] {
        for stdin in [false, true] {
            let one = run(args, "1", stdin);
            let many = run(args, "4", stdin);
            assert!(one.1.len() > 1000, "{args:?}: {}", one.2);
            assert!(one.2.contains("[6]: no header fields"), "{}", one.2);
            assert_eq!(one, many, "{args:?}, stdin {stdin}");
        }
    }
    let (code, out, err) = run(&["--json", "--strict"], "2", false);
    assert_eq!(code, 1, "--strict sees the anomalies of every piece");
    let lines = json_lines(&out);
    let empty = err.matches(": no header fields").count();
    assert_eq!(
        empty,
        (count + 1) / 7,
        "one warning per message without fields"
    );
    assert_eq!(
        lines.len() + empty,
        count,
        "a line or a warning per message"
    );
    let last = lines.last().unwrap()["source"]
        .as_str()
        .unwrap()
        .to_string();
    let last_n = if (count - 1) % 7 == 5 {
        count - 1
    } else {
        count
    };
    assert!(
        last.ends_with(&format!("box.mbox[{last_n}]")),
        "{last} of {count}"
    );
}

#[test]
fn threads_stop_quietly_when_the_reader_goes_away() {
    let home = TempDir::new();
    let path = home.join("big.mbox");
    fs::write(&path, many_pieces_mbox().0).unwrap();
    let bin = crate::harness::bin("mail-trace");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' --json --threads 3 '{}' | head -n 1",
            bin.display(),
            path.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1);
    assert!(text.starts_with("{\"version\":1"), "{text}");
    // Only the warnings about the messages without fields, no error.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().all(|l| l.ends_with(": no header fields")),
        "{err}"
    );
}

#[test]
fn threads_are_a_number_from_1() {
    let home = TempDir::new();
    for bad in ["0", "x", "-1"] {
        Tool::new("mail-trace", home.path())
            .args(["--json", "--threads", bad])
            .stdin(fx("delays.eml"))
            .run()
            .code_is(64)
            .stderr_one_line();
    }
}
