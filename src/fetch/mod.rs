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

pub mod state;
pub mod target;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::Account;
use crate::exit::{Error, Kind, Result};
use crate::proto::imap::{FetchLimits, Fetched, Imap, Login, MAX_MESSAGE, MAX_UNTAGGED};
use crate::proto::sasl::{Mechanism, Secret};
use crate::proto::tls::{self, TlsMode, TlsOptions};
use crate::proto::transcript::Transcript;

use state::{Folder, StateFile};
use target::{Fate, Msg, SharedOut, Spec, Target};

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

    /// The class of a library error, by its kind.
    pub fn of(e: &Error) -> Class {
        match e.kind() {
            Kind::Temporary => Class::Connection,
            Kind::Auth | Kind::NoPerm => Class::Auth,
            Kind::Config | Kind::Usage => Class::Config,
            _ => Class::Protocol,
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
    /// POP3 only: `apop` or `user` (USER/PASS) instead of SASL.
    pub pop_login: Option<String>,
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
        let protocol = match a
            .protocol
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("imap") => Protocol::Imap,
            Some("pop3") | Some("pop") => Protocol::Pop3,
            Some(other) => {
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
        let lower = a.auth.as_deref().map(str::to_ascii_lowercase);
        let pop_login = match (protocol, lower.as_deref()) {
            (Protocol::Pop3, Some(m @ ("apop" | "user"))) => Some(m.to_string()),
            (Protocol::Imap, Some("apop" | "user")) => {
                return Err(cfg("auth apop and user are POP3 logins"));
            }
            _ => None,
        };
        let auth = match pop_login {
            Some(_) => None,
            None => a.auth.as_deref().map(Mechanism::parse).transpose()?,
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
        Protocol::Imap => run_imap(job, logs, progress, stdout, &mut report, None),
        Protocol::Pop3 => run_pop3(job, logs, progress, stdout, &mut report),
    };
    if let Err((class, e)) = res {
        report.fail(class, e.to_string());
    }
    report
}

type Failure = (Class, Error);

fn net<T>(r: Result<T>) -> std::result::Result<T, Failure> {
    r.map_err(|e| (Class::of(&e), e))
}

fn local<T>(r: Result<T>) -> std::result::Result<T, Failure> {
    r.map_err(|e| {
        let c = if matches!(e.kind(), Kind::Config | Kind::Usage) {
            Class::Config
        } else {
            Class::Delivery
        };
        (c, e)
    })
}

/// Hold the account's lock (`STATE.lock`, flock) for the run: two
/// mail-fetch processes on one account would fetch the same messages.
fn lock(job: &Job) -> std::result::Result<nix::fcntl::Flock<std::fs::File>, Failure> {
    use nix::fcntl::{Flock, FlockArg};
    let path = job.state.with_extension("lock");
    let ctx = format!("locking {}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| (Class::Delivery, Error::io(&*ctx, &e)))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| (Class::Delivery, Error::io(&*ctx, &e)))?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        let cause = if errno == nix::errno::Errno::EWOULDBLOCK {
            "another mail-fetch is fetching this account".to_string()
        } else {
            errno.desc().to_string()
        };
        (Class::Locked, Error::new(Kind::Temporary, ctx, cause))
    })
}

/// What every run needs before it connects: the password, the account
/// lock, the state and the open target (and whether deleting is allowed:
/// never with `--keep`, never into a target that cannot confirm storage).
struct Prepared {
    pass: Secret,
    _lock: nix::fcntl::Flock<std::fs::File>,
    sf: StateFile,
    st: state::State,
    target: Target,
    delete: bool,
}

fn prepare(
    job: &Job,
    stdout: Option<&SharedOut>,
    target_log: Transcript,
) -> std::result::Result<Prepared, Failure> {
    let pass = password(job)?;
    let lock = lock(job)?;
    let sf = StateFile::at(job.state.clone());
    let st = local(sf.load())?;
    let target = local(Target::open(
        &job.target,
        &job.recipient,
        stdout,
        target_log,
    ))?
    .with_mda_timeout(job.account.mda_timeout.map(std::time::Duration::from_secs));
    let delete = !job.keep && target.may_delete();
    Ok(Prepared {
        pass,
        _lock: lock,
        sf,
        st,
        target,
        delete,
    })
}

