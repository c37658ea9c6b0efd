//! mail-deliver --sieve: the command line of issue 16 driven end to end,
//! results read back by Python's `mailbox` (an independent reader of
//! Maildir++ folders and their info flags).

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use crate::harness::*;

const TOOL: &str = "mail-deliver";

const MSG: &[u8] = b"From: Alice <alice+rust@example.org>\n\
To: me@example.net\n\
Subject: [rust] weekly =?UTF-8?Q?caf=C3=A9?=\n\
List-Id: <rust.lists.example.org>\n\
\n\
Hello.\n";

fn md_arg(p: &Path) -> String {
    format!("{}/", p.display())
}

/// Write `script` into `dir/name` and return its path as a String.
fn script(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn sieve(home: &TempDir, script: &str, md: &Path) -> Tool {
    Tool::new(TOOL, home.path())
        .args(["--sieve", script])
        .arg(md_arg(md))
}

/// Every message of the Maildir (or its folder) as (Python's flags, bytes).
fn read_flags(md: &Path, folder: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let code = r#"
import mailbox, sys
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
if len(sys.argv) > 2:
    md = md.get_folder(sys.argv[2])
for key in sorted(md.keys()):
    m = md.get_message(key)
    data = md.get_bytes(key)
    sys.stdout.buffer.write(b"%s\n%d\n" % (m.get_flags().encode() or b"-", len(data)) + data)
"#;
    let mut args: Vec<&OsStr> = vec![md.as_os_str()];
    if let Some(f) = folder {
        args.push(OsStr::new(f));
    }
    let out = python(code, &args);
    let mut res = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let nl = rest.iter().position(|&c| c == b'\n').unwrap();
        let flags = String::from_utf8_lossy(&rest[..nl]).into_owned();
        rest = &rest[nl + 1..];
        let nl = rest.iter().position(|&c| c == b'\n').unwrap();
        let len: usize = std::str::from_utf8(&rest[..nl]).unwrap().parse().unwrap();
        rest = &rest[nl + 1..];
        res.push((
            if flags == "-" { String::new() } else { flags },
            rest[..len].to_vec(),
        ));
        rest = &rest[len..];
    }
    res
}

fn count_files(md: &Path) -> usize {
    let mut n = 0;
    for e in walk(md) {
        let s = e.display().to_string();
        if (s.contains("/new/") || s.contains("/cur/")) && e.is_file() {
            n += 1;
        }
    }
    n
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn fileinto_create_stores_in_the_folder_with_flags() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "s.sieve",
        "require [\"fileinto\", \"mailbox\", \"imap4flags\", \"variables\"];\n\
         if header :matches \"list-id\" \"<*.lists.*>\" {\n\
           fileinto :create :flags [\"\\\\Flagged\", \"\\\\Seen\"] \"Lists.${1}\";\n\
         }\n",
    );
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_empty();
    let got = read_flags(&md, Some("Lists.rust"));
    assert_eq!(got.len(), 1, "one message in .Lists.rust");
    assert_eq!(got[0].0, "FS");
    assert_eq!(got[0].1, MSG);
    assert!(md.join(".Lists.rust/maildirfolder").exists());
    assert!(read_flags(&md, None).is_empty(), "nothing in INBOX");
}

#[test]
fn keep_and_implicit_keep_store_in_inbox_new() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "s.sieve",
        "if header :is \"subject\" \"no match\" { discard; }\n",
    );
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_empty();
    let s2 = script(
        &home,
        "k.sieve",
        "require \"imap4flags\"; keep :flags \"\\\\Answered\";",
    );
    sieve(&home, &s2, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_empty();
    assert_eq!(maildir_new(&md).len(), 1, "the implicit keep lands in new/");
    let got = read_flags(&md, None);
    let mut flags: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
    flags.sort();
    assert_eq!(flags, vec!["", "R"]);
    assert!(got.iter().all(|(_, d)| d == MSG));
}

#[test]
fn decoded_subject_drives_the_filter() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    fs::create_dir_all(md.join(".Cafe/cur")).unwrap();
    fs::create_dir_all(md.join(".Cafe/new")).unwrap();
    fs::create_dir_all(md.join(".Cafe/tmp")).unwrap();
    let s = script(
        &home,
        "s.sieve",
        "require \"fileinto\";\nif header :contains \"subject\" \"café\" { fileinto \"Cafe\"; }\n",
    );
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_empty();
    assert_eq!(read_flags(&md, Some("Cafe")).len(), 1);
}

#[test]
fn a_missing_folder_without_create_falls_back_to_inbox() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "s.sieve",
        "require \"fileinto\";\nfileinto \"Nowhere\";\n",
    );
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("does not exist")
        .stderr_has("INBOX");
    assert_eq!(maildir_new(&md).len(), 1);
    assert!(!md.join(".Nowhere").exists());
}

#[test]
fn discard_stores_nothing_and_exits_0() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "s.sieve",
        "if address :domain \"from\" \"example.org\" { discard; }",
    );
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_empty();
    assert_eq!(count_files(&md), 0);
}

#[test]
fn reject_exits_77_with_the_reason() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "s.sieve",
        "require \"reject\";\n\nreject \"not wanted here\";\n",
    );
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .code_is(77)
        .stderr_has("line 3")
        .stderr_has("not wanted here");
    let s = script(&home, "e.sieve", "require \"ereject\"; ereject \"no\";");
    sieve(&home, &s, &md).stdin(MSG).run().code_is(77);
    assert_eq!(count_files(&md), 0);
}

