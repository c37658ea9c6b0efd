//! mail-trace: the path a message took, from its headers. Reads messages
//! (stdin, message files, mboxes, Maildirs), analyses each with
//! [`crate::trace::chain`] and prints a table with a delay timeline, JSON
//! Lines (`--json`) or a per-relay summary (`--summary`).
//!
//! Only header blocks are read: mbox bodies are skipped by the splitter and
//! a message file is read up to its first empty line, and never more than
//! [`HEADER_LIMIT`] of one header block is held (a longer one is cut, with
//! a warning), so memory does not grow with the input. Exit 0 when traced,
//! 65 when no header field could be read from any input (an unreadable or
//! missing input is reported as 65 too, and the others are still traced),
//! 1 with `--strict` when any anomaly that is not informational
//! ([`chain::INFORMATIONAL`]) was found.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde::Serialize;

use crate::exit::{Error, Kind, Result, describe_io};
use crate::mboxfmt::{Format, HEADER_LIMIT, Splitter, read_line_limited};
use crate::tools::Ctx;
use crate::trace::Hop;
use crate::trace::chain::{self, Chain, human_seconds};

/// Width of the longest timeline bar, in characters.
const BAR_WIDTH: usize = 40;
/// Widest a table cell gets before it is cut.
const CELL_MAX: usize = 48;

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
                .help("Exit 1 when any anomaly is found (informational ones aside)"),
        )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Table,
    Json,
    Summary,
}

struct State {
    mode: Mode,
    strict: bool,
    colour: bool,
    /// Messages with at least one header field.
    traced: usize,
    /// Messages printed so far (for the blank line between tables).
    printed: usize,
    /// Per relay: hops counted and the delays known.
    relays: BTreeMap<String, (usize, Vec<f64>)>,
    /// stdout went away: stop.
    stopped: bool,
    /// The `--json` line being built, reused from message to message.
    json: Vec<u8>,
}

/// Run mail-trace.
pub fn run(m: &ArgMatches, ctx: &mut Ctx) -> Result<()> {
    let mode = if m.get_flag("json") {
        Mode::Json
    } else if m.get_flag("summary") {
        Mode::Summary
    } else {
        Mode::Table
    };
    let colour = ctx.stdout_is_tty() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut st = State {
        mode,
        strict: m.get_flag("strict"),
        colour,
        traced: 0,
        printed: 0,
        relays: BTreeMap::new(),
        stopped: false,
        json: Vec::new(),
    };
    let files: Vec<PathBuf> = m
        .get_many::<PathBuf>("file")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    if files.is_empty() {
        let stdin = io::stdin();
        if let Err(e) = trace_stream("-", stdin.lock(), &mut st, ctx) {
            ctx.report(&e);
        }
    }
    for f in &files {
        if st.stopped {
            break;
        }
        if let Err(e) = trace_path(f, &mut st, ctx) {
            ctx.report(&e);
        }
    }
    if st.mode == Mode::Summary && !st.stopped {
        print_summary(&st, ctx);
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

fn unreadable(what: &Path, e: &io::Error) -> Error {
    Error::new(
        Kind::Data,
        format!("reading {}", what.display()),
        describe_io(e),
    )
}

fn trace_path(path: &Path, st: &mut State, ctx: &mut Ctx) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| unreadable(path, &e))?;
    if meta.is_dir() {
        return trace_maildir(path, st, ctx);
    }
    let f = File::open(path).map_err(|e| unreadable(path, &e))?;
    trace_stream(&path.display().to_string(), BufReader::new(f), st, ctx)
}

