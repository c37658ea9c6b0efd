//! mbox delivery: append under lock, fsync, and never leave part of a message.
//!
//! Guarantee: after [`Mbox::append`] returns `Ok`, every message of the call
//! is in the file, complete and on disk (fdatasync), each after an empty line and a
//! `From ` line, quoted so no body line can be taken for a separator. On any
//! error the file is cut back to its old length before the locks are
//! released. If the process is killed mid-write, the dotlock it leaves holds
//! the range it was writing; the next append that breaks that stale lock cuts
//! a partial message off (a complete one is kept).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::exit::{Error, Kind, Result};
use crate::mboxfmt::{self, Format};
use crate::store::lock::{self, Journal, Locking};
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
        if let Some(j) = held.stale_journal {
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
        held.record(Journal {
            start: old_len,
            end: old_len + buf.len() as u64,
        });
        let res = (&file).write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = res {
            // Cut back whatever went in; the caller keeps the message.
            let _ = file.set_len(old_len);
            let _ = file.sync_data();
            return Err(Error::io(ctx("appending to"), &e));
        }
        drop(held);
        Ok(())
    }
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
