//! What mail-fetch remembers per account between runs: for each IMAP folder
//! its UIDVALIDITY, the UID below which everything is done and the UIDs
//! above it already stored; for POP3 the UIDLs already stored.
//!
//! Guarantee: the state file is replaced atomically (written to a temporary
//! file, fsynced, renamed over the old one, directory fsynced), so after a
//! crash it is either the old or the new state, never a mix. The fetch loop
//! records a message as stored only after the target made it durable, and
//! saves before deleting it on the server: a crash can make us delete a
//! stored message late (next run), never store one twice or skip one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exit::{Error, Kind, Result};
use crate::store::maildir::fsync_dir;

/// One IMAP folder's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    /// The folder's UIDVALIDITY when the rest was recorded.
    pub uidvalidity: u32,
    /// Every UID up to this one is done (stored, or gone from the server).
    pub done_through: u32,
    /// UIDs above `done_through` that are stored. In delete mode, any of
    /// them still on the server was stored but not yet deleted.
    pub stored: BTreeSet<u32>,
}

/// An account's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// IMAP folders by name.
    #[serde(default)]
    pub imap: BTreeMap<String, Folder>,
    /// POP3 UIDLs of stored messages (still on the server, or pending
    /// deletion).
    #[serde(default)]
    pub pop3: BTreeSet<String>,
    /// The batch being handed to the target right now: if a run dies
    /// before recording it stored, the next run checks the target for
    /// these messages before storing them again.
    /// By IMAP folder (empty name for POP3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inflight: BTreeMap<String, Inflight>,
}

/// A batch on its way into the target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inflight {
    /// UIDs (IMAP) or UIDLs (POP3), as text.
    pub ids: BTreeSet<String>,
    /// When the batch started (seconds since the epoch).
    pub since: u64,
    /// The target's mark before the batch (an mbox's length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<u64>,
}

/// A state file on disk.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file for account `key` in `dir` (the key is made safe as
    /// a file name).
    pub fn new(dir: &Path, key: &str) -> StateFile {
        let safe: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = safe.trim_start_matches('.').to_string();
        StateFile {
            path: dir.join(format!("{safe}.json")),
        }
    }

    /// The state file at `path`.
    pub fn at(path: PathBuf) -> StateFile {
        StateFile { path }
    }

    /// Where the state lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the state (empty when there is no file yet). Temporary files a
    /// killed run left behind are removed (the caller holds the account's
    /// lock, so no live writer owns them).
    pub fn load(&self) -> Result<State> {
        if let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name())
            && let Ok(rd) = fs::read_dir(dir)
        {
            let prefix = format!("{}.tmp", name.to_string_lossy());
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        match fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::new(
                    Kind::Config,
                    format!("reading the state file {}", self.path.display()),
                    format!("{e} (move it away to start afresh: messages may be fetched again)"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::io(
                format!("reading the state file {}", self.path.display()),
                &e,
            )),
        }
    }

    /// Replace the state atomically and durably.
    pub fn save(&self, state: &State) -> Result<()> {
        let ctx = || format!("writing the state file {}", self.path.display());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .create(dir)
                .map_err(|e| Error::io(ctx(), &e))?;
        }
        let data = serde_json::to_vec(state).map_err(|e| Error::new(Kind::Temporary, ctx(), e))?;
        let tmp = self
            .path
            .with_extension(format!("json.tmp{}", std::process::id()));
        let res = (|| -> std::io::Result<()> {
            let mut f: File = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_data()?;
            fs::rename(&tmp, &self.path)?;
            fsync_dir(dir)
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(ctx(), &e));
        }
        Ok(())
    }
}

impl Folder {
    /// Bring the memory up to date with what the server reports now:
    /// `uidvalidity` and `present`, the UIDs above `done_through` now in
    /// the folder. Returns false when the UIDVALIDITY changed (everything
    /// is forgotten: the old UIDs mean nothing any more).
    pub fn sync(&mut self, uidvalidity: u32, present: &[u32]) -> bool {
        if self.uidvalidity != uidvalidity {
            let had = self.uidvalidity != 0 || self.done_through != 0 || !self.stored.is_empty();
            *self = Folder {
                uidvalidity,
                ..Folder::default()
            };
            return !had;
        }
        let present: BTreeSet<u32> = present.iter().copied().collect();
        // UIDs never come back: a stored UID no longer present is gone for good.
        self.stored.retain(|u| present.contains(u));
        true
    }

    /// After a pass over `present` (the UIDs above `done_through` at the
    /// start): move `done_through` up to just below the first UID still not
    /// stored, and forget stored UIDs at or below it.
    pub fn compact(&mut self, present: &[u32]) {
        let first_open = present
            .iter()
            .copied()
            .filter(|u| *u > self.done_through)
            .find(|u| !self.stored.contains(u));
        // Only UIDs the server listed count: a stored UID it never listed
        // (a buggy or hostile FETCH answer) must not carry `done_through`
        // past messages not yet fetched.
        let through = match first_open {
            Some(u) => u - 1,
            None => present
                .iter()
                .copied()
                .max()
                .unwrap_or(self.done_through)
                .max(self.done_through),
        };
        self.done_through = through;
        self.stored.retain(|u| *u > through);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_never_passes_an_unstored_uid() {
        let mut f = Folder {
            uidvalidity: 7,
            ..Folder::default()
        };
        assert!(f.sync(7, &[1, 2, 3, 4, 5]));
        f.stored.extend([1, 2, 4, 5]);
        f.compact(&[1, 2, 3, 4, 5]);
        assert_eq!(f.done_through, 2);
        assert_eq!(f.stored, [4, 5].into_iter().collect());
        // 3 is stored later, 4 was deleted meanwhile.
        assert!(f.sync(7, &[3, 5, 6]));
        assert_eq!(f.stored, [5].into_iter().collect());
        f.stored.extend([3, 6]);
        f.compact(&[3, 5, 6]);
        assert_eq!(f.done_through, 6);
        assert!(f.stored.is_empty());
        // A stored UID the server never listed moves nothing.
        f.stored.extend([7, 100]);
        f.compact(&[7]);
        assert_eq!(f.done_through, 7);
        // A new UIDVALIDITY forgets everything.
        assert!(!f.sync(8, &[1]));
        assert_eq!(f.done_through, 0);
    }

    #[test]
    fn saves_atomically_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("postline-state-{}", std::process::id()));
        let sf = StateFile::new(&dir, "a/b c");
        assert!(sf.path().ends_with("a_b_c.json"));
        assert_eq!(sf.load().unwrap(), State::default());
        let mut s = State::default();
        s.pop3.insert("x1".into());
        s.imap.insert("INBOX".into(), Folder::default());
        sf.save(&s).unwrap();
        assert_eq!(sf.load().unwrap(), s);
        let _ = fs::remove_dir_all(&dir);
    }
}
