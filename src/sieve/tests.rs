//! Unit tests of the interpreter, one group per construct.

use super::*;

const MSG: &[u8] = b"Return-Path: <bounce@lists.example.org>\n\
From: \"Alice Doe\" <alice+rust@Example.ORG>\n\
To: me@example.net, Bob <bob@example.net>\n\
Cc: carol@example.com\n\
Subject: =?UTF-8?B?w6l0w6k=?= [rust] Weekly news\n\
Date: Tue, 1 Jul 2003 10:52:37 +0200\n\
List-Id: <rust.lists.example.org>\n\
X-Spam-Score: 7\n\
Received: from a by b; Tue, 1 Jul 2003 10:52:40 +0200\n\
Received: from c by d; Tue, 1 Jul 2003 10:52:39 +0200\n\
\n\
Hello world, this is the body.\n";

fn input(msg: &[u8]) -> Input<'_> {
    Input {
        message: msg,
        envelope_from: Some("bounce@lists.example.org"),
        envelope_to: Some("me+filter@example.net"),
        now: 1_767_225_600, // 2026-01-01T00:00:00Z, a Thursday
        local_offset: 0,
    }
}

/// The actions as short strings: `keep`, `fileinto:A`, `discard`, ...,
/// the implicit keep as `implicit-keep`.
fn run_on(script: &str, msg: &[u8]) -> Vec<String> {
    let s = compile_script(script).unwrap_or_else(|e| panic!("{script}: {e}"));
    let out = run(&s, input(msg), Limits::default());
    if let Some(e) = out.error {
        return vec![format!("error: {e}")];
    }
    out.actions.iter().map(short).collect()
}

fn short(a: &Action) -> String {
    let implicit = a.pos.is_none();
    match &a.kind {
        ActionKind::Keep { flags } if flags.is_empty() => {
            if implicit {
                "implicit-keep".into()
            } else {
                "keep".into()
            }
        }
        ActionKind::Keep { flags } => format!(
            "{}:{}",
            if implicit { "implicit-keep" } else { "keep" },
            flags.join(" ")
        ),
        ActionKind::FileInto {
            mailbox,
            flags,
            create,
            copy,
        } => {
            let mut s = format!("fileinto:{mailbox}");
            if !flags.is_empty() {
                s += &format!(":{}", flags.join(" "));
            }
            if *create {
                s += ":create";
            }
            if *copy {
                s += ":copy";
            }
            s
        }
        ActionKind::Discard => "discard".into(),
        ActionKind::Reject { reason, extended } => {
            format!("{}:{reason}", if *extended { "ereject" } else { "reject" })
        }
        ActionKind::Redirect { address, copy } => {
            format!("redirect:{address}{}", if *copy { ":copy" } else { "" })
        }
        ActionKind::Vacation { reason, .. } => format!("vacation:{reason}"),
    }
}

fn t(script: &str) -> Vec<String> {
    run_on(script, MSG)
}

fn yes(test: &str, req: &str) -> bool {
    let s = format!("require [\"fileinto\"{req}];\nif {test} {{ fileinto \"Y\"; }}");
    let a = t(&s);
    assert!(!a[0].starts_with("error"), "{test}: {a:?}");
    a == vec!["fileinto:Y"]
}

fn compile_err(script: &str) -> CompileError {
    compile_script(script).expect_err(script)
}

#[test]
fn empty_script_keeps() {
    assert_eq!(t(""), vec!["implicit-keep"]);
    assert_eq!(t("# nothing\n/* at all */"), vec!["implicit-keep"]);
}

#[test]
fn keep_discard_stop() {
    assert_eq!(t("keep;"), vec!["keep"]);
    assert_eq!(t("discard;"), vec!["discard"]);
    assert_eq!(t("stop; discard;"), vec!["implicit-keep"]);
    assert_eq!(t("discard; keep;"), vec!["discard", "keep"]);
}