#[test]
fn a_broken_script_keeps_the_message_and_says_where() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "bad.sieve",
        "require \"fileinto\";\nif true {\n  fileinto \"x\"\n}\n",
    );
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("line 4, column 1")
        .stderr_has("kept in INBOX");
    let s = script(
        &home,
        "ext.sieve",
        "require [\"fileinto\", \"vnd.unknown\"];\ndiscard;\n",
    );
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("line 1, column 9")
        .stderr_has("vnd.unknown");
    let missing = home.join("missing.sieve").display().to_string();
    sieve(&home, &missing, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("kept in INBOX");
    let got = maildir_new(&md);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|(_, d)| d == MSG));
}

#[test]
fn check_compiles_only() {
    let home = TempDir::new();
    let ok = script(
        &home,
        "ok.sieve",
        "require [\"fileinto\", \"body\"];\nif body :contains \"x\" { fileinto \"A\"; }\n",
    );
    let out = Tool::new(TOOL, home.path())
        .args(["--check", &ok])
        .run()
        .success();
    assert!(out.stdout().contains("ok"), "{}", out.stdout());
    let bad = script(&home, "bad.sieve", "keep;\n  fileinto \"A\";\n");
    Tool::new(TOOL, home.path())
        .args(["--check", &bad])
        .run()
        .code_is(65)
        .stderr_has("line 2, column 3")
        .stderr_has("require \"fileinto\"");
    // Every error is reported, as sievec does, not only the first.
    let bad = script(
        &home,
        "bad2.sieve",
        "fileinto \"A\";\nif header :frop \"a\" \"b\" { keep; }\nkeep;\nredirect;\n",
    );
    Tool::new(TOOL, home.path())
        .args(["--check", &bad])
        .run()
        .code_is(65)
        .stderr_has("line 1, column 1")
        .stderr_has("line 2, column 11: unknown tag :frop")
        .stderr_has("line 4, column 1");
}

#[test]
fn dry_run_reports_line_and_test_and_stores_nothing() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "s.sieve",
        "require [\"fileinto\", \"date\", \"copy\"];\n\
         if currentdate :is \"date\" \"2030-05-06\" {\n\
           fileinto :copy \"Dated\";\n\
         }\n\
         redirect \"other@example.com\";\n",
    );
    let out = sieve(&home, &s, &md)
        .args(["--dry-run", "--json", "--now", "2030-05-06T12:00:00Z"])
        .stdin(MSG)
        .run()
        .success();
    let recs: Vec<serde_json::Value> = out
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(recs.len(), 2, "{}", out.stdout());
    assert_eq!(recs[0]["action"], "fileinto");
    assert_eq!(recs[0]["mailbox"], "Dated");
    assert_eq!(recs[0]["line"], 3);
    assert_eq!(recs[0]["copy"], true);
    assert_eq!(
        recs[0]["test"],
        "currentdate :is \"date\" \"2030-05-06\" (line 2)"
    );
    assert_eq!(recs[1]["action"], "redirect");
    assert_eq!(recs[1]["line"], 5);
    // No config, so no route: the dry run says so (a delivery keeps the
    // message in INBOX).
    assert!(recs[1]["note"].as_str().unwrap().contains("no route"));
    assert_eq!(recs[1]["send"], false);
    assert_eq!(count_files(&md), 0);
    // Another day: the date test fails, only the redirect remains; text form.
    let out = sieve(&home, &s, &md)
        .args(["--dry-run", "--now", "1900000000"])
        .stdin(MSG)
        .run()
        .success();
    let lines = out.stdout_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("line 5: redirect"), "{lines:?}");
    assert_eq!(count_files(&md), 0);
}

#[test]
fn redirect_without_a_route_keeps_the_message() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(&home, "s.sieve", "redirect \"other@example.com\";\n");
    sieve(&home, &s, &md)
        .arg("--dedup")
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("--dedup is not applied");
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("no route")
        .stderr_has("message kept in INBOX");
    assert_eq!(maildir_new(&md).len(), 2);
}

#[test]
fn envelope_and_subaddress_from_the_command_line() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "s.sieve",
        "require [\"envelope\", \"subaddress\", \"fileinto\", \"mailbox\"];\n\
         if allof(envelope :detail \"to\" \"lists\", envelope :domain \"from\" \"bounce.example\") {\n\
           fileinto :create \"ByEnvelope\";\n\
         }\n",
    );
    sieve(&home, &s, &md)
        .args([
            "-f",
            "owner@bounce.example",
            "--recipient",
            "me+lists@example.net",
        ])
        .stdin(MSG)
        .run()
        .success()
        .stderr_empty();
    assert_eq!(read_flags(&md, Some("ByEnvelope")).len(), 1);
}

#[test]
fn the_config_names_the_script() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    script(&home, "s.sieve", "discard;");
    fs::create_dir_all(home.join(".config/postline")).unwrap();
    fs::write(
        home.join(".config/postline/config.toml"),
        "[deliver]\nsieve = \"~/s.sieve\"\n",
    )
    .unwrap();
    Tool::new(TOOL, home.path())
        .arg(md_arg(&md))
        .stdin(MSG)
        .run()
        .success();
    assert_eq!(count_files(&md), 0, "the configured script discarded it");
    // Where the configured filter cannot apply, delivery goes on without it.
    let mbox = home.join("mbox");
    Tool::new(TOOL, home.path())
        .arg(mbox.display().to_string())
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("delivering without it");
    let stored = fs::read(&mbox).unwrap();
    assert!(
        stored.windows(MSG.len()).any(|w| w == MSG),
        "the message is in the mbox"
    );
    Tool::new(TOOL, home.path())
        .args(["--folder", "F", &md_arg(&md)])
        .stdin(MSG)
        .run()
        .success();
    assert_eq!(read_flags(&md, Some("F")).len(), 1);
}

