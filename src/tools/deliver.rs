//! mail-deliver: the delivery agent. Reads one message (or with `--split`
//! an mbox stream) on stdin and stores it in every destination given.
//!
//! Guarantee: exit 0 means every message is durable in every destination;
//! 75 means something may succeed later and the caller must keep the
//! message; other codes are permanent (see the man page). Paths are printed
//! only for messages already durable.

use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};

use crate::config;
use crate::dedup;
use crate::exit::{Context, Error, Kind, Result};
use crate::mboxfmt::{Format, Splitter};
use crate::message::{self, Message};
use crate::store::{Destination, Item, Locking, Options};
use crate::tools::Ctx;

mod actions;
mod expect;
mod sieve;

/// Messages grouped under one sync in `--split` mode, at most.
const BATCH_MESSAGES: usize = 512;
/// Bytes grouped under one sync in `--split` mode, at most.
const BATCH_BYTES: usize = 32 << 20;

/// The clap definition of mail-deliver.
pub fn command() -> Command {
    Command::new("mail-deliver")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Deliver mail from stdin into Maildirs and mbox files, atomically and durably")
        .long_about(
            "Deliver the message on stdin into each DEST: a Maildir (a path ending in / or an \
             existing directory) or an mbox file. Exit 0 only when the message is fsynced in \
             every destination; exit 75 when the caller should keep it and retry.",
        )
        .after_help(
            "Examples:\n  mail-deliver ~/Maildir/ < msg\n  mail-deliver -f \"$SENDER\" ~/Maildir/ /var/mail/me\n  mail-deliver --split --print-path ~/Maildir/ < old.mbox",
        )
        .arg(
            Arg::new("dest")
                .value_name("DEST")
                .num_args(0..)
                .help("Maildir (ends in / or is a directory) or mbox file [default: $MAILDIR, else ~/Maildir/]"),
        )
        .arg(
            Arg::new("folder")
                .long("folder")
                .value_name("NAME")
                .help("Deliver into the Maildir++ subfolder NAME (e.g. Lists/rust -> .Lists.rust)"),
        )
        .arg(
            Arg::new("sender")
                .short('f')
                .long("sender")
                .value_name("ADDR")
                .help("Envelope sender: sets Return-Path (replacing any) and the mbox From_ line"),
        )
        .arg(
            Arg::new("recipient")
                .long("recipient")
                .value_name("ADDR")
                .help("Envelope recipient: adds Delivered-To; a message already delivered to ADDR is refused as a loop"),
        )
        .arg(
            Arg::new("split")
                .long("split")
                .action(ArgAction::SetTrue)
                .help("Read an mbox stream on stdin and deliver every message in it, with grouped fsyncs"),
        )
        .arg(
            Arg::new("print-path")
                .short('v')
                .long("print-path")
                .action(ArgAction::SetTrue)
                .help("Print the path of each stored message, one per line"),
        )
        .arg(
            Arg::new("dedup")
                .long("dedup")
                .action(ArgAction::SetTrue)
                .help("Skip a message whose Message-ID was recently delivered to the same destination"),
        )
        .arg(
            Arg::new("dedup-size")
                .long("dedup-size")
                .value_name("N")
                .value_parser(value_parser!(usize))
                .default_value("5000")
                .help("Message-IDs remembered per destination for --dedup"),
        )
        .arg(
            Arg::new("mbox-format")
                .long("mbox-format")
                .value_name("FORMAT")
                .value_parser(["mboxrd", "mboxo"])
                .default_value("mboxrd")
                .help("Quoting of From_ lines in mbox files (and in --split input)"),
        )
        .arg(
            Arg::new("locking")
                .long("locking")
                .value_name("LIST")
                .default_value("dotlock,fcntl")
                .help("mbox locks to take, comma-separated: dotlock, fcntl, flock"),
        )
        .arg(
            Arg::new("sieve")
                .long("sieve")
                .value_name("SCRIPT")
                .help("Filter the message through the Sieve SCRIPT into the Maildir's folders [config: [deliver] sieve]"),
        )
        .arg(
            Arg::new("check")
                .long("check")
                .value_name("SCRIPT")
                .help("Only compile the Sieve SCRIPT and report errors with line and column"),
        )
        .arg(
            Arg::new("dry-run")
                .long("dry-run")
                .action(ArgAction::SetTrue)
                .help("With --sieve: store nothing, print one record per action with its script line and test"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .help("With --dry-run: one JSON object per action"),
        )
        .arg(
            Arg::new("now")
                .long("now")
                .value_name("TIME")
                .help("With --sieve: the time the date tests see (epoch seconds or RFC 3339)"),
        )
        .arg(
            Arg::new("expect")
                .long("expect")
                .value_name("DIR")
                .conflicts_with_all(["check", "dry-run", "json", "split", "dest", "folder", "print-path"])
                .help("With --sieve: run every DIR/NAME.eml through the script, compare with DIR/NAME.expect; store nothing"),
        )
        .arg(
            Arg::new("expect-update")
                .long("expect-update")
                .action(ArgAction::SetTrue)
                .requires("expect")
                .help("With --expect: write each NAME.expect from the current results"),
        )
        .arg(
            Arg::new("lock-timeout")
                .long("lock-timeout")
                .value_name("SECONDS")
                .value_parser(value_parser!(u64))
                .default_value("60")
                .help("Give up waiting for an mbox lock after SECONDS (exit 75)"),
        )
}

/// A message ready to store.
struct Prepared {
    /// 1-based position in the input, for messages in `--split` mode.
    index: usize,
    data: Vec<u8>,
    sender: String,
    msgid: Option<String>,
}

struct Settings {
    sender: Option<String>,
    recipient: Option<String>,
    print: bool,
    dedup: Option<usize>,
    format: Format,
}

/// Run mail-deliver.
pub fn run(m: &ArgMatches, ctx: &mut Ctx) -> Result<()> {
    if let Some(script) = m.get_one::<String>("check") {
        return sieve::check(script, ctx);
    }
    if let Some(dir) = m.get_one::<String>("expect") {
        return expect_run(dir, m, ctx);
    }
    // A config that does not load must not stop a delivery: without the
    // filter the message goes to INBOX, and without a route a redirect
    // keeps it there, which loses nothing.
    let loaded = config::Config::load(None);
    let script = match m.get_one::<String>("sieve") {
        Some(s) => Some(s.clone()),
        None => match &loaded {
            // "~/" in the config means the home directory, as a shell would.
            Ok(c) => c
                .deliver
                .sieve
                .as_deref()
                .map(|p| sieve::home_path(p).to_string_lossy().into_owned()),
            Err(e) => {
                ctx.warn(&format!("{e}; delivering without a Sieve filter"));
                None
            }
        },
    };
    if script.is_none() {
        for flag in ["dry-run", "json", "now"] {
            if m.value_source(flag) == Some(clap::parser::ValueSource::CommandLine) {
                return Err(Error::new(
                    Kind::Usage,
                    format!("--{flag}"),
                    "needs --sieve SCRIPT",
                ));
            }
        }
    }
    let format = Format::parse(
        m.get_one::<String>("mbox-format")
            .map_or("mboxrd", String::as_str),
    )
    .unwrap_or(Format::Mboxrd);
    let mut locking = Locking {
        timeout: Duration::from_secs(*m.get_one::<u64>("lock-timeout").unwrap_or(&60)),
        ..Locking::default()
    };
    if let Some(l) = m.get_one::<String>("locking") {
        locking
            .parse_methods(l)
            .map_err(|e| Error::new(Kind::Usage, "--locking", e))?;
    }
    let opts = Options {
        folder: m.get_one::<String>("folder").cloned(),
        mbox_format: format,
        locking,
    };
    let settings = Settings {
        sender: m.get_one::<String>("sender").cloned(),
        recipient: m.get_one::<String>("recipient").cloned(),
        print: m.get_flag("print-path"),
        dedup: m
            .get_flag("dedup")
            .then(|| *m.get_one::<usize>("dedup-size").unwrap_or(&5000)),
        format,
    };
    let args: Vec<String> = match m.get_many::<String>("dest") {
        Some(v) => v.cloned().collect(),
        None => vec![config::default_maildir().ok_or_else(|| {
            Error::new(
                Kind::Config,
                "no destination",
                "none given, and neither MAILDIR nor HOME is set",
            )
        })?],
    };
    let mut dests = Vec::new();
    for a in &args {
        match Destination::open(a, &opts) {
            Ok(d) => dests.push(d),
            Err(e) if e.kind() == Kind::Usage => return Err(e),
            Err(e) => ctx.report(&e),
        }
    }
    if dests.is_empty() {
        return Ok(());
    }
    let from_config = m.get_one::<String>("sieve").is_none();
    let fits = matches!(&dests[..], [Destination::Maildir(_)]) && opts.folder.is_none();
    let script = match script {
        // The config's filter is for the plain case; a run it cannot fit
        // (an mbox, several destinations, --folder, --split) delivers as
        // before rather than fail, so an MTA never bounces for it.
        Some(sc) if from_config && !fits => {
            ctx.warn(&format!(
                "[deliver] sieve = {sc:?} applies to one Maildir destination without --folder or --split; delivering without it"
            ));
            None
        }
        other => other,
    };
    if let Some(script) = script {
        if settings.dedup.is_some() {
            ctx.warn("--dedup is not applied to Sieve deliveries in this version");
        }
        let now = now(m)?;
        let dry_run = m.get_flag("dry-run");
        let split = m.get_flag("split");
        let md = match (&dests[..], opts.folder.is_some()) {
            ([Destination::Maildir(md)], false) => md.clone(),
            _ => {
                return Err(Error::new(
                    Kind::Usage,
                    "--sieve",
                    "needs exactly one Maildir destination, without --folder",
                ));
            }
        };
        let global = loaded.as_ref().ok().and_then(sieve::global_dir);
        let config = match loaded {
            Ok(c) => c,
            Err(e) => {
                if m.get_one::<String>("sieve").is_some() {
                    ctx.warn(&format!(
                        "{e}; Sieve redirects and vacation replies have no route"
                    ));
                }
                config::Config::default()
            }
        };
        let f = sieve::Filter {
            compiled: sieve::load(&script).map_err(|e| e.to_string()),
            script,
            dry_run,
            json: m.get_flag("json"),
            now,
            outbound: actions::Outbound::new(config),
            global,
            stream: split,
        };
        if split {
            return filtered_split(&md, &settings, &f, ctx);
        }
        return filtered(&md, &settings, &f, ctx);
    }
    if m.get_flag("split") {
        split(&dests, &settings, ctx)
    } else {
        single(&dests, &settings, ctx)
    }
}

/// `--now TIME`, or the clock (`POSTLINE_NOW` pins it, as for the queue).
fn now(m: &ArgMatches) -> Result<(i64, i32)> {
    match m.get_one::<String>("now") {
        Some(t) => sieve::parse_now(t),
        None => Ok((crate::queue::now() as i64, 0)),
    }
}

/// `--sieve SCRIPT --expect DIR [--expect-update]`: no destination, no
/// config (the script under test is the one named).
fn expect_run(dir: &str, m: &ArgMatches, ctx: &mut Ctx) -> Result<()> {
    let Some(script) = m.get_one::<String>("sieve").cloned() else {
        return Err(Error::new(Kind::Usage, "--expect", "needs --sieve SCRIPT"));
    };
    let format = Format::parse(
        m.get_one::<String>("mbox-format")
            .map_or("mboxrd", String::as_str),
    )
    .unwrap_or(Format::Mboxrd);
    let settings = Settings {
        sender: m.get_one::<String>("sender").cloned(),
        recipient: m.get_one::<String>("recipient").cloned(),
        print: false,
        dedup: None,
        format,
    };
    // The expectations hold whatever the config: no route is named and
    // nothing is remembered from earlier runs.
    let f = sieve::Filter {
        compiled: sieve::load(&script).map_err(|e| e.to_string()),
        script,
        dry_run: true,
        json: false,
        now: now(m)?,
        outbound: actions::Outbound::new(config::Config::default()),
        global: config::Config::load(None)
            .ok()
            .as_ref()
            .and_then(sieve::global_dir),
        stream: false,
    };
    expect::run(dir, &f, &settings, m.get_flag("expect-update"), ctx)
}

/// One message on stdin through the Sieve filter.
fn filtered(
    md: &crate::store::Maildir,
    s: &Settings,
    f: &sieve::Filter,
    ctx: &mut Ctx,
) -> Result<()> {
    let p = read_one(s)?;
    filter_one(md, &p, s, f, None, ctx)
}

fn filter_one(
    md: &crate::store::Maildir,
    p: &Prepared,
    s: &Settings,
    f: &sieve::Filter,
    index: Option<usize>,
    ctx: &mut Ctx,
) -> Result<()> {
    let (from, to) = envelope(p, s);
    sieve::filter(
        md,
        &p.data,
        from.as_deref(),
        to.as_deref(),
        f,
        index,
        s.print,
        ctx,
    )
}

/// The envelope the script's `envelope` test sees: -f (else the
/// message's own sender, none for bounces) and --recipient.
fn envelope(p: &Prepared, s: &Settings) -> (Option<String>, Option<String>) {
    let from = match &s.sender {
        Some(snd) => Some(message::bare_address(snd)),
        None if p.sender != "MAILER-DAEMON" => Some(p.sender.clone()),
        None => None,
    };
    (from, s.recipient.as_deref().map(message::bare_address))
}

/// `--split` with a script: every message of the mbox stream on stdin
/// filtered and stored (or, with `--dry-run`, reported), one message held
/// at a time. An mbox has no one to bounce to or answer: see
/// `sieve::Filter::stream`.
fn filtered_split(
    md: &crate::store::Maildir,
    s: &Settings,
    f: &sieve::Filter,
    ctx: &mut Ctx,
) -> Result<()> {
    let stdin = io::stdin();
    let mut sp = Splitter::new(BufReader::with_capacity(1 << 20, stdin.lock()), s.format);
    let mut index = 0;
    loop {
        let entry = match sp.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Error::new(Kind::Data, "stdin", e.to_string()));
            }
            Err(e) => {
                return Err(Error::io(
                    format!("reading the mbox on stdin after message {index}"),
                    &e,
                ));
            }
        };
        index += 1;
        match prepare(index, entry.data, Some(entry.sender), s) {
            Ok(p) => filter_one(md, &p, s, f, Some(index), ctx)?,
            Err(e) => ctx.report(&e.within(format!("message {index}"))),
        }
    }
    if index == 0 {
        return Err(Error::new(
            Kind::Data,
            "stdin",
            "no messages in the mbox stream",
        ));
    }
    Ok(())
}

