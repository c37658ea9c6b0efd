//! What a Sieve script remembers between messages: the `duplicate` test
//! (RFC 7352) and the senders `vacation` (RFC 5230) already answered, in
//! one store, [`Memory`], kept in `$XDG_STATE_HOME/postline/sieve/`.
//!
//! Guarantees:
//!
//! - **Bounded.** Entries expire (each carries its own expiry time); at
//!   most [`MAX_ENTRIES`] are kept (those expiring soonest go first) and a
//!   file larger than [`MAX_BYTES`] is read only that far, so no sender can
//!   grow it without bound.
//! - **Whole and never through a link.** The file is replaced through
//!   [`crate::durable::replace`] (fresh 0600 temporary, fsync, rename,
//!   directory fsync), read and locked with `O_NOFOLLOW`; a planted link
//!   is neither read nor written through.
//! - **One writer at a time.** The lock file is flock'd from [`Memory::open`]
//!   until the value is dropped, so two deliveries cannot both answer one
//!   sender or both miss a duplicate.
//! - Keys are kept as SHA-256 digests: no address or Message-ID is written
//!   to disk, and every line has the same length.
//! - A store that cannot be read is empty: at worst a duplicate is not
//!   seen (the message is delivered) and the caller, told by
//!   [`Memory::usable`], sends no vacation reply it cannot remember.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::exit::{Error, Result};

/// Most entries kept.
pub const MAX_ENTRIES: usize = 20_000;
/// Most bytes of the store read.
pub const MAX_BYTES: u64 = 4 << 20;
/// `duplicate` without `:seconds`: 12 hours, as Pigeonhole's default.
pub const DEFAULT_SECONDS: u64 = 12 * 3600;
/// The longest `:seconds` honoured (7 days, as Pigeonhole's maximum).
pub const MAX_SECONDS: u64 = 7 * 86_400;

/// A `duplicate` test as compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Test {
    /// `:handle`
    pub handle: Option<String>,
    /// `:header NAME` (else Message-ID).
    pub header: Option<String>,
    /// `:uniqueid VALUE`
    pub uniqueid: Option<String>,
    /// `:seconds N`
    pub seconds: Option<u64>,
    /// `:last`
    pub last: bool,
}

/// Something that knows which keys were seen: the evaluator asks it.
pub trait Seen {
    /// Was `key` recorded and not expired at `now`?
    fn seen(&self, key: &str, now: i64) -> bool;
}

/// Nothing seen (a run without a store).
impl Seen for () {
    fn seen(&self, _key: &str, _now: i64) -> bool {
        false
    }
}

/// A key to record once the message was handled: RFC 7352 tracks an id
/// only when the script ran to its end and its actions were carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remember {
    /// The key ([`duplicate_key`] or [`vacation_key`]).
    pub key: String,
    /// How long it is remembered, from now.
    pub seconds: u64,
    /// Refresh the expiry even when the key is known (`:last`); else a
    /// known key keeps its first expiry.
    pub refresh: bool,
}

/// The key of a `duplicate` test.
pub fn duplicate_key(handle: &str, id: &str) -> String {
    format!("duplicate\0{handle}\0{id}")
}

/// The key of a vacation reply to `sender` under `handle`.
pub fn vacation_key(handle: &str, sender: &str) -> String {
    format!("vacation\0{handle}\0{}", sender.to_ascii_lowercase())
}

