//! mbox locking as mutt, procmail and Dovecot do it: a `FILE.lock` dotlock,
//! then an fcntl(2) write lock on the whole file, optionally flock(2) too.
//!
//! Guarantee: while a [`Held`] lock exists no cooperating writer appends to
//! the file. Waiting is bounded by a deadline and reported as a temporary
//! failure. The dotlock holds the owner's pid (as liblockfile writes it) and
//! is never rewritten, so a writer killed at any point leaves either no lock
//! or a complete one that the next writer can judge stale.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

use crate::exit::{Error, Kind, Result};

/// Which locks to take.
#[derive(Debug, Clone, Copy)]
pub struct Locking {
    /// Take a `FILE.lock` dotlock (skipped when the directory is not writable).
    pub dotlock: bool,
    /// Take an fcntl write lock.
    pub fcntl: bool,
    /// Take a flock lock.
    pub flock: bool,
    /// Give up (temporary failure) after this long.
    pub timeout: Duration,
    /// A dotlock older than this is stale even if its pid is alive (after a
    /// reboot the pid may name an unrelated process; over NFS it may be
    /// another host's). procmail's default, 1024 s.
    pub stale_after: Duration,
}

impl Default for Locking {
    fn default() -> Locking {
        Locking {
            dotlock: true,
            fcntl: true,
            flock: false,
            timeout: Duration::from_secs(60),
            stale_after: Duration::from_secs(1024),
        }
    }
}

impl Locking {
    /// Parse a comma-separated list of `dotlock`, `fcntl`, `flock`.
    pub fn parse_methods(&mut self, list: &str) -> std::result::Result<(), String> {
        self.dotlock = false;
        self.fcntl = false;
        self.flock = false;
        for m in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            match m {
                "dotlock" => self.dotlock = true,
                "fcntl" => self.fcntl = true,
                "flock" => self.flock = true,
                other => {
                    return Err(format!(
                        "unknown locking method {other:?} (dotlock, fcntl, flock)"
                    ));
                }
            }
        }
        if !(self.dotlock || self.fcntl || self.flock) {
            return Err("no locking method given (dotlock, fcntl, flock)".to_string());
        }
        Ok(())
    }
}

/// Locks held on an mbox; released on drop.
#[derive(Debug)]
pub struct Held {
    dotlock: Option<PathBuf>,
    flocked: Option<File>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(f) = self.flocked.take() {
            let _ = f.unlock();
        }
        if let Some(p) = self.dotlock.take() {
            let _ = fs::remove_file(p);
        }
        // The fcntl lock goes with the caller's file descriptor.
    }
}

/// Take the configured locks on `path`, whose open file is `file`.
pub fn lock(path: &Path, file: &File, cfg: &Locking) -> Result<Held> {
    let deadline = Instant::now() + cfg.timeout;
    let mut held = Held {
        dotlock: None,
        flocked: None,
    };
    if cfg.dotlock {
        held.dotlock = dotlock(path, cfg, deadline)?;
    }
    if cfg.fcntl {
        poll(deadline, path, "fcntl lock", || fcntl_lock(file))?;
    }
    if cfg.flock {
        let dup = file
            .try_clone()
            .map_err(|e| Error::io(format!("locking {}", path.display()), &e))?;
        poll(deadline, path, "flock lock", || match dup.try_lock() {
            Ok(()) => Ok(true),
            Err(fs::TryLockError::WouldBlock) => Ok(false),
            Err(fs::TryLockError::Error(e)) => Err(e),
        })?;
        held.flocked = Some(dup);
    }
    Ok(held)
}

/// Retry `attempt` (Ok(true) = got it) with growing sleeps until `deadline`.
fn poll(
    deadline: Instant,
    path: &Path,
    what: &str,
    mut attempt: impl FnMut() -> io::Result<bool>,
) -> Result<()> {
    let mut nap = Duration::from_millis(1);
    loop {
        match attempt() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                return Err(Error::io(
                    format!("taking {what} on {}", path.display()),
                    &e,
                ));
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                Kind::Temporary,
                path.display().to_string(),
                format!("timed out waiting for the {what}"),
            ));
        }
        sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}