/// One message on stdin.
fn single(dests: &[Destination], s: &Settings, ctx: &mut Ctx) -> Result<()> {
    let p = read_one(s)?;
    deliver_group(dests, &[p], s, ctx);
    Ok(())
}

/// Read the one message on stdin and prepare it.
fn read_one(s: &Settings) -> Result<Prepared> {
    // Most messages fit: one or two reads instead of a doubling series.
    let mut raw = Vec::with_capacity(64 << 10);
    io::stdin()
        .lock()
        .read_to_end(&mut raw)
        .context("reading the message from stdin")?;
    if message::is_blank(&raw) {
        return Err(Error::new(
            Kind::Data,
            "stdin",
            "empty message, nothing to deliver",
        ));
    }
    let (line_sender, raw) = match message::split_from_line(&raw) {
        Some((snd, rest)) => (Some(snd), rest.to_vec()),
        None => (None, raw),
    };
    if message::is_blank(&raw) {
        return Err(Error::new(
            Kind::Data,
            "stdin",
            "empty message after the From_ line",
        ));
    }
    prepare(1, message::normalize(raw), line_sender, s)
}

/// An mbox stream on stdin: deliver in groups under one sync each.
fn split(dests: &[Destination], s: &Settings, ctx: &mut Ctx) -> Result<()> {
    let stdin = io::stdin();
    let mut sp = Splitter::new(BufReader::with_capacity(1 << 20, stdin.lock()), s.format);
    let mut batch: Vec<Prepared> = Vec::new();
    let mut bytes = 0;
    let mut index = 0;
    let mut stopped = false;
    loop {
        let entry = match sp.next_entry() {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Error::new(Kind::Data, "stdin", e.to_string()));
            }
            Err(e) => {
                ctx.report(&Error::io(
                    format!("reading the mbox on stdin after message {index}"),
                    &e,
                ));
                break;
            }
        };
        let Some(entry) = entry else { break };
        index += 1;
        if message::is_blank(&entry.data) {
            ctx.report(&Error::new(
                Kind::Data,
                format!("message {index}"),
                "empty message, skipped",
            ));
            continue;
        }
        match prepare(index, entry.data, Some(entry.sender), s) {
            Ok(p) => {
                bytes += p.data.len();
                batch.push(p);
            }
            Err(e) => ctx.report(&e.within(format!("message {index}"))),
        }
        if batch.len() >= BATCH_MESSAGES || bytes >= BATCH_BYTES {
            if !deliver_group(dests, &batch, s, ctx) {
                stopped = true;
                break;
            }
            batch.clear();
            bytes = 0;
        }
    }
    if !stopped && !batch.is_empty() {
        deliver_group(dests, &batch, s, ctx);
    } else if stopped {
        ctx.warn(&format!(
            "stopped after a temporary failure; messages after {index} were not read"
        ));
    }
    if index == 0 {
        return Err(Error::new(
            Kind::Data,
            "stdin",
            "no messages in the mbox stream",
        ));
    }
    Ok(())
}

