//! mail-fetch's engine: one account's run. Connect, log in, find the new
//! messages (IMAP: by UID above what is remembered, or `UNSEEN`; POP3: by
//! UIDL), fetch them in batches, hand each batch to the target, remember
//! what was stored, then delete it on the server (or mark it \Seen).
//!
//! Guarantee (the order of steps is the whole point): a message is deleted
//! on the server only after the target confirmed it durable **and** the
//! state file recording it as stored is durable. So a crash or `kill -9`
//! at any moment leaves each message in one of three states: not stored
//! (fetched again next run), stored and recorded (never stored again; in
//! delete mode deleted at the start of the next run), or stored and
//! deleted. The one window left, a crash between the target's
//! confirmation and the state write, is closed for Maildir and mbox
//! targets: the batch is recorded as in flight before the target sees it,
//! and the next run looks for those messages in the target before storing
//! them (an MDA or an SMTP/LMTP server cannot be asked: there one batch may
//! be delivered twice). A server that changes UIDVALIDITY makes every
//! message still in the folder new again, as with fetchmail and getmail.

pub mod run;
pub mod source;
pub mod state;
pub mod target;

pub use source::pop3::POP3_DEFAULT_MAX_SIZE;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use crate::config::{Account, AuthMethod, Service};
use crate::exit::{Error, Kind, Origin, Result};
use crate::proto::sasl::Mechanism;
use crate::proto::tls::{self, TlsMode, TlsOptions};
use crate::proto::transcript::Transcript;

use state::StateFile;
use target::{SharedOut, Spec};

/// Messages per `UID FETCH` / per grouped sync, at most.
pub const BATCH_MESSAGES: usize = 250;
/// Bytes per batch, at most (when sizes are known).
pub const BATCH_BYTES: u64 = 32 << 20;

/// The fetch protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// IMAP4rev1.
    Imap,
    /// POP3.
    Pop3,
}

/// A POP3 login that is not SASL (`auth = "apop"` or `"user"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopLogin {
    /// APOP (RFC 1939): an MD5 digest of the greeting's timestamp and the
    /// password.
    Apop,
    /// USER and PASS.
    User,
}

/// How bad a failure is, in fetchmail's terms; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Another mail-fetch is fetching this account right now (fetchmail 8).
    Locked,
    /// Connection, TLS or socket trouble (fetchmail 2).
    Connection,
    /// The server said something we did not expect (4).
    Protocol,
    /// Credentials refused (3).
    Auth,
    /// A message could not be stored (10).
    Delivery,
    /// The configuration or command line is wrong (5).
    Config,
}

impl Class {
    /// The exit code (fetchmail's numbers).
    pub fn code(self) -> i32 {
        match self {
            Class::Locked => crate::exit::FETCH_LOCKED,
            Class::Connection => crate::exit::FETCH_CONNECTION,
            Class::Auth => crate::exit::FETCH_AUTH,
            Class::Protocol => crate::exit::FETCH_PROTOCOL,
            Class::Config => crate::exit::FETCH_CONFIG,
            Class::Delivery => crate::exit::FETCH_DELIVERY,
        }
    }

    /// The class of an error, from where it came from and its kind:
    ///
    /// - the network and TLS: a connection error (2); the peer breaking
    ///   the protocol: 4; credentials refused: 3;
    /// - this machine: the configuration (5) when the kind says so, a lock
    ///   held by another process (8: a local `WouldBlock`), else a message
    ///   that could not be stored (10);
    /// - an error that does not say where it came from is classed by its
    ///   kind alone, as errors of the server were before they carried an
    ///   origin: temporary is a connection error, a refusal of credentials
    ///   an auth error, a bad configuration 5, anything else 4.
    pub fn of(e: &Error) -> Class {
        match e.origin() {
            Origin::Network | Origin::Tls => Class::Connection,
            Origin::Protocol => Class::Protocol,
            Origin::Auth => Class::Auth,
            Origin::Local => match e.kind() {
                Kind::Config | Kind::Usage => Class::Config,
                _ if e.io_kind() == Some(std::io::ErrorKind::WouldBlock) => Class::Locked,
                _ => Class::Delivery,
            },
            Origin::Unknown => match e.kind() {
                Kind::Temporary => Class::Connection,
                Kind::Auth | Kind::NoPerm => Class::Auth,
                Kind::Config | Kind::Usage => Class::Config,
                _ => Class::Protocol,
            },
        }
    }
}

