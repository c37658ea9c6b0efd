//! mail-queue: list and run the mail-send queue: retry with backoff, hold,
//! release, delete, bounce on expiry.
//!
//! The tool is a face over [`crate::queue`]: listing reads state snapshots
//! without locks (state files are replaced atomically), every change (hold,
//! release, delete, a delivery attempt) happens under the entry's lock.
//! Exit codes: 0 done; 64 bad usage or a malformed queue id; 67 a
//! well-formed id that is not in the queue; 75 a spool I/O error, or (for
//! `flush`) an entry that is still waiting afterwards; 78 a config error.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::calendar::rfc5322_date;
use crate::config::{Config, parse_duration};
use crate::exit::{Error, Kind, Result};
use crate::proto::transcript::Transcript;
use crate::queue::dsn::header_block;
use crate::queue::{
    EntryReport, Outcome, Policy, RcptStatus, Runner, Select, Spool, State, WATCH_POLL, now,
    parse_id,
};
use crate::send::{Fate, Route, SendOptions, Sender};
use crate::tools::Ctx;

fn id_args(help: &'static str) -> Arg {
    Arg::new("id")
        .value_name("ID")
        .num_args(1..)
        .required(true)
        .help(help)
}

fn json_arg(help: &'static str) -> Arg {
    Arg::new("json")
        .long("json")
        .action(ArgAction::SetTrue)
        .help(help)
}

fn policy_args(cmd: Command) -> Command {
    cmd.arg(
        Arg::new("expire")
            .long("expire")
            .value_name("DURATION")
            .help("Bounce what is still undelivered this long after arrival [config: [queue] expire; default 5d]"),
    )
    .arg(
        Arg::new("warn-after")
            .long("warn-after")
            .value_name("DURATION")
            .help("Send the sender a \"delayed\" notice this long after arrival [config: [queue] warn_after; default: never]"),
    )
}

/// The clap command of mail-queue.
pub fn command() -> Command {
    Command::new("mail-queue")
        .version(env!("CARGO_PKG_VERSION"))
        .about("List and run the mail-send queue: retry with backoff, hold, release, delete, bounce on expiry")
        .long_about(
            "List and run the queue of messages mail-send could not deliver at once. Without a \
             command, list the queue (like mailq). Entries are retried with exponential backoff \
             and bounced to their sender (a DSN) when they expire.",
        )
        .after_help(
            "Examples:\n  mail-queue\n  mail-queue show 1A2155BF21C0052A8000\n  mail-queue flush\n  \
             */5 * * * * mail-queue run      (crontab)\n  mail-queue run --watch",
        )
        .args_conflicts_with_subcommands(false)
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .global(true)
                .help("Read this config file [default: ~/.config/postline/config.toml]"),
        )
        .arg(
            Arg::new("queue-dir")
                .long("queue-dir")
                .value_name("DIR")
                .value_parser(clap::value_parser!(PathBuf))
                .global(true)
                .help("The queue directory [config: [queue] dir; default: $XDG_STATE_HOME/postline/queue]"),
        )
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::SetTrue)
                .global(true)
                .help("Print the SMTP/LMTP dialogue on stderr (AUTH redacted) and, for run, what happened to each entry"),
        )
        .arg(json_arg("With no command: list the queue as JSON Lines"))
        .subcommand(
            Command::new("list")
                .about("List the queue, one entry per block (the default)")
                .arg(json_arg("One JSON object per entry (JSON Lines)")),
        )
        .subcommand(
            Command::new("show")
                .about("Show one entry: envelope, status, attempts, headers")
                .arg(
                    Arg::new("id")
                        .value_name("ID")
                        .required(true)
                        .help("The queue id"),
                )
                .arg(json_arg("The entry's state as JSON")),
        )
        .subcommand(policy_args(
            Command::new("flush")
                .about("Try every entry (or those named) now, ignoring the backoff")
                .arg(
                    Arg::new("id")
                        .value_name("ID")
                        .num_args(0..)
                        .help("Only these entries"),
                )
                .arg(json_arg("Report each entry as a JSON object")),
        ))
        .subcommand(policy_args(
            Command::new("run")
                .about("Try the entries that are due (for cron)")
                .arg(
                    Arg::new("watch")
                        .long("watch")
                        .action(ArgAction::SetTrue)
                        .help("Stay running: try entries as they fall due"),
                )
                .arg(json_arg("Report each entry tried as a JSON object")),
        ))
        .subcommand(
            Command::new("hold")
                .about("Keep entries from being tried until released")
                .arg(id_args("The queue ids")),
        )
        .subcommand(
            Command::new("release")
                .about("Release held entries and make them due now")
                .arg(id_args("The queue ids")),
        )
        .subcommand(
            Command::new("delete")
                .about("Remove entries without sending them or bouncing")
                .arg(id_args("The queue ids")),
        )
}

