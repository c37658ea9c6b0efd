//! What mail-fetch remembers per account between runs: for each IMAP folder
//! its UIDVALIDITY, the UID below which everything is done and the UIDs
//! above it already stored; for POP3 the UIDLs already stored, each with
//! what tells its message from another under the same UIDL (size, header
//! digest: servers reuse UIDLs), and the messages left on the server
//! because they were larger than allowed.
//!
//! State files of earlier versions (POP3 UIDLs as a plain list) are read:
//! such a record knows no size, and the fetch loop treats it with care
//! (see `fetch::run_pop3`).
//!
//! Guarantee: the state file is replaced atomically (written to a temporary
//! file, fsynced, renamed over the old one, directory fsynced), so after a
//! crash it is either the old or the new state, never a mix. The fetch loop
//! records a message as stored only after the target made it durable, and
//! saves before deleting it on the server: a crash can make us delete a
//! stored message late (next run), never store one twice or skip one.
//! The temporary file is created fresh (`O_EXCL|O_NOFOLLOW`), never through
//! a link. Each account has its own file: names are an injective encoding
//! of the account's key.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::exit::{Context, Error, Kind, Origin, Result};

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
    /// deletion), each with the messages stored under it (more than one
    /// when a server lists a UIDL twice).
    #[serde(default, deserialize_with = "pop3_records")]
    pub pop3: BTreeMap<String, BTreeSet<Pop3Stored>>,
    /// POP3 messages not stored because they went past the size allowed:
    /// not retrieved again while listed with the same UIDL and size, unless
    /// more is allowed now.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pop3_oversized: BTreeMap<String, Oversized>,
    /// The batch being handed to the target right now: if a run dies
    /// before recording it stored, the next run checks the target for
    /// these messages before storing them again.
    /// By IMAP folder (empty name for POP3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inflight: BTreeMap<String, Inflight>,
}

/// What identifies a stored POP3 message beyond its UIDL.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pop3Stored {
    /// Its size as LIST gave it; `None` in records of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `pop3::header_digest` of the message as retrieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A POP3 message that went past the size allowed when it was retrieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Oversized {
    /// Its size as LIST gave it.
    pub size: u64,
    /// The bytes that were allowed.
    pub limit: u64,
}

/// `pop3` as written now (UIDL -> records) or by earlier versions (a list
/// of UIDLs: records without size or digest).
fn pop3_records<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, BTreeSet<Pop3Stored>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Now(BTreeMap<String, BTreeSet<Pop3Stored>>),
        Before(BTreeSet<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::Now(m) => m,
        Either::Before(uidls) => uidls
            .into_iter()
            .map(|u| (u, BTreeSet::from([Pop3Stored::default()])))
            .collect(),
    })
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

/// The file name (without `.json`) for `key`: letters, digits and
/// `- _ @ + .` stay as they are (a `.` not first), every other byte is
/// `%XX`. Injective (`%` itself is encoded), never hidden, never a path;
/// names made of those characters are the ones older versions used.
fn file_stem(key: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(key.len());
    for (i, b) in key.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'@' | b'+')
            || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The name older versions gave `key`'s file (lossy: other characters
/// became `_`, leading dots were dropped), for taking such a file over.
fn legacy_stem(key: &str) -> String {
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
    safe.trim_start_matches('.').to_string()
}

