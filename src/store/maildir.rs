//! Maildir delivery (the qmail Maildir spec, plus Maildir++ folders).
//!
//! Guarantee: a message appears in `new/` only complete and durable. Each
//! one is written under a unique name in `tmp/` (created with `O_EXCL`),
//! fsynced, then hard-linked into `new/` (link never overwrites) and the
//! `new/` directory fsynced; only then is its path reported. A crash at any
//! point leaves at worst a file in `tmp/`, which readers ignore. Batches write
//! every file first, make them all durable with one `syncfs`, link them all
//! and fsync `new/` once: the same guarantee for a group, with two syncs
//! instead of two per message.
//!
//! IMAP keywords are kept as Dovecot keeps them ([`Maildir::keyword_letters`]):
//! `dovecot-keywords` in the folder maps `N name` lines to the letters
//! `a`+N, which follow the system flags in the `:2,` info; the file is
//! replaced atomically and durably (`durable::replace`) before a message
//! naming a new letter is stored, so a letter on disk always has its name.
//!
//! Files are only ever created with `O_EXCL` (never through a link); the
//! Maildir and its `tmp/`, `new/`, `cur/` are followed when they are links,
//! except that root refuses a link another user planted (see
//! `refuse_foreign_link`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::durable;
use crate::exit::{Error, Kind, Result};

/// A Maildir: a directory holding `tmp/`, `new/` and `cur/`.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

