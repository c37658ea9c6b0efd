//! mail-trace `--verify`: the face of [`crate::trace::verify`].
//!
//! Owns turning the `--verify` flags into a [`Verifier`] for the run (the
//! resolver named by `--dns`, or the loopback stub for `--dns-record` and
//! `--dns-replay`), choosing the SMTP facts of each message (hop, address,
//! HELO, sender, time), the exit code contribution (75 for a DNS temporary
//! error, 1 with `--strict` for a result that is not a pass), the table
//! section, and saving the record file at the end (atomically, through
//! [`crate::durable`], never through a link).

use std::path::PathBuf;
use std::time::Duration;

use super::VerifySettings;
use crate::exit::{Error, Kind, Result};
use crate::proto::transcript::printable;
use crate::tools::Ctx;
use crate::trace::chain::Chain;
use crate::trace::verify::{self, Outcome, Recorded, Verification, Verifier, stub};

/// The verifier of one run.
pub(super) struct Run {
    verifier: Verifier,
    /// Kept alive while the verifier asks it; stopped on drop.
    stub: stub::Stub,
    record: Option<PathBuf>,
    hop: Option<usize>,
    ip: Option<std::net::IpAddr>,
    helo: Option<String>,
    mail_from: Option<String>,
    at: Option<u64>,
    dnsbl: Vec<String>,
}

impl Run {
    pub(super) fn start(s: &VerifySettings) -> Result<Run> {
        let at = match &s.at {
            Some(t) => Some(parse_at(t)?),
            None => None,
        };
        let timeout = Duration::from_secs(5);
        let server = match &s.dns {
            Some(d) => Some(crate::proto::dns::parse_server(d)?),
            None => None,
        };
        // Every answer goes through the stub, replayed or forwarded, so
        // the verdicts do not depend on where the answers came from.
        let stub = if let Some(path) = &s.replay {
            stub::Stub::start(stub::Mode::Replay(stub::Book::load(path)?))?
        } else {
            let upstream = match server {
                Some(a) => a,
                None => stub::system_server()?,
            };
            stub::Stub::start(if s.record.is_some() {
                stub::Mode::Record(upstream)
            } else {
                stub::Mode::Forward(upstream)
            })?
        };

        Ok(Run {
            verifier: Verifier::through(&stub, timeout)?,
            stub,
            record: s.record.clone(),
            hop: s.hop,
            ip: s.ip,
            helo: s.helo.clone(),
            mail_from: s.mail_from.clone(),
            at,
            dnsbl: s.dnsbl.clone(),
        })
    }

