//! The one batch loop of mail-fetch, over any [`Source`] (POP3, IMAP):
//! what an account's run holds ([`RunState`]: lock, state, target, report)
//! and the store → record → delete cycle.
//!
//! Invariant 9 lives here and only here: a batch is recorded in flight in
//! the state file (durably) before the target sees it; the target makes it
//! durable; the state records it stored (durably); only then does the
//! source finish (delete or flag) those messages. The target may store a
//! batch while the next one is read from the server, but nothing of it is
//! recorded or finished before the target confirms it. Whatever a source does,
//! it is handed for finishing only ids that went through that cycle. A
//! batch in flight when an earlier run died is looked for in the target
//! before it is stored again (Maildir and mbox targets).

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::Flock;

use crate::exit::{Context, Error, Kind, Origin, Result};
use crate::fetch::source::{Listing, Received, Source};
use crate::fetch::state::{self, State, StateFile};
use crate::fetch::target::{Fate, Msg, Pending, SharedOut, Target};
use crate::fetch::{BATCH_BYTES, Class, Job, Progress, Report};
use crate::proto::sasl::Secret;
use crate::proto::transcript::Transcript;

/// Everything an account's run holds between connecting and closing: the
/// account lock, the state and its file, the open target, the report, and
/// whether stored messages are deleted (never with `--keep`, never into a
/// target that cannot confirm storage).
pub struct RunState<'a> {
    /// The account's settings.
    pub job: &'a Job,
    /// The account's memory.
    pub st: State,
    /// Where it is kept.
    pub sf: StateFile,
    /// Where messages go.
    pub target: Target,
    /// What the run did.
    pub report: &'a mut Report,
    /// Counters shared with the progress display.
    pub progress: &'a Progress,
    /// Delete stored messages on the server.
    pub delete: bool,
    _lock: Flock<File>,
}

impl<'a> RunState<'a> {
    /// What every run needs before it connects: the password, the account
    /// lock, the state and the open target.
    pub fn open(
        job: &'a Job,
        stdout: Option<&SharedOut>,
        target_log: Transcript,
        report: &'a mut Report,
        progress: &'a Progress,
    ) -> Result<(RunState<'a>, Secret)> {
        let pass = password(job)?;
        let lock = lock(job)?;
        let sf = StateFile::at(job.state.clone());
        let st = sf.load()?;
        // The target is where fetched mail is delivered: whatever breaks
        // there (even a connection to an SMTP target) is a delivery failure
        // in fetchmail's terms, not a failure of the server read from.
        let target = Target::open(&job.target, &job.recipient, stdout, target_log)
            .map_err(|e| e.from_origin(Origin::Local))?
            .with_mda_timeout(job.account.mda_timeout.map(Duration::from_secs));
        let delete = !job.keep && target.may_delete();
        let rs = RunState {
            job,
            st,
            sf,
            target,
            report,
            progress,
            delete,
            _lock: lock,
        };
        Ok((rs, pass))
    }

    /// Write the state durably.
    pub fn save(&self) -> Result<()> {
        self.sf.save(&self.st)
    }

