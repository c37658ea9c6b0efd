//! mail-recv: the receiving side, an SMTP/LMTP server that answers 250
//! only after the message is stored. One session on stdin/stdout (inetd,
//! tcpserver, systemd `Accept=yes`) or its own listener (`--listen`).
//!
//! This face reads the command line and `[recv]` once into [`Options`]
//! (the command line wins over the config), checks the combinations that
//! make no sense (exit 64), and runs [`crate::proto::smtp::server::serve`]
//! with [`crate::recv::backend::Receiver`]. Everything that decides about
//! a recipient or a message is in [`crate::recv`].

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};

use crate::config::Config;
use crate::exit::{Error, Kind, Result};
use crate::proto::smtp::server::{self, BareLf, Limits, Peer, Protocol, Summary};
use crate::proto::stdio::Duplex;
use crate::proto::tls::{ServerStream, ServerTls};
use crate::queue::Spool;
use crate::recv::backend::{self, Local, Receiver, Setup};
use crate::recv::checkpassword::Checkpassword;
use crate::recv::listen;
use crate::recv::policy::Policy;
use crate::recv::template::Template;
use crate::send::Route;
use crate::store::{self, Locking};
use crate::tools::Ctx;

/// Default `--max-sessions`.
const MAX_SESSIONS: usize = 20;
/// Default `--mda-timeout` (seconds), as mail-fetch's.
const MDA_TIMEOUT: u64 = 600;
/// How long a checkpassword program may take.
const CHECKPASSWORD_TIMEOUT: Duration = Duration::from_secs(30);

/// The clap definition of mail-recv.
pub fn command() -> Command {
    let value = |id: &'static str, help: &'static str| Arg::new(id).long(id).help(help);
    let flag = |id: &'static str, help: &'static str| {
        Arg::new(id).long(id).action(ArgAction::SetTrue).help(help)
    };
    Command::new("mail-recv")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Receive mail over SMTP or LMTP and answer 250 only once it is stored")
        .long_about(
            "Receive mail for --domain over SMTP (or LMTP with --lmtp): one session on \
             stdin/stdout (inetd, tcpserver, systemd Accept=yes) or its own --listen sockets. \
             Each message is stored in the --deliver TEMPLATE Maildir or mbox, handed to \
             COMMAND, or queued (--queue) before the client hears 250. Never an open relay.",
        )
        .after_help(
            "Examples:\n  tcpserver 0 25 mail-recv --domain example.org --deliver '/srv/mail/{domain}/{local}/'\n  mail-recv --domain example.org --listen 0.0.0.0:25 -- /usr/bin/mail-deliver /var/mail/all\n  mail-recv --domain example.org --explain 'a%b@example.org'",
        )
        .arg(
            value("domain", "A domain received for (repeatable; several values after one --domain)")
                .value_name("DOMAIN")
                .num_args(1..)
                .action(ArgAction::Append),
        )
        .arg(value(
            "deliver",
            "Store in this Maildir (ends in /) or mbox; {local} and {domain} are filled from the recipient",
        ).value_name("TEMPLATE"))
        .arg(flag(
            "queue",
            "Queue mail of authenticated clients for other domains (and, without --deliver or COMMAND, all mail) for mail-queue",
        ))
        .arg(flag("lmtp", "Speak LMTP (RFC 2033): LHLO, one reply per recipient"))
        .arg(
            value("listen", "Listen on ADDR:PORT, a session per connection (repeatable)")
                .value_name("ADDR:PORT")
                .action(ArgAction::Append),
        )
        .arg(
            value("listen-tls", "Listen on ADDR:PORT with implicit TLS (port 465; repeatable)")
                .value_name("ADDR:PORT")
                .action(ArgAction::Append),
        )
        .arg(
            value("tls-cert", "Server certificate chain (PEM): offers STARTTLS")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf)),
        )
        .arg(
            value("tls-key", "Private key of --tls-cert (PEM)")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf)),
        )
        .arg(
            value("max-size", "Largest message in octets, announced as SIZE [default: 36700160]")
                .value_name("N")
                .value_parser(value_parser!(u64)),
        )
        .arg(
            value("max-sessions", "Concurrent sessions on the listeners; more get 421 [default: 20]")
                .value_name("N")
                .value_parser(value_parser!(usize)),
        )
        .arg(
            value("max-recipients", "Recipients per message; more get 452 [default: 100]")
                .value_name("N")
                .value_parser(value_parser!(usize)),
        )
        .arg(
            value("bare-lf", "A bare LF or CR in DATA: turn it into CRLF, or refuse the message [default: normalize]")
                .value_name("MODE")
                .value_parser(["normalize", "reject"]),
        )
        .arg(
            value("checkpassword", "Offer AUTH PLAIN/LOGIN over TLS, checked by PROG (the checkpassword interface)")
                .value_name("PROG")
                .value_parser(value_parser!(PathBuf)),
        )
        .arg(
            value("explain", "Print what RCPT TO:<ADDR> would get and why; receive nothing")
                .value_name("ADDR"),
        )
        .arg(flag("log-json", "One JSON record per transaction on stderr"))
        .arg(value("hostname", "Our name in the greeting and Received [default: the host's FQDN]").value_name("NAME"))
        .arg(
            value("timeout", "Idle time a client may take per command or data chunk [default: 300]")
                .value_name("SECS")
                .value_parser(value_parser!(u64)),
        )
        .arg(
            value("mda-timeout", "Kill the delivery COMMAND after SECS; the client gets 451 [default: 600]")
                .value_name("SECS")
                .value_parser(value_parser!(u64)),
        )
        .arg(
            value("config", "Config file (default ~/.config/postline/config.toml); [recv] holds defaults")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf)),
        )
        .arg(
            Arg::new("command")
                .value_name("COMMAND")
                .num_args(1..)
                .last(true)
                .value_parser(value_parser!(OsString))
                .help("Deliver each message to COMMAND ARGS... (after --; argv, no shell) on stdin"),
        )
}

