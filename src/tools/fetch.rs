//! mail-fetch: fetch mail over IMAP and POP3 into a Maildir, an mbox, an
//! MDA, an SMTP/LMTP server or stdout.
//!
//! This module owns the command line: accounts from the config file and
//! one-off flags, one thread (and one connection) per account, the
//! fetchmail-style exit codes (the most serious outcome of all accounts
//! wins), the progress line on a terminal, `--daemon` and `--idle`. The
//! engine and its guarantees are in `fetch`.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};

use crate::config::{self, Account, Config, Service};
use crate::exit::{Error, Kind, Result};
use crate::fetch::state::StateFile;
use crate::fetch::target::SharedOut;
use crate::fetch::{self, Class, Job, Logs, Progress, Protocol, Report};
use crate::proto::transcript::Transcript;
use crate::tools::Ctx;
use crate::tools::conn::{Conn, Logins};

/// Exit code: no new mail (fetchmail's 1).
pub const NO_MAIL: i32 = 1;

/// The clap command of mail-fetch.
pub fn command() -> Command {
    let s = |name: &'static str, value: &'static str, help: &'static str| {
        Arg::new(name).long(name).value_name(value).help(help)
    };
    let flag = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .help(help)
    };
    let cmd = Command::new("mail-fetch")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Fetch mail over POP3 and IMAP into Maildir, mbox, an MDA, SMTP/LMTP or stdout")
        .long_about(
            "Fetch new mail from every [account.NAME] with protocol imap or pop3 in the \
             config file (or the accounts NAME...), or from one server given with --imap or \
             --pop3, and store it in the account's target. Messages are deleted on the server \
             only once stored durably, unless --keep.",
        )
        .after_help(
            "Exit status (as fetchmail): 0 mail fetched, 1 no new mail, 2 connection or TLS \
             error, 3 authentication failed, 4 protocol error, 5 configuration error, \
             10 a message could not be stored, 64 bad command line.\n\nExamples:\n  \
             mail-fetch\n  mail-fetch --imap imap.example.org --user me \
             --password-command 'pass mail' --keep --maildir ~/Maildir/",
        )
        .arg(
            Arg::new("account")
                .value_name("NAME")
                .num_args(0..)
                .help("Accounts to fetch (default: every imap/pop3 account in the config)"),
        )
        .arg(s(
            "config",
            "FILE",
            "Read accounts from FILE [default: ~/.config/postline/config.toml]",
        ))
        .arg(
            s(
                "imap",
                "HOST[:PORT]",
                "Fetch from this IMAP server (no config needed)",
            )
            .conflicts_with("pop3"),
        )
        .arg(s(
            "pop3",
            "HOST[:PORT]",
            "Fetch from this POP3 server (no config needed)",
        ));
    super::conn::args(cmd, Logins::Mailbox)
        .arg(
            s(
                "folder",
                "NAME",
                "IMAP folder to fetch (repeatable; default INBOX)",
            )
            .action(ArgAction::Append),
        )
        .arg(flag(
            "keep",
            "Leave messages on the server; fetch only new ones next time",
        ))
        .arg(flag(
            "unseen",
            "IMAP: new mail is what is UNSEEN (and is marked \\Seen once stored)",
        ))
        .arg(flag(
            "mark-seen",
            "IMAP: mark kept messages \\Seen once stored",
        ))
        .arg(
            s(
                "max-messages",
                "N",
                "Fetch at most N messages per account and run",
            )
            .value_parser(value_parser!(u64)),
        )
        .arg(
            s(
                "max-size",
                "BYTES",
                "Leave messages larger than BYTES on the server (reported)",
            )
            .value_parser(value_parser!(u64)),
        )
        .arg(
            s(
                "batch",
                "N",
                "Messages per FETCH and per grouped sync [default: 250]",
            )
            .value_parser(value_parser!(u64).range(1..100_000)),
        )
        .arg(s("maildir", "DIR", "Store into the Maildir DIR"))
        .arg(s("mbox", "FILE", "Append to the mbox FILE"))
        .arg(s(
            "mda",
            "COMMAND",
            "Pipe each message to COMMAND (sh -c; %F sender, %T recipient)",
        ))
        .arg(
            s(
                "mda-timeout",
                "SECONDS",
                "Kill an MDA still running after SECONDS; the message stays [default: 600]",
            )
            .value_parser(value_parser!(u64).range(1..)),
        )
        .arg(s(
            "smtp",
            "HOST[:PORT]",
            "Hand each message to this SMTP server (plain, port 25)",
        ))
        .arg(s(
            "lmtp",
            "HOST[:PORT]|PATH",
            "Hand each message to this LMTP server (port 24) or unix socket",
        ))
        .arg(flag(
            "stdout",
            "Write an mboxrd stream to stdout; nothing is deleted on the server",
        ))
        .arg(s(
            "recipient",
            "ADDR",
            "Envelope recipient for --mda, --smtp, --lmtp [default: your login name]",
        ))
        .arg(
            s(
                "daemon",
                "SECONDS",
                "Poll forever, every SECONDS (longer after errors)",
            )
            .value_parser(value_parser!(u64).range(1..)),
        )
        .arg(
            flag(
                "idle",
                "IMAP: wait for new mail with IDLE on every account and folder, forever",
            )
            .conflicts_with("daemon"),
        )
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::SetTrue)
                .help("Print the protocol transcript on stderr (credentials redacted)"),
        )
        .arg(
            Arg::new("quiet")
                .short('q')
                .long("quiet")
                .action(ArgAction::SetTrue)
                .conflicts_with("verbose")
                .help("Print only errors"),
        )
}

