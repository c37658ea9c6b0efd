//! Sending one message to its recipients along a [`Route`]: the shared
//! delivery step of mail-send (first attempt) and mail-queue (retries).
//!
//! Owns: what a route is ([`Route`], stored in queue entries, so it is
//! serialisable and holds no secrets), the envelope ([`Envelope`]), and the
//! [`Sender`], which connects (TLS, AUTH), keeps one open connection per
//! destination for many messages, and reports every recipient's fate
//! ([`RcptOutcome`]).
//!
//! Guarantee: [`Sender::deliver`] never returns an error and never panics:
//! every failure, including a lost connection or a DNS error, becomes a
//! per-recipient outcome. A recipient is [`Fate::Delivered`] only after the
//! server's final 2xx for it; when the dialogue breaks after DATA and before
//! that reply, the recipient is [`Fate::Temporary`] (sending again may
//! duplicate, never lose).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Account, Config};
use crate::exit::{Error, Kind, Result};
use crate::smtp::{Client, Protocol, Status};
use crate::tls::{self, Stream, TlsMode, TlsOptions};
use crate::transcript::Transcript;

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
            helo: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_string()),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Delivers messages, keeping one connection open per destination.
pub struct Sender {
    config: Config,
    opts: SendOptions,
    transcript: Transcript,
    conns: HashMap<String, Client<Stream>>,
}

impl Sender {
    /// A sender reading accounts from `config`.
    pub fn new(config: Config, opts: SendOptions, transcript: Transcript) -> Sender {
        Sender {
            config,
            opts,
            transcript,
            conns: HashMap::new(),
        }
    }

    /// Deliver `msg` to every recipient of `env` along `route`; one outcome
    /// per recipient, in the order of `env.rcpts`. Never fails as a whole.
    pub fn deliver(&mut self, route: &Route, env: &Envelope, msg: &[u8]) -> Vec<RcptOutcome> {
        match self.try_deliver(route, env, msg) {
            Ok(v) => v,
            Err(e) => all_failed(env, &e, None),
        }
    }

    fn try_deliver(
        &mut self,
        route: &Route,
        env: &Envelope,
        msg: &[u8],
    ) -> Result<Vec<RcptOutcome>> {
        let (key, server) = match route {
            Route::Account { name } => (
                format!("account:{name}"),
                self.config.account(name)?.clone(),
            ),
            Route::Server { server } => (
                format!(
                    "server:{}:{}",
                    server.host.as_deref().unwrap_or(""),
                    server.port.unwrap_or(0)
                ),
                (**server).clone(),
            ),
            Route::Lmtp { target } => {
                let (host, port) = split_host_port(target, 24)?;
                let server = Account {
                    protocol: Some("lmtp".into()),
                    host: Some(host),
                    port: Some(port),
                    tls: Some(TlsMode::None),
                    ..Account::default()
                };
                (format!("lmtp:{target}"), server)
            }
            Route::Direct { .. } => {
                return Err(Error::new(
                    Kind::Temporary,
                    "direct MX delivery",
                    "not implemented yet",
                ));
            }
        };
        let host = server.host.clone().unwrap_or_default();
        if !self.conns.contains_key(&key) {
            let client = self.connect(&server)?;
            self.conns.insert(key.clone(), client);
        }
        let client = self.conns.get_mut(&key).expect("inserted above");
        let rcpts: Vec<&str> = env.rcpts.iter().map(String::as_str).collect();
        let outcome = match client.send(&env.from, &rcpts, msg) {
            Ok(o) => o,
            Err(e) => {
                // The connection is in an unknown state: drop it.
                self.conns.remove(&key);
                return Ok(all_failed(env, &e, Some(&host)));
            }
        };
        Ok(outcome
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
            .collect())
    }

    fn connect(&mut self, server: &Account) -> Result<Client<Stream>> {
        let protocol = match server.protocol.as_deref() {
            Some("lmtp") => Protocol::Lmtp,
            _ => Protocol::Smtp,
        };
        let host = server
            .host
            .clone()
            .ok_or_else(|| Error::new(Kind::Config, "choosing the server", "no host given"))?;
        let mode = server.tls.unwrap_or(TlsMode::Starttls);
        let port = server.port.unwrap_or(match (protocol, mode) {
            (Protocol::Lmtp, _) => 24,
            (_, TlsMode::Implicit) => 465,
            _ => 587,
        });
        let timeout = server
            .timeout
            .map_or(self.opts.timeout, Duration::from_secs);
        let tls_opts = TlsOptions {
            ca_file: server.tls_ca_file.clone(),
            fingerprint: server
                .tls_fingerprint
                .as_deref()
                .map(tls::parse_fingerprint)
                .transpose()?,
            opportunistic: false,
        };
        let stream = tls::open(&host, port, mode, &tls_opts, timeout)?;
        let mut client = Client::new(stream, protocol);
        client.greeting()?;
        client.hello(&self.opts.helo)?;
        if mode == TlsMode::Starttls {
            // STARTTLS and AUTH come with the mail-send work.
            return Err(Error::new(
                Kind::Temporary,
                format!("{host}: STARTTLS"),
                "not implemented yet",
            ));
        }
        let _ = &mut self.transcript;
        Ok(client)
    }

    /// Say QUIT on every open connection.
    pub fn finish(&mut self) {
        for (_, mut c) in self.conns.drain() {
            let _ = c.quit();
        }
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