#[test]
fn if_elsif_else() {
    let s = "require \"fileinto\";\nif false { fileinto \"A\"; }\nelsif true { fileinto \"B\"; }\nelse { fileinto \"C\"; }";
    assert_eq!(t(s), vec!["fileinto:B"]);
    let s = "require \"fileinto\";\nif false { fileinto \"A\"; } elsif false { fileinto \"B\"; } else { fileinto \"C\"; }";
    assert_eq!(t(s), vec!["fileinto:C"]);
}

#[test]
fn actions_carry_line_and_test() {
    let s = compile_script("require \"fileinto\";\n\nif header :contains \"subject\"\n   \"rust\" {\n  fileinto \"Lists.rust\";\n}").unwrap();
    let out = run(&s, input(MSG), Limits::default());
    assert_eq!(out.actions.len(), 1);
    let a = &out.actions[0];
    assert_eq!(a.pos, Some(Pos { line: 5, col: 3 }));
    assert_eq!(
        a.test.as_deref(),
        Some("header :contains \"subject\" \"rust\" (line 3)")
    );
}

#[test]
fn header_test_decodes_rfc2047_and_compares() {
    assert!(yes("header :is \"Subject\" \"été [rust] Weekly news\"", ""));
    assert!(yes("header :contains \"subject\" \"WEEKLY\"", ""));
    assert!(!yes(
        "header :contains :comparator \"i;octet\" \"subject\" \"WEEKLY\"",
        ""
    ));
    assert!(yes("header :matches \"subject\" \"*[rust]*\"", ""));
    assert!(yes("header :matches \"x-spam-score\" \"?\"", ""));
    // "?" is one octet, as RFC 4790's comparators see it: "é" is two.
    assert!(!yes("header :matches \"subject\" \"?t? *\"", ""));
    assert!(yes("header :matches \"subject\" \"??t?? *\"", ""));
    assert!(!yes("header :matches \"subject\" \"*\\\\[rust\\\\]\"", ""));
    assert!(yes("header :matches \"x-spam-score\" \"\\\\7\"", ""));
    assert!(yes(
        "header :is [\"x-none\", \"cc\"] [\"no\", \"carol@example.com\"]",
        ""
    ));
    assert!(!yes("header :is \"x-none\" \"\"", ""));
}

#[test]
fn address_parts_and_subaddress() {
    assert!(yes("address :is \"from\" \"alice+rust@example.org\"", ""));
    assert!(yes("address :localpart :is \"from\" \"alice+rust\"", ""));
    assert!(yes("address :domain :is \"from\" \"example.org\"", ""));
    assert!(yes("address :all :is \"to\" \"bob@example.net\"", ""));
    assert!(yes(
        "address :user :is \"from\" \"alice\"",
        ", \"subaddress\""
    ));
    assert!(yes(
        "address :detail :is \"from\" \"rust\"",
        ", \"subaddress\""
    ));
    assert!(!yes(
        "address :detail :matches \"to\" \"*\"",
        ", \"subaddress\""
    ));
    assert_eq!(
        compile_err("if address :user \"from\" \"x\" { keep; }").pos,
        Pos { line: 1, col: 12 }
    );
}

#[test]
fn envelope_test() {
    assert!(yes(
        "envelope :domain :is \"from\" \"lists.example.org\"",
        ", \"envelope\""
    ));
    assert!(yes(
        "envelope :detail :is \"to\" \"filter\"",
        ", \"envelope\", \"subaddress\""
    ));
    assert!(compile_script("if envelope \"from\" \"x\" { keep; }").is_err());
    assert!(
        compile_script("require \"envelope\"; if envelope \"x-auth\" \"x\" { keep; }").is_err()
    );
}

#[test]
fn exists_size_logic() {
    assert!(yes("exists [\"from\", \"list-id\"]", ""));
    assert!(!yes("exists [\"from\", \"x-nope\"]", ""));
    assert!(yes("size :over 100", ""));
    assert!(yes("size :under 1K", ""));
    assert!(!yes("size :over 1M", ""));
    assert!(yes("allof(true, not false)", ""));
    assert!(!yes("allof(true, false)", ""));
    assert!(yes("anyof(false, true)", ""));
    assert!(!yes("anyof(false, false)", ""));
    assert!(yes("not not true", ""));
}