/// Loop check and the headers added at final delivery.
fn prepare(
    index: usize,
    data: Vec<u8>,
    line_sender: Option<String>,
    s: &Settings,
) -> Result<Prepared> {
    let mut msg = Message::new(data);
    if let Some(r) = &s.recipient
        && msg.delivered_to(r)
    {
        return Err(Error::new(
            Kind::Data,
            format!("recipient {r}"),
            "mail loop: the message already has a Delivered-To header for this recipient",
        ));
    }
    let mut add = Vec::new();
    let mut drop = Vec::new();
    if let Some(snd) = &s.sender {
        add.push(format!("Return-Path: <{}>\n", message::bare_address(snd)));
        drop.push("Return-Path");
    }
    if let Some(r) = &s.recipient {
        add.push(format!("Delivered-To: {}\n", message::bare_address(r)));
    }
    msg.replace_at_top(&drop, &add);
    let sender = s
        .sender
        .as_deref()
        .map(message::bare_address)
        .or(line_sender)
        .or_else(|| {
            msg.header_values("Return-Path")
                .into_iter()
                .next()
                .map(|v| message::bare_address(&v))
        })
        .unwrap_or_else(|| "MAILER-DAEMON".to_string());
    let msgid = msg.message_id();
    Ok(Prepared {
        index,
        data: msg.into_bytes(),
        sender,
        msgid,
    })
}