/// Everything a subcommand needs.
struct Env {
    config: Config,
    spool: Spool,
    policy: Policy,
    verbose: bool,
}

/// Run mail-queue.
pub fn run(m: &ArgMatches, ctx: &mut Ctx) -> Result<()> {
    let sub = m.subcommand();
    let sm = sub.map_or(m, |(_, s)| s);
    let config = Config::load(sm.get_one::<PathBuf>("config").map(PathBuf::as_path))?;
    let dir = sm
        .get_one::<PathBuf>("queue-dir")
        .cloned()
        .unwrap_or_else(|| Spool::default_dir(&config));
    let mut policy = Policy::from_config(&config.queue)?;
    if let Ok(Some(e)) = sm.try_get_one::<String>("expire") {
        policy.expire = parse_duration(e).map_err(|e| Error::new(Kind::Usage, "--expire", e))?;
    }
    if let Ok(Some(w)) = sm.try_get_one::<String>("warn-after") {
        policy.warn_after =
            Some(parse_duration(w).map_err(|e| Error::new(Kind::Usage, "--warn-after", e))?);
    }
    let spool = Spool::open(&dir)?.with_policy(policy.clone());
    let env = Env {
        config,
        spool,
        policy,
        verbose: sm.get_flag("verbose"),
    };
    let flag = |m: &ArgMatches| m.try_get_one::<bool>("json").ok().flatten() == Some(&true);
    // `mail-queue --json list` as well as `mail-queue list --json`.
    let json = flag(sm) || flag(m);
    match sub {
        None | Some(("list", _)) => list(&env, json, ctx),
        Some(("show", s)) => show(&env, id_of(s)?, json, ctx),
        Some(("flush", s)) => {
            let ids: Vec<String> = s
                .get_many::<String>("id")
                .map(|v| v.map(|i| parse_id(i)).collect::<Result<_>>())
                .transpose()?
                .unwrap_or_default();
            for id in &ids {
                env.spool.load(id)?;
            }
            let select = if ids.is_empty() {
                Select::All
            } else {
                Select::Ids(ids)
            };
            flush(&env, &select, json, ctx)
        }
        Some(("run", s)) if s.get_flag("watch") => watch(&env, json, ctx),
        Some(("run", _)) => {
            let print = env.verbose || json;
            pass(&env, &Select::Due, print, json, ctx).map(|_| ())
        }
        Some((cmd @ ("hold" | "release" | "delete"), s)) => {
            let ids: Vec<String> = s
                .get_many::<String>("id")
                .into_iter()
                .flatten()
                .map(|i| parse_id(i))
                .collect::<Result<_>>()?;
            change(&env, cmd, &ids, ctx)
        }
        Some((other, _)) => Err(Error::new(Kind::Usage, other, "unknown command")),
    }
}

fn id_of(m: &ArgMatches) -> Result<String> {
    parse_id(m.get_one::<String>("id").map_or("", String::as_str))
}

/// Run mail-queue with `args` (without the program name) on behalf of
/// another tool: mail-send's `-bp` and `-q`, and `mailq`.
pub fn run_args(args: &[String], ctx: &mut Ctx) -> Result<()> {
    let argv = std::iter::once("mail-queue".to_string()).chain(args.iter().cloned());
    let m = command()
        .try_get_matches_from(argv)
        .map_err(|e| Error::new(Kind::Usage, "mail-queue", super::clap_error_line(&e)))?;
    run(&m, ctx)
}

/// `Thu Nov 26 00:40:48` (UTC), the mailq arrival column.
fn short_time(secs: u64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let a = crate::calendar::asctime(t);
    // asctime ends with " YYYY"; mailq leaves the year out.
    a.rsplit_once(' ')
        .map_or(a.clone(), |(head, _)| head.to_string())
}