/// Everything mail-recv was told, command line over `[recv]`.
#[derive(Debug)]
pub struct Options {
    domains: Vec<String>,
    local: Local,
    queue: bool,
    lmtp: bool,
    listen: Vec<String>,
    listen_tls: Vec<String>,
    tls: Option<(PathBuf, PathBuf)>,
    limits: Limits,
    max_sessions: usize,
    bare_lf: BareLf,
    checkpassword: Option<PathBuf>,
    explain: Option<String>,
    log_json: bool,
    hostname: String,
    mda_timeout: Duration,
    config: Config,
}

fn usage(what: &str, why: &str) -> Error {
    Error::new(Kind::Usage, what, why)
}

impl Options {
    /// Read the command line and the config's `[recv]` once.
    pub fn from_matches(m: &ArgMatches) -> Result<Options> {
        let config = Config::load(m.get_one::<PathBuf>("config").map(PathBuf::as_path))?;
        let c = &config.recv;
        let strings = |id: &str| -> Vec<String> {
            m.get_many::<String>(id)
                .map(|v| v.cloned().collect())
                .unwrap_or_default()
        };
        let or_config = |cli: Vec<String>, cfg: &Vec<String>| {
            if cli.is_empty() { cfg.clone() } else { cli }
        };
        let domains = or_config(strings("domain"), &c.domains);
        if domains.is_empty() {
            return Err(usage(
                "--domain",
                "needs at least one --domain (or [recv] domains)",
            ));
        }
        if let Some(bad) = domains
            .iter()
            .find(|d| !crate::recv::policy::valid_domain(&crate::recv::policy::canonical_domain(d)))
        {
            return Err(usage(
                &format!("--domain {bad:?}"),
                "not a domain name or address literal",
            ));
        }
        let cli_deliver = m.get_one::<String>("deliver").cloned();
        let cli_command: Vec<OsString> = m
            .get_many::<OsString>("command")
            .map(|v| v.cloned().collect())
            .unwrap_or_default();
        // The command line's delivery replaces the config's as a whole.
        let (deliver, command) = if cli_deliver.is_some() || !cli_command.is_empty() {
            (cli_deliver, cli_command)
        } else {
            (
                c.deliver.clone(),
                c.command.iter().map(OsString::from).collect(),
            )
        };
        let queue = m.get_flag("queue") || c.queue;
        let local = match (deliver, command.is_empty()) {
            (Some(_), false) => {
                return Err(usage(
                    "--deliver and COMMAND",
                    "give one way to deliver, not both",
                ));
            }
            (Some(t), true) => Local::Template(Template::parse(&t)?),
            (None, false) => Local::Command(command),
            (None, true) if queue => Local::Queue,
            (None, true) => {
                return Err(usage(
                    "delivery",
                    "needs --deliver TEMPLATE, -- COMMAND ARGS... or --queue",
                ));
            }
        };
        let cert = m
            .get_one::<PathBuf>("tls-cert")
            .cloned()
            .or_else(|| c.tls_cert.clone());
        let key = m
            .get_one::<PathBuf>("tls-key")
            .cloned()
            .or_else(|| c.tls_key.clone());
        let tls = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(usage("--tls-cert/--tls-key", "give both or neither")),
        };
        let listen = or_config(strings("listen"), &c.listen);
        let listen_tls = or_config(strings("listen-tls"), &c.listen_tls);
        if !listen_tls.is_empty() && tls.is_none() {
            return Err(usage("--listen-tls", "needs --tls-cert and --tls-key"));
        }
        let checkpassword = m
            .get_one::<PathBuf>("checkpassword")
            .cloned()
            .or_else(|| c.checkpassword.clone());
        if checkpassword.is_some() && tls.is_none() {
            return Err(usage(
                "--checkpassword",
                "AUTH is offered over TLS only: needs --tls-cert and --tls-key",
            ));
        }
        let bare_lf = match m
            .get_one::<String>("bare-lf")
            .cloned()
            .or_else(|| c.bare_lf.clone())
            .as_deref()
        {
            None | Some("normalize") => BareLf::Normalize,
            Some("reject") => BareLf::Reject,
            Some(other) => {
                return Err(Error::new(
                    Kind::Config,
                    "[recv] bare_lf",
                    format!("{other:?}: expected normalize or reject"),
                ));
            }
        };
        let mut limits = Limits::default();
        if let Some(n) = m.get_one::<u64>("max-size").copied().or(c.max_size) {
            limits.max_size = n;
        }
        if let Some(n) = m
            .get_one::<usize>("max-recipients")
            .copied()
            .or(c.max_recipients)
        {
            if n == 0 {
                return Err(usage("--max-recipients", "must be at least 1"));
            }
            limits.max_recipients = n;
        }
        if let Some(s) = m.get_one::<u64>("timeout").copied().or(c.timeout) {
            if s == 0 {
                return Err(usage("--timeout", "must be at least 1 second"));
            }
            limits.idle = Duration::from_secs(s);
        }
        let max_sessions = m
            .get_one::<usize>("max-sessions")
            .copied()
            .or(c.max_sessions)
            .unwrap_or(MAX_SESSIONS);
        if max_sessions == 0 {
            return Err(usage("--max-sessions", "must be at least 1"));
        }
        let mda_timeout = m
            .get_one::<u64>("mda-timeout")
            .copied()
            .or(c.mda_timeout)
            .unwrap_or(MDA_TIMEOUT);
        let hostname = m
            .get_one::<String>("hostname")
            .cloned()
            .or_else(|| c.hostname.clone())
            .unwrap_or_else(|| {
                crate::sysnames::fqdn()
                    .unwrap_or(crate::sysnames::hostname())
                    .to_string()
            });
        Ok(Options {
            domains,
            local,
            queue,
            lmtp: m.get_flag("lmtp") || c.lmtp,
            listen,
            listen_tls,
            tls,
            limits,
            max_sessions,
            bare_lf,
            checkpassword,
            explain: m.get_one::<String>("explain").cloned(),
            log_json: m.get_flag("log-json") || c.log_json,
            hostname,
            mda_timeout: Duration::from_secs(mda_timeout),
            config,
        })
    }

    /// The backend's setup.
    fn setup(&self) -> Setup {
        Setup {
            policy: Policy::new(&self.domains, self.queue),
            local: self.local.clone(),
            store: store::Options {
                folder: None,
                mbox_format: crate::mboxfmt::Format::Mboxrd,
                locking: Locking::default(),
            },
            spool: self.queue.then(|| Spool::default_dir(&self.config)),
            route: Route::Direct {
                resolver: self.config.send.resolver.clone(),
                mx_port: self.config.send.mx_port,
            },
            lmtp: self.lmtp,
            mda_timeout: self.mda_timeout,
            checkpassword: self
                .checkpassword
                .as_ref()
                .map(|p| Checkpassword::new(p.clone(), CHECKPASSWORD_TIMEOUT)),
        }
    }

    /// The protocol session's settings.
    fn server_settings(&self) -> server::Settings {
        server::Settings {
            protocol: if self.lmtp {
                Protocol::Lmtp
            } else {
                Protocol::Smtp
            },
            hostname: self.hostname.clone(),
            limits: self.limits.clone(),
            bare_lf: self.bare_lf,
            starttls: self.tls.is_some(),
            auth: self.checkpassword.is_some(),
        }
    }
}