fn trace_maildir(dir: &Path, st: &mut State, ctx: &mut Ctx) -> Result<()> {
    let mut files = Vec::new();
    let mut any = false;
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(unreadable(&d, &e)),
        };
        any = true;
        for e in rd {
            let e = e.map_err(|e| unreadable(&d, &e))?;
            if e.file_type().is_ok_and(|t| t.is_file()) {
                files.push(e.path());
            }
        }
    }
    if !any {
        return Err(Error::new(
            Kind::Data,
            format!("reading {}", dir.display()),
            "a directory that is not a Maildir (no cur/ or new/)",
        ));
    }
    files.sort();
    for p in files {
        if st.stopped {
            break;
        }
        let r = File::open(&p)
            .map_err(|e| unreadable(&p, &e))
            .and_then(|f| {
                read_header_block(BufReader::new(f), Vec::new()).map_err(|e| unreadable(&p, &e))
            });
        match r {
            Ok(block) => {
                let source = p.display().to_string();
                warn_if_cut(&source, &block, ctx);
                handle(&source, block, st, ctx)
            }
            Err(e) => ctx.report(&e),
        }
    }
    Ok(())
}

/// Read up to and including the first empty line (LF or CRLF), after
/// `prefix`, and no more than [`HEADER_LIMIT`] bytes in all: what follows
/// is never read (a sparse 2 GB file of NUL bytes is one 2 GB "line").
fn read_header_block<R: BufRead>(mut r: R, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    if buf.ends_with(b"\n\n") || buf.ends_with(b"\n\r\n") {
        return Ok(buf);
    }
    let mut line = Vec::new();
    while buf.len() < HEADER_LIMIT {
        line.clear();
        if read_line_limited(&mut r, &mut line, HEADER_LIMIT - buf.len())? == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&line);
        if line == b"\n" || line == b"\r\n" {
            return Ok(buf);
        }
    }
    Ok(buf)
}

/// Say that a header block was cut at [`HEADER_LIMIT`].
fn warn_if_cut(source: &str, block: &[u8], ctx: &mut Ctx) {
    if block.len() >= HEADER_LIMIT {
        ctx.warn(&format!(
            "{source}: header block longer than {} MiB; the rest is not read",
            HEADER_LIMIT >> 20
        ));
    }
}

/// A message or an mbox on `r`, told apart by the first non-blank line.
fn trace_stream<R: BufRead>(name: &str, mut r: R, st: &mut State, ctx: &mut Ctx) -> Result<()> {
    let what = || {
        if name == "-" {
            "standard input".to_string()
        } else {
            name.to_string()
        }
    };
    let err = |e: io::Error| Error::new(Kind::Data, format!("reading {}", what()), describe_io(&e));
    let mut prefix = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let room = HEADER_LIMIT.saturating_sub(prefix.len());
        if room == 0 || read_line_limited(&mut r, &mut line, room).map_err(err)? == 0 {
            break;
        }
        prefix.extend_from_slice(&line);
        if !line.trim_ascii().is_empty() {
            break;
        }
    }
    if line.starts_with(b"From ") {
        let input = BufReader::with_capacity(1 << 16, Cursor::new(prefix).chain(r));
        let mut sp = Splitter::new(input, Format::Mboxrd).headers_only();
        let mut n = 0;
        let mut source = String::new();
        while !st.stopped {
            let Some(entry) = sp.next_entry().map_err(err)? else {
                break;
            };
            n += 1;
            source.clear();
            let _ = write!(source, "{name}[{n}]");
            handle(&source, entry.data, st, ctx);
        }
        return Ok(());
    }
    let block = read_header_block(r, prefix).map_err(err)?;
    warn_if_cut(&what(), &block, ctx);
    handle(name, block, st, ctx);
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
    let c = chain::analyse_message(&msg, &fields);
    if st.strict && c.anomalies.iter().any(|a| !chain::is_informational(a.kind)) {
        ctx.check_failed();
    }
    let ok = match st.mode {
        Mode::Json => {
            json_line(source, &c, &mut st.json);
            ctx.line_bytes(&st.json)
        }
        Mode::Table => {
            let mut ok = true;
            if st.printed > 0 {
                ok = ctx.line("");
            }
            st.printed += 1;
            ok && table(source, &c, st.colour, ctx)
        }
        Mode::Summary => {
            for (h, d) in c.hops.iter().zip(&c.delays) {
                let by = h.by.clone().unwrap_or_else(|| "(unnamed)".to_string());
                let e = st.relays.entry(by).or_default();
                e.0 += 1;
                if let Some(d) = d {
                    e.1.push(*d);
                }
            }
            true
        }
    };
    if !ok {
        st.stopped = true;
    }
}

