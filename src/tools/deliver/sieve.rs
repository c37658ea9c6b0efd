//! mail-deliver's Sieve face: `--check`, `--sieve` (carry out the actions
//! through the store) and `--dry-run [--json]` (report them); its
//! [`evaluate`] and [`describe`] also serve `--expect` (`expect.rs`).
//!
//! Guarantee: nothing is lost to the filter. A script that cannot be read,
//! does not compile, or fails at run time leaves the message in INBOX
//! (exit 0, the reason with line and column on stderr); a folder that
//! cannot be used falls back to INBOX; a redirect that is neither sent nor
//! queued keeps the message in INBOX (`actions.rs`). Only `discard`
//! stores nothing (exit 0) and `reject`/`ereject` stores nothing and exits
//! 77 so the MTA bounces. Redirects and vacation replies are sent only
//! once the message is stored where the script said, so a delivery that
//! fails (exit 75, retried by the MTA) has sent nothing.

use std::path::PathBuf;

use serde_json::json;

use super::actions::{self, Outbound, Plan, Sent};
use crate::exit::{Error, Kind, Result};
use crate::proto::transcript::printable;
use crate::sieve::duplicate::{Memory, Seen};
use crate::sieve::{self, Action, ActionKind, Input, Limits, Script};
use crate::store::Maildir;
use crate::tools::Ctx;

/// How to run the filter.
pub struct Filter {
    /// The script's path.
    pub script: String,
    /// Report instead of carrying out.
    pub dry_run: bool,
    /// Dry-run records as JSON lines.
    pub json: bool,
    /// Now (seconds since the epoch) and the local zone (minutes east).
    pub now: (i64, i32),
    /// The script compiled once, or why it is not usable.
    pub compiled: std::result::Result<Script, String>,
    /// Where redirects and vacation replies go.
    pub outbound: Outbound,
    /// Where `include :global` scripts are (`[deliver] sieve_global`).
    pub global: Option<PathBuf>,
    /// The messages come from an mbox (`--split`), not from an MTA: there
    /// is nobody to bounce to, and old mail must not set off replies or
    /// forwards. As Pigeonhole's sieve-filter does, reject and ereject
    /// keep the message in INBOX (a warning says so), and redirect and
    /// vacation are not carried out (a redirect without :copy keeps it).
    pub stream: bool,
}

impl Filter {
    /// Does the script remember anything between messages?
    pub fn uses_memory(&self) -> bool {
        self.compiled
            .as_ref()
            .is_ok_and(|s| s.requires.contains("duplicate") || s.requires.contains("vacation"))
    }
}

/// `[deliver] sieve_global` of the loaded config ("~/" is the home
/// directory); none when unset (then `include :global` is an error the
/// script reports, and the message is kept).
pub fn global_dir(config: &crate::config::Config) -> Option<PathBuf> {
    config.deliver.sieve_global.as_deref().map(home_path)
}

/// A path from the config: a leading "~/" is the home directory, as a
/// shell would read it.
pub fn home_path(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(h)) => PathBuf::from(h).join(rest),
        _ => PathBuf::from(p),
    }
}

/// The `environment` items (RFC 5183) a delivery shows.
fn environment_items() -> Vec<(&'static str, String)> {
    vec![
        ("name", "postline mail-deliver".into()),
        ("version", env!("CARGO_PKG_VERSION").into()),
        ("location", "MDA".into()),
        ("phase", "during".into()),
    ]
}

/// `--now TIME`: seconds since the epoch, or a date as mail and RFC 3339
/// write it; its zone becomes the local zone.
pub fn parse_now(s: &str) -> Result<(i64, i32)> {
    if let Ok(n) = s.trim().parse::<i64>() {
        return Ok((n, 0));
    }
    match crate::trace::date::parse(s) {
        Some(d) => Ok((d.unix, d.offset_minutes.unwrap_or(0))),
        None => Err(Error::new(
            Kind::Usage,
            format!("--now {s:?}"),
            "not a time (seconds since the epoch, RFC 3339 or RFC 5322 date)",
        )),
    }
}