/// Make a directory (and its parents) mode 0700, fsyncing each parent that
/// gained an entry so the new directories survive a crash.
fn create_dirs(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dirs(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Running as root, refuse `path` when it is a symbolic link whose owner is
/// neither root nor the owner of what it leads to: a link another user
/// planted (in a shared spool, or in a Maildir of theirs) to make root
/// write into a directory that user cannot write. Anyone else follows
/// links freely: the kernel's permissions already bound what they reach.
fn refuse_foreign_link(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let Ok(link) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !link.file_type().is_symlink() || link.uid() == 0 {
        return Ok(());
    }
    let cause = match fs::metadata(path) {
        Ok(m) if m.uid() == link.uid() => return Ok(()),
        Ok(m) => format!(
            "is a symbolic link owned by uid {} to a directory of uid {}; refused as root",
            link.uid(),
            m.uid()
        ),
        Err(_) => "is a symbolic link to nothing; refused as root".to_string(),
    };
    Err(Error::new(
        Kind::CantCreate,
        path.display().to_string(),
        cause,
    ))
}

pub use crate::durable::fsync_dir;

impl Maildir {
    /// Open the Maildir at `root`, creating it (and `tmp`, `new`, `cur`) when
    /// missing.
    pub fn open(root: &Path) -> Result<Maildir> {
        // Stat the path without its trailing slashes: "file/" fails with
        // ENOTDIR, which would hide that a regular file is in the way.
        let bare = Path::new(root.to_str().map_or("", |s| s.trim_end_matches('/')));
        let probe = if bare.as_os_str().is_empty() {
            root
        } else {
            bare
        };
        if probe.exists() && !probe.is_dir() {
            return Err(Error::new(
                Kind::CantCreate,
                root.display().to_string(),
                "exists and is not a directory, so it cannot be a Maildir",
            ));
        }
        refuse_foreign_link(probe)?;
        for sub in ["tmp", "new", "cur"] {
            let p = root.join(sub);
            refuse_foreign_link(&p)?;
            create_dirs(&p).map_err(|e| Error::io(format!("creating {}", p.display()), &e))?;
        }
        Ok(Maildir {
            root: root.to_path_buf(),
        })
    }

    /// Where the Maildir++ subfolder `name` is (`a/b` or `a.b` -> `.a.b`;
    /// `INBOX` is the Maildir itself), without creating anything.
    pub fn folder_path(&self, name: &str) -> Result<PathBuf> {
        if name == "INBOX" {
            return Ok(self.root.clone());
        }
        let parts: Vec<&str> = name.split(['/', '.']).collect();
        if parts.iter().any(|p| p.is_empty() || *p == "..") || name.contains('\0') {
            return Err(Error::new(
                Kind::Usage,
                format!("--folder {name:?}"),
                "not a valid folder name (empty part, leading or doubled separator)",
            ));
        }
        Ok(self.root.join(format!(".{}", parts.join("."))))
    }

    /// The Maildir++ subfolder `name` (`a/b` or `a.b` -> `.a.b`), created
    /// with its `maildirfolder` marker when missing.
    pub fn folder(&self, name: &str) -> Result<Maildir> {
        if name == "INBOX" {
            return Ok(self.clone());
        }
        let dir = self.folder_path(name)?;
        let marker = dir.join("maildirfolder");
        // Whatever has the name counts, a link included: the marker is
        // never created through one (a link to nowhere would create its
        // target).
        let fresh = fs::symlink_metadata(&marker).is_err();
        let md = Maildir::open(&dir)?;
        if fresh {
            let created = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&marker);
            match created {
                Ok(f) => f
                    .sync_all()
                    .and_then(|()| fsync_dir(&dir))
                    .map_err(|e| Error::io(format!("creating {}", marker.display()), &e))?,
                // Another delivery made it meanwhile.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("creating {}", marker.display()), &e)),
            }
        }
        Ok(md)
    }

    /// The Maildir's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Deliver one message; returns its path in `new/` once durable.
    pub fn deliver(&self, data: &[u8]) -> Result<PathBuf> {
        self.deliver_one(data, "new", "")
    }

    /// The Maildir info letters (`a`..`z`) for the IMAP keywords `names`,
    /// from the folder's `dovecot-keywords` (Dovecot's format: one
    /// `INDEX NAME` line per keyword, index 0 being `a`; names compared
    /// without case, as Dovecot does). Names not there yet get the first
    /// free indexes and the file is replaced (atomically, durably) before
    /// this returns. Also returns the names that got no letter: all 26 are
    /// taken, or the name is not an IMAP atom (it could not be a keyword).
    pub fn keyword_letters(&self, names: &[String]) -> Result<(String, Vec<String>)> {
        let path = self.root.join(KEYWORDS_FILE);
        let ctx = || format!("reading {}", path.display());
        let mut table: Vec<Option<String>> = vec![None; MAX_KEYWORDS];
        match OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => {
                use std::io::Read;
                let mut text = Vec::new();
                // 26 names of IMAP atoms: anything longer is not a file
                // Dovecot wrote, and is read no further.
                f.take(KEYWORDS_MAX_READ)
                    .read_to_end(&mut text)
                    .map_err(|e| Error::io(ctx(), &e))?;
                for line in String::from_utf8_lossy(&text).lines() {
                    let Some((i, name)) = line.split_once(' ') else {
                        continue;
                    };
                    if let Ok(i) = i.parse::<usize>()
                        && i < MAX_KEYWORDS
                        && !name.is_empty()
                    {
                        table[i] = Some(name.to_string());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(ctx(), &e)),
        }
        let mut letters = String::new();
        let mut left = Vec::new();
        let mut changed = false;
        for name in names {
            if !is_atom(name) {
                left.push(name.clone());
                continue;
            }
            let found = table
                .iter()
                .position(|t| t.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(name)));
            let i = match found {
                Some(i) => i,
                None => match table.iter().position(Option::is_none) {
                    Some(i) => {
                        table[i] = Some(name.clone());
                        changed = true;
                        i
                    }
                    None => {
                        left.push(name.clone());
                        continue;
                    }
                },
            };
            letters.push(char::from(b'a' + i as u8));
        }
        if changed {
            let text: String = table
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.as_ref().map(|n| format!("{i} {n}\n")))
                .collect();
            let tmp = self
                .root
                .join("tmp")
                .join(format!("{}.{KEYWORDS_FILE}", unique_name(text.len())));
            durable::replace(&path, &tmp, text.as_bytes())
                .map_err(|e| Error::io(format!("writing {}", path.display()), &e))?;
        }
        Ok((letters, left))
    }

    /// Deliver one message with Maildir info flags (`flags` are the
    /// letters after `:2,`, e.g. `FS`): linked into `cur/` as
    /// `NAME:2,FLAGS` (the Maildir spec keeps info out of `new/`); the path
    /// once durable. Without flags this is [`Maildir::deliver`] (into
    /// `new/`).
    pub fn deliver_with_flags(&self, data: &[u8], flags: &str) -> Result<PathBuf> {
        if flags.is_empty() {
            return self.deliver(data);
        }
        let mut letters: Vec<char> = flags.chars().filter(char::is_ascii_alphabetic).collect();
        letters.sort_unstable();
        letters.dedup();
        let info = format!(":2,{}", letters.iter().collect::<String>());
        self.deliver_one(data, "cur", &info)
    }

    /// One message into `sub` (`new` or `cur`) under its unique name plus
    /// `info`: written in `tmp/` and fdatasynced, linked, `sub/` fsynced,
    /// the `tmp/` name removed. The bytes are durable before the name
    /// exists, whatever the file system (ext4 without a journal, as here,
    /// orders nothing between a directory block and an inode). Any failure
    /// removes both names (the caller, told to retry, must not find a
    /// duplicate).
    fn deliver_one(&self, data: &[u8], sub: &str, info: &str) -> Result<PathBuf> {
        let tmp_dir = self.root.join("tmp");
        let dest_dir = self.root.join(sub);
        let (file, tmp, name) = create_tmp(&tmp_dir, data)?;
        if let Err(e) = file.sync_data() {
            drop(file);
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("writing {}", tmp.display()), &e));
        }
        drop(file);
        let linked = match link_unique_info(&tmp, &dest_dir, &name, info) {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(Error::io(format!("moving into {}", dest_dir.display()), &e));
            }
        };
        if let Err(e) = fsync_dir(&dest_dir) {
            let _ = fs::remove_file(&linked);
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("syncing {}", dest_dir.display()), &e));
        }
        let _ = fs::remove_file(&tmp);
        Ok(linked)
    }

    /// Deliver several messages with grouped syncs. Returns the paths of the
    /// messages that are durable in `new/` (a prefix of `msgs`, in order) and
    /// the error that stopped the rest, if any. On error nothing of the
    /// failed messages is left in `tmp/` or `new/`.
    pub fn deliver_batch(&self, msgs: &[&[u8]]) -> (Vec<PathBuf>, Option<Error>) {
        if let [one] = msgs {
            return match self.deliver_one(one, "new", "") {
                Ok(p) => (vec![p], None),
                Err(e) => (Vec::new(), Some(e)),
            };
        }
        let tmp_dir = self.root.join("tmp");
        let new_dir = self.root.join("new");
        let mut written: Vec<(PathBuf, String)> = Vec::with_capacity(msgs.len());
        let cleanup = |w: &[(PathBuf, String)]| {
            for (p, _) in w {
                let _ = fs::remove_file(p);
            }
        };
        // 1. Write every message in tmp/.
        for data in msgs {
            match create_tmp(&tmp_dir, data) {
                Ok((_, path, name)) => written.push((path, name)),
                Err(e) => {
                    cleanup(&written);
                    return (Vec::new(), Some(e));
                }
            }
        }
        // 2. Make their contents durable: one syncfs for the group.
        if let Err(e) = syncfs(&tmp_dir) {
            cleanup(&written);
            return (
                Vec::new(),
                Some(Error::io(format!("syncing {}", tmp_dir.display()), &e)),
            );
        }
        // 3. Link into new/ (never overwriting), then one fsync of new/.
        let mut linked: Vec<PathBuf> = Vec::with_capacity(written.len());
        let mut failure = None;
        for (i, (tmp, name)) in written.iter().enumerate() {
            match link_unique(tmp, &new_dir, name) {
                Ok(p) => linked.push(p),
                Err(e) => {
                    failure = Some(Error::io(format!("moving into {}", new_dir.display()), &e));
                    cleanup(&written[i..]);
                    break;
                }
            }
        }
        if let Err(e) = fsync_dir(&new_dir) {
            // Linked but not known durable: take them back out so the caller,
            // who will retry, does not end up with duplicates.
            for p in &linked {
                let _ = fs::remove_file(p);
            }
            cleanup(&written);
            return (
                Vec::new(),
                Some(Error::io(format!("syncing {}", new_dir.display()), &e)),
            );
        }
        for (tmp, _) in &written[..linked.len()] {
            let _ = fs::remove_file(tmp);
        }
        (linked, failure)
    }
}

