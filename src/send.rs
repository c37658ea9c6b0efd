//! Sending one message to its recipients along a [`Route`]: the shared
//! delivery step of mail-send (first attempt) and mail-queue (retries).
//!
//! Owns: what a route is ([`Route`], stored in queue entries, so it is
//! serialisable and holds no secrets), the envelope ([`Envelope`]), and the
//! [`Sender`], which connects (TLS policy, STARTTLS, AUTH), keeps one open
//! connection per destination for many messages, resolves MX hosts for
//! direct delivery (recipients grouped per domain, MX hosts by preference,
//! each address in turn) and reports every recipient's fate
//! ([`RcptOutcome`]).
//!
//! Guarantees:
//!
//! - [`Sender::deliver`] never returns an error and never panics: every
//!   failure, including a lost connection or a DNS error, becomes a
//!   per-recipient outcome. A recipient is [`Fate::Delivered`] only after
//!   the server's final 2xx for it; when the dialogue breaks after DATA and
//!   before that reply, the recipient is [`Fate::Temporary`] (sending again
//!   may duplicate, never lose).
//! - **TLS as the route says, never less.** An account's `starttls` is
//!   required: a server that does not offer it gets no MAIL and no password.
//!   Only direct MX delivery is opportunistic (RFC 7435: STARTTLS when
//!   offered, any certificate, plain text after a failed handshake).
//! - A kept connection that the server closed while idle is replaced once,
//!   and only when the message had not been written yet (no duplicate).
//! - On direct delivery a recipient moves to the next MX (or address) only
//!   while its failure is temporary; a 5xx is final.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Account, AuthMethod, Config, Service};
use crate::exit::{Error, Kind, Result};
use crate::proto::dns;
use crate::proto::pace::Paced;
use crate::proto::sasl::Mechanism;
use crate::proto::smtp::{Client, MailParams, Outcome, Protocol, SharedTranscript, Stage, Status};
use crate::proto::tls::{self, Stream, TlsMode, TlsOptions};
use crate::proto::transcript::Transcript;

/// Where a message goes. Stored in queue entries: accounts are referred to
/// by name and re-read from the config at each attempt (a fixed password
/// command then takes effect); one-off servers keep their settings, which
/// never include a password (only `password_command`/`password_env`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "route", rename_all = "lowercase")]
pub enum Route {
    /// A named `[account.NAME]` from the config file.
    Account {
        /// The account name.
        name: String,
    },
    /// A server given by flags (`--host`, `--port`, `--tls`, `--user`, ...).
    Server {
        /// The settings, as an account block would hold them.
        server: Box<Account>,
    },
    /// Straight to each recipient domain's MX hosts.
    Direct {
        /// DNS server `IP[:PORT]` (None: the system resolver).
        resolver: Option<String>,
        /// SMTP port on the MX hosts (None: 25).
        mx_port: Option<u16>,
    },
    /// An LMTP server: `HOST:PORT` or a socket path.
    Lmtp {
        /// The target.
        target: String,
    },
}

/// DSN parameters (RFC 3461), passed on when the server offers DSN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dsn {
    /// `RET=FULL|HDRS`.
    pub ret: Option<String>,
    /// `ENVID=`.
    pub envid: Option<String>,
    /// `NOTIFY=` for every recipient (e.g. `SUCCESS,FAILURE`).
    pub notify: Option<String>,
}

/// The envelope: sender (empty for the null sender) and recipients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// MAIL FROM; empty for `<>`.
    pub from: String,
    /// RCPT TO addresses.
    pub rcpts: Vec<String>,
    /// DSN parameters.
    #[serde(default)]
    pub dsn: Dsn,
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fate {
    /// The server accepted it with a final 2xx.
    Delivered,
    /// May succeed later: keep (queue) it.
    Temporary,
    /// Refused for good; `code` is the sysexits code of the refusal.
    Permanent {
        /// sysexits code ([`Kind::code`]).
        code: i32,
    },
}