    /// Verify one message; count its outcome toward the exit code.
    pub(super) fn message(
        &mut self,
        source: &str,
        msg: &crate::message::Message,
        fields: &[crate::message::Field<'_>],
        c: &Chain,
        strict: bool,
        ctx: &mut Ctx,
    ) -> Verification {
        let n = verify::choose_hop(&c.hops, self.hop);
        if let (Some(want), None) = (self.hop, n) {
            ctx.warn(&format!(
                "{source}: no hop {want} (the message has {})",
                c.hops.len()
            ));
        }
        let return_path = fields
            .iter()
            .find(|f| f.is("Return-Path"))
            .map(|f| f.text());
        let mut hop = verify::smtp_hop(&c.hops, n, return_path.as_deref());
        if let Some(ip) = self.ip {
            hop.ip = Some(ip);
        }
        if let Some(h) = &self.helo {
            hop.helo = Some(h.clone());
        }
        if let Some(m) = &self.mail_from {
            hop.mail_from = Some(m.clone());
        }
        let at = self.at.or_else(|| {
            n.and_then(|n| c.hops[n].date)
                .and_then(|d| u64::try_from(d.unix).ok())
        });
        let mut v = self.verifier.verify(msg.bytes(), &hop, at);
        verify::compare(&mut v, &c.auth, hop.hop);
        if !self.dnsbl.is_empty() {
            v.dnsbl = self
                .verifier
                .dnsbl(&verify::external_addresses(&c.hops), &self.dnsbl);
        }
        match verify::outcome(&v) {
            Outcome::Pass => {}
            Outcome::Failed => {
                if strict {
                    ctx.check_failed();
                }
            }
            Outcome::Temporary => ctx.report(&Error::new(
                Kind::Temporary,
                source,
                "a DNS lookup failed temporarily; some results are temperror",
            )),
        }
        v
    }

    /// Save the record file, when one was asked for.
    pub(super) fn finish(self, ctx: &mut Ctx) -> Result<()> {
        let _ = ctx;
        if let Some(path) = &self.record {
            let text = self.stub.book().to_text();
            let mut tmp = path.clone().into_os_string();
            tmp.push(".tmp");
            crate::durable::replace(path, std::path::Path::new(&tmp), text.as_bytes()).map_err(
                |e| {
                    Error::new(
                        Kind::CantCreate,
                        format!("writing {}", path.display()),
                        crate::exit::describe_io(&e),
                    )
                },
            )?;
        }
        Ok(())
    }
}

/// `--at`: an RFC 5322 or RFC 3339 date, or `@UNIX`.
fn parse_at(t: &str) -> Result<u64> {
    if let Some(n) = t.strip_prefix('@')
        && let Ok(n) = n.parse::<u64>()
    {
        return Ok(n);
    }
    crate::trace::date::parse(t)
        .and_then(|d| u64::try_from(d.unix).ok())
        .ok_or_else(|| {
            Error::new(
                Kind::Usage,
                format!("--at {t:?}"),
                "expected a date (RFC 5322 or RFC 3339) or @UNIX-SECONDS",
            )
        })
}

fn recorded_text(r: &Option<Recorded>) -> String {
    match r {
        None => String::new(),
        Some(r) => match &r.change {
            Some(c) => format!("  [{c}]"),
            None => format!(
                "  [{} at {} too]",
                r.result,
                r.by.as_deref().unwrap_or("the receiver")
            ),
        },
    }
}

/// The `verify:` section of the table: fresh verdicts, each with what the
/// receiver recorded.
pub(super) fn print(v: &Verification, colour: bool, ctx: &mut Ctx) -> bool {
    let paint = |word: &str| {
        if !colour {
            return word.to_string();
        }
        let code = match word {
            "pass" => "32",
            "none" => "33",
            _ => "31",
        };
        format!("\x1b[{code}m{word}\x1b[0m")
    };
    let mut lines = vec!["verify (now):".to_string()];
    if v.dkim.is_empty() {
        lines.push("  dkim: none (no DKIM-Signature)".to_string());
    }
    for d in &v.dkim {
        let mut l = format!(
            "  dkim d={} s={} a={}: ",
            printable(&d.domain),
            printable(&d.selector),
            d.algorithm
        );
        l.push_str(&paint(&d.result));
        l.push_str(&format!(
            " (body hash {}, header signature {}",
            d.body_hash, d.header_sig
        ));
        if let (Some(len), Some(rest)) = (d.body_length, d.unsigned_body_bytes) {
            l.push_str(&format!(", l={len}: {rest} body bytes after it unsigned"));
        }
        l.push(')');
        if let Some(r) = &d.reason
            && d.result != "pass"
        {
            l.push_str(&format!(": {}", printable(r)));
        }
        l.push_str(&printable(&recorded_text(&d.recorded)));
        lines.push(l);
    }
    match &v.spf {
        None => lines
            .push("  spf: not judged (no hop with an external address; see --hop, --ip)".into()),
        Some(s) => {
            let hop = s
                .hop
                .map(|h| format!(" (hop {})", h + 1))
                .unwrap_or_default();
            match &s.helo {
                Some(h) => lines.push(format!(
                    "  spf helo={} ip={}{hop}: {}",
                    printable(&h.domain),
                    s.ip,
                    paint(&h.result)
                )),
                None => lines.push(format!("  spf helo: none (no HELO name) ip={}{hop}", s.ip)),
            }
            if let Some(m) = &s.mail_from {
                lines.push(format!(
                    "  spf mailfrom={} ip={}{hop}: {}{}",
                    printable(&m.domain),
                    s.ip,
                    paint(&m.result),
                    printable(&recorded_text(&m.recorded))
                ));
            }
        }
    }
    let d = &v.dmarc;
    let mut l = format!(
        "  dmarc from={}: {}",
        if d.domain.is_empty() {
            "?".into()
        } else {
            printable(&d.domain).into_owned()
        },
        paint(&d.result)
    );
    if !d.org_domain.is_empty() && d.org_domain != d.domain {
        l.push_str(&format!(" (organisation {})", printable(&d.org_domain)));
    }
    if let Some(p) = &d.policy {
        // sp= and np= only when they say something p= does not.
        let mut sub = String::new();
        if let (Some(sp), Some(np)) = (&d.sp, &d.np)
            && (sp != p || np != p)
        {
            sub = format!(", sp={sp}, np={np}");
        }
        if let Some(a) = d.applies.as_deref().filter(|a| *a != "p") {
            sub.push_str(&format!(", {a} applies"));
        }
        l.push_str(&format!(
            " (p={p}{sub}, adkim={}, aspf={}; DKIM {}, SPF {})",
            d.adkim.as_deref().unwrap_or("?"),
            d.aspf.as_deref().unwrap_or("?"),
            if d.dkim_aligned {
                "aligned pass"
            } else {
                "no aligned pass"
            },
            if d.spf_aligned {
                "aligned pass"
            } else {
                "no aligned pass"
            },
        ));
    }
    if let Some(r) = &d.reason {
        l.push_str(&format!(": {}", printable(r)));
    }
    l.push_str(&printable(&recorded_text(&d.recorded)));
    lines.push(l);
    let a = &v.arc;
    let mut l = format!("  arc: {}", paint(&a.result));
    if !a.instances.is_empty() {
        let cvs: Vec<String> = a
            .instances
            .iter()
            .map(|i| format!("i={} cv={}", i.instance, i.cv))
            .collect();
        l.push_str(&format!(" ({})", cvs.join(", ")));
    }
    if let Some(r) = &a.reason
        && a.result != "pass"
    {
        l.push_str(&format!(": {}", printable(r)));
    }
    l.push_str(&printable(&recorded_text(&a.recorded)));
    lines.push(l);
    for b in &v.dnsbl {
        let hop = b
            .hop
            .map(|h| format!(" (hop {})", h + 1))
            .unwrap_or_default();
        // Colour by meaning: not listed is good, listed bad, errors neither.
        let word = match b.result.as_str() {
            "not_listed" => paint("pass").replace("pass", "not listed"),
            "listed" => paint("fail").replace("fail", "listed"),
            other => paint("none").replace("none", other),
        };
        let mut l = format!("  dnsbl {} in {}{hop}: {word}", b.ip, printable(&b.zone));
        if !b.codes.is_empty() {
            l.push_str(&format!(" ({})", b.codes.join(", ")));
        }
        if let Some(r) = &b.reason {
            l.push_str(&format!(": {}", printable(r)));
        }
        lines.push(l);
    }
    lines.into_iter().all(|l| ctx.line(&l))
}
