//! Running the queue: trying entries, recording every recipient's fate,
//! backing off, warning, expiring and bouncing.
//!
//! Guarantees (on top of the spool's, see [`crate::queue`]):
//!
//! - **At most the entry in flight is sent twice.** An entry is locked, sent,
//!   and its new state saved (or the entry removed) before the next entry is
//!   touched; a runner killed at any point leaves every other entry as it
//!   was, and the one in flight with its old state (sent again next time:
//!   a duplicate, never a loss).
//! - **Bounces are never lost.** A failure notice is queued as an entry of
//!   its own (null sender, the same route) and durable *before* the failed
//!   recipients are marked as reported; a crash between the two may send a
//!   notice twice, never zero times. Notices to the null sender are never
//!   made (a bounce of a bounce), and a failed notice is dropped, not
//!   bounced.
//! - **One connection per destination for the whole run**: the runner
//!   hands every entry to one [`Sender`], which keeps its connections open
//!   (quitting them at the end of each pass). A destination that could not
//!   be reached at all is not dialled again in the same pass: the other
//!   entries for it are deferred with the same reason, so a dead server
//!   costs one connection timeout per run, not one per entry.
//! - **Nothing slow between two sends that need not be there**: a finished
//!   entry vanishes by one rename, and its files are deleted on a reaper
//!   thread while the next entry is sent; the spool directory is fsynced
//!   once per 64 removals and at the end of the pass (see the spool's
//!   docs for why that can only ever cause a duplicate, never a loss).
//! - **An entry without its message file is held and reported once**
//!   (as [`Outcome::Failed`]), never taken for one another runner holds.
//! - **Our own failures never bounce**: a config error or refused
//!   credentials (sysexits 78, 77) leave the recipients pending for an
//!   admin to fix, instead of bouncing every queued message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::exit::Result;
use crate::queue::dsn::{self, Action, Notice};
use crate::queue::{Policy, RcptStatus, Spool, State, now};
use crate::send::{Envelope, Fate, RcptOutcome, Route, Sender};

/// Which entries a pass tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// Those due (next try reached, or expired): `mail-queue run`.
    Due,
    /// All, ignoring the backoff: `mail-queue flush`.
    All,
    /// These, ignoring the backoff: `mail-queue flush ID...`.
    Ids(Vec<String>),
}

/// What became of an entry in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished: nothing is left pending (failures, if any, reported);
    /// the entry is removed.
    Done,
    /// Some recipients are still pending; next try at this time.
    Deferred(u64),
    /// Held by an admin; not tried.
    Held,
    /// Another runner holds it; not tried.
    Busy,
    /// Removed by someone else since the listing.
    Gone,
    /// Could not be handled (its state is unreadable, saving failed): why.
    /// The entry stays as it was, or with the state last saved.
    Failed(String),
}

/// One entry's result in a pass (for the tool to print).
#[derive(Debug, Clone)]
pub struct EntryReport {
    /// The entry's id.
    pub id: String,
    /// What became of it.
    pub outcome: Outcome,
    /// The recipients tried in this pass and their fates.
    pub tried: Vec<RcptOutcome>,
    /// Recipients given up on because the entry expired.
    pub expired: Vec<String>,
    /// Id of the failure notice queued for the sender.
    pub bounce: Option<String>,
    /// Id of the delay warning queued for the sender.
    pub warning: Option<String>,
    /// Failed recipients of a null-sender entry: dropped, not bounced.
    pub dropped: Vec<String>,
}

impl EntryReport {
    fn new(id: &str, outcome: Outcome) -> EntryReport {
        EntryReport {
            id: id.to_string(),
            outcome,
            tried: Vec::new(),
            expired: Vec::new(),
            bounce: None,
            warning: None,
            dropped: Vec::new(),
        }
    }
}

/// Removals between two fsyncs of the spool directory.
const SYNC_EVERY: u32 = 64;

/// Runs passes over a spool with one [`Sender`].
pub struct Runner<'a> {
    spool: &'a Spool,
    sender: Sender,
    policy: Policy,
    hostname: String,
    removals: u32,
    /// Routes (by their JSON form) that could not be reached in this pass.
    dead: HashMap<String, String>,
    /// Deletes removed entries' files on its own thread, while the next
    /// entry is sent: unlinking and freeing the inodes is most of what a
    /// removal costs, and none of it needs to be waited for (the entry is
    /// gone from the spool at the rename).
    reaper: Option<Reaper>,
}

