//! mail-send: submit mail the way `sendmail` callers expect (cron, PHP,
//! mutt, git send-email, `-bs` frameworks), to a smarthost account, straight
//! to the recipients' MX hosts, or to an LMTP server.
//!
//! Owns the command line (every sendmail flag real callers pass, in attached
//! and separate forms), reading the message (a lone `.` line ends input
//! unless `-i`), `-t` recipients with Bcc removed, the header fields added
//! when missing (Date, Message-ID, From; the body is never touched), the
//! choice of route and account, `--explain`, the `-bs` SMTP dialogue, and
//! reporting per recipient. Guarantee: a recipient is either delivered
//! (server's final 2xx), queued durably (exit 0 after "queued as ID"),
//! reported as temporary (exit 75 with `--no-queue`) or reported as refused
//! with the server's reply and the matching sysexits code; never dropped,
//! never sent twice by this run.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::{Account, AuthMethod, Config, Service};
use crate::exit::{Error, Kind, Result};
use crate::message::Message;
use crate::proto::tls::TlsMode;
use crate::proto::transcript::Transcript;
use crate::queue::Spool;
use crate::send::{Dsn, Envelope, Fate, RcptOutcome, Route, SendOptions, Sender};
use crate::tools::Ctx;

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
    Command::new("mail-send")
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
        .arg(
            value("tls", "starttls (default), implicit or none")
                .value_name("MODE")
                .value_parser(super::tls_mode_value),
        )
        .arg(value("user", "Login name for AUTH").value_name("USER"))
        .arg(value("password-command", "Command printing the password").value_name("COMMAND"))
        .arg(value("password-env", "Environment variable holding the password").value_name("VAR"))
        .arg(
            value("tls-ca-file", "Extra trusted CA certificate (PEM)")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(
            value("tls-fingerprint", "Pin the server certificate's SHA-256")
                .value_name("SHA256")
                .value_parser(super::fingerprint_value),
        )
        .arg(
            value("auth", "AUTH mechanism: plain, login or xoauth2")
                .value_name("MECH")
                .value_parser(super::mechanism_value),
        )
        .arg(value("helo", "Name to say in EHLO").value_name("NAME"))
        .arg(
            value("timeout", "Connect and read timeout in seconds (default 60)")
                .value_name("SECONDS")
                .value_parser(clap::value_parser!(u64)),
        )
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
    let verbose = m.get_count("verbose") > 0;
    let mut ignore_dots = m.get_flag("i");
    for o in m.get_many::<String>("option").into_iter().flatten() {
        if o == "i" {
            ignore_dots = true;
        } else if verbose {
            ctx.warn(&format!("ignoring sendmail option -o{o}"));
        }
    }
    if verbose {
        for o in m.get_many::<String>("ignored").into_iter().flatten() {
            ctx.warn(&format!("ignoring sendmail option with value {o:?}"));
        }
        if m.get_count("ignored-flag") > 0 {
            ctx.warn("ignoring sendmail flags -U, -n, -G, -m");
        }
    }
    // -bp and -q hand over to mail-queue, with the same config and spool.
    let queue = |what: &str, ctx: &mut Ctx| {
        let mut args = Vec::new();
        for id in ["config", "queue-dir"] {
            if let Some(p) = m.get_one::<PathBuf>(id) {
                args.push(format!("--{id}"));
                args.push(p.display().to_string());
            }
        }
        if verbose {
            args.push("-v".to_string());
        }
        args.push(what.to_string());
        crate::tools::queue::run_args(&args, ctx)
    };
    match m.get_one::<String>("mode").map(String::as_str) {
        Some("p") => return queue("list", ctx),
        Some("s") => return run_bs(m, ctx),
        _ => {}
    }
    if m.value_source("runqueue").is_some() {
        return queue("run", ctx);
    }

    let mut input = Vec::new();
    // --explain from a terminal needs no message (it only looks at the
    // From field to pick an account).
    let skip = m.get_flag("explain") && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if !skip {
        std::io::stdin()
            .lock()
            .read_to_end(&mut input)
            .map_err(|e| Error::io("reading the message from stdin", &e))?;
    }
    if !ignore_dots {
        cut_at_lone_dot(&mut input);
    }
    let argv_rcpts: Vec<String> = m
        .get_many::<String>("recipients")
        .into_iter()
        .flatten()
        .flat_map(|r| parse_address_list(r))
        .collect();
    let (msg, mut env) = prepare(m, input, argv_rcpts, None)?;
    let plan = plan(m, &env)?;
    use_envelope_from(m, &plan, &mut env);
    if m.get_flag("explain") {
        return explain(&plan, &env, ctx);
    }
    send_one(&plan, &env, &msg, ctx).map(|_| ())
}

