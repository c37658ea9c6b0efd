//! mail-trace: the path a message took, from its headers. Reads messages
//! (stdin, message files, mboxes, Maildirs), analyses each with
//! [`crate::trace::chain`] and prints a table with a delay timeline
//! ([`table`]), JSON Lines (`--json`, [`json`]) or a per-relay summary
//! (`--summary`, [`summary`]).
//!
//! This file owns the command line and the walk over the inputs, which is
//! [`crate::store::read`] with header blocks only: mbox bodies are skipped
//! by the splitter, a message file is read up to its first empty line, and
//! never more than [`HEADER_LIMIT`] of one header block is held (a longer
//! one is cut, with a warning), so memory does not grow with the input.
//! Exit 0 when traced, 65 when no header field could be read from any
//! input (an unreadable or missing input is reported as 65 too, and the
//! others are still traced), 1 with `--strict` when any anomaly that is
//! not informational ([`chain::INFORMATIONAL`]) was found.

mod json;
mod pieces;
mod summary;
mod table;
mod verify;

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::exit::{Error, Kind, Result, describe_io};
use crate::store::read::{self, Extent, HEADER_LIMIT, MaildirReader, Stream};
use crate::tools::Ctx;
use crate::trace::chain;

/// The clap definition of mail-trace.
pub fn command() -> Command {
    Command::new("mail-trace")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Show the path a message took: hops, delays, TLS, authentication, from its headers")
        .long_about(
            "Read the Received and Authentication-Results headers of each message (stdin, message \
             files, mboxes or Maildirs) and show the hops oldest first with their delays, TLS, \
             anomalies and the authentication picture. Offline: no DNS.",
        )
        .after_help(
            "Examples:\n  mail-trace < msg.eml\n  mail-trace --json ~/Maildir/ | jq .total_transit_s\n  mail-trace --summary archive.mbox\n  mail-trace --strict msg.eml || echo suspicious",
        )
        .arg(
            Arg::new("file")
                .value_name("FILE")
                .num_args(0..)
                .value_parser(clap::value_parser!(PathBuf))
                .help("A message file, an mbox or a Maildir directory [default: stdin]"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .conflicts_with("summary")
                .help("Print one JSON object per message (JSON Lines), \"version\": 1"),
        )
        .arg(
            Arg::new("summary")
                .long("summary")
                .action(ArgAction::SetTrue)
                .help("Print, over all messages, each relay's hop count and median and max delay"),
        )
        .arg(
            Arg::new("strict")
                .long("strict")
                .action(ArgAction::SetTrue)
                .help("Exit 1 when any anomaly is found (informational ones aside); with --verify also when a fresh result is not a pass"),
        )
        .arg(
            Arg::new("threads")
                .short('j')
                .long("threads")
                .value_name("N")
                .value_parser(clap::value_parser!(u16).range(1..=256))
                .help("Read an mbox on N threads with --json or --summary [default: the number of CPUs, at most 8]"),
        )
        .arg(
            Arg::new("verify")
                .long("verify")
                .action(ArgAction::SetTrue)
                .conflicts_with("summary")
                .help("Verify DKIM, SPF, DMARC and ARC now, with DNS, beside what the receiver recorded"),
        )
        .arg(
            Arg::new("dns")
                .long("dns")
                .value_name("IP:PORT")
                .requires("verify")
                .conflicts_with("dns-replay")
                .help("The DNS resolver to ask [default: the system's]"),
        )
        .arg(
            Arg::new("hop")
                .long("hop")
                .value_name("N")
                .requires("verify")
                .value_parser(clap::value_parser!(usize))
                .help("Judge SPF for hop N (its index in hops, oldest first from 0) [default: the newest external hop]"),
        )
        .arg(
            Arg::new("ip")
                .long("ip")
                .value_name("IP")
                .requires("verify")
                .value_parser(clap::value_parser!(std::net::IpAddr))
                .help("The connecting address for SPF, instead of the hop's"),
        )
        .arg(
            Arg::new("helo")
                .long("helo")
                .value_name("NAME")
                .requires("verify")
                .help("The HELO name for SPF, instead of the hop's"),
        )
        .arg(
            Arg::new("mail-from")
                .long("mail-from")
                .value_name("ADDR")
                .requires("verify")
                .help("The envelope sender for SPF and DMARC, instead of Return-Path or the hop's"),
        )
        .arg(
            Arg::new("at")
                .long("at")
                .value_name("TIME")
                .requires("verify")
                .help("Judge signature expiry as of TIME (RFC 5322 or RFC 3339 date) [default: the date of the receiving hop]"),
        )
        .arg(
            Arg::new("dnsbl")
                .long("dnsbl")
                .value_name("ZONE")
                .requires("verify")
                .action(ArgAction::Append)
                .value_delimiter(',')
                .help("Look the external hops' addresses up in DNS blocklist ZONE (repeatable, or comma-separated)"),
        )
        .arg(
            Arg::new("dns-record")
                .long("dns-record")
                .value_name("FILE")
                .requires("verify")
                .conflicts_with("dns-replay")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Save every DNS answer used to FILE (a replay file)"),
        )
        .arg(
            Arg::new("dns-replay")
                .long("dns-replay")
                .value_name("FILE")
                .requires("verify")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Answer DNS only from FILE (offline, reproducible)"),
        )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Table,
    Json,
    Summary,
}

/// mail-trace's command line, read once.
struct Settings {
    mode: Mode,
    strict: bool,
    /// Inputs; none means standard input.
    files: Vec<PathBuf>,
    /// Threads for an mbox (`--threads`, else the CPUs, at most 8).
    threads: usize,
    /// `--verify` and its flags.
    verify: Option<VerifySettings>,
}

/// `--verify`'s flags.
struct VerifySettings {
    dns: Option<String>,
    hop: Option<usize>,
    ip: Option<std::net::IpAddr>,
    helo: Option<String>,
    mail_from: Option<String>,
    at: Option<String>,
    record: Option<PathBuf>,
    replay: Option<PathBuf>,
    dnsbl: Vec<String>,
}

impl Settings {
    fn from_matches(m: &ArgMatches) -> Settings {
        Settings {
            mode: if m.get_flag("json") {
                Mode::Json
            } else if m.get_flag("summary") {
                Mode::Summary
            } else {
                Mode::Table
            },
            strict: m.get_flag("strict"),
            threads: m.get_one::<u16>("threads").map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
                |&n| usize::from(n),
            ),
            files: m
                .get_many::<PathBuf>("file")
                .map(|v| v.cloned().collect())
                .unwrap_or_default(),
            verify: m.get_flag("verify").then(|| VerifySettings {
                dns: m.get_one::<String>("dns").cloned(),
                hop: m.get_one::<usize>("hop").copied(),
                ip: m.get_one::<std::net::IpAddr>("ip").copied(),
                helo: m.get_one::<String>("helo").cloned(),
                mail_from: m.get_one::<String>("mail-from").cloned(),
                at: m.get_one::<String>("at").cloned(),
                record: m.get_one::<PathBuf>("dns-record").cloned(),
                replay: m.get_one::<PathBuf>("dns-replay").cloned(),
                dnsbl: m
                    .get_many::<String>("dnsbl")
                    .map(|v| v.filter(|z| !z.is_empty()).cloned().collect())
                    .unwrap_or_default(),
            }),
        }
    }
}