fn digest(key: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The store, locked while this value lives.
#[derive(Debug)]
pub struct Memory {
    dir: Option<PathBuf>,
    _lock: Option<File>,
    /// digest -> expiry (seconds since the epoch)
    entries: HashMap<String, i64>,
    dirty: bool,
    usable: bool,
}

const HEADER: &str = "# postline sieve memory v1 (expiry, sha256 of the key)\n";

impl Memory {
    /// An empty store that is never saved (dry runs without state, tests).
    pub fn empty() -> Memory {
        Memory {
            dir: None,
            _lock: None,
            entries: HashMap::new(),
            dirty: false,
            usable: true,
        }
    }

    /// The store in `dir` (created 0700 when missing), locked, with the
    /// entries that expired by `now` dropped.
    pub fn open(dir: &Path, now: i64) -> Result<Memory> {
        let ctx = || format!("sieve memory {}", dir.display());
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(ctx(), &e))?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(dir.join("memory.lock"))
            .map_err(|e| Error::io(ctx(), &e))?;
        lock.lock().map_err(|e| Error::io(ctx(), &e))?;
        let mut text = String::new();
        match OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(dir.join("memory"))
        {
            Ok(f) => {
                // Not text, or cut at the limit: what parses is kept.
                let mut raw = Vec::new();
                f.take(MAX_BYTES)
                    .read_to_end(&mut raw)
                    .map_err(|e| Error::io(ctx(), &e))?;
                text = String::from_utf8_lossy(&raw).into_owned();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(ctx(), &e)),
        }
        let mut entries = HashMap::new();
        for line in text.lines() {
            let Some((exp, key)) = line.split_once(' ') else {
                continue;
            };
            let Ok(exp) = exp.parse::<i64>() else {
                continue;
            };
            if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) && exp > now {
                entries.insert(key.to_string(), exp);
            }
        }
        Ok(Memory {
            dir: Some(dir.to_path_buf()),
            _lock: Some(lock),
            entries,
            dirty: false,
            usable: true,
        })
    }

    /// A store that could not be opened: empty, and says it is not usable.
    pub fn unusable() -> Memory {
        Memory {
            usable: false,
            ..Memory::empty()
        }
    }

    /// False when the store could not be opened (nothing can be
    /// remembered, so no vacation reply should be sent).
    pub fn usable(&self) -> bool {
        self.usable
    }

    /// Record `r` as of `now`.
    pub fn remember(&mut self, r: &Remember, now: i64) {
        let d = digest(&r.key);
        let exp = now.saturating_add(r.seconds.min(i64::MAX as u64) as i64);
        match self.entries.get(&d) {
            Some(&old) if old > now && !r.refresh => {}
            _ => {
                self.entries.insert(d, exp);
                self.dirty = true;
            }
        }
    }

    /// Write the store back (trimmed to [`MAX_ENTRIES`]) when it changed.
    pub fn save(&mut self) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let mut all: Vec<(&String, &i64)> = self.entries.iter().collect();
        // Latest expiry first; past the cap the soonest to expire go.
        all.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        all.truncate(MAX_ENTRIES);
        let mut out = String::with_capacity(HEADER.len() + all.len() * 76);
        out.push_str(HEADER);
        for (k, e) in all {
            out.push_str(&format!("{e} {k}\n"));
        }
        crate::durable::replace(&dir.join("memory"), &dir.join("memory.tmp"), out.as_bytes())
            .map_err(|e| Error::io(format!("sieve memory {}", dir.display()), &e))?;
        self.dirty = false;
        Ok(())
    }
}

