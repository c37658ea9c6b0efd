//! mail-send: submit mail the way `sendmail` callers expect (cron, PHP,
//! mutt, git send-email, `-bs` frameworks), to a smarthost account, straight
//! to the recipients' MX hosts, or to an LMTP server.
//!
//! Owns the command line (every sendmail flag real callers pass, in attached
//! and separate forms, read once into `Settings`), reading the message (a
//! lone `.` line ends input unless `-i`), the choice of route and account,
//! `--explain`, and reporting per recipient. What a submission adds to the
//! message (`-t` recipients with Bcc removed, Date, Message-ID, From, the
//! domain of bare addresses) is [`crate::compose`]; the `-bs` SMTP dialogue
//! is [`bs`]. Guarantee: a recipient is either delivered
//! (server's final 2xx), queued durably (exit 0 after "queued as ID"),
//! reported as temporary (exit 75 with `--no-queue`) or reported as refused
//! with the server's reply and the matching sysexits code; never dropped,
//! never sent twice by this run.

mod bs;

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::compose::{Submission, cut_at_lone_dot, parse_address_list};
use crate::config::{Account, Config, Service};
use crate::exit::{Context, Error, Kind, Result};
use crate::proto::tls::TlsMode;
use crate::proto::transcript::Transcript;
use crate::queue::Spool;
use crate::send::{Dsn, Envelope, Fate, RcptOutcome, Route, SendOptions, Sender};
use crate::tools::Ctx;
use crate::tools::conn::{Conn, Logins};