struct State {
    mode: Mode,
    strict: bool,
    colour: bool,
    /// Messages with at least one header field.
    traced: usize,
    /// Messages printed so far (for the blank line between tables).
    printed: usize,
    /// `--summary`: per relay, hops counted and the delays known.
    relays: summary::Relays,
    /// stdout went away: stop.
    stopped: bool,
    /// Threads for an mbox read with `--json` or `--summary`.
    threads: usize,
    /// The `--json` line and the trace fields' work space, reused from
    /// message to message.
    work: pieces::Work,
    /// What one message gave, for [`pieces::Out::emit`]; reused.
    out: pieces::Out,
    /// `--verify`: the verifier and its settings.
    verify: Option<verify::Run>,
}

/// Run mail-trace.
pub fn run(m: &ArgMatches, ctx: &mut Ctx) -> Result<()> {
    let s = Settings::from_matches(m);
    let colour = ctx.stdout_is_tty() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut st = State {
        mode: s.mode,
        strict: s.strict,
        colour,
        traced: 0,
        printed: 0,
        relays: summary::Relays::default(),
        stopped: false,
        threads: s.threads,
        work: pieces::Work::default(),
        out: pieces::Out::default(),
        verify: match &s.verify {
            Some(v) => Some(verify::Run::start(v)?),
            None => None,
        },
    };
    if s.files.is_empty() {
        let stdin = io::stdin();
        if let Err(e) = trace_stream("-", stdin.lock(), &mut st, ctx) {
            ctx.report(&e);
        }
    }
    for f in &s.files {
        if st.stopped {
            break;
        }
        if let Err(e) = trace_path(f, &mut st, ctx) {
            ctx.report(&e);
        }
    }
    if st.mode == Mode::Summary && !st.stopped {
        st.relays.print(ctx);
    }
    if let Some(v) = st.verify.take() {
        v.finish(ctx)?;
    }
    if st.traced == 0 {
        return Err(Error::new(
            Kind::Data,
            "",
            "no header fields found in the input",
        ));
    }
    Ok(())
}

