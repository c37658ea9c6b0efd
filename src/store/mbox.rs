//! mbox delivery: append under lock, fsync, and never leave part of a message.
//!
//! Guarantee: after [`Mbox::append`] returns `Ok`, every message of the call
//! is in the file, complete and on disk (fdatasync), each after an empty line and a
//! `From ` line, quoted so no body line can be taken for a separator. On any
//! error the file is cut back to its old length before the locks are
//! released.
//!
//! The append journal. Before writing, the append is recorded in a sidecar
//! journal, `FILE.postline-append` (created with `O_EXCL|O_NOFOLLOW`, mode
//! 0600), removed once the data is on disk: the mbox's device and inode,
//! the range about to be written, and the very bytes. A writer that finds a
//! journal while holding the locks knows its author died mid-append (no
//! live writer can hold the locks with it). It cuts the file back to the
//! recorded start only when everything says the end of the file is that
//! dead writer's partial write and nothing else: the journal is a regular
//! file owned by the mailbox's owner (or by us, or root), not writable by
//! group or others, names this very file, the file ends inside the recorded
//! range, and the bytes from the start to the end of the file are a prefix
//! of the recorded ones. Anything else (a planted or foreign journal, a
//! message another MDA appended after the partial one) leaves the bytes as
//! they are and is reported through [`Mbox::take_notes`]: a partial message
//! is better than a lost one. The journal stays until a writer has acted
//! on it, so a repairer killed in turn leaves the repair to the next one.
//!
//! What is followed: the mbox path is opened as given, symbolic links
//! included, except that a process running as root refuses a link whose
//! owner is neither root nor the owner of the file it leads to (a link
//! another user planted in a shared spool), and never creates a file
//! through a dangling link. The journal is never followed.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
    /// What an append found and left alone (see [`Mbox::take_notes`]).
    notes: Arc<Mutex<Vec<String>>>,
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
            notes: Arc::default(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Warnings from the appends so far, each one line, taken away: a
    /// journal that was not trusted or no longer described the end of the
    /// file, so the bytes were left as they were. The delivery itself
    /// succeeded; a tool shows these on stderr.
    pub fn take_notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }

    fn note(&self, s: String) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(s);
        }
    }

    /// The length the file keeps through the next append: its length, or,
    /// when a writer died mid-append and the next append will cut its
    /// partial write off (see the module docs), the start of that write,
    /// complete messages of the cut group included. Read without the
    /// locks, for a caller whose own writers are all stopped (mail-fetch,
    /// under its account lock).
    pub fn settled_len(&self) -> u64 {
        let Ok(file) = File::open(&self.path) else {
            return 0;
        };
        let Ok(meta) = file.metadata() else { return 0 };
        match judge(&file, &meta, &journal_path(&self.path)) {
            Verdict::Cut(start) => start,
            _ => meta.len(),
        }
    }

    /// Open the mbox for appending, creating it when missing (never through
    /// a symbolic link), and refusing as root a link another user planted.
    /// Returns the file and whether it was created.
    fn open(&self) -> Result<(File, bool)> {
        let p = &self.path;
        let ctx = |what: &str| format!("{what} {}", p.display());
        let link = fs::symlink_metadata(p)
            .ok()
            .filter(|m| m.file_type().is_symlink());
        let mut opts = OpenOptions::new();
        opts.read(true).append(true);
        let Some(link) = link else {
            // O_NOFOLLOW: a link raced in after our look fails the open
            // instead of being written through.
            let existed = p.exists();
            let file = opts
                .create(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(p)
                .map_err(|e| Error::io(ctx("opening"), &e))?;
            return Ok((file, !existed));
        };
        let file = match opts.open(p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::new(
                    Kind::CantCreate,
                    p.display().to_string(),
                    "is a symbolic link to nothing; no mbox is created through it",
                ));
            }
            Err(e) => return Err(Error::io(ctx("opening"), &e)),
        };
        let meta = file.metadata().map_err(|e| Error::io(ctx("reading"), &e))?;
        // Judged against the file actually opened: swapping the link after
        // the look cannot make us write to a file we did not judge.
        if nix::unistd::geteuid().is_root() && link.uid() != 0 && link.uid() != meta.uid() {
            return Err(Error::new(
                Kind::CantCreate,
                p.display().to_string(),
                format!(
                    "is a symbolic link owned by uid {} to a file of uid {}; refused as root",
                    link.uid(),
                    meta.uid()
                ),
            ));
        }
        Ok((file, false))
    }

    /// Append `items` as one locked, fsynced write.
    pub fn append(&self, items: &[Item<'_>]) -> Result<()> {
        let p = &self.path;
        let ctx = |what: &str| format!("{what} {}", p.display());
        let (file, created) = self.open()?;
        let meta = file.metadata().map_err(|e| Error::io(ctx("reading"), &e))?;
        if !meta.is_file() {
            return Err(Error::new(
                Kind::CantCreate,
                p.display().to_string(),
                "is not a regular file, so it cannot be an mbox",
            ));
        }
        if created {
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            fsync_dir(parent).map_err(|e| Error::io(ctx("syncing the directory of"), &e))?;
        }
        let held = lock::lock(p, &file, &self.locking)?;
        let journal = journal_path(p);
        match judge(&file, &meta, &journal) {
            Verdict::Absent => {}
            Verdict::Settled => {
                let _ = fs::remove_file(&journal);
            }
            Verdict::Cut(start) => {
                file.set_len(start)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| Error::io(ctx("repairing"), &e))?;
                // Only now: a repairer killed before this line leaves the
                // journal to the next writer.
                let _ = fs::remove_file(&journal);
            }
            Verdict::Doubt(why) => {
                let _ = fs::remove_file(&journal);
                self.note(format!(
                    "{}: {why}; {} is left as it is",
                    journal.display(),
                    p.display()
                ));
            }
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
        // automatically, which is no worse than other MDAs.
        let header = Journal {
            dev: meta.dev(),
            ino: meta.ino(),
            start: old_len,
            end: old_len + buf.len() as u64,
        }
        .header();
        let journal_written = write_journal(&journal, &header, &buf).is_ok();
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

/// What an append records before it writes: the file (device, inode) and
/// the byte range; the bytes themselves follow the header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Journal {
    dev: u64,
    ino: u64,
    start: u64,
    end: u64,
}

/// The journal's first line (version 2; version 1 had no file identity
/// and no bytes, and is never trusted).
const MAGIC: &str = "postline-append 2";

/// The longest header line read.
const MAX_HEADER: usize = 256;

impl Journal {
    fn header(&self) -> String {
        format!(
            "{MAGIC} pid={} dev={} ino={} start={} end={}\n",
            std::process::id(),
            self.dev,
            self.ino,
            self.start,
            self.end
        )
    }
}

/// `FILE.postline-append`, the journal beside the mbox.
fn journal_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".postline-append");
    PathBuf::from(s)
}

