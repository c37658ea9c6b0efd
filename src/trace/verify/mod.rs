//! Fresh verdicts for `mail-trace --verify`: DKIM (RFC 6376, RSA and
//! Ed25519 per RFC 8463), SPF (RFC 7208), DMARC (RFC 7489) and ARC
//! (RFC 8617), computed now, with DNS, from a whole message.
//!
//! This module is the adapter around the `mail-auth` crate (=0.13.0), and
//! the only place in postline that names its types: what it returns are our
//! own plain structs ([`Verification`] and its parts), serialisable with the
//! JSON keys `mail-trace --json` documents, so the crate can be replaced
//! without touching the faces. Its DNS goes where [`Dns`] says: the
//! system's resolver, one server, or the loopback stub of [`stub`] that
//! records or replays every answer.
//!
//! Traps of the crate it handles:
//! - files with LF line ends are turned into CRLF before verifying (the
//!   crate hashes the bytes it is given; a signer hashed CRLF);
//! - HELO and MAIL FROM are checked as two SPF identities, each reported;
//! - a DKIM body-hash failure stops the crate before the header signature,
//!   so that signature is checked here on its own ([`DkimCheck::header_sig`]),
//!   and the reader learns whether the body or the header broke;
//! - expiry (`x=`) is judged as of a given time (`--at`), not the clock:
//!   a signature the crate calls expired today is checked here in full
//!   when it was not expired at that time;
//! - ARC chains the crate calls `neutral` or `permerror`, or lets through
//!   with a malformed seal, a seal-signing message signature or a short
//!   key, are `fail` ([`arc`], RFC 8617 5.2);
//! - DMARC's organisational domain comes from the Public Suffix List
//!   ([`crate::trace::psl`], RFC 7489 3.2), not from the crate's DNS tree
//!   walk (RFC 9989), which `verify_dmarc` does itself and cannot be told
//!   otherwise: policy discovery and alignment are done here, with the
//!   crate's record parser.
//!
//! Guarantee: verifying never panics, prints or fails on any input; what
//! cannot be judged is a result (`permerror`, `temperror`, `none`) with a
//! reason. Only [`Verifier::new`] fails, when the resolver cannot start.

mod arc;
pub mod spf_syntax;
pub mod stub;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mail_auth::common::cache::NoCache;
use mail_auth::common::crypto::HashAlgorithm;
use mail_auth::common::verify::{DomainKey, VerifySignature};
use mail_auth::dkim::DkimError;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput,
    SpfResult,
};
use serde::Serialize;

use crate::exit::{Error, Kind, Result};

/// Which resolver the verifier asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dns {
    /// The system's (`/etc/resolv.conf`).
    System,
    /// One server, `IP:PORT` (UDP, then TCP for truncated answers).
    Server(SocketAddr),
    /// A UDP-only server (the loopback stub of [`stub`]).
    Stub(SocketAddr),
}

/// The SMTP facts of the hop whose SPF is judged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SmtpHop {
    /// Index of the hop in the chain's `hops` (oldest first, from 0), when
    /// it came from one.
    pub hop: Option<usize>,
    /// The connecting address.
    pub ip: Option<IpAddr>,
    /// The HELO/EHLO name.
    pub helo: Option<String>,
    /// The envelope sender (without angle brackets; empty for `<>`).
    pub mail_from: Option<String>,
    /// The receiving host (`by`), for the `%{r}` macro.
    pub receiver: Option<String>,
}

/// Everything fresh about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// One per DKIM-Signature, in header order.
    pub dkim: Vec<DkimCheck>,
    /// SPF for the chosen hop; `None` when no hop with an address was found.
    pub spf: Option<SpfCheck>,
    /// DMARC for the From domain.
    pub dmarc: DmarcCheck,
    /// The ARC chain.
    pub arc: ArcCheck,
    /// `--dnsbl`: each external hop's address in each list asked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dnsbl: Vec<DnsblCheck>,
}

/// One address looked up in one DNS blocklist (RFC 5782).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DnsblCheck {
    /// The address looked up.
    pub ip: String,
    /// Index of its hop in `hops`.
    pub hop: Option<usize>,
    /// The list's zone.
    pub zone: String,
    /// `listed`, `not_listed`, `error` (the list refused the query, or the
    /// resolver rewrote NXDOMAIN) or `temperror`.
    pub result: String,
    /// The answers (127.0.0.x return codes), for a listing.
    pub codes: Vec<String>,
    /// Why, for an error.
    pub reason: Option<String>,
}

/// One DKIM-Signature, judged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DkimCheck {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// `a=` (`rsa-sha256`, `ed25519-sha256`, `rsa-sha1`).
    pub algorithm: String,
    /// RFC 8601 result word: pass, fail, neutral, temperror, permerror.
    pub result: String,
    /// Why, when not a pass.
    pub reason: Option<String>,
    /// The body hash: `pass`, `fail`, or `unchecked` (the signature could
    /// not be read, or had expired).
    pub body_hash: String,
    /// The header signature over the signed fields: `pass`, `fail`, or
    /// `unchecked` (no key).
    pub header_sig: String,
    /// `l=`: bytes of the canonical body covered; `None` without `l=`.
    pub body_length: Option<u64>,
    /// With `l=`: canonical body bytes after the covered part (appended
    /// after signing, not protected by the signature).
    pub unsigned_body_bytes: Option<u64>,
    /// `x=` (Unix time), when set.
    pub expires: Option<u64>,
    /// What the receiving hop recorded for this `d=` in its
    /// Authentication-Results, when it did.
    pub recorded: Option<Recorded>,
}

/// A verdict a receiver stored in Authentication-Results, beside ours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// The authserv-id that wrote it.
    pub by: Option<String>,
    /// The hop it is tied to (index in `hops`).
    pub hop: Option<usize>,
    /// The result it stored.
    pub result: String,
    /// When the stored and the fresh result differ: what changed, in words
    /// ("pass at mx.example then, fail now: body changed").
    pub change: Option<String>,
}

/// One SPF identity, judged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpfIdentity {
    /// The domain checked.
    pub domain: String,
    /// RFC 8601 result word: pass, fail, softfail, neutral, none,
    /// temperror, permerror.
    pub result: String,
    /// The explanation (`exp=`), when the domain gave one, or why a
    /// limit made it a permerror.
    pub explanation: Option<String>,
    /// Void lookups (NXDOMAIN or no data) met in the evaluation, when
    /// counted (DNS through the stub).
    pub void_lookups: Option<usize>,
    /// What the receiving hop recorded for this identity.
    pub recorded: Option<Recorded>,
}

/// SPF of the chosen hop: HELO and MAIL FROM separately.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpfCheck {
    /// The connecting address.
    pub ip: String,
    /// Index of the hop in `hops`, when the facts came from one.
    pub hop: Option<usize>,
    /// The HELO identity; `None` without a HELO name.
    pub helo: Option<SpfIdentity>,
    /// The MAIL FROM identity (`postmaster@HELO` for the null sender, as
    /// RFC 7208 2.4 says); `None` without either.
    pub mail_from: Option<SpfIdentity>,
}

/// DMARC for the From domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DmarcCheck {
    /// The From domain (empty when From has none or several domains).
    pub domain: String,
    /// Its organisational domain from the Public Suffix List
    /// ([`crate::trace::psl`]): where the policy is looked for when the
    /// From domain publishes none, and what relaxed alignment compares.
    pub org_domain: String,
    /// pass, fail, none, temperror, permerror.
    pub result: String,
    /// The published `p=`: none, quarantine, reject; `None` without a record.
    pub policy: Option<String>,
    /// The record's `sp=` (RFC 7489 6.3), the policy for subdomains of the
    /// domain that published it; `p=` when it names none. With a record.
    pub sp: Option<String>,
    /// The record's `np=` (RFC 9091), the policy for subdomains that do not
    /// exist; `sp=` when it names none. With a record.
    pub np: Option<String>,
    /// Which of the three governs this From domain: `p` (the record is the
    /// From domain's own), `sp` (found at the organisational domain, the
    /// From domain exists or could not be told not to), `np` (found there,
    /// and the From domain answers NXDOMAIN for A, AAAA and MX).
    pub applies: Option<String>,
    /// DKIM alignment mode `adkim` (relaxed, strict), with a record.
    pub adkim: Option<String>,
    /// SPF alignment mode `aspf`, with a record.
    pub aspf: Option<String>,
    /// An aligned DKIM pass.
    pub dkim_aligned: bool,
    /// An aligned SPF (MAIL FROM) pass.
    pub spf_aligned: bool,
    /// Why, when not a pass.
    pub reason: Option<String>,
    /// What the receiving hop recorded.
    pub recorded: Option<Recorded>,
}

