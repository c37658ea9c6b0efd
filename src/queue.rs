//! The mail queue: a spool directory of entries waiting to be sent.
//!
//! (Interface stub: the spool format, locks, backoff and bounces come with
//! the mail-queue work.) Owns the entry format and every state change of an
//! entry; each change is write + fsync + rename, so a crash leaves either the
//! old or the new state, never a torn one.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::exit::{Error, Kind, Result};
use crate::send::{Envelope, Route};

/// A queue spool directory.
pub struct Spool {
    dir: PathBuf,
}

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

    /// Open (creating when missing) the spool at `dir`.
    pub fn open(dir: &Path) -> Result<Spool> {
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Put `msg` for `env.rcpts` into the queue, to be sent along `route`;
    /// `reason` is the failure that sent it here. Returns the entry's id once
    /// the entry is durable.
    pub fn enqueue(
        &self,
        route: &Route,
        env: &Envelope,
        msg: &[u8],
        reason: &str,
    ) -> Result<String> {
        let _ = (route, env, msg, reason);
        Err(Error::new(
            Kind::Temporary,
            format!("queueing in {}", self.dir.display()),
            "the queue is not implemented yet",
        ))
    }
}