fn sender_shown(s: &State) -> &str {
    if s.from.is_empty() {
        "MAILER-DAEMON"
    } else {
        &s.from
    }
}

fn route_shown(r: &Route) -> String {
    match r {
        Route::Account { name } => format!("account {name}"),
        Route::Server { server } => format!(
            "server {}:{} (tls {})",
            server.host.as_deref().unwrap_or("?"),
            server
                .port
                .map_or_else(|| "default".to_string(), |p| p.to_string()),
            server.tls.map_or_else(
                || "starttls".to_string(),
                |t| format!("{t:?}").to_lowercase()
            )
        ),
        Route::Direct { resolver, mx_port } => format!(
            "direct to MX{}{}",
            resolver
                .as_ref()
                .map_or(String::new(), |r| format!(", resolver {r}")),
            mx_port.map_or(String::new(), |p| format!(", port {p}"))
        ),
        Route::Lmtp { target } => format!("lmtp {target}"),
    }
}

fn entry_json(id: &str, s: &State) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut v {
        let mut out = serde_json::Map::new();
        out.insert("id".into(), id.into());
        out.insert("arrival_date".into(), rfc5322_date(s.created).into());
        out.insert("last_error".into(), s.last_error().into());
        out.extend(std::mem::take(map));
        return serde_json::Value::Object(out);
    }
    v
}

fn list(env: &Env, json: bool, ctx: &mut Ctx) -> Result<()> {
    let entries = env.spool.list()?;
    if json {
        for e in &entries {
            let line = match &e.state {
                Ok(s) => {
                    let mut v = entry_json(&e.id, s);
                    if e.message_missing
                        && let serde_json::Value::Object(m) = &mut v
                    {
                        m.insert("message_missing".into(), true.into());
                    }
                    v.to_string()
                }
                Err(err) => serde_json::json!({"id": e.id, "error": err.to_string()}).to_string(),
            };
            if !ctx.line(&line) {
                break;
            }
        }
        return Ok(());
    }
    if entries.is_empty() {
        ctx.line("Mail queue is empty");
        return Ok(());
    }
    ctx.line(&format!(
        "{:<21} {:>8} {:<20} {}",
        "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------"
    ));
    let mut bytes = 0u64;
    let indent = " ".repeat(21 + 1 + 8 + 1 + 20 + 1);
    for e in &entries {
        let s = match &e.state {
            Ok(s) => s,
            Err(err) => {
                ctx.line(&format!("{:<21} (unreadable: {err})", e.id));
                ctx.line("");
                continue;
            }
        };
        bytes += s.size;
        let mark = if s.held { "!" } else { " " };
        let mut block = vec![format!(
            "{}{mark} {:>8} {:<20} {}",
            e.id,
            s.size,
            short_time(s.created),
            sender_shown(s)
        )];
        if e.message_missing {
            block.push(format!("{indent}({})", crate::queue::MISSING_MESSAGE));
        }
        let mut last_reason: Option<&str> = None;
        for r in s.rcpts.iter().filter(|r| r.status != RcptStatus::Delivered) {
            let reason = match r.status {
                RcptStatus::Failed => Some("failed, bounce pending"),
                _ => r.reply.as_deref(),
            };
            if let Some(reason) = reason
                && last_reason != Some(reason)
            {
                // A server's reply, stored as it came: escaped for the terminal.
                block.push(format!(
                    "{indent}({})",
                    crate::proto::transcript::printable(reason)
                ));
                last_reason = Some(reason);
            }
            block.push(format!("{indent}{}", r.addr));
        }
        block.push(String::new());
        for l in block {
            if !ctx.line(&l) {
                return Ok(());
            }
        }
    }
    let n = entries.len();
    ctx.line(&format!(
        "-- {} Kbytes in {n} Request{}.",
        bytes.div_ceil(1024),
        if n == 1 { "" } else { "s" }
    ));
    Ok(())
}

fn when(secs: u64) -> String {
    let t = now();
    let rel = if secs <= t {
        "due now".to_string()
    } else {
        let d = secs - t;
        match d {
            0..120 => format!("in {d}s"),
            120..7200 => format!("in {}m", d / 60),
            7200..172_800 => format!("in {}h", d / 3600),
            _ => format!("in {}d", d / 86400),
        }
    };
    format!("{} ({rel})", rfc5322_date(secs))
}