/// mail-fetch's command line, read once.
struct Settings {
    /// The account settings the flags give (overriding the config's).
    over: Account,
    /// `--stdout`.
    stdout: bool,
    /// The account NAMEs given.
    names: Vec<String>,
    /// `--batch`.
    batch: Option<usize>,
    /// `--config`.
    config: Option<String>,
    verbose: bool,
    quiet: bool,
    idle: bool,
    /// `--daemon SECONDS`.
    daemon: Option<u64>,
}

impl Settings {
    fn from_matches(m: &ArgMatches) -> Result<Settings> {
        Ok(Settings {
            over: overlay(m)?,
            stdout: m.get_flag("stdout"),
            names: m
                .get_many::<String>("account")
                .map(|v| v.cloned().collect())
                .unwrap_or_default(),
            batch: m.get_one::<u64>("batch").map(|&b| b as usize),
            config: m.get_one::<String>("config").cloned(),
            verbose: m.get_flag("verbose"),
            quiet: m.get_flag("quiet"),
            idle: m.get_flag("idle"),
            daemon: m.get_one::<u64>("daemon").copied(),
        })
    }
}

/// The account settings the flags give (overriding the config's).
fn overlay(m: &ArgMatches) -> Result<Account> {
    let get = |k: &str| m.get_one::<String>(k).cloned();
    let conn = Conn::from_matches(m)?;
    let mut a = Account {
        folders: m
            .get_many::<String>("folder")
            .map(|v| v.cloned().collect())
            .unwrap_or_default(),
        keep: m.get_flag("keep"),
        unseen: m.get_flag("unseen"),
        mark_seen: m.get_flag("mark-seen").then_some(true),
        max_messages: m.get_one::<u64>("max-messages").copied(),
        max_size: m.get_one::<u64>("max-size").copied(),
        maildir: get("maildir"),
        mbox: get("mbox"),
        mda: get("mda"),
        mda_timeout: m.get_one::<u64>("mda-timeout").copied(),
        smtp: get("smtp"),
        lmtp: get("lmtp"),
        recipient: get("recipient"),
        ..Account::default()
    };
    a = conn.apply(a);
    if let Some(f) = &a.tls_fingerprint {
        crate::proto::tls::parse_fingerprint(f)
            .map_err(|e| Error::new(Kind::Usage, "--tls-fingerprint", e))?;
    }
    let targets = [&a.maildir, &a.mbox, &a.mda, &a.smtp, &a.lmtp]
        .iter()
        .filter(|t| t.is_some())
        .count()
        + usize::from(m.get_flag("stdout"));
    if targets > 1 {
        return Err(Error::new(
            Kind::Usage,
            "targets",
            "give at most one of --maildir, --mbox, --mda, --smtp, --lmtp, --stdout",
        ));
    }
    for (flag, proto) in [("imap", Service::Imap), ("pop3", Service::Pop3)] {
        if let Some(hp) = get(flag) {
            let (host, port) = crate::send::split_host_port(&hp, 0)?;
            a.protocol = Some(proto);
            a.host = Some(host);
            a.port = (port != 0).then_some(port);
        }
    }
    Ok(a)
}