/// Read and compile a script; the error says where.
pub fn load(path: &str) -> Result<Script> {
    let text = std::fs::read(path).map_err(|e| Error::io(format!("reading {path}"), &e))?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::new(Kind::Data, path, "the script is not UTF-8"))?;
    sieve::compile_script(&text).map_err(|e| Error::new(Kind::Data, path, e))
}

/// `--check SCRIPT`: compile only; every error is said (each with line
/// and column, as sievec does), the last one as the error returned.
pub fn check(path: &str, ctx: &mut Ctx) -> Result<()> {
    let text = std::fs::read(path).map_err(|e| Error::io(format!("reading {path}"), &e))?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::new(Kind::Data, path, "the script is not UTF-8"))?;
    let s = match sieve::compile_script_all(&text) {
        Ok(s) => s,
        Err(mut errs) => {
            let last = errs.pop().unwrap_or_else(|| sieve::CompileError {
                pos: sieve::Pos::default(),
                msg: "does not compile".into(),
            });
            for e in errs {
                ctx.warn(&format!("{path}: {e}"));
            }
            return Err(Error::new(Kind::Data, path, last));
        }
    };
    let ext: Vec<&str> = s.requires.iter().map(String::as_str).collect();
    ctx.line(&format!(
        "{path}: ok (requires: {})",
        if ext.is_empty() {
            "nothing".into()
        } else {
            ext.join(", ")
        }
    ));
    Ok(())
}

/// A place to store into: a folder (None for INBOX), its flags and the
/// action whose message (as editheader left it) it stores; the message is
/// built only while it is stored, so at most one edited copy is held.
struct Target {
    folder: Option<String>,
    flags: Vec<String>,
    action: Option<usize>,
}

/// Maildir info letters for IMAP system flags; keywords have none.
fn letter(flag: &str) -> Option<char> {
    match flag.to_ascii_lowercase().as_str() {
        "\\seen" => Some('S'),
        "\\answered" => Some('R'),
        "\\flagged" => Some('F'),
        "\\deleted" => Some('T'),
        "\\draft" => Some('D'),
        _ => None,
    }
}

fn where_(a: &Action) -> String {
    match a.pos {
        Some(p) => format!("line {}", p.line),
        None => "implicit keep".into(),
    }
}

/// The actions the script asks for one prepared message: the one
/// evaluation behind delivery, `--dry-run` and `--expect`, so they cannot
/// disagree. A script that is not usable, or stops with an error, yields
/// the implicit keep (the message is kept in INBOX); the reason is on
/// stderr.
pub fn evaluate(
    data: &[u8],
    envelope_from: Option<&str>,
    envelope_to: Option<&str>,
    f: &Filter,
    seen: &dyn Seen,
    ctx: &mut Ctx,
) -> sieve::Outcome {
    evaluate_in(data, envelope_from, envelope_to, f, None, seen, ctx)
}

/// [`evaluate`] with the Maildir whose folders `mailboxexists` sees
/// (none: only INBOX exists).
pub fn evaluate_in(
    data: &[u8],
    envelope_from: Option<&str>,
    envelope_to: Option<&str>,
    f: &Filter,
    md: Option<&Maildir>,
    seen: &dyn Seen,
    ctx: &mut Ctx,
) -> sieve::Outcome {
    let outcome = match &f.compiled {
        Ok(script) => {
            let input = Input {
                message: data,
                envelope_from,
                envelope_to,
                now: f.now.0,
                local_offset: f.now.1,
            };
            // Personal scripts for include sit beside the script.
            let personal = std::path::Path::new(&f.script).parent().map(|p| {
                if p.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    p
                }
            });
            let exists = |name: &str| {
                md.is_some_and(|md| {
                    md.folder_path(&mutf7(name))
                        .is_ok_and(|p| p.join("cur").is_dir())
                })
            };
            let items = environment_items();
            let env = sieve::eval::Env {
                personal_dir: personal,
                global_dir: f.global.as_deref(),
                mailbox_exists: Some(&exists),
                items: &items,
                seen: Some(seen),
                recipient_delimiter: None,
            };
            let out = sieve::eval::run_env(script, input, Limits::default(), env);
            if let Some(e) = &out.error {
                ctx.warn(&format!("{}: {e}; message kept in INBOX", f.script));
            }
            out
        }
        Err(e) => {
            ctx.warn(&format!("{e}; message kept in INBOX"));
            sieve::Outcome {
                actions: vec![Action {
                    kind: ActionKind::Keep { flags: Vec::new() },
                    pos: None,
                    test: None,
                }],
                ..sieve::Outcome::default()
            }
        }
    };
    for n in &outcome.notes {
        ctx.warn(&format!("{}: {n}", f.script));
    }
    outcome
}