/// One ARC set as the chain validation saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArcInstance {
    /// `i=`.
    pub instance: u32,
    /// The ARC-Seal's `cv=`: none, pass, fail.
    pub cv: String,
    /// The ARC-Seal's `d=`.
    pub seal_domain: String,
    /// The ARC-Message-Signature's `d=`.
    pub signature_domain: String,
}

/// The ARC chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArcCheck {
    /// RFC 8617's chain validation status: pass, fail or none (no ARC
    /// field at all); temperror when a key could not be fetched for now.
    pub result: String,
    /// Why, when not a pass.
    pub reason: Option<String>,
    /// The sets, lowest instance first.
    pub instances: Vec<ArcInstance>,
    /// What the receiving hop recorded.
    pub recorded: Option<Recorded>,
}

/// A resolver and a runtime, kept for a whole run.
pub struct Verifier {
    rt: tokio::runtime::Runtime,
    auth: MessageAuthenticator,
    /// The stub's count of void answers, when DNS goes through one: SPF's
    /// void-lookup limit (RFC 7208 4.6.4), which mail-auth 0.13 lacks.
    voids: Option<Arc<stub::Voids>>,
}

/// RFC 7208 4.6.4: more void lookups than this in one evaluation is a
/// permerror.
pub const VOID_LOOKUP_LIMIT: usize = 2;

impl Verifier {
    /// A verifier whose every question goes to `stub`, which also counts
    /// void answers for SPF's void-lookup limit.
    pub fn through(stub: &stub::Stub, timeout: Duration) -> Result<Verifier> {
        let mut v = Verifier::new(&Dns::Stub(stub.addr()), timeout)?;
        v.voids = Some(stub.voids());
        Ok(v)
    }