/// Run mail-recv.
pub fn run(m: &ArgMatches, ctx: &mut Ctx) -> Result<()> {
    let opts = Options::from_matches(m)?;
    let setup = Arc::new(opts.setup());
    if let Some(addr) = &opts.explain {
        let (lines, accepted) = backend::explain(&setup, addr);
        for l in &lines {
            ctx.line(&crate::proto::transcript::printable(l));
        }
        if !accepted {
            ctx.check_failed();
        }
        return Ok(());
    }
    let tls = match &opts.tls {
        Some((cert, key)) => Some(ServerTls::from_pem_files(cert, key)?),
        None => None,
    };
    let settings = Arc::new(opts.server_settings());
    let log_json = opts.log_json;
    let backend = move || {
        let log: Option<Box<dyn std::io::Write + Send>> =
            log_json.then(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write + Send>);
        Receiver::new(setup.clone(), log)
    };
    if opts.listen.is_empty() && opts.listen_tls.is_empty() {
        let mut b = backend();
        serve_stdio(&settings, tls, stdio_peer(), &mut b)?;
        return Ok(());
    }
    let (stopper, wake) = listen::stopper()?;
    // Before any thread starts, so every thread inherits the blocked mask.
    listen::stop_on_signals(stopper)?;
    let mut bound = Vec::new();
    for a in &opts.listen {
        bound.push(listen::bind(a, false)?);
    }
    for a in &opts.listen_tls {
        bound.push(listen::bind(a, true)?);
    }
    listen::serve(bound, opts.max_sessions, wake, move |tcp, implicit| {
        let peer = Peer {
            ip: tcp.peer_addr().ok().map(|a| a.ip()),
            host: None,
        };
        let mut b = backend();
        if let Err(e) = serve_tcp(tcp, implicit, tls.clone(), &settings, peer, &mut b) {
            // A session's I/O failure ends that session only.
            eprintln!(
                "mail-recv: {}",
                crate::proto::transcript::printable(&e.to_string())
            );
        }
    })
}

