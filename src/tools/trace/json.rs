//! mail-trace `--json`: one JSON object per message (JSON Lines).
//!
//! Owns the view structs that fix the documented key order of the schema
//! in mail-trace(1) (`"version": 1`); they borrow from the analysed
//! [`Chain`], so a line costs no copies of the hop fields. Guarantee: one
//! line per message, always valid JSON (serialising these structs cannot
//! fail; if it ever did, the line says so in an `"error"` key).

use serde::Serialize;

use crate::trace::Hop;
use crate::trace::chain::{self, Chain};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<&'a crate::trace::verify::Verification>,
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
pub(super) fn line(
    source: &str,
    c: &Chain,
    verify: Option<&crate::trace::verify::Verification>,
    buf: &mut Vec<u8>,
) {
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
        verify,
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