    /// A verifier asking `dns`, each query waiting at most `timeout`.
    pub fn new(dns: &Dns, timeout: Duration) -> Result<Verifier> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::new(Kind::Temporary, "starting the DNS resolver", e))?;
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.ndots = 0;
        let config = match dns {
            Dns::System => {
                let (config, sys) = mail_auth::hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| {
                        Error::new(Kind::Temporary, "reading the system DNS configuration", e)
                    })?;
                opts.edns0 = sys.edns0;
                config
            }
            Dns::Server(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                ResolverConfig::from_parts(None, vec![], vec![ns])
            }
            Dns::Stub(addr) => {
                // Every question reaches the stub (no cache in between), so
                // it sees, records and counts each one.
                opts.cache_size = 0;
                let mut ns = NameServerConfig::udp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                ResolverConfig::from_parts(None, vec![], vec![ns])
            }
        };
        // Every answer is wanted fresh from the stub; the resolver's own
        // cache is per run anyway.
        let auth = {
            let _guard = rt.enter();
            MessageAuthenticator::new(config, opts)
                .map_err(|e| Error::new(Kind::Temporary, "starting the DNS resolver", e))?
        };
        Ok(Verifier {
            rt,
            auth,
            voids: None,
        })
    }

    /// Verify `raw` (a whole message, LF or CRLF), judging SPF for `hop`
    /// and signature expiry as of `at` (Unix seconds; `None`: now).
    pub fn verify(&self, raw: &[u8], hop: &SmtpHop, at: Option<u64>) -> Verification {
        let data = crlf(raw);
        // Not strict: signatures with `l=` are verified (and their cover
        // reported), not refused.
        let Some(msg) = AuthenticatedMessage::parse_with_opts(&data, None, false) else {
            return Verification {
                dkim: Vec::new(),
                spf: None,
                dmarc: DmarcCheck {
                    result: "none".into(),
                    reason: Some("the message could not be parsed".into()),
                    ..DmarcCheck::default()
                },
                arc: ArcCheck {
                    result: "none".into(),
                    reason: Some("the message could not be parsed".into()),
                    ..ArcCheck::default()
                },
                dnsbl: Vec::new(),
            };
        };
        self.rt.block_on(self.verify_async(&msg, hop, at))
    }

    async fn verify_async(
        &self,
        msg: &AuthenticatedMessage<'_>,
        hop: &SmtpHop,
        at: Option<u64>,
    ) -> Verification {
        let outputs = self.auth.verify_dkim(msg).await;
        let mut dkim = Vec::with_capacity(outputs.len());
        // The crate lists unreadable signatures first: each is matched to
        // its field (the crate's errors, in order) for its place and tags.
        let is_dkim_field = |name: &[u8]| name.eq_ignore_ascii_case(b"DKIM-Signature");
        let mut unreadable = msg
            .errors
            .iter()
            .filter(|h| is_dkim_field(h.name) && matches!(h.header, mail_auth::Error::Dkim(_)));
        let mut places = Vec::with_capacity(outputs.len());
        for out in &outputs {
            let mut c = self.dkim_check(msg, out, at).await;
            let value = match out.signature() {
                Some(sig) => msg
                    .dkim_headers
                    .iter()
                    .find(|h| std::ptr::eq(&h.header, sig))
                    .map(|h| h.value),
                None => unreadable.next().map(|h| h.value),
            };
            if let (None, Some(v)) = (out.signature(), value) {
                let text = String::from_utf8_lossy(v);
                c.domain = tag(&text, "d").unwrap_or_default();
                c.selector = tag(&text, "s").unwrap_or_default();
            }
            places.push(value.map_or(usize::MAX, |v| v.as_ptr() as usize));
            dkim.push(c);
        }
        // DKIM-Signature fields the crate could not read and reports no
        // result for (only its DkimError ones get one).
        for h in msg
            .errors
            .iter()
            .filter(|h| is_dkim_field(h.name) && !matches!(h.header, mail_auth::Error::Dkim(_)))
        {
            let text = String::from_utf8_lossy(h.value);
            dkim.push(DkimCheck {
                domain: tag(&text, "d").unwrap_or_default(),
                selector: tag(&text, "s").unwrap_or_default(),
                result: "permerror".into(),
                reason: Some(format!("the signature cannot be read: {}", h.header)),
                body_hash: "unchecked".into(),
                header_sig: "unchecked".into(),
                ..DkimCheck::default()
            });
            places.push(h.value.as_ptr() as usize);
        }
        // Header order (top first), whatever order the crate reported in.
        let mut order: Vec<usize> = (0..dkim.len()).collect();
        order.sort_by_key(|&i| places[i]);
        let dkim_sorted: Vec<DkimCheck> = order.iter().map(|&i| dkim[i].clone()).collect();
        // DMARC counts the passes found here too (an `l=` signature the
        // crate misjudged, one valid as of `--at`).
        let outputs: Vec<DkimOutput<'_>> = outputs
            .iter()
            .zip(&dkim)
            .map(|(out, c)| match out.signature() {
                Some(sig) if c.result == "pass" && *out.result() != DkimResult::Pass => {
                    DkimOutput::pass().with_signature(sig)
                }
                _ => out.clone(),
            })
            .collect();
        let arc = self.arc(msg).await;

        let (spf, mail_from_out, mail_from_domain) = self.spf(hop).await;
        let dmarc = {
            let empty = SpfOutput::new(String::new());
            let spf_out = mail_from_out.as_ref().unwrap_or(&empty);
            self.dmarc(msg, &outputs, &mail_from_domain, spf_out).await
        };
        Verification {
            dkim: dkim_sorted,
            spf,
            dmarc,
            arc,
            dnsbl: Vec::new(),
        }
    }

    /// DMARC as RFC 7489 has it, with the organisational domain from the
    /// Public Suffix List. `mail-auth` 0.13's `verify_dmarc` finds the
    /// organisational domain by its own DNS tree walk (RFC 9989) and cannot
    /// be given one, so discovery and alignment are done here with its
    /// record parser: `_dmarc.<From domain>`, else `_dmarc.<org domain>`;
    /// an identifier aligns when equal to the From domain or, relaxed, when
    /// its organisational domain is the From domain's.
    async fn dmarc(
        &self,
        msg: &AuthenticatedMessage<'_>,
        dkim: &[DkimOutput<'_>],
        mail_from_domain: &str,
        spf: &SpfOutput,
    ) -> DmarcCheck {
        use mail_auth::DmarcOutput;
        use mail_auth::common::to_a_label;
        use mail_auth::dmarc::{Alignment, Dmarc, Policy};
        use mail_auth::{DnsError, Error as AuthError};

        let mut from = String::new();
        for f in &msg.from {
            if let Some((_, d)) = f.rsplit_once('@') {
                let d = to_a_label(d.trim_end_matches('.')).into_owned();
                if from.is_empty() {
                    from = d;
                } else if from != d {
                    // Several From domains: DMARC does not apply (RFC 7489 6.6.1).
                    return dmarc_check(&DmarcOutput::default(), String::new());
                }
            }
        }
        if from.is_empty() {
            return dmarc_check(&DmarcOutput::default(), String::new());
        }
        let org = crate::trace::psl::org_domain(&from);
        let none = DmarcOutput::default().with_domain(&from);
        let mut record = None;
        let mut names = vec![from.as_str()];
        if org != from {
            names.push(org.as_str());
        }
        let mut own = true;
        for (n, name) in names.into_iter().enumerate() {
            let key = format!("_dmarc.{name}.");
            match self
                .auth
                .txt_lookup::<Dmarc>(key, None::<&NoCache<Box<str>, mail_auth::Txt>>)
                .await
            {
                Ok(r) => {
                    record = Some(r);
                    own = n == 0;
                    break;
                }
                Err(AuthError::Dns(DnsError::RecordNotFound(_)))
                | Err(AuthError::Dns(DnsError::InvalidRecordType)) => {}
                Err(e) => {
                    let r = DmarcResult::from(e);
                    let out = none.with_dkim_result(r.clone()).with_spf_result(r);
                    return dmarc_check(&out, org);
                }
            }
        }
        let Some(record) = record else {
            return dmarc_check(&none, org);
        };
        // Without a valid p= the record applies only with a rua= (RFC 7489 6.6.3).
        if record.p == Policy::Unspecified && record.rua().is_empty() {
            return dmarc_check(&none, org);
        }
        let aligned = |id: &str, mode: Alignment| {
            let id = to_a_label(id.trim_end_matches('.'));
            *id == *from
                || (mode == Alignment::Relaxed && crate::trace::psl::org_domain(&id) == org)
        };
        let mut out = none;
        if spf.result() == SpfResult::Pass {
            out = out.with_spf_result(if aligned(mail_from_domain, record.aspf) {
                DmarcResult::Pass
            } else {
                DmarcResult::Fail(AuthError::NotAligned)
            });
        }
        let passed: Vec<&str> = dkim
            .iter()
            .filter(|o| *o.result() == DkimResult::Pass)
            .filter_map(|o| o.signature())
            .map(|s| s.domain())
            .collect();
        if !passed.is_empty() {
            out = out.with_dkim_result(if passed.iter().any(|d| aligned(d, record.adkim)) {
                DmarcResult::Pass
            } else {
                DmarcResult::Fail(AuthError::NotAligned)
            });
        }
        let applies = if own {
            "p"
        } else if self.nonexistent(&from).await {
            "np"
        } else {
            "sp"
        };
        let mut c = dmarc_check(&out.with_record(record), org);
        c.applies = Some(applies.into());
        c
    }

    /// RFC 9091 2.1: a domain does not exist when A, AAAA and MX all
    /// answer NXDOMAIN. Any other answer (records, no data, an error)
    /// leaves it existing, so `np=` is never applied on a guess.
    async fn nonexistent(&self, domain: &str) -> bool {
        use mail_auth::hickory_resolver::proto::rr::RecordType;
        let name = format!("{}.", domain.trim_end_matches('.'));
        for t in [RecordType::A, RecordType::AAAA, RecordType::MX] {
            match self.auth.resolver().lookup(name.as_str(), t).await {
                Err(e) if e.is_nx_domain() => {}
                _ => return false,
            }
        }
        true
    }

    /// Look up each `(hop, address)` in each DNSBL `zone`. Only answers in
    /// 127.0.0.0/8 are listings; 127.255.255.x (the lists' "query refused"
    /// codes) and answers outside 127.0.0.0/8 (a resolver that rewrites
    /// NXDOMAIN) are errors, never listings.
    pub fn dnsbl(&self, addrs: &[(Option<usize>, IpAddr)], zones: &[String]) -> Vec<DnsblCheck> {
        use mail_auth::hickory_resolver::proto::rr::{RData, RecordType};
        let mut out = Vec::new();
        for &(hop, ip) in addrs {
            for zone in zones {
                let zone_abs = zone.trim_end_matches('.');
                let name = format!("{}.{zone_abs}.", reversed(ip));
                let mut c = DnsblCheck {
                    ip: ip.to_string(),
                    hop,
                    zone: zone_abs.to_string(),
                    ..DnsblCheck::default()
                };
                let res = self
                    .rt
                    .block_on(self.auth.resolver().lookup(name.as_str(), RecordType::A));
                match res {
                    Ok(l) => {
                        let addrs: Vec<std::net::Ipv4Addr> = l
                            .answers()
                            .iter()
                            .filter_map(|r| match &r.data {
                                RData::A(a) => Some(a.0),
                                _ => None,
                            })
                            .collect();
                        c.codes = addrs.iter().map(|a| a.to_string()).collect();
                        if let Some(a) = addrs.iter().find(|a| a.octets()[0] != 127) {
                            c.result = "error".into();
                            c.reason = Some(format!(
                                "answer {a} is outside 127.0.0.0/8: the resolver rewrites NXDOMAIN, so nothing it says about this list counts"
                            ));
                        } else if let Some(a) =
                            addrs.iter().find(|a| a.octets()[..3] == [127, 255, 255])
                        {
                            c.result = "error".into();
                            c.reason = Some(format!(
                                "the list refused the query ({a}): it does not answer this resolver"
                            ));
                        } else if addrs.is_empty() {
                            c.result = "not_listed".into();
                        } else {
                            c.result = "listed".into();
                        }
                    }
                    Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                        c.result = "not_listed".into();
                    }
                    Err(e) => {
                        c.result = "temperror".into();
                        c.reason = Some(format!("DNS error: {e}"));
                    }
                }
                out.push(c);
            }
        }
        out
    }

    /// SPF for HELO and MAIL FROM separately; also the MAIL FROM output
    /// and domain DMARC needs.
    async fn spf(&self, hop: &SmtpHop) -> (Option<SpfCheck>, Option<SpfOutput>, String) {
        let Some(ip) = hop.ip else {
            return (None, None, String::new());
        };
        let receiver = hop.receiver.as_deref().unwrap_or("unknown");
        let helo_name = hop.helo.as_deref().unwrap_or("");
        let helo = if helo_name.is_empty() {
            None
        } else if !spf_domain_ok(helo_name) {
            Some(SpfIdentity {
                domain: helo_name.to_string(),
                result: "none".into(),
                explanation: Some("not a multi-label domain name (RFC 7208 4.3)".into()),
                ..SpfIdentity::default()
            })
        } else {
            let start = self.void_count();
            let out = self
                .auth
                .verify_spf(mail_auth::spf::verify::SpfParameters::verify_ehlo(
                    ip, helo_name, receiver,
                ))
                .await;
            Some(self.void_limit(spf_identity(&out), start))
        };
        // RFC 7208 2.4: the null sender is checked as postmaster@HELO.
        let sender = match hop.mail_from.as_deref() {
            Some(s) if !s.is_empty() => Some(s.to_string()),
            _ if !helo_name.is_empty() => Some(format!("postmaster@{helo_name}")),
            _ => None,
        };
        let (mail_from, out, domain) = match &sender {
            Some(s) if !spf_domain_ok(s.rsplit_once('@').map_or("", |(_, d)| d)) => {
                let domain = s.rsplit_once('@').map_or("", |(_, d)| d).to_string();
                let id = SpfIdentity {
                    domain: domain.clone(),
                    result: "none".into(),
                    explanation: Some("not a multi-label domain name (RFC 7208 4.3)".into()),
                    ..SpfIdentity::default()
                };
                let out = SpfOutput::new(domain.clone()).with_result(SpfResult::None);
                (Some(id), Some(out), domain)
            }
            Some(s) => {
                let start = self.void_count();
                let mut out = self
                    .auth
                    .verify_spf(mail_auth::spf::verify::SpfParameters::verify_mail_from(
                        ip, helo_name, receiver, s,
                    ))
                    .await;
                let domain = s.rsplit_once('@').map_or("", |(_, d)| d).to_string();
                let id = self.void_limit(spf_identity(&out), start);
                if id.result == "permerror" && out.result() != SpfResult::PermError {
                    // DMARC must not count an SPF pass the limit undid.
                    out =
                        SpfOutput::new(out.domain().to_string()).with_result(SpfResult::PermError);
                }
                (Some(id), Some(out), domain)
            }
            None => (None, None, String::new()),
        };
        (
            Some(SpfCheck {
                ip: ip.to_string(),
                hop: hop.hop,
                helo,
                mail_from,
            }),
            out,
            domain,
        )
    }

    fn void_count(&self) -> usize {
        self.voids
            .as_ref()
            .map_or(0, |v| v.count.load(Ordering::Relaxed))
    }

    /// `id` turned into a permerror when the evaluation that started at
    /// void count `start` met more than [`VOID_LOOKUP_LIMIT`] void answers.
    fn void_limit(&self, mut id: SpfIdentity, start: usize) -> SpfIdentity {
        let mut voids = self.void_count().saturating_sub(start);
        // An `exp=` lookup comes after a fail is decided, and does not
        // count (RFC 7208 4.6.4); it is the evaluation's last question.
        if id.result == "fail"
            && self
                .voids
                .as_ref()
                .is_some_and(|v| v.last_was_txt.load(Ordering::Relaxed))
        {
            voids = voids.saturating_sub(1);
        }
        id.void_lookups = self.voids.as_ref().map(|_| voids);
        if voids > VOID_LOOKUP_LIMIT && !matches!(id.result.as_str(), "none" | "temperror") {
            id.result = "permerror".into();
            id.explanation = Some(format!(
                "{voids} void DNS lookups, more than the {VOID_LOOKUP_LIMIT} RFC 7208 4.6.4 allows"
            ));
        }
        id
    }

    /// One DKIM output as a [`DkimCheck`], with the parts the crate skips
    /// checked here (see the module docs).
    async fn dkim_check(
        &self,
        msg: &AuthenticatedMessage<'_>,
        out: &DkimOutput<'_>,
        at: Option<u64>,
    ) -> DkimCheck {
        let Some(sig) = out.signature() else {
            // A DKIM-Signature the crate could not read.
            let (result, reason) = dkim_result(out.result());
            return DkimCheck {
                result: if result == "neutral" {
                    "permerror".into()
                } else {
                    result
                },
                reason,
                body_hash: "unchecked".into(),
                header_sig: "unchecked".into(),
                ..DkimCheck::default()
            };
        };
        let mut c = DkimCheck {
            domain: sig.d.clone(),
            selector: sig.s.clone(),
            algorithm: algorithm_name(sig.a),
            body_length: (sig.l > 0).then_some(sig.l),
            expires: (sig.x > 0).then_some(sig.x),
            ..DkimCheck::default()
        };
        // Expired as of `at`, whatever the clock says (the crate judges by
        // the clock, so a signature valid today may have expired then).
        if let Some(t) = at
            && sig.x != 0
            && sig.x <= t
        {
            c.result = "neutral".into();
            c.body_hash = "unchecked".into();
            c.header_sig = "unchecked".into();
            c.reason = Some(format!("signature expired (x={}) as of {t}", sig.x));
            return c;
        }
        let mut body = body_hash_of(msg, sig);
        if sig.l > 0 {
            let total = canonical_body_len(msg, sig);
            c.unsigned_body_bytes = Some(total.saturating_sub(sig.l));
            // mail-auth 0.13 cuts the raw body at `l=` before
            // canonicalising; RFC 6376 3.5 counts canonical bytes.
            body = limited_body_hash(msg, sig);
            if body.as_deref() == Some(sig.bh.as_slice())
                && matches!(
                    out.result(),
                    DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch))
                )
            {
                c.body_hash = "pass".into();
                c.header_sig = self.header_sig(msg, sig).await;
                c.result = if c.header_sig == "pass" {
                    "pass"
                } else {
                    "fail"
                }
                .into();
                if c.result != "pass" {
                    c.reason = Some("header signature does not verify".into());
                }
                return c;
            }
        }
        match out.result() {
            DkimResult::Pass => {
                c.result = "pass".into();
                c.body_hash = "pass".into();
                c.header_sig = "pass".into();
            }
            DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
                // The crate stops here; the header signature tells whether
                // the header broke too.
                c.result = "fail".into();
                c.body_hash = "fail".into();
                c.header_sig = self.header_sig(msg, sig).await;
                c.reason = Some(if c.header_sig == "pass" {
                    "body changed after signing (header signature still valid)".into()
                } else {
                    "body hash mismatch".into()
                });
            }
            DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::SignatureExpired)) => {
                let expired_then = match at {
                    Some(t) => sig.x != 0 && sig.x <= t,
                    None => true,
                };
                if expired_then || (sig.x != 0 && sig.x <= sig.t) {
                    c.result = "neutral".into();
                    c.body_hash = "unchecked".into();
                    c.header_sig = "unchecked".into();
                    c.reason = Some("signature expired (x=)".into());
                } else {
                    // Valid at --at: judge it in full here.
                    c.body_hash = if body.as_deref() == Some(sig.bh.as_slice()) {
                        "pass".into()
                    } else {
                        "fail".into()
                    };
                    c.header_sig = self.header_sig(msg, sig).await;
                    let ok = c.body_hash == "pass" && c.header_sig == "pass";
                    c.result = if ok { "pass" } else { "fail" }.into();
                    if !ok {
                        c.reason = Some(match (c.body_hash.as_str(), c.header_sig.as_str()) {
                            ("fail", "pass") => "body changed after signing".into(),
                            ("pass", _) => "header signature does not verify".into(),
                            _ => "body hash and header signature both fail".into(),
                        });
                    }
                }
            }
            other => {
                let (result, reason) = dkim_result(other);
                c.result = result;
                c.reason = match other {
                    DkimResult::PermError(mail_auth::Error::Crypto(e)) => {
                        Some(format!("the key record holds no usable key: {e}"))
                    }
                    _ => reason,
                };
                // The crate checks the body hash before everything else it
                // can fail on, except an unreadable signature.
                c.body_hash = if body.as_deref() == Some(sig.bh.as_slice()) {
                    "pass".into()
                } else {
                    "fail".into()
                };
                c.header_sig = match other {
                    DkimResult::Fail(mail_auth::Error::Crypto(_)) => "fail".into(),
                    _ => "unchecked".into(),
                };
                if c.header_sig == "fail" {
                    c.reason = Some(if c.body_hash == "pass" {
                        "header signature does not verify: a signed header field changed, or the key does not match".into()
                    } else {
                        "header signature does not verify".into()
                    });
                }
            }
        }
        c
    }

    /// Check only the header signature of `sig`: `pass`, `fail` or
    /// `unchecked` (no usable key).
    async fn header_sig(
        &self,
        msg: &AuthenticatedMessage<'_>,
        sig: &mail_auth::dkim::Signature,
    ) -> String {
        let Some(header) = msg
            .dkim_headers
            .iter()
            .find(|h| std::ptr::eq(&h.header, sig))
        else {
            return "unchecked".into();
        };
        let key = match self
            .auth
            .txt_lookup::<DomainKey>(sig.domain_key(), None::<&NoCache<Box<str>, mail_auth::Txt>>)
            .await
        {
            Ok(k) => k,
            Err(_) => return "unchecked".into(),
        };
        let stripped = strip_b(header.value);
        let mut headers = msg.signed_headers(&sig.h, header.name, &stripped);
        match key.p.verify(&mut headers, &sig.b, sig.ch, sig.a) {
            Ok(()) => "pass".into(),
            Err(_) => "fail".into(),
        }
    }
}

