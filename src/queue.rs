//! The mail queue: a spool directory of entries waiting to be sent, and the
//! runner that retries them ([`Runner`]).
//!
//! Owns the entry format and every state change of an entry. Guarantees:
//!
//! - **An entry appears whole or not at all.** An entry is a directory
//!   `SPOOL/ID/` holding the message (`message`, never changed after it is
//!   written) and its state (`state.json`: route, envelope, per-recipient
//!   state, attempt log, times, flags). [`Spool::enqueue`] builds it in
//!   `SPOOL/tmp/ID.new/`, fsyncs both files and that directory, renames the
//!   directory into place and fsyncs the spool: when it returns the id, the
//!   entry is durable; a crash before leaves only litter in `tmp/`, which
//!   runs clean up. (A directory per entry rather than two files side by
//!   side: one rename makes both files appear at once, so no reader ever
//!   sees a message without state or state without a message.)
//! - **Every state change is atomic and durable**: `state.json.tmp` is
//!   written and fsynced, renamed over `state.json`, and the entry directory
//!   fsynced. A crash leaves the old or the new state, never a torn one.
//!   Files are created fresh (`O_EXCL|O_NOFOLLOW`, anything of that name
//!   removed first), so nothing is ever written through a planted link.
//! - **An entry that lost its message file is held, not busy for ever**:
//!   runs hold it with [`MISSING_MESSAGE`] in its log and report it once;
//!   listings say so; only `delete` (or restoring the file) ends it.
//! - **Removal never loses and never resends delivered recipients**: an
//!   entry goes only when no recipient is pending and every failure has its
//!   bounce durably queued; the directory is renamed into `tmp/` (it
//!   vanishes at once for every other process) and deleted there. The spool
//!   directory is fsynced after a batch of removals rather than after each:
//!   a removal not yet durable at a power loss can only make a delivered
//!   entry come back (a duplicate), never lose one, and it keeps a
//!   1,000-entry flush from paying 1,000 directory syncs.
//! - **Two runners never send the same entry at once.** An entry is locked
//!   with flock(2) on its message file; runners skip (never wait on) a
//!   locked entry, and re-read the state after locking, so they act on
//!   what the previous holder saved.
//! - **Ids are safe file names**: 20 upper-case hex digits (milliseconds
//!   since the epoch, pid, a per-process counter), so they sort by arrival
//!   time; an id from the command line is accepted only in that form
//!   ([`parse_id`]), so no path can be smuggled through one.

pub mod dsn;
mod run;

pub use run::{EntryReport, Outcome, Runner, Select, WATCH_POLL};

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::{Config, QueueConfig, parse_duration};
use crate::exit::{Error, Kind, Result};
use crate::send::{Dsn, Envelope, Route};

/// Length of an entry id.
pub const ID_LEN: usize = 20;
/// The message file inside an entry.
const MESSAGE: &str = "message";
/// The state file inside an entry.
const STATE: &str = "state.json";
/// The most attempts kept in an entry's log (the oldest are dropped; the
/// count of attempts is kept separately).
const MAX_LOG: usize = 50;
/// Litter in `tmp/` older than this is removed by runs.
const TMP_MAX_AGE: Duration = Duration::from_secs(3600);

/// Seconds since the epoch now: the clock every queue decision reads
/// (creation, next try, delay notice, expiry).
///
/// `POSTLINE_NOW` (seconds since the epoch) pins it, so that a test or a
/// user reproducing a bounce judges a spool as of a fixed moment instead of
/// today's date; anything else in it is ignored.
pub fn now() -> u64 {
    pinned_now().unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// The pinned clock, read once per process.
fn pinned_now() -> Option<u64> {
    static PINNED: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *PINNED.get_or_init(|| {
        std::env::var("POSTLINE_NOW")
            .ok()
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A new entry id: milliseconds (11 hex digits), pid (6), counter (3).
pub fn new_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:011X}{:06X}{:03X}",
        ms & 0xFFF_FFFF_FFFF,
        std::process::id() & 0xFF_FFFF,
        c & 0xFFF
    )
}

/// Is `s` a well-formed entry id?
pub fn valid_id(s: &str) -> bool {
    s.len() == ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// An id given by a user: upper-cased, then it must be well formed
/// ([`Kind::Usage`] otherwise; the error never echoes more than 40 bytes).
pub fn parse_id(s: &str) -> Result<String> {
    let up = s.to_ascii_uppercase();
    if valid_id(&up) {
        return Ok(up);
    }
    let shown: String = s.chars().take(40).collect();
    Err(Error::new(
        Kind::Usage,
        format!("queue id {shown:?}"),
        format!("not a queue id (expected {ID_LEN} hex digits)"),
    ))
}

/// The retry policy: `[queue]` in the config, with defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Delay before the first retry (default 5 minutes).
    pub retry_min: Duration,
    /// Longest delay between retries (default 4 hours).
    pub retry_max: Duration,
    /// Send a "delayed" notice after this long (default: never).
    pub warn_after: Option<Duration>,
    /// Bounce what is still pending after this long (default 5 days).
    pub expire: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retry_min: Duration::from_secs(300),
            retry_max: Duration::from_secs(4 * 3600),
            warn_after: None,
            expire: Duration::from_secs(5 * 86400),
        }
    }
}