fn syncfs(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    nix::unistd::syncfs(&f).map_err(io::Error::from)
}

/// Write `data` to a fresh unique file in `tmp`, not synced; the file
/// stays open for the caller's sync.
fn create_tmp(tmp_dir: &Path, data: &[u8]) -> Result<(File, PathBuf, String)> {
    for _ in 0..100 {
        let name = unique_name(data.len());
        let path = tmp_dir.join(&name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        let mut file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), &e)),
        };
        if let Err(e) = file.write_all(data) {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(Error::io(format!("writing {}", path.display()), &e));
        }
        return Ok((file, path, name));
    }
    Err(Error::new(
        Kind::Temporary,
        tmp_dir.display().to_string(),
        "could not find a unique file name",
    ))
}

/// Hard-link `tmp` into `dir` under `name` (or a fresh name if taken).
fn link_unique(tmp: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    link_unique_info(tmp, dir, name, "")
}

/// [`link_unique`] with `info` (`:2,FS`) appended to the name.
fn link_unique_info(tmp: &Path, dir: &Path, name: &str, info: &str) -> io::Result<PathBuf> {
    let mut target = dir.join(format!("{name}{info}"));
    for _ in 0..100 {
        match fs::hard_link(tmp, &target) {
            Ok(()) => return Ok(target),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let size = fs::metadata(tmp)?.len() as usize;
                target = dir.join(format!("{}{info}", unique_name(size)));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no unique name in new/",
    ))
}