/// Whether an address is one a message enters a domain from: not loopback,
/// private (RFC 1918, RFC 4193), link-local or unspecified.
pub fn is_external(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_loopback() || a.is_private() || a.is_link_local() || a.is_unspecified())
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_external(IpAddr::V4(v4));
            }
            let seg0 = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || (seg0 & 0xfe00) == 0xfc00
                || (seg0 & 0xffc0) == 0xfe80)
        }
    }
}

/// RFC 7208 4.3: a domain check_host() can judge: labels of 1 to 63
/// bytes (a final dot aside), at least two of them, no domain literal.
/// Anything else is `none` without a lookup (mail-auth 0.13 gives
/// temperror when the name cannot even be asked).
fn spf_domain_ok(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && !d.starts_with('[')
        && d.contains('.')
        && d.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

/// The value of tag `name` in a DKIM tag list, whitespace removed.
fn tag(list: &str, name: &str) -> Option<String> {
    list.split(';').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name))
            .then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

/// The DNSBL query label of an address: reversed octets, or reversed
/// nibbles for IPv6 (RFC 5782 2.1, 2.4).
fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut parts = Vec::with_capacity(32);
            for b in a.octets().iter().rev() {
                parts.push(format!("{:x}", b & 0x0f));
                parts.push(format!("{:x}", b >> 4));
            }
            parts.join(".")
        }
    }
}