/// One recipient's outcome, with the server's reply or our own reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcptOutcome {
    /// The recipient address.
    pub rcpt: String,
    /// What happened.
    pub fate: Fate,
    /// The server's reply (`250 2.0.0 Ok: queued as X`) or our reason.
    pub reply: String,
    /// The host that answered, when one did.
    pub host: Option<String>,
}

impl RcptOutcome {
    /// The failure's kind; `None` when delivered.
    pub fn kind(&self) -> Option<Kind> {
        match self.fate {
            Fate::Delivered => None,
            Fate::Temporary => Some(Kind::Temporary),
            Fate::Permanent { code } => Some(kind_of_code(code)),
        }
    }
}

fn kind_of_code(code: i32) -> Kind {
    match code {
        crate::exit::NOUSER => Kind::NoUser,
        crate::exit::DATAERR => Kind::Data,
        crate::exit::CONFIG => Kind::Config,
        crate::exit::USAGE => Kind::Usage,
        crate::exit::NOPERM => Kind::NoPerm,
        _ => Kind::Unavailable,
    }
}

/// Settings of a [`Sender`] that do not come from the route.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// The name said in EHLO/LHLO.
    pub helo: String,
    /// Connect and read timeout.
    pub timeout: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            helo: crate::sysnames::hostname().to_string(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// One open connection: TCP (plain or TLS) or an LMTP unix socket.
enum Conn {
    Net(Client<Stream>),
    Unix(Client<Paced<UnixStream>>),
}

impl Conn {
    fn send(&mut self, env: &Envelope, rcpts: &[&str], msg: &[u8]) -> Result<Outcome> {
        let p = MailParams {
            ret: env.dsn.ret.as_deref(),
            envid: env.dsn.envid.as_deref(),
            notify: env.dsn.notify.as_deref(),
        };
        match self {
            Conn::Net(c) => c.send_with(&env.from, rcpts, msg, &p),
            Conn::Unix(c) => c.send_with(&env.from, rcpts, msg, &p),
        }
    }

    fn data_was_sent(&self) -> bool {
        match self {
            Conn::Net(c) => c.data_was_sent(),
            Conn::Unix(c) => c.data_was_sent(),
        }
    }

    fn quit(&mut self) {
        let _ = match self {
            Conn::Net(c) => c.quit(),
            Conn::Unix(c) => c.quit(),
        };
    }
}

/// How a server's TLS is handled for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// As the account says (`starttls` required, `implicit`, `none`).
    Account,
    /// Direct MX delivery: STARTTLS when offered, any certificate (RFC 7435).
    Opportunistic,
    /// Direct MX delivery after a failed TLS handshake with this host: plain
    /// text, as Postfix falls back (the alternative is not delivering).
    PlainFallback,
}

/// Delivers messages, keeping one connection open per destination.
pub struct Sender {
    config: Config,
    opts: SendOptions,
    transcript: Option<SharedTranscript>,
    conns: HashMap<String, Conn>,
    resolvers: HashMap<Option<String>, dns::Resolver>,
    tls_failed: bool,
}

impl Sender {
    /// A sender reading accounts from `config`.
    pub fn new(config: Config, opts: SendOptions, transcript: Transcript) -> Sender {
        let transcript = transcript.is_on().then(|| Arc::new(Mutex::new(transcript)));
        Sender {
            config,
            opts,
            transcript,
            conns: HashMap::new(),
            resolvers: HashMap::new(),
            tls_failed: false,
        }
    }

    fn note(&self, text: &str) {
        if let Some(t) = &self.transcript
            && let Ok(mut t) = t.lock()
        {
            t.note(text);
        }
    }

    /// Deliver `msg` to every recipient of `env` along `route`; one outcome
    /// per recipient, in the order of `env.rcpts`. Never fails as a whole.
    pub fn deliver(&mut self, route: &Route, env: &Envelope, msg: &[u8]) -> Vec<RcptOutcome> {
        if env.rcpts.is_empty() {
            return Vec::new();
        }
        match self.try_deliver(route, env, msg) {
            Ok(v) => v,
            Err(e) => all_failed(env, &e, None),
        }
    }

