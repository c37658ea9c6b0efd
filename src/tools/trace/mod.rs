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
    /// The `--json` line being built, reused from message to message.
    json: Vec<u8>,
    /// Work space for the trace fields (the hops borrow from it), reused
    /// from message to message.
    buffers: crate::trace::Buffers,
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
        json: Vec::new(),
        buffers: crate::trace::Buffers::default(),
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
        Stream::Mbox(mut mbox) => {
            let mut n = 0;
            let mut source = String::new();
            while !st.stopped {
                let Some(entry) = mbox.next_entry().map_err(err)? else {
                    break;
                };
                n += 1;
                source.clear();
                let _ = write!(source, "{name}[{n}]");
                handle(&source, entry.data, st, ctx);
            }
        }
        Stream::Message(msg) => {
            warn_if_cut(&what(), &msg, ctx);
            handle(name, msg.data, st, ctx);
        }
    }
    Ok(())
}

/// Trace one header block and print it the way `st.mode` asks.
fn handle(source: &str, block: Vec<u8>, st: &mut State, ctx: &mut Ctx) {
    // Normalising only adds a final newline and turns CRLF into LF, so the
    // block is blank after it exactly when it was blank before.
    let msg = crate::message::Message::new(crate::message::normalize(block));
    let fields = msg.fields();
    if fields.is_empty() {
        if !msg.bytes().trim_ascii().is_empty() || source != "-" {
            ctx.warn(&format!("{source}: no header fields"));
        }
        return;
    }
    st.traced += 1;
    let c = chain::analyse_message(&msg, &fields, &mut st.buffers);
    if st.strict && c.anomalies.iter().any(|a| !chain::is_informational(a.kind)) {
        ctx.check_failed();
    }
    let verified = st
        .verify
        .as_mut()
        .map(|v| v.message(source, &msg, &fields, &c, st.strict, ctx));
    let ok = match st.mode {
        Mode::Json => {
            json::line(source, &c, verified.as_ref(), &mut st.json);
            ctx.line_bytes(&st.json)
        }
        Mode::Table => {
            let mut ok = true;
            if st.printed > 0 {
                ok = ctx.line("");
            }
            st.printed += 1;
            ok && table::print(source, &c, st.colour, ctx)
                && verified
                    .as_ref()
                    .is_none_or(|v| verify::print(v, st.colour, ctx))
        }
        Mode::Summary => {
            st.relays.add(&c);
            true
        }
    };
    if !ok {
        st.stopped = true;
    }
}