impl Seen for Memory {
    fn seen(&self, key: &str, now: i64) -> bool {
        self.entries.get(&digest(key)).is_some_and(|&e| e > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: &str, seconds: u64, refresh: bool) -> Remember {
        Remember {
            key: key.into(),
            seconds,
            refresh,
        }
    }

    #[test]
    fn remembers_until_expiry_across_opens() {
        let d = tempfile::tempdir().unwrap();
        let mut m = Memory::open(d.path(), 1000).unwrap();
        assert!(!m.seen("a", 1000));
        m.remember(&r("a", 100, false), 1000);
        m.save().unwrap();
        drop(m);
        let m = Memory::open(d.path(), 1050).unwrap();
        assert!(m.seen("a", 1050));
        assert!(!m.seen("a", 1100));
        drop(m);
        // Expired entries are dropped on open.
        let m = Memory::open(d.path(), 1200).unwrap();
        assert!(m.entries.is_empty());
    }

    #[test]
    fn keys_are_stored_as_digests() {
        let d = tempfile::tempdir().unwrap();
        let mut m = Memory::open(d.path(), 0).unwrap();
        m.remember(&r(&vacation_key("h", "Alice@Example.org"), 10, false), 0);
        m.save().unwrap();
        let text = fs::read_to_string(d.path().join("memory")).unwrap();
        assert!(!text.to_ascii_lowercase().contains("alice"), "{text}");
        assert_eq!(text.lines().count(), 2);
        assert!(m.seen(&vacation_key("h", "alice@example.org"), 5));
    }

    #[test]
    fn a_known_key_keeps_its_first_expiry_unless_refreshed() {
        let mut m = Memory::empty();
        m.remember(&r("k", 100, false), 0);
        m.remember(&r("k", 100, false), 90);
        assert!(!m.seen("k", 150));
        m.remember(&r("k", 100, false), 0);
        m.remember(&r("k", 100, true), 90);
        assert!(m.seen("k", 150));
    }

    #[test]
    fn never_reads_or_writes_through_a_planted_link() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("memory")).unwrap();
        assert!(Memory::open(d.path(), 0).is_err());
        fs::remove_file(d.path().join("memory")).unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("memory.tmp")).unwrap();
        let mut m = Memory::open(d.path(), 0).unwrap();
        m.remember(&r("x", 10, false), 0);
        m.save().unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn the_store_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let mut m = Memory::open(d.path(), 0).unwrap();
        for i in 0..(MAX_ENTRIES + 10) {
            m.remember(&r(&format!("k{i}"), 1000 + i as u64, false), 0);
        }
        m.save().unwrap();
        drop(m);
        let m = Memory::open(d.path(), 0).unwrap();
        assert_eq!(m.entries.len(), MAX_ENTRIES);
        // The soonest to expire went first.
        assert!(!m.seen("k0", 0));
        assert!(m.seen(&format!("k{}", MAX_ENTRIES + 9), 0));
    }

    /// The evaluator's side: what `duplicate` answers and asks to remember.
    mod eval {
        use super::*;
        use crate::sieve::{ActionKind, Input, Limits, compile_script, run_with};

        const MSG: &[u8] = b"Message-ID: <a@x>\nX-Id: 42\nSubject: s\n\nbody\n";

        fn go(script: &str, seen: &dyn Seen) -> crate::sieve::Outcome {
            let s = compile_script(script).unwrap();
            let input = Input {
                message: MSG,
                envelope_from: Some("a@example.org"),
                envelope_to: Some("me@example.net"),
                now: 1000,
                local_offset: 0,
            };
            run_with(&s, input, Limits::default(), seen)
        }

        #[test]
        fn duplicate_is_false_first_then_true() {
            let script = "require \"duplicate\"; if duplicate { discard; }";
            let mut m = Memory::empty();
            let out = go(script, &m);
            assert!(matches!(out.actions[0].kind, ActionKind::Keep { .. }));
            assert_eq!(out.remember.len(), 1);
            assert_eq!(out.remember[0].seconds, DEFAULT_SECONDS);
            assert_eq!(out.remember[0].key, duplicate_key("", "<a@x>"));
            m.remember(&out.remember[0], 1000);
            let out = go(script, &m);
            assert!(matches!(out.actions[0].kind, ActionKind::Discard));
        }

        #[test]
        fn header_uniqueid_handle_seconds_and_last() {
            let out = go(
                "require \"duplicate\"; if duplicate :header \"x-id\" :handle \"h\" :seconds 60 :last { discard; }",
                &(),
            );
            assert_eq!(
                out.remember,
                vec![Remember {
                    key: duplicate_key("h", "42"),
                    seconds: 60,
                    refresh: true
                }]
            );
            let out = go(
                "require \"duplicate\"; if duplicate :uniqueid \"u\" :seconds 99999999 { discard; }",
                &(),
            );
            assert_eq!(out.remember[0].key, duplicate_key("", "u"));
            assert_eq!(out.remember[0].seconds, MAX_SECONDS);
            // No such field: false, nothing remembered.
            let out = go(
                "require \"duplicate\"; if duplicate :header \"x-none\" { discard; }",
                &(),
            );
            assert!(out.remember.is_empty());
            assert!(matches!(out.actions[0].kind, ActionKind::Keep { .. }));
            assert!(
                compile_script(
                    "require \"duplicate\"; if duplicate :header \"a\" :uniqueid \"b\" { }"
                )
                .is_err()
            );
            assert!(compile_script("if duplicate { }").is_err());
        }

        #[test]
        fn nothing_is_remembered_after_a_runtime_error() {
            let out = go(
                "require [\"duplicate\", \"vacation\"]; if duplicate { } vacation \"a\"; vacation \"b\";",
                &(),
            );
            assert!(out.error.is_some());
            assert!(out.remember.is_empty());
        }

        #[test]
        fn vacation_tags_reach_the_action_with_variables_expanded() {
            let out = go(
                "require [\"vacation\", \"variables\"]; set \"s\" \"away\"; vacation :days 3 :subject \"${s}\" :from \"me@example.net\" :addresses [\"me2@example.net\"] :mime :handle \"h${s}\" \"r\";",
                &(),
            );
            let ActionKind::Vacation { reason, options } = &out.actions[0].kind else {
                panic!("{:?}", out.actions);
            };
            assert_eq!(reason, "r");
            assert_eq!(options.days, Some(3));
            assert_eq!(options.subject.as_deref(), Some("away"));
            assert_eq!(options.from.as_deref(), Some("me@example.net"));
            assert_eq!(options.addresses, vec!["me2@example.net".to_string()]);
            assert!(options.mime);
            assert_eq!(options.handle.as_deref(), Some("haway"));
        }
    }
}