/// The clap command of mail-send.
pub fn command() -> Command {
    let flag = |id: &'static str, short: char, help: &'static str| {
        Arg::new(id)
            .short(short)
            .action(ArgAction::SetTrue)
            .help(help)
    };
    let value =
        |id: &'static str, help: &'static str| Arg::new(id).long(id).value_name("VALUE").help(help);
    let cmd = Command::new("mail-send")
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(true)
        .about("Submit mail: sendmail-compatible, to a smarthost, straight to MX or LMTP; queue on temporary failure")
        .arg(
            Arg::new("version")
                .long("version")
                .action(ArgAction::Version)
                .help("Print the version"),
        )
        .arg(
            Arg::new("recipients")
                .value_name("RECIPIENT")
                .num_args(0..)
                .action(ArgAction::Append)
                .help("Envelope recipients (added to the header ones with -t)"),
        )
        .arg(flag("t", 't', "Read recipients from To, Cc and Bcc; remove Bcc"))
        .arg(flag("i", 'i', "A line with a single dot does not end the input"))
        .arg(
            Arg::new("from")
                .short('f')
                .visible_short_alias('r')
                .value_name("ADDRESS")
                .help("Envelope sender (<> or empty for the null sender)"),
        )
        .arg(
            Arg::new("fullname")
                .short('F')
                .value_name("NAME")
                .help("Sender's full name for a From: field that is added"),
        )
        .arg(
            Arg::new("notify")
                .short('N')
                .value_name("DSN")
                .help("DSN NOTIFY: never, or success,failure,delay"),
        )
        .arg(
            Arg::new("ret")
                .short('R')
                .value_name("RET")
                .help("DSN RET: full or hdrs"),
        )
        .arg(
            Arg::new("envid")
                .short('V')
                .value_name("ENVID")
                .help("DSN envelope id"),
        )
        .arg(
            Arg::new("body")
                .short('B')
                .value_name("TYPE")
                .help("Body type (7BIT, 8BITMIME); accepted, 8BITMIME is announced when needed"),
        )
        .arg(
            Arg::new("option")
                .short('o')
                .value_name("OPTION")
                .action(ArgAction::Append)
                .help("sendmail -o options: -oi is -i; others (-oem, -odi, ...) are ignored"),
        )
        .arg(
            Arg::new("mode")
                .short('b')
                .value_name("MODE")
                .value_parser(["m", "s", "p"])
                .help("-bm: send (default); -bs: SMTP on stdin/stdout; -bp: list the queue"),
        )
        .arg(
            Arg::new("runqueue")
                .short('q')
                .value_name("INTERVAL")
                .num_args(0..=1)
                .default_missing_value("")
                .help("Run the queue (mail-queue run)"),
        )
        .arg(
            Arg::new("ignored")
                .short('O')
                .visible_short_alias('C')
                .visible_short_alias('L')
                .visible_short_alias('X')
                .visible_short_alias('A')
                .value_name("VALUE")
                .action(ArgAction::Append)
                .help("Other sendmail options with a value (-O, -C, -L, -X, -A): ignored"),
        )
        .arg(
            Arg::new("ignored-flag")
                .short('U')
                .visible_short_alias('n')
                .visible_short_alias('G')
                .visible_short_alias('m')
                .action(ArgAction::Count)
                .help("Other sendmail flags (-U, -n, -G, -m): ignored"),
        )
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::Count)
                .help("Show the SMTP transcript (AUTH redacted) and each recipient's outcome"),
        )
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Config file (default ~/.config/postline/config.toml)"),
        )
        .arg(
            Arg::new("account")
                .short('a')
                .long("account")
                .value_name("NAME")
                .help("Send through this [account.NAME]"),
        )
        .arg(value("host", "One-off smarthost (no config needed)").value_name("HOST"))
        .arg(
            value("port", "Port of --host")
                .value_name("PORT")
                .value_parser(clap::value_parser!(u16)),
        )
    ;
    super::conn::args(cmd, Logins::Smtp)
        .arg(value("helo", "Name to say in EHLO").value_name("NAME"))
        .arg(value("lmtp", "Deliver to this LMTP server").value_name("HOST:PORT|PATH"))
        .arg(
            Arg::new("direct")
                .long("direct")
                .action(ArgAction::SetTrue)
                .help("Deliver straight to each recipient domain's MX hosts"),
        )
        .arg(value("resolver", "DNS server for MX lookups").value_name("IP[:PORT]"))
        .arg(
            value("mx-port", "SMTP port on MX hosts (default 25)")
                .value_name("PORT")
                .value_parser(clap::value_parser!(u16)),
        )
        .arg(
            Arg::new("no-queue")
                .long("no-queue")
                .action(ArgAction::SetTrue)
                .help("On a temporary failure exit 75 instead of queueing"),
        )
        .arg(
            value("queue-dir", "The queue spool directory")
                .value_name("DIR")
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(
            Arg::new("explain")
                .long("explain")
                .action(ArgAction::SetTrue)
                .help("Print the route that would be taken; send nothing"),
        )
}