/// Create the journal (never over an existing file, never through a link,
/// 0600) holding `header` and `data`. A journal left half-written is
/// removed.
fn write_journal(path: &Path, header: &str, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let res = f
        .write_all(header.as_bytes())
        .and_then(|()| f.write_all(data));
    if res.is_err() {
        drop(f);
        let _ = fs::remove_file(path);
    }
    res
}

/// The header line of a journal, parsed (`None`: not a version 2 journal).
fn parse_header(line: &str) -> Option<Journal> {
    let rest = line.strip_prefix(MAGIC)?.strip_prefix(' ')?;
    let (mut dev, mut ino, mut start, mut end) = (None, None, None, None);
    for kv in rest.split(' ') {
        match kv.split_once('=') {
            Some(("dev", v)) => dev = v.parse().ok(),
            Some(("ino", v)) => ino = v.parse().ok(),
            Some(("start", v)) => start = v.parse().ok(),
            Some(("end", v)) => end = v.parse().ok(),
            Some(("pid", _)) => {}
            _ => return None,
        }
    }
    let j = Journal {
        dev: dev?,
        ino: ino?,
        start: start?,
        end: end?,
    };
    (j.start <= j.end).then_some(j)
}

/// What a journal found beside the mbox says to do.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// There is none.
    Absent,
    /// A dead writer's partial write ends the file: cut back to here.
    Cut(u64),
    /// Ours and nothing to undo (the write completed, or never began).
    Settled,
    /// Not to be acted on: why (the bytes stay).
    Doubt(String),
}

