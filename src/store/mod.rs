//! The one storage path: Maildir and mbox destinations, used by mail-deliver
//! and (later) by mail-fetch and the queue; and its reading side
//! ([`read`]: the messages of a Maildir or an mbox, for mail-trace).
//!
//! Guarantee: [`Destination::store`] returns a message's location only after
//! the message is complete and durable there; on error nothing partial is
//! left behind and the error kind says whether to retry (see `exit`).

pub mod lock;
pub mod maildir;
pub mod mbox;
pub mod read;

use std::path::{Path, PathBuf};

use crate::exit::{Error, Kind, Result};
use crate::mboxfmt::Format;
pub use lock::Locking;
pub use maildir::Maildir;
pub use mbox::{Item, Mbox};

/// Options shared by all destinations of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Maildir++ subfolder to deliver into, for Maildir destinations.
    pub folder: Option<String>,
    /// Quoting for mbox destinations.
    pub mbox_format: Format,
    /// Locks for mbox destinations.
    pub locking: Locking,
}

/// Where messages go.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A Maildir (or Maildir++ folder).
    Maildir(Maildir),
    /// An mbox file.
    Mbox(Mbox),
}

impl Destination {
    /// Resolve a destination argument the way procmail does: a path ending in
    /// `/` or naming an existing directory is a Maildir (created when
    /// missing); anything else is an mbox file (created on first delivery).
    pub fn open(arg: &str, opts: &Options) -> Result<Destination> {
        if arg.is_empty() {
            return Err(Error::new(Kind::Usage, "destination", "empty path"));
        }
        let path = Path::new(arg);
        if arg.ends_with('/') || path.is_dir() {
            let md = Maildir::open(path)?;
            let md = match &opts.folder {
                Some(f) => md.folder(f)?,
                None => md,
            };
            return Ok(Destination::Maildir(md));
        }
        if opts.folder.is_some() {
            return Err(Error::new(
                Kind::Usage,
                arg,
                "--folder applies to Maildir destinations only (end the path with / for a Maildir)",
            ));
        }
        Ok(Destination::Mbox(Mbox::new(
            path,
            opts.mbox_format,
            opts.locking,
        )))
    }

    /// The directory or file written to.
    pub fn path(&self) -> &Path {
        match self {
            Destination::Maildir(m) => m.root(),
            Destination::Mbox(m) => m.path(),
        }
    }

    /// Warnings from the stores so far, one line each, taken away (see
    /// [`Mbox::take_notes`]; a Maildir has none). A tool shows them on
    /// stderr; they do not change the outcome.
    pub fn take_notes(&self) -> Vec<String> {
        match self {
            Destination::Maildir(_) => Vec::new(),
            Destination::Mbox(m) => m.take_notes(),
        }
    }

    /// Store a group of messages with grouped syncs. Returns where each
    /// durable message went (a prefix of `items`, in order) and the error
    /// that stopped the rest. For an mbox the group is all or nothing.
    pub fn store(&self, items: &[Item<'_>]) -> (Vec<PathBuf>, Option<Error>) {
        match self {
            Destination::Maildir(md) => {
                let datas: Vec<&[u8]> = items.iter().map(|i| i.data).collect();
                md.deliver_batch(&datas)
            }
            Destination::Mbox(mb) => match mb.append(items) {
                Ok(()) => (vec![mb.path().to_path_buf(); items.len()], None),
                Err(e) => (Vec::new(), Some(e)),
            },
        }
    }
}