fn show(env: &Env, id: String, json: bool, ctx: &mut Ctx) -> Result<()> {
    let s = env.spool.load(&id)?;
    if json {
        ctx.line(&entry_json(&id, &s).to_string());
        return Ok(());
    }
    let status = if s.held {
        "held (not tried until released)".to_string()
    } else if s.pending().is_empty() {
        "finished; bounce pending".to_string()
    } else {
        format!("waiting, next try {}", when(s.next_try))
    };
    let expires = s.created.saturating_add(env.policy.expire.as_secs());
    let mut out = vec![
        format!("Queue ID:   {id}"),
        format!("Size:       {} bytes", s.size),
        format!("Arrival:    {}", rfc5322_date(s.created)),
        format!(
            "Sender:     {}",
            if s.from.is_empty() { "<>" } else { &s.from }
        ),
        format!("Route:      {}", route_shown(&s.route)),
        format!("Status:     {status}"),
        format!("Expires:    {}", rfc5322_date(expires)),
        format!("Attempts:   {}", s.attempts),
        "Recipients:".to_string(),
    ];
    for r in &s.rcpts {
        let st = match r.status {
            RcptStatus::Pending => "pending",
            RcptStatus::Delivered => "delivered",
            RcptStatus::Failed if r.expired => "expired",
            RcptStatus::Failed => "failed",
        };
        let reply = crate::proto::transcript::printable(r.reply.as_deref().unwrap_or(""));
        out.push(
            format!("  {}  {st}  {reply}", r.addr)
                .trim_end()
                .to_string(),
        );
    }
    if !s.log.is_empty() {
        out.push("Attempt log:".to_string());
        for a in &s.log {
            out.push(format!("  {}  {}", rfc5322_date(a.time), a.reason));
        }
    }
    if env.spool.message_missing(&id) {
        out.push(format!(
            "Message:    missing: {}",
            crate::queue::MISSING_MESSAGE
        ));
    } else {
        out.push("Headers:".to_string());
        let msg = env.spool.message(&id)?;
        let headers = header_block(&msg);
        for l in String::from_utf8_lossy(&headers).lines() {
            out.push(format!("  {l}"));
        }
    }
    for l in out {
        if !ctx.line(&l) {
            break;
        }
    }
    Ok(())
}

fn sender(env: &Env) -> Sender {
    let transcript = if env.verbose {
        Transcript::to(Box::new(io::stderr()), "mail-queue: ")
    } else {
        Transcript::off()
    };
    Sender::new(env.config.clone(), SendOptions::default(), transcript)
}

/// The lines (or JSON object) reporting one entry.
fn report_lines(r: &EntryReport, json: bool) -> Vec<String> {
    if json {
        let outcome = match r.outcome {
            Outcome::Done => "done",
            Outcome::Deferred(_) => "deferred",
            Outcome::Held => "held",
            Outcome::Busy => "busy",
            Outcome::Gone => "gone",
            Outcome::Failed(_) => "error",
        };
        let mut v = serde_json::json!({
            "id": r.id,
            "outcome": outcome,
            "tried": r.tried,
            "expired": r.expired,
            "bounce": r.bounce,
            "warning": r.warning,
            "dropped": r.dropped,
        });
        if let serde_json::Value::Object(m) = &mut v {
            match &r.outcome {
                Outcome::Deferred(t) => {
                    m.insert("next_try".into(), (*t).into());
                }
                Outcome::Failed(e) => {
                    m.insert("error".into(), e.clone().into());
                }
                _ => {}
            }
        }
        return vec![v.to_string()];
    }
    let id = &r.id;
    let mut out = Vec::new();
    match r.outcome {
        Outcome::Held => out.push(format!("{id}: held, not tried")),
        Outcome::Busy => out.push(format!("{id}: being sent by another runner, not tried")),
        Outcome::Gone => out.push(format!("{id}: no longer in the queue")),
        _ => {}
    }
    for t in &r.tried {
        let what = match (&t.fate, &r.outcome) {
            (Fate::Delivered, _) => "delivered".to_string(),
            (Fate::Permanent { .. }, _) => "failed".to_string(),
            (Fate::Temporary, _) if r.expired.contains(&t.rcpt) => "expired".to_string(),
            (Fate::Temporary, Outcome::Deferred(next)) => {
                format!("deferred until {}", rfc5322_date(*next))
            }
            (Fate::Temporary, _) => "deferred".to_string(),
        };
        // The server's reply, escaped: it goes to a terminal.
        out.push(format!(
            "{id}: {}: {what}: {}",
            t.rcpt,
            crate::proto::transcript::printable(&t.reply)
        ));
    }
    for e in r
        .expired
        .iter()
        .filter(|e| !r.tried.iter().any(|t| &t.rcpt == *e))
    {
        out.push(format!("{id}: {e}: expired"));
    }
    if let Some(b) = &r.bounce {
        out.push(format!("{id}: failure notice to the sender queued as {b}"));
    }
    if let Some(w) = &r.warning {
        out.push(format!("{id}: delay notice to the sender queued as {w}"));
    }
    for d in &r.dropped {
        out.push(format!(
            "{id}: {d}: failed; no notice sent (null sender, or NOTIFY without FAILURE)"
        ));
    }
    out
}

