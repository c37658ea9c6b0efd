//! The public Received corpus (`expected.json` + one sample per file) run
//! against [`super::received`]: every expected field of every hop must
//! match, and a field the corpus leaves out must come out empty.
//!
//! It runs on the bundled copy in `tests/fixtures/mail-trace/corpus/` always,
//! and also on `$POSTLINE_CORPUS` or `../shared/corpus/received` when that
//! exists (a user's clone has no `../shared`; then it says so and skips).

use super::received::{Auth, Hop};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Field names the corpus may use for a hop, and how each is checked.
const KNOWN: [&str; 19] = [
    "kind",
    "from",
    "helo",
    "rdns",
    "ip",
    "port",
    "by",
    "by_ip",
    "with",
    "via",
    "tls",
    "auth",
    "id",
    "for",
    "envelope_from",
    "date_utc",
    "tz_assumed",
    "may_be_forged",
    "protocol",
];

fn string_field(h: &Hop, key: &str) -> Option<String> {
    match key {
        "from" => h.from.as_deref().map(str::to_string),
        "helo" => h.helo.as_deref().map(str::to_string),
        "rdns" => h.rdns.as_deref().map(str::to_string),
        "ip" => h.ip.as_deref().map(str::to_string),
        "by" => h.by.as_deref().map(str::to_string),
        "by_ip" => h.by_ip.as_deref().map(str::to_string),
        // The corpus's `with` is the normalised protocol.
        "with" | "protocol" => h.protocol.as_deref().map(str::to_string),
        "via" => h.via.as_deref().map(str::to_string),
        "id" => h.id.as_deref().map(str::to_string),
        "for" => h.for_addr.as_deref().map(str::to_string),
        "envelope_from" => h.envelope_from.as_deref().map(str::to_string),
        "date_utc" => h.date.map(|d| d.to_rfc3339_utc()),
        _ => None,
    }
}

/// Compare one hop with its expectation; mismatches are pushed as text.
fn check_hop(label: &str, exp: &Value, h: &Hop, bad: &mut Vec<String>) {
    let Some(obj) = exp.as_object() else {
        bad.push(format!("{label}: expectation is not an object"));
        return;
    };
    for k in obj.keys() {
        if !KNOWN.contains(&k.as_str()) {
            bad.push(format!(
                "{label}: expected field '{k}' is not checked by this test"
            ));
        }
    }
    let mut fail = |what: &str, want: String, got: String| {
        if want != got {
            bad.push(format!(
                "{label}: {what}: expected {want}, got {got}   [raw: {}]",
                h.raw
            ));
        }
    };
    for key in [
        "from",
        "helo",
        "rdns",
        "ip",
        "by",
        "by_ip",
        "with",
        "via",
        "id",
        "for",
        "envelope_from",
        "date_utc",
    ] {
        let want = obj.get(key).and_then(Value::as_str).map(str::to_string);
        fail(
            key,
            format!("{want:?}"),
            format!("{:?}", string_field(h, key)),
        );
    }
    if let Some(p) = obj.get("protocol") {
        fail(
            "protocol",
            format!("{:?}", p.as_str()),
            format!("{:?}", h.protocol.as_deref()),
        );
    }
    let want_port = obj.get("port").and_then(Value::as_u64);
    fail(
        "port",
        format!("{want_port:?}"),
        format!("{:?}", h.port.map(u64::from)),
    );
    let tls = obj.get("tls");
    let tv = tls.and_then(|t| t.get("version")).and_then(Value::as_str);
    let tc = tls.and_then(|t| t.get("cipher")).and_then(Value::as_str);
    fail(
        "tls.version",
        format!("{tv:?}"),
        format!("{:?}", h.tls_version.as_deref()),
    );
    fail(
        "tls.cipher",
        format!("{tc:?}"),
        format!("{:?}", h.tls_cipher.as_deref()),
    );
    let want_auth = match obj.get("auth") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => "none".to_string(),
        Some(Value::Bool(true)) => "flag".to_string(),
        Some(Value::String(s)) => format!("user {s}"),
        Some(other) => format!("unexpected {other}"),
    };
    let got_auth = match &h.auth {
        None => "none".to_string(),
        Some(Auth::Authenticated) => "flag".to_string(),
        Some(a) => format!("user {}", a.describe()),
    };
    fail("auth", want_auth, got_auth);
    // Flags are checked when the corpus states them.
    if let Some(b) = obj.get("tz_assumed").and_then(Value::as_bool) {
        fail("tz_assumed", b.to_string(), h.tz_assumed.to_string());
    }
    if let Some(b) = obj.get("may_be_forged").and_then(Value::as_bool) {
        fail("may_be_forged", b.to_string(), h.may_be_forged.to_string());
    }
}

/// Run the whole corpus in `dir`; returns the number of hops checked.
fn run_corpus(dir: &Path) -> usize {
    let expected = std::fs::read_to_string(dir.join("expected.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("expected.json").display()));
    let expected: Value = serde_json::from_str(&expected).expect("expected.json is JSON");
    let samples = expected
        .get("single")
        .and_then(Value::as_array)
        .expect("expected.json has 'single'");
    assert!(!samples.is_empty(), "no samples in {}", dir.display());
    let mut bad = Vec::new();
    let mut checked = 0;
    for s in samples {
        let file = s
            .get("file")
            .and_then(Value::as_str)
            .expect("sample has 'file'");
        let hops = s
            .get("hops_top_down")
            .and_then(Value::as_array)
            .expect("sample has 'hops_top_down'");
        let data = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        // The trace kinds this sample expects, e.g. Received / X-Received.
        let mut kinds: Vec<String> = hops
            .iter()
            .map(|h| {
                h.get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("Received")
                    .to_string()
            })
            .collect();
        kinds.dedup();
        let msg = crate::message::Message::new(crate::message::normalize(data));
        let got: Vec<(String, Hop)> = msg
            .fields()
            .into_iter()
            .filter(|f| kinds.iter().any(|k| f.is(k)))
            .map(|f| {
                (
                    String::from_utf8_lossy(f.name).into_owned(),
                    super::received::parse_bytes(f.value),
                )
            })
            .collect();
        if got.len() != hops.len() {
            bad.push(format!(
                "{file}: expected {} hops, found {}",
                hops.len(),
                got.len()
            ));
            continue;
        }
        for (n, (exp, (name, hop))) in hops.iter().zip(&got).enumerate() {
            let label = format!("{file} hop {n}");
            let kind = exp
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("Received");
            if !kind.eq_ignore_ascii_case(name) {
                bad.push(format!("{label}: kind {kind}, field {name}"));
            }
            check_hop(&label, exp, hop, &mut bad);
            checked += 1;
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches in {}:\n{}",
        bad.len(),
        dir.display(),
        bad.join("\n")
    );
    checked
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn bundled_corpus() {
    let dir = manifest().join("tests/fixtures/mail-trace/corpus");
    let n = run_corpus(&dir);
    assert!(n >= 33, "only {n} hops checked");
}

#[test]
fn shared_corpus() {
    let dir = std::env::var_os("POSTLINE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("../shared/corpus/received"));
    if !dir.join("expected.json").exists() {
        println!("corpus not found at {}; skipped", dir.display());
        return;
    }
    let n = run_corpus(&dir);
    println!("corpus at {}: {n} hops checked", dir.display());
}
