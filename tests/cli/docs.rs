//! Man page and completion checks.
//!
//! Every tool in `postline::tools::all()` has a page `man/<tool>.1` with the
//! usual sections, documenting every option of its clap command and only
//! exit codes that `src/exit.rs` defines; every page passes `mandoc -T lint`;
//! the section 7 overview names every tool; and the shell completions in
//! `completions/` are exactly what clap_complete generates today (regenerate
//! with `cargo run --example gen-completions`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap_complete::Shell;

use crate::harness::skip_unless;

/// Sections every tool's page must have.
const REQUIRED_SECTIONS: &[&str] = &[
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "EXIT STATUS",
    "FILES",
    "EXAMPLES",
    "SEE ALSO",
];

/// The shells we ship completions for, and the file name for each.
const SHELLS: &[Shell] = &[Shell::Bash, Shell::Zsh, Shell::Fish];

fn completion_file(shell: Shell, tool: &str) -> String {
    match shell {
        Shell::Bash => format!("{tool}.bash"),
        Shell::Zsh => format!("_{tool}"),
        Shell::Fish => format!("{tool}.fish"),
        other => format!("{tool}.{other}"),
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The page of `tool`, which must exist.
fn tool_page(tool: &str) -> String {
    let path = repo().join("man").join(format!("{tool}.1"));
    assert!(
        path.exists(),
        "{} is missing: every tool in postline::tools::all() needs a man page",
        path.display()
    );
    read(&path)
}

/// Every file in `man/`, sorted.
fn man_pages() -> Vec<PathBuf> {
    let dir = repo().join("man");
    let mut pages: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    pages.sort();
    pages
}

/// Roff text as a reader sees it, near enough for searching: font escapes
/// (`\fB`, `\f(CW`, `\f[B]`) and zero-width escapes (`\&`, `\%`) removed,
/// `\-` as `-`, `\e` as `\`, `\(dq` as `"`.
fn normalise(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    let mut chars = roff.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('f') => match chars.next() {
                Some('(') => {
                    chars.next();
                    chars.next();
                }
                Some('[') => {
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                    }
                }
                _ => {}
            },
            Some('-') => out.push('-'),
            Some('e') | Some('\\') => out.push('\\'),
            Some('&') | Some('%') => {}
            Some('(') => {
                let name: String = chars.by_ref().take(2).collect();
                out.push_str(match name.as_str() {
                    "dq" => "\"",
                    "aq" => "'",
                    "em" | "en" => "-",
                    _ => " ",
                });
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The arguments of a macro line: split on spaces, `"..."` quoting (with
/// `""` for a quote inside), escapes such as `\ ` kept whole.
fn macro_args(rest: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let Some(&first) = chars.peek() else { break };
        let quoted = first == '"';
        if quoted {
            chars.next();
        }
        let mut arg = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    arg.push(c);
                    arg.extend(chars.next());
                }
                '"' if quoted => {
                    if chars.next_if_eq(&'"').is_some() {
                        arg.push('"');
                    } else {
                        break;
                    }
                }
                ' ' | '\t' if !quoted => break,
                _ => arg.push(c),
            }
        }
        args.push(arg);
    }
    args
}

/// Roff source as plain text, one output line per input line: font
/// alternation macros (`.BR mail\-deliver (1)`) joined as they print,
/// other macros reduced to their arguments, comments dropped, escapes
/// normalised.
fn text(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    for line in roff.lines() {
        let plain = if line.starts_with(".\\\"") || line.starts_with("'\\\"") {
            String::new()
        } else if let Some(rest) = line.strip_prefix('.').or_else(|| line.strip_prefix('\'')) {
            let (name, rest) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            let sep = match name {
                "BR" | "BI" | "IB" | "IR" | "RB" | "RI" => "",
                _ => " ",
            };
            macro_args(rest).join(sep)
        } else {
            line.to_string()
        };
        out.push_str(&normalise(&plain));
        out.push('\n');
    }
    out
}

/// The argument of a heading macro line, unquoted: `.SH "EXIT STATUS"`.
fn heading(line: &str, mac: &str) -> Option<String> {
    let rest = line.strip_prefix(mac)?;
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(normalise(&macro_args(rest).join(" ")))
}