/// An account's `envelope_from` is the sender when `-f` was not given.
fn use_envelope_from(m: &ArgMatches, plan: &Plan, env: &mut Envelope) {
    if m.get_one::<String>("from").is_some() {
        return;
    }
    if let Route::Account { name } = &plan.route
        && let Ok(a) = plan.config.account(name)
        && let Some(f) = &a.envelope_from
    {
        env.from = f.clone();
    }
}

/// Without `-i`, a line holding only `.` ends the input (sendmail's rule).
fn cut_at_lone_dot(input: &mut Vec<u8>) {
    let mut pos = 0;
    while pos < input.len() {
        let end = input[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |i| pos + i + 1);
        let line = &input[pos..end];
        if line == b".\n" || line == b".\r\n" || line == b"." {
            input.truncate(pos);
            return;
        }
        pos = end;
    }
}

/// Build the message (header fields added when missing, Bcc removed with
/// `-t`) and the envelope.
fn prepare(
    m: &ArgMatches,
    input: Vec<u8>,
    mut rcpts: Vec<String>,
    smtp_from: Option<String>,
) -> Result<(Vec<u8>, Envelope)> {
    // Empty input is a message of header fields only, as with sendmail.
    let mut msg = Message::new(input);
    let header_rcpts = m.get_flag("t") && smtp_from.is_none();
    if header_rcpts {
        let mut from_headers = Vec::new();
        for name in ["To", "Cc", "Bcc"] {
            for v in msg.header_values(name) {
                from_headers.extend(parse_address_list(&v));
            }
        }
        from_headers.extend(rcpts);
        rcpts = from_headers;
    }
    // One RCPT per address, first spelling kept.
    let mut seen = std::collections::HashSet::new();
    rcpts.retain(|r| seen.insert(r.to_ascii_lowercase()));
    if rcpts.is_empty() {
        return Err(Error::new(
            Kind::Usage,
            "choosing recipients",
            if header_rcpts {
                "no recipients in To, Cc, Bcc or the arguments"
            } else {
                "no recipients given (name them, or use -t)"
            },
        ));
    }
    let header_from = msg
        .header_values("From")
        .first()
        .and_then(|v| parse_address_list(v).into_iter().next());
    let from = match (smtp_from, m.get_one::<String>("from")) {
        (Some(f), _) => f,
        (None, Some(f)) => {
            let f = f.trim();
            if f == "<>" {
                String::new()
            } else {
                crate::message::bare_address(f)
            }
        }
        (None, None) => header_from.clone().unwrap_or_else(default_sender),
    };

    let nl = if msg.bytes().windows(2).any(|w| w == b"\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut add = Vec::new();
    if msg.header_values("From").is_empty() {
        let addr = if from.is_empty() {
            default_sender()
        } else {
            from.clone()
        };
        add.push(match m.get_one::<String>("fullname") {
            Some(n) if !n.is_empty() => format!("From: {} <{addr}>{nl}", quote_name(n)),
            _ => format!("From: {addr}{nl}"),
        });
    }
    if msg.header_values("Date").is_empty() {
        add.push(format!("Date: {}{nl}", rfc5322_now()));
    }
    if msg.message_id().is_none() {
        add.push(format!("Message-ID: <{}>{nl}", new_message_id(&from)));
    }
    let drop: &[&str] = if header_rcpts { &["Bcc"] } else { &[] };
    msg.replace_at_top(drop, &add);
    let env = Envelope {
        from,
        rcpts,
        dsn: Dsn {
            ret: m.get_one::<String>("ret").map(|s| s.to_ascii_uppercase()),
            envid: m.get_one::<String>("envid").cloned(),
            notify: m
                .get_one::<String>("notify")
                .map(|s| s.to_ascii_uppercase()),
        },
    };
    Ok((msg.into_bytes(), env))
}

fn quote_name(n: &str) -> String {
    if n.chars()
        .all(|c| c.is_ascii_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c))
    {
        n.to_string()
    } else {
        format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn hostname() -> String {
    SendOptions::default().helo
}

fn default_sender() -> String {
    format!("{}@{}", crate::sysnames::login_name(), hostname())
}

fn rfc5322_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::calendar::rfc5322_date(now)
}

fn new_message_id(from: &str) -> String {
    use sha2::{Digest, Sha256};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(now.as_nanos().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(from.as_bytes());
    let d = h.finalize();
    let tag: String = d[..10].iter().map(|b| format!("{b:02x}")).collect();
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(hostname);
    format!("{}.{tag}@{domain}", now.as_secs())
}

/// The addresses in an address-list header value (RFC 5322): display names,
/// quoted strings, comments and groups handled; only addr-specs returned.
pub fn parse_address_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quote, mut depth, mut angle) = (false, 0usize, false);
    let mut chars = v.chars().peekable();
    let push = |cur: &mut String, out: &mut Vec<String>| {
        let a = crate::message::bare_address(cur);
        let a = a.trim();
        if !a.is_empty() && !a.contains(char::is_whitespace) {
            out.push(a.to_string());
        } else if let Some(last) = a.split_whitespace().last()
            && last.contains('@')
        {
            out.push(last.to_string());
        }
        cur.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if quote || depth > 0 => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' if depth == 0 => {
                quote = !quote;
                cur.push(c);
            }
            '(' if !quote => depth += 1,
            ')' if !quote && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            '<' if !quote => {
                angle = true;
                cur.push(c);
            }
            '>' if !quote => {
                angle = false;
                cur.push(c);
            }
            ':' if !quote && !angle => cur.clear(),
            ',' | ';' if !quote && !angle => push(&mut cur, &mut out),
            _ => cur.push(c),
        }
    }
    push(&mut cur, &mut out);
    out
}