/// The client's address: `TCPREMOTEIP` (UCSPI: tcpserver, s6), else
/// `REMOTE_ADDR` (inetd wrappers, systemd's socket units set it), else
/// the peer of the socket on stdin.
fn stdio_peer() -> Peer {
    let var = |k: &str| std::env::var(k).ok();
    peer_from(
        var("TCPREMOTEIP"),
        var("REMOTE_ADDR"),
        var("TCPREMOTEHOST"),
        stdin_socket_peer,
    )
}

/// [`stdio_peer`] over given values: the first variable that parses as an
/// address wins; a host name is kept only when it is plausible.
fn peer_from(
    tcpremoteip: Option<String>,
    remote_addr: Option<String>,
    tcpremotehost: Option<String>,
    socket: impl FnOnce() -> Option<IpAddr>,
) -> Peer {
    let parse = |v: Option<String>| v.and_then(|v| v.trim().parse::<IpAddr>().ok());
    let ip = parse(tcpremoteip)
        .or_else(|| parse(remote_addr))
        .or_else(socket);
    let host = tcpremotehost.filter(|h| {
        !h.is_empty() && h.len() <= 255 && !h.chars().any(|c| c.is_control() || c.is_whitespace())
    });
    Peer { ip, host }
}

/// getpeername on fd 0, when it is a TCP socket.
fn stdin_socket_peer() -> Option<IpAddr> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let tcp = std::net::TcpStream::from(fd);
    tcp.peer_addr().ok().map(|a| a.ip())
}

/// One session on stdin/stdout (inetd, tcpserver, systemd `Accept=yes`,
/// `swaks --pipe`): fds 0 and 1 with poll(2) deadlines.
fn serve_stdio(
    settings: &server::Settings,
    tls: Option<ServerTls>,
    peer: Peer,
    backend: &mut Receiver,
) -> Result<Summary> {
    let duplex = Duplex::stdio().map_err(|e| Error::io("standard input", &e))?;
    let stream = ServerStream::plain(duplex, settings.limits.idle, tls);
    server::serve(stream, settings, peer, backend)
}

/// One session on an accepted connection (`implicit`: TLS from the start).
fn serve_tcp(
    tcp: std::net::TcpStream,
    implicit: bool,
    tls: Option<ServerTls>,
    settings: &server::Settings,
    peer: Peer,
    backend: &mut Receiver,
) -> Result<Summary> {
    let idle = settings.limits.idle;
    let stream = match (implicit, tls) {
        (true, Some(t)) => ServerStream::implicit(tcp, idle, &t)?,
        (true, None) => {
            return Err(Error::new(
                Kind::Config,
                "--listen-tls",
                "needs --tls-cert and --tls-key",
            ));
        }
        (false, tls) => ServerStream::plain(tcp, idle, tls),
    };
    server::serve(stream, settings, peer, backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_is_tcpremoteip_then_remote_addr_then_the_socket() {
        let s = |v: &str| Some(v.to_string());
        let p = peer_from(s("192.0.2.1"), s("192.0.2.2"), s("client.example"), || None);
        assert_eq!(p.ip, "192.0.2.1".parse().ok());
        assert_eq!(p.host.as_deref(), Some("client.example"));
        let p = peer_from(s("junk"), s(" 2001:db8::1 "), None, || None);
        assert_eq!(p.ip, "2001:db8::1".parse().ok());
        let p = peer_from(None, s(""), s("bad\r\nhost"), || "192.0.2.9".parse().ok());
        assert_eq!(p.ip, "192.0.2.9".parse().ok());
        assert_eq!(p.host, None);
        assert_eq!(peer_from(None, None, None, || None).ip, None);
    }
}
