//! `mail-deliver --sieve SCRIPT --expect DIR`: regression tests for one's
//! own filter. Every `NAME.eml` in DIR runs through the same evaluation as
//! `--dry-run` and its actions, named by [`sieve::describe`], are compared
//! with the lines of `NAME.expect` beside it; `--expect-update` rewrites
//! the `.expect` files from the results instead.
//!
//! Guarantee: nothing is stored or sent. Exit 0 when every case passes,
//! 1 when one fails, 65 when a message cannot be read or the script does
//! not compile (then every case fails and no file is written), 64 for
//! usage errors. Text from messages and scripts is printed escaped.
//!
//! The `.expect` format: one action per line (a redirect or vacation
//! followed by ` => ` and what it would send, or why not: judged with
//! nothing remembered and whatever the config's route, so a case means the
//! same on every machine); blank lines and lines
//! starting with `#` are ignored, except `# from: ADDR` and `# to: ADDR`,
//! which set the envelope sender and recipient (`-f`, `--recipient`) for
//! that message. `--expect-update` keeps the comment lines before the
//! first action.

use std::path::{Path, PathBuf};

use super::sieve::{self, Filter};
use super::{Settings, envelope, prepare};
use crate::exit::{Error, Kind, Result};
use crate::message;
use crate::proto::transcript::printable;
use crate::tools::Ctx;

/// Largest saved message read, in bytes: a case is a message one saved
/// by hand, not a mailbox.
const MAX_MESSAGE: u64 = 64 << 20;

/// One `.expect` file: its leading comment lines, envelope and actions.
#[derive(Default)]
struct Expected {
    header: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    actions: Vec<String>,
}

fn parse_expect(text: &str) -> Expected {
    let mut e = Expected::default();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(c) = line.strip_prefix('#') {
            let c = c.trim_start();
            if let Some(a) = c.strip_prefix("from:") {
                e.from = Some(a.trim().to_string());
            } else if let Some(a) = c.strip_prefix("to:") {
                e.to = Some(a.trim().to_string());
            }
            if e.actions.is_empty() {
                e.header.push(line.to_string());
            }
        } else if !line.trim().is_empty() {
            e.actions.push(line.trim_start().to_string());
        }
    }
    e
}

/// A line diff of `want` against `got`: ` ` same, `-` expected only,
/// `+` got only (longest common subsequence; lists are short).
fn diff(want: &[String], got: &[String]) -> Vec<String> {
    let (n, m) = (want.len(), got.len());
    let mut l = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if want[i] == got[j] {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && want[i] == got[j] {
            out.push(format!(" {}", want[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || l[i + 1][j] >= l[i][j + 1]) {
            out.push(format!("-{}", want[i]));
            i += 1;
        } else {
            out.push(format!("+{}", got[j]));
            j += 1;
        }
    }
    out
}

/// The cases of DIR: the paths of its `*.eml` files, sorted by name.
fn cases(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        Error::new(
            Kind::Usage,
            format!("--expect {}", dir.display()),
            e.to_string(),
        )
    })?;
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let p = ent.path();
        if p.extension().is_some_and(|x| x == "eml")
            && let Some(stem) = p.file_stem()
        {
            out.push((stem.to_string_lossy().into_owned(), p));
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::new(
            Kind::Usage,
            format!("--expect {}", dir.display()),
            "no NAME.eml messages in the directory",
        ));
    }
    Ok(out)
}

/// Read a saved message and prepare it as delivery would (Return-Path and
/// Delivered-To from the envelope, loop check).
fn load(path: &Path, s: &Settings) -> Result<super::Prepared> {
    use std::io::Read;
    let what = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| Error::new(Kind::Data, &what, e.to_string()))?;
    let mut raw = Vec::new();
    f.take(MAX_MESSAGE + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::new(Kind::Data, &what, e.to_string()))?;
    if raw.len() as u64 > MAX_MESSAGE {
        return Err(Error::new(
            Kind::Data,
            &what,
            format!("larger than {MAX_MESSAGE} bytes"),
        ));
    }
    let (line_sender, raw) = match message::split_from_line(&raw) {
        Some((snd, rest)) => (Some(snd), rest.to_vec()),
        None => (None, raw),
    };
    if message::is_blank(&raw) {
        return Err(Error::new(Kind::Data, &what, "empty message"));
    }
    prepare(1, message::normalize(raw), line_sender, s).map_err(|e| e.within(what))
}