#[test]
fn fileinto_flags_copy_create() {
    let s = "require [\"fileinto\", \"imap4flags\", \"copy\", \"mailbox\"];\naddflag \"\\\\Seen\";\nfileinto :copy :create \"A.B\";\nfileinto :flags [\"\\\\Flagged\", \"\\\\Answered\"] \"C\";";
    assert_eq!(
        t(s),
        vec![
            "fileinto:A.B:\\Seen:create:copy",
            "fileinto:C:\\Flagged \\Answered"
        ]
    );
    // Flags reach the implicit keep; duplicates are stored once.
    let s = "require [\"imap4flags\", \"fileinto\", \"copy\"];\nsetflag [\"\\\\Seen \\\\Seen\", \"\\\\flagged\"];\nremoveflag \"\\\\Flagged\";\nfileinto :copy \"X\"; fileinto :copy \"X\";";
    assert_eq!(t(s), vec!["fileinto:X:\\Seen:copy", "implicit-keep:\\Seen"]);
    assert!(!yes("hasflag :is \"\\\\seen\"", ", \"imap4flags\""));
    let s = "require [\"imap4flags\", \"fileinto\"]; addflag \"$Work\"; if hasflag :contains \"work\" { fileinto \"W\"; }";
    assert_eq!(t(s), vec!["fileinto:W:$Work"]);
}

#[test]
fn reject_and_conflicts() {
    assert_eq!(
        t("require \"reject\"; reject \"go away\";"),
        vec!["reject:go away"]
    );
    assert_eq!(
        t("require \"ereject\"; ereject \"no\";"),
        vec!["ereject:no"]
    );
    let a = t("require [\"reject\"]; keep; reject \"x\";");
    assert!(a[0].starts_with("error: line 1, column 27"), "{a:?}");
}

#[test]
fn redirect_and_vacation_are_reported() {
    assert_eq!(t("redirect \"a@b.example\";"), vec!["redirect:a@b.example"]);
    assert_eq!(
        t("require \"copy\"; redirect :copy \"a@b.example\";"),
        vec!["redirect:a@b.example:copy", "implicit-keep"]
    );
    assert_eq!(
        t("require \"vacation\"; vacation :days 7 :subject \"away\" \"I am away\";"),
        vec!["vacation:I am away", "implicit-keep"]
    );
    let s = compile_script(
        "redirect \"1@x\"; redirect \"2@x\"; redirect \"3@x\"; redirect \"4@x\"; redirect \"5@x\";",
    )
    .unwrap();
    let out = run(&s, input(MSG), Limits::default());
    assert_eq!(out.actions.len(), 4);
    assert_eq!(out.notes.len(), 1, "{:?}", out.notes);
}

#[test]
fn variables_and_match_variables() {
    let s = "require [\"variables\", \"fileinto\"];\nif header :matches \"list-id\" \"<*.lists.*>\" { set :lower \"l\" \"${1}\"; fileinto \"Lists.${l}\"; }";
    assert_eq!(t(s), vec!["fileinto:Lists.rust"]);
    let s = "require [\"variables\", \"fileinto\"];\nset \"a\" \"x\"; set :upperfirst \"b\" \"${a}yz\"; set :length \"n\" \"${b}\"; fileinto \"${b}-${n}-${unset}-${bad name}\";";
    assert_eq!(t(s), vec!["fileinto:Xyz-3--${bad name}"]);
    assert!(yes("string :is \"${undefined}\" \"\"", ", \"variables\""));
    // Doubling cannot grow without bound.
    let mut s = String::from("require \"variables\"; set \"a\" \"xxxxxxxxxxxxxxxx\";\n");
    for _ in 0..40 {
        s.push_str("set \"a\" \"${a}${a}\";\n");
    }
    s.push_str(
        "if string :count \"ge\" :comparator \"i;ascii-numeric\" \"${a}\" \"1\" { discard; }",
    );
    assert!(
        compile_script(&s).is_err(),
        "needs the numeric comparator required"
    );
    let s = s.replace(
        "require \"variables\"",
        "require [\"variables\", \"relational\", \"comparator-i;ascii-numeric\"]",
    );
    assert_eq!(t(&s), vec!["discard"]);
}