/// A hop in `--json`, keys in the documented order.
#[derive(Serialize)]
struct HopOut<'a> {
    from: &'a Option<String>,
    helo: &'a Option<String>,
    rdns: &'a Option<String>,
    ip: &'a Option<String>,
    port: Option<u16>,
    by: &'a Option<String>,
    by_ip: &'a Option<String>,
    with: &'a Option<String>,
    protocol: &'a Option<String>,
    tls_version: &'a Option<String>,
    tls_cipher: &'a Option<String>,
    auth: &'a Option<crate::trace::Auth>,
    id: &'a Option<String>,
    #[serde(rename = "for")]
    for_addr: &'a Option<String>,
    via: &'a Option<String>,
    envelope_from: &'a Option<String>,
    date: Option<String>,
    tz_assumed: bool,
    delay_s: Option<f64>,
    raw: &'a str,
}

fn hop_out(h: &Hop, delay: Option<f64>) -> HopOut<'_> {
    HopOut {
        from: &h.from,
        helo: &h.helo,
        rdns: &h.rdns,
        ip: &h.ip,
        port: h.port,
        by: &h.by,
        by_ip: &h.by_ip,
        with: &h.with,
        protocol: &h.protocol,
        tls_version: &h.tls_version,
        tls_cipher: &h.tls_cipher,
        auth: &h.auth,
        id: &h.id,
        for_addr: &h.for_addr,
        via: &h.via,
        envelope_from: &h.envelope_from,
        date: h.date.map(|d| d.to_rfc3339_utc()),
        tz_assumed: h.tz_assumed,
        delay_s: delay,
        raw: &h.raw,
    }
}

/// A message in `--json`, keys in the documented order.
#[derive(Serialize)]
struct MessageOut<'a> {
    version: u32,
    source: &'a str,
    hops: Vec<HopOut<'a>>,
    x_received: Vec<HopOut<'a>>,
    date: Option<String>,
    total_transit_s: Option<f64>,
    anomalies: Vec<AnomalyOut<'a>>,
    auth: AuthOut<'a>,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct AnomalyOut<'a> {
    kind: &'a str,
    hop: Option<usize>,
    text: &'a str,
}

#[derive(Serialize)]
struct AuthOut<'a> {
    results: Vec<EntryOut<'a>>,
    arc: Vec<ArcOut<'a>>,
    received_spf: Vec<SpfOut<'a>>,
    dkim_signatures: Vec<SigOut<'a>>,
    alignment: AlignmentOut<'a>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    authserv_id: &'a Option<String>,
    hop: Option<usize>,
    verdicts: Vec<VerdictOut<'a>>,
}

#[derive(Serialize)]
struct VerdictOut<'a> {
    method: &'a str,
    result: &'a str,
    domain: &'a Option<String>,
}

#[derive(Serialize)]
struct ArcOut<'a> {
    instance: u32,
    cv: &'a Option<String>,
    seal: SigOut<'a>,
    signature: SigOut<'a>,
    results: Option<EntryOut<'a>>,
    complete: bool,
}

#[derive(Serialize)]
struct SpfOut<'a> {
    result: &'a Option<String>,
    client_ip: &'a Option<String>,
    envelope_from: &'a Option<String>,
    helo: &'a Option<String>,
    receiver: &'a Option<String>,
    hop: Option<usize>,
}

#[derive(Serialize)]
struct SigOut<'a> {
    domain: &'a Option<String>,
    selector: &'a Option<String>,
}

#[derive(Serialize)]
struct AlignmentOut<'a> {
    from_domain: &'a Option<String>,
    spf_pass_domains: &'a [String],
    dkim_pass_domains: &'a [String],
    spf_aligned: bool,
    dkim_aligned: bool,
    dmarc_pass: bool,
    method: &'a str,
}