/// Store `batch` in every destination. Returns false when a temporary
/// failure means the caller should stop feeding more.
fn deliver_group(dests: &[Destination], batch: &[Prepared], s: &Settings, ctx: &mut Ctx) -> bool {
    let mut go_on = true;
    for d in dests {
        let mut cache = match s.dedup {
            Some(n) => match dedup::Cache::open(&config::state_dir().join("dedup"), d.path(), n) {
                Ok(c) => Some(c),
                Err(e) => {
                    // Without the cache we cannot tell duplicates; storing
                    // twice beats losing, so deliver anyway and say so.
                    ctx.warn(&format!("{e}; delivering without --dedup"));
                    None
                }
            },
            None => None,
        };
        let mut todo: Vec<&Prepared> = Vec::with_capacity(batch.len());
        let mut in_batch = std::collections::HashSet::new();
        for p in batch {
            if let (Some(c), Some(id)) = (&cache, &p.msgid)
                && (c.contains(id) || !in_batch.insert(id.clone()))
            {
                continue;
            }
            todo.push(p);
        }
        let items: Vec<Item<'_>> = todo
            .iter()
            .map(|p| Item {
                data: &p.data,
                sender: &p.sender,
            })
            .collect();
        let (stored, err): (Vec<PathBuf>, Option<Error>) = if items.is_empty() {
            (Vec::new(), None)
        } else {
            d.store(&items)
        };
        for n in d.take_notes() {
            ctx.warn(&n);
        }
        for (p, path) in todo.iter().zip(&stored) {
            if let (Some(c), Some(id)) = (cache.as_mut(), &p.msgid) {
                c.record(id);
            }
            if s.print {
                ctx.line(&path.display().to_string());
            }
        }
        if let Some(c) = cache
            && let Err(e) = c.save(d.path())
        {
            ctx.warn(&format!("{e} (duplicates may be delivered later)"));
        }
        if let Some(e) = err {
            let e = match (todo.get(stored.len()), todo.last()) {
                (Some(first), Some(last)) if batch.len() > 1 => e.within(format!(
                    "messages {}-{} not stored",
                    first.index, last.index
                )),
                _ => e,
            };
            go_on &= !e.kind().is_temporary();
            ctx.report(&e);
        }
    }
    ctx.flush();
    go_on
}