#[test]
fn relational_count_and_value() {
    let r = ", \"relational\", \"comparator-i;ascii-numeric\"";
    assert!(yes(
        "header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"5\"",
        r
    ));
    assert!(!yes(
        "header :value \"lt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"5\"",
        r
    ));
    assert!(yes(
        "header :count \"eq\" :comparator \"i;ascii-numeric\" \"received\" \"2\"",
        r
    ));
    assert!(yes(
        "address :count \"eq\" :comparator \"i;ascii-numeric\" [\"to\", \"cc\"] \"3\"",
        r
    ));
    assert!(yes("header :value \"ge\" \"subject\" \"A\"", r));
    assert!(
        compile_script("require \"relational\"; if header :value \"xx\" \"a\" \"b\" { keep; }")
            .is_err()
    );
}

#[test]
fn body_test() {
    assert!(yes("body :contains \"this is the\"", ", \"body\""));
    assert!(yes("body :raw :contains \"world\"", ", \"body\""));
    assert!(!yes(
        "body :content \"image\" :contains \"world\"",
        ", \"body\""
    ));
}

#[test]
fn date_and_currentdate() {
    let d = ", \"date\", \"relational\"";
    assert!(yes("date :originalzone \"date\" \"hour\" \"10\"", d));
    assert!(yes("date \"date\" \"time\" \"08:52:37\"", d));
    assert!(yes(
        "date :zone \"-0500\" \"date\" \"iso8601\" \"2003-07-01T03:52:37-05:00\"",
        d
    ));
    assert!(yes(
        "date :originalzone \"date\" \"std11\" \"Tue, 01 Jul 2003 10:52:37 +0200\"",
        d
    ));
    assert!(yes("date \"received\" \"second\" \"40\"", d));
    assert!(yes("currentdate \"date\" \"2026-01-01\"", d));
    assert!(yes("currentdate \"weekday\" \"4\"", d));
    assert!(yes("currentdate \"julian\" \"61041\"", d));
    assert!(yes("currentdate :value \"ge\" \"year\" \"2026\"", d));
    assert!(!yes("date \"x-spam-score\" \"year\" \"7\"", d));
    assert!(
        compile_script("require \"date\"; if currentdate \"fortnight\" \"1\" { keep; }").is_err()
    );
}

#[test]
fn require_is_checked_with_positions() {
    let e = compile_err("require [\"fileinto\", \"vnd.foo\"];");
    assert_eq!(e.pos, Pos { line: 1, col: 9 });
    assert!(e.msg.contains("vnd.foo"));
    let e = compile_err("keep;\n  fileinto \"x\";");
    assert_eq!(e.pos, Pos { line: 2, col: 3 });
    assert!(e.msg.contains("require \"fileinto\""));
    let e = compile_err("keep; require \"fileinto\";");
    assert_eq!(e.pos, Pos { line: 1, col: 7 });
    let e = compile_err("if true { keep }");
    assert_eq!(e.pos, Pos { line: 1, col: 16 });
    assert!(compile_err("frobnicate;").msg.contains("unknown command"));
    assert!(
        compile_err("if frob { keep; }")
            .msg
            .contains("unknown test")
    );
    assert!(
        compile_err("if header :regex \"a\" \"b\" { keep; }")
            .msg
            .contains(":regex")
    );
    assert!(compile_err("else { keep; }").msg.contains("without"));
    assert!(compile_err("if size 10 { keep; }").msg.contains(":over"));
    assert!(
        compile_err("if header :is :contains \"a\" \"b\" { keep; }")
            .msg
            .contains("cannot both")
    );
    assert!(compile_err("keep").msg.contains("';'"));
    assert!(compile_err(&"if not ".repeat(100)).msg.contains("nested"));
}

#[test]
fn multiline_strings_in_commands() {
    let s = "require \"reject\";\nreject text:\nNot here.\n..\n.\n;";
    assert_eq!(t(s), vec!["reject:Not here.\r\n.\r\n"]);
}

