//! A mailbox mail-fetch reads from, as the one batch loop in
//! [`super::run`] sees it: list what is new (and what an earlier run stored
//! but did not delete), fetch a batch, finish stored messages (delete or
//! flag them), then close.
//!
//! This module owns only the shape; [`pop3`] and [`imap`] adapt the wire
//! clients of `crate::proto` to it. What a source guarantees to the loop:
//! [`Source::receive`] hands out only ids of the batch it was asked for,
//! each at most once; [`Source::finish`] is called only with ids the loop
//! has stored and recorded; a source never deletes anything on its own.

pub mod imap;
pub mod pop3;

use std::fmt;

use crate::exit::{Error, Result};
use crate::fetch::Report;
use crate::fetch::run::RunState;
use crate::fetch::state::State;

/// What a mailbox holds, as far as this run cares.
pub struct Listing<I> {
    /// Stored (and recorded) by an earlier run and still on the server: to
    /// be finished (deleted, or flagged) without storing them again.
    pub stored: Vec<I>,
    /// New messages to fetch, in order, with the size the server claims
    /// (0 when it was not asked: only a hint for cutting batches).
    pub new: Vec<(I, u64)>,
}

/// What one batch brought.
pub struct Received<I> {
    /// Messages of the batch, each once, as the server sent them (CRLF).
    pub messages: Vec<(I, Vec<u8>)>,
    /// Ids of the batch that did not fit: fetch them in the next batch.
    pub deferred: Vec<I>,
    /// The session cannot go on (a message went past what it was allowed):
    /// what came before is stored and recorded, then the run ends with this
    /// error, neither finishing nor closing in this session.
    pub broken: Option<Error>,
}

/// A mailbox on a server (a POP3 maildrop, an IMAP folder).
pub trait Source {
    /// How a message is known in this mailbox (an IMAP UID, a POP3 number
    /// and UIDL); its `Display` names it in messages and in the in-flight
    /// record.
    type Id: Clone + PartialEq + fmt::Display;

    /// The key of this mailbox in the state's in-flight records (the IMAP
    /// folder; empty for POP3).
    fn key(&self) -> &str;

    /// Find what is new and what was stored before. May update the state
    /// (the loop saves it right after) and report messages left on the
    /// server (over a size limit).
    fn list(&mut self, rs: &mut RunState<'_>) -> Result<Listing<Self::Id>>;

    /// Ask for `batch` (sources that pipeline send the request now; the
    /// next call is [`Source::receive`] for the same batch, unless
    /// [`Source::drain`]).
    fn request(&mut self, batch: &[Self::Id]) -> Result<()>;

    /// Read the batch asked for last; failures of single messages go to
    /// `report`.
    fn receive(&mut self, batch: &[Self::Id], report: &mut Report) -> Result<Received<Self::Id>>;

    /// Read past the answer of a batch asked for and no longer wanted (the
    /// target broke down), holding none of it.
    fn drain(&mut self) -> Result<()>;

    /// Remember in the state that `stored` is stored (the loop saves it).
    fn record(&mut self, st: &mut State, stored: &[Self::Id]);

    /// Delete `ids` (or, kept, flag them when asked to): called only for
    /// messages stored and recorded durably.
    fn finish(&mut self, ids: &[Self::Id], rs: &mut RunState<'_>) -> Result<()>;

    /// The mailbox is done: after the last batch (`complete`: tidy the
    /// state and save it), or before an error ends the run (say what is
    /// left to say, nothing more).
    fn done(&mut self, rs: &mut RunState<'_>, complete: bool) -> Result<()>;
}