/// Decide route and settings.
fn plan(m: &ArgMatches, env: &Envelope) -> Result<Plan> {
    let config = Config::load(m.get_one::<PathBuf>("config").map(PathBuf::as_path))?;
    let s = |id: &str| m.get_one::<String>(id).cloned();
    let mut opts = SendOptions::default();
    if let Some(h) = s("helo") {
        opts.helo = h;
    }
    if let Some(t) = m.get_one::<u64>("timeout") {
        opts.timeout = std::time::Duration::from_secs(*t);
    }
    let one_off = [
        "port",
        "tls",
        "user",
        "password-command",
        "password-env",
        "tls-ca-file",
        "tls-fingerprint",
        "auth",
    ]
    .iter()
    .find(|id| m.value_source(id).is_some());
    let (route, why) = if let Some(target) = s("lmtp") {
        (
            Route::Lmtp {
                target: target.clone(),
            },
            format!("--lmtp {target}"),
        )
    } else if m.get_flag("direct") {
        (direct_route(m, &config), "--direct".to_string())
    } else if let Some(host) = s("host") {
        let tls = s("tls").map(|t| TlsMode::parse(&t)).transpose()?;
        let server = Account {
            host: Some(host),
            port: m.get_one::<u16>("port").copied(),
            tls,
            user: s("user"),
            password_command: s("password-command"),
            password_env: s("password-env"),
            tls_ca_file: m.get_one::<PathBuf>("tls-ca-file").cloned(),
            tls_fingerprint: s("tls-fingerprint"),
            // Checked by clap (`mechanism_value`).
            auth: s("auth").and_then(|v| AuthMethod::parse(&v).ok()),
            helo: s("helo"),
            timeout: m.get_one::<u64>("timeout").copied(),
            ..Account::default()
        };
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
    } else if let Some(name) = s("account") {
        config.account(&name)?;
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
            (direct_route(m, &config), "[send] direct = true".to_string())
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
    let queue_dir = m
        .get_one::<PathBuf>("queue-dir")
        .cloned()
        .unwrap_or_else(|| Spool::default_dir(&config));
    Ok(Plan {
        no_queue: m.get_flag("no-queue") || config.send.no_queue,
        queue_dir,
        verbose: m.get_count("verbose") > 0,
        route,
        why,
        config,
        opts,
    })
}

fn direct_route(m: &ArgMatches, config: &Config) -> Route {
    Route::Direct {
        resolver: m
            .get_one::<String>("resolver")
            .cloned()
            .or_else(|| config.send.resolver.clone()),
        mx_port: m.get_one::<u16>("mx-port").copied().or(config.send.mx_port),
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

/// `-bs`: an SMTP server dialogue on stdin/stdout; each message is sent (or
/// queued) as usual when its DATA ends, and the reply says how it went.
fn run_bs(m: &ArgMatches, ctx: &mut Ctx) -> Result<()> {
    let host = hostname();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let say = |ctx: &mut Ctx, s: &str| {
        ctx.line(&format!("{s}\r"));
        ctx.flush();
    };
    say(ctx, &format!("220 {host} ESMTP postline mail-send"));
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io("reading the SMTP dialogue", &e))?;
        if n == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        let upper = text.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("");
        match verb {
            "EHLO" => say(
                ctx,
                &format!(
                    "250-{host}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES"
                ),
            ),
            "HELO" => say(ctx, &format!("250 {host}")),
            "NOOP" => say(ctx, "250 2.0.0 Ok"),
            "RSET" => {
                from = None;
                rcpts.clear();
                say(ctx, "250 2.0.0 Ok");
            }
            "QUIT" => {
                say(ctx, "221 2.0.0 Bye");
                return Ok(());
            }
            "VRFY" => say(ctx, "252 2.0.0 Cannot verify; send some mail"),
            "MAIL" if upper.starts_with("MAIL FROM:") => {
                if from.is_some() {
                    say(ctx, "503 5.5.1 Nested MAIL command");
                    continue;
                }
                from = Some(path_arg(&text[10..]));
                say(ctx, "250 2.1.0 Ok");
            }
            "RCPT" if upper.starts_with("RCPT TO:") => {
                if from.is_none() {
                    say(ctx, "503 5.5.1 Need MAIL first");
                    continue;
                }
                let r = path_arg(&text[8..]);
                if r.is_empty() {
                    say(ctx, "501 5.1.3 Bad recipient address syntax");
                    continue;
                }
                rcpts.push(r);
                say(ctx, "250 2.1.5 Ok");
            }
            "DATA" => {
                let Some(f) = from.clone() else {
                    say(ctx, "503 5.5.1 Need MAIL first");
                    continue;
                };
                if rcpts.is_empty() {
                    say(ctx, "554 5.5.1 No valid recipients");
                    continue;
                }
                say(ctx, "354 End data with <CR><LF>.<CR><LF>");
                let mut body = Vec::new();
                loop {
                    line.clear();
                    let n = input
                        .read_until(b'\n', &mut line)
                        .map_err(|e| Error::io("reading the SMTP dialogue", &e))?;
                    if n == 0 {
                        // The client went away mid-message: nothing accepted.
                        return Err(Error::new(
                            Kind::Data,
                            "-bs dialogue",
                            "input ended inside DATA; nothing was sent",
                        ));
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let l: &[u8] = if line.starts_with(b"..") {
                        &line[1..]
                    } else {
                        &line
                    };
                    body.extend_from_slice(l);
                }
                let outcome =
                    prepare(m, body, std::mem::take(&mut rcpts), Some(f)).and_then(|(msg, env)| {
                        let p = plan(m, &env)?;
                        send_one(&p, &env, &msg, ctx)
                    });
                from = None;
                match outcome {
                    Ok(Result1::Done(None)) => say(ctx, "250 2.0.0 Ok: delivered"),
                    Ok(Result1::Done(Some(id))) => {
                        say(ctx, &format!("250 2.0.0 Ok: queued as {id}"))
                    }
                    Ok(Result1::Temporary(r)) => say(ctx, &format!("451 4.3.0 {}", one_line(&r))),
                    Ok(Result1::Refused(r)) => say(ctx, &format!("554 5.0.0 {}", one_line(&r))),
                    Err(e) if e.kind().is_temporary() => {
                        say(ctx, &format!("451 4.3.0 {}", one_line(&e.to_string())))
                    }
                    Err(e) => say(ctx, &format!("554 5.0.0 {}", one_line(&e.to_string()))),
                }
            }
            _ => say(ctx, "502 5.5.2 Command not recognized"),
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// The address in `<addr> PARAMS` (or a bare `addr`).
fn path_arg(s: &str) -> String {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('<') {
        return rest.split('>').next().unwrap_or("").trim().to_string();
    }
    s.split(' ').next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        assert_eq!(
            parse_address_list(r#""Doe, John" <j@x.org>, b@y.org (Bee), Group: c@z, d@z;, <e@w>"#),
            vec!["j@x.org", "b@y.org", "c@z", "d@z", "e@w"]
        );
        assert_eq!(
            parse_address_list("undisclosed-recipients:;"),
            Vec::<String>::new()
        );
        assert_eq!(parse_address_list("Name a@b"), vec!["a@b"]);
    }

    #[test]
    fn lone_dot_ends_input_without_i() {
        let mut v = b"a\n.\nb\n".to_vec();
        cut_at_lone_dot(&mut v);
        assert_eq!(v, b"a\n");
        let mut v = b"a\n..\nb\n".to_vec();
        cut_at_lone_dot(&mut v);
        assert_eq!(v, b"a\n..\nb\n");
    }

    #[test]
    fn dates_look_right() {
        let d = rfc5322_now();
        assert!(d.ends_with(" +0000") && d.len() > 25, "{d}");
    }

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
