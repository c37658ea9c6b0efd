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