#[test]
fn step_budget_stops_a_run_and_keeps() {
    let key = "*a".repeat(30) + "b";
    let s = compile_script(&format!(
        "if header :matches \"subject\" \"{key}\" {{ discard; }}"
    ))
    .unwrap();
    let big = format!("Subject: {}\n\nx\n", "a".repeat(5000));
    let out = run(&s, input(big.as_bytes()), Limits { max_steps: 10_000 });
    assert!(out.error.is_some());
    assert_eq!(out.actions.len(), 1);
    assert_eq!(out.actions[0].pos, None);
}

#[test]
fn glob_captures_shortest_first() {
    let s = "require [\"variables\", \"fileinto\"];\nif header :matches \"from\" \"*<*@*>\" { fileinto \"${2}.${3}\"; }";
    assert_eq!(t(s), vec!["fileinto:alice+rust.Example.ORG"]);
}

/// A cheap stand-in for the fuzz target in the unit tests: token soups
/// from the grammar's vocabulary never panic, and every script that
/// compiles runs to an end with at least one action.
#[test]
fn token_soup_never_panics() {
    const WORDS: &[&str] = &[
        "require",
        "[\"fileinto\",\"variables\",\"imap4flags\",\"relational\",\"date\",\"body\",\"envelope\",\"subaddress\",\"copy\",\"mailbox\",\"reject\",\"comparator-i;ascii-numeric\"]",
        "if",
        "elsif",
        "else",
        "{",
        "}",
        "(",
        ")",
        ",",
        ";",
        ";",
        "keep",
        "discard",
        "stop",
        "fileinto",
        "redirect",
        "reject",
        "set",
        "addflag",
        "setflag",
        "removeflag",
        "header",
        "address",
        "envelope",
        "exists",
        "size",
        "allof",
        "anyof",
        "not",
        "true",
        "false",
        "body",
        "date",
        "currentdate",
        "hasflag",
        "string",
        ":is",
        ":contains",
        ":matches",
        ":count",
        ":value",
        ":comparator",
        ":over",
        ":under",
        ":all",
        ":localpart",
        ":domain",
        ":user",
        ":detail",
        ":flags",
        ":copy",
        ":create",
        ":lower",
        ":length",
        ":text",
        ":raw",
        ":content",
        ":zone",
        ":originalzone",
        "\"subject\"",
        "\"*a*?\\\\*\"",
        "\"${1}${a}\"",
        "\"a\"",
        "\"i;ascii-numeric\"",
        "\"gt\"",
        "\"date\"",
        "\"+0100\"",
        "[\"from\",\"to\"]",
        "10K",
        "0",
        "text:\nx\n.\n",
        "#c\n",
        "/*c*/",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut compiled = 0;
    for _ in 0..20_000 {
        let n = (next() % 24) as usize;
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
            s.push(' ');
        }
        if let Ok(script) = compile_script(&s) {
            compiled += 1;
            let out = run(&script, input(MSG), Limits { max_steps: 50_000 });
            assert!(!out.actions.is_empty(), "{s}");
        }
    }
    assert!(
        compiled > 100,
        "only {compiled} scripts compiled: the soup is too thin"
    );
}

#[test]
fn many_fields_times_many_tests_hit_the_budget() {
    let script = "if header :is \"x-absent\" \"y\" { }\n".repeat(2000);
    let s = compile_script(&script).unwrap();
    let mut msg = String::new();
    for i in 0..5000 {
        msg.push_str(&format!("X-F{i}: v\n"));
    }
    msg.push_str("\nbody\n");
    let out = run(&s, input(msg.as_bytes()), Limits::default());
    let e = out.error.expect("the header scans are charged");
    assert!(e.msg.contains("step budget"), "{e}");
    assert_eq!(out.actions.len(), 1, "only the implicit keep remains");
}

#[test]
fn extreme_clocks_do_not_overflow() {
    let s =
        compile_script("require \"date\"; if currentdate \"std11\" \"x\" { discard; }").unwrap();
    for now in [i64::MIN, -1, 0, i64::MAX] {
        let mut i = input(MSG);
        i.now = now;
        i.local_offset = -(99 * 60 + 59);
        let out = run(&s, i, Limits::default());
        assert!(out.error.is_none());
    }
}