impl Policy {
    /// The policy from `[queue]` (config errors name the key).
    pub fn from_config(q: &QueueConfig) -> Result<Policy> {
        let d = Policy::default();
        let get = |v: &Option<String>, key: &str| -> Result<Option<Duration>> {
            v.as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| e.within(format!("[queue] {key}")))
        };
        let p = Policy {
            retry_min: get(&q.retry_min, "retry_min")?.unwrap_or(d.retry_min),
            retry_max: get(&q.retry_max, "retry_max")?.unwrap_or(d.retry_max),
            warn_after: get(&q.warn_after, "warn_after")?,
            expire: get(&q.expire, "expire")?.unwrap_or(d.expire),
        };
        Ok(p)
    }

    /// The wait after the `failures`-th failed attempt: `retry_min`
    /// doubling with each further failure, at most `retry_max` (and never
    /// less than one second, so a zero setting cannot spin).
    pub fn backoff(&self, failures: u32) -> Duration {
        let min = self.retry_min.max(Duration::from_secs(1));
        let max = self.retry_max.max(min);
        let mut d = min;
        for _ in 1..failures {
            d = d.saturating_mul(2);
            if d >= max {
                return max;
            }
        }
        d
    }
}

/// A recipient's state in an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    /// Still to be delivered.
    Pending,
    /// Accepted by the server (final 2xx).
    Delivered,
    /// Refused for good, or expired.
    Failed,
}

/// One recipient of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rcpt {
    /// The address.
    pub addr: String,
    /// Where it stands.
    pub status: RcptStatus,
    /// The last reply (server's or our reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The host that gave the last reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Failed because the entry expired (not because of a 5xx).
    #[serde(default, skip_serializing_if = "is_false")]
    pub expired: bool,
    /// The failure is reported (bounce queued, or none owed: null sender).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bounced: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One delivery attempt in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When (seconds since the epoch).
    pub time: u64,
    /// What happened, one line.
    pub reason: String,
}

/// What an entry's `state.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version (1).
    pub version: u32,
    /// Arrival (seconds since the epoch).
    pub created: u64,
    /// Message size in bytes.
    pub size: u64,
    /// Where the message goes.
    pub route: Route,
    /// Envelope sender; empty for the null sender.
    pub from: String,
    /// DSN parameters passed on to the server.
    #[serde(default)]
    pub dsn: Dsn,
    /// The recipients and their states.
    pub rcpts: Vec<Rcpt>,
    /// Not to be tried before this time (seconds since the epoch).
    pub next_try: u64,
    /// Delivery attempts made (the first one by mail-send included).
    pub attempts: u32,
    /// The last attempts, oldest first (at most 50).
    #[serde(default)]
    pub log: Vec<Attempt>,
    /// Held by an admin: not tried until released.
    #[serde(default)]
    pub held: bool,
    /// The "delayed" notice was sent.
    #[serde(default)]
    pub warned: bool,
}

impl State {
    /// The recipients still pending.
    pub fn pending(&self) -> Vec<String> {
        self.rcpts
            .iter()
            .filter(|r| r.status == RcptStatus::Pending)
            .map(|r| r.addr.clone())
            .collect()
    }

    /// The last reason in the attempt log.
    pub fn last_error(&self) -> Option<&str> {
        self.log.last().map(|a| a.reason.as_str())
    }

    /// Add an attempt to the log (dropping the oldest past the limit).
    pub fn log_attempt(&mut self, time: u64, reason: impl Into<String>) {
        self.log.push(Attempt {
            time,
            reason: one_line(&reason.into()),
        });
        if self.log.len() > MAX_LOG {
            let drop = self.log.len() - MAX_LOG;
            self.log.drain(..drop);
        }
    }