fn password(job: &Job) -> std::result::Result<Secret, Failure> {
    match job.account.password(&job.name) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err((
            Class::Config,
            Error::new(
                Kind::Config,
                format!("account {}", job.name),
                "no password_command or password_env (--password-command, --password-env)",
            ),
        )),
        Err(e) => Err((Class::Config, e)),
    }
}

/// Hand `batch` (id, wire bytes) to the target; returns the ids stored,
/// in order, and records the rest in the report. An error means the target
/// broke down: stop this account.
///
/// Before the target sees the batch, the state records it as in flight
/// (durably); ids in `suspects` (in flight when an earlier run died) are
/// first looked for in the target and not stored again when found.
#[allow(clippy::too_many_arguments)]
fn store_batch<I: Clone + std::fmt::Display>(
    job: &Job,
    target: &mut Target,
    batch: Vec<(I, Vec<u8>)>,
    progress: &Progress,
    report: &mut Report,
    st: &mut state::State,
    sf: &StateFile,
    folder: &str,
    suspects: &Suspects,
) -> std::result::Result<(Vec<I>, Option<Error>), Failure> {
    let mut ids = Vec::with_capacity(batch.len());
    let mut msgs = Vec::with_capacity(batch.len());
    for (id, data) in batch {
        ids.push(id);
        msgs.push(Msg::from_wire(data));
    }
    // Already stored by a run that died before recording it?
    let mut found = vec![false; msgs.len()];
    let suspect: Vec<usize> = (0..ids.len())
        .filter(|&i| suspects.ids.contains(&ids[i].to_string()))
        .collect();
    if !suspect.is_empty() {
        let refs: Vec<&Msg> = suspect.iter().map(|&i| &msgs[i]).collect();
        for (k, hit) in target
            .find_stored(suspects.since, suspects.mark, &refs)
            .into_iter()
            .enumerate()
        {
            found[suspect[k]] = hit;
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // A record left by a dead run is widened, never replaced: were it
    // replaced by this batch's (a later `since`, an mbox mark past the
    // messages that run stored), a kill before this batch is recorded would
    // hide those messages from the next run's search, which would then
    // store them a second time.
    let mark_now = target.mark();
    let (since, mark, mut id_set) = match st.inflight.get(folder) {
        Some(old) => (
            old.since.min(now.saturating_sub(2)),
            match (old.mark, mark_now) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            old.ids.clone(),
        ),
        None => (now.saturating_sub(2), mark_now, BTreeSet::new()),
    };
    id_set.extend(ids.iter().map(|i| i.to_string()));
    st.inflight.insert(
        folder.to_string(),
        state::Inflight {
            ids: id_set,
            since,
            mark,
        },
    );
    local(sf.save(st))?;
    let todo: Vec<usize> = (0..msgs.len()).filter(|&i| !found[i]).collect();
    let owned: Vec<Msg> = todo
        .iter()
        .map(|&i| Msg {
            data: std::mem::take(&mut msgs[i].data),
            sender: std::mem::take(&mut msgs[i].sender),
        })
        .collect();
    let (fates, err) = target.deliver(&owned);
    // An mbox repair that was refused or done is said, never silent.
    report.notes.extend(target.take_notes());
    let mut fate_of: Vec<Option<Fate>> = found
        .iter()
        .map(|&f| if f { Some(Fate::Stored) } else { None })
        .collect();
    for (k, f) in fates.into_iter().enumerate() {
        fate_of[todo[k]] = Some(f);
    }
    let size_of = |i: usize| -> u64 {
        match todo.iter().position(|&t| t == i) {
            Some(k) => owned[k].data.len() as u64,
            None => msgs[i].data.len() as u64,
        }
    };
    let mut stored = Vec::with_capacity(ids.len());
    for (i, f) in fate_of.iter().enumerate() {
        match f {
            Some(Fate::Stored) => {
                stored.push(ids[i].clone());
                if !found[i] {
                    let size = size_of(i);
                    report.fetched += 1;
                    report.bytes += size;
                    progress.messages.fetch_add(1, Ordering::Relaxed);
                    progress.bytes.fetch_add(size, Ordering::Relaxed);
                }
            }
            Some(Fate::Kept(why)) => report.fail(
                Class::Delivery,
                format!(
                    "message {} kept on the server for a later run: {}: {why}",
                    ids[i],
                    job.target.describe()
                ),
            ),
            Some(Fate::Refused(why)) => report.fail(
                Class::Delivery,
                format!(
                    "message {} left on the server: {}: {why}",
                    ids[i],
                    job.target.describe()
                ),
            ),
            None => {}
        }
    }
    Ok((stored, err))
}

/// Messages a dead run may have stored already: ids and since when.
#[derive(Debug)]
struct Suspects {
    ids: BTreeSet<String>,
    since: std::time::SystemTime,
    mark: Option<u64>,
}

/// The in-flight record of `folder` in the state, if any. It stays there
/// until a later batch of the same folder replaces it.
fn suspects(st: &state::State, folder: &str) -> Suspects {
    match st.inflight.get(folder) {
        Some(i) => Suspects {
            ids: i.ids.clone(),
            since: std::time::UNIX_EPOCH + Duration::from_secs(i.since),
            mark: i.mark,
        },
        None => Suspects {
            ids: BTreeSet::new(),
            since: std::time::UNIX_EPOCH,
            mark: None,
        },
    }
}

/// FETCH responses with a body the server sent without being asked (a UID
/// outside the batch, a second copy, none at all): never stored, never
/// deleted, reported once per folder with the first few UIDs.
#[derive(Debug, Default)]
struct Stray {
    count: u64,
    first: Vec<u32>,
    without_uid: u64,
}

impl Stray {
    fn note(&mut self, uid: Option<u32>) {
        self.count += 1;
        match uid {
            Some(u) if self.first.len() < 5 => self.first.push(u),
            Some(_) => {}
            None => self.without_uid += 1,
        }
    }

    fn report(&mut self, folder: &str, report: &mut Report) {
        if self.count == 0 {
            return;
        }
        let mut what: Vec<String> = self.first.iter().map(|u| format!("UID {u}")).collect();
        if self.without_uid > 0 {
            what.push(format!("{} without a UID", self.without_uid));
        }
        report.fail(
            Class::Protocol,
            format!(
                "{folder}: the server sent {} message{} not asked for ({}{}): ignored, neither stored nor deleted",
                self.count,
                if self.count == 1 { "" } else { "s" },
                what.join(", "),
                if (self.first.len() as u64 + self.without_uid) < self.count { ", ..." } else { "" },
            ),
        );
        *self = Stray::default();
    }
}

/// The IMAP run. With `watch`, after the first pass IDLE on the (single)
/// folder and fetch again whenever it changes, until `watch` says stop.
pub fn run_imap(
    job: &Job,
    logs: Logs,
    progress: &Progress,
    stdout: Option<&SharedOut>,
    report: &mut Report,
    watch: Option<Duration>,
) -> std::result::Result<(), Failure> {
    let Prepared {
        pass,
        _lock,
        sf,
        mut st,
        mut target,
        delete,
    } = prepare(job, stdout, logs.target)?;
    let mut c = net(Imap::connect(
        &job.host,
        job.port,
        job.tls,
        &job.tls_opts,
        job.timeout,
        logs.source,
    ))?;
    let how = match job.auth {
        Some(m) => Login::Sasl(m),
        None => Login::Auto,
    };
    net(c.login(&job.user, &pass, how))?;
    let mut budget = job.max_messages.unwrap_or(u64::MAX);
    loop {
        for folder in &job.folders {
            if budget == 0 {
                break;
            }
            let sel = match c.select(folder) {
                Ok(sel) => sel,
                // A folder that is missing or refused: report it, go on
                // with the others (the connection is still fine).
                Err(e) if e.kind() == Kind::Unavailable => {
                    report.fail(Class::Protocol, format!("folder {folder}: {e}"));
                    continue;
                }
                Err(e) => return Err((Class::of(&e), e)),
            };
            let mut f: Folder = st.imap.get(folder).cloned().unwrap_or_default();
            let search = |c: &mut Imap, f: &Folder| -> Result<Vec<u32>> {
                if job.unseen {
                    c.uid_search("UNSEEN")
                } else {
                    let from = f.done_through.saturating_add(1);
                    Ok(c.uid_search(&format!("UID {from}:*"))?
                        .into_iter()
                        .filter(|u| *u > f.done_through)
                        .collect())
                }
            };
            let mut present = if sel.exists == 0 {
                Vec::new()
            } else {
                net(search(&mut c, &f))?
            };
            let known = f.uidvalidity != 0 || f.done_through != 0 || !f.stored.is_empty();
            if !f.sync(sel.uidvalidity, &present) {
                st.inflight.remove(folder);
                if known {
                    report.notes.push(format!(
                        "{folder}: UIDVALIDITY changed: every message in it is new again"
                    ));
                }
                present = if sel.exists == 0 {
                    Vec::new()
                } else {
                    net(search(&mut c, &f))?
                };
            }
            st.imap.insert(folder.clone(), f.clone());
            local(sf.save(&st))?;
            // Stored before but not yet deleted (or flagged): finish that.
            let pending: Vec<u32> = present
                .iter()
                .copied()
                .filter(|u| f.stored.contains(u))
                .collect();
            if !pending.is_empty() {
                if delete {
                    net(c.delete(&pending))?;
                    report.deleted += pending.len() as u64;
                } else if job.unseen || job.mark_seen {
                    net(c.uid_add_flags(&pending, "\\Seen"))?;
                }
            }
            let mut new: Vec<u32> = present
                .iter()
                .copied()
                .filter(|u| !f.stored.contains(u))
                .collect();
            let susp = suspects(&st, folder);
            let mut sizes = std::collections::HashMap::new();
            if let Some(max) = job.max_size
                && !new.is_empty()
            {
                for (uid, size) in net(c.uid_sizes(&new))? {
                    sizes.insert(uid, size);
                }
                new.retain(|u| match sizes.get(u) {
                    Some(&s) if s > max => {
                        report.fail(
                            Class::Delivery,
                            format!(
                                "{folder}: message UID {u} ({s} bytes) is over the size limit of {max}: left on the server"
                            ),
                        );
                        false
                    }
                    _ => true,
                });
            }
            if (new.len() as u64) > budget {
                new.truncate(budget as usize);
            }
            budget -= new.len() as u64;
            // Batches: by count, and by the sizes the server claims. Those
            // are only a hint: what a batch holds is capped by the bytes
            // actually received (`FetchLimits`), and a message that does
            // not fit is deferred to the front of the next batch.
            let limits = FetchLimits {
                message: job.max_size.unwrap_or(MAX_MESSAGE).min(MAX_MESSAGE),
                batch: BATCH_BYTES,
                untagged: MAX_UNTAGGED,
            };
            let mut queue: VecDeque<u32> = new.into_iter().collect();
            let next_batch = |queue: &mut VecDeque<u32>| -> Vec<u32> {
                let mut b = Vec::new();
                let mut bytes = 0u64;
                while b.len() < job.batch.max(1)
                    && bytes < BATCH_BYTES
                    && let Some(u) = queue.pop_front()
                {
                    bytes += sizes.get(&u).copied().unwrap_or(0);
                    b.push(u);
                }
                b
            };
            // Pipelined: the FETCH of batch k+1 is sent before batch k is
            // stored, so the server streams while we sync. Batch k is
            // deleted (or flagged) once durable and recorded, just before
            // the FETCH of batch k+2 goes out: no other command may come
            // between a FETCH and the reading of its answer.
            let mut to_finish: Vec<u32> = Vec::new();
            let finish = |c: &mut Imap,
                          done: &mut Vec<u32>,
                          report: &mut Report|
             -> std::result::Result<(), Failure> {
                if !done.is_empty() {
                    if delete {
                        net(c.delete(done))?;
                        report.deleted += done.len() as u64;
                    } else if job.unseen || job.mark_seen {
                        net(c.uid_add_flags(done, "\\Seen"))?;
                    }
                    done.clear();
                }
                Ok(())
            };
            let mut stray = Stray::default();
            let mut in_flight: Option<(u32, Vec<u32>)> = None;
            let first = next_batch(&mut queue);
            if !first.is_empty() {
                in_flight = Some((net(c.uid_fetch_send(&first))?, first));
            }
            while let Some((tag, batch)) = in_flight.take() {
                let mut got: Vec<(u32, Vec<u8>)> = Vec::with_capacity(batch.len());
                let mut deferred = Vec::new();
                net(c.uid_fetch_read(tag, &batch, limits, &mut |ev| match ev {
                    Fetched::Message(uid, data) => got.push((uid, data)),
                    Fetched::Deferred(uid) => deferred.push(uid),
                    Fetched::TooLarge(uid, n) => report.fail(
                        Class::Delivery,
                        match job.max_size {
                            Some(max) if n > max => format!(
                                "{folder}: message UID {uid} ({n} bytes received) is over the size limit of {max}: left on the server"
                            ),
                            _ => format!(
                                "{folder}: message UID {uid} ({n} bytes received) is larger than the {} MiB mail-fetch holds: left on the server",
                                MAX_MESSAGE >> 20
                            ),
                        },
                    ),
                    Fetched::Unreadable(uid) => report.fail(
                        Class::Protocol,
                        format!(
                            "{folder}: message UID {uid}: the server sent no readable body: left on the server"
                        ),
                    ),
                    Fetched::Unrequested(uid) => stray.note(uid),
                }))?;
                finish(&mut c, &mut to_finish, report)?;
                for u in deferred.into_iter().rev() {
                    queue.push_front(u);
                }
                let next = next_batch(&mut queue);
                if !next.is_empty() {
                    in_flight = Some((net(c.uid_fetch_send(&next))?, next));
                }
                // The reader hands out only UIDs this batch asked for; the
                // state must never learn of another, so say it twice.
                got.retain(|(u, _)| batch.contains(u));
                got.sort_by_key(|x| x.0);
                got.dedup_by_key(|x| x.0);
                let (stored, err) = store_batch(
                    job,
                    &mut target,
                    got,
                    progress,
                    report,
                    &mut st,
                    &sf,
                    folder,
                    &susp,
                )?;
                f.stored.extend(stored.iter().copied());
                st.imap.insert(folder.clone(), f.clone());
                if err.is_none() {
                    st.inflight.remove(folder);
                }
                local(sf.save(&st))?;
                to_finish = stored;
                if let Some(e) = err {
                    // Drain the FETCH in flight (holding none of it), then
                    // delete what is stored.
                    if let Some((tag, b)) = in_flight.take() {
                        let drain = FetchLimits {
                            message: 0,
                            batch: 0,
                            untagged: MAX_UNTAGGED,
                        };
                        net(c.uid_fetch_read(tag, &b, drain, &mut |_| {}))?;
                    }
                    finish(&mut c, &mut to_finish, report)?;
                    stray.report(folder, report);
                    return Err((Class::Delivery, e));
                }
            }
            stray.report(folder, report);
            finish(&mut c, &mut to_finish, report)?;
            if !job.unseen {
                f.compact(&present);
            }
            st.imap.insert(folder.clone(), f);
            local(sf.save(&st))?;
        }
        let Some(max_wait) = watch else { break };
        if progress.stop.load(Ordering::Relaxed) {
            break;
        }
        // IDLE on the first (in watch mode: the only) folder.
        net(c.idle(max_wait))?;
        budget = job.max_messages.unwrap_or(u64::MAX);
    }
    target.finish();
    c.logout();
    Ok(())
}

/// The most bytes one POP3 message may take when `--max-size` is not given
/// (see [`crate::proto::pop3::MAX_MESSAGE`]): a larger one is left on the server
/// and reported, never held.
pub const POP3_DEFAULT_MAX_SIZE: u64 = crate::proto::pop3::MAX_MESSAGE;

/// How much a POP3 message may exceed the size LIST gave for it: servers
/// that count the stored LF line ends report a little less than they send
/// with CRLF. Past that the server is not telling the truth, and reading
/// stops.
fn pop3_slack(size: u64) -> u64 {
    size / 8 + 64 * 1024
}

/// A POP3 message of this session: its number (meaningful in this session
/// only) and its UIDL (how runs know it; shown in messages).
#[derive(Debug, Clone)]
struct PopMsg {
    n: u32,
    uidl: String,
}

impl std::fmt::Display for PopMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uidl)
    }
}