fn entry_out(e: &chain::AuthEntry) -> EntryOut<'_> {
    EntryOut {
        authserv_id: &e.authserv_id,
        hop: e.hop,
        verdicts: e
            .verdicts
            .iter()
            .map(|v| VerdictOut {
                method: &v.method,
                result: &v.result,
                domain: &v.domain,
            })
            .collect(),
    }
}

/// The `--json` line for one message (no newline), into `buf`.
fn json_line(source: &str, c: &Chain, buf: &mut Vec<u8>) {
    let a = &c.alignment;
    let out = MessageOut {
        version: 1,
        source,
        hops: c
            .hops
            .iter()
            .zip(&c.delays)
            .map(|(h, d)| hop_out(h, *d))
            .collect(),
        x_received: c.x_received.iter().map(|h| hop_out(h, None)).collect(),
        date: c.date.map(|d| d.to_rfc3339_utc()),
        total_transit_s: c.total_transit_s,
        anomalies: c
            .anomalies
            .iter()
            .map(|a| AnomalyOut {
                kind: a.kind,
                hop: a.hop,
                text: &a.text,
            })
            .collect(),
        auth: AuthOut {
            results: c.auth.iter().map(entry_out).collect(),
            arc: c
                .arc
                .iter()
                .map(|s| ArcOut {
                    instance: s.instance,
                    cv: &s.cv,
                    seal: SigOut {
                        domain: &s.seal_domain,
                        selector: &s.seal_selector,
                    },
                    signature: SigOut {
                        domain: &s.signature_domain,
                        selector: &s.signature_selector,
                    },
                    results: s.results.as_ref().map(entry_out),
                    complete: s.complete,
                })
                .collect(),
            received_spf: c
                .received_spf
                .iter()
                .map(|s| SpfOut {
                    result: &s.result,
                    client_ip: &s.client_ip,
                    envelope_from: &s.envelope_from,
                    helo: &s.helo,
                    receiver: &s.receiver,
                    hop: s.hop,
                })
                .collect(),
            dkim_signatures: c
                .dkim_signatures
                .iter()
                .map(|s| SigOut {
                    domain: &s.domain,
                    selector: &s.selector,
                })
                .collect(),
            alignment: AlignmentOut {
                from_domain: &a.from_domain,
                spf_pass_domains: &a.spf_pass_domains,
                dkim_pass_domains: &a.dkim_pass_domains,
                spf_aligned: a.spf_aligned,
                dkim_aligned: a.dkim_aligned,
                dmarc_pass: a.dmarc_pass,
                method: a.method,
            },
        },
        warnings: &c.warnings,
    };
    // Serialising plain structs of strings and numbers cannot fail; a NaN
    // delay is impossible (dates are whole seconds plus nanoseconds).
    buf.clear();
    if let Err(e) = serde_json::to_writer(&mut *buf, &out) {
        buf.clear();
        buf.extend_from_slice(format!("{{\"version\":1,\"error\":\"{e}\"}}").as_bytes());
    }
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Cut `s` to `max` characters, marking the cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

fn from_cell(h: &Hop) -> String {
    let name = h
        .from
        .clone()
        .or_else(|| h.rdns.clone())
        .unwrap_or_else(|| "-".to_string());
    let mut extra = Vec::new();
    if let Some(helo) = &h.helo
        && !helo.eq_ignore_ascii_case(&name)
    {
        extra.push(helo.clone());
    }
    if let Some(ip) = &h.ip
        && name.trim_matches(|c| c == '[' || c == ']') != ip
    {
        extra.push(ip.clone());
    }
    if extra.is_empty() {
        name
    } else {
        format!("{name} ({})", extra.join("/"))
    }
}

fn delay_cell(d: Option<f64>) -> String {
    match d {
        Some(d) if d >= 0.0 => format!("+{}", human_seconds(d)),
        Some(d) => human_seconds(d),
        None => "-".to_string(),
    }
}

fn table(source: &str, c: &Chain, colour: bool, ctx: &mut Ctx) -> bool {
    let p = Paint { on: colour };
    let mut head = format!(
        "{source}: {} hop{}",
        c.hops.len(),
        if c.hops.len() == 1 { "" } else { "s" }
    );
    if let Some(d) = c.date {
        head.push_str(&format!(", Date {}", d.to_rfc3339_utc()));
    }
    if let Some(t) = c.total_transit_s {
        head.push_str(&format!(", total transit {}", human_seconds(t)));
    }
    if !c.x_received.is_empty() {
        head.push_str(&format!(", {} X-Received apart", c.x_received.len()));
    }
    let mut lines = vec![p.wrap("1", &head)];
    let header = [
        "#",
        "delay",
        "date (UTC)",
        "from (helo/ip)",
        "by",
        "protocol",
        "TLS",
    ];
    let mut rows: Vec<[String; 7]> = vec![header.map(str::to_string)];
    for (i, (h, d)) in c.hops.iter().zip(&c.delays).enumerate() {
        rows.push([
            (i + 1).to_string(),
            delay_cell(*d),
            h.date
                .map(|d| {
                    d.to_rfc3339_utc()
                        .replace('T', " ")
                        .trim_end_matches('Z')
                        .to_string()
                })
                .unwrap_or_else(|| "-".to_string()),
            cut(&from_cell(h), CELL_MAX),
            cut(h.by.as_deref().unwrap_or("-"), CELL_MAX),
            h.protocol.clone().unwrap_or_else(|| "-".to_string()),
            h.tls_version.clone().unwrap_or_else(|| "-".to_string()),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for (n, r) in rows.iter().enumerate() {
        let mut s = String::from(" ");
        for (k, (w, cell)) in widths.iter().zip(r).enumerate() {
            let pad = w - cell.chars().count();
            let padded = if k <= 1 {
                format!("{}{cell}", " ".repeat(pad))
            } else if k == 6 {
                cell.clone()
            } else {
                format!("{cell}{}", " ".repeat(pad))
            };
            let painted = if n == 0 {
                p.wrap("4", &padded)
            } else if k == 1 && cell.starts_with('-') && cell != "-" {
                p.wrap("31", &padded)
            } else {
                padded
            };
            s.push(' ');
            s.push_str(&painted);
        }
        lines.push(s.trim_end().to_string());
    }
    // The timeline.
    let max = c
        .delays
        .iter()
        .flatten()
        .fold(0.0f64, |m, d| m.max(d.abs()));
    if c.delays.iter().any(Option::is_some) {
        lines.push("timeline:".to_string());
        let byw = c
            .hops
            .iter()
            .map(|h| cut(h.by.as_deref().unwrap_or("-"), 32).chars().count())
            .max()
            .unwrap_or(1);
        let numw = c.hops.len().to_string().len();
        for (i, (h, d)) in c.hops.iter().zip(&c.delays).enumerate() {
            let by = cut(h.by.as_deref().unwrap_or("-"), 32);
            let pad = " ".repeat(byw - by.chars().count());
            let (bar, label) = match d {
                Some(d) => {
                    let len = if max > 0.0 {
                        ((d.abs() / max) * BAR_WIDTH as f64).round() as usize
                    } else {
                        0
                    };
                    let len = if *d != 0.0 { len.max(1) } else { 0 };
                    let ch = if *d < 0.0 {
                        "<"
                    } else if colour {
                        "\u{2588}"
                    } else {
                        "#"
                    };
                    let bar = ch.repeat(len);
                    let code = if *d < 0.0 { "31" } else { "36" };
                    (p.wrap(code, &bar), delay_cell(Some(*d)))
                }
                None => (String::new(), "no date".to_string()),
            };
            let sep = if bar.is_empty() { "" } else { " " };
            lines.push(format!("  {:>numw$} {by}{pad} |{bar}{sep}{label}", i + 1));
        }
    }
    if !c.anomalies.is_empty() {
        lines.push("anomalies:".to_string());
        for a in &c.anomalies {
            let code = if chain::is_informational(a.kind) {
                "33"
            } else {
                "31"
            };
            lines.push(format!(
                "  {} {}",
                p.wrap(code, &format!("[{}]", a.kind)),
                a.text
            ));
        }
    }
    let has_auth = !c.auth.is_empty()
        || !c.arc.is_empty()
        || !c.received_spf.is_empty()
        || !c.dkim_signatures.is_empty();
    if has_auth {
        lines.push("authentication:".to_string());
        let verdict_text = |e: &chain::AuthEntry| {
            e.verdicts
                .iter()
                .map(|v| match &v.domain {
                    Some(d) => format!("{}={} ({d})", v.method, v.result),
                    None => format!("{}={}", v.method, v.result),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let at = |h: Option<usize>| h.map(|h| format!(" (hop {h})")).unwrap_or_default();
        for e in &c.auth {
            let who = e.authserv_id.as_deref().unwrap_or("(no authserv-id)");
            lines.push(format!("  {who}{}: {}", at(e.hop), verdict_text(e)));
        }
        for s in &c.received_spf {
            let mut parts = vec![format!("spf={}", s.result.as_deref().unwrap_or("?"))];
            if let Some(ip) = &s.client_ip {
                parts.push(format!("client-ip={ip}"));
            }
            if let Some(f) = &s.envelope_from {
                parts.push(format!("envelope-from=<{f}>"));
            }
            if let Some(h) = &s.helo {
                parts.push(format!("helo={h}"));
            }
            lines.push(format!(
                "  Received-SPF{}{}: {}",
                s.receiver
                    .as_deref()
                    .map(|r| format!(" by {r}"))
                    .unwrap_or_default(),
                at(s.hop),
                parts.join(" ")
            ));
        }
        for s in &c.dkim_signatures {
            lines.push(format!(
                "  DKIM-Signature: d={} s={}",
                s.domain.as_deref().unwrap_or("?"),
                s.selector.as_deref().unwrap_or("?")
            ));
        }
        for set in &c.arc {
            let mut l = format!(
                "  ARC i={} cv={} seal d={} s={}, signature d={} s={}",
                set.instance,
                set.cv.as_deref().unwrap_or("?"),
                set.seal_domain.as_deref().unwrap_or("?"),
                set.seal_selector.as_deref().unwrap_or("?"),
                set.signature_domain.as_deref().unwrap_or("?"),
                set.signature_selector.as_deref().unwrap_or("?"),
            );
            if let Some(e) = &set.results {
                l.push_str(&format!(
                    "; {}{}: {}",
                    e.authserv_id.as_deref().unwrap_or("(no authserv-id)"),
                    at(e.hop),
                    verdict_text(e)
                ));
            }
            if !set.complete {
                l.push_str(" (incomplete set)");
            }
            lines.push(l);
        }
        let a = &c.alignment;
        if let Some(fd) = &a.from_domain
            && !c.auth.is_empty()
        {
            let yn = |b: bool| if b { "aligned" } else { "not aligned" };
            let verdict = if a.dmarc_pass {
                p.wrap("32", "pass")
            } else {
                p.wrap("31", "fail")
            };
            lines.push(format!(
                "  DMARC alignment of From {fd}: SPF {}, DKIM {} -> {verdict} ({})",
                yn(a.spf_aligned),
                yn(a.dkim_aligned),
                a.method
            ));
        }
    }
    for w in &c.warnings {
        lines.push(format!("warning: {w}"));
    }
    lines.into_iter().all(|l| ctx.line(&l))
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn print_summary(st: &State, ctx: &mut Ctx) {
    let mut rows: Vec<(&String, &(usize, Vec<f64>))> = st.relays.iter().collect();
    rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    let w = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let fmt = |d: Option<f64>| d.map_or_else(|| "-".to_string(), human_seconds);
    if !ctx.line(&format!(
        "{:<w$}  {:>6}  {:>8}  {:>8}",
        "relay", "hops", "median", "max"
    )) {
        return;
    }
    for (by, (count, delays)) in rows {
        let max = delays.iter().copied().reduce(f64::max);
        let line = format!(
            "{by:<w$}  {count:>6}  {:>8}  {:>8}",
            fmt(median(delays)),
            fmt(max)
        );
        if !ctx.line(&line) {
            return;
        }
    }
}