    /// Is anything left to do for this entry?
    pub fn is_done(&self) -> bool {
        self.rcpts.iter().all(|r| match r.status {
            RcptStatus::Pending => false,
            RcptStatus::Delivered => true,
            RcptStatus::Failed => r.bounced,
        })
    }
}

/// Control characters (a server's CR, LF) never reach the log or a listing.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// One entry as listed: its id and state (or why the state is unreadable).
#[derive(Debug)]
pub struct Listed {
    /// The id.
    pub id: String,
    /// The state, or the error reading it.
    pub state: Result<State>,
    /// The message file is missing: the entry can never be sent (runs
    /// hold it, see [`MISSING_MESSAGE`]).
    pub message_missing: bool,
}

/// Why an entry without its message file is held (in its attempt log, and
/// what runs report once).
pub const MISSING_MESSAGE: &str =
    "the message file is missing; held until deleted (mail-queue delete ID)";

/// A queue spool directory.
pub struct Spool {
    dir: PathBuf,
    policy: Policy,
}

fn io_err(what: impl Into<String>, e: &io::Error) -> Error {
    Error::io(what, e)
}

use crate::durable::{fsync_dir, write_new as write_synced};

impl Spool {
    /// The spool directory: `[queue] dir` from the config, else
    /// `$XDG_STATE_HOME/postline/queue`.
    pub fn default_dir(config: &Config) -> PathBuf {
        config
            .queue
            .dir
            .clone()
            .unwrap_or_else(|| crate::config::state_dir().join("queue"))
    }

