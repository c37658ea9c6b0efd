//! mbox delivery: append under lock, fsync, and never leave part of a message.
//!
//! Guarantee: after [`Mbox::append`] returns `Ok`, every message of the call
//! is in the file, complete and on disk (fdatasync), each after an empty line and a
//! `From ` line, quoted so no body line can be taken for a separator. On any
//! error the file is cut back to its old length before the locks are
//! released. Before writing, the range about to be appended is recorded in
//! a sidecar journal, `FILE.postline-append`, removed once the data is on
//! disk. A writer that finds a journal while holding the locks knows its
//! author died mid-append (no live writer can hold the locks with it), and
//! cuts a partial message off (a complete one is kept). The journal stays
//! until a writer has acted on it, so a repairer killed in turn leaves the
//! repair to the next one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::exit::{Error, Kind, Result};
use crate::mboxfmt::{self, Format};
use crate::store::lock::{self, Locking};
use crate::store::maildir::fsync_dir;

/// An mbox file and how to write to it.
#[derive(Debug, Clone)]
pub struct Mbox {
    path: PathBuf,
    format: Format,
    locking: Locking,
}

/// One message to append: its bytes (LF, ending in newline) and the
/// envelope sender for its `From ` line.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The message.
    pub data: &'a [u8],
    /// Envelope sender.
    pub sender: &'a str,
}

impl Mbox {
    /// An mbox at `path` (created on first append when missing).
    pub fn new(path: &Path, format: Format, locking: Locking) -> Mbox {
        Mbox {
            path: path.to_path_buf(),
            format,
            locking,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The length the file keeps through the next append: its length, or,
    /// when a writer died mid-append (the file ends inside the range its
    /// journal recorded), the start of that range, which the next append
    /// cuts the file back to, complete messages of the cut group included.
    /// Read without the locks, for a caller whose own writers are all
    /// stopped (mail-fetch, under its account lock).
    pub fn settled_len(&self) -> u64 {
        let len = fs::metadata(&self.path).map_or(0, |m| m.len());
        match read_journal(&journal_path(&self.path)) {
            Some(j) if len > j.start && len < j.end => j.start,
            _ => len,
        }
    }

    /// Append `items` as one locked, fsynced write.
    pub fn append(&self, items: &[Item<'_>]) -> Result<()> {
        let p = &self.path;
        let ctx = |what: &str| format!("{what} {}", p.display());
        let existed = p.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(p)
            .map_err(|e| Error::io(ctx("opening"), &e))?;
        let meta = file.metadata().map_err(|e| Error::io(ctx("reading"), &e))?;
        if !meta.is_file() {
            return Err(Error::new(
                Kind::CantCreate,
                p.display().to_string(),
                "is not a regular file, so it cannot be an mbox",
            ));
        }
        if !existed {
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            fsync_dir(parent).map_err(|e| Error::io(ctx("syncing the directory of"), &e))?;
        }
        let held = lock::lock(p, &file, &self.locking)?;
        let journal = journal_path(p);
        if let Some(j) = read_journal(&journal) {
            repair(&file, j).map_err(|e| Error::io(ctx("repairing"), &e))?;
        }
        let old_len = file
            .metadata()
            .map_err(|e| Error::io(ctx("reading"), &e))?
            .len();

        // Frame: the previous message must end with an empty line.
        let mut buf = Vec::new();
        let tail = last_bytes(&file, old_len).map_err(|e| Error::io(ctx("reading"), &e))?;
        match (old_len, tail) {
            (0, _) => {}
            (_, [b'\n', b'\n']) => {}
            (1, [_, b'\n']) => {}
            (_, [_, b'\n']) => buf.push(b'\n'),
            _ => buf.extend_from_slice(b"\n\n"),
        }
        let now = SystemTime::now();
        for it in items {
            buf.extend_from_slice(&mboxfmt::from_line(it.sender, now));
            mboxfmt::quote_into(it.data, self.format, &mut buf);
            buf.push(b'\n');
        }
        // Best effort, like the dotlock: without it a kill cannot be repaired
        // automatically, which is no worse than other MDAs. Written over any
        // old journal only now, after the repair it described is done.
        let journal_written = fs::write(
            &journal,
            format!(
                "postline-append pid={} start={} end={}\n",
                std::process::id(),
                old_len,
                old_len + buf.len() as u64
            ),
        )
        .is_ok();
        let res = (&file).write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = res {
            // Cut back whatever went in; the caller keeps the message.
            let _ = file.set_len(old_len);
            let _ = file.sync_data();
            if journal_written {
                let _ = fs::remove_file(&journal);
            }
            return Err(Error::io(ctx("appending to"), &e));
        }
        if journal_written {
            let _ = fs::remove_file(&journal);
        }
        drop(held);
        Ok(())
    }
}

/// The byte range an append is about to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Journal {
    start: u64,
    end: u64,
}

/// `FILE.postline-append`, the journal beside the mbox.
fn journal_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".postline-append");
    PathBuf::from(s)
}

/// The journal left by a writer that died mid-append, if any.
fn read_journal(path: &Path) -> Option<Journal> {
    parse_journal(&fs::read_to_string(path).ok()?)
}

fn parse_journal(content: &str) -> Option<Journal> {
    let line = content
        .lines()
        .find(|l| l.starts_with("postline-append "))?;
    let mut start = None;
    let mut end = None;
    for kv in line.split_whitespace().skip(1) {
        match kv.split_once('=') {
            Some(("start", v)) => start = v.parse().ok(),
            Some(("end", v)) => end = v.parse().ok(),
            _ => {}
        }
    }
    Some(Journal {
        start: start?,
        end: end?,
    })
}

/// The last two bytes before `len` (fewer when the file is shorter).
fn last_bytes(file: &File, len: u64) -> io::Result<[u8; 2]> {
    let mut b = [0u8; 2];
    if len >= 2 {
        file.read_exact_at(&mut b, len - 2)?;
    } else if len == 1 {
        file.read_exact_at(&mut b[1..], 0)?;
    }
    Ok(b)
}

/// Undo a killed writer's partial append: only when the file ends inside the
/// range it recorded, i.e. nobody wrote after it and its write was cut short.
fn repair(file: &File, j: Journal) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len > j.start && len < j.end {
        file.set_len(j.start)?;
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_parses() {
        assert_eq!(
            parse_journal("postline-append pid=12 start=5 end=9\n"),
            Some(Journal { start: 5, end: 9 })
        );
        assert_eq!(parse_journal("12\n"), None);
    }
}