/// `base` with every setting `over` has replacing its own.
fn merge(base: &Account, over: &Account, stdout: bool) -> Account {
    let mut a = base.clone();
    macro_rules! take {
        ($($f:ident),*) => { $( if over.$f.is_some() { a.$f = over.$f.clone(); } )* };
    }
    take!(
        tls,
        tls_ca_file,
        tls_fingerprint,
        user,
        password_command,
        password_env,
        auth,
        timeout,
        mda_timeout,
        mark_seen,
        max_messages,
        max_size,
        recipient
    );
    if over.password_command.is_some() {
        a.password_env = None;
    }
    if over.password_env.is_some() {
        a.password_command = None;
    }
    if !over.folders.is_empty() {
        a.folders = over.folders.clone();
    }
    a.keep |= over.keep;
    a.unseen |= over.unseen;
    let target_given = stdout
        || [&over.maildir, &over.mbox, &over.mda, &over.smtp, &over.lmtp]
            .iter()
            .any(|t| t.is_some());
    if target_given {
        a.maildir = over.maildir.clone();
        a.mbox = over.mbox.clone();
        a.mda = over.mda.clone();
        a.smtp = over.smtp.clone();
        a.lmtp = over.lmtp.clone();
    }
    a
}

fn jobs(s: &Settings) -> Result<Vec<Job>> {
    let (over, stdout, names, batch) = (&s.over, s.stdout, &s.names, s.batch);
    let state_dir = config::state_dir().join("fetch");
    let mut out = Vec::new();
    let finish = |mut j: Job| {
        if let Some(b) = batch {
            j.batch = b;
        }
        if stdout {
            j.target = fetch::target::Spec::Stdout;
            j.keep = true;
        }
        j
    };
    if over.host.is_some() {
        if !names.is_empty() {
            return Err(Error::new(
                Kind::Usage,
                "accounts",
                "give either account NAMEs or --imap/--pop3, not both",
            ));
        }
        let a = merge(&Account::default(), over, stdout);
        let a = Account {
            protocol: over.protocol,
            host: over.host.clone(),
            port: over.port,
            ..a
        };
        let a = if a.user.is_none() {
            return Err(Error::new(Kind::Usage, "--user", "a login name is needed"));
        } else {
            a
        };
        let name = format!(
            "{}@{}",
            a.user.clone().unwrap_or_default(),
            a.host.clone().unwrap_or_default()
        );
        out.push(finish(Job::from_account(&name, &a, &state_dir)?));
        return Ok(out);
    }
    let cfg = Config::load(s.config.as_deref().map(std::path::Path::new))?;
    let fetchable = |a: &Account| matches!(a.protocol, Some(Service::Imap | Service::Pop3));
    let chosen: Vec<(String, Account)> = if names.is_empty() {
        cfg.account
            .iter()
            .filter(|(_, a)| fetchable(a))
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect()
    } else {
        let mut v = Vec::new();
        for n in names {
            v.push((n.clone(), cfg.account(n)?.clone()));
        }
        v
    };
    if chosen.is_empty() {
        return Err(Error::new(
            Kind::Config,
            "no accounts to fetch",
            "give --imap or --pop3 HOST, or add [account.NAME] blocks with protocol = \"imap\" or \"pop3\" to the config file",
        ));
    }
    for (n, a) in chosen {
        let mut job = Job::from_account(&n, &merge(&a, over, stdout), &state_dir)?;
        // Named after the account: two accounts on one mailbox (say, one
        // per folder) keep their own state and lock.
        job.state = StateFile::for_account(&state_dir, &n, cfg.account.keys().map(String::as_str))
            .path()
            .to_path_buf();
        out.push(finish(job));
    }
    Ok(out)
}