/// One pass; returns whether an entry it touched is still waiting.
fn pass(env: &Env, select: &Select, print: bool, json: bool, ctx: &mut Ctx) -> Result<bool> {
    let mut runner = Runner::new(&env.spool, sender(env), env.policy.clone());
    let mut waiting = false;
    runner.pass(select, &mut |r| {
        if let Outcome::Failed(e) = &r.outcome {
            // Shown whatever the mode: the entry needs an admin.
            ctx.report(&Error::new(
                Kind::Temporary,
                format!("queue entry {}", r.id),
                e,
            ));
        }
        if matches!(r.outcome, Outcome::Deferred(_) | Outcome::Held) {
            waiting = true;
        }
        if print {
            for l in report_lines(r, json) {
                ctx.line(&l);
            }
            ctx.flush();
        }
    })?;
    Ok(waiting)
}

fn flush(env: &Env, select: &Select, json: bool, ctx: &mut Ctx) -> Result<()> {
    if pass(env, select, true, json, ctx)? {
        ctx.note(Kind::Temporary);
    }
    Ok(())
}

/// `run --watch`: a pass, then sleep until the next entry falls due or the
/// spool changes (a new entry renamed in changes its mtime), checked every
/// [`WATCH_POLL`]; a full look at least every minute in any case.
fn watch(env: &Env, json: bool, ctx: &mut Ctx) -> Result<()> {
    let print = true;
    let mtime = || {
        std::fs::metadata(env.spool.dir())
            .and_then(|m| m.modified())
            .ok()
    };
    loop {
        let seen = mtime();
        if let Err(e) = pass(env, &Select::Due, print, json, ctx) {
            // A spool error (disk full) may pass: say so and keep watching.
            ctx.report(&e);
        }
        let next = env.spool.next_due(&env.policy).unwrap_or(None);
        let start = now();
        loop {
            let t = now();
            if next.is_some_and(|n| t >= n) || t >= start + 60 || mtime() != seen {
                break;
            }
            std::thread::sleep(WATCH_POLL);
        }
    }
}

fn change(env: &Env, cmd: &str, ids: &[String], ctx: &mut Ctx) -> Result<()> {
    for id in ids {
        let res = (|| -> Result<()> {
            if cmd == "delete" {
                env.spool.delete(id)?;
                ctx.line(&format!("{id}: deleted"));
                return Ok(());
            }
            // Waits for a runner that is sending it; a delivery attempt is
            // bounded by the connection timeouts.
            let Some(mut l) = env.spool.lock(id, true)? else {
                return Err(Error::new(
                    Kind::NoUser,
                    format!("queue id {id}"),
                    "no such entry in the queue",
                ));
            };
            l.state.held = cmd == "hold";
            if cmd == "release" {
                l.state.next_try = now();
            }
            l.save()?;
            ctx.line(&format!(
                "{id}: {}",
                if cmd == "hold" { "held" } else { "released" }
            ));
            Ok(())
        })();
        if let Err(e) = res {
            ctx.report(&e);
        }
    }
    Ok(())
}