    /// The settings of the server `route` names (not for direct routes),
    /// and the name used for its password.
    pub fn server_for(&self, route: &Route) -> Result<(String, Account)> {
        match route {
            Route::Account { name } => Ok((name.clone(), self.config.account(name)?.clone())),
            Route::Server { server } => Ok(("command line".to_string(), (**server).clone())),
            Route::Lmtp { target } => {
                let server = if target.starts_with('/') {
                    Account {
                        protocol: Some(Service::Lmtp),
                        host: Some(target.clone()),
                        tls: Some(TlsMode::None),
                        ..Account::default()
                    }
                } else {
                    let (host, port) = split_host_port(target, 24)?;
                    Account {
                        protocol: Some(Service::Lmtp),
                        host: Some(host),
                        port: Some(port),
                        tls: Some(TlsMode::None),
                        ..Account::default()
                    }
                };
                Ok(("lmtp".to_string(), server))
            }
            Route::Direct { .. } => Err(Error::new(
                Kind::Usage,
                "choosing the server",
                "a direct route has no single server",
            )),
        }
    }

    fn try_deliver(
        &mut self,
        route: &Route,
        env: &Envelope,
        msg: &[u8],
    ) -> Result<Vec<RcptOutcome>> {
        if let Route::Direct { resolver, mx_port } = route {
            return Ok(self.deliver_direct(resolver.as_deref(), *mx_port, env, msg));
        }
        let (name, server) = self.server_for(route)?;
        let key = format!(
            "{}:{}:{}",
            route_tag(route),
            server.host.as_deref().unwrap_or(""),
            server.port.unwrap_or(0)
        );
        let rcpts: Vec<&str> = env.rcpts.iter().map(String::as_str).collect();
        Ok(self.deliver_to(&key, &name, &server, Policy::Account, env, &rcpts, msg))
    }

    /// Send to one server; every recipient in `rcpts` gets an outcome.
    #[allow(clippy::too_many_arguments)]
    fn deliver_to(
        &mut self,
        key: &str,
        name: &str,
        server: &Account,
        policy: Policy,
        env: &Envelope,
        rcpts: &[&str],
        msg: &[u8],
    ) -> Vec<RcptOutcome> {
        let host = server.host.clone().unwrap_or_default();
        let fail = |e: &Error| -> Vec<RcptOutcome> {
            let sub = Envelope {
                rcpts: rcpts.iter().map(|r| r.to_string()).collect(),
                ..Envelope::default()
            };
            all_failed(&sub, e, Some(&host))
        };
        let mut reused = self.conns.contains_key(key);
        let outcome = loop {
            if !self.conns.contains_key(key) {
                match self.connect_with_fallback(name, server, policy) {
                    Ok(c) => {
                        self.conns.insert(key.to_string(), c);
                    }
                    Err(e) => return fail(&e),
                }
            }
            let Some(conn) = self.conns.get_mut(key) else {
                return fail(&Error::new(
                    Kind::Temporary,
                    "connecting",
                    "lost connection",
                ));
            };
            match conn.send(env, rcpts, msg) {
                // A kept connection the server timed out says 421 and closes.
                Ok(o) if reused && o.recipients.iter().all(|r| {
                    matches!(&r.status, Status::Temporary(Stage::Mail, rep) if rep.code == 421)
                }) => {
                    self.conns.remove(key);
                    reused = false;
                    continue;
                }
                Ok(o) => break o,
                Err(e) => {
                    // The connection is in an unknown state: drop it.
                    let data_sent = conn.data_was_sent();
                    self.conns.remove(key);
                    // A kept connection the server closed while idle fails
                    // before the message went out: one fresh try cannot
                    // duplicate anything.
                    if reused && !data_sent && e.kind() == Kind::Temporary {
                        self.note(&format!("{host}: reused connection failed ({e}); reconnecting"));
                        reused = false;
                        continue;
                    }
                    return fail(&e);
                }
            }
        };
        outcome
            .recipients
            .into_iter()
            .map(|r| {
                let (fate, reply) = match &r.status {
                    Status::Accepted(rep) => (Fate::Delivered, rep.text()),
                    Status::Temporary(_, rep) => (Fate::Temporary, rep.text()),
                    Status::Permanent(stage, rep) => (
                        Fate::Permanent {
                            code: rep.kind(*stage).code(),
                        },
                        rep.text(),
                    ),
                };
                RcptOutcome {
                    rcpt: r.rcpt,
                    fate,
                    reply,
                    host: Some(host.clone()),
                }
            })
            .collect()
    }

