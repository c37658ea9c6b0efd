//! DNS for direct MX delivery: a recipient domain's mail exchangers in the
//! order to try them, and the addresses of a host, through hickory-resolver
//! (the system's resolv.conf, or one server named by `--resolver IP[:PORT]`).
//!
//! Guarantee: every answer is classified the way RFC 5321 and RFC 7505 ask,
//! so a message is never bounced for a failure that may pass:
//!
//! - MX records: hosts by preference (lowest first; ties keep answer order).
//! - No MX but the name exists: the domain itself (the implicit MX).
//! - Null MX (`MX 0 .`, RFC 7505): the domain accepts no mail, a permanent
//!   failure ([`Kind::Unavailable`]).
//! - NXDOMAIN: permanent ([`Kind::NoUser`]: the address cannot exist).
//! - SERVFAIL, REFUSED, timeouts, no answer at all: [`Kind::Temporary`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver as HResolver, TokioResolver};

use crate::exit::{Context, Error, Kind, Origin, Result};

/// Where to deliver mail for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// MX hosts, in the order to try them: (preference, host name).
    Hosts(Vec<(u16, String)>),
    /// No MX record: the domain itself is the mail host.
    Implicit(String),
}

/// A resolver; one per run (it caches).
pub struct Resolver {
    rt: tokio::runtime::Runtime,
    inner: TokioResolver,
    /// Which server is asked (for `--explain` and messages).
    pub server: String,
}

/// Parse `IP[:PORT]` / `[IPv6]:PORT` (port 53 by default).
pub fn parse_server(s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(Error::new(
        Kind::Usage,
        format!("resolver {s:?}"),
        "expected IP[:PORT] (e.g. 127.0.0.1:5353)",
    ))
}

impl Resolver {
    /// A resolver asking `server` (`IP[:PORT]`), else the system's.
    pub fn new(server: Option<&str>, timeout: Duration) -> Result<Resolver> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the DNS resolver")?;
        let provider = TokioRuntimeProvider::default();
        let (builder, name) = match server {
            Some(s) => {
                let addr = parse_server(s)?;
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
                (
                    HResolver::builder_with_config(config, provider),
                    addr.to_string(),
                )
            }
            None => (
                HResolver::builder(provider).map_err(|e| {
                    Error::new(Kind::Temporary, "reading the system DNS configuration", e)
                })?,
                "the system resolver".to_string(),
            ),
        };
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout.min(Duration::from_secs(10));
        opts.attempts = 2;
        // Names are always absolute here: never try search domains.
        opts.ndots = 0;
        let inner = {
            let _guard = rt.enter();
            builder
                .with_options(opts)
                .build()
                .map_err(|e| Error::new(Kind::Temporary, "starting the DNS resolver", e))?
        };
        Ok(Resolver {
            rt,
            inner,
            server: name,
        })
    }

    /// The mail hosts of `domain` (see the module docs for the rules).
    pub fn mx(&self, domain: &str) -> Result<MxAnswer> {
        let ctx = format!("looking up the MX of {domain}");
        let fqdn = absolute(domain);
        match self.rt.block_on(self.inner.mx_lookup(fqdn.as_str())) {
            Ok(lookup) => {
                let mut hosts: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((
                            mx.preference,
                            mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                        )),
                        _ => None,
                    })
                    .collect();
                if hosts.is_empty() {
                    // Only a CNAME or other records: treat as no MX.
                    return self.implicit(domain, &ctx);
                }
                if hosts.len() == 1 && hosts[0].1.is_empty() {
                    return Err(Error::new(
                        Kind::Unavailable,
                        ctx,
                        format!("{domain} accepts no mail (null MX, RFC 7505)"),
                    ));
                }
                hosts.retain(|(_, h)| !h.is_empty());
                hosts.sort_by_key(|(p, _)| *p);
                Ok(MxAnswer::Hosts(hosts))
            }
            Err(e) if e.is_nx_domain() => Err(Error::new(
                Kind::NoUser,
                ctx,
                format!("the domain {domain} does not exist (NXDOMAIN)"),
            )),
            Err(e) if e.is_no_records_found() => self.implicit(domain, &ctx),
            Err(e) => Err(temporary(ctx, &e)),
        }
    }

    fn implicit(&self, domain: &str, ctx: &str) -> Result<MxAnswer> {
        // RFC 5321 5.1: the domain itself, when it has an address.
        match self.addresses(domain) {
            Ok(_) => Ok(MxAnswer::Implicit(domain.to_string())),
            Err(e) if e.kind() == Kind::Temporary => Err(e.within(ctx.to_string())),
            Err(_) => Err(Error::new(
                Kind::Unavailable,
                ctx.to_string(),
                format!("{domain} has neither MX nor address records"),
            )),
        }
    }

    /// The addresses of `host` (AAAA then A; an IP literal as it is).
    pub fn addresses(&self, host: &str) -> Result<Vec<IpAddr>> {
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            return Ok(vec![ip]);
        }
        let ctx = format!("looking up the address of {host}");
        let fqdn = absolute(host);
        let mut out = Vec::new();
        let mut last = None;
        for rt in [RecordType::AAAA, RecordType::A] {
            match self.rt.block_on(self.inner.lookup(fqdn.as_str(), rt)) {
                Ok(l) => out.extend(l.answers().iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) if e.is_nx_domain() => {
                    return Err(Error::new(
                        Kind::NoUser,
                        ctx,
                        format!("{host} does not exist (NXDOMAIN)"),
                    ));
                }
                Err(e) if e.is_no_records_found() => {}
                Err(e) => last = Some(e),
            }
        }
        if out.is_empty() {
            return Err(match last {
                Some(e) => temporary(ctx, &e),
                None => Error::new(Kind::Unavailable, ctx, format!("{host} has no address")),
            });
        }
        Ok(out)
    }
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn temporary(ctx: String, e: &NetError) -> Error {
    // SERVFAIL, a timeout, an unreachable resolver: the network's doing.
    Error::new(Kind::Temporary, ctx, e).from_origin(Origin::Network)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_parse() {
        assert_eq!(
            parse_server("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(parse_server("::1").unwrap(), "[::1]:53".parse().unwrap());
        assert_eq!(parse_server("dns.example").unwrap_err().kind(), Kind::Usage);
    }

    #[test]
    fn unreachable_server_is_temporary() {
        // Nothing answers DNS on loopback port 1.
        let r = Resolver::new(Some("127.0.0.1:1"), Duration::from_secs(1)).unwrap();
        let e = r.mx("example.test").unwrap_err();
        assert_eq!(e.kind(), Kind::Temporary, "{e}");
    }
}