    /// Open (creating when missing, mode 0700) the spool at `dir`, with the
    /// default [`Policy`].
    pub fn open(dir: &Path) -> Result<Spool> {
        let tmp = dir.join("tmp");
        if !tmp.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&tmp)
                .map_err(|e| io_err(format!("creating the queue {}", dir.display()), &e))?;
            // The new directories must survive a crash before the first
            // entry's rename relies on them.
            let _ = fsync_dir(dir);
            if let Some(p) = dir.parent() {
                let _ = fsync_dir(p);
            }
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            policy: Policy::default(),
        })
    }

    /// Use `policy` (for the first retry time of new entries, and runs).
    pub fn with_policy(mut self, policy: Policy) -> Spool {
        self.policy = policy;
        self
    }

    /// The policy in use.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Put `msg` for `env.rcpts` into the queue, to be sent along `route`;
    /// `reason` is the failure that sent it here (empty: none, the entry is
    /// due at once; else the first retry is after the policy's `retry_min`).
    /// Returns the entry's id once the entry is durable.
    pub fn enqueue(
        &self,
        route: &Route,
        env: &Envelope,
        msg: &[u8],
        reason: &str,
    ) -> Result<String> {
        if env.rcpts.is_empty() {
            return Err(Error::new(
                Kind::Usage,
                "queueing a message",
                "no recipients",
            ));
        }
        let t = now();
        let mut state = State {
            version: 1,
            created: t,
            size: msg.len() as u64,
            route: route.clone(),
            from: env.from.clone(),
            dsn: env.dsn.clone(),
            rcpts: env
                .rcpts
                .iter()
                .map(|r| Rcpt {
                    addr: r.clone(),
                    status: RcptStatus::Pending,
                    reply: (!reason.is_empty()).then(|| one_line(reason)),
                    host: None,
                    expired: false,
                    bounced: false,
                })
                .collect(),
            next_try: t,
            attempts: 0,
            log: Vec::new(),
            held: false,
            warned: false,
        };
        if !reason.is_empty() {
            state.attempts = 1;
            state.log_attempt(t, reason);
            state.next_try = t + self.policy.backoff(1).as_secs();
        }
        self.create(&state, msg)
    }

    /// Write a new entry with `state` and `msg`; returns its id once durable.
    pub fn create(&self, state: &State, msg: &[u8]) -> Result<String> {
        let ctx = || format!("queueing in {}", self.dir.display());
        let json =
            serde_json::to_vec_pretty(state).map_err(|e| Error::new(Kind::Temporary, ctx(), e))?;
        let mut id = new_id();
        let build = self.dir.join("tmp").join(format!("{id}.new"));
        let res = (|| -> io::Result<()> {
            fs::DirBuilder::new().mode(0o700).create(&build)?;
            write_synced(&build.join(MESSAGE), msg)?;
            write_synced(&build.join(STATE), &json)?;
            fsync_dir(&build)
        })();
        if let Err(e) = res {
            let _ = fs::remove_dir_all(&build);
            return Err(io_err(ctx(), &e));
        }
        // rename(2) of a directory never replaces a non-empty one, so an id
        // that somehow exists already is a retry with a fresh id, never a
        // clobbered entry.
        let mut tries = 0;
        loop {
            match fs::rename(&build, self.entry_dir(&id)) {
                Ok(()) => break,
                Err(e)
                    if tries < 5
                        && matches!(
                            e.raw_os_error(),
                            Some(nix::libc::EEXIST) | Some(nix::libc::ENOTEMPTY)
                        ) =>
                {
                    tries += 1;
                    id = new_id();
                }
                Err(e) => {
                    let _ = fs::remove_dir_all(&build);
                    return Err(io_err(ctx(), &e));
                }
            }
        }
        fsync_dir(&self.dir).map_err(|e| io_err(ctx(), &e))?;
        Ok(id)
    }

    /// The ids of every entry, oldest first.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| io_err(format!("reading the queue {}", self.dir.display()), &e))?;
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_id(n))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Does entry `id` exist?
    pub fn exists(&self, id: &str) -> bool {
        valid_id(id) && self.entry_dir(id).join(STATE).exists()
    }

    /// Read entry `id`'s state without locking (a snapshot: writers
    /// replace the file atomically). Unknown id: [`Kind::NoUser`].
    pub fn load(&self, id: &str) -> Result<State> {
        if !valid_id(id) {
            return Err(parse_id(id).err().unwrap_or_else(|| {
                Error::new(Kind::Usage, format!("queue id {id:?}"), "not a queue id")
            }));
        }
        let path = self.entry_dir(id).join(STATE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::new(
                    Kind::NoUser,
                    format!("queue id {id}"),
                    "no such entry in the queue",
                ));
            }
            Err(e) => return Err(io_err(format!("reading {}", path.display()), &e)),
        };
        serde_json::from_slice(&data).map_err(|e| {
            Error::new(
                Kind::Data,
                format!("reading {}", path.display()),
                format!("not a queue state file: {e}"),
            )
        })
    }

    /// Every entry, oldest first, with its state (or the error reading it).
    pub fn list(&self) -> Result<Vec<Listed>> {
        Ok(self
            .ids()?
            .into_iter()
            .filter_map(|id| {
                let state = self.load(&id);
                // Removed since the directory was read: not an entry any more.
                if matches!(&state, Err(e) if e.kind() == Kind::NoUser) {
                    return None;
                }
                let message_missing = self.message_missing(&id);
                Some(Listed {
                    id,
                    state,
                    message_missing,
                })
            })
            .collect())
    }

    /// Is entry `id` there (its state is) without its message file? Only
    /// damage from outside does that: an entry appears and goes by one
    /// rename of its whole directory.
    pub fn message_missing(&self, id: &str) -> bool {
        let dir = self.entry_dir(id);
        // The message is looked for first and the state after: an entry a
        // concurrent runner finished (its directory renamed away) between
        // the two looks then reads as gone, not as damaged.
        valid_id(id)
            && matches!(fs::symlink_metadata(dir.join(MESSAGE)), Err(e) if e.kind() == io::ErrorKind::NotFound)
            && dir.join(STATE).exists()
    }

    /// Hold entry `id`, whose message file is missing, with
    /// [`MISSING_MESSAGE`] in its log. There is no message to lock, so the
    /// state is saved without the lock; holding twice is harmless.
    pub fn hold_without_message(&self, id: &str) -> Result<()> {
        let mut state = self.load(id)?;
        state.held = true;
        state.log_attempt(now(), MISSING_MESSAGE);
        save_state(&self.entry_dir(id), id, &state)
    }

    /// The message of entry `id`.
    pub fn message(&self, id: &str) -> Result<Vec<u8>> {
        let path = self.entry_dir(id).join(MESSAGE);
        fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::new(
                    Kind::NoUser,
                    format!("queue id {id}"),
                    "no such entry in the queue",
                )
            } else {
                io_err(format!("reading {}", path.display()), &e)
            }
        })
    }

    /// Lock entry `id`. With `wait` false, `Ok(None)` when another process
    /// holds it; `Ok(None)` too when the entry no longer exists (removed by
    /// its last holder). The state is read after the lock is taken.
    pub fn lock(&self, id: &str, wait: bool) -> Result<Option<Locked<'_>>> {
        if !valid_id(id) {
            return Err(parse_id(id).err().unwrap_or_else(|| {
                Error::new(Kind::Usage, format!("queue id {id:?}"), "not a queue id")
            }));
        }
        let dir = self.entry_dir(id);
        let path = dir.join(MESSAGE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("opening {}", path.display()), &e)),
        };
        if wait {
            file.lock()
                .map_err(|e| io_err(format!("locking {}", path.display()), &e))?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(io_err(format!("locking {}", path.display()), &e));
                }
            }
        }
        // The previous holder may have removed the entry between our open
        // and our lock: the file we hold is then no longer the entry's.
        let state = match self.load(id) {
            Ok(s) => s,
            Err(e) if e.kind() == Kind::NoUser => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Locked {
            spool: self,
            id: id.to_string(),
            file,
            state,
        }))
    }

    /// Delete entry `id` whatever its state (an unreadable state file
    /// included), after waiting for its lock; durable when this returns.
    /// Unknown id: [`Kind::NoUser`].
    pub fn delete(&self, id: &str) -> Result<()> {
        let id = parse_id(id)?;
        let dir = self.entry_dir(&id);
        if !dir.is_dir() {
            return Err(Error::new(
                Kind::NoUser,
                format!("queue id {id}"),
                "no such entry in the queue",
            ));
        }
        let ctx = || format!("deleting queue entry {id}");
        // Held while the entry is renamed away, so no runner is sending it.
        let _held = match File::open(dir.join(MESSAGE)) {
            Ok(f) => {
                f.lock().map_err(|e| io_err(ctx(), &e))?;
                Some(f)
            }
            Err(_) => None,
        };
        let to = self.dir.join("tmp").join(format!("{id}.del"));
        match fs::rename(&dir, &to) {
            Ok(()) => {}
            // A runner finished it while we waited.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::new(
                    Kind::NoUser,
                    format!("queue id {id}"),
                    "no such entry in the queue",
                ));
            }
            Err(e) => return Err(io_err(ctx(), &e)),
        }
        let _ = fs::remove_dir_all(&to);
        self.sync()
    }

    /// Make removals durable (fsync the spool directory).
    pub fn sync(&self) -> Result<()> {
        fsync_dir(&self.dir).map_err(|e| io_err(format!("syncing {}", self.dir.display()), &e))
    }

    /// Remove litter a crashed process left in `tmp/`: entries being
    /// removed, and entries being built for longer than an hour (their
    /// writer died before they were queued; its caller still has the
    /// message).
    pub fn clean_tmp(&self) {
        let tmp = self.dir.join("tmp");
        let Ok(rd) = fs::read_dir(&tmp) else { return };
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > TMP_MAX_AGE);
            if name.ends_with(".del") || (name.ends_with(".new") && old) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Save `state` in the entry directory `dir`: write `state.json.tmp`