/// The page's sections: heading and body, in order.
fn sections(roff: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in roff.lines() {
        if let Some(h) = heading(line, ".SH") {
            out.push((h, String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

fn section<'a>(secs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    secs.iter()
        .find(|(h, _)| h == name)
        .map(|(_, b)| b.as_str())
}

/// The exit status list of a page: its EXIT STATUS section, or else a
/// subsection called "Exit status" (as in the section 7 overview).
fn exit_status_block(roff: &str) -> Option<String> {
    if let Some(b) = section(&sections(roff), "EXIT STATUS") {
        return Some(b.to_string());
    }
    let mut block: Option<String> = None;
    for line in roff.lines() {
        let sub = heading(line, ".SS").or_else(|| heading(line, ".SH"));
        match (&mut block, sub) {
            (None, Some(h)) if h.eq_ignore_ascii_case("exit status") => block = Some(String::new()),
            (Some(_), Some(_)) => break,
            (Some(b), None) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    block
}

/// The codes given as `.TP` tags in an exit status list.
fn listed_codes(block: &str) -> BTreeSet<i32> {
    let mut codes = BTreeSet::new();
    let mut lines = block.lines();
    while let Some(line) = lines.next() {
        if line.split_whitespace().next() != Some(".TP") {
            continue;
        }
        let Some(tag) = lines.next() else { break };
        let word = match tag.strip_prefix('.') {
            Some(mac) => mac
                .split_once(' ')
                .map(|(_, rest)| macro_args(rest))
                .and_then(|a| a.into_iter().next()),
            None => tag.split_whitespace().next().map(str::to_string),
        };
        if let Some(code) = word.and_then(|w| normalise(&w).trim().parse().ok()) {
            codes.insert(code);
        }
    }
    codes
}

/// The exit codes `src/exit.rs` defines (`pub const NAME: i32 = N;`).
fn defined_codes() -> BTreeSet<i32> {
    let src = read(&repo().join("src/exit.rs"));
    let codes: BTreeSet<i32> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": i32 = "))
        .filter_map(|(_, v)| v.trim_end_matches(';').trim().parse().ok())
        .collect();
    assert!(
        codes.contains(&0) && codes.contains(&75),
        "could not read the exit codes in src/exit.rs"
    );
    codes
}

/// Does `flag` occur in `text` as a whole option (not inside a longer one)?
fn mentions_flag(text: &str, flag: &str) -> bool {
    let part_of_flag = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(flag).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + flag.len()..].chars().next();
        !before.is_some_and(part_of_flag) && !after.is_some_and(part_of_flag)
    })
}

/// Every option spelling of `cmd` and its subcommands: `--long`, `-s` and
/// visible aliases, including clap's own `--help` and `--version`.
fn flags(cmd: &mut clap::Command) -> Vec<String> {
    cmd.build();
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        if arg.is_positional() || arg.is_hide_set() {
            continue;
        }
        out.extend(arg.get_long().map(|l| format!("--{l}")));
        out.extend(arg.get_short().map(|s| format!("-{s}")));
        out.extend(
            arg.get_visible_aliases()
                .into_iter()
                .flatten()
                .map(|l| format!("--{l}")),
        );
        out.extend(
            arg.get_visible_short_aliases()
                .into_iter()
                .flatten()
                .map(|s| format!("-{s}")),
        );
    }
    for sub in cmd.get_subcommands_mut() {
        out.extend(flags(sub));
    }
    out
}

