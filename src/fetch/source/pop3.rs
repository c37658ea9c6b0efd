//! A POP3 maildrop as a [`Source`], and the POP3 run: UIDL tells what is
//! new; stored messages are remembered by UIDL, LIST size and header
//! digest; DELE follows each durable batch and takes effect at QUIT (a run
//! that dies before QUIT deletes nothing; the next run deletes what the
//! state says was stored, without storing it again).
//!
//! Servers reuse UIDLs and some list one twice, so the state's word is
//! taken with care:
//!
//! - A message of this session is deleted by the number it was retrieved
//!   under, right after it is stored and recorded: never by UIDL.
//! - A message deleted on the state's word (stored by an earlier run) must
//!   match a record of its UIDL in size and, when the record has a digest
//!   and the server offers TOP, in header digest. Anything else under a
//!   known UIDL is new mail. A UIDL the server lists twice is never deleted
//!   on the state's word (reported); records of earlier versions, which
//!   know no size, never are either: such a message is fetched again
//!   (at worst a duplicate, never a loss), except with `--keep`, where it
//!   counts as stored as it did before and its record gains the size.
//! - A message is read only up to its LIST size plus [`pop3_slack`] and up
//!   to `--max-size` ([`POP3_DEFAULT_MAX_SIZE`] without it). One that goes
//!   past is not stored; what came before it in its batch is, the session
//!   is dropped without QUIT (so nothing is deleted in it), and the state
//!   remembers the message so that later runs leave it alone while the
//!   server lists it with that size.
//! - Deletions are counted only once QUIT is answered `+OK`.

use std::collections::{BTreeMap, HashMap};

use crate::exit::{Error, Kind, Origin, Result};
use crate::fetch::run::{RunState, run_mailbox};
use crate::fetch::source::{Listing, Received, Source};
use crate::fetch::state::{Oversized, Pop3Stored, State};
use crate::fetch::target::SharedOut;
use crate::fetch::{Class, Job, Logs, PopLogin, Progress, Report};
use crate::proto::pop3::{Login, Pop3, TooLarge, header_digest};

/// The most bytes one POP3 message may take when `--max-size` is not given
/// (see [`crate::proto::pop3::MAX_MESSAGE`]): a larger one is left on the
/// server and reported, never held.
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
#[derive(Debug, Clone, PartialEq)]
pub struct PopMsg {
    n: u32,
    uidl: String,
}

impl std::fmt::Display for PopMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uidl)
    }
}

/// The POP3 run (see the module docs).
pub fn run(
    job: &Job,
    logs: Logs,
    progress: &Progress,
    stdout: Option<&SharedOut>,
    report: &mut Report,
) -> Result<()> {
    let (mut rs, pass) = RunState::open(job, stdout, logs.target, report, progress)?;
    let mut c = Pop3::connect(
        &job.host,
        job.port,
        job.tls,
        &job.tls_opts,
        job.timeout,
        logs.source,
    )?;
    let how = match (job.pop_login, job.auth) {
        (Some(PopLogin::Apop), _) => Login::Apop,
        (Some(PopLogin::User), _) => Login::User,
        (None, Some(m)) => Login::Sasl(m),
        (None, None) => Login::Auto,
    };
    c.login(&job.user, &pass, how)?;
    let max_size = job.max_size.unwrap_or(POP3_DEFAULT_MAX_SIZE);
    let mut src = Maildrop {
        c,
        max_size,
        sizes: HashMap::new(),
        digests: HashMap::new(),
        too_large: None,
        dropped: false,
        marked: 0,
    };
    let mut budget = job.max_messages.unwrap_or(u64::MAX);
    let res = run_mailbox(&mut src, &mut rs, &mut budget);
    rs.target.finish();
    let Maildrop {
        c, marked, dropped, ..
    } = src;
    match res {
        Ok(()) => {
            c.quit()?;
            rs.report.deleted += marked;
            Ok(())
        }
        // The session was dropped on purpose: without QUIT nothing marked
        // in it is deleted (the next run deletes what is recorded).
        Err(e) if dropped => Err(e),
        Err(e) => {
            // QUIT anyway: what was stored, recorded and marked is deleted
            // now. (A session broken by an I/O or protocol error sends
            // nothing more, so this deletes nothing there.)
            if c.quit().is_ok() {
                rs.report.deleted += marked;
            }
            Err(e)
        }
    }
}