/// The external addresses of a chain's hops, oldest first, each once.
pub fn external_addresses(hops: &[crate::trace::Hop]) -> Vec<(Option<usize>, IpAddr)> {
    let mut out: Vec<(Option<usize>, IpAddr)> = Vec::new();
    for (i, h) in hops.iter().enumerate() {
        let Some(ip) =
            h.ip.as_deref()
                .and_then(|s| s.trim_start_matches("IPv6:").parse::<IpAddr>().ok())
        else {
            continue;
        };
        if is_external(ip) && !out.iter().any(|(_, a)| *a == ip) {
            out.push((Some(i), ip));
        }
    }
    out
}

/// The hop whose SPF is judged: `wanted` when given, else the newest hop
/// (highest index in `hops`, oldest first) whose connecting address is
/// external ([`is_external`]).
pub fn choose_hop(hops: &[crate::trace::Hop], wanted: Option<usize>) -> Option<usize> {
    if let Some(n) = wanted {
        return (n < hops.len()).then_some(n);
    }
    hops.iter().rposition(|h| {
        h.ip.as_deref()
            .and_then(|s| s.trim_start_matches("IPv6:").parse::<IpAddr>().ok())
            .is_some_and(is_external)
    })
}

/// The SMTP facts of hop `n`: its address, HELO (else its `from` name),
/// receiver, and the envelope sender (`return_path` first, else the hop's
/// envelope-from).
pub fn smtp_hop(
    hops: &[crate::trace::Hop],
    n: Option<usize>,
    return_path: Option<&str>,
) -> SmtpHop {
    let h = n.and_then(|n| hops.get(n));
    let sender = return_path
        .map(str::to_string)
        .or_else(|| h.and_then(|h| h.envelope_from.as_deref().map(str::to_string)))
        .map(|s| crate::message::bare_address(&s).trim().to_string());
    SmtpHop {
        hop: n.filter(|_| h.is_some()),
        ip: h
            .and_then(|h| h.ip.as_deref())
            .and_then(|s| s.trim_start_matches("IPv6:").parse().ok()),
        helo: h.and_then(|h| h.helo.as_deref().or(h.from.as_deref()).map(str::to_string)),
        mail_from: sender,
        receiver: h.and_then(|h| h.by.as_deref().map(str::to_string)),
    }
}

/// Put what the receiver recorded beside each fresh verdict: the
/// Authentication-Results tied to the judged hop (`hop`), else the newest.
pub fn compare(v: &mut Verification, auth: &[crate::trace::chain::AuthEntry], hop: Option<usize>) {
    // Chain hops are numbered from 1 there; ours from 0.
    let entry = auth
        .iter()
        .find(|e| hop.is_some() && e.hop.map(|h| h - 1) == hop)
        .or_else(|| auth.first());
    let Some(entry) = entry else {
        return;
    };
    let rec = |method: &str, domain: Option<&str>, fresh: &str, why: Option<&str>| {
        let v = entry.verdicts.iter().find(|v| {
            v.method == method
                && domain.is_none_or(|d| {
                    v.domain
                        .as_deref()
                        .is_none_or(|vd| vd.eq_ignore_ascii_case(d))
                })
        })?;
        let by = entry.authserv_id.clone();
        let change = (v.result != fresh).then(|| {
            let mut s = format!(
                "{} at {} then, {fresh} now",
                v.result,
                by.as_deref().unwrap_or("the receiver")
            );
            if let Some(w) = why {
                s.push_str(": ");
                s.push_str(w);
            }
            s
        });
        Some(Recorded {
            by,
            hop: entry.hop.map(|h| h - 1),
            result: v.result.clone(),
            change,
        })
    };
    for d in &mut v.dkim {
        let why = match (
            d.body_hash.as_str(),
            d.header_sig.as_str(),
            d.reason.as_deref(),
        ) {
            ("fail", "pass", _) => Some("body changed".to_string()),
            ("pass", "fail", _) => {
                Some("a signed header changed, or the key was rotated".to_string())
            }
            (_, _, r) => r.map(str::to_string),
        };
        d.recorded = rec("dkim", Some(&d.domain), &d.result, why.as_deref());
    }
    if let Some(mf) = v.spf.as_mut().and_then(|s| s.mail_from.as_mut()) {
        mf.recorded = rec("spf", Some(&mf.domain), &mf.result, None);
    }
    v.dmarc.recorded = rec(
        "dmarc",
        (!v.dmarc.domain.is_empty()).then_some(v.dmarc.domain.as_str()),
        &v.dmarc.result,
        v.dmarc.reason.as_deref(),
    );
    v.arc.recorded = rec("arc", None, &v.arc.result, v.arc.reason.as_deref());
}

/// The worst outcome of a verification: `temperror` anywhere, else
/// whether every result is a pass or none.
pub fn outcome(v: &Verification) -> Outcome {
    let mut words: Vec<&str> = v.dkim.iter().map(|d| d.result.as_str()).collect();
    if let Some(s) = &v.spf {
        words.extend(s.helo.iter().chain(&s.mail_from).map(|i| i.result.as_str()));
    }
    words.push(&v.dmarc.result);
    words.push(&v.arc.result);
    // A listing is a failure; a list's refusal or a rewriting resolver is
    // an error shown as such, not a verdict on the message.
    for d in &v.dnsbl {
        match d.result.as_str() {
            "listed" => words.push("fail"),
            "temperror" => words.push("temperror"),
            _ => {}
        }
    }
    if words.contains(&"temperror") {
        Outcome::Temporary
    } else if words.iter().all(|w| matches!(*w, "pass" | "none")) {
        Outcome::Pass
    } else {
        Outcome::Failed
    }
}

/// See [`outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every result a pass (or nothing to judge).
    Pass,
    /// Some result is not a pass.
    Failed,
    /// A DNS temporary error: try again later.
    Temporary,
}