#[test]
fn sieve_flags_are_usage_errors_where_they_do_not_apply() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    Tool::new(TOOL, home.path())
        .args(["--dry-run", &md_arg(&md)])
        .stdin(MSG)
        .run()
        .code_is(64);
    let s = script(&home, "s.sieve", "keep;");
    Tool::new(TOOL, home.path())
        .args(["--sieve", &s, &home.join("mbox").display().to_string()])
        .stdin(MSG)
        .run()
        .code_is(64);
}

// ---------------------------------------------------------------------------
// Differential: Pigeonhole's sieve-test (dovecot-sieve) on the same scripts
// and messages must report the same actions as our --dry-run.
// ---------------------------------------------------------------------------

/// Messages for the differential test.
const DIFF_MSGS: &[&[u8]] = &[
    MSG,
    b"From: \"Bad Guy\" <spam@bad.example>\n\
To: me@example.net, other@example.org\n\
Cc: Team <team+dev@example.com>\n\
Subject: =?ISO-8859-1?Q?Gro=DFe?= offer\n\
Date: Sat, 15 Mar 2025 23:30:00 -0300\n\
X-Spam-Score: 12\n\
\n\
Buy now.\n",
    b"From: boss@example.com\n\
To: me@example.net\n\
Subject: Re: report\n\
Date: Mon, 3 Feb 2025 09:00:00 +0100\n\
Content-Type: multipart/mixed; boundary=\"xx\"\n\
\n\
--xx\n\
Content-Type: text/plain\n\
\n\
Please review the budget.\n\
--xx\n\
Content-Type: application/pdf\n\
Content-Transfer-Encoding: base64\n\
\n\
JVBERi0=\n\
--xx--\n",
];

/// Scripts for the differential test: each construct family once at least.
const DIFF_SCRIPTS: &[&str] = &[
    "",
    "keep;",
    "discard;",
    "require \"fileinto\";\nif header :contains \"subject\" \"rust\" { fileinto \"Rust\"; } else { fileinto \"Other\"; }",
    "require [\"fileinto\", \"variables\", \"mailbox\"];\nif header :matches \"list-id\" \"<*.lists.*>\" { fileinto :create \"Lists.${1}\"; }",
    "require \"reject\";\nif address :domain :is \"from\" \"bad.example\" { reject \"go away\"; }",
    "require [\"imap4flags\", \"fileinto\"];\nif address :is \"from\" \"boss@example.com\" { addflag [\"\\\\Flagged\", \"\\\\Seen\"]; }\nif header :contains \"subject\" \"Re:\" { fileinto \"Replies\"; }",
    "require [\"relational\", \"comparator-i;ascii-numeric\", \"fileinto\"];\nif header :value \"ge\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"10\" { fileinto \"Junk\"; stop; }\nif address :count \"ge\" :comparator \"i;ascii-numeric\" [\"to\", \"cc\"] \"3\" { fileinto \"Many\"; }",
    "require \"fileinto\";\nif header :is \"subject\" \"Große offer\" { fileinto \"Decoded\"; }",
    "require [\"body\", \"fileinto\"];\nif body :text :contains \"budget\" { fileinto \"Budget\"; }\nif body :content \"application\" :contains \"x\" { discard; }",
    "require [\"date\", \"relational\", \"fileinto\"];\nif date :value \"lt\" :originalzone \"date\" \"hour\" \"12\" { fileinto \"Morning\"; }\nif date :zone \"+0000\" \"date\" \"date\" \"2025-03-16\" { fileinto \"UTC-next-day\"; }",
    "require [\"subaddress\", \"fileinto\", \"copy\"];\nif address :detail \"cc\" \"dev\" { fileinto :copy \"Dev\"; }\nif address :user \"from\" \"alice\" { redirect :copy \"archive@example.net\"; }",
    // Our filter sees the Return-Path and Delivered-To that -f and
    // --recipient add (74 bytes): 285 separates the messages alike.
    "if anyof(not exists \"date\", size :over 285) { redirect \"big@example.net\"; }",
    // "?" is one octet (é is two), :upper is ASCII only, a repeated
    // fileinto is dropped whole (it cancels no implicit keep).
    "require [\"variables\", \"fileinto\", \"copy\"];\nif header :matches \"subject\" \"*caf?\" { fileinto \"One\"; }\nif header :matches \"subject\" \"*caf??\" { set :upper \"s\" \"${1}\"; fileinto :copy \"Two.${s}\"; fileinto \"Two.${s}\"; }",
    "require [\"variables\", \"fileinto\"];\nset :lower :upperfirst \"who\" \"${0}\";\nif address :localpart :matches \"from\" \"*\" { set :upperfirst \"who\" \"${1}\"; }\nfileinto \"From.${who}\";",
];