/// The maildrop of one session.
struct Maildrop {
    c: Pop3,
    /// `--max-size`, or [`POP3_DEFAULT_MAX_SIZE`].
    max_size: u64,
    /// LIST sizes by message number.
    sizes: HashMap<u32, u64>,
    /// Header digests of the messages of the batch being stored.
    digests: HashMap<u32, String>,
    /// The message that went past its limit, and its UIDL (the session is
    /// dropped).
    too_large: Option<(TooLarge, String)>,
    /// The session was dropped on purpose (a message went past its limit).
    dropped: bool,
    /// DELEs sent (they take effect at QUIT).
    marked: u64,
}

impl Maildrop {
    /// The bytes a message of LIST size `size` may take.
    fn limit_of(&self, size: Option<u64>) -> u64 {
        match size {
            Some(s) => s.saturating_add(pop3_slack(s)).min(self.max_size),
            None => self.max_size,
        }
    }

    /// The bytes allowed were fewer than `--max-size`: the LIST size was
    /// the bound, and the server sent more than it said.
    fn lied(&self, limit: u64) -> bool {
        limit < self.max_size
    }
}

impl Source for Maildrop {
    type Id = PopMsg;

    fn key(&self) -> &str {
        ""
    }

    fn list(&mut self, rs: &mut RunState<'_>) -> Result<Listing<PopMsg>> {
        let delete = rs.delete;
        let max_size = self.max_size;
        let listing = self.c.uidl()?;
        self.sizes = if listing.is_empty() {
            HashMap::new()
        } else {
            self.c.list()?.into_iter().collect()
        };
        let sizes = &self.sizes;
        let st = &mut rs.st;
        let report = &mut *rs.report;
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
        let top = self.c.capabilities().top || !self.c.capabilities().known;
        let mut stored: Vec<PopMsg> = Vec::new();
        let mut new: Vec<PopMsg> = Vec::new();
        for (n, u) in &listing {
            let size = sizes.get(n).copied();
            let twice = numbers[u.as_str()].len() > 1;
            let msg = PopMsg {
                n: *n,
                uidl: u.clone(),
            };
            let Some(recs) = st.pop3.get_mut(u) else {
                new.push(msg);
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
                    new.push(msg);
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
                let limit = self.limit_of(size);
                match self.c.top_limited(*n, 0, limit) {
                    Ok(head) => digests.contains(&header_digest(&head)),
                    // TOP refused: the size is all there is to go by.
                    Err(_) if !self.c.is_broken() => true,
                    Err(e) => return Err(e),
                }
            } else {
                true
            };
            if !same {
                new.push(msg);
            } else if twice {
                report.fail(
                    Class::Protocol,
                    format!(
                        "message {n} (UIDL {u}) was stored by an earlier run but is left on the server: the server lists that UIDL for messages {}, so the state cannot tell which one was stored",
                        list(&numbers[u.as_str()])
                    ),
                );
            } else {
                stored.push(msg);
            }
        }
        let explicit = rs.job.max_size.is_some();
        new.retain(|m| {
            let size = sizes.get(&m.n).copied();
            let u = &m.uidl;
            let n = m.n;
            if let Some(s) = size
                && s > max_size
            {
                let what = if explicit {
                    format!("the size limit of {max_size}")
                } else {
                    format!("the default size limit of {max_size} (--max-size raises it)")
                };
                report.fail(
                    Class::Delivery,
                    format!("message {n} (UIDL {u}, {s} bytes) is over {what}: left on the server"),
                );
                return false;
            }
            if let Some(o) = st.pop3_oversized.get(u)
                && size == Some(o.size)
                && self.limit_of(size) <= o.limit
            {
                let (class, why) = if self.lied(o.limit) {
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
        let new = new
            .into_iter()
            .map(|m| {
                let size = sizes.get(&m.n).copied().unwrap_or(0);
                (m, size)
            })
            .collect();
        Ok(Listing { stored, new })
    }

    fn request(&mut self, _batch: &[PopMsg]) -> Result<()> {
        // RETR is pipelined within a batch by the client; nothing is sent
        // ahead of `receive`.
        Ok(())
    }

    fn receive(&mut self, batch: &[PopMsg], _report: &mut Report) -> Result<Received<PopMsg>> {
        let msgs: Vec<(u32, u64)> = batch
            .iter()
            .map(|m| (m.n, self.limit_of(self.sizes.get(&m.n).copied())))
            .collect();
        let by_number: HashMap<u32, &PopMsg> = batch.iter().map(|m| (m.n, m)).collect();
        let mut got: Vec<(PopMsg, Vec<u8>)> = Vec::with_capacity(batch.len());
        let digests = &mut self.digests;
        let too_large = self.c.retr_limited(&msgs, &mut |n, data| {
            if let Some(m) = by_number.get(&n) {
                digests.insert(n, header_digest(&data));
                got.push(((*m).clone(), data));
            }
            Ok(())
        })?;
        // What came before a message that went past its limit is stored
        // all the same; the rest of that message is still on its way, so
        // the session cannot go on.
        let broken = too_large.as_ref().map(|t| {
            let uidl = by_number.get(&t.msgno).map_or("?", |m| m.uidl.as_str());
            let lied = self.lied(t.limit);
            let why = match self.sizes.get(&t.msgno) {
                Some(s) if lied => format!("LIST said {s} bytes"),
                _ => format!("over the size limit of {}", self.max_size),
            };
            Error::new(
                Kind::Unavailable,
                format!("POP3 {}: RETR {}", self.c.server(), t.msgno),
                format!(
                    "message {} (UIDL {uidl}) went past {} bytes ({why}): not stored and left on the server; the session was dropped, so nothing was deleted in it",
                    t.msgno, t.limit
                ),
            )
            // A server that sent more than it announced broke the
            // protocol (4); a message over our own limit is one we could
            // not store (10).
            .from_origin(if lied { Origin::Protocol } else { Origin::Local })
        });
        self.dropped |= broken.is_some();
        if let Some(t) = too_large
            && let Some(m) = by_number.get(&t.msgno)
        {
            self.too_large = Some((t, m.uidl.clone()));
        }
        Ok(Received {
            messages: got,
            deferred: Vec::new(),
            broken,
        })
    }

    fn drain(&mut self) -> Result<()> {
        Ok(())
    }

    fn record(&mut self, st: &mut State, stored: &[PopMsg]) {
        for m in stored {
            let recs = st.pop3.entry(m.uidl.clone()).or_default();
            recs.remove(&Pop3Stored::default());
            recs.insert(Pop3Stored {
                size: self.sizes.get(&m.n).copied(),
                digest: self.digests.remove(&m.n),
            });
        }
        self.digests.clear();
        if let Some((t, uidl)) = &self.too_large {
            st.pop3_oversized.insert(
                uidl.clone(),
                Oversized {
                    size: self.sizes.get(&t.msgno).copied().unwrap_or(0),
                    limit: t.limit,
                },
            );
        }
    }

    fn finish(&mut self, ids: &[PopMsg], rs: &mut RunState<'_>) -> Result<()> {
        // DELE takes effect only at a QUIT answered +OK: counted then.
        if rs.delete && !ids.is_empty() {
            let numbers: Vec<u32> = ids.iter().map(|m| m.n).collect();
            self.c.dele_many(&numbers)?;
            self.marked += numbers.len() as u64;
        }
        Ok(())
    }

    fn done(&mut self, _rs: &mut RunState<'_>, _complete: bool) -> Result<()> {
        Ok(())
    }
}