/// `data` with every bare LF turned into CRLF (a CRLF stays as it is).
pub fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The value of a DKIM-Signature with the value of `b=` removed (RFC 6376
/// 3.7), everything else byte for byte, and without the line end that
/// ends the field (as mail-auth hashes it).
fn strip_b(value: &[u8]) -> Vec<u8> {
    let value = value
        .strip_suffix(b"\r\n")
        .or_else(|| value.strip_suffix(b"\n"))
        .unwrap_or(value);
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    let mut at_tag_start = true;
    while i < value.len() {
        let c = value[i];
        if at_tag_start && !c.is_ascii_whitespace() {
            at_tag_start = false;
            // Is this tag `b` (not `bh`)?
            let mut j = i + 1;
            while j < value.len() && value[j].is_ascii_whitespace() {
                j += 1;
            }
            if (c == b'b' || c == b'B') && j < value.len() && value[j] == b'=' {
                out.extend_from_slice(&value[i..=j]);
                // Skip the value up to `;` or the end.
                let mut k = j + 1;
                while k < value.len() && value[k] != b';' {
                    k += 1;
                }
                i = k;
                continue;
            }
        }
        if c == b';' {
            at_tag_start = true;
        }
        out.push(c);
        i += 1;
    }
    out
}

fn body_hash_of(
    msg: &AuthenticatedMessage<'_>,
    sig: &mail_auth::dkim::Signature,
) -> Option<Vec<u8>> {
    let ha = HashAlgorithm::from(sig.a);
    msg.body_hashes
        .iter()
        .find(|(c, h, l, _)| *c == sig.cb && *h == ha && *l == sig.l)
        .map(|(_, _, _, bh)| bh.clone())
}

/// The SHA-256 body hash over the first `l=` bytes of the canonical body;
/// `None` for other hash algorithms.
fn limited_body_hash(
    msg: &AuthenticatedMessage<'_>,
    sig: &mail_auth::dkim::Signature,
) -> Option<Vec<u8>> {
    use mail_auth::common::headers::Writable;
    use sha2::Digest;
    struct Limited {
        h: sha2::Sha256,
        left: u64,
    }
    impl mail_auth::common::headers::Writer for Limited {
        fn write(&mut self, buf: &[u8]) {
            let n = usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            self.h.update(&buf[..n]);
            self.left -= n as u64;
        }
    }
    if HashAlgorithm::from(sig.a) != HashAlgorithm::Sha256 {
        return None;
    }
    let mut w = Limited {
        h: sha2::Sha256::new(),
        left: sig.l,
    };
    sig.cb.canonical_body(msg.raw_body(), 0).write(&mut w);
    Some(w.h.finalize().to_vec())
}

/// The length of the canonical body (`c=` of `sig`'s body part).
fn canonical_body_len(msg: &AuthenticatedMessage<'_>, sig: &mail_auth::dkim::Signature) -> u64 {
    struct Count(u64);
    impl mail_auth::common::headers::Writer for Count {
        fn write(&mut self, buf: &[u8]) {
            self.0 += buf.len() as u64;
        }
    }
    let mut n = Count(0);
    use mail_auth::common::headers::Writable;
    sig.cb.canonical_body(msg.raw_body(), 0).write(&mut n);
    n.0
}

fn algorithm_name(a: mail_auth::common::crypto::Algorithm) -> String {
    use mail_auth::common::crypto::Algorithm;
    match a {
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
    .into()
}

/// A crate DKIM/ARC result as (RFC 8601 word, reason).
fn dkim_result(r: &DkimResult) -> (String, Option<String>) {
    let (word, err) = match r {
        DkimResult::Pass => ("pass", None),
        DkimResult::None => ("none", None),
        DkimResult::Neutral(e) => ("neutral", Some(e)),
        DkimResult::Fail(e) => ("fail", Some(e)),
        DkimResult::PermError(e) => ("permerror", Some(e)),
        DkimResult::TempError(e) => ("temperror", Some(e)),
    };
    (word.into(), err.map(reason))
}

/// A crate error in our words.
fn reason(e: &mail_auth::Error) -> String {
    use mail_auth::{DnsError, Error as E};
    match e {
        E::Dns(DnsError::RecordNotFound(code)) => format!("no key record ({code})"),
        E::Dns(DnsError::Resolver(s)) => format!("DNS error: {s}"),
        E::Dkim(DkimError::RevokedPublicKey) => "key revoked (empty p=)".into(),
        E::Crypto(_) => "signature does not verify".into(),
        other => other.to_string(),
    }
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn spf_identity(out: &SpfOutput) -> SpfIdentity {
    SpfIdentity {
        domain: out.domain().to_string(),
        result: spf_word(out.result()).into(),
        explanation: out.explanation().map(str::to_string),
        void_lookups: None,
        recorded: None,
    }
}

fn dmarc_check(out: &mail_auth::DmarcOutput, org_domain: String) -> DmarcCheck {
    use mail_auth::dmarc::{Alignment, Policy};
    let (d, s) = (out.dkim_result(), out.spf_result());
    let pass = matches!(d, DmarcResult::Pass) || matches!(s, DmarcResult::Pass);
    let record = out.dmarc_record();
    let result = if pass {
        "pass"
    } else if matches!(d, DmarcResult::TempError(_)) || matches!(s, DmarcResult::TempError(_)) {
        "temperror"
    } else if matches!(d, DmarcResult::PermError(_)) || matches!(s, DmarcResult::PermError(_)) {
        "permerror"
    } else if record.is_none() {
        "none"
    } else {
        "fail"
    };
    let word = |p: &Policy| {
        match p {
            Policy::None | Policy::Unspecified => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
        .to_string()
    };
    let policy = record.map(|r| word(&r.p));
    let mode = |a: &Alignment| {
        match a {
            Alignment::Relaxed => "relaxed",
            Alignment::Strict => "strict",
        }
        .to_string()
    };
    let reason = match result {
        "pass" => None,
        "none" if out.domain().is_empty() => Some("no single From domain".to_string()),
        "none" => Some("no DMARC record".to_string()),
        "fail" => Some("neither an aligned DKIM pass nor an aligned SPF pass".to_string()),
        _ => [d, s].iter().find_map(|r| match r {
            DmarcResult::TempError(e) | DmarcResult::PermError(e) => Some(reason(e)),
            _ => None,
        }),
    };
    DmarcCheck {
        domain: out.domain().to_string(),
        org_domain,
        result: result.into(),
        policy,
        sp: record.map(|r| word(&r.sp)),
        np: record.map(|r| word(&r.np)),
        applies: None,
        adkim: record.map(|r| mode(&r.adkim)),
        aspf: record.map(|r| mode(&r.aspf)),
        dkim_aligned: matches!(d, DmarcResult::Pass),
        spf_aligned: matches!(s, DmarcResult::Pass),
        reason,
        recorded: None,
    }
}

fn arc_check(out: &mail_auth::ArcOutput<'_>) -> ArcCheck {
    use mail_auth::arc::ChainValidation;
    let (result, reason) = dkim_result(out.result());
    ArcCheck {
        result,
        reason,
        instances: out
            .sets()
            .iter()
            .map(|s| ArcInstance {
                instance: s.seal.header.i,
                cv: match s.seal.header.cv {
                    ChainValidation::None => "none",
                    ChainValidation::Fail => "fail",
                    ChainValidation::Pass => "pass",
                }
                .into(),
                seal_domain: s.seal.header.d.clone(),
                signature_domain: s.signature.header.d.clone(),
            })
            .collect(),
        recorded: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mail-trace/verify")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Verify `msg` with DNS answered from `book` only.
    fn verify_with(book: &str, msg: &[u8], hop: &SmtpHop) -> Verification {
        let stub = stub::Stub::start(stub::Mode::Replay(stub::Book::parse(book).unwrap())).unwrap();
        let v = Verifier::through(&stub, Duration::from_secs(5)).unwrap();
        v.verify(msg, hop, None)
    }

    fn rfc8463() -> (String, Vec<u8>) {
        let dns = String::from_utf8(fixture("rfc8463.dns")).unwrap();
        (dns, fixture("rfc8463.eml"))
    }

    #[test]
    fn rfc8463_vectors_pass_ed25519_and_rsa() {
        let (dns, msg) = rfc8463();
        let v = verify_with(&dns, &msg, &SmtpHop::default());
        assert_eq!(v.dkim.len(), 2, "{v:?}");
        assert_eq!(v.dkim[0].algorithm, "ed25519-sha256");
        assert_eq!(v.dkim[1].algorithm, "rsa-sha256");
        for d in &v.dkim {
            assert_eq!(d.result, "pass", "{d:?}");
            assert_eq!(d.domain, "football.example.com");
            assert_eq!(
                (d.body_hash.as_str(), d.header_sig.as_str()),
                ("pass", "pass")
            );
        }
        assert_eq!(v.dmarc.result, "pass", "{:?}", v.dmarc);
        assert_eq!(v.dmarc.policy.as_deref(), Some("reject"));
        assert_eq!(v.dmarc.adkim.as_deref(), Some("strict"));
        assert!(v.dmarc.dkim_aligned);
        assert_eq!(v.arc.result, "none");
        assert!(v.spf.is_none());
    }

    #[test]
    fn altered_body_and_altered_header_are_told_apart() {
        let (dns, msg) = rfc8463();
        let text = String::from_utf8(msg).unwrap();
        let body = text.replace("We lost the game.", "We won the game.");
        let v = verify_with(&dns, body.as_bytes(), &SmtpHop::default());
        for d in &v.dkim {
            assert_eq!(d.result, "fail", "{d:?}");
            assert_eq!(
                (d.body_hash.as_str(), d.header_sig.as_str()),
                ("fail", "pass"),
                "{d:?}"
            );
        }
        let header = text.replace("Subject: Is dinner ready?", "Subject: Is lunch ready?");
        let v = verify_with(&dns, header.as_bytes(), &SmtpHop::default());
        for d in &v.dkim {
            assert_eq!(d.result, "fail", "{d:?}");
            assert_eq!(
                (d.body_hash.as_str(), d.header_sig.as_str()),
                ("pass", "fail"),
                "{d:?}"
            );
        }
        assert_eq!(v.dmarc.result, "fail");
    }

    #[test]
    fn missing_revoked_and_wrong_keys() {
        let (_, msg) = rfc8463();
        // No key records at all.
        let v = verify_with("$DEFAULT NXDOMAIN\n", &msg, &SmtpHop::default());
        for d in &v.dkim {
            assert_eq!(d.result, "permerror", "{d:?}");
            assert!(
                d.reason.as_deref().unwrap_or("").contains("no key"),
                "{d:?}"
            );
        }
        // Revoked: empty p=.
        let revoked = "brisbane._domainkey.football.example.com. TXT \"v=DKIM1; k=ed25519; p=\"\n$DEFAULT NXDOMAIN\n";
        let v = verify_with(revoked, &msg, &SmtpHop::default());
        assert_ne!(v.dkim[0].result, "pass", "{:?}", v.dkim[0]);
        assert!(
            v.dkim[0]
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("revoked"),
            "{:?}",
            v.dkim[0]
        );
        // Another Ed25519 key: the header signature fails.
        let wrong = "brisbane._domainkey.football.example.com. TXT \"v=DKIM1; k=ed25519; p=\" \"PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=\"\n$DEFAULT NXDOMAIN\n";
        let v = verify_with(wrong, &msg, &SmtpHop::default());
        assert_eq!(v.dkim[0].result, "fail", "{:?}", v.dkim[0]);
        assert_eq!(v.dkim[0].body_hash, "pass");
        assert_eq!(v.dkim[0].header_sig, "fail");
    }

    #[test]
    fn a_question_missing_from_the_replay_is_a_temporary_error() {
        let (_, msg) = rfc8463();
        let v = verify_with("other.example. A 192.0.2.1\n", &msg, &SmtpHop::default());
        for d in &v.dkim {
            assert_eq!(d.result, "temperror", "{d:?}");
        }
    }

    #[test]
    fn spf_helo_and_mail_from_are_separate() {
        let (_, msg) = rfc8463();
        let dns = "football.example.com. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\nmx.football.example.com. TXT \"v=spf1 -all\"\n$DEFAULT NXDOMAIN\n";
        let hop = SmtpHop {
            hop: Some(0),
            ip: Some("192.0.2.7".parse().unwrap()),
            helo: Some("mx.football.example.com".into()),
            mail_from: Some("joe@football.example.com".into()),
            receiver: Some("mx.example.net".into()),
        };
        let v = verify_with(dns, &msg, &hop);
        let spf = v.spf.unwrap();
        assert_eq!(spf.ip, "192.0.2.7");
        let helo = spf.helo.unwrap();
        assert_eq!(
            (helo.domain.as_str(), helo.result.as_str()),
            ("mx.football.example.com", "fail")
        );
        let mf = spf.mail_from.unwrap();
        assert_eq!(
            (mf.domain.as_str(), mf.result.as_str()),
            ("football.example.com", "pass")
        );
    }

    /// A small Ed25519-SHA256 signer (RFC 8463) independent of mail-auth:
    /// relaxed/relaxed over From, To and Subject, with `t=` and `x=`.
    fn ed25519_signed(t: u64, x: u64) -> Vec<u8> {
        use base64::Engine as _;
        use sha2::Digest;
        let b64 = base64::engine::general_purpose::STANDARD;
        let seed = b64
            .decode("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
            .unwrap();
        let key =
            openssl::pkey::PKey::private_key_from_raw_bytes(&seed, openssl::pkey::Id::ED25519)
                .unwrap();
        let headers = [
            ("From", "Joe SixPack <joe@football.example.com>"),
            ("To", "Suzie Q <suzie@shopping.example.net>"),
            ("Subject", "Is dinner ready?"),
        ];
        let body = "Hi.\r\n";
        let bh = b64.encode(sha2::Sha256::digest(body.as_bytes()));
        let value = format!(
            "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=football.example.com; s=brisbane; t={t}; x={x}; h=from:to:subject; bh={bh}; b="
        );
        let mut data = String::new();
        for (n, v) in headers {
            data.push_str(&format!("{}:{v}\r\n", n.to_ascii_lowercase()));
        }
        data.push_str(&format!("dkim-signature:{value}"));
        let digest = sha2::Sha256::digest(data.as_bytes());
        let mut signer = openssl::sign::Signer::new_without_digest(&key).unwrap();
        let sig = b64.encode(signer.sign_oneshot_to_vec(&digest).unwrap());
        let mut msg = format!("DKIM-Signature: {value}{sig}\r\n");
        for (n, v) in headers {
            msg.push_str(&format!("{n}: {v}\r\n"));
        }
        msg.push_str("\r\n");
        msg.push_str(body);
        msg.into_bytes()
    }

    fn verify_at(msg: &[u8], at: Option<u64>) -> DkimCheck {
        let (dns, _) = rfc8463();
        let stub = stub::Stub::start(stub::Mode::Replay(stub::Book::parse(&dns).unwrap())).unwrap();
        let v = Verifier::new(&Dns::Stub(stub.addr()), Duration::from_secs(5)).unwrap();
        v.verify(msg, &SmtpHop::default(), at).dkim.remove(0)
    }

    #[test]
    fn expiry_is_judged_as_of_the_given_time() {
        // Expired in 2001 by the clock: valid as of a time before x=.
        let old = ed25519_signed(1_000_000_000, 1_000_000_100);
        let d = verify_at(&old, Some(1_000_000_050));
        assert_eq!(
            (
                d.result.as_str(),
                d.body_hash.as_str(),
                d.header_sig.as_str()
            ),
            ("pass", "pass", "pass"),
            "{d:?}"
        );
        assert_eq!(d.expires, Some(1_000_000_100));
        let d = verify_at(&old, Some(1_000_000_150));
        assert_eq!(d.result, "neutral", "{d:?}");
        assert!(d.reason.as_deref().unwrap().contains("expired"), "{d:?}");
        // Pinned times only (no test reads today's date): valid until
        // 2100 as of a day in 2026, expired as of a later time.
        let new = ed25519_signed(1_000_000_000, 4_102_444_800);
        assert_eq!(verify_at(&new, Some(1_796_515_200)).result, "pass");
        assert_eq!(verify_at(&new, Some(4_102_444_900)).result, "neutral");
    }

    /// The MAIL FROM result for joe@example.com from 192.0.2.7 with `dns`.
    fn spf_of(dns: &str) -> SpfIdentity {
        let (_, msg) = rfc8463();
        let hop = SmtpHop {
            ip: Some("192.0.2.7".parse().unwrap()),
            helo: Some("mail.example.com".into()),
            mail_from: Some("joe@example.com".into()),
            ..SmtpHop::default()
        };
        let book = format!("{dns}\n$DEFAULT NXDOMAIN\n");
        verify_with(&book, &msg, &hop)
            .spf
            .unwrap()
            .mail_from
            .unwrap()
    }

    #[test]
    fn spf_include_lookup_limit_void_limit_and_two_records() {
        let inc = "example.com. TXT \"v=spf1 include:_spf.example.com -all\"\n\
                   _spf.example.com. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"";
        assert_eq!(spf_of(inc).result, "pass");
        // Eleven includes in a chain: past the 10-lookup limit.
        let mut chain = String::from("example.com. TXT \"v=spf1 include:i1.example.com -all\"\n");
        for i in 1..=11 {
            chain.push_str(&format!(
                "i{i}.example.com. TXT \"v=spf1 include:i{}.example.com -all\"\n",
                i + 1
            ));
        }
        chain.push_str("i12.example.com. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n");
        assert_eq!(spf_of(&chain).result, "permerror");
        // Three void lookups before the matching ip4: permerror; two: pass.
        let three = "example.com. TXT \"v=spf1 a:nx1.example.com a:nx2.example.com a:nx3.example.com ip4:192.0.2.0/24 -all\"";
        let s = spf_of(three);
        assert_eq!(s.result, "permerror", "{s:?}");
        assert_eq!(s.void_lookups, Some(3));
        let two =
            "example.com. TXT \"v=spf1 a:nx1.example.com a:nx2.example.com ip4:192.0.2.0/24 -all\"";
        assert_eq!(spf_of(two).result, "pass");
        // Two SPF records: permerror (RFC 7208 4.5), whichever comes first.
        let both =
            "example.com. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\nexample.com. TXT \"v=spf1 -all\"";
        assert_eq!(spf_of(both).result, "permerror");
        // Other TXT records beside one SPF record are fine.
        let other = "example.com. TXT \"google-site-verification=x\"\nexample.com. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"";
        assert_eq!(spf_of(other).result, "pass");
    }

    #[test]
    fn arc_chain_with_the_cv_of_each_instance() {
        let dns = String::from_utf8(fixture("arc-gmail.dns")).unwrap();
        let msg = fixture("arc-gmail.eml");
        let v = verify_with(&dns, &msg, &SmtpHop::default());
        assert_eq!(v.arc.result, "pass", "{:?}", v.arc);
        assert_eq!(v.arc.instances.len(), 1);
        assert_eq!(v.arc.instances[0].instance, 1);
        assert_eq!(v.arc.instances[0].cv, "none");
        assert_eq!(v.arc.instances[0].seal_domain, "google.com");
        // A changed ARC-Authentication-Results breaks the seal.
        let text = String::from_utf8(msg).unwrap();
        let broken = text.replacen(
            "dkim=pass header.i=@ietf.org",
            "dkim=fail header.i=@ietf.org",
            1,
        );
        assert_ne!(broken, text);
        let v = verify_with(&dns, broken.as_bytes(), &SmtpHop::default());
        assert_eq!(v.arc.result, "fail", "{:?}", v.arc);
        // Without the keys: the chain fails (RFC 8617 has no permerror
        // for ARC), the reason says why, and never a panic.
        let v = verify_with("$DEFAULT NXDOMAIN\n", text.as_bytes(), &SmtpHop::default());
        assert_eq!(v.arc.result, "fail", "{:?}", v.arc);
        assert!(
            v.arc.reason.as_deref().unwrap_or("").contains("no key"),
            "{:?}",
            v.arc
        );
    }

    #[test]
    fn dmarc_relaxed_and_strict_alignment() {
        // From is joe@football.example.com (signed, so it stays); the
        // MAIL FROM is in a subdomain, which aligns only when aspf is
        // relaxed.
        let (_, msg) = rfc8463();
        let text = String::from_utf8(msg).unwrap();
        let keys = String::from_utf8(fixture("rfc8463.dns")).unwrap();
        let keys: String = keys
            .lines()
            .filter(|l| l.contains("_domainkey"))
            .map(|l| format!("{l}\n"))
            .collect();
        let with = |p: &str| {
            format!("{keys}_dmarc.football.example.com. TXT \"{p}\"\n$DEFAULT NXDOMAIN\n")
        };
        let dns = |p: &str| {
            format!(
                "{}news.football.example.com. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n",
                with(p)
            )
        };
        let hop = SmtpHop {
            ip: Some("192.0.2.7".parse().unwrap()),
            helo: Some("mail.news.football.example.com".into()),
            mail_from: Some("bounce@news.football.example.com".into()),
            ..SmtpHop::default()
        };
        // Relaxed SPF alignment: the subdomain's pass aligns.
        let v = verify_with(&dns("v=DMARC1; p=reject; aspf=r"), text.as_bytes(), &hop);
        assert_eq!(
            v.spf.as_ref().unwrap().mail_from.as_ref().unwrap().result,
            "pass"
        );
        assert!(v.dmarc.spf_aligned, "{:?}", v.dmarc);
        assert_eq!(v.dmarc.aspf.as_deref(), Some("relaxed"));
        // Strict: it does not (DKIM still aligns, so DMARC passes).
        let v = verify_with(&dns("v=DMARC1; p=reject; aspf=s"), text.as_bytes(), &hop);
        assert!(!v.dmarc.spf_aligned, "{:?}", v.dmarc);
        assert_eq!(v.dmarc.aspf.as_deref(), Some("strict"));
        assert!(v.dmarc.dkim_aligned);
        assert_eq!(v.dmarc.result, "pass");
        // With the signatures broken and strict SPF: DMARC fails, policy shown.
        let broken = text.replace("We lost the game.", "We won the game.");
        let v = verify_with(
            &dns("v=DMARC1; p=quarantine; aspf=s"),
            broken.as_bytes(),
            &hop,
        );
        assert_eq!(v.dmarc.result, "fail", "{:?}", v.dmarc);
        assert_eq!(v.dmarc.policy.as_deref(), Some("quarantine"));
        // No record: none.
        let v = verify_with(&format!("{keys}$DEFAULT NXDOMAIN\n"), text.as_bytes(), &hop);
        assert_eq!(v.dmarc.result, "none", "{:?}", v.dmarc);
        assert_eq!(v.dmarc.policy, None);
    }

    #[test]
    fn dnsbl_names_and_external_addresses() {
        assert_eq!(reversed("192.0.2.7".parse().unwrap()), "7.2.0.192");
        assert_eq!(
            reversed("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
        );
        for (ip, ext) in [
            ("192.0.2.7", true),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("127.0.0.1", false),
            ("169.254.1.1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::1", false),
            ("::ffff:10.0.0.1", false),
            ("2001:db8::1", true),
        ] {
            assert_eq!(is_external(ip.parse().unwrap()), ext, "{ip}");
        }
    }

    #[test]
    fn dnsbl_listing_refusal_and_rewriting_resolver() {
        let book = "7.2.0.192.listed.example. A 127.0.0.2\n\
                    7.2.0.192.refusing.example. A 127.255.255.254\n\
                    7.2.0.192.rewriting.example. A 198.51.100.1\n\
                    $DEFAULT NXDOMAIN\n";
        let stub = stub::Stub::start(stub::Mode::Replay(stub::Book::parse(book).unwrap())).unwrap();
        let v = Verifier::new(&Dns::Stub(stub.addr()), Duration::from_secs(5)).unwrap();
        let zones: Vec<String> = [
            "listed.example",
            "refusing.example",
            "rewriting.example",
            "clean.example",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = v.dnsbl(&[(Some(0), "192.0.2.7".parse().unwrap())], &zones);
        let got: Vec<&str> = r.iter().map(|c| c.result.as_str()).collect();
        assert_eq!(got, ["listed", "error", "error", "not_listed"], "{r:?}");
        assert_eq!(r[0].codes, ["127.0.0.2"]);
        assert!(r[1].reason.as_deref().unwrap().contains("refused"));
        assert!(
            r[2].reason
                .as_deref()
                .unwrap()
                .contains("rewrites NXDOMAIN")
        );
    }

    #[test]
    fn spf_domains_rfc7208_can_judge() {
        for (d, ok) in [
            ("example.com", true),
            ("example.com.", true),
            ("A2345678", false),
            ("[1.2.3.5]", false),
            ("a...example.com", false),
            ("", false),
            (&format!("{}.example.com", "a".repeat(64)), false),
            (&format!("{}.example.com", "a".repeat(63)), true),
        ] {
            assert_eq!(spf_domain_ok(d), ok, "{d}");
        }
    }

    #[test]
    fn signatures_keep_header_order_with_an_unreadable_one_between() {
        let (dns, msg) = rfc8463();
        let text = String::from_utf8(msg).unwrap();
        // A broken DKIM-Signature (no b=) between the two good ones.
        let broken = "DKIM-Signature: v=1; a=rsa-sha256; d=broken.example; s=x; h=from; bh=AAAA\n";
        let at = text.find("DKIM-Signature: v=1; a=rsa-sha256").unwrap();
        let mixed = format!("{}{broken}{}", &text[..at], &text[at..]);
        let v = verify_with(&dns, mixed.as_bytes(), &SmtpHop::default());
        let got: Vec<(&str, &str)> = v
            .dkim
            .iter()
            .map(|d| (d.domain.as_str(), d.result.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("football.example.com", "pass"),
                ("broken.example", "permerror"),
                ("football.example.com", "pass")
            ],
            "{:?}",
            v.dkim
        );
    }

    #[test]
    fn lf_becomes_crlf_once() {
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(crlf(b""), b"");
    }

    #[test]
    fn b_value_is_removed_and_bh_kept() {
        let v = b" v=1; a=rsa-sha256; bh=AAA=; h=from;\r\n b=abc\r\n def=;\r\n";
        assert_eq!(
            strip_b(v),
            b" v=1; a=rsa-sha256; bh=AAA=; h=from;\r\n b=;".to_vec()
        );
        assert_eq!(strip_b(b" d=x; b=abc\r\n"), b" d=x; b=".to_vec());
        let v = b"b=xyz; d=example.com";
        assert_eq!(strip_b(v), b"b=; d=example.com".to_vec());
    }
}