/// Everything one account's run needs.
#[derive(Debug, Clone)]
pub struct Job {
    /// The account's name (config) or `user@host` (one-off).
    pub name: String,
    /// IMAP or POP3.
    pub protocol: Protocol,
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// TLS verification options.
    pub tls_opts: TlsOptions,
    /// Connect/read timeout.
    pub timeout: Duration,
    /// Login name.
    pub user: String,
    /// The account settings the password comes from.
    pub account: Account,
    /// Configured SASL mechanism.
    pub auth: Option<Mechanism>,
    /// POP3 only: APOP or USER/PASS instead of SASL.
    pub pop_login: Option<PopLogin>,
    /// IMAP folders.
    pub folders: Vec<String>,
    /// Leave messages on the server.
    pub keep: bool,
    /// IMAP: find new mail by UNSEEN.
    pub unseen: bool,
    /// IMAP: set \Seen on stored messages (kept ones).
    pub mark_seen: bool,
    /// At most this many messages per run.
    pub max_messages: Option<u64>,
    /// Leave larger messages on the server.
    pub max_size: Option<u64>,
    /// Where messages go.
    pub target: Spec,
    /// Envelope recipient for MDA/SMTP/LMTP.
    pub recipient: String,
    /// The state file.
    pub state: PathBuf,
    /// Messages per batch (one FETCH, one grouped sync, one state write).
    pub batch: usize,
}

impl Job {
    /// Build a job from an account block. `name` names it in messages and
    /// picks its state file.
    pub fn from_account(name: &str, a: &Account, state_dir: &std::path::Path) -> Result<Job> {
        let cfg = |what: &str| Error::new(Kind::Config, format!("account {name}"), what);
        let protocol = match a.protocol {
            Some(Service::Imap) => Protocol::Imap,
            Some(Service::Pop3) => Protocol::Pop3,
            Some(other) => {
                let other = other.name();
                return Err(cfg(&format!(
                    "protocol {other:?} cannot be fetched from (use imap or pop3)"
                )));
            }
            None => return Err(cfg("no protocol (set protocol = \"imap\" or \"pop3\")")),
        };
        let host = a.host.clone().ok_or_else(|| cfg("no host"))?;
        let tls = a.tls.unwrap_or(TlsMode::Starttls);
        let port = a.port.unwrap_or(match (protocol, tls) {
            (Protocol::Imap, TlsMode::Implicit) => 993,
            (Protocol::Imap, _) => 143,
            (Protocol::Pop3, TlsMode::Implicit) => 995,
            (Protocol::Pop3, _) => 110,
        });
        let user = a.user.clone().ok_or_else(|| cfg("no user"))?;
        let (pop_login, auth) = match (protocol, a.auth) {
            (_, None) => (None, None),
            (_, Some(AuthMethod::Sasl(m))) => (None, Some(m)),
            (Protocol::Pop3, Some(AuthMethod::Apop)) => (Some(PopLogin::Apop), None),
            (Protocol::Pop3, Some(AuthMethod::User)) => (Some(PopLogin::User), None),
            (Protocol::Imap, Some(AuthMethod::Apop | AuthMethod::User)) => {
                return Err(cfg("auth apop and user are POP3 logins"));
            }
        };
        let tls_opts = a.tls_options()?;
        let targets: Vec<Spec> = [
            a.maildir.clone().map(Spec::Mailbox),
            a.mbox.clone().map(Spec::Mbox),
            a.mda.clone().map(Spec::Mda),
            a.smtp.clone().map(Spec::Smtp),
            a.lmtp.clone().map(Spec::Lmtp),
        ]
        .into_iter()
        .flatten()
        .collect();
        if targets.len() > 1 {
            return Err(cfg("more than one target (maildir, mbox, mda, smtp, lmtp)"));
        }
        let target = match targets.into_iter().next() {
            Some(t) => t,
            None => Spec::Mailbox(crate::config::default_maildir().ok_or_else(|| {
                cfg("no target and no default Maildir ($MAILDIR or $HOME unset)")
            })?),
        };
        let recipient = a.recipient.clone().unwrap_or_else(local_user);
        let folders = if a.folders.is_empty() {
            vec!["INBOX".to_string()]
        } else {
            a.folders.clone()
        };
        let key = format!(
            "{}-{}-{}-{}",
            match protocol {
                Protocol::Imap => "imap",
                Protocol::Pop3 => "pop3",
            },
            user,
            host,
            port
        );
        Ok(Job {
            name: name.to_string(),
            protocol,
            host,
            port,
            tls,
            tls_opts,
            timeout: Duration::from_secs(a.timeout.unwrap_or(60)),
            user,
            account: a.clone(),
            auth,
            pop_login,
            folders,
            keep: a.keep,
            unseen: a.unseen,
            mark_seen: a.mark_seen.unwrap_or(false),
            max_messages: a.max_messages,
            max_size: a.max_size,
            target,
            recipient,
            state: StateFile::new(state_dir, &key).path().to_path_buf(),
            batch: BATCH_MESSAGES,
        })
    }