    fn resolver(&mut self, server: Option<&str>) -> Result<&dns::Resolver> {
        let key = server.map(str::to_string);
        if !self.resolvers.contains_key(&key) {
            let r = dns::Resolver::new(server, self.opts.timeout)?;
            self.resolvers.insert(key.clone(), r);
        }
        self.resolvers
            .get(&key)
            .ok_or_else(|| Error::new(Kind::Temporary, "DNS", "no resolver"))
    }

    /// The hosts to try for `domain`, in order, each with its addresses
    /// (an address lookup failure leaves a host with none: it is skipped).
    pub fn mx_plan(
        &mut self,
        resolver: Option<&str>,
        domain: &str,
    ) -> Result<Vec<(String, Result<Vec<IpAddr>>)>> {
        // An address literal (`user@[192.0.2.1]`) names the host itself.
        if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = lit.strip_prefix("IPv6:").unwrap_or(lit);
            let addr = ip.parse::<IpAddr>().map(|a| vec![a]).map_err(|_| {
                Error::new(
                    Kind::Unavailable,
                    format!("address literal {domain}"),
                    "not an IP address",
                )
            });
            return Ok(vec![(domain.to_string(), addr)]);
        }
        let r = self.resolver(resolver)?;
        let hosts = match r.mx(domain)? {
            dns::MxAnswer::Hosts(h) => h.into_iter().map(|(_, h)| h).collect(),
            dns::MxAnswer::Implicit(d) => vec![d],
        };
        Ok(hosts
            .into_iter()
            .map(|h| {
                let a = r.addresses(&h);
                (h, a)
            })
            .collect())
    }

    fn deliver_direct(
        &mut self,
        resolver: Option<&str>,
        mx_port: Option<u16>,
        env: &Envelope,
        msg: &[u8],
    ) -> Vec<RcptOutcome> {
        let port = mx_port.unwrap_or(25);
        // Group recipients per domain, keeping first-seen order.
        let mut domains: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, r) in env.rcpts.iter().enumerate() {
            let d = r
                .rsplit_once('@')
                .map_or("", |(_, d)| d)
                .to_ascii_lowercase();
            match domains.iter_mut().find(|(x, _)| *x == d) {
                Some((_, v)) => v.push(i),
                None => domains.push((d, vec![i])),
            }
        }
        let mut results: Vec<Option<RcptOutcome>> = vec![None; env.rcpts.len()];
        for (domain, idx) in domains {
            let sub = Envelope {
                rcpts: idx.iter().map(|&i| env.rcpts[i].clone()).collect(),
                ..env.clone()
            };
            let outcomes = self.deliver_domain(resolver, port, &domain, &sub, msg);
            for (k, o) in idx.into_iter().zip(outcomes) {
                results[k] = Some(o);
            }
        }
        results
            .into_iter()
            .zip(&env.rcpts)
            .map(|(o, r)| {
                o.unwrap_or_else(|| RcptOutcome {
                    rcpt: r.clone(),
                    fate: Fate::Temporary,
                    reply: "not attempted".into(),
                    host: None,
                })
            })
            .collect()
    }

    /// One domain: its MX hosts in order, each address in turn, until no
    /// recipient is left with a temporary failure.
    fn deliver_domain(
        &mut self,
        resolver: Option<&str>,
        port: u16,
        domain: &str,
        env: &Envelope,
        msg: &[u8],
    ) -> Vec<RcptOutcome> {
        if domain.is_empty() {
            return all_failed(
                env,
                &Error::new(Kind::Usage, "direct delivery", "recipient without a domain"),
                None,
            );
        }
        let plan = match self.mx_plan(resolver, domain) {
            Ok(p) => p,
            Err(e) => return all_failed(env, &e, None),
        };
        let mut out: Vec<RcptOutcome> = all_failed(
            env,
            &Error::new(
                Kind::Temporary,
                format!("delivering to {domain}"),
                "no MX host could be reached",
            ),
            None,
        );
        for (host, addrs) in plan {
            let addrs = match addrs {
                Ok(a) => a,
                Err(e) => {
                    self.note(&format!("skipping MX {host}: {e}"));
                    for o in out.iter_mut().filter(|o| o.fate == Fate::Temporary) {
                        o.reply = e.to_string();
                    }
                    continue;
                }
            };
            for ip in addrs {
                let pending: Vec<usize> = (0..out.len())
                    .filter(|&i| out[i].fate == Fate::Temporary)
                    .collect();
                if pending.is_empty() {
                    return out;
                }
                let rcpts: Vec<&str> = pending.iter().map(|&i| env.rcpts[i].as_str()).collect();
                let server = Account {
                    host: Some(ip.to_string()),
                    port: Some(port),
                    tls: Some(TlsMode::Starttls),
                    ..Account::default()
                };
                self.note(&format!(
                    "trying MX {host} ({})",
                    tls::display_host_port(&ip.to_string(), port)
                ));
                let key = format!("mx:{}", tls::display_host_port(&ip.to_string(), port));
                let got = self.deliver_to(
                    &key,
                    &host,
                    &server,
                    Policy::Opportunistic,
                    env,
                    &rcpts,
                    msg,
                );
                for (&i, mut o) in pending.iter().zip(got) {
                    o.host = Some(host.clone());
                    out[i] = o;
                }
            }
        }
        out
    }

    /// [`Sender::connect`]; for direct MX delivery, a failed TLS handshake
    /// is followed by one plain-text attempt (RFC 7435: opportunistic TLS
    /// must not make delivery worse than plain text).
    fn connect_with_fallback(
        &mut self,
        name: &str,
        server: &Account,
        policy: Policy,
    ) -> Result<Conn> {
        self.tls_failed = false;
        match self.connect(name, server, policy) {
            Err(e) if policy == Policy::Opportunistic && self.tls_failed => {
                self.note(&format!("TLS failed ({e}); trying again in plain text"));
                self.connect(name, server, Policy::PlainFallback)
            }
            r => r,
        }
    }

    fn connect(&mut self, name: &str, server: &Account, policy: Policy) -> Result<Conn> {
        let protocol = match server.protocol {
            Some(Service::Lmtp) => Protocol::Lmtp,
            _ => Protocol::Smtp,
        };
        let host = server
            .host
            .clone()
            .ok_or_else(|| Error::new(Kind::Config, "choosing the server", "no host given"))?;
        let helo = server
            .helo
            .clone()
            .unwrap_or_else(|| self.opts.helo.clone());
        let timeout = server
            .timeout
            .map_or(self.opts.timeout, Duration::from_secs);
        if host.starts_with('/') {
            let ctx = format!("connecting to {host}");
            let s = UnixStream::connect(&host).map_err(|e| Error::io(&*ctx, &e))?;
            s.set_read_timeout(Some(timeout))
                .and_then(|()| s.set_write_timeout(Some(timeout)))
                .map_err(|e| Error::io(&*ctx, &e))?;
            let mut c = Client::new(Paced::new(s, timeout), protocol);
            c.set_transcript(self.transcript.clone());
            c.greeting()?;
            c.hello(&helo)?;
            return Ok(Conn::Unix(c));
        }
        // The password first: a password command that hangs or fails must
        // not hold a connection open meanwhile (it has its own deadline).
        let login = match server.user.as_deref().filter(|u| !u.is_empty()) {
            Some(user) => {
                let secret = server.password_within(name, timeout)?.ok_or_else(|| {
                    Error::new(
                        Kind::Config,
                        format!("account {name}"),
                        "user is set but neither password_command nor password_env",
                    )
                })?;
                Some((user, secret))
            }
            None => None,
        };
        let mode = server.tls.unwrap_or(TlsMode::Starttls);
        let port = server.port.unwrap_or(match (protocol, mode) {
            (Protocol::Lmtp, _) => 24,
            (_, TlsMode::Implicit) => 465,
            _ => 587,
        });
        let tls_opts = TlsOptions {
            opportunistic: policy == Policy::Opportunistic,
            ..server.tls_options()?
        };
        let shown = tls::display_host_port(&host, port);
        let stream = tls::open(&host, port, mode, &tls_opts, timeout)?;
        if stream.is_tls() {
            self.note(&format!("{shown}: TLS established"));
        }
        let mut client = Client::new(stream, protocol);
        client.set_transcript(self.transcript.clone());
        let within = |e: Error| e.within(shown.clone());
        client.greeting().map_err(within)?;
        client.hello(&helo).map_err(within)?;
        if mode == TlsMode::Starttls {
            let offered = client.capabilities().starttls;
            if policy == Policy::Account || (offered && policy == Policy::Opportunistic) {
                client = match client.starttls(&host, &tls_opts, &helo) {
                    Ok(c) => c,
                    Err(e) => {
                        self.tls_failed = offered;
                        return Err(within(e));
                    }
                };
            } else {
                self.note(&format!(
                    "{shown}: no STARTTLS offered; sending in plain text (opportunistic)"
                ));
            }
        }
        if let Some((user, secret)) = login {
            let configured = server.auth.map(AuthMethod::mechanism).transpose()?;
            let mech =
                Mechanism::choose(configured, &client.capabilities().auth).map_err(within)?;
            client.auth(mech, user, &secret).map_err(within)?;
        }
        Ok(Conn::Net(client))
    }

    /// Say QUIT on every open connection.
    pub fn finish(&mut self) {
        for (_, mut c) in self.conns.drain() {
            c.quit();
        }
    }
}

