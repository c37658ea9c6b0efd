//! A small bounded cache of recently delivered Message-IDs per destination,
//! like `formail -D`, so a message fetched or sent twice is stored once.
//!
//! Guarantee: dedup can only ever skip a message whose Message-ID was
//! recorded *after* it was durably stored in the same destination. A lost or
//! corrupt cache means at worst a duplicate, never a lost message. The cache
//! file is locked (flock) from the check until the record, so concurrent
//! deliveries of the same message store it once.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::exit::{Error, Result};

/// The cache for one destination, locked while this value lives.
#[derive(Debug)]
pub struct Cache {
    file: File,
    path: PathBuf,
    ids: Vec<String>,
    seen: HashSet<String>,
    max: usize,
    dirty: bool,
}

/// Where the cache of `dest` lives: `DIR/<hash>.ids`, the first line naming
/// the destination for people reading it.
pub fn cache_path(dir: &Path, dest: &Path) -> PathBuf {
    // The same destination however it was written (md, ./md/, a symlink).
    let abs = fs::canonicalize(dest)
        .or_else(|_| std::path::absolute(dest))
        .unwrap_or_else(|_| dest.to_path_buf());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in abs.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    dir.join(format!("{h:016x}.ids"))
}

/// The form an ID is kept in: one line, control characters escaped (not
/// dropped, so `<a\tb>` and `<ab>` stay different messages).
fn clean(id: &str) -> String {
    id.chars()
        .flat_map(|c| {
            if c.is_control() || c == '\\' {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

impl Cache {
    /// Open (creating) and lock the cache of `dest` in `dir`, keeping at most `max` ids.
    pub fn open(dir: &Path, dest: &Path, max: usize) -> Result<Cache> {
        let path = cache_path(dir, dest);
        let ctx = || format!("dedup cache {}", path.display());
        fs::create_dir_all(dir).map_err(|e| Error::io(ctx(), &e))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(ctx(), &e))?;
        file.lock().map_err(|e| Error::io(ctx(), &e))?;
        let mut text = String::new();
        // A cache that is not text is as good as empty.
        let _ = file.read_to_string(&mut text);
        let ids: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
        let seen = ids.iter().cloned().collect();
        Ok(Cache {
            file,
            path,
            ids,
            seen,
            max: max.max(1),
            dirty: false,
        })
    }

    /// Was `id` delivered here recently?
    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(&clean(id))
    }

    /// Remember `id` (call only after the message is durably stored).
    pub fn record(&mut self, id: &str) {
        let id = clean(id);
        if self.seen.insert(id.clone()) {
            self.ids.push(id);
            self.dirty = true;
        }
    }

    /// Write the cache back (trimmed to the newest `max`) and unlock.
    pub fn save(mut self, dest: &Path) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let drop_n = self.ids.len().saturating_sub(self.max);
        let mut out = format!("# postline dedup cache for {}\n", dest.display());
        for id in &self.ids[drop_n..] {
            out.push_str(id);
            out.push('\n');
        }
        let res: io::Result<()> = (|| {
            self.file.seek(SeekFrom::Start(0))?;
            self.file.set_len(0)?;
            self.file.write_all(out.as_bytes())
        })();
        res.map_err(|e| Error::io(format!("dedup cache {}", self.path.display()), &e))
    }
}