fn fcntl_lock(file: &File) -> io::Result<bool> {
    let fl = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    match fcntl(file.as_fd(), FcntlArg::F_SETLK(&fl)) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN) | Err(Errno::EACCES) | Err(Errno::EINTR) => Ok(false),
        // Some filesystems have no byte-range locks; the dotlock still holds.
        Err(Errno::ENOLCK) | Err(Errno::EOPNOTSUPP) => Ok(true),
        Err(e) => Err(io::Error::from(e)),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn side_path(path: &Path, tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{tag}.{}.{n}", std::process::id()));
    PathBuf::from(s)
}

/// Create `FILE.lock` the NFS-safe way (write a unique file, link it to the
/// lock name), breaking a stale lock when its owner is gone.
fn dotlock(path: &Path, cfg: &Locking, deadline: Instant) -> Result<Option<PathBuf>> {
    let lock = lock_path(path);
    let tmp = side_path(path, "locktmp");
    let ctx = || format!("taking dotlock {}", lock.display());
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
    {
        Ok(f) => f,
        // A mail spool we may append to but not create files in: do as
        // procmail and Dovecot do and rely on the kernel locks alone.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EACCES) | Some(nix::libc::EROFS)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(Error::io(ctx(), &e)),
    };
    let res = f.write_all(format!("{}\n", std::process::id()).as_bytes());
    drop(f);
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(ctx(), &e));
    }
    let mut nap = Duration::from_millis(1);
    let result = loop {
        match fs::hard_link(&tmp, &lock) {
            Ok(()) => break Ok(Some(lock.clone())),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if break_if_stale(&lock, path, cfg) {
                    continue;
                }
            }
            Err(e) => break Err(Error::io(ctx(), &e)),
        }
        if Instant::now() >= deadline {
            break Err(Error::new(
                Kind::Temporary,
                path.display().to_string(),
                format!("timed out waiting for dotlock {}", lock.display()),
            ));
        }
        sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    };
    let _ = fs::remove_file(&tmp);
    result
}

/// If the dotlock is stale, remove it and return true.
fn break_if_stale(lock: &Path, path: &Path, cfg: &Locking) -> bool {
    let Some((content, meta)) = read_lock(lock) else {
        return false;
    };
    if !is_stale(&content, &meta, cfg) {
        return false;
    }
    // Move it aside atomically: of several breakers only one wins the rename.
    let aside = side_path(path, "stalelock");
    if fs::rename(lock, &aside).is_err() {
        return false;
    }
    let same = read_lock(&aside).is_some_and(|(c, m)| c == content && m.ino() == meta.ino());
    if !same {
        // Between our look and the rename another writer broke the stale lock
        // and took a fresh one: give it back and keep waiting.
        let _ = fs::hard_link(&aside, lock);
        let _ = fs::remove_file(&aside);
        return false;
    }
    let _ = fs::remove_file(&aside);
    true
}

fn read_lock(lock: &Path) -> Option<(String, fs::Metadata)> {
    let mut f = File::open(lock).ok()?;
    let meta = f.metadata().ok()?;
    let mut s = String::new();
    Read::by_ref(&mut f)
        .take(4096)
        .read_to_string(&mut s)
        .ok()?;
    Some((s, meta))
}

fn is_stale(content: &str, meta: &fs::Metadata, cfg: &Locking) -> bool {
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    if age > cfg.stale_after {
        return true;
    }
    let pid = content
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok());
    // A pid we can check: stale when that process is gone (EPERM means it
    // exists under another user). No pid: only the age can tell.
    pid.is_some_and(|pid| {
        pid > 0
            && matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Err(Errno::ESRCH)
            )
    })
}
