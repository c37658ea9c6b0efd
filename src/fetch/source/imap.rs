//! IMAP folders as a [`Source`], and the IMAP run: log in, each folder in
//! turn through [`run_mailbox`], then (with `--idle`) IDLE on the folder
//! and fetch again when it changes.
//!
//! New mail is found by UID above the folder's `done_through` (or by
//! `UNSEEN`); stored messages are remembered by UID until `done_through`
//! passes them. In delete mode every UID at or below `done_through` that
//! is still in the folder was stored (by a `--keep` run, or by a run that
//! died before deleting it) and is deleted without storing it again.
//! FETCH answers the batch did not ask for are never stored, deleted or
//! remembered: they are reported once per folder.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::exit::{Kind, Result};
use crate::fetch::run::{RunState, run_mailbox};
use crate::fetch::source::{Listing, Received, Source};
use crate::fetch::state::{Folder, State};
use crate::fetch::target::SharedOut;
use crate::fetch::{BATCH_BYTES, Class, Job, Logs, Progress, Report};
use crate::proto::imap::{FetchLimits, Fetched, Imap, Login, MAX_MESSAGE, MAX_UNTAGGED, Selected};

/// The IMAP run. With `watch`, after the first pass IDLE on the (single)
/// folder and fetch again whenever it changes, until `progress.stop`.
pub fn run(
    job: &Job,
    logs: Logs,
    progress: &Progress,
    stdout: Option<&SharedOut>,
    report: &mut Report,
    watch: Option<Duration>,
) -> Result<()> {
    let (mut rs, pass) = RunState::open(job, stdout, logs.target, report, progress)?;
    let mut c = Imap::connect(
        &job.host,
        job.port,
        job.tls,
        &job.tls_opts,
        job.timeout,
        logs.source,
    )?;
    let how = match job.auth {
        Some(m) => Login::Sasl(m),
        None => Login::Auto,
    };
    c.login(&job.user, &pass, how)?;
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
                    rs.report
                        .fail(Class::Protocol, format!("folder {folder}: {e}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut src = ImapFolder {
                c: &mut c,
                name: folder,
                sel,
                f: Folder::default(),
                present: Vec::new(),
                sizes: HashMap::new(),
                asked: None,
                stray: Stray::default(),
                flagged: Vec::new(),
                max_size: job.max_size,
            };
            run_mailbox(&mut src, &mut rs, &mut budget)?;
        }
        let Some(max_wait) = watch else { break };
        if progress.stop.load(Ordering::Relaxed) {
            break;
        }
        // IDLE on the first (in watch mode: the only) folder.
        c.idle(max_wait)?;
        budget = job.max_messages.unwrap_or(u64::MAX);
    }
    rs.target.finish();
    c.logout();
    Ok(())
}

/// One selected folder.
struct ImapFolder<'c> {
    c: &'c mut Imap,
    name: &'c str,
    sel: Selected,
    /// The folder's state, kept here during the pass and written back to
    /// the account's state at each record.
    f: Folder,
    /// The UIDs the search found (above `done_through`, and in delete mode
    /// at or below it too).
    present: Vec<u32>,
    /// Sizes the server claims (asked only with `--max-size`).
    sizes: HashMap<u32, u64>,
    /// The tag and UIDs of the FETCH sent and not yet read.
    asked: Option<(u32, Vec<u32>)>,
    stray: Stray,
    /// Stored, recorded and flagged \Deleted this pass: expunged once, at
    /// the end of the folder (see `finish`).
    flagged: Vec<u32>,
    /// `--max-size`.
    max_size: Option<u64>,
}

impl ImapFolder<'_> {
    fn search(&mut self, unseen: bool, delete: bool) -> Result<Vec<u32>> {
        if self.sel.exists == 0 {
            return Ok(Vec::new());
        }
        if unseen {
            return self.c.uid_search("UNSEEN");
        }
        // In delete mode the UIDs at or below `done_through` matter too:
        // any still there was stored by an earlier run (one that kept it).
        let from = if delete {
            1
        } else {
            self.f.done_through.saturating_add(1)
        };
        let through = if delete { 0 } else { self.f.done_through };
        // `UID n:*` always matches the highest UID, even below n.
        Ok(self
            .c
            .uid_search(&format!("UID {from}:*"))?
            .into_iter()
            .filter(|u| *u > through)
            .collect())
    }

    /// Stored by an earlier run: recorded, or at or below `done_through`.
    fn was_stored(&self, uid: u32) -> bool {
        uid <= self.f.done_through || self.f.stored.contains(&uid)
    }
}