    /// `host:port`.
    pub fn server(&self) -> String {
        tls::display_host_port(&self.host, self.port)
    }
}

/// The login name of the running user (the default recipient).
fn local_user() -> String {
    crate::sysnames::login_name().to_string()
}

/// The `-v` transcripts of one account's run: the IMAP/POP3 dialogue and
/// the SMTP/LMTP one of the target.
#[derive(Default)]
pub struct Logs {
    /// The server the mail is fetched from.
    pub source: Transcript,
    /// The SMTP/LMTP target, if that is the target.
    pub target: Transcript,
}

/// Counters shared with the progress display (all accounts together).
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages stored.
    pub messages: AtomicU64,
    /// Bytes stored.
    pub bytes: AtomicU64,
    /// Set to stop a daemon/idle loop.
    pub stop: AtomicBool,
}

/// What one account's run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Messages stored.
    pub fetched: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Messages deleted on the server.
    pub deleted: u64,
    /// Notes that are not failures (a UIDVALIDITY change).
    pub notes: Vec<String>,
    /// Failures, each with its class: messages left on the server (over
    /// the size limit, refused or deferred by the target) and the error
    /// that ended the run, if any.
    pub errors: Vec<(Class, String)>,
}

impl Report {
    fn fail(&mut self, class: Class, msg: impl Into<String>) {
        self.errors.push((class, msg.into()));
    }
}

/// Run one account: fetch everything new, store it, delete what was stored
/// (unless keeping). Never fails as a whole: failures are in the report.
pub fn run(job: &Job, logs: Logs, progress: &Progress, stdout: Option<&SharedOut>) -> Report {
    let mut report = Report::default();
    let res = match job.protocol {
        Protocol::Imap => source::imap::run(job, logs, progress, stdout, &mut report, None),
        Protocol::Pop3 => source::pop3::run(job, logs, progress, stdout, &mut report),
    };
    if let Err(e) = res {
        report.fail(Class::of(&e), e.to_string());
    }
    report
}

/// The IMAP run. With `watch`, after the first pass IDLE on the (single)
/// folder and fetch again whenever it changes, until `progress.stop`.
/// The error that ended the run is returned (its class is
/// [`Class::of`] it); other failures are in the report.
pub fn run_imap(
    job: &Job,
    logs: Logs,
    progress: &Progress,
    stdout: Option<&SharedOut>,
    report: &mut Report,
    watch: Option<Duration>,
) -> Result<()> {
    source::imap::run(job, logs, progress, stdout, report, watch)
}