/// A state file on disk.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file for `key` in `dir`, named by an injective encoding
    /// of the key ([`file_stem`]): two keys never share a file.
    pub fn new(dir: &Path, key: &str) -> StateFile {
        StateFile {
            path: dir.join(format!("{}.json", file_stem(key))),
        }
    }

    /// The state file of config account `name` (key `account-NAME`) in
    /// `dir`; `all` names every account of the config. A state file under
    /// the name older versions gave it (non-file-name characters made
    /// `_`, so `work mail` and `work_mail` shared one) is taken over, by
    /// renaming it, when the new one does not exist yet and no other
    /// account of `all` had that old name: an upgrade does not fetch again
    /// what was fetched, and never takes another account's memory.
    pub fn for_account<'a>(
        dir: &Path,
        name: &str,
        all: impl IntoIterator<Item = &'a str>,
    ) -> StateFile {
        let key = format!("account-{name}");
        let sf = StateFile::new(dir, &key);
        let old_stem = legacy_stem(&key);
        let old = dir.join(format!("{old_stem}.json"));
        let shared = all
            .into_iter()
            .any(|n| n != name && legacy_stem(&format!("account-{n}")) == old_stem);
        if old != sf.path && !shared && !sf.path.exists() && old.is_file() {
            let _ = fs::rename(&old, &sf.path);
        }
        sf
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
                .from_origin(Origin::Local)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => {
                Err(e).with_context(|| format!("reading the state file {}", self.path.display()))
            }
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
                .with_context(ctx)?;
        }
        let data = serde_json::to_vec(state)
            .map_err(|e| Error::new(Kind::Temporary, ctx(), e).from_origin(Origin::Local))?;
        let tmp = self
            .path
            .with_extension(format!("json.tmp{}", std::process::id()));
        crate::durable::replace(&self.path, &tmp, &data).with_context(ctx)?;
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
        assert!(sf.path().ends_with("a%2Fb%20c.json"));
        assert_eq!(sf.load().unwrap(), State::default());
        let mut s = State::default();
        s.pop3.insert(
            "x1".into(),
            BTreeSet::from([Pop3Stored {
                size: Some(12),
                digest: Some("ab".into()),
            }]),
        );
        s.pop3_oversized.insert(
            "x2".into(),
            Oversized {
                size: 120,
                limit: 65656,
            },
        );
        s.imap.insert("INBOX".into(), Folder::default());
        sf.save(&s).unwrap();
        assert_eq!(sf.load().unwrap(), s);
        let _ = fs::remove_dir_all(&dir);
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("postline-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn state_names_are_unique_per_account() {
        let dir = Path::new("/nonexistent");
        let name = |k: &str| {
            StateFile::new(dir, k)
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        // Two accounts once shared one file: the second fetched nothing.
        assert_ne!(name("account-work mail"), name("account-work_mail"));
        let keys = [
            "a b", "a_b", "a%20b", "a%b", "a/b", ".a", "a", "..a", "a.", "é", "e",
        ];
        let names: BTreeSet<String> = keys.iter().map(|k| name(k)).collect();
        assert_eq!(names.len(), keys.len(), "{names:?}");
        for n in &names {
            assert!(!n.starts_with('.') && !n.contains('/'), "{n}");
        }
        // Names that were safe keep their file: no refetch on upgrade.
        assert_eq!(name("account-work"), "account-work.json");
        assert_eq!(
            name("imap-me@example.org-imap.example.org-993"),
            "imap-me@example.org-imap.example.org-993.json"
        );
    }

    #[test]
    fn an_old_state_file_is_adopted_only_when_no_other_account_could_own_it() {
        let dir = scratch("adopt");
        let old = dir.join("account-work_mail.json");
        let mut s = State::default();
        s.pop3
            .insert("u1".into(), BTreeSet::from([Pop3Stored::default()]));
        fs::write(&old, serde_json::to_vec(&s).unwrap()).unwrap();
        // "work_mail" is configured too: the old file may be its own.
        let sf = StateFile::for_account(&dir, "work mail", ["work mail", "work_mail"]);
        assert_eq!(sf.load().unwrap(), State::default());
        assert!(old.exists());
        // Alone, "work mail" was the only account that old name could be.
        let sf = StateFile::for_account(&dir, "work mail", ["work mail", "home"]);
        assert_eq!(sf.load().unwrap(), s);
        assert!(!old.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_save_never_writes_through_a_planted_link() {
        let dir = scratch("link");
        let sf = StateFile::new(&dir, "account-x");
        let victim = dir.join("victim");
        fs::write(&victim, "precious").unwrap();
        let tmp = sf
            .path()
            .with_extension(format!("json.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        sf.save(&State::default()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(sf.load().unwrap(), State::default());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn pop3_uidls_of_earlier_versions_are_read_as_records_without_size() {
        let s: State = serde_json::from_str(r#"{"imap":{},"pop3":["a","b"]}"#).unwrap();
        assert_eq!(s.pop3.len(), 2);
        assert_eq!(s.pop3["a"], BTreeSet::from([Pop3Stored::default()]));
        let s: State =
            serde_json::from_str(r#"{"pop3":{"a":[{"size":5,"digest":"d"},{"size":7}]}}"#).unwrap();
        assert_eq!(s.pop3["a"].len(), 2);
        assert!(s.pop3_oversized.is_empty());
    }
}