/// One action as both sides can say it: `store:FOLDER[:flags]`,
/// `discard`, `reject:REASON`, `redirect:ADDR`.
fn pigeonhole_actions(out: &str) -> Vec<String> {
    let mut acts: Vec<String> = Vec::new();
    for line in out.lines() {
        // Only leading blanks: a folder name may end in a space.
        let l = line.trim_start();
        if let Some(f) = l.strip_prefix("* store message in folder: ") {
            acts.push(format!("store:{f}"));
        } else if let Some(fl) = l.strip_prefix("+ add IMAP flags: ") {
            let mut flags: Vec<String> =
                fl.split_whitespace().map(str::to_ascii_lowercase).collect();
            flags.sort();
            if let Some(last) = acts.last_mut() {
                last.push_str(&format!(":{}", flags.join(" ")));
            }
        } else if l.trim_end() == "* discard" {
            acts.push("discard".into());
        } else if let Some(r) = l.strip_prefix("* reject message with reason: ") {
            acts.push(format!("reject:{r}"));
        } else if let Some(a) = l.strip_prefix("* redirect message to: ") {
            acts.push(format!("redirect:{}", a.trim_matches(['<', '>'])));
        }
    }
    acts.sort();
    acts
}

fn our_actions(stdout: &str) -> Vec<String> {
    let mut acts: Vec<String> = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let flags = |v: &serde_json::Value| -> String {
            let mut f: Vec<String> = v["flags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .map(str::to_ascii_lowercase)
                        .collect()
                })
                .unwrap_or_default();
            f.sort();
            if f.is_empty() {
                String::new()
            } else {
                format!(":{}", f.join(" "))
            }
        };
        match v["action"].as_str().unwrap() {
            "keep" => acts.push(format!("store:INBOX{}", flags(&v))),
            "fileinto" => acts.push(format!(
                "store:{}{}",
                v["mailbox"].as_str().unwrap(),
                flags(&v)
            )),
            "discard" => acts.push("discard".into()),
            "reject" | "ereject" => acts.push(format!("reject:{}", v["reason"].as_str().unwrap())),
            "redirect" => acts.push(format!("redirect:{}", v["address"].as_str().unwrap())),
            other => acts.push(other.to_string()),
        }
    }
    acts.sort();
    acts
}

/// Pigeonhole's sieve-test for a differential test: `None` (skip said)
/// when it is not installed; else the home made readable for it and its
/// scratch directory. sieve-test refuses root: as root it runs as nobody,
/// which must read the files and write its scratch Maildir.
pub(crate) fn sieve_test_scratch(home: &TempDir) -> Option<std::path::PathBuf> {
    let have = std::process::Command::new("sieve-test")
        .arg("-h")
        .output()
        .is_ok();
    if skip_unless(have, "sieve-test (dovecot-sieve) is not installed") {
        return None;
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = home.join("pigeonhole");
    fs::create_dir(&scratch).unwrap();
    fs::set_permissions(&scratch, fs::Permissions::from_mode(0o777)).unwrap();
    Some(scratch)
}

/// Run sieve-test on `script` and `msg` (both readable by nobody) with
/// envelope `from` and `rcpt`, a clean environment and no config.
pub(crate) fn run_sieve_test(
    scratch: &Path,
    script: &Path,
    msg: &Path,
    from: &str,
    rcpt: &str,
) -> std::process::Output {
    let mut cmd = if is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sieve-test",
        ]);
        c
    } else {
        std::process::Command::new("sieve-test")
    };
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", scratch)
        .env("TZ", "UTC")
        .args(["-c", "/dev/null", "-o"])
        .arg(format!(
            "mail_location=maildir:{}",
            scratch.join("md").display()
        ))
        .args(["-f", from, "-r", rcpt])
        .arg(script)
        .arg(msg)
        .output()
        .expect("run sieve-test")
}

#[test]
fn same_actions_as_pigeonhole_sieve_test() {
    let home = TempDir::new();
    let Some(scratch) = sieve_test_scratch(&home) else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let md = home.join("Maildir");
    // Plus one script a line from the fixture (edge cases of matching,
    // comparators, address parts, dates, variables, flags, body, duplicates)
    // and two more messages (groups, encoded display names, a
    // quoted-printable Latin-1 body, repeated and numeric fields).
    let more = String::from_utf8(fixture(TOOL, "sieve-differential.txt")).unwrap();
    let scripts: Vec<&str> = DIFF_SCRIPTS.iter().copied().chain(more.lines()).collect();
    let m1 = fixture(TOOL, "sieve-m1.eml");
    let m2 = fixture(TOOL, "sieve-m2.eml");
    let msgs: Vec<&[u8]> = DIFF_MSGS
        .iter()
        .copied()
        .chain([&m1[..], &m2[..]])
        .collect();
    let mut compared = 0;
    for (si, text) in scripts.iter().enumerate() {
        let s = script(&home, &format!("d{si}.sieve"), text);
        fs::set_permissions(&s, fs::Permissions::from_mode(0o644)).unwrap();
        for (mi, msg) in msgs.iter().enumerate() {
            let m = home.join(format!("m{mi}.eml"));
            fs::write(&m, msg).unwrap();
            fs::set_permissions(&m, fs::Permissions::from_mode(0o644)).unwrap();
            let out = run_sieve_test(
                &scratch,
                Path::new(&s),
                &m,
                "owner@lists.example.org",
                "me+lists@example.net",
            );
            let theirs = String::from_utf8_lossy(&out.stdout).into_owned();
            let err = String::from_utf8_lossy(&out.stderr);
            // A run-time error: Pigeonhole falls back to the implicit keep,
            // as we do.
            let theirs =
                if err.contains("final result: failed; resolved with successful implicit keep") {
                    " * store message in folder: INBOX\n".to_string()
                } else {
                    theirs
                };
            assert!(
                out.status.success() || theirs.contains("INBOX"),
                "sieve-test failed on script {si}: {}{theirs}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ours = sieve(&home, &s, &md)
                .args([
                    "--dry-run",
                    "--json",
                    "-f",
                    "owner@lists.example.org",
                    "--recipient",
                    "me+lists@example.net",
                ])
                .stdin(*msg)
                .run()
                .success();
            assert_eq!(
                our_actions(&ours.stdout()),
                pigeonhole_actions(&theirs),
                "script {si} ({text:?}) on message {mi}:\nours:\n{}\nsieve-test:\n{theirs}",
                ours.stdout()
            );
            compared += 1;
        }
    }
    assert_eq!(compared, scripts.len() * msgs.len());
    assert!(compared > 300);
    assert_eq!(count_files(&md), 0, "dry runs store nothing");
}

#[test]
fn folder_names_from_message_text_cannot_misplace_or_defer_mail() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "s.sieve",
        "require [\"fileinto\", \"mailbox\", \"variables\"];\n\
         if header :matches \"x-folder\" \"*\" { fileinto :create \"${1}\"; }\n",
    );
    let long = "x".repeat(300);
    for name in [long.as_str(), "../../etc", "a..b", ".hidden", "tab\there"] {
        let msg = format!("X-Folder: {name}\nSubject: s\n\nbody\n");
        sieve(&home, &s, &md)
            .stdin(msg)
            .run()
            .success()
            .stderr_has("stored in INBOX instead");
    }
    assert_eq!(maildir_new(&md).len(), 5, "all five in INBOX");
    let entries = dir_names(&md);
    assert_eq!(entries, vec!["cur", "new", "tmp"], "no folder was made");
    assert!(!home.join("etc").exists());
    // A name with non-ASCII letters is kept as Dovecot spells it on disk.
    let msg = "X-Folder: Café.Frühstück\n\nbody\n";
    sieve(&home, &s, &md)
        .stdin(msg)
        .run()
        .success()
        .stderr_empty();
    assert_eq!(read_flags(&md, Some("Caf&AOk-.Fr&APw-hst&APw-ck")).len(), 1);
}