fn route_tag(route: &Route) -> String {
    match route {
        Route::Account { name } => format!("account:{name}"),
        Route::Server { .. } => "server".into(),
        Route::Lmtp { .. } => "lmtp".into(),
        Route::Direct { .. } => "direct".into(),
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Every recipient failed with `err` (temporary unless the error is
/// permanent by kind).
pub fn all_failed(env: &Envelope, err: &Error, host: Option<&str>) -> Vec<RcptOutcome> {
    let fate = if err.kind().is_temporary() {
        Fate::Temporary
    } else {
        Fate::Permanent {
            code: err.kind().code(),
        }
    };
    env.rcpts
        .iter()
        .map(|r| RcptOutcome {
            rcpt: r.clone(),
            fate: fate.clone(),
            reply: err.to_string(),
            host: host.map(str::to_string),
        })
        .collect()
}

/// Split `host:port` / `[v6]:port` / `host` (default port).
pub fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16)> {
    let bad = || {
        Error::new(
            Kind::Usage,
            format!("address {s:?}"),
            "expected HOST[:PORT]",
        )
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_string(), p.parse().map_err(|_| bad())?)),
        _ if s.is_empty() => Err(bad()),
        _ => Ok((s.to_string(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("a.b:25", 1).unwrap(), ("a.b".into(), 25));
        assert_eq!(split_host_port("a.b", 24).unwrap(), ("a.b".into(), 24));
        assert_eq!(
            split_host_port("[::1]:2525", 1).unwrap(),
            ("::1".into(), 2525)
        );
        assert_eq!(split_host_port("::1", 24).unwrap(), ("::1".into(), 24));
        assert!(split_host_port("a:b", 1).is_err());
        assert!(split_host_port("", 1).is_err());
    }

    #[test]
    fn routes_serialise_without_secrets() {
        let r = Route::Server {
            server: Box::new(Account {
                host: Some("h".into()),
                password_command: Some("pass show x".into()),
                ..Account::default()
            }),
        };
        let j = serde_json::to_string(&r).unwrap();
        assert!(j.contains("\"route\":\"server\""), "{j}");
        let back: Route = serde_json::from_str(&j).unwrap();
        assert_eq!(back, r);
    }
}
