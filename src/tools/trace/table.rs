//! mail-trace's default view: per message, a table of hops oldest first,
//! a delay timeline, the anomalies, the authentication picture and the
//! parser's warnings.
//!
//! Owns the layout (column widths, cells cut at [`CELL_MAX`] characters
//! with `~`, bars scaled to [`BAR_WIDTH`]) and colour, which is used only
//! when the tool says so (a terminal without `NO_COLOR`). Guarantee: the
//! text is the same with and without colour but for the escapes and the
//! bar character.

use crate::proto::transcript::printable;
use crate::tools::Ctx;
use crate::trace::Hop;
use crate::trace::chain::{self, Chain, human_seconds};

/// Width of the longest timeline bar, in characters.
const BAR_WIDTH: usize = 40;
/// Widest a table cell gets before it is cut.
const CELL_MAX: usize = 48;

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
        .as_deref()
        .or(h.rdns.as_deref())
        .unwrap_or("-")
        .to_string();
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

/// Print the table, timeline, anomalies, authentication and warnings of
/// one message; false once stdout is closed.
pub(super) fn print(source: &str, c: &Chain, colour: bool, ctx: &mut Ctx) -> bool {
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
    // Header text is the sender's: escaped before any colour of ours is
    // added, so no byte of it reaches the terminal as a control.
    let mut lines = vec![p.wrap("1", &printable(&head))];
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
            cut(&printable(&from_cell(h)), CELL_MAX),
            cut(&printable(h.by.as_deref().unwrap_or("-")), CELL_MAX),
            printable(h.protocol.as_deref().unwrap_or("-")).into_owned(),
            printable(h.tls_version.as_deref().unwrap_or("-")).into_owned(),
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
            .map(|h| {
                cut(&printable(h.by.as_deref().unwrap_or("-")), 32)
                    .chars()
                    .count()
            })
            .max()
            .unwrap_or(1);
        let numw = c.hops.len().to_string().len();
        for (i, (h, d)) in c.hops.iter().zip(&c.delays).enumerate() {
            let by = cut(&printable(h.by.as_deref().unwrap_or("-")), 32);
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
                printable(&a.text)
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
            let l = format!("  {who}{}: {}", at(e.hop), verdict_text(e));
            lines.push(printable(&l).into_owned());
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
            lines.push(
                printable(&format!(
                    "  Received-SPF{}{}: {}",
                    s.receiver
                        .as_deref()
                        .map(|r| format!(" by {r}"))
                        .unwrap_or_default(),
                    at(s.hop),
                    parts.join(" ")
                ))
                .into_owned(),
            );
        }
        for s in &c.dkim_signatures {
            lines.push(
                printable(&format!(
                    "  DKIM-Signature: d={} s={}",
                    s.domain.as_deref().unwrap_or("?"),
                    s.selector.as_deref().unwrap_or("?")
                ))
                .into_owned(),
            );
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
            lines.push(printable(&l).into_owned());
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
                "  DMARC alignment of From {}: SPF {}, DKIM {} -> {verdict} ({})",
                printable(fd),
                yn(a.spf_aligned),
                yn(a.dkim_aligned),
                printable(a.method)
            ));
        }
    }
    for w in &c.warnings {
        lines.push(format!("warning: {}", printable(w)));
    }
    lines.into_iter().all(|l| ctx.line(&l))
}