/// Folder name -> sorted flags of each message, as Dovecot lists them over
/// IMAP (LIST, then EXAMINE and FETCH FLAGS in every folder).
fn imap_folders_and_flags(dc: &Dovecot, user: &str) -> Vec<(String, Vec<String>)> {
    let code = r#"
import imaplib, re, sys
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
imap = imaplib.IMAP4(host, port, timeout=60)
imap.login(user, pw)
typ, data = imap.list()
assert typ == "OK", data
names = []
for line in data:
    m = re.match(rb'\((.*?)\) "(.*?)" (.*)$', line)
    if b"\\Noselect" in m.group(1) or b"\\NonExistent" in m.group(1):
        continue
    name = m.group(3).decode()
    if name.startswith('"'):
        name = name[1:-1]
    names.append(name)
for name in sorted(names):
    typ, d = imap.select('"%s"' % name, readonly=True)
    assert typ == "OK", (name, d)
    typ, d = imap.uid("FETCH", "1:*", "(FLAGS)")
    for item in d:
        if not item:
            continue
        fl = re.search(rb'FLAGS \((.*?)\)', item).group(1).decode().split()
        fl = sorted(f for f in fl if f != "\\Recent")
        print(name + "\t" + " ".join(fl))
imap.logout()
"#;
    let port = dc.imap_port.to_string();
    let out = python(
        code,
        &[
            OsStr::new(dc.host),
            OsStr::new(&port),
            OsStr::new(user),
            OsStr::new(Dovecot::PASSWORD),
        ],
    );
    let mut v: Vec<(String, Vec<String>)> = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| {
            let (n, f) = l.split_once('\t').unwrap_or((l, ""));
            (
                n.to_string(),
                f.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn dovecot_sees_the_folders_and_flags_over_imap() {
    if skip_unless(is_root(), "Dovecot read-back needs root") {
        return;
    }
    let home = TempDir::new();
    let md = home.join("mail/Maildir");
    let s = script(
        &home,
        "s.sieve",
        "require [\"fileinto\", \"mailbox\", \"imap4flags\", \"variables\", \"copy\"];\n\
         if header :matches \"x-to\" \"*\" { set \"f\" \"${1}\"; }\n\
         if header :is \"x-flag\" \"yes\" { addflag [\"\\\\Flagged\", \"\\\\Seen\"]; }\n\
         if string :is \"${f}\" \"inbox\" { keep; stop; }\n\
         fileinto :create :copy \"${f}\";\n",
    );
    for (to, flag) in [
        ("Lists.rust", "yes"),
        ("Lists.rust", "no"),
        ("Café", "yes"),
        ("inbox", "yes"),
    ] {
        let msg = format!("X-To: {to}\nX-Flag: {flag}\nSubject: {to}\n\nbody\n");
        sieve(&home, &s, &md)
            .stdin(msg)
            .run()
            .success()
            .stderr_empty();
    }
    make_readable(&home.join("mail"));
    let mut dc = Dovecot::start(&home.join("dovecot"));
    dc.add_user("alice", &md);
    let got = imap_folders_and_flags(&dc, "alice");
    let f = |n: &str, fl: &[&str]| {
        (
            n.to_string(),
            fl.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        got,
        vec![
            f("Caf&AOk-", &["\\Flagged", "\\Seen"]),
            f("INBOX", &[]),
            f("INBOX", &["\\Flagged", "\\Seen"]),
            f("INBOX", &["\\Flagged", "\\Seen"]),
            f("INBOX", &["\\Flagged", "\\Seen"]),
            f("Lists.rust", &[]),
            f("Lists.rust", &["\\Flagged", "\\Seen"]),
        ],
        "Dovecot log errors: {:?}",
        dc.log_errors()
    );
    assert!(dc.log_errors().is_empty(), "{:?}", dc.log_errors());
}

#[test]
fn dovecot_shows_imap_keywords_over_imap() {
    if skip_unless(is_root(), "Dovecot read-back needs root") {
        return;
    }
    let home = TempDir::new();
    let md = home.join("mail/Maildir");
    let s = script(
        &home,
        "s.sieve",
        "require [\"fileinto\", \"mailbox\", \"imap4flags\"];\n\
         if header :is \"x-n\" \"1\" { addflag [\"$Work\", \"\\\\Seen\"]; keep; }\n\
         if header :is \"x-n\" \"2\" { fileinto :create :flags [\"todo\", \"$work\"] \"Jobs\"; }\n\
         if header :is \"x-n\" \"3\" { setflag \"bad(name\"; }\n",
    );
    for n in ["1", "2"] {
        sieve(&home, &s, &md)
            .stdin(format!("X-N: {n}\nSubject: {n}\n\nbody\n"))
            .run()
            .success()
            .stderr_empty();
    }
    // Not an IMAP atom: said, and the message is stored all the same.
    sieve(&home, &s, &md)
        .stdin("X-N: 3\nSubject: 3\n\nbody\n")
        .run()
        .success()
        .stderr_has("flags not stored");
    make_readable(&home.join("mail"));
    let mut dc = Dovecot::start(&home.join("dovecot"));
    // dovecot-keywords is read from the folder's control directory: the
    // Maildir folder itself in Dovecot's default layout.
    dc.add_user_default_layout("alice", &md);
    let got = imap_folders_and_flags(&dc, "alice");
    let f = |n: &str, fl: &[&str]| {
        (
            n.to_string(),
            fl.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        got,
        vec![
            f("INBOX", &[]),
            f("INBOX", &["$Work", "\\Seen"]),
            f("Jobs", &["$work", "todo"]),
        ],
        "Dovecot log errors: {:?}",
        dc.log_errors()
    );
    assert!(dc.log_errors().is_empty(), "{:?}", dc.log_errors());
}

#[test]
fn dry_run_over_an_mbox_stream_numbers_the_messages() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "s.sieve",
        "require \"fileinto\";\nif header :contains \"subject\" \"rust\" { fileinto \"Rust\"; }\n",
    );
    let mbox = b"From a@example.org Thu Jan  1 00:00:00 2026\nSubject: rust news\n\none\n\n\
From b@example.org Thu Jan  1 00:00:00 2026\nSubject: other\n\ntwo\n";
    let out = sieve(&home, &s, &md)
        .args(["--split", "--dry-run", "--json"])
        .stdin(mbox.to_vec())
        .run()
        .success();
    let recs: Vec<serde_json::Value> = out
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2, "{}", out.stdout());
    assert_eq!(
        (recs[0]["message"].as_u64(), recs[0]["action"].as_str()),
        (Some(1), Some("fileinto"))
    );
    assert_eq!(recs[0]["line"], 2);
    assert_eq!(
        (recs[1]["message"].as_u64(), recs[1]["implicit"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(count_files(&md), 0);
}

/// `--split` with a script stores every message of an mbox where the
/// script says; an mbox has nobody to bounce to or answer, so reject keeps
/// the message in INBOX and redirect sends nothing (kept too), each said
/// on stderr, as Pigeonhole's sieve-filter does.
#[test]
fn split_filters_an_mbox_into_folders_and_never_bounces_or_sends() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    let s = script(
        &home,
        "s.sieve",
        "require [\"fileinto\", \"reject\", \"mailbox\"];\n\
         if header :contains \"subject\" \"rust\" { fileinto :create \"Rust\"; stop; }\n\
         if header :contains \"subject\" \"spam\" { reject \"no\"; stop; }\n\
         if header :contains \"subject\" \"fwd\" { redirect \"far@example.net\"; }\n",
    );
    let mbox = b"From a@example.org Thu Jan  1 00:00:00 2026\nSubject: rust news\n\none\n\n\
From b@example.org Thu Jan  1 00:00:00 2026\nSubject: other\n\ntwo\n\n\
From c@example.org Thu Jan  1 00:00:00 2026\nSubject: spam\n\nthree\n\n\
From d@example.org Thu Jan  1 00:00:00 2026\nSubject: fwd this\n\nfour\n";
    let out = sieve(&home, &s, &md)
        .arg("--split")
        .stdin(mbox.to_vec())
        .run()
        .success()
        .stderr_has("nobody to bounce to")
        .stderr_has("nothing is sent");
    let bodies = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join("new"))
            .unwrap()
            .flatten()
            .map(|e| {
                let t = fs::read_to_string(e.path()).unwrap();
                t.lines().last().unwrap_or("").to_string()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(bodies(&md.join(".Rust")), vec!["one"], "{}", out.stderr());
    assert_eq!(bodies(&md), vec!["four", "three", "two"]);
    // The dry run says the same of the reject and the redirect.
    let dry = sieve(&home, &s, &md)
        .args(["--split", "--dry-run", "--json"])
        .stdin(mbox.to_vec())
        .run()
        .success();
    let recs: Vec<serde_json::Value> = dry
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let skipped = |action: &str| {
        recs.iter()
            .find(|r| r["action"] == action)
            .and_then(|r| r["skipped"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    assert!(
        skipped("reject").contains("nobody to bounce to"),
        "{}",
        dry.stdout()
    );
    assert!(
        skipped("redirect").contains("nothing is sent"),
        "{}",
        dry.stdout()
    );
}

// ---------------------------------------------------------------------------
// --expect DIR: saved messages against saved actions.
// ---------------------------------------------------------------------------

const EXPECT_SCRIPT: &str = "require [\"fileinto\", \"imap4flags\", \"variables\", \"envelope\", \"reject\", \"mailbox\"];\n\
if envelope :is \"from\" \"spam@bad.example\" { reject \"go away\"; stop; }\n\
if header :contains \"subject\" \"rust\" { fileinto :create :flags \"\\\\Seen\" \"Lists.rust\"; }\n\
if header :matches \"subject\" \"tab *\" { fileinto \"${1}\"; }\n";

/// A case directory: `rust` (filed), `plain` (implicit keep) and `tab`
/// (a folder name with a tab from an encoded word).
fn expect_dir(home: &TempDir) -> std::path::PathBuf {
    let d = home.join("cases");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("rust.eml"), MSG).unwrap();
    fs::write(
        d.join("plain.eml"),
        b"From: b@example.org\nSubject: hello\n\nhi\n",
    )
    .unwrap();
    fs::write(
        d.join("tab.eml"),
        b"From: c@example.org\nSubject: tab =?UTF-8?Q?a=09b?=\n\nhi\n",
    )
    .unwrap();
    d
}

fn expect_tool(home: &TempDir, s: &str, dir: &Path) -> Tool {
    Tool::new(TOOL, home.path()).args(["--sieve", s, "--expect", &dir.display().to_string()])
}

#[test]
fn expect_passes_a_dir_and_shows_a_failing_case_as_a_diff() {
    let home = TempDir::new();
    let s = script(&home, "s.sieve", EXPECT_SCRIPT);
    let d = expect_dir(&home);
    fs::write(
        d.join("plain.expect"),
        "# a message that no rule takes\nkeep\n",
    )
    .unwrap();
    fs::write(
        d.join("rust.expect"),
        "fileinto \"Lists.rust\" :create :flags \\Seen\n",
    )
    .unwrap();
    fs::write(d.join("tab.expect"), "fileinto \"a\\tb\"\n").unwrap();
    let out = expect_tool(&home, &s, &d).run().success();
    assert_eq!(
        out.stdout_lines(),
        ["ok plain", "ok rust", "ok tab", "3 passed, 0 failed"],
        "{}",
        out.stderr()
    );
    // The envelope of one case from its .expect: now it is rejected.
    fs::write(d.join("plain.expect"), "# from: spam@bad.example\nkeep\n").unwrap();
    let out = expect_tool(&home, &s, &d).run().code_is(1);
    assert_eq!(
        out.stdout_lines(),
        [
            "FAIL plain",
            "-keep",
            "+reject \"go away\"",
            "ok rust",
            "ok tab",
            "2 passed, 1 failed"
        ]
    );
    assert_eq!(count_files(&home.join("Maildir")), 0, "nothing stored");
}

#[test]
fn expect_update_writes_what_the_next_run_passes() {
    let home = TempDir::new();
    let s = script(&home, "s.sieve", EXPECT_SCRIPT);
    let d = expect_dir(&home);
    fs::write(
        d.join("plain.expect"),
        "# from: spam@bad.example\ndiscard\n",
    )
    .unwrap();
    // Before: no expectations for two cases, a wrong one for the third.
    let out = expect_tool(&home, &s, &d).run().code_is(1);
    assert!(
        out.stdout_lines()
            .contains(&"FAIL rust (no rust.expect)".to_string())
    );
    assert_eq!(out.stdout_lines().last().unwrap(), "0 passed, 3 failed");
    let out = expect_tool(&home, &s, &d)
        .arg("--expect-update")
        .run()
        .success();
    assert_eq!(
        out.stdout_lines(),
        [
            "updated plain",
            "updated rust",
            "updated tab",
            "3 passed, 0 failed"
        ]
    );
    assert_eq!(
        fs::read_to_string(d.join("plain.expect")).unwrap(),
        "# from: spam@bad.example\nreject \"go away\"\n",
        "the envelope header is kept"
    );
    assert_eq!(
        fs::read_to_string(d.join("rust.expect")).unwrap(),
        "fileinto \"Lists.rust\" :create :flags \\Seen\n"
    );
    assert_eq!(
        fs::read_to_string(d.join("tab.expect")).unwrap(),
        "fileinto \"a\\tb\"\n",
        "control characters escaped"
    );
    let out = expect_tool(&home, &s, &d).run().success();
    assert_eq!(out.stdout_lines().last().unwrap(), "3 passed, 0 failed");
}

#[test]
fn expect_usage_errors_broken_scripts_and_unreadable_messages() {
    let home = TempDir::new();
    let s = script(&home, "s.sieve", EXPECT_SCRIPT);
    let d = expect_dir(&home);
    // No --sieve; a directory that is not there.
    Tool::new(TOOL, home.path())
        .args(["--expect", &d.display().to_string()])
        .run()
        .code_is(64)
        .stderr_has("needs --sieve");
    expect_tool(&home, &s, &home.join("nowhere"))
        .run()
        .code_is(64)
        .stderr_has("not a directory");
    // --expect with a destination makes no sense.
    expect_tool(&home, &s, &d)
        .arg(md_arg(&home.join("Maildir")))
        .run()
        .code_is(64);
    // A script that does not compile fails every case: exit 65, and
    // --expect-update writes nothing from it.
    let bad = script(&home, "bad.sieve", "keep;\nfileinto \"x\";\n");
    let out = expect_tool(&home, &bad, &d)
        .arg("--expect-update")
        .run()
        .code_is(65)
        .stderr_has("line 2, column 1");
    assert_eq!(out.stdout_lines().last().unwrap(), "0 passed, 3 failed");
    assert!(!d.join("rust.expect").exists());
    // An unreadable (empty) message: 65, the other cases still run.
    expect_tool(&home, &s, &d)
        .arg("--expect-update")
        .run()
        .success();
    fs::write(d.join("empty.eml"), b"").unwrap();
    let out = expect_tool(&home, &s, &d)
        .run()
        .code_is(65)
        .stderr_has("empty message");
    assert_eq!(
        out.stdout_lines(),
        [
            "FAIL empty",
            "ok plain",
            "ok rust",
            "ok tab",
            "3 passed, 1 failed"
        ]
    );
}

#[test]
fn editheader_changes_what_is_stored_and_include_reads_beside_the_script() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    fs::create_dir_all(md.join(".Known/cur")).unwrap();
    fs::create_dir_all(md.join(".Known/new")).unwrap();
    fs::create_dir_all(md.join(".Known/tmp")).unwrap();
    script(
        &home,
        "lists.sieve",
        "require [\"include\", \"variables\", \"editheader\"];\n\
         global \"tag\";\n\
         if header :contains \"list-id\" \"rust\" { set \"tag\" \"rust\"; addheader \"X-Tag\" \"${tag}\"; }\n",
    );
    let s = script(
        &home,
        "s.sieve",
        "require [\"include\", \"variables\", \"editheader\", \"fileinto\", \"mailbox\"];\n\
         global \"tag\";\n\
         deleteheader \"list-id\";\n\
         include \"lists\";\n\
         deleteheader \"received\";\n\
         if allof (mailboxexists \"Known\", not mailboxexists \"Unknown\", header \"x-tag\" \"rust\", not exists \"list-id\") {\n\
           fileinto \"Known\";\n\
         }\n",
    );
    let msg =
        b"Received: from a by b; Tue, 1 Jul 2003 10:52:40 +0200\nSubject: x\nX-Other: y\n\nbody\n";
    let with_list: Vec<u8> = [&b"List-Id: <rust.example.org>\n"[..], msg].concat();
    // The included script sees the message as edited: the List-Id is
    // already gone, so no tag and no filing.
    sieve(&home, &s, &md)
        .stdin(&with_list[..])
        .run()
        .success()
        .stderr_empty();
    let inbox = read_flags(&md, None);
    assert_eq!(inbox.len(), 1, "kept: the included script saw no List-Id");
    assert_eq!(
        inbox[0].1,
        &msg[..],
        "stored without the deleted List-Id; Received is protected"
    );
    // Now a script whose include adds the header the filing test needs.
    let s2 = script(
        &home,
        "s2.sieve",
        "require [\"include\", \"variables\", \"editheader\", \"fileinto\", \"mailbox\"];\n\
         global \"tag\";\n\
         include \"lists\";\n\
         deleteheader \"list-id\";\n\
         if allof (mailboxexists \"Known\", not mailboxexists \"Unknown\", header \"x-tag\" \"rust\", not exists \"list-id\") {\n\
           fileinto \"Known\";\n\
         }\n",
    );
    sieve(&home, &s2, &md)
        .stdin(&with_list[..])
        .run()
        .success()
        .stderr_empty();
    let known = read_flags(&md, Some("Known"));
    assert_eq!(known.len(), 1);
    let want: Vec<u8> = [&b"X-Tag: rust\n"[..], msg].concat();
    assert_eq!(known[0].1, want);
    // A missing include keeps the message and says where.
    let s3 = script(
        &home,
        "s3.sieve",
        "require [\"include\", \"fileinto\"];\ninclude \"nowhere\";\nfileinto \"Known\";\n",
    );
    sieve(&home, &s3, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("line 2, column 1: include: personal script \"nowhere\" not found");
    assert_eq!(read_flags(&md, None).len(), 2);
}

#[test]
fn include_global_reads_the_configured_directory() {
    let home = TempDir::new();
    let md = home.join("Maildir");
    fs::create_dir_all(home.join("global")).unwrap();
    fs::write(
        home.join("global/spam.sieve"),
        "require [\"fileinto\", \"copy\"]; fileinto :copy \"Seen\";",
    )
    .unwrap();
    // A personal script of the same name must not be the one read.
    script(&home, "spam.sieve", "discard;");
    let s = script(
        &home,
        "s.sieve",
        "require [\"include\", \"fileinto\"];\ninclude :global \"spam\";\n",
    );
    // Without the setting, :global has nowhere to look: the message is
    // kept and the reason given.
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_has("line 2, column 1: include: no global script location is configured");
    assert_eq!(read_flags(&md, None).len(), 1);
    fs::create_dir_all(home.join(".config/postline")).unwrap();
    fs::write(
        home.join(".config/postline/config.toml"),
        "[deliver]\nsieve_global = \"~/global\"\n",
    )
    .unwrap();
    fs::create_dir_all(md.join(".Seen/cur")).unwrap();
    fs::create_dir_all(md.join(".Seen/new")).unwrap();
    fs::create_dir_all(md.join(".Seen/tmp")).unwrap();
    sieve(&home, &s, &md)
        .stdin(MSG)
        .run()
        .success()
        .stderr_empty();
    assert_eq!(
        read_flags(&md, Some("Seen")).len(),
        1,
        "the global script ran"
    );
    assert_eq!(
        read_flags(&md, None).len(),
        2,
        "and :copy kept the implicit keep"
    );
}