fn transcript(verbose: bool, name: &str) -> Logs {
    if verbose {
        Logs {
            source: Transcript::to(Box::new(io::stderr()), format!("mail-fetch: {name}: ")),
            target: Transcript::to(
                Box::new(io::stderr()),
                format!("mail-fetch: {name}: target: "),
            ),
        }
    } else {
        Logs::default()
    }
}

/// A human size: 1234 -> "1.2 kB".
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} bytes")
    }
}

struct Printer {
    quiet: bool,
}

impl Printer {
    /// Print a report; returns its worst class and whether mail came.
    fn print(&self, ctx: &mut Ctx, job: &Job, r: &Report) -> (Option<Class>, bool) {
        let server = job.server();
        for n in &r.notes {
            if !self.quiet {
                ctx.warn(&format!("{} ({server}): {n}", job.name));
            }
        }
        for (_, e) in &r.errors {
            ctx.warn(&format!("{} ({server}): {e}", job.name));
        }
        if !self.quiet && r.fetched > 0 {
            ctx.warn(&format!(
                "{}: {} message{} ({}) from {server}{}",
                job.name,
                r.fetched,
                if r.fetched == 1 { "" } else { "s" },
                human(r.bytes),
                if r.deleted > 0 {
                    format!(", {} deleted there", r.deleted)
                } else {
                    String::new()
                }
            ));
        } else if !self.quiet && r.deleted > 0 {
            // Messages stored by an earlier run (one with --keep, or one
            // that died before deleting) went now: said, though no mail came.
            ctx.warn(&format!(
                "{}: no new mail from {server}, {} deleted there",
                job.name, r.deleted
            ));
        }
        (r.errors.iter().map(|(c, _)| *c).max(), r.fetched > 0)
    }
}

/// Show "N messages, X MB, R msg/s" on a terminal until `done`.
fn progress_thread(p: Arc<Progress>, done: Arc<std::sync::atomic::AtomicBool>) {
    let start = Instant::now();
    let mut shown = false;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let n = p.messages.load(Ordering::Relaxed);
        if n == 0 {
            continue;
        }
        let b = p.bytes.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64().max(0.001);
        let _ = write!(
            io::stderr(),
            "\rmail-fetch: {n} messages, {}, {:.0} msg/s, {}/s   ",
            human(b),
            n as f64 / secs,
            human((b as f64 / secs) as u64)
        );
        shown = true;
    }
    if shown {
        let _ = write!(io::stderr(), "\r\x1b[K");
    }
}

/// Run mail-fetch.
pub fn run(m: &ArgMatches, ctx: &mut Ctx) -> Result<()> {
    let (s, jobs) = match Settings::from_matches(m).and_then(|s| jobs(&s).map(|j| (s, j))) {
        Ok(sj) => sj,
        Err(e) if e.kind() == Kind::Usage => return Err(e),
        Err(e) => {
            ctx.report(&e);
            ctx.set_exit_code(Class::Config.code());
            return Ok(());
        }
    };
    let (verbose, quiet) = (s.verbose, s.quiet);
    let printer = Printer { quiet };
    let stdout: Option<SharedOut> = s
        .stdout
        .then(|| Arc::new(Mutex::new(Box::new(io::stdout()) as Box<dyn Write + Send>)));
    let progress = Arc::new(Progress::default());
    let show_progress = !quiet && !verbose && io::stderr().is_terminal();

    if s.idle {
        return idle(jobs, ctx, &printer, verbose, stdout, progress);
    }
    if let Some(secs) = s.daemon {
        let mut failures = 0u32;
        loop {
            let (worst, _) = round(
                &jobs,
                ctx,
                &printer,
                verbose,
                stdout.as_ref(),
                &progress,
                false,
            );
            failures = if worst.is_some() {
                failures.saturating_add(1)
            } else {
                0
            };
            // Back off after errors: twice as long per failed round, at most
            // 8 times the interval (and never over a day).
            let factor = 1u64 << failures.min(3);
            std::thread::sleep(Duration::from_secs(secs.saturating_mul(factor).min(86_400)));
        }
    }
    let (worst, any) = round(
        &jobs,
        ctx,
        &printer,
        verbose,
        stdout.as_ref(),
        &progress,
        show_progress,
    );
    ctx.set_exit_code(match worst {
        Some(c) => c.code(),
        None if any => 0,
        None => NO_MAIL,
    });
    Ok(())
}