    /// Hand `batch` (id, wire bytes) to the target to store, and return at
    /// once (a Maildir stores on a thread of its own: see
    /// [`Target::begin`]); [`RunState::end_batch`] waits for it. The error
    /// is the state's (the in-flight record could not be saved).
    ///
    /// Before the target sees the batch, the state records it as in flight
    /// (durably); ids in `suspects` (in flight when an earlier run died)
    /// are first looked for in the target and not stored again when found.
    fn begin_batch<I: Clone + std::fmt::Display>(
        &mut self,
        key: &str,
        batch: Vec<(I, Vec<u8>)>,
        suspects: &Suspects,
    ) -> Result<Storing<I>> {
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
            for (k, hit) in self
                .target
                .find_stored(suspects.since, suspects.mark, &refs)
                .into_iter()
                .enumerate()
            {
                found[suspect[k]] = hit;
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A record left by a dead run is widened, never replaced: were it
        // replaced by this batch's (a later `since`, an mbox mark past the
        // messages that run stored), a kill before this batch is recorded
        // would hide those messages from the next run's search, which would
        // then store them a second time.
        let mark_now = self.target.mark();
        let (since, mark, mut id_set) = match self.st.inflight.get(key) {
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
        self.st.inflight.insert(
            key.to_string(),
            state::Inflight {
                ids: id_set,
                since,
                mark,
            },
        );
        self.save()?;
        let sizes: Vec<u64> = msgs.iter().map(|m| m.data.len() as u64).collect();
        let todo: Vec<usize> = (0..msgs.len()).filter(|&i| !found[i]).collect();
        let owned: Vec<Msg> = todo
            .iter()
            .map(|&i| Msg {
                data: std::mem::take(&mut msgs[i].data),
                sender: std::mem::take(&mut msgs[i].sender),
            })
            .collect();
        drop(msgs);
        let pending = self.target.begin(owned);
        Ok(Storing {
            ids,
            found,
            todo,
            sizes,
            pending,
        })
    }

    /// Wait for a batch handed over by [`RunState::begin_batch`]; returns
    /// the ids stored, in order, and records the rest in the report. The
    /// error is the target's, when it broke down (stop this account once
    /// what was stored is finished).
    fn end_batch<I: Clone + std::fmt::Display>(
        &mut self,
        batch: Storing<I>,
    ) -> (Vec<I>, Option<Error>) {
        let Storing {
            ids,
            found,
            todo,
            sizes,
            pending,
        } = batch;
        let (fates, err) = pending.wait();
        // An mbox repair that was refused or done is said, never silent.
        self.report.notes.extend(self.target.take_notes());
        let mut fate_of: Vec<Option<Fate>> = found
            .iter()
            .map(|&f| if f { Some(Fate::Stored) } else { None })
            .collect();
        for (k, f) in fates.into_iter().enumerate() {
            fate_of[todo[k]] = Some(f);
        }
        let mut stored = Vec::with_capacity(ids.len());
        for (i, f) in fate_of.iter().enumerate() {
            match f {
                Some(Fate::Stored) => {
                    stored.push(ids[i].clone());
                    if !found[i] {
                        let size = sizes[i];
                        self.report.fetched += 1;
                        self.report.bytes += size;
                        self.progress.messages.fetch_add(1, Ordering::Relaxed);
                        self.progress.bytes.fetch_add(size, Ordering::Relaxed);
                    }
                }
                Some(Fate::Kept(why)) => self.report.fail(
                    Class::Delivery,
                    format!(
                        "message {} kept on the server for a later run: {}: {why}",
                        ids[i],
                        self.job.target.describe()
                    ),
                ),
                Some(Fate::Refused(why)) => self.report.fail(
                    Class::Delivery,
                    format!(
                        "message {} left on the server: {}: {why}",
                        ids[i],
                        self.job.target.describe()
                    ),
                ),
                None => {}
            }
        }
        // See `open`: a target's failure is a delivery failure.
        (stored, err.map(|e| e.from_origin(Origin::Local)))
    }
}

/// A batch in the target's hands, not yet confirmed: what
/// [`RunState::end_batch`] needs to account for it.
struct Storing<I> {
    ids: Vec<I>,
    /// Found stored by a dead run: not handed to the target again.
    found: Vec<bool>,
    /// The indexes handed to the target, in order.
    todo: Vec<usize>,
    /// Each message's size as stored (LF line ends).
    sizes: Vec<u64>,
    pending: Pending,
}

/// Confirm the batch in the target's hands and record what it stored,
/// durably: the state learns the stored ids, and the batch's in-flight
/// record goes unless the target broke down (then what it may have stored
/// is looked for by the next run). Returns the ids stored (to be finished)
/// and the target's error.
fn settle<S: Source>(
    src: &mut S,
    rs: &mut RunState<'_>,
    key: &str,
    batch: Storing<S::Id>,
) -> Result<(Vec<S::Id>, Option<Error>)> {
    let (stored, err) = rs.end_batch(batch);
    src.record(&mut rs.st, &stored);
    if err.is_none() {
        rs.st.inflight.remove(key);
    }
    rs.save()?;
    Ok((stored, err))
}

/// Fetch one mailbox: finish what earlier runs stored, then fetch the new
/// messages in batches (at most `budget` of them; the budget shrinks by
/// what is taken), store, record, and finish each batch.
///
/// Pipelined, and overlapped with the disk: once batch k is read, batch
/// k-1 (stored meanwhile) is confirmed, and one state save records it
/// stored and batch k in flight; batch k goes to the target (a Maildir
/// stores it on its own thread), batch k-1 is finished, batch k+1 is
/// requested and read while batch k is stored. No other command may come
/// between a request and the reading of its answer, so finishing waits
/// for the read. At most one batch is in the target's hands and one
/// being read: memory stays within two batches' caps.
pub fn run_mailbox<S: Source>(src: &mut S, rs: &mut RunState<'_>, budget: &mut u64) -> Result<()> {
    let key = src.key().to_string();
    let Listing { stored, mut new } = src.list(rs)?;
    rs.save()?;
    if !stored.is_empty() {
        src.finish(&stored, rs)?;
    }
    if (new.len() as u64) > *budget {
        new.truncate(usize::try_from(*budget).unwrap_or(usize::MAX));
    }
    *budget -= new.len() as u64;
    // Batches: by count, and by the sizes the server claims (a hint only:
    // a source caps what a batch holds by the bytes actually received and
    // defers what does not fit to the front of the next batch).
    let per_batch = rs.job.batch.max(1);
    let mut queue: VecDeque<(S::Id, u64)> = new.into_iter().collect();
    let next_batch = |queue: &mut VecDeque<(S::Id, u64)>| -> Vec<(S::Id, u64)> {
        let mut b = Vec::new();
        let mut bytes = 0u64;
        while b.len() < per_batch
            && bytes < BATCH_BYTES
            && let Some(m) = queue.pop_front()
        {
            bytes += m.1;
            b.push(m);
        }
        b
    };
    let ids = |b: &[(S::Id, u64)]| -> Vec<S::Id> { b.iter().map(|m| m.0.clone()).collect() };
    let susp = suspects(&rs.st, &key);
    let mut to_finish: Vec<S::Id> = Vec::new();
    let mut in_flight: Option<Vec<(S::Id, u64)>> = None;
    // The batch the target is storing while the next one is read.
    let mut storing: Option<Storing<S::Id>> = None;
    let first = next_batch(&mut queue);
    if !first.is_empty() {
        src.request(&ids(&first))?;
        in_flight = Some(first);
    }
    while let Some(batch) = in_flight.take() {
        let received = src.receive(&ids(&batch), rs.report);
        // The batch before this one was stored meanwhile: confirm it and
        // record it in the state, whatever the read brought. The state is
        // saved below, with this batch's in-flight record (one durable
        // write for both), before the source finishes anything.
        if let Some(s) = storing.take() {
            let (stored, err) = rs.end_batch(s);
            src.record(&mut rs.st, &stored);
            to_finish = stored;
            if let Some(e) = err {
                // The target broke down: what it may have stored stays in
                // flight for the next run to look for; the batch just read
                // is not stored (it stays on the server). Finish what is
                // stored, unless the session cannot go on, and stop.
                rs.save()?;
                match received {
                    Ok(Received { broken: None, .. }) => {
                        src.finish(&to_finish, rs)?;
                        src.done(rs, false)?;
                    }
                    Ok(Received {
                        broken: Some(_), ..
                    }) => {
                        rs.target.finish();
                        src.done(rs, false)?;
                    }
                    Err(_) => {}
                }
                return Err(e);
            }
            rs.st.inflight.remove(&key);
        }
        let Received {
            messages,
            deferred,
            broken,
        } = match received {
            Ok(r) => r,
            Err(e) => {
                // Keep what was stored recorded: the next run finishes it.
                rs.save()?;
                return Err(e);
            }
        };
        // A source hands out only ids of this batch; the state must never
        // learn of another, so say it twice.
        let mut messages = messages;
        messages.retain(|(id, _)| batch.iter().any(|m| m.0 == *id));
        // Saves the state: the batch before recorded, this one in flight.
        let begun = rs.begin_batch(&key, messages, &susp)?;
        if let Some(e) = broken {
            // Nothing more may be said in this session: what is stored is
            // recorded, and the next run finishes it.
            settle(src, rs, &key, begun)?;
            rs.target.finish();
            src.done(rs, false)?;
            return Err(e);
        }
        // The batch before is durable and recorded: finish it, and ask for
        // the next while this one is stored.
        let go_on = || -> Result<()> {
            src.finish(&to_finish, rs)?;
            for d in deferred.into_iter().rev() {
                let size = batch.iter().find(|m| m.0 == d).map_or(0, |m| m.1);
                queue.push_front((d, size));
            }
            let next = next_batch(&mut queue);
            if !next.is_empty() {
                src.request(&ids(&next))?;
                in_flight = Some(next);
            }
            Ok(())
        };
        if let Err(e) = go_on() {
            // The session failed: wait for this batch and record what it
            // stored, so the next run finishes it instead of looking.
            settle(src, rs, &key, begun)?;
            return Err(e);
        }
        to_finish.clear();
        // Stored while the next batch is read (the loop's next turn).
        storing = Some(begun);
    }
    if let Some(s) = storing.take() {
        let (stored, err) = settle(src, rs, &key, s)?;
        to_finish = stored;
        if let Some(e) = err {
            src.finish(&to_finish, rs)?;
            src.done(rs, false)?;
            return Err(e);
        }
    }
    src.finish(&to_finish, rs)?;
    src.done(rs, true)
}

/// Hold the account's lock (`STATE.lock`, flock) for the run: two
/// mail-fetch processes on one account would fetch the same messages.
fn lock(job: &Job) -> Result<Flock<File>> {
    use nix::fcntl::FlockArg;
    let path = job.state.with_extension("lock");
    let ctx = format!("locking {}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).context(&*ctx)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .context(&*ctx)?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        let cause = if errno == nix::errno::Errno::EWOULDBLOCK {
            "another mail-fetch is fetching this account".to_string()
        } else {
            errno.desc().to_string()
        };
        // A lock not taken, whatever the reason, is "busy" (fetchmail's
        // 8): that is what a local `WouldBlock` means to `Class::of`.
        Error::io(
            ctx,
            &std::io::Error::new(std::io::ErrorKind::WouldBlock, cause),
        )
        .from_origin(Origin::Local)
    })
}

/// The account's password. Any failure to get it (no command, a command
/// that fails) is the configuration's to fix: fetchmail's 5.
fn password(job: &Job) -> Result<Secret> {
    match job.account.password(&job.name) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(Error::new(
            Kind::Config,
            format!("account {}", job.name),
            "no password_command or password_env (--password-command, --password-env)",
        )
        .from_origin(Origin::Local)),
        Err(e) => Err(e.with_kind(Kind::Config).from_origin(Origin::Local)),
    }
}

/// Messages a dead run may have stored already: ids and since when.
#[derive(Debug)]
struct Suspects {
    ids: BTreeSet<String>,
    since: SystemTime,
    mark: Option<u64>,
}

/// The in-flight record of `key` in the state, if any. It stays there
/// until a later batch of the same mailbox replaces it.
fn suspects(st: &State, key: &str) -> Suspects {
    match st.inflight.get(key) {
        Some(i) => Suspects {
            ids: i.ids.clone(),
            since: UNIX_EPOCH + Duration::from_secs(i.since),
            mark: i.mark,
        },
        None => Suspects {
            ids: BTreeSet::new(),
            since: UNIX_EPOCH,
            mark: None,
        },
    }
}
