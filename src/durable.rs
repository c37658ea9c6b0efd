//! Durable file writes: the one discipline every state and spool file is
//! written with (queue entries and their state, mail-fetch state).
//!
//! Owns creating a fresh private file ([`create_fresh`]), writing one and
//! syncing it ([`write_new`]), replacing a file atomically and durably
//! ([`replace`]: write a temporary file, fsync, rename over the old one,
//! fsync the directory) and [`fsync_dir`].
//!
//! Guarantees:
//!
//! - **Never through a link.** A file we create is opened with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600; whatever already has the name
//!   (a killed writer's temporary file, or a link someone planted) is
//!   removed first, so nothing is ever written into another file.
//! - **Whole or not at all.** After [`replace`] returns, the new contents
//!   are on disk under the final name, and the rename is durable; after a
//!   crash at any point the name holds either the old or the new contents.
//!   A failed replace removes its temporary file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// fsync a directory, so that entries created or renamed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create `path` fresh for writing: mode 0600, `O_EXCL|O_NOFOLLOW`, after
/// removing whatever had that name.
pub fn create_fresh(path: &Path) -> io::Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Write `data` to a fresh `path` (see [`create_fresh`]) and fsync it.
pub fn write_new(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = create_fresh(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Replace `path` with `data` atomically and durably, through the
/// temporary file `tmp` (same directory): fresh `tmp`, write, fsync,
/// rename over `path`, fsync the directory.
pub fn replace(path: &Path, tmp: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let res = write_new(tmp, data)
        .and_then(|()| fs::rename(tmp, path))
        .and_then(|()| fsync_dir(dir));
    if res.is_err() {
        let _ = fs::remove_file(tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_never_writes_through_a_planted_link() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let tmp = d.path().join("state.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        let path = d.path().join("state");
        replace(&path, &tmp, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!tmp.exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_failed_replace_leaves_the_old_file_and_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state");
        fs::write(&path, b"old").unwrap();
        let tmp = d.path().join("missing-dir/state.tmp");
        assert!(replace(&path, &tmp, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }
}