#[test]
fn the_compiler_goes_on_after_an_error_and_reports_each() {
    let errs = super::compile_script_all(
        "fileinto \"A\";\nif header :frop \"a\" \"b\" { redirect; } else { keep 1; }\nkeep;\n",
    )
    .unwrap_err();
    let at: Vec<(u32, u32)> = errs.iter().map(|e| (e.pos.line, e.pos.col)).collect();
    assert_eq!(at, [(1, 1), (2, 11), (2, 27), (2, 46)], "{errs:?}");
    // The first is what compile_script reports.
    assert_eq!(
        super::compile_script("fileinto \"A\";\nkeep 1;\n")
            .unwrap_err()
            .pos
            .line,
        1
    );
    // A script with many errors keeps at most MAX_ERRORS of them.
    let many = "keep 1;\n".repeat(100);
    assert_eq!(
        super::compile_script_all(&many).unwrap_err().len(),
        super::compile::MAX_ERRORS
    );
}

#[test]
fn vacation_and_reject_cannot_both_be_used() {
    for body in [
        "vacation \"away\"; reject \"no\";",
        "reject \"no\"; vacation \"away\";",
    ] {
        let s = compile_script(&format!("require [\"vacation\", \"reject\"]; {body}")).unwrap();
        let out = run(&s, input(MSG), Limits::default());
        let e = out.error.expect(body);
        assert!(e.msg.contains("vacation and reject"), "{e}");
        // Only the implicit keep remains.
        assert_eq!(out.actions.len(), 1, "{body}");
        assert!(out.actions[0].pos.is_none());
    }
}

#[test]
fn body_is_compared_with_crlf_line_ends_and_a_header_alone_has_none() {
    let s = compile_script(
        "require \"body\";\nif body :raw :is text:\nline 1\nline 2\n.\n{ discard; }\n",
    )
    .unwrap();
    // Stored with LF; the text: key has CRLF (RFC 5228): they match.
    let out = run(
        &s,
        input(b"Subject: x\n\nline 1\nline 2\n"),
        Limits::default(),
    );
    assert!(
        matches!(out.actions[0].kind, ActionKind::Discard),
        "{:?}",
        out.actions
    );
    let s =
        compile_script("require \"body\";\nif body :raw :contains \"\" { discard; }\n").unwrap();
    let out = run(&s, input(b"Subject: no body\n"), Limits::default());
    assert!(
        !out.actions
            .iter()
            .any(|a| matches!(a.kind, ActionKind::Discard))
    );
    let out = run(&s, input(b"Subject: empty body\n\n"), Limits::default());
    assert!(
        out.actions
            .iter()
            .any(|a| matches!(a.kind, ActionKind::Discard))
    );
}

#[test]
fn a_reference_to_an_unknown_variable_namespace_does_not_compile() {
    let e = compile_err("require [\"variables\", \"fileinto\"]; fileinto \"${ns.frop}\";");
    assert!(e.msg.contains("namespace \"ns\""), "{e}");
    // Plain names, match variables and strings without variables are fine.
    assert!(
        compile_script("require [\"variables\", \"fileinto\"]; fileinto \"${a}${1}\";").is_ok()
    );
    assert!(compile_script("require \"fileinto\"; fileinto \"${ns.frop}\";").is_ok());
    // Limits: match values kept, name length, names set.
    assert!(compile_script("require \"variables\"; if string \"${32}\" \"\" { }").is_ok());
    assert!(compile_script("require \"variables\"; if string \"${33}\" \"\" { }").is_err());
    let long = "v".repeat(65);
    assert!(compile_script(&format!("require \"variables\"; set \"{long}\" \"x\";")).is_err());
    let many: String = (0..256).map(|i| format!("set \"v{i}\" \"x\";\n")).collect();
    let errs = super::compile_script_all(&format!("require \"variables\";\n{many}")).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].pos.line, 257);
}