/// Fetch every job once, concurrently (one thread and connection each).
fn round(
    jobs: &[Job],
    ctx: &mut Ctx,
    printer: &Printer,
    verbose: bool,
    stdout: Option<&SharedOut>,
    progress: &Arc<Progress>,
    show_progress: bool,
) -> (Option<Class>, bool) {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reports: Vec<Report> = std::thread::scope(|s| {
        let bar = show_progress.then(|| {
            let p = progress.clone();
            let d = done.clone();
            s.spawn(move || progress_thread(p, d))
        });
        let handles: Vec<_> = jobs
            .iter()
            .map(|j| {
                let p = progress.clone();
                s.spawn(move || fetch::run(j, transcript(verbose, &j.name), &p, stdout))
            })
            .collect();
        let reports = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    let mut r = Report::default();
                    r.errors.push((
                        Class::Protocol,
                        "internal error: the fetch thread panicked".into(),
                    ));
                    r
                })
            })
            .collect();
        done.store(true, Ordering::Relaxed);
        if let Some(b) = bar {
            let _ = b.join();
        }
        reports
    });
    let mut worst = None;
    let mut any = false;
    for (j, r) in jobs.iter().zip(&reports) {
        let (w, got) = printer.print(ctx, j, r);
        worst = worst.max(w);
        any |= got;
    }
    (worst, any)
}

/// `--idle`: one thread per IMAP account and folder, each fetching, then
/// waiting with IDLE, forever; reconnecting with backoff after errors.
/// POP3 accounts are polled every 5 minutes.
fn idle(
    jobs: Vec<Job>,
    ctx: &mut Ctx,
    printer: &Printer,
    verbose: bool,
    stdout: Option<SharedOut>,
    progress: Arc<Progress>,
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<(Job, Report)>();
    let mut units = Vec::new();
    for j in jobs {
        if j.protocol == Protocol::Imap {
            for f in &j.folders {
                let mut one = j.clone();
                one.folders = vec![f.clone()];
                units.push(one);
            }
        } else {
            units.push(j);
        }
    }
    for job in units {
        let tx = tx.clone();
        let p = progress.clone();
        let out = stdout.clone();
        std::thread::spawn(move || {
            let mut backoff = Duration::from_secs(5);
            loop {
                let mut r = Report::default();
                let t = transcript(verbose, &job.name);
                let res = if job.protocol == Protocol::Imap {
                    fetch::run_imap(
                        &job,
                        t,
                        &p,
                        out.as_ref(),
                        &mut r,
                        Some(Duration::from_secs(29 * 60)),
                    )
                } else {
                    r = fetch::run(&job, t, &p, out.as_ref());
                    Ok(())
                };
                let failed = res.is_err() || !r.errors.is_empty();
                if let Err(e) = res {
                    r.errors.push((Class::of(&e), e.to_string()));
                }
                if tx.send((job.clone(), r)).is_err() {
                    return;
                }
                if job.protocol == Protocol::Pop3 && !failed {
                    std::thread::sleep(Duration::from_secs(300));
                    continue;
                }
                std::thread::sleep(backoff);
                backoff = if failed {
                    (backoff * 2).min(Duration::from_secs(600))
                } else {
                    Duration::from_secs(5)
                };
            }
        });
    }
    drop(tx);
    for (job, r) in rx {
        printer.print(ctx, &job, &r);
        ctx.flush();
    }
    Ok(())
}