impl Source for ImapFolder<'_> {
    type Id = u32;

    fn key(&self) -> &str {
        self.name
    }

    fn list(&mut self, rs: &mut RunState<'_>) -> Result<Listing<u32>> {
        let job = rs.job;
        let folder = self.name;
        self.f = rs.st.imap.get(folder).cloned().unwrap_or_default();
        let unseen = job.unseen;
        let mut present = self.search(unseen, rs.delete)?;
        let known =
            self.f.uidvalidity != 0 || self.f.done_through != 0 || !self.f.stored.is_empty();
        if !self.f.sync(self.sel.uidvalidity, &present) {
            rs.st.inflight.remove(folder);
            if known {
                rs.report.notes.push(format!(
                    "{folder}: UIDVALIDITY changed: every message in it is new again"
                ));
            }
            present = self.search(unseen, rs.delete)?;
        }
        rs.st.imap.insert(folder.to_string(), self.f.clone());
        // Stored before but not yet deleted (or flagged): finish that.
        let stored: Vec<u32> = present
            .iter()
            .copied()
            .filter(|&u| self.was_stored(u))
            .collect();
        let mut new: Vec<u32> = present
            .iter()
            .copied()
            .filter(|&u| !self.was_stored(u))
            .collect();
        self.present = present;
        if let Some(max) = job.max_size
            && !new.is_empty()
        {
            for (uid, size) in self.c.uid_sizes(&new)? {
                self.sizes.insert(uid, size);
            }
            new.retain(|u| match self.sizes.get(u) {
                Some(&s) if s > max => {
                    rs.report.fail(
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
        let new = new
            .into_iter()
            .map(|u| (u, self.sizes.get(&u).copied().unwrap_or(0)))
            .collect();
        Ok(Listing { stored, new })
    }

    fn request(&mut self, batch: &[u32]) -> Result<()> {
        let tag = self.c.uid_fetch_send(batch)?;
        self.asked = Some((tag, batch.to_vec()));
        Ok(())
    }

    fn receive(&mut self, batch: &[u32], report: &mut Report) -> Result<Received<u32>> {
        let Some((tag, asked)) = self.asked.take() else {
            return Ok(Received {
                messages: Vec::new(),
                deferred: batch.to_vec(),
                broken: None,
            });
        };
        let folder = self.name;
        let max_size = self.max_size;
        // What a batch holds is capped by the bytes actually received, and
        // a message that does not fit is deferred to the next batch.
        let limits = FetchLimits {
            message: max_size.unwrap_or(MAX_MESSAGE).min(MAX_MESSAGE),
            batch: BATCH_BYTES,
            untagged: MAX_UNTAGGED,
        };
        let mut got: Vec<(u32, Vec<u8>)> = Vec::with_capacity(asked.len());
        let mut deferred = Vec::new();
        let stray = &mut self.stray;
        self.c.uid_fetch_read(tag, &asked, limits, &mut |ev| match ev {
            Fetched::Message(uid, data) => got.push((uid, data)),
            Fetched::Deferred(uid) => deferred.push(uid),
            Fetched::TooLarge(uid, n) => report.fail(
                Class::Delivery,
                match max_size {
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
        })?;
        // The reader hands out only UIDs this batch asked for, each once.
        got.retain(|(u, _)| asked.contains(u));
        got.sort_by_key(|x| x.0);
        got.dedup_by_key(|x| x.0);
        Ok(Received {
            messages: got,
            deferred,
            broken: None,
        })
    }

    fn drain(&mut self) -> Result<()> {
        if let Some((tag, asked)) = self.asked.take() {
            let drain = FetchLimits {
                message: 0,
                batch: 0,
                untagged: MAX_UNTAGGED,
            };
            self.c.uid_fetch_read(tag, &asked, drain, &mut |_| {})?;
        }
        Ok(())
    }

    fn record(&mut self, st: &mut State, stored: &[u32]) {
        self.f.stored.extend(stored.iter().copied());
        st.imap.insert(self.name.to_string(), self.f.clone());
    }

    fn finish(&mut self, ids: &[u32], rs: &mut RunState<'_>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        if rs.delete {
            // Flag now, expunge once when the folder is done: an expunge
            // makes Dovecot rewrite its index and remove the files before it
            // answers, which per batch stalled the next batch's streaming.
            // A run that ends before the expunge leaves them flagged; they
            // are at or below `done_through` or recorded, so the next run
            // finds them (its search includes \Deleted) and deletes them.
            self.c.uid_add_flags(ids, "\\Deleted")?;
            self.flagged.extend_from_slice(ids);
        } else if rs.job.unseen || rs.job.mark_seen {
            self.c.uid_add_flags(ids, "\\Seen")?;
        }
        Ok(())
    }

    fn done(&mut self, rs: &mut RunState<'_>, complete: bool) -> Result<()> {
        self.stray.report(self.name, rs.report);
        // What this pass flagged goes now, also when the run stops early
        // (the target broke down; the session itself is fine, or `done`
        // would not be called). Then a failed expunge must not hide the
        // error that stopped the run: the next run deletes those messages.
        if !self.flagged.is_empty() {
            let flagged = std::mem::take(&mut self.flagged);
            match self.c.expunge(&flagged) {
                Ok(()) => rs.report.deleted += flagged.len() as u64,
                Err(e) if complete => return Err(e),
                Err(_) => {}
            }
        }
        if !complete {
            return Ok(());
        }
        if !rs.job.unseen {
            self.f.compact(&self.present);
        }
        rs.st.imap.insert(self.name.to_string(), self.f.clone());
        rs.save()
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