/// A string as a Sieve script writes it: in double quotes, with `\` and
/// `"` escaped (control characters are left to the printer).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One action as the dry run and the `.expect` files name it, in Sieve's
/// own spelling without line numbers: `fileinto "Lists.rust" :create
/// :flags \Seen`, `keep`, `discard`, `reject "reason"`. The one text
/// formatter for actions; callers escape control characters.
pub fn describe(kind: &ActionKind) -> String {
    let flags = |s: &mut String, flags: &[String]| {
        if !flags.is_empty() {
            s.push_str(" :flags ");
            s.push_str(&flags.join(" "));
        }
    };
    let mut s;
    match kind {
        ActionKind::Keep { flags: fl } => {
            s = "keep".to_string();
            flags(&mut s, fl);
        }
        ActionKind::FileInto {
            mailbox,
            flags: fl,
            create,
            copy,
        } => {
            s = format!("fileinto {}", quoted(mailbox));
            if *create {
                s.push_str(" :create");
            }
            if *copy {
                s.push_str(" :copy");
            }
            flags(&mut s, fl);
        }
        ActionKind::Discard => s = "discard".to_string(),
        ActionKind::Reject { reason, extended } => {
            s = format!(
                "{} {}",
                if *extended { "ereject" } else { "reject" },
                quoted(reason)
            );
        }
        ActionKind::Redirect { address, copy } => {
            s = format!("redirect {}", quoted(address));
            if *copy {
                s.push_str(" :copy");
            }
        }
        ActionKind::Vacation { reason, options } => {
            s = format!("vacation {}", quoted(reason));
            if let Some(d) = options.days {
                s.push_str(&format!(" :days {d}"));
            }
            if let Some(v) = &options.subject {
                s.push_str(&format!(" :subject {}", quoted(v)));
            }
            if let Some(v) = &options.from {
                s.push_str(&format!(" :from {}", quoted(v)));
            }
            if !options.addresses.is_empty() {
                let a: Vec<String> = options.addresses.iter().map(|a| quoted(a)).collect();
                s.push_str(&format!(" :addresses [{}]", a.join(", ")));
            }
            if options.mime {
                s.push_str(" :mime");
            }
            if let Some(v) = &options.handle {
                s.push_str(&format!(" :handle {}", quoted(v)));
            }
        }
    }
    s
}