/// The entry point of the binary: `sendmail` behaves as mail-send, `mailq`
/// as `mail-queue list`.
pub fn main() -> std::process::ExitCode {
    let argv0 = std::env::args_os()
        .next()
        .map(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    if argv0 == "mailq" {
        // mailq is `mail-queue list` (its default), with mail-queue's flags.
        return crate::tools::main(
            "mailq",
            crate::tools::queue::command,
            crate::tools::queue::run,
        );
    }
    crate::tools::main("mail-send", command, run)
}

/// mail-send's command line, read once.
struct Settings {
    verbose: bool,
    /// `-i` or `-oi`: a lone `.` line does not end the input.
    ignore_dots: bool,
    /// `-b`: `m` (send), `s` (`-bs`) or `p` (list the queue).
    mode: Option<String>,
    /// `-q` given (with or without an interval).
    run_queue: bool,
    explain: bool,
    /// Sendmail options accepted and ignored, named for `-v`.
    ignored: Vec<String>,
    /// The argument recipients, address lists parsed.
    recipients: Vec<String>,
    /// `-t`, `-f`, `-F`, the DSN flags (the domain is set from the config).
    submission: Submission,
    config: Option<PathBuf>,
    queue_dir: Option<PathBuf>,
    no_queue: bool,
    account: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    conn: Conn,
    helo: Option<String>,
    lmtp: Option<String>,
    direct: bool,
    resolver: Option<String>,
    mx_port: Option<u16>,
}

impl Settings {
    fn from_matches(m: &ArgMatches) -> Result<Settings> {
        let s = |id: &str| m.get_one::<String>(id).cloned();
        let mut ignore_dots = m.get_flag("i");
        let mut ignored = Vec::new();
        for o in m.get_many::<String>("option").into_iter().flatten() {
            if o == "i" {
                ignore_dots = true;
            } else {
                ignored.push(format!("ignoring sendmail option -o{o}"));
            }
        }
        for o in m.get_many::<String>("ignored").into_iter().flatten() {
            ignored.push(format!("ignoring sendmail option with value {o:?}"));
        }
        if m.get_count("ignored-flag") > 0 {
            ignored.push("ignoring sendmail flags -U, -n, -G, -m".to_string());
        }
        Ok(Settings {
            verbose: m.get_count("verbose") > 0,
            ignore_dots,
            mode: s("mode"),
            run_queue: m.value_source("runqueue").is_some(),
            explain: m.get_flag("explain"),
            ignored,
            recipients: m
                .get_many::<String>("recipients")
                .into_iter()
                .flatten()
                .flat_map(|r| parse_address_list(r))
                .collect(),
            submission: Submission {
                header_rcpts: m.get_flag("t"),
                from: s("from"),
                fullname: s("fullname"),
                dsn: Dsn {
                    ret: s("ret").map(|s| s.to_ascii_uppercase()),
                    envid: s("envid"),
                    notify: s("notify").map(|s| s.to_ascii_uppercase()),
                },
                domain: String::new(),
            },
            config: m.get_one::<PathBuf>("config").cloned(),
            queue_dir: m.get_one::<PathBuf>("queue-dir").cloned(),
            no_queue: m.get_flag("no-queue"),
            account: s("account"),
            host: s("host"),
            port: m.get_one::<u16>("port").copied(),
            conn: Conn::from_matches(m)?,
            helo: s("helo"),
            lmtp: s("lmtp"),
            direct: m.get_flag("direct"),
            resolver: s("resolver"),
            mx_port: m.get_one::<u16>("mx-port").copied(),
        })
    }

    /// The config file, and the submission rules with the domain that
    /// qualifies bare addresses (`[send] domain`, else the host's). A config
    /// that does not load still gives a domain: its error is reported once
    /// the recipients are known to be there, as it always was.
    fn load(&self) -> (Result<Config>, Submission) {
        let config = Config::load(self.config.as_deref());
        let configured = config.as_ref().ok().and_then(|c| c.send.domain.clone());
        let submission = Submission {
            domain: crate::compose::local_domain(configured.as_deref()),
            ..self.submission.clone()
        };
        (config, submission)
    }
}

/// Everything decided from the command line and config, before sending.
struct Plan {
    config: Config,
    route: Route,
    why: String,
    no_queue: bool,
    queue_dir: PathBuf,
    verbose: bool,
    opts: SendOptions,
}

/// Run mail-send.
pub fn run(m: &ArgMatches, ctx: &mut Ctx) -> Result<()> {
    let s = Settings::from_matches(m)?;
    if s.verbose {
        for w in &s.ignored {
            ctx.warn(w);
        }
    }
    match s.mode.as_deref() {
        Some("p") => return queue(&s, "list", ctx),
        Some("s") => return bs::run(&s, ctx),
        _ => {}
    }
    if s.run_queue {
        return queue(&s, "run", ctx);
    }

    let mut input = Vec::new();
    // --explain from a terminal needs no message (it only looks at the
    // From field to pick an account).
    let skip = s.explain && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if !skip {
        std::io::stdin()
            .lock()
            .read_to_end(&mut input)
            .context("reading the message from stdin")?;
    }
    if !s.ignore_dots {
        cut_at_lone_dot(&mut input);
    }
    let (config, submission) = s.load();
    let (msg, mut env) = submission.prepare(input, s.recipients.clone(), None)?;
    let plan = plan(&s, config?, &env)?;
    use_envelope_from(&s, &plan, &submission.domain, &mut env);
    if s.explain {
        return explain(&plan, &env, ctx);
    }
    send_one(&plan, &env, &msg, ctx).map(|_| ())
}

/// -bp and -q hand over to mail-queue, with the same config and spool.
fn queue(s: &Settings, what: &str, ctx: &mut Ctx) -> Result<()> {
    let mut args = Vec::new();
    for (id, p) in [("config", &s.config), ("queue-dir", &s.queue_dir)] {
        if let Some(p) = p {
            args.push(format!("--{id}"));
            args.push(p.display().to_string());
        }
    }
    if s.verbose {
        args.push("-v".to_string());
    }
    args.push(what.to_string());
    crate::tools::queue::run_args(&args, ctx)
}

/// An account's `envelope_from` is the sender when `-f` was not given
/// (qualified like any other sender).
fn use_envelope_from(s: &Settings, plan: &Plan, domain: &str, env: &mut Envelope) {
    if s.submission.from.is_some() {
        return;
    }
    if let Route::Account { name } = &plan.route
        && let Ok(a) = plan.config.account(name)
        && let Some(f) = &a.envelope_from
    {
        env.from = crate::compose::qualify(f, domain);
    }
}

/// Decide route and settings.
fn plan(s: &Settings, config: Config, env: &Envelope) -> Result<Plan> {
    let mut opts = SendOptions::default();
    if let Some(h) = &s.helo {
        opts.helo = h.clone();
    }
    if let Some(t) = s.conn.timeout {
        opts.timeout = std::time::Duration::from_secs(t);
    }
    let one_off = s
        .port
        .map(|_| "port")
        .or_else(|| s.conn.first_server_only());
    let (route, why) = if let Some(target) = &s.lmtp {
        (
            Route::Lmtp {
                target: target.clone(),
            },
            format!("--lmtp {target}"),
        )
    } else if s.direct {
        (direct_route(s, &config), "--direct".to_string())
    } else if let Some(host) = &s.host {
        let server = s.conn.apply(Account {
            host: Some(host.clone()),
            port: s.port,
            helo: s.helo.clone(),
            ..Account::default()
        });
        (
            Route::Server {
                server: Box::new(server),
            },
            "--host given on the command line".to_string(),
        )
    } else if let Some(id) = one_off {
        return Err(Error::new(
            Kind::Usage,
            format!("--{id}"),
            "needs --host (or use an account in the config file)",
        ));
    } else if let Some(name) = &s.account {
        config.account(name)?;
        (Route::Account { name: name.clone() }, format!("-a {name}"))
    } else {
        let sending: Vec<(&String, &Account)> = config
            .account
            .iter()
            .filter(|(_, a)| a.protocol.is_none_or(Service::sends))
            .collect();
        if let Some((name, _)) = sending.iter().find(|(_, a)| a.matches_from(&env.from)) {
            (
                Route::Account {
                    name: (*name).clone(),
                },
                format!("its from patterns match the envelope sender <{}>", env.from),
            )
        } else if let Some((name, _)) = sending.iter().find(|(_, a)| a.default) {
            (
                Route::Account {
                    name: (*name).clone(),
                },
                format!("default = true (no from pattern matches <{}>)", env.from),
            )
        } else if config.send.direct {
            (direct_route(s, &config), "[send] direct = true".to_string())
        } else {
            return Err(Error::new(
                Kind::Config,
                format!("choosing a route for <{}>", env.from),
                match &config.path {
                    Some(p) => format!(
                        "no account in {} matches and none has default = true (use -a, --host, --lmtp or --direct)",
                        p.display()
                    ),
                    None => "no config file; use --host, --lmtp or --direct (or write ~/.config/postline/config.toml)".to_string(),
                },
            ));
        }
    };
    let queue_dir = s
        .queue_dir
        .clone()
        .unwrap_or_else(|| Spool::default_dir(&config));
    Ok(Plan {
        no_queue: s.no_queue || config.send.no_queue,
        queue_dir,
        verbose: s.verbose,
        route,
        why,
        config,
        opts,
    })
}

fn direct_route(s: &Settings, config: &Config) -> Route {
    Route::Direct {
        resolver: s.resolver.clone().or_else(|| config.send.resolver.clone()),
        mx_port: s.mx_port.or(config.send.mx_port),
    }
}

fn explain(plan: &Plan, env: &Envelope, ctx: &mut Ctx) -> Result<()> {
    let from = if env.from.is_empty() {
        "<>".to_string()
    } else {
        format!("<{}>", env.from)
    };
    ctx.line(&format!(
        "envelope: from {from} to {}",
        env.rcpts
            .iter()
            .map(|r| format!("<{r}>"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let describe_server = |ctx: &mut Ctx, a: &Account, lmtp: bool| {
        let mode = a.tls.unwrap_or(if lmtp {
            TlsMode::None
        } else {
            TlsMode::Starttls
        });
        let port = a.port.unwrap_or(match (lmtp, mode) {
            (true, _) => 24,
            (_, TlsMode::Implicit) => 465,
            _ => 587,
        });
        let host = a.host.clone().unwrap_or_default();
        if host.starts_with('/') {
            ctx.line(&format!("server: {host} (LMTP over a unix socket)"));
        } else {
            ctx.line(&format!(
                "server: {} ({})",
                crate::proto::tls::display_host_port(&host, port),
                if lmtp { "LMTP" } else { "SMTP" }
            ));
        }
        let verify = match (&a.tls_fingerprint, &a.tls_ca_file) {
            (Some(f), _) => format!("certificate pinned to SHA-256 {f}"),
            (None, Some(ca)) => format!(
                "certificate verified against the system store and {}",
                ca.display()
            ),
            (None, None) => "certificate verified against the system store".to_string(),
        };
        ctx.line(&format!(
            "tls: {}",
            match mode {
                TlsMode::Starttls =>
                    format!("starttls, required (no STARTTLS offered: nothing is sent); {verify}"),
                TlsMode::Implicit => format!("implicit TLS from the first byte; {verify}"),
                TlsMode::None => "none (plain text)".to_string(),
            }
        ));
        match a.user.as_deref() {
            Some(u) => ctx.line(&format!(
                "auth: as {u} with {} (password from {})",
                a.auth
                    .map_or("the best of PLAIN and LOGIN offered".to_string(), |m| m
                        .name()
                        .to_uppercase()),
                match (&a.password_env, &a.password_command) {
                    (Some(v), _) => format!("${v}"),
                    (None, Some(c)) => format!("the command {c:?}"),
                    (None, None) => "nowhere: not set".to_string(),
                }
            )),
            None => ctx.line("auth: none"),
        };
    };
    match &plan.route {
        Route::Account { name } => {
            ctx.line(&format!(
                "route: account {name}, chosen because {}",
                plan.why
            ));
            let a = plan.config.account(name)?.clone();
            describe_server(ctx, &a, a.protocol == Some(Service::Lmtp));
        }
        Route::Server { server } => {
            ctx.line(&format!("route: one-off server ({})", plan.why));
            describe_server(ctx, server, false);
        }
        Route::Lmtp { target } => {
            ctx.line(&format!("route: LMTP ({})", plan.why));
            let sender = Sender::new(Config::default(), plan.opts.clone(), Transcript::off());
            let (_, a) = sender.server_for(&plan.route)?;
            describe_server(ctx, &a, true);
            let _ = target;
        }
        Route::Direct { resolver, mx_port } => {
            ctx.line(&format!(
                "route: direct to the recipients' MX hosts ({})",
                plan.why
            ));
            let r = crate::proto::dns::Resolver::new(resolver.as_deref(), plan.opts.timeout)?;
            ctx.line(&format!("dns: {}", r.server));
            let port = mx_port.unwrap_or(25);
            let mut domains: Vec<String> = Vec::new();
            for rc in &env.rcpts {
                let d = rc
                    .rsplit_once('@')
                    .map_or("", |(_, d)| d)
                    .to_ascii_lowercase();
                if !domains.contains(&d) {
                    domains.push(d);
                }
            }
            for d in domains {
                match r.mx(&d) {
                    Ok(crate::proto::dns::MxAnswer::Hosts(hosts)) => {
                        for (i, (pref, h)) in hosts.iter().enumerate() {
                            let addrs = match r.addresses(h) {
                                Ok(a) => a
                                    .iter()
                                    .map(|ip| {
                                        crate::proto::tls::display_host_port(&ip.to_string(), port)
                                    })
                                    .collect::<Vec<_>>()
                                    .join(" "),
                                Err(e) => format!("unusable: {e}"),
                            };
                            ctx.line(&format!(
                                "mx: {d} #{} {h} (preference {pref}) {addrs}",
                                i + 1
                            ));
                        }
                    }
                    Ok(crate::proto::dns::MxAnswer::Implicit(h)) => {
                        let addrs = r
                            .addresses(&h)
                            .map(|a| {
                                a.iter()
                                    .map(|ip| {
                                        crate::proto::tls::display_host_port(&ip.to_string(), port)
                                    })
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_default();
                        ctx.line(&format!(
                            "mx: {d} has no MX; its own address (implicit MX) {addrs}"
                        ));
                    }
                    Err(e) => {
                        ctx.line(&format!(
                            "mx: {d}: {} failure: {e}",
                            if e.kind().is_temporary() {
                                "temporary"
                            } else {
                                "permanent"
                            }
                        ));
                    }
                }
            }
            ctx.line("tls: opportunistic STARTTLS (used when offered, certificate not checked; plain text otherwise)");
        }
    }
    ctx.line(&format!(
        "on temporary failure: {}",
        if plan.no_queue {
            "exit 75 (--no-queue)".to_string()
        } else {
            format!("queue in {}", plan.queue_dir.display())
        }
    ));
    ctx.line("nothing was sent (--explain)");
    Ok(())
}

/// What happened to one message, for `-bs` replies.
enum Result1 {
    /// All delivered (or queued: the id).
    Done(Option<String>),
    /// Temporary failure not queued.
    Temporary(String),
    /// Refused for good.
    Refused(String),
}

fn send_one(plan: &Plan, env: &Envelope, msg: &[u8], ctx: &mut Ctx) -> Result<Result1> {
    let transcript = if plan.verbose {
        Transcript::to(Box::new(std::io::stderr()), "mail-send: ")
    } else {
        Transcript::off()
    };
    let mut sender = Sender::new(plan.config.clone(), plan.opts.clone(), transcript);
    let outcomes = sender.deliver(&plan.route, env, msg);
    sender.finish();
    drop(sender);
    report(plan, env, msg, &outcomes, ctx)
}

fn report(
    plan: &Plan,
    env: &Envelope,
    msg: &[u8],
    outcomes: &[RcptOutcome],
    ctx: &mut Ctx,
) -> Result<Result1> {
    let mut temporary: Vec<&RcptOutcome> = Vec::new();
    // Refusals with the same reply (an AUTH failure, a 5xx to MAIL) are
    // one line naming every recipient.
    let mut refusals: Vec<(Kind, String, Vec<&str>)> = Vec::new();
    for o in outcomes {
        match &o.fate {
            Fate::Delivered => {
                if plan.verbose {
                    ctx.warn(&format!("<{}>: delivered: {}", o.rcpt, o.reply));
                }
            }
            Fate::Temporary => temporary.push(o),
            Fate::Permanent { code } => {
                let kind = if *code == crate::exit::NOPERM {
                    Kind::Auth
                } else {
                    o.kind().unwrap_or(Kind::Unavailable)
                };
                match refusals
                    .iter_mut()
                    .find(|(k, r, _)| *k == kind && *r == o.reply)
                {
                    Some((_, _, who)) => who.push(&o.rcpt),
                    None => refusals.push((kind, o.reply.clone(), vec![&o.rcpt])),
                }
            }
        }
    }
    for (kind, reply, who) in &refusals {
        let who: Vec<String> = who.iter().map(|r| format!("<{r}>")).collect();
        ctx.report(&Error::new(*kind, who.join(", "), reply));
    }
    let refused = refusals.first().map(|(_, r, _)| r.clone());
    if temporary.is_empty() {
        // In -bs, 554 only when nobody got it: a 554 after a partial
        // delivery would make the client send it again (refusals are on
        // stderr and in the exit status).
        let all_refused = outcomes
            .iter()
            .all(|o| matches!(o.fate, Fate::Permanent { .. }));
        return Ok(match refused {
            Some(r) if all_refused => Result1::Refused(r),
            _ => Result1::Done(None),
        });
    }
    let reason = temporary
        .iter()
        .map(|o| format!("<{}>: {}", o.rcpt, o.reply))
        .collect::<Vec<_>>()
        .join("; ");
    if plan.no_queue {
        ctx.report(&Error::new(
            Kind::Temporary,
            "not delivered (--no-queue)",
            &reason,
        ));
        return Ok(Result1::Temporary(reason));
    }
    let queued_env = Envelope {
        rcpts: temporary.iter().map(|o| o.rcpt.clone()).collect(),
        ..env.clone()
    };
    // A bad [queue] setting must not keep the message out of the queue:
    // the default retry policy then (mail-queue reports the setting).
    let policy = crate::queue::Policy::from_config(&plan.config.queue).unwrap_or_default();
    let spool = Spool::open(&plan.queue_dir)?.with_policy(policy);
    let id = spool
        .enqueue(&plan.route, &queued_env, msg, &reason)
        .map_err(|e| e.within(format!("after a temporary failure ({reason})")))?;
    ctx.warn(&format!("queued as {id}: {reason}"));
    Ok(match refused {
        Some(r)
            if outcomes
                .iter()
                .all(|o| matches!(o.fate, Fate::Permanent { .. })) =>
        {
            Result1::Refused(r)
        }
        _ => Result1::Done(Some(id)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendmail_flag_forms_parse() {
        let argv = |a: &[&str]| {
            command()
                .try_get_matches_from(std::iter::once("mail-send").chain(a.iter().copied()))
                .unwrap()
        };
        let m = argv(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "user"]);
        assert_eq!(m.get_one::<String>("fullname").unwrap(), "CronDaemon");
        let m = argv(&[
            "-oem", "-oi", "-f", "a@b", "-N", "never", "-R", "hdrs", "--", "x@y",
        ]);
        assert_eq!(m.get_one::<String>("notify").unwrap(), "never");
        assert_eq!(m.get_many::<String>("recipients").unwrap().count(), 1);
        let m = argv(&["-t", "-i", "-odi", "-V", "env1", "-bm", "-v"]);
        assert_eq!(m.get_one::<String>("envid").unwrap(), "env1");
        assert_eq!(m.get_one::<String>("mode").unwrap(), "m");
        let m = argv(&["-fme@x", "-ti"]);
        assert!(m.get_flag("t") && m.get_flag("i"));
    }
}