struct Reaper {
    tx: std::sync::mpsc::Sender<PathBuf>,
    thread: std::thread::JoinHandle<()>,
}

impl<'a> Runner<'a> {
    /// A runner over `spool`, sending with `sender`, retrying by `policy`.
    pub fn new(spool: &'a Spool, sender: Sender, policy: Policy) -> Runner<'a> {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        Runner {
            spool,
            sender,
            policy,
            hostname,
            removals: 0,
            dead: HashMap::new(),
            reaper: None,
        }
    }

    /// One pass over the entries `select` picks, oldest first, then over
    /// the notices queued during the pass. `report` is called for every
    /// entry tried or skipped (entries merely not due are not reported).
    /// An `Err` is a spool failure (I/O), not a delivery failure.
    pub fn pass(&mut self, select: &Select, report: &mut dyn FnMut(&EntryReport)) -> Result<()> {
        self.spool.clean_tmp();
        self.dead.clear();
        let (ids, force) = match select {
            Select::Due => (self.spool.ids()?, false),
            Select::All => (self.spool.ids()?, true),
            Select::Ids(v) => (v.clone(), true),
        };
        let mut notices: Vec<String> = Vec::new();
        // An entry that cannot be handled (unreadable state, a failed
        // save) is reported and skipped: one bad entry never stalls the
        // queue. Notices queued in this pass go out in it too (they are
        // due), after the entries selected.
        let mut i = 0;
        while i < ids.len() + notices.len() {
            let (id, force) = match ids.get(i) {
                Some(id) => (id.clone(), force),
                None => (notices[i - ids.len()].clone(), true),
            };
            i += 1;
            match self.entry(&id, force, &mut notices) {
                Ok(Some(r)) => report(&r),
                Ok(None) => {}
                Err(e) => report(&EntryReport::new(&id, Outcome::Failed(e.to_string()))),
            }
        }
        self.sender.finish();
        self.reaper_join();
        if self.removals > 0 {
            self.removals = 0;
            self.spool.sync()?;
        }
        Ok(())
    }

    /// Delete a removed entry's directory, on the reaper thread when one
    /// can be had.
    fn reap(&mut self, dir: PathBuf) {
        if self.reaper.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
            let spawned = std::thread::Builder::new()
                .name("queue-reaper".into())
                .spawn(move || {
                    for d in rx {
                        let _ = std::fs::remove_dir_all(&d);
                    }
                });
            if let Ok(thread) = spawned {
                self.reaper = Some(Reaper { tx, thread });
            }
        }
        match &self.reaper {
            Some(r) => {
                if let Err(e) = r.tx.send(dir) {
                    let _ = std::fs::remove_dir_all(e.0);
                }
            }
            None => {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    /// Wait for the reaper to finish its work.
    fn reaper_join(&mut self) {
        if let Some(r) = self.reaper.take() {
            drop(r.tx);
            let _ = r.thread.join();
        }
    }

    fn expired(&self, s: &State, t: u64) -> bool {
        t >= s.created.saturating_add(self.policy.expire.as_secs())
    }

    /// Try one entry. `Ok(None)`: not due.
    fn entry(
        &mut self,
        id: &str,
        force: bool,
        notices: &mut Vec<String>,
    ) -> Result<Option<EntryReport>> {
        // A cheap look before locking: most entries of a `run` are not due.
        if !force {
            match self.spool.load(id) {
                Ok(s) if s.held => return Ok(None),
                Ok(s)
                    if s.next_try > now()
                        && !self.expired(&s, now())
                        && !s.pending().is_empty() =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == crate::exit::Kind::NoUser => return Ok(None),
                _ => {}
            }
        }
        if self.spool.message_missing(id) {
            // Nothing to send, and nothing to lock: without this it looked
            // "busy" (the lock opens the message) on every run for ever.
            if self.spool.load(id).is_ok_and(|s| s.held) {
                return Ok(Some(EntryReport::new(id, Outcome::Held)));
            }
            match self.spool.hold_without_message(id) {
                Ok(()) => {}
                // Finished and removed by a concurrent runner meanwhile.
                Err(e) if e.kind() == crate::exit::Kind::NoUser => {
                    return Ok(Some(EntryReport::new(id, Outcome::Gone)));
                }
                Err(e) => return Err(e),
            }
            return Ok(Some(EntryReport::new(
                id,
                Outcome::Failed(crate::queue::MISSING_MESSAGE.to_string()),
            )));
        }
        let Some(mut l) = self.spool.lock(id, false)? else {
            let outcome = if self.spool.exists(id) {
                Outcome::Busy
            } else {
                Outcome::Gone
            };
            return Ok(Some(EntryReport::new(id, outcome)));
        };
        if l.state.held {
            return Ok(Some(EntryReport::new(id, Outcome::Held)));
        }
        let t = now();
        if !force
            && l.state.next_try > t
            && !self.expired(&l.state, t)
            && !l.state.pending().is_empty()
        {
            return Ok(None);
        }
        let mut rep = EntryReport::new(id, Outcome::Done);
        let pending = l.state.pending();
        if !pending.is_empty() {
            let route_key = dead_key(&l.state.route, &l.state.pending());
            let env = Envelope {
                from: l.state.from.clone(),
                rcpts: pending,
                dsn: l.state.dsn.clone(),
            };
            let outcomes = match self.dead.get(&route_key) {
                Some(reason) => env
                    .rcpts
                    .iter()
                    .map(|r| RcptOutcome {
                        rcpt: r.clone(),
                        fate: Fate::Temporary,
                        reply: format!("{reason} (not dialled again in this pass)"),
                        host: None,
                    })
                    .collect(),
                None => {
                    let msg = l.message()?;
                    let mut o = self.deliver(&l.state.route, &env, &msg);
                    // A connection that broke (a server closing an idle or
                    // busy connection, 421) is worth one fresh try at once:
                    // the sender has dropped it and dials again.
                    if unreachable(&o) {
                        o = self.deliver(&l.state.route, &env, &msg);
                    }
                    if unreachable(&o) {
                        self.dead.insert(route_key, o[0].reply.clone());
                    }
                    o
                }
            };
            let t = now();
            let mut reasons = Vec::new();
            // Outcomes come in the order of the pending recipients (the
            // same address twice is two recipients, each with its own fate).
            let slots: Vec<usize> = (0..l.state.rcpts.len())
                .filter(|&i| l.state.rcpts[i].status == RcptStatus::Pending)
                .collect();
            for ((addr, o), i) in env.rcpts.iter().zip(&outcomes).zip(slots) {
                let r = &mut l.state.rcpts[i];
                r.reply = Some(o.reply.clone());
                r.host = o.host.clone();
                match o.fate {
                    Fate::Delivered => r.status = RcptStatus::Delivered,
                    Fate::Temporary => {
                        reasons.push(format!("{addr}: {}", o.reply));
                    }
                    Fate::Permanent { .. } => {
                        r.status = RcptStatus::Failed;
                        reasons.push(format!("{addr}: {}", o.reply));
                    }
                }
            }
            l.state.attempts = l.state.attempts.saturating_add(1);
            let summary = if reasons.is_empty() {
                "delivered".to_string()
            } else if reasons.len() > 1 && outcomes.iter().all(|o| o.reply == outcomes[0].reply) {
                outcomes[0].reply.clone()
            } else {
                reasons.join("; ")
            };
            l.state.log_attempt(t, summary);
            rep.tried = outcomes;
        }

        let t = now();
        let still = l.state.pending();
        if !still.is_empty() {
            if self.expired(&l.state, t) {
                for r in l.state.rcpts.iter_mut() {
                    if r.status == RcptStatus::Pending {
                        r.status = RcptStatus::Failed;
                        r.expired = true;
                        rep.expired.push(r.addr.clone());
                    }
                }
            } else {
                let next = t.saturating_add(self.policy.backoff(l.state.attempts).as_secs());
                l.state.next_try = next;
                rep.outcome = Outcome::Deferred(next);
                let warn_due = self
                    .policy
                    .warn_after
                    .is_some_and(|w| t >= l.state.created.saturating_add(w.as_secs()));
                if warn_due
                    && !l.state.warned
                    && !l.state.from.is_empty()
                    && notify_wants(&l.state, "DELAY")
                {
                    let msg = l.message()?;
                    let pending: Vec<&super::Rcpt> = l
                        .state
                        .rcpts
                        .iter()
                        .filter(|r| r.status == RcptStatus::Pending)
                        .collect();
                    let until = l.state.created.saturating_add(self.policy.expire.as_secs());
                    let id =
                        self.notify(&l.state, id, Action::Delayed, pending, Some(until), &msg)?;
                    rep.warning = Some(id.clone());
                    notices.push(id);
                    l.state.warned = true;
                }
            }
        }

        let unreported: Vec<&super::Rcpt> = l
            .state
            .rcpts
            .iter()
            .filter(|r| r.status == RcptStatus::Failed && !r.bounced)
            .collect();
        if !unreported.is_empty() {
            if l.state.from.is_empty() || !notify_wants(&l.state, "FAILURE") {
                rep.dropped = unreported.iter().map(|r| r.addr.clone()).collect();
            } else {
                let msg = l.message()?;
                let id = self.notify(&l.state, id, Action::Failed, unreported, None, &msg)?;
                rep.bounce = Some(id.clone());
                notices.push(id);
            }
            for r in l.state.rcpts.iter_mut() {
                if r.status == RcptStatus::Failed {
                    r.bounced = true;
                }
            }
        }

        if l.state.is_done() {
            rep.outcome = Outcome::Done;
            let litter = l.unlink()?;
            self.reap(litter);
            self.removals += 1;
            if self.removals >= SYNC_EVERY {
                self.removals = 0;
                self.spool.sync()?;
            }
        } else {
            l.save()?;
        }
        Ok(Some(rep))
    }

    /// One delivery through the sender, with failures of our own setup
    /// made temporary (see [`own_failure`]).
    fn deliver(&mut self, route: &Route, env: &Envelope, msg: &[u8]) -> Vec<RcptOutcome> {
        let mut o = self.sender.deliver(route, env, msg);
        for r in o.iter_mut() {
            if own_failure(&r.fate) {
                r.fate = Fate::Temporary;
            }
        }
        o
    }

    /// Queue a notice about `rcpts` of entry `id` to its sender (durable
    /// when this returns); returns the notice's id.
    fn notify(
        &self,
        s: &State,
        id: &str,
        action: Action,
        rcpts: Vec<&super::Rcpt>,
        retry_until: Option<u64>,
        original: &[u8],
    ) -> Result<String> {
        let notice = Notice {
            action,
            reporting_mta: &self.hostname,
            queue_id: id,
            sender: &s.from,
            arrival: s.created,
            now: now(),
            retry_until,
            rcpts,
            original,
        };
        let msg = dsn::build(&notice);
        let env = Envelope {
            from: String::new(),
            rcpts: vec![s.from.clone()],
            dsn: Default::default(),
        };
        self.spool.enqueue(&s.route, &env, &msg, "")
    }

    /// Hand the sender back (e.g. to reuse it).
    pub fn into_sender(self) -> Sender {
        self.sender
    }
}

/// Is a "permanent" failure really ours (a config error, refused
/// credentials)? In the queue it then waits for an admin to fix it instead
/// of bouncing every queued message; mail-send, run by a person or a
/// script, reports it at once instead.
fn own_failure(f: &Fate) -> bool {
    matches!(f, Fate::Permanent { code } if *code == crate::exit::CONFIG || *code == crate::exit::NOPERM)
}

/// Does the sender want `what` notices (RFC 3461 `NOTIFY=`: absent means
/// failures and delays, `NEVER` none)?
fn notify_wants(s: &State, what: &str) -> bool {
    match s.dsn.notify.as_deref() {
        None => true,
        Some(n) => n.split(',').any(|w| w.trim().eq_ignore_ascii_case(what)),
    }
}

/// Did no server answer for any recipient (a connection failure, or a
/// server closing the session with 421)?
fn unreachable(o: &[RcptOutcome]) -> bool {
    !o.is_empty()
        && o.iter().all(|r| {
            r.fate == Fate::Temporary
                && (!dsn::is_server_reply(&r.reply) || r.reply.starts_with("421"))
        })
}

/// The key under which an unreachable destination is remembered for the
/// rest of a pass: the route, and for direct delivery also the recipient
/// domains (each has its own MX hosts).
fn dead_key(route: &Route, rcpts: &[String]) -> String {
    let mut key = serde_json::to_string(route).unwrap_or_default();
    if let Route::Direct { .. } = route {
        let mut domains: Vec<String> = rcpts
            .iter()
            .map(|r| {
                r.rsplit_once('@')
                    .map_or("", |(_, d)| d)
                    .to_ascii_lowercase()
            })
            .collect();
        domains.sort();
        domains.dedup();
        key.push_str(&domains.join(","));
    }
    key
}

impl Spool {
    /// When the next entry falls due (its next try or its expiry), `None`
    /// for an empty queue (held entries never fall due).
    pub fn next_due(&self, policy: &Policy) -> Result<Option<u64>> {
        let mut best: Option<u64> = None;
        for l in self.list()? {
            let Ok(s) = l.state else { continue };
            if s.held {
                continue;
            }
            let expiry = s.created.saturating_add(policy.expire.as_secs());
            let due = if s.pending().is_empty() {
                // Only a bounce left to queue: due now.
                0
            } else {
                s.next_try.min(expiry)
            };
            best = Some(best.map_or(due, |b| b.min(due)));
        }
        Ok(best)
    }
}

/// How long `run --watch` sleeps at most between looks at the spool.
pub const WATCH_POLL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn out(fate: Fate, reply: &str) -> RcptOutcome {
        RcptOutcome {
            rcpt: "a@x".into(),
            fate,
            reply: reply.into(),
            host: Some("h".into()),
        }
    }

    #[test]
    fn unreachable_means_no_server_answered() {
        assert!(unreachable(&[out(
            Fate::Temporary,
            "127.0.0.1:25: connecting: Connection refused"
        )]));
        assert!(unreachable(&[out(Fate::Temporary, "421 4.3.2 closing")]));
        assert!(!unreachable(&[out(Fate::Temporary, "451 4.3.0 later")]));
        assert!(!unreachable(&[
            out(Fate::Temporary, "connection lost"),
            out(Fate::Delivered, "250 ok")
        ]));
        assert!(!unreachable(&[]));
    }

    #[test]
    fn own_failures_are_config_and_credentials() {
        assert!(own_failure(&Fate::Permanent {
            code: crate::exit::CONFIG
        }));
        assert!(own_failure(&Fate::Permanent {
            code: crate::exit::NOPERM
        }));
        assert!(!own_failure(&Fate::Permanent {
            code: crate::exit::NOUSER
        }));
        assert!(!own_failure(&Fate::Temporary));
    }

    #[test]
    fn direct_routes_are_dead_per_domain() {
        let d = Route::Direct {
            resolver: None,
            mx_port: None,
        };
        let a = dead_key(&d, &["x@A.org".into(), "y@a.org".into()]);
        assert_eq!(a, dead_key(&d, &["z@a.org".into()]));
        assert_ne!(a, dead_key(&d, &["z@b.org".into()]));
        let l = Route::Lmtp {
            target: "h:24".into(),
        };
        assert_eq!(
            dead_key(&l, &["x@a.org".into()]),
            dead_key(&l, &["x@b.org".into()])
        );
    }

    #[test]
    fn notify_lists() {
        let mut s: State = serde_json::from_str(
            r#"{"version":1,"created":0,"size":0,"route":{"route":"lmtp","target":"h"},
                "from":"a@x","rcpts":[],"next_try":0,"attempts":0}"#,
        )
        .unwrap();
        assert!(notify_wants(&s, "FAILURE") && notify_wants(&s, "DELAY"));
        s.dsn.notify = Some("NEVER".into());
        assert!(!notify_wants(&s, "FAILURE"));
        s.dsn.notify = Some("success, failure".into());
        assert!(notify_wants(&s, "FAILURE") && !notify_wants(&s, "DELAY"));
    }
}
