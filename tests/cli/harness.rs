//! Test harness: hermetic temp dirs, running the tools, fluent assertions on
//! their output, and real servers (Dovecot) on free loopback ports.
//!
//! Temp dirs live under `$POSTLINE_TEST_DIR` (default `/var/tmp/postline-tests`),
//! not `/tmp`: creating files under `/tmp` is slow on some machines.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::io::Write;

/// Root for all test scratch space.
pub fn test_root() -> PathBuf {
    let root = std::env::var_os("POSTLINE_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/postline-tests"));
    std::fs::create_dir_all(&root).expect("create test root");
    root
}

/// A scratch directory removed on drop (kept when `POSTLINE_KEEP_TEST_DIRS` is set).
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new() -> TempDir {
        let mut b = tempfile::Builder::new();
        b.prefix("t-");
        if std::env::var_os("POSTLINE_KEEP_TEST_DIRS").is_some() {
            b.disable_cleanup(true);
        }
        TempDir(b.tempdir_in(test_root()).expect("tempdir"))
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.path().join(p)
    }
}

/// True when running as root (needed for Dovecot and tmpfs mounts).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Should a test that cannot run here fail rather than skip?
pub fn require_all() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var_os("POSTLINE_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// Skip (return true) or fail when a precondition is missing.
pub fn skip_unless(ok: bool, why: &str) -> bool {
    if ok {
        return false;
    }
    if require_all() {
        panic!("required test cannot run: {why}");
    }
    eprintln!("SKIPPED: {why}");
    true
}

/// A tool invocation with a hermetic environment: HOME in `home`, TZ=UTC,
/// no inherited MAILDIR/XDG variables.
pub struct Tool {
    cmd: Command,
    stdin: Vec<u8>,
}

/// Path of a built binary.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "mail-deliver" => PathBuf::from(env!("CARGO_BIN_EXE_mail-deliver")),
        other => panic!("unknown binary {other}"),
    }
}

impl Tool {
    pub fn new(name: &str, home: &Path) -> Tool {
        let mut cmd = Command::new(bin(name));
        cmd.env_clear()
            .env("HOME", home)
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(home);
        Tool { cmd, stdin: Vec::new() }
    }
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Tool {
        self.cmd.arg(a);
        self
    }
    pub fn args<I, S>(mut self, a: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(a);
        self
    }
    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Tool {
        self.cmd.env(k, v);
        self
    }
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Tool {
        self.stdin = data.into();
        self
    }
    /// The underlying command (for spawning without waiting).
    pub fn command(self) -> (Command, Vec<u8>) {
        (self.cmd, self.stdin)
    }
    pub fn run(mut self) -> Outcome {
        self.cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn tool");
        let mut si = child.stdin.take().unwrap();
        let data = std::mem::take(&mut self.stdin);
        let writer = std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait tool");
        let _ = writer.join();
        Outcome(out)
    }
}

/// A finished run, with fluent assertions.
pub struct Outcome(pub Output);

impl Outcome {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    pub fn code_is(self, code: i32) -> Outcome {
        assert_eq!(self.code(), code, "exit code; stderr: {}\nstdout: {}", self.stderr(), self.stdout());
        self
    }
    #[track_caller]
    pub fn success(self) -> Outcome {
        self.code_is(0)
    }
    #[track_caller]
    pub fn stderr_has(self, s: &str) -> Outcome {
        assert!(self.stderr().contains(s), "stderr lacks {s:?}: {}", self.stderr());
        self
    }
    #[track_caller]
    pub fn stderr_empty(self) -> Outcome {
        assert!(self.0.stderr.is_empty(), "stderr not empty: {}", self.stderr());
        self
    }
    #[track_caller]
    pub fn stdout_empty(self) -> Outcome {
        assert!(self.0.stdout.is_empty(), "stdout not empty: {}", self.stdout());
        self
    }
    #[track_caller]
    pub fn stderr_one_line(self) -> Outcome {
        assert_eq!(self.stderr().lines().count(), 1, "expected one stderr line: {}", self.stderr());
        self
    }
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout().lines().map(str::to_string).collect()
    }
}

/// Run a python3 snippet with args; returns stdout, panics on failure.
pub fn python(script: &str, args: &[&OsStr]) -> Vec<u8> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}