/// Dovecot's keyword table in a Maildir folder.
const KEYWORDS_FILE: &str = "dovecot-keywords";
/// Keywords a Maildir can name: the letters `a` to `z`.
const MAX_KEYWORDS: usize = 26;
/// Most of `dovecot-keywords` read.
const KEYWORDS_MAX_READ: u64 = 64 * 1024;

/// Whether `name` can be an IMAP keyword (RFC 3501 `atom`, no `]`, not a
/// `\` system flag), so that it is one line of `dovecot-keywords` and
/// Dovecot shows it back as written.
fn is_atom(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
}

/// `time.MusecPpidQcounter.host,S=size`, the Maildir spec's unique name with
/// Dovecot's size suffix (lets Dovecot skip a stat). The host has `/`, `:`
/// and `,` escaped as octal, as the spec asks.
pub fn unique_name(size: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let q = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{}.{},S={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        q,
        host(),
        size
    )
}

fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        crate::sysnames::hostname()
            .replace('/', "\\057")
            .replace(':', "\\072")
            .replace(',', "\\054")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_clean() {
        let a = unique_name(10);
        let b = unique_name(10);
        assert_ne!(a, b);
        assert!(!a.contains('/') && !a.contains(':'));
        assert!(a.ends_with(",S=10"));
    }

    #[test]
    fn a_link_into_new_never_replaces_a_file_there() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::open(&d.path().join("md")).unwrap();
        let (_, tmp, name) = create_tmp(&md.root().join("tmp"), b"new message\n").unwrap();
        let taken = md.root().join("new").join(&name);
        fs::write(&taken, b"already there\n").unwrap();
        let linked = link_unique(&tmp, &md.root().join("new"), &name).unwrap();
        assert_ne!(linked, taken);
        assert_eq!(fs::read(&taken).unwrap(), b"already there\n");
        assert_eq!(fs::read(&linked).unwrap(), b"new message\n");
    }

    #[test]
    fn flags_go_into_cur_with_sorted_info() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::open(&d.path().join("md")).unwrap();
        let p = md.deliver_with_flags(b"x\n", "SFS").unwrap();
        assert_eq!(p.parent().unwrap(), md.root().join("cur"));
        assert!(p.to_str().unwrap().ends_with(":2,FS"), "{p:?}");
        assert_eq!(fs::read(&p).unwrap(), b"x\n");
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        let p = md.deliver_with_flags(b"y\n", "").unwrap();
        assert_eq!(p.parent().unwrap(), md.root().join("new"));
        assert!(!md.folder_path("A.B").unwrap().exists());
        assert!(md.folder_path("A..B").is_err());
        assert_eq!(md.folder_path("INBOX").unwrap(), md.root());
    }

    #[test]
    fn keywords_get_dovecot_letters_kept_in_dovecot_keywords() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::open(&d.path().join("md")).unwrap();
        let kw = md.root().join("dovecot-keywords");
        // One Dovecot already named, at index 1 (b); index 0 is free.
        fs::write(&kw, "1 $Junk\n").unwrap();
        let names: Vec<String> = ["$junk", "work", "bad name", "\\Recent"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (letters, left) = md.keyword_letters(&names).unwrap();
        assert_eq!(letters, "ba");
        assert_eq!(left, ["bad name", "\\Recent"]);
        assert_eq!(fs::read_to_string(&kw).unwrap(), "0 work\n1 $Junk\n");
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        // Known names: the file is left alone.
        let (letters, _) = md.keyword_letters(&["WORK".to_string()]).unwrap();
        assert_eq!(letters, "a");
        // All 26 taken: the 27th gets no letter.
        let many: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
        let (letters, left) = md.keyword_letters(&many).unwrap();
        assert_eq!(letters.len(), 24);
        assert_eq!(left.len(), 6);
        assert_eq!(fs::read_to_string(&kw).unwrap().lines().count(), 26);
        // Letters after the system flags in the info.
        let p = md.deliver_with_flags(b"x\n", "bSa").unwrap();
        assert!(p.to_str().unwrap().ends_with(":2,Sab"), "{p:?}");
    }

    #[test]
    fn a_batch_leaves_nothing_in_tmp() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::open(&d.path().join("md")).unwrap();
        let (stored, err) = md.deliver_batch(&[b"a\n", b"b\n", b"c\n"]);
        assert!(err.is_none());
        assert_eq!(stored.len(), 3);
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(md.root().join("new")).unwrap().count(), 3);
    }
}