/// An input that cannot be read is bad input to mail-trace (65), whatever
/// the reason: nothing would change if it were retried.
fn unreadable(what: &Path, e: &io::Error) -> Error {
    Error::new(
        Kind::Data,
        format!("reading {}", what.display()),
        describe_io(e),
    )
}

/// [`unreadable`] for an error the reading side already named.
fn as_data(e: Error) -> Error {
    Error::new(Kind::Data, e.context(), e.cause())
}

fn trace_path(path: &Path, st: &mut State, ctx: &mut Ctx) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| unreadable(path, &e))?;
    if meta.is_dir() {
        return trace_maildir(path, st, ctx);
    }
    let f = File::open(path).map_err(|e| unreadable(path, &e))?;
    trace_stream(&path.display().to_string(), BufReader::new(f), st, ctx)
}

/// What to read of each message: the header block, or (`--verify`, which
/// hashes bodies) all of it.
fn extent(st: &State) -> Extent {
    if st.verify.is_some() {
        Extent::Whole
    } else {
        Extent::Headers
    }
}

fn trace_maildir(dir: &Path, st: &mut State, ctx: &mut Ctx) -> Result<()> {
    for (p, msg) in MaildirReader::open(dir, extent(st)).map_err(as_data)? {
        if st.stopped {
            break;
        }
        match msg {
            Ok(msg) => {
                let source = p.display().to_string();
                warn_if_cut(&source, &msg, ctx);
                handle(&source, msg.data, st, ctx)
            }
            Err(e) => ctx.report(&as_data(e)),
        }
    }
    Ok(())
}

/// Say that a header block was cut at [`HEADER_LIMIT`].
fn warn_if_cut(source: &str, msg: &read::Message, ctx: &mut Ctx) {
    if msg.cut {
        ctx.warn(&format!(
            "{source}: header block longer than {} MiB; the rest is not read",
            HEADER_LIMIT >> 20
        ));
    }
}

/// A message or an mbox on `r` (see [`read::open_stream`]).
fn trace_stream<R: BufRead>(name: &str, r: R, st: &mut State, ctx: &mut Ctx) -> Result<()> {
    let what = || {
        if name == "-" {
            "standard input".to_string()
        } else {
            name.to_string()
        }
    };
    let err = |e: io::Error| Error::new(Kind::Data, format!("reading {}", what()), describe_io(&e));
    match read::open_stream(r, extent(st)).map_err(err)? {
        Stream::Mbox(mbox) if st.threads > 1 && st.verify.is_none() && st.mode != Mode::Table => {
            pieces::trace(name, mbox, st, ctx).map_err(err)?;
        }
        Stream::Mbox(mut mbox) => {
            trace_entries(name, &mut mbox, 0, st, ctx).map_err(err)?;
        }
        Stream::Message(msg) => {
            warn_if_cut(&what(), &msg, ctx);
            handle(name, msg.data, st, ctx);
        }
    }
    Ok(())
}