#[test]
fn man_pages_document_every_option() {
    let mut missing = Vec::new();
    for (tool, command) in postline::tools::all() {
        let secs = sections(&tool_page(tool));
        let options = text(section(&secs, "OPTIONS").unwrap_or_default());
        for flag in flags(&mut command()) {
            if !mentions_flag(&options, &flag) {
                missing.push(format!("{tool} {flag}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "options missing from the OPTIONS section of their man page (man/<tool>.1):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn man_pages_have_the_required_sections() {
    let mut problems = Vec::new();
    for (tool, _) in postline::tools::all() {
        let page = tool_page(tool);
        let secs = sections(&page);
        for want in REQUIRED_SECTIONS {
            if section(&secs, want).is_none() {
                problems.push(format!("man/{tool}.1: no {want} section"));
            }
        }
        let th = page
            .lines()
            .find_map(|l| heading(l, ".TH"))
            .unwrap_or_default();
        let mut th = th.split_whitespace();
        let (title, sect) = (th.next().unwrap_or(""), th.next().unwrap_or(""));
        if title != tool.to_uppercase() || sect != "1" {
            problems.push(format!(
                "man/{tool}.1: .TH should start with {} 1",
                tool.to_uppercase()
            ));
        }
        let name = text(section(&secs, "NAME").unwrap_or_default());
        if !name.trim_start().starts_with(&format!("{tool} - ")) {
            problems.push(format!(
                "man/{tool}.1: NAME should read \"{tool} \\- summary\""
            ));
        }
        let see_also = text(section(&secs, "SEE ALSO").unwrap_or_default());
        if !see_also.contains("postline(7)") {
            problems.push(format!("man/{tool}.1: SEE ALSO should name postline(7)"));
        }
    }
    assert!(
        problems.is_empty(),
        "man page structure:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn man_page_exit_codes_exist() {
    let defined = defined_codes();
    let mut problems = Vec::new();
    for path in man_pages() {
        let Some(block) = exit_status_block(&read(&path)) else {
            continue;
        };
        let listed = listed_codes(&block);
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if listed.is_empty() {
            problems.push(format!("man/{name}: exit status list has no .TP entries"));
        }
        for code in listed.difference(&defined) {
            problems.push(format!(
                "man/{name}: exit status {code} is not defined in src/exit.rs"
            ));
        }
        // The overview's list is the reference table: it must be complete.
        if name.ends_with(".7") {
            for code in defined.difference(&listed) {
                problems.push(format!(
                    "man/{name}: exit status {code} from src/exit.rs is not listed"
                ));
            }
        }
    }
    for (tool, _) in postline::tools::all() {
        if exit_status_block(&tool_page(tool)).is_none() {
            problems.push(format!("man/{tool}.1: no EXIT STATUS section"));
        }
    }
    assert!(
        problems.is_empty(),
        "exit codes in man pages:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn man_pages_pass_mandoc_lint() {
    let pages = man_pages();
    assert!(!pages.is_empty(), "no man pages in man/");
    let probe = Command::new("mandoc")
        .arg("-T")
        .arg("lint")
        .arg("/dev/null")
        .output();
    if skip_unless(
        probe.is_ok(),
        "mandoc is not installed (apt-get install mandoc)",
    ) {
        return;
    }
    let mut problems = Vec::new();
    for page in &pages {
        let out = Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .arg(page)
            .output()
            .expect("run mandoc");
        if !out.status.success() || !out.stdout.is_empty() || !out.stderr.is_empty() {
            problems.push(format!(
                "{} (exit {:?}):\n{}{}",
                page.display(),
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "mandoc -T lint -W warning:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_man_page_belongs_to_a_tool() {
    let tools: BTreeSet<String> = postline::tools::all()
        .into_iter()
        .map(|(t, _)| format!("{t}.1"))
        .collect();
    let stray: Vec<String> = man_pages()
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".1") && !tools.contains(n))
        .collect();
    assert!(
        stray.is_empty(),
        "man pages for tools not in postline::tools::all(): {stray:?}"
    );
}

#[test]
fn overview_names_every_tool() {
    let overviews: Vec<PathBuf> = man_pages()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "7"))
        .collect();
    assert!(
        !overviews.is_empty(),
        "no section 7 overview page (man/postline.7) in man/"
    );
    let mut missing = Vec::new();
    for page in &overviews {
        let plain = text(&read(page));
        for (tool, _) in postline::tools::all() {
            if !plain.contains(&format!("{tool}(1)")) {
                missing.push(format!("{} does not mention {tool}(1)", page.display()));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn completions_are_fresh() {
    let dir = repo().join("completions");
    let mut stale = Vec::new();
    let mut expected = BTreeSet::new();
    for (tool, command) in postline::tools::all() {
        for &shell in SHELLS {
            let name = completion_file(shell, tool);
            let mut cmd = command();
            let mut want = Vec::new();
            clap_complete::generate(shell, &mut cmd, tool, &mut want);
            match fs::read(dir.join(&name)) {
                Ok(have) if have == want => {}
                Ok(_) => stale.push(format!("{name} differs")),
                Err(e) => stale.push(format!("{name}: {e}")),
            }
            expected.insert(name);
        }
    }
    if let Ok(entries) = fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !expected.contains(&name) {
                stale.push(format!("{name} belongs to no tool"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "completions/ is out of date ({}); run `cargo run --example gen-completions`",
        stale.join(", ")
    );
}

#[test]
fn normalise_handles_roff_escapes() {
    assert_eq!(
        normalise(r"\fB\-\-folder\fR \fI\-\-x\fP \f(CW\-v\fR \f[B]\-\-y\f[]"),
        "--folder --x -v --y"
    );
    assert_eq!(normalise(r"\&.Lists \(dqa\(dq \e"), r#".Lists "a" \"#);
    assert!(mentions_flag("use --dedup-size n", "--dedup-size"));
    assert!(!mentions_flag("use --dedup-size n", "--dedup"));
    assert!(!mentions_flag("mail-deliver --folder", "-f"));
    assert!(mentions_flag("[-f addr]", "-f"));
    assert_eq!(
        text(".BR mail\\-deliver (1),\n.BI \\-f \" addr\" \"\\fR, \\fP\\-\\-sender \" addr"),
        "mail-deliver(1),\n-f addr, --sender addr\n"
    );
    assert_eq!(
        text(".\\\" comment\n.RB \\(dq \"From\\ \" \\(dq"),
        "\n\"From \"\n"
    );
}