/// Run the filter over one prepared message and carry out (or report)
/// what it asks.
/// `index` numbers the message in `--split` dry runs.
#[allow(clippy::too_many_arguments)]
pub fn filter(
    md: &Maildir,
    data: &[u8],
    envelope_from: Option<&str>,
    envelope_to: Option<&str>,
    f: &Filter,
    index: Option<usize>,
    print: bool,
    ctx: &mut Ctx,
) -> Result<()> {
    let mut memory = match actions::memory(f.uses_memory(), f.dry_run, f.now.0) {
        Ok(m) => m,
        Err(e) => {
            // Without the store a duplicate is not seen (the message is
            // delivered) and no vacation reply is sent (it could repeat).
            ctx.warn(&format!(
                "{e}; duplicate tests are false and vacation sends nothing"
            ));
            Memory::unusable()
        }
    };
    let outcome = evaluate_in(data, envelope_from, envelope_to, f, Some(md), &memory, ctx);
    let mut plans = actions::plan(
        &outcome.actions,
        data,
        envelope_from,
        envelope_to,
        f.now.0,
        f.outbound.max_received,
        &memory,
    );
    if f.stream {
        // What `Filter::stream` says, in the plans, so that a dry run shows
        // what a delivery does.
        for (a, p) in outcome.actions.iter().zip(plans.iter_mut()) {
            if matches!(a.kind, ActionKind::Reject { .. }) {
                *p = Some(Plan::Skip(STREAM_REJECT.to_string()));
            } else if p.is_some() {
                *p = Some(Plan::Skip(
                    "the message comes from an mbox (--split): nothing is sent".to_string(),
                ));
            }
        }
    }
    if f.dry_run {
        for (a, p) in outcome.actions.iter().zip(&plans) {
            report(a, p.as_ref(), &f.outbound, f.json, index, ctx);
        }
        ctx.flush();
        return Ok(());
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut reject: Option<(&Action, &str)> = None;
    let mut keep_inbox = false;
    for (i, (a, p)) in outcome.actions.iter().zip(&plans).enumerate() {
        match &a.kind {
            ActionKind::Keep { flags } => targets.push(Target {
                folder: None,
                flags: flags.clone(),
                action: Some(i),
            }),
            ActionKind::FileInto {
                mailbox,
                flags,
                create,
                ..
            } => {
                let folder = resolve(md, mailbox, *create, a, ctx);
                targets.push(Target {
                    folder,
                    flags: flags.clone(),
                    action: Some(i),
                });
            }
            ActionKind::Discard => {}
            ActionKind::Reject { .. } if f.stream => {
                ctx.warn(&format!("{}: {}: {STREAM_REJECT}", f.script, where_(a)));
                keep_inbox = true;
            }
            ActionKind::Reject { reason, .. } => reject = Some((a, reason)),
            ActionKind::Redirect { address, copy } => {
                if let Some(Plan::Skip(why)) = p {
                    ctx.warn(&format!(
                        "{}: {}: redirect to {address} not carried out: {why}{}",
                        f.script,
                        where_(a),
                        if *copy { "" } else { "; message kept in INBOX" }
                    ));
                    keep_inbox |= !copy;
                }
            }
            ActionKind::Vacation { .. } => {
                if let Some(Plan::Skip(why)) = p {
                    ctx.warn(&format!(
                        "{}: {}: no vacation reply: {why}",
                        f.script,
                        where_(a)
                    ));
                }
            }
        }
    }
    if let Some((a, reason)) = reject {
        return Err(Error::new(
            Kind::NoPerm,
            format!("{}: {}: rejected", f.script, where_(a)),
            reason.trim_end(),
        ));
    }
    if keep_inbox && !targets.iter().any(|t| t.folder.is_none()) {
        targets.push(Target {
            folder: None,
            flags: Vec::new(),
            action: None,
        });
    }
    let stored = store(md, data, &outcome, targets, print, f, ctx);
    if stored.failed {
        // The MTA delivers again (exit 75): nothing is sent or remembered
        // now, so nothing is sent twice.
        if plans
            .iter()
            .any(|p| matches!(p, Some(Plan::Redirect { .. } | Plan::Vacation(_))))
        {
            ctx.warn(&format!(
                "{}: redirect and vacation not carried out: the message was not stored",
                f.script
            ));
        }
        ctx.flush();
        if f.stream {
            // Stop at the first message that could not be stored, so a
            // second run knows where to start: the ones before are stored.
            let n = index.unwrap_or(0);
            return Err(Error::new(
                Kind::Temporary,
                format!("message {n}"),
                format!(
                    "not stored; messages 1 to {} are, the rest were not read",
                    n.saturating_sub(1)
                ),
            ));
        }
        return Ok(());
    }
    let mut need_inbox = false;
    for (i, (a, p)) in outcome.actions.iter().zip(&plans).enumerate() {
        match p {
            Some(Plan::Redirect { env }) => {
                let copy = matches!(a.kind, ActionKind::Redirect { copy: true, .. });
                match f
                    .outbound
                    .send(env, &actions::redirected(&outcome.message_for(i, data)))
                {
                    Sent::Delivered => {}
                    Sent::Queued(id) => ctx.warn(&format!(
                        "{}: {}: redirect to <{}> queued as {id}",
                        f.script,
                        where_(a),
                        env.rcpts.join(", ")
                    )),
                    Sent::Failed(why) => {
                        ctx.warn(&format!(
                            "{}: {}: redirect to <{}> not carried out: {why}{}",
                            f.script,
                            where_(a),
                            env.rcpts.join(", "),
                            if copy { "" } else { "; message kept in INBOX" }
                        ));
                        need_inbox |= !copy;
                    }
                }
            }
            Some(Plan::Vacation(r)) => {
                let env = crate::send::Envelope {
                    from: String::new(),
                    rcpts: vec![r.to.clone()],
                    ..Default::default()
                };
                match f.outbound.send(&env, &r.message) {
                    Sent::Delivered => memory.remember(&r.remember, f.now.0),
                    Sent::Queued(id) => {
                        memory.remember(&r.remember, f.now.0);
                        ctx.warn(&format!(
                            "{}: {}: vacation reply to <{}> queued as {id}",
                            f.script,
                            where_(a),
                            r.to
                        ));
                    }
                    Sent::Failed(why) => ctx.warn(&format!(
                        "{}: {}: vacation reply to <{}> not sent: {why}",
                        f.script,
                        where_(a),
                        r.to
                    )),
                }
            }
            _ => {}
        }
    }
    if need_inbox && !stored.inbox {
        match md.deliver_with_flags(data, "") {
            Ok(p) => {
                if print {
                    ctx.line(&p.display().to_string());
                }
            }
            Err(e) => ctx.report(&e),
        }
    }
    for r in &outcome.remember {
        memory.remember(r, f.now.0);
    }
    if let Err(e) = memory.save() {
        ctx.warn(&format!(
            "{e} (a duplicate may not be recognised, a vacation reply may repeat)"
        ));
    }
    ctx.flush();
    Ok(())
}

/// What [`store`] did.
struct Stored {
    /// A copy is in INBOX.
    inbox: bool,
    /// A store failed (reported; the exit code says so).
    failed: bool,
}

/// Store into every target; two targets that ended in the same folder
/// store once, flags merged.
fn store(
    md: &Maildir,
    data: &[u8],
    outcome: &sieve::Outcome,
    targets: Vec<Target>,
    print: bool,
    f: &Filter,
    ctx: &mut Ctx,
) -> Stored {
    let mut done = Stored {
        inbox: false,
        failed: false,
    };
    let mut merged: Vec<Target> = Vec::new();
    for t in targets {
        match merged.iter_mut().find(|m| m.folder == t.folder) {
            Some(m) => m.flags = sieve::eval::flag_list(&[m.flags.join(" "), t.flags.join(" ")]),
            None => merged.push(t),
        }
    }
    for t in &merged {
        let mut inbox = t.folder.is_none();
        let dest = match &t.folder {
            None => md.clone(),
            Some(name) => match md.folder(name) {
                Ok(d) => d,
                // Whatever stops the folder (a name the file system refuses,
                // a file in the way, a full disk), INBOX is tried instead:
                // its own failure is the one reported.
                Err(e) => {
                    ctx.warn(&format!("{e}; stored in INBOX instead"));
                    if merged.iter().any(|m| m.folder.is_none()) {
                        continue;
                    }
                    inbox = true;
                    md.clone()
                }
            },
        };
        let mut letters: String = t.flags.iter().filter_map(|f| letter(f)).collect();
        // IMAP keywords get the letters Dovecot maps them to in the folder's
        // dovecot-keywords; one that cannot be kept is said, and the message
        // is stored all the same.
        let keywords: Vec<String> = t
            .flags
            .iter()
            .filter(|f| letter(f).is_none())
            .cloned()
            .collect();
        if !keywords.is_empty() {
            match dest.keyword_letters(&keywords) {
                Ok((kl, left)) => {
                    letters.push_str(&kl);
                    if !left.is_empty() {
                        ctx.warn(&format!(
                            "{}: flags not stored (not IMAP keywords, or all 26 Maildir keyword letters taken): {}",
                            f.script,
                            printable(&left.join(" "))
                        ));
                    }
                }
                Err(e) => ctx.warn(&format!("{e}; keywords not stored")),
            }
        }
        let msg = match t.action {
            Some(i) => outcome.message_for(i, data),
            None => std::borrow::Cow::Borrowed(data),
        };
        match dest.deliver_with_flags(&msg, &letters) {
            Ok(p) => {
                done.inbox |= inbox;
                if print {
                    ctx.line(&p.display().to_string());
                }
            }
            Err(e) => {
                done.failed = true;
                ctx.report(&e);
            }
        }
    }
    done
}

/// Longest folder name taken from a script (its parts become one directory
/// name; file systems stop at 255 bytes).
const MAX_FOLDER: usize = 200;

/// A folder name as Dovecot keeps it on disk in a Maildir++ layout:
/// modified UTF-7 (RFC 3501 5.1.3) for anything but printable ASCII, and
/// `&` written `&-`.
pub fn mutf7(name: &str) -> String {
    use base64::Engine;
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        let b = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        out.push('&');
        out.push_str(&b.replace('/', ","));
        out.push('-');
        run.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The folder `fileinto` asks for (in its on-disk spelling), or None
/// (INBOX) with a warning when it is not a valid name (empty part, `..`,
/// control characters, longer than [`MAX_FOLDER`]: a name built from
/// message text must not defer or misplace mail), or is missing and
/// `:create` was not given (as Pigeonhole does).
fn resolve(md: &Maildir, mailbox: &str, create: bool, a: &Action, ctx: &mut Ctx) -> Option<String> {
    if mailbox.eq_ignore_ascii_case("INBOX") {
        return None;
    }
    let disk = mutf7(mailbox);
    if disk.len() > MAX_FOLDER || mailbox.chars().any(char::is_control) {
        ctx.warn(&format!(
            "{}: fileinto {mailbox:?}: not a usable folder name (control characters or longer than {MAX_FOLDER} bytes); stored in INBOX instead",
            where_(a)
        ));
        return None;
    }
    let mailbox = disk.as_str();
    let path: PathBuf = match md.folder_path(mailbox) {
        Ok(p) => p,
        Err(_) => {
            ctx.warn(&format!(
                "{}: fileinto {mailbox:?}: not a valid folder name; stored in INBOX instead",
                where_(a)
            ));
            return None;
        }
    };
    if !create && !path.is_dir() {
        ctx.warn(&format!(
            "{}: fileinto {mailbox:?}: folder does not exist (no :create); stored in INBOX instead",
            where_(a)
        ));
        return None;
    }
    Some(mailbox.to_string())
}

/// What becomes of a reject in `--split` (see [`Filter::stream`]).
const STREAM_REJECT: &str =
    "reject of a message from an mbox (--split) has nobody to bounce to; message kept in INBOX";

/// One dry-run record; `plan` says what a redirect or vacation would send.
fn report(
    a: &Action,
    plan: Option<&Plan>,
    outbound: &Outbound,
    json: bool,
    index: Option<usize>,
    ctx: &mut Ctx,
) {
    let mut note: Option<String> = plan.map(actions::plan_text);
    let (name, mut detail) = match &a.kind {
        ActionKind::Keep { flags } => ("keep", json!({ "flags": flags })),
        ActionKind::FileInto {
            mailbox,
            flags,
            create,
            copy,
        } => (
            "fileinto",
            json!({ "mailbox": mailbox, "flags": flags, "create": create, "copy": copy }),
        ),
        ActionKind::Discard => ("discard", json!({})),
        ActionKind::Reject { reason, extended } => (
            if *extended { "ereject" } else { "reject" },
            json!({ "reason": reason }),
        ),
        ActionKind::Redirect { address, copy } => {
            ("redirect", json!({ "address": address, "copy": copy }))
        }
        ActionKind::Vacation { reason, options } => (
            "vacation",
            json!({
                "reason": reason,
                "days": options.days(),
                "subject": options.subject,
                "from": options.from,
                "addresses": options.addresses,
                "mime": options.mime,
                "handle": options.handle(reason),
            }),
        ),
    };
    if let (Some(p), Some(d)) = (plan, detail.as_object_mut()) {
        d.insert("send".into(), json!(!matches!(p, Plan::Skip(_))));
        match p {
            Plan::Redirect { env } => {
                d.insert("envelope_from".into(), json!(env.from));
                d.insert("envelope_to".into(), json!(env.rcpts));
            }
            Plan::Vacation(r) => {
                d.insert("envelope_from".into(), json!(""));
                d.insert("envelope_to".into(), json!([r.to]));
                d.insert("reply_subject".into(), json!(r.subject));
                d.insert("reply_from".into(), json!(r.from));
            }
            Plan::Skip(why) => {
                d.insert("skipped".into(), json!(why));
            }
        }
        if !matches!(p, Plan::Skip(_)) {
            match outbound.route() {
                Ok(r) => {
                    d.insert("route".into(), json!(r));
                    note = note.map(|n| format!("{n} via {r}"));
                }
                Err(e) => {
                    // A delivery would keep the message instead.
                    d.insert("route".into(), json!(null));
                    d.insert("send".into(), json!(false));
                    d.insert("skipped".into(), json!(e));
                    note = note.map(|n| format!("{n}, but {e}"));
                }
            }
        }
    }
    if json {
        let mut rec = json!({
            "action": name,
            "implicit": a.pos.is_none(),
            "line": a.pos.map(|p| p.line),
            "column": a.pos.map(|p| p.col),
            "test": a.test,
        });
        if let (Some(r), Some(d)) = (rec.as_object_mut(), detail.as_object()) {
            for (k, v) in d {
                r.insert(k.clone(), v.clone());
            }
            if let Some(n) = &note {
                r.insert("note".into(), json!(n));
            }
            if let Some(i) = index {
                r.insert("message".into(), json!(i));
            }
        }
        ctx.line(&rec.to_string());
        return;
    }
    let mut s = match index {
        Some(i) => format!("message {i}: "),
        None => String::new(),
    };
    match a.pos {
        Some(p) => s.push_str(&format!("line {}: ", p.line)),
        None => s.push_str("implicit keep: "),
    }
    s.push_str(&describe(&a.kind));
    match &a.test {
        Some(t) => s.push_str(&format!(" (because {t})")),
        None if a.pos.is_some() => s.push_str(" (unconditional)"),
        None => {}
    }
    if let Some(n) = note {
        s.push_str(&format!(" [{n}]"));
    }
    ctx.line(&crate::proto::transcript::printable(&s));
}

#[cfg(test)]
mod tests {
    use super::mutf7;

    #[test]
    fn folder_names_in_modified_utf7() {
        assert_eq!(mutf7("Lists.rust"), "Lists.rust");
        assert_eq!(mutf7("Café"), "Caf&AOk-");
        assert_eq!(mutf7("A&B"), "A&-B");
        assert_eq!(mutf7("日本語"), "&ZeVnLIqe-");
        assert_eq!(mutf7("x😀y"), "x&2D3eAA-y");
    }
}