/// The POP3 run: UIDL tells what is new; stored messages are remembered by
/// UIDL, LIST size and header digest, DELE follows each durable batch and
/// takes effect at QUIT (a run that dies before QUIT deletes nothing; the
/// next run deletes what the state says was stored, without storing it
/// again).
///
/// Servers reuse UIDLs and some list one twice, so the state's word is
/// taken with care:
///
/// - A message of this session is deleted by the number it was retrieved
///   under, right after it is stored and recorded: never by UIDL.
/// - A message deleted on the state's word (stored by an earlier run) must
///   match a record of its UIDL in size and, when the record has a digest
///   and the server offers TOP, in header digest. Anything else under a
///   known UIDL is new mail. A UIDL the server lists twice is never deleted
///   on the state's word (reported); records of earlier versions, which
///   know no size, never are either: such a message is fetched again
///   (at worst a duplicate, never a loss), except with `--keep`, where it
///   counts as stored as it did before and its record gains the size.
/// - A message is read only up to its LIST size plus [`pop3_slack`] and up
///   to `--max-size` ([`POP3_DEFAULT_MAX_SIZE`] without it). One that goes
///   past is not stored; what came before it in its batch is, the session
///   is dropped without QUIT (so nothing is deleted in it), and the state
///   remembers the message so that later runs leave it alone while the
///   server lists it with that size.
/// - Deletions are counted only once QUIT is answered `+OK`.
fn run_pop3(
    job: &Job,
    logs: Logs,
    progress: &Progress,
    stdout: Option<&SharedOut>,
    report: &mut Report,
) -> std::result::Result<(), Failure> {
    use crate::proto::pop3::{Login as PopLogin, Pop3, header_digest};
    use state::{Oversized, Pop3Stored};
    use std::collections::HashMap;
    let Prepared {
        pass,
        _lock,
        sf,
        mut st,
        mut target,
        delete,
    } = prepare(job, stdout, logs.target)?;
    let mut c = net(Pop3::connect(
        &job.host,
        job.port,
        job.tls,
        &job.tls_opts,
        job.timeout,
        logs.source,
    ))?;
    let how = match (job.pop_login.as_deref(), job.auth) {
        (Some("apop"), _) => PopLogin::Apop,
        (Some(_), _) => PopLogin::User,
        (None, Some(m)) => PopLogin::Sasl(m),
        (None, None) => PopLogin::Auto,
    };
    net(c.login(&job.user, &pass, how))?;
    let listing = net(c.uidl())?;
    let sizes: HashMap<u32, u64> = if listing.is_empty() {
        HashMap::new()
    } else {
        net(c.list())?.into_iter().collect()
    };
    let max_size = job.max_size.unwrap_or(POP3_DEFAULT_MAX_SIZE);
    let limit_of = |size: Option<u64>| match size {
        Some(s) => s.saturating_add(pop3_slack(s)).min(max_size),
        None => max_size,
    };
    // The bytes allowed were fewer than --max-size: the LIST size was the
    // bound, and the server sent more than it said.
    let lied = |limit: u64| limit < max_size;
    let mut numbers: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (n, u) in &listing {
        numbers.entry(u.as_str()).or_default().push(*n);
    }
    // Forget what the server no longer lists.
    st.pop3.retain(|u, _| numbers.contains_key(u.as_str()));
    st.pop3_oversized.retain(|u, o| {
        numbers
            .get(u.as_str())
            .is_some_and(|ns| ns.iter().any(|n| sizes.get(n) == Some(&o.size)))
    });
    let list = |ns: &[u32]| ns.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    for (u, ns) in &numbers {
        if ns.len() > 1 {
            report.notes.push(format!(
                "UIDL {u} is listed for messages {}: the server's UIDLs are not unique",
                list(ns)
            ));
        }
    }
    let top = c.capabilities().top || !c.capabilities().known;
    let mut pending: Vec<u32> = Vec::new();
    let mut new: Vec<PopMsg> = Vec::new();
    for (n, u) in &listing {
        let size = sizes.get(n).copied();
        let twice = numbers[u.as_str()].len() > 1;
        let new_msg = PopMsg {
            n: *n,
            uidl: u.clone(),
        };
        let Some(recs) = st.pop3.get_mut(u) else {
            new.push(new_msg);
            continue;
        };
        let legacy = recs.contains(&Pop3Stored::default());
        let candidates: Vec<&Pop3Stored> = recs
            .iter()
            .filter(|r| r.size.is_some() && r.size == size)
            .collect();
        if candidates.is_empty() {
            if legacy && !delete {
                // Stored by an earlier version, which knew only the UIDL.
                if !twice && size.is_some() {
                    recs.remove(&Pop3Stored::default());
                    recs.insert(Pop3Stored { size, digest: None });
                }
            } else {
                new.push(new_msg);
            }
            continue;
        }
        if !delete {
            continue;
        }
        // About to be deleted on the state's word: make sure it is the
        // message that was stored.
        let digests: Vec<String> = candidates.iter().filter_map(|r| r.digest.clone()).collect();
        let same = if top && digests.len() == candidates.len() {
            match c.top_limited(*n, 0, limit_of(size)) {
                Ok(head) => digests.contains(&header_digest(&head)),
                // TOP refused: the size is all there is to go by.
                Err(_) if !c.is_broken() => true,
                Err(e) => return Err((Class::of(&e), e)),
            }
        } else {
            true
        };
        if !same {
            new.push(new_msg);
        } else if twice {
            report.fail(
                Class::Protocol,
                format!(
                    "message {n} (UIDL {u}) was stored by an earlier run but is left on the server: the server lists that UIDL for messages {}, so the state cannot tell which one was stored",
                    list(&numbers[u.as_str()])
                ),
            );
        } else {
            pending.push(*n);
        }
    }
    local(sf.save(&st))?;
    // DELE takes effect only at a QUIT answered +OK: count it then.
    let mut marked = 0u64;
    if delete && !pending.is_empty() {
        net(c.dele_many(&pending))?;
        marked += pending.len() as u64;
    }
    new.retain(|m| {
        let size = sizes.get(&m.n).copied();
        let u = &m.uidl;
        let n = m.n;
        if let Some(s) = size
            && s > max_size
        {
            let what = match job.max_size {
                Some(_) => format!("the size limit of {max_size}"),
                None => format!("the default size limit of {max_size} (--max-size raises it)"),
            };
            report.fail(
                Class::Delivery,
                format!("message {n} (UIDL {u}, {s} bytes) is over {what}: left on the server"),
            );
            return false;
        }
        if let Some(o) = st.pop3_oversized.get(u)
            && size == Some(o.size)
            && limit_of(size) <= o.limit
        {
            let (class, why) = if lied(o.limit) {
                (Class::Protocol, format!("LIST says {} bytes", o.size))
            } else {
                (Class::Delivery, format!("over the size limit of {max_size}"))
            };
            report.fail(
                class,
                format!(
                    "message {n} (UIDL {u}) went past {} bytes when it was last retrieved ({why}): left on the server",
                    o.limit
                ),
            );
            return false;
        }
        true
    });
    if let Some(max) = job.max_messages {
        new.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    }
    let susp = suspects(&st, "");
    let mut i = 0;
    while i < new.len() {
        let mut j = i;
        let mut bytes = 0u64;
        while j < new.len() && j - i < job.batch.max(1) {
            bytes += sizes.get(&new[j].n).copied().unwrap_or(0);
            j += 1;
            if bytes >= BATCH_BYTES {
                break;
            }
        }
        let batch = &new[i..j];
        i = j;
        let msgs: Vec<(u32, u64)> = batch
            .iter()
            .map(|m| (m.n, limit_of(sizes.get(&m.n).copied())))
            .collect();
        let by_number: HashMap<u32, &PopMsg> = batch.iter().map(|m| (m.n, m)).collect();
        let mut got: Vec<(PopMsg, Vec<u8>)> = Vec::with_capacity(batch.len());
        let mut digests: HashMap<u32, String> = HashMap::new();
        let too_large = net(c.retr_limited(&msgs, &mut |n, data| {
            if let Some(m) = by_number.get(&n) {
                digests.insert(n, header_digest(&data));
                got.push(((*m).clone(), data));
            }
            Ok(())
        }))?;
        // What came before a message that went past its limit is stored
        // all the same.
        let (stored, err) = store_batch(
            job,
            &mut target,
            got,
            progress,
            report,
            &mut st,
            &sf,
            "",
            &susp,
        )?;
        for m in &stored {
            let recs = st.pop3.entry(m.uidl.clone()).or_default();
            recs.remove(&Pop3Stored::default());
            recs.insert(Pop3Stored {
                size: sizes.get(&m.n).copied(),
                digest: digests.remove(&m.n),
            });
        }
        if let Some(t) = too_large
            && let Some(m) = by_number.get(&t.msgno)
        {
            st.pop3_oversized.insert(
                m.uidl.clone(),
                Oversized {
                    size: sizes.get(&t.msgno).copied().unwrap_or(0),
                    limit: t.limit,
                },
            );
        }
        if err.is_none() {
            st.inflight.remove("");
        }
        local(sf.save(&st))?;
        if let Some(t) = too_large {
            // The rest of that message is still on its way: the session
            // cannot go on, and without QUIT nothing marked in it is
            // deleted (the next run deletes what is recorded as stored).
            target.finish();
            let uidl = by_number.get(&t.msgno).map_or("?", |m| m.uidl.as_str());
            let why = match sizes.get(&t.msgno) {
                Some(s) if lied(t.limit) => format!("LIST said {s} bytes"),
                _ => format!("over the size limit of {max_size}"),
            };
            let class = if lied(t.limit) {
                Class::Protocol
            } else {
                Class::Delivery
            };
            return Err((
                class,
                Error::new(
                    Kind::Unavailable,
                    format!("POP3 {}: RETR {}", c.server(), t.msgno),
                    format!(
                        "message {} (UIDL {uidl}) went past {} bytes ({why}): not stored and left on the server; the session was dropped, so nothing was deleted in it",
                        t.msgno, t.limit
                    ),
                ),
            ));
        }
        if delete && !stored.is_empty() {
            let numbers: Vec<u32> = stored.iter().map(|m| m.n).collect();
            net(c.dele_many(&numbers))?;
            marked += numbers.len() as u64;
        }
        if let Some(e) = err {
            // QUIT anyway: what was stored and marked is deleted now.
            if c.quit().is_ok() {
                report.deleted += marked;
            }
            return Err((Class::Delivery, e));
        }
    }
    target.finish();
    net(c.quit())?;
    report.deleted += marked;
    Ok(())
}