/// The messages of an mbox one at a time on this thread, numbered from
/// `n + 1`.
fn trace_entries<R: BufRead>(
    name: &str,
    mbox: &mut read::MboxReader<R>,
    mut n: usize,
    st: &mut State,
    ctx: &mut Ctx,
) -> io::Result<()> {
    let mut source = String::new();
    while !st.stopped {
        let Some(entry) = mbox.next_entry()? else {
            break;
        };
        n += 1;
        source.clear();
        let _ = write!(source, "{name}[{n}]");
        handle(&source, entry.data, st, ctx);
    }
    Ok(())
}

/// Read one header block, analyse it and give it to `f` with whether
/// `--strict` fails on it (an anomaly that is not informational): the
/// work every view and thread shares. A block with no header fields is
/// `Err` with the warning to print (none for an empty standard input).
pub(super) fn analyse<R>(
    source: &str,
    block: Vec<u8>,
    strict: bool,
    buffers: &mut crate::trace::Buffers,
    f: impl FnOnce(&crate::message::Message, &[crate::message::Field<'_>], &chain::Chain<'_>, bool) -> R,
) -> std::result::Result<R, Option<String>> {
    // Normalising only adds a final newline and turns CRLF into LF, so the
    // block is blank after it exactly when it was blank before.
    let msg = crate::message::Message::new(crate::message::normalize(block));
    let fields = msg.fields();
    if fields.is_empty() {
        return Err((!msg.bytes().trim_ascii().is_empty() || source != "-")
            .then(|| format!("{source}: no header fields")));
    }
    let c = chain::analyse_message(&msg, &fields, buffers);
    let failed = strict && c.anomalies.iter().any(|a| !chain::is_informational(a.kind));
    Ok(f(&msg, &fields, &c, failed))
}

/// Trace one header block and print it the way `st.mode` asks.
fn handle(source: &str, block: Vec<u8>, st: &mut State, ctx: &mut Ctx) {
    if st.verify.is_none() && st.mode != Mode::Table {
        // The same work as a thread's (see `pieces`), printed at once.
        let mut out = std::mem::take(&mut st.out);
        pieces::trace_one(source, block, st.mode, st.strict, &mut st.work, &mut out);
        out.emit(st, ctx);
        st.out = out;
        return;
    }
    let State {
        mode,
        strict,
        colour,
        traced,
        printed,
        work,
        verify,
        ..
    } = st;
    let printed_ok = analyse(
        source,
        block,
        *strict,
        &mut work.buffers,
        |msg, fields, c, failed| {
            *traced += 1;
            if failed {
                ctx.check_failed();
            }
            let verified = verify
                .as_mut()
                .map(|v| v.message(source, msg, fields, c, *strict, ctx));
            if *mode == Mode::Table {
                let mut ok = true;
                if *printed > 0 {
                    ok = ctx.line("");
                }
                *printed += 1;
                ok && table::print(source, c, *colour, ctx)
                    && verified
                        .as_ref()
                        .is_none_or(|v| verify::print(v, *colour, ctx))
            } else {
                // `--json --verify` (`--summary` never comes with `--verify`).
                json::line(source, c, verified.as_ref(), &mut work.json);
                ctx.line_bytes(&work.json)
            }
        },
    );
    let ok = match printed_ok {
        Ok(ok) => ok,
        Err(warning) => {
            if let Some(w) = warning {
                ctx.warn(&w);
            }
            true
        }
    };
    if !ok {
        st.stopped = true;
    }
}