/// Judge the journal at `path` for the mbox `file` (whose metadata is
/// `mbox`), without changing anything.
fn judge(file: &File, mbox: &Metadata, path: &Path) -> Verdict {
    let j = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(j) => j,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match fs::symlink_metadata(path) {
                // A dangling link is still something planted.
                Ok(_) => Verdict::Doubt("not a journal of ours (a symbolic link)".into()),
                Err(_) => Verdict::Absent,
            };
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Verdict::Doubt("not a journal of ours (a symbolic link)".into());
        }
        Err(e) => return Verdict::Doubt(format!("unreadable ({})", crate::exit::describe_io(&e))),
    };
    let Ok(jm) = j.metadata() else {
        return Verdict::Doubt("unreadable".into());
    };
    if !jm.is_file() {
        return Verdict::Doubt("not a journal of ours (not a regular file)".into());
    }
    let euid = nix::unistd::geteuid().as_raw();
    if ![mbox.uid(), euid, 0].contains(&jm.uid()) {
        return Verdict::Doubt(format!(
            "owned by uid {}, not by the mailbox's owner",
            jm.uid()
        ));
    }
    if jm.mode() & 0o077 != 0 {
        return Verdict::Doubt(format!(
            "mode {:o}, open to group or others",
            jm.mode() & 0o7777
        ));
    }
    let mut head = [0u8; MAX_HEADER];
    let n = read_full_at(&j, &mut head, 0).unwrap_or(0);
    let Some(nl) = head[..n].iter().position(|&c| c == b'\n') else {
        return Verdict::Doubt("not a journal of ours (unknown format)".into());
    };
    let Some(rec) = std::str::from_utf8(&head[..nl]).ok().and_then(parse_header) else {
        return Verdict::Doubt("not a journal of ours (unknown format)".into());
    };
    if rec.dev != mbox.dev() || rec.ino != mbox.ino() {
        return Verdict::Doubt("the journal of another file".into());
    }
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Verdict::Doubt("the mbox cannot be read".into());
    };
    if len <= rec.start || len >= rec.end {
        // Nothing of that write is there, or all of it: nothing to cut.
        return Verdict::Settled;
    }
    let data_at = (nl + 1) as u64;
    if jm.len() != data_at + (rec.end - rec.start) {
        return Verdict::Doubt("an incomplete journal".into());
    }
    match same_bytes(file, rec.start, &j, data_at, len - rec.start) {
        Ok(true) => Verdict::Cut(rec.start),
        Ok(false) => Verdict::Doubt(format!(
            "the bytes after offset {} are not the ones its writer was writing \
             (another program appended after a killed append)",
            rec.start
        )),
        Err(e) => Verdict::Doubt(format!("unreadable ({})", crate::exit::describe_io(&e))),
    }
}

/// Fill `buf` from `at` as far as the file goes; returns the bytes read.
fn read_full_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Are `len` bytes of `a` from `a_at` the same as those of `b` from `b_at`?
/// Compared in chunks, so memory stays small whatever the sizes.
fn same_bytes(a: &File, a_at: u64, b: &File, b_at: u64, len: u64) -> io::Result<bool> {
    const CHUNK: usize = 64 * 1024;
    let (mut x, mut y) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut done = 0u64;
    while done < len {
        let k = CHUNK.min((len - done) as usize);
        let (nx, ny) = (
            read_full_at(a, &mut x[..k], a_at + done)?,
            read_full_at(b, &mut y[..k], b_at + done)?,
        );
        if nx != k || ny != k || x[..k] != y[..k] {
            return Ok(false);
        }
        done += k as u64;
    }
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_headers_parse_and_round_trip() {
        let j = Journal {
            dev: 3,
            ino: 4,
            start: 5,
            end: 9,
        };
        let h = j.header();
        assert_eq!(parse_header(h.trim_end()), Some(j));
        for bad in [
            "postline-append pid=12 start=5 end=9",
            "postline-append 2 pid=1 dev=3 ino=4 start=9 end=5",
            "postline-append 2 dev=3 ino=4 start=5",
            "postline-append 2 dev=3 ino=4 start=5 end=9 extra",
            "12",
        ] {
            assert_eq!(parse_header(bad), None, "{bad}");
        }
    }
}
