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

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::Account;
use crate::exit::{Error, Kind, Result};
use crate::imap::{Imap, Login};
use crate::sasl::{Mechanism, Secret};
use crate::tls::{self, TlsMode, TlsOptions};
use crate::transcript::Transcript;

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
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".to_string())
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
            // Batches: by count, and by bytes when sizes are known.
            let mut batches: Vec<&[u32]> = Vec::new();
            let mut i = 0;
            while i < new.len() {
                let mut j = i;
                let mut bytes = 0u64;
                while j < new.len() && j - i < job.batch.max(1) {
                    bytes += sizes.get(&new[j]).copied().unwrap_or(0);
                    j += 1;
                    if bytes >= BATCH_BYTES {
                        break;
                    }
                }
                batches.push(&new[i..j]);
                i = j;
            }
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
            let mut next_tag = match batches.first() {
                Some(b) => Some(net(c.uid_fetch_send(b))?),
                None => None,
            };
            for k in 0..batches.len() {
                let Some(tag) = next_tag.take() else { break };
                let mut got: Vec<(u32, Vec<u8>)> = Vec::with_capacity(batches[k].len());
                net(c.uid_fetch_read(tag, &mut |uid, data| got.push((uid, data))))?;
                finish(&mut c, &mut to_finish, report)?;
                if let Some(b) = batches.get(k + 1) {
                    next_tag = Some(net(c.uid_fetch_send(b))?);
                }
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
                    // Drain the FETCH in flight, then delete what is stored.
                    if let Some(tag) = next_tag.take() {
                        net(c.uid_fetch_read(tag, &mut |_, _| {}))?;
                    }
                    finish(&mut c, &mut to_finish, report)?;
                    return Err((Class::Delivery, e));
                }
            }
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

/// The POP3 run: UIDL tells what is new; stored UIDLs are remembered,
/// DELE follows each durable batch and takes effect at QUIT (a run that
/// dies before QUIT deletes nothing; the next run deletes what the state
/// says was stored, without storing it again).
fn run_pop3(
    job: &Job,
    logs: Logs,
    progress: &Progress,
    stdout: Option<&SharedOut>,
    report: &mut Report,
) -> std::result::Result<(), Failure> {
    use crate::pop3::{Login as PopLogin, Pop3};
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
    let present: BTreeSet<&str> = listing.iter().map(|(_, u)| u.as_str()).collect();
    st.pop3.retain(|u| present.contains(u.as_str()));
    local(sf.save(&st))?;
    let pending: Vec<u32> = listing
        .iter()
        .filter(|(_, u)| st.pop3.contains(u))
        .map(|(n, _)| *n)
        .collect();
    if delete && !pending.is_empty() {
        net(c.dele_many(&pending))?;
        report.deleted += pending.len() as u64;
    }
    let mut new: Vec<(u32, String)> = listing
        .iter()
        .filter(|(_, u)| !st.pop3.contains(u))
        .cloned()
        .collect();
    let mut sizes = std::collections::HashMap::new();
    if job.max_size.is_some() || new.len() > 1 {
        for (n, size) in net(c.list())? {
            sizes.insert(n, size);
        }
    }
    if let Some(max) = job.max_size {
        new.retain(|(n, u)| match sizes.get(n) {
            Some(&s) if s > max => {
                report.fail(
                    Class::Delivery,
                    format!(
                        "message {n} (UIDL {u}, {s} bytes) is over the size limit of {max}: left on the server"
                    ),
                );
                false
            }
            _ => true,
        });
    }
    if let Some(max) = job.max_messages {
        new.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    }
    let uidl_of: std::collections::HashMap<u32, String> = new.iter().cloned().collect();
    let num_of: std::collections::HashMap<&str, u32> =
        listing.iter().map(|(n, u)| (u.as_str(), *n)).collect();
    let susp = suspects(&st, "");
    let mut i = 0;
    while i < new.len() {
        let mut j = i;
        let mut bytes = 0u64;
        while j < new.len() && j - i < job.batch.max(1) {
            bytes += sizes.get(&new[j].0).copied().unwrap_or(0);
            j += 1;
            if bytes >= BATCH_BYTES {
                break;
            }
        }
        let nums: Vec<u32> = new[i..j].iter().map(|(n, _)| *n).collect();
        i = j;
        let mut got: Vec<(u32, Vec<u8>)> = Vec::with_capacity(nums.len());
        net(c.retr_many(&nums, &mut |n, data| {
            got.push((n, data));
            Ok(())
        }))?;
        let labelled: Vec<(String, Vec<u8>)> = got
            .into_iter()
            .filter_map(|(n, d)| uidl_of.get(&n).map(|u| (u.clone(), d)))
            .collect();
        let (stored, err) = store_batch(
            job,
            &mut target,
            labelled,
            progress,
            report,
            &mut st,
            &sf,
            "",
            &susp,
        )?;
        st.pop3.extend(stored.iter().cloned());
        if err.is_none() {
            st.inflight.remove("");
        }
        local(sf.save(&st))?;
        if !stored.is_empty() {
            let stored: Vec<u32> = stored
                .iter()
                .filter_map(|u| num_of.get(u.as_str()).copied())
                .collect();
            if delete {
                net(c.dele_many(&stored))?;
                report.deleted += stored.len() as u64;
            }
        }
        if let Some(e) = err {
            // QUIT anyway: what was stored and marked is deleted now.
            let _ = c.quit();
            return Err((Class::Delivery, e));
        }
    }
    target.finish();
    net(c.quit())?;
    Ok(())
}