/// Run every case of `dir`; with `update`, write the results instead of
/// comparing.
pub fn run(dir: &str, f: &Filter, base: &Settings, update: bool, ctx: &mut Ctx) -> Result<()> {
    let dir = Path::new(dir);
    if !dir.is_dir() {
        return Err(Error::new(
            Kind::Usage,
            format!("--expect {}", dir.display()),
            "not a directory",
        ));
    }
    let cases = cases(dir)?;
    if let Err(e) = &f.compiled {
        // Nothing can be compared with a script that does not run: every
        // case fails, and no expectation is rewritten from it.
        for (name, _) in &cases {
            ctx.line(&format!(
                "FAIL {} (the script does not compile)",
                printable(name)
            ));
        }
        ctx.line(&format!("0 passed, {} failed", cases.len()));
        ctx.flush();
        return Err(Error::new(Kind::Data, "every case failed", e.clone()));
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for (name, eml) in &cases {
        let shown = printable(name).into_owned();
        let exp_path = eml.with_extension("expect");
        let (expected, exists) = match std::fs::read(&exp_path) {
            Ok(b) => (parse_expect(&String::from_utf8_lossy(&b)), true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Expected::default(), false),
            Err(e) => {
                ctx.report(&Error::new(
                    Kind::Data,
                    exp_path.display().to_string(),
                    e.to_string(),
                ));
                ctx.line(&format!("FAIL {shown}"));
                failed += 1;
                continue;
            }
        };
        let s = Settings {
            sender: expected.from.clone().or_else(|| base.sender.clone()),
            recipient: expected.to.clone().or_else(|| base.recipient.clone()),
            print: false,
            dedup: None,
            format: base.format,
        };
        let p = match load(eml, &s) {
            Ok(p) => p,
            Err(e) => {
                ctx.report(&e);
                ctx.line(&format!("FAIL {shown}"));
                failed += 1;
                continue;
            }
        };
        let (from, to) = envelope(&p, &s);
        let memory = crate::sieve::duplicate::Memory::empty();
        let outcome = sieve::evaluate(&p.data, from.as_deref(), to.as_deref(), f, &memory, ctx);
        let plans = super::actions::plan(
            &outcome.actions,
            &p.data,
            from.as_deref(),
            to.as_deref(),
            f.now.0,
            f.outbound.max_received,
            &memory,
        );
        // A redirect or vacation line says what it would send (or why not):
        // the rules about lists, loops and the user's addresses are part of
        // what a case checks.
        let got: Vec<String> = outcome
            .actions
            .iter()
            .zip(&plans)
            .map(|(a, pl)| {
                let mut line = sieve::describe(&a.kind);
                if let Some(pl) = pl {
                    line.push_str(&format!(" => {}", super::actions::plan_text(pl)));
                }
                printable(&line).into_owned()
            })
            .collect();
        if exists && got == expected.actions {
            passed += 1;
            ctx.line(&format!("ok {shown}"));
            continue;
        }
        if update {
            let mut text = String::new();
            for h in &expected.header {
                text.push_str(h);
                text.push('\n');
            }
            for g in &got {
                text.push_str(g);
                text.push('\n');
            }
            write_atomically(&exp_path, text.as_bytes())?;
            passed += 1;
            ctx.line(&format!("updated {shown}"));
            continue;
        }
        failed += 1;
        if exists {
            ctx.line(&format!("FAIL {shown}"));
        } else {
            ctx.line(&format!("FAIL {shown} (no {shown}.expect)"));
        }
        for d in diff(&expected.actions, &got) {
            ctx.line(&printable(&d));
        }
    }
    ctx.line(&format!("{passed} passed, {failed} failed"));
    ctx.flush();
    if failed > 0 {
        ctx.check_failed();
    }
    Ok(())
}

/// Replace `path` whole (a temporary file renamed over it), so an
/// interrupted update leaves the old expectations, not half of the new.
fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("expect.tmp");
    // A leftover of an interrupted run goes; create_new follows no symlink.
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("writing {}", path.display()), &e)
        })
}

#[cfg(test)]
mod tests {
    use super::{diff, parse_expect};

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_diff_marks_what_differs() {
        assert_eq!(
            diff(&v(&["keep", "discard"]), &v(&["fileinto \"A\"", "discard"])),
            v(&["-keep", "+fileinto \"A\"", " discard"])
        );
        assert_eq!(diff(&v(&[]), &v(&["keep"])), v(&["+keep"]));
    }

    #[test]
    fn expect_files_carry_the_envelope_and_comments() {
        let e = parse_expect("# from: a@b\n#to: c@d\n\nkeep  \n# later\ndiscard\n");
        assert_eq!(e.from.as_deref(), Some("a@b"));
        assert_eq!(e.to.as_deref(), Some("c@d"));
        assert_eq!(e.actions, v(&["keep", "discard"]));
        assert_eq!(e.header, v(&["# from: a@b", "#to: c@d"]));
    }
}