/// (fresh, never through a link) + fsync + rename + fsync the directory.
fn save_state(dir: &Path, id: &str, state: &State) -> Result<()> {
    let ctx = || format!("saving queue entry {id}");
    let json =
        serde_json::to_vec_pretty(state).map_err(|e| Error::new(Kind::Temporary, ctx(), e))?;
    crate::durable::replace(&dir.join(STATE), &dir.join("state.json.tmp"), &json)
        .map_err(|e| io_err(ctx(), &e))
}

/// An entry locked by this process (unlocked when dropped).
pub struct Locked<'a> {
    spool: &'a Spool,
    id: String,
    file: File,
    /// The state as read after locking; change it, then [`Locked::save`].
    pub state: State,
}

impl Locked<'_> {
    /// The entry's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The message.
    pub fn message(&self) -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut buf = Vec::with_capacity(self.state.size as usize);
        // From the start whatever an earlier read left the offset at.
        (&self.file)
            .seek(SeekFrom::Start(0))
            .and_then(|_| (&self.file).read_to_end(&mut buf))
            .map_err(|e| io_err(format!("reading queue entry {}", self.id), &e))?;
        Ok(buf)
    }

    /// Save the state: write + fsync + rename + fsync the entry directory.
    pub fn save(&self) -> Result<()> {
        save_state(&self.spool.entry_dir(&self.id), &self.id, &self.state)
    }

    /// Remove the entry (see the module docs for why the spool directory
    /// is not fsynced here: call [`Spool::sync`] after a batch).
    pub fn remove(self) -> Result<()> {
        let litter = self.unlink()?;
        let _ = fs::remove_dir_all(&litter);
        Ok(())
    }

    /// Make the entry vanish (one rename into `tmp/`) and unlock it;
    /// returns the directory left to delete. The entry is gone for every
    /// process once this returns; deleting the litter (unlinking its
    /// files) may then happen anywhere, e.g. on another thread while the
    /// next entry is being sent, and if it never happens the next run
    /// cleans it up.
    pub fn unlink(self) -> Result<PathBuf> {
        let from = self.spool.entry_dir(&self.id);
        let to = self.spool.dir.join("tmp").join(format!("{}.del", self.id));
        fs::rename(&from, &to)
            .map_err(|e| io_err(format!("removing queue entry {}", self.id), &e))?;
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_sortable_and_checked() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(valid_id(&a) && valid_id(&b), "{a} {b}");
        assert_eq!(parse_id(&a.to_ascii_lowercase()).unwrap(), a);
        for bad in [
            "",
            "../../etc/passwd",
            "0123456789ABCDEF012G",
            "x",
            &"A".repeat(21),
        ] {
            let e = parse_id(bad).unwrap_err();
            assert_eq!(e.kind(), Kind::Usage, "{bad}");
        }
        assert!(!valid_id("0123456789abcdef0123"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = Policy::default();
        let secs: Vec<u64> = (1..=9).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(
            secs,
            vec![300, 600, 1200, 2400, 4800, 9600, 14400, 14400, 14400]
        );
        assert_eq!(p.backoff(0).as_secs(), 300);
        assert_eq!(p.backoff(u32::MAX).as_secs(), 14400);
        let zero = Policy {
            retry_min: Duration::ZERO,
            retry_max: Duration::ZERO,
            ..Policy::default()
        };
        assert_eq!(zero.backoff(3).as_secs(), 1);
        let q = QueueConfig {
            retry_min: Some("1m".into()),
            retry_max: Some("3m".into()),
            expire: Some("2d".into()),
            warn_after: Some("4h".into()),
            ..QueueConfig::default()
        };
        let p = Policy::from_config(&q).unwrap();
        assert_eq!(
            (1..=4).map(|n| p.backoff(n).as_secs()).collect::<Vec<_>>(),
            vec![60, 120, 180, 180]
        );
        assert_eq!(p.warn_after, Some(Duration::from_secs(4 * 3600)));
        let bad = QueueConfig {
            expire: Some("soon".into()),
            ..QueueConfig::default()
        };
        let e = Policy::from_config(&bad).unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        assert!(e.to_string().contains("[queue] expire"), "{e}");
    }

    #[test]
    fn enqueue_lock_save_remove() {
        let tmp = tempfile::TempDir::new_in(std::env::temp_dir()).unwrap();
        let spool = Spool::open(&tmp.path().join("q")).unwrap();
        let env = Envelope {
            from: "a@x".into(),
            rcpts: vec!["b@y".into(), "c@y".into()],
            dsn: Dsn::default(),
        };
        let route = Route::Lmtp {
            target: "127.0.0.1:24".into(),
        };
        let id = spool
            .enqueue(&route, &env, b"Subject: t\n\nhi\n", "451 later")
            .unwrap();
        assert_eq!(spool.ids().unwrap(), vec![id.clone()]);
        let s = spool.load(&id).unwrap();
        assert_eq!(s.pending(), vec!["b@y", "c@y"]);
        assert_eq!((s.attempts, s.size), (1, 15));
        assert_eq!(s.next_try, s.created + 300);
        assert_eq!(s.last_error(), Some("451 later"));
        let mut l = spool.lock(&id, false).unwrap().unwrap();
        // A second lock (another open file description) is refused.
        assert!(spool.lock(&id, false).unwrap().is_none());
        assert_eq!(l.message().unwrap(), b"Subject: t\n\nhi\n");
        assert_eq!(l.message().unwrap(), b"Subject: t\n\nhi\n");
        l.state.rcpts[0].status = RcptStatus::Delivered;
        l.save().unwrap();
        drop(l);
        assert_eq!(spool.load(&id).unwrap().pending(), vec!["c@y"]);
        let l = spool.lock(&id, true).unwrap().unwrap();
        l.remove().unwrap();
        assert!(spool.ids().unwrap().is_empty());
        assert_eq!(spool.load(&id).unwrap_err().kind(), Kind::NoUser);
        assert!(spool.lock(&id, false).unwrap().is_none());
        assert_eq!(spool.load("../x").unwrap_err().kind(), Kind::Usage);
        let no = Envelope::default();
        assert!(spool.enqueue(&route, &no, b"x", "").is_err());
    }
}
