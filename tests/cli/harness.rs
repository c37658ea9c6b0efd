//! Test harness: hermetic temp dirs, running the tools, fluent assertions on
//! their output, and real servers (Dovecot) on free loopback ports.
//!
//! Temp dirs live under `$POSTLINE_TEST_DIR` (default `/var/tmp/postline-tests`),
//! not `/tmp`: creating files under `/tmp` is slow on some machines.
//!
//! What is here:
//! - [`TempDir`], [`Tool`] (a tool run in a hermetic environment) and
//!   [`Outcome`] (its exit code and output, with assertions);
//! - independent readers to check what a tool stored:
//!   [`python_read_mailbox`] (Python's `mailbox`, for Maildirs and mboxes),
//!   [`Dovecot::imap_fetch`] (Python's `imaplib` against a real Dovecot);
//! - [`Dovecot`]: a private Dovecot with IMAP, IMAPS, POP3, POP3S and LMTP on
//!   free loopback ports, users with Maildir or mbox INBOXes anywhere, and a
//!   self-signed certificate to trust ([`make_readable`] hands root-written
//!   mail to its mail user);
//! - (the second server family, Courier, is in `courier.rs`);
//! - [`Tmpfs`] (a small file system to fill up) and [`Rng`] (a seeded PRNG for
//!   reproducible random inputs and timings).
//!
//! Root-only pieces (Dovecot, tmpfs) must be guarded with
//! `if skip_unless(is_root(), "why") { return; }`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Start a server with `try_start` (which picks free ports), again with
/// fresh ports when one picked free was taken before the server bound it
/// (up to three tries); any other failure panics with its message.
pub fn retry_port_race<T>(mut try_start: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..3 {
        match try_start() {
            Ok(t) => return t,
            Err(e) if e.contains("Address already in use") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{last}");
}

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
        "mail-trace" => PathBuf::from(env!("CARGO_BIN_EXE_mail-trace")),
        "mail-send" => PathBuf::from(env!("CARGO_BIN_EXE_mail-send")),
        "mail-queue" => PathBuf::from(env!("CARGO_BIN_EXE_mail-queue")),
        "mail-fetch" => PathBuf::from(env!("CARGO_BIN_EXE_mail-fetch")),
        "mail-recv" => PathBuf::from(env!("CARGO_BIN_EXE_mail-recv")),
        other => panic!("unknown binary {other}"),
    }
}

impl Tool {
    pub fn new(name: &str, home: &Path) -> Tool {
        Tool::with_command(Command::new(bin(name)), home)
    }
    /// The tool run under a wrapper command, e.g. `&["prlimit", "--fsize=1000"]`:
    /// runs `wrapper... <tool binary> args...` with the same hermetic environment.
    pub fn wrapped(wrapper: &[&str], name: &str, home: &Path) -> Tool {
        let (prog, rest) = wrapper.split_first().expect("a wrapper command");
        let mut cmd = Command::new(prog);
        cmd.args(rest).arg(bin(name));
        Tool::with_command(cmd, home)
    }
    fn with_command(mut cmd: Command, home: &Path) -> Tool {
        cmd.env_clear()
            .env("HOME", home)
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(home);
        Tool {
            cmd,
            stdin: Vec::new(),
        }
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
    /// Remove a variable from the tool's environment (e.g. `HOME`).
    pub fn env_remove(mut self, k: &str) -> Tool {
        self.cmd.env_remove(k);
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
        self.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
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
        assert_eq!(
            self.code(),
            code,
            "exit code; stderr: {}\nstdout: {}",
            self.stderr(),
            self.stdout()
        );
        self
    }
    #[track_caller]
    pub fn success(self) -> Outcome {
        self.code_is(0)
    }
    #[track_caller]
    pub fn stderr_has(self, s: &str) -> Outcome {
        assert!(
            self.stderr().contains(s),
            "stderr lacks {s:?}: {}",
            self.stderr()
        );
        self
    }
    #[track_caller]
    pub fn stderr_empty(self) -> Outcome {
        assert!(
            self.0.stderr.is_empty(),
            "stderr not empty: {}",
            self.stderr()
        );
        self
    }
    #[track_caller]
    pub fn stdout_empty(self) -> Outcome {
        assert!(
            self.0.stdout.is_empty(),
            "stdout not empty: {}",
            self.stdout()
        );
        self
    }
    #[track_caller]
    pub fn stderr_one_line(self) -> Outcome {
        assert_eq!(
            self.stderr().lines().count(),
            1,
            "expected one stderr line: {}",
            self.stderr()
        );
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
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------
// Files, fixtures and independent readers
// ---------------------------------------------------------------------------

/// The project's root (where Cargo.toml is).
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of a helper script in `tests/helpers/`.
pub fn helper(name: &str) -> PathBuf {
    project_dir().join("tests/helpers").join(name)
}

/// The bytes of `tests/fixtures/<tool>/<name>`.
pub fn fixture(tool: &str, name: &str) -> Vec<u8> {
    let p = project_dir().join("tests/fixtures").join(tool).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading fixture {}: {e}", p.display()))
}

/// Names of the entries of `dir`, sorted (empty when `dir` is missing).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("read_dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("listing {}: {e}", dir.display()),
    };
    v.sort();
    v
}

/// The messages in a Maildir's `new/`, as (file name, bytes), sorted by name.
pub fn maildir_new(maildir: &Path) -> Vec<(String, Vec<u8>)> {
    let new = maildir.join("new");
    dir_names(&new)
        .into_iter()
        .map(|n| {
            let data = std::fs::read(new.join(&n)).expect("read message");
            (n, data)
        })
        .collect()
}

/// Parse the `<len>\n<bytes>` stream the helper scripts print.
pub fn parse_length_prefixed(mut out: &[u8]) -> Vec<Vec<u8>> {
    let mut msgs = Vec::new();
    while !out.is_empty() {
        let nl = out.iter().position(|&c| c == b'\n').expect("length line");
        let len: usize = std::str::from_utf8(&out[..nl])
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("length");
        let body = &out[nl + 1..];
        assert!(body.len() >= len, "truncated helper output");
        msgs.push(body[..len].to_vec());
        out = &body[len..];
    }
    msgs
}

fn run_helper(script: &str, args: &[&OsStr]) -> Vec<Vec<u8>> {
    let out = Command::new("python3")
        .arg(helper(script))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_length_prefixed(&out.stdout)
}

/// Every message of a Maildir (new/ and cur/, by file name) or an mbox (in
/// file order, From_ line dropped, mboxrd quoting undone), read by Python's
/// `mailbox` module through `tests/helpers/read_mailbox.py`.
pub fn python_read_mailbox(path: &Path) -> Vec<Vec<u8>> {
    run_helper("read_mailbox.py", &[path.as_os_str()])
}

/// [`python_read_mailbox`] with extra options: `--folder NAME` (Maildir++
/// subfolder, e.g. `Lists.rust`) or `--format mboxo`.
pub fn python_read_mailbox_with(path: &Path, opts: &[&str]) -> Vec<Vec<u8>> {
    let mut args: Vec<&OsStr> = opts.iter().map(OsStr::new).collect();
    args.push(path.as_os_str());
    run_helper("read_mailbox.py", &args)
}

/// CRLF -> LF (what a server sends over IMAP/POP3 back to what is on disk).
pub fn crlf_to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// A short description of two byte strings' first difference, for assertion
/// messages about large messages (printing 50 MB helps nobody).
pub fn first_difference(a: &[u8], b: &[u8]) -> String {
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let show = |s: &[u8]| {
        String::from_utf8_lossy(&s[i.saturating_sub(20).min(s.len())..(i + 40).min(s.len())])
            .into_owned()
    };
    format!(
        "lengths {} and {}, first difference at byte {i}: {:?} vs {:?}",
        a.len(),
        b.len(),
        show(a),
        show(b)
    )
}

/// Assert two byte strings are equal, with a readable message when not.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        panic!("{what}: {}", first_difference(got, want));
    }
}

// ---------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------

/// A small deterministic PRNG (splitmix64): reproducible "random" inputs
/// and delays without a dependency. Seed it per test or per iteration.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo) as u64) as usize
    }
    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------
// Root-only helpers: tmpfs mounts, ownership for Dovecot
// ---------------------------------------------------------------------------

/// A tmpfs mounted on a directory for the life of this value (root only),
/// for full-disk tests. Unmounted (lazily, so a stray open file cannot make
/// it fail) on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `"2m"`) on `path`, creating it.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        use nix::mount::{MsFlags, mount};
        std::fs::create_dir_all(path).expect("create mount point");
        let opts = format!("size={size},mode=0755");
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", path.display()));
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// uid and gid Dovecot's mail processes run as in the test setup (`nobody`,
/// `nogroup`): Dovecot refuses to run them as root.
pub const MAIL_UID: u32 = 65534;
pub const MAIL_GID: u32 = 65534;

/// Give `path` (recursively) to the mail user, and make every ancestor
/// directory traversable by others, so Dovecot's mail processes can read and
/// update what a root-run tool delivered there (mail-deliver creates files
/// 0600 owned by root). Call it after delivering and before reading through
/// Dovecot. For an mbox, pass its directory: Dovecot takes a dotlock there.
pub fn make_readable(path: &Path) {
    fn walk(p: &Path) {
        std::os::unix::fs::lchown(p, Some(MAIL_UID), Some(MAIL_GID))
            .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        let meta = std::fs::symlink_metadata(p).expect("stat");
        if meta.is_dir() {
            for e in std::fs::read_dir(p).expect("read_dir") {
                walk(&e.expect("entry").path());
            }
        }
    }
    walk(path);
    make_traversable(path.parent().unwrap_or(Path::new("/")));
}

/// Add `o+x` to `dir` and every ancestor lacking it (only ever adds a bit).
pub fn make_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let abs = std::path::absolute(dir).expect("absolute path");
    for a in abs.ancestors() {
        let Ok(meta) = std::fs::metadata(a) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if meta.is_dir() && mode & 0o001 == 0 {
            std::fs::set_permissions(a, std::fs::Permissions::from_mode(mode | 0o001))
                .unwrap_or_else(|e| panic!("chmod o+x {}: {e}", a.display()));
        }
    }
}

// ---------------------------------------------------------------------------
// Dovecot
// ---------------------------------------------------------------------------

/// A private Dovecot 2.3 (IMAP, IMAPS, POP3, POP3S, LMTP) on free loopback
/// ports, configured and run entirely inside one directory; stopped on drop.
///
/// Needs root (check with `skip_unless(is_root(), ..)` first). Users are
/// added with [`Dovecot::add_user`] / [`Dovecot::add_mbox_user`] (also after
/// start: Dovecot re-reads its passwd-file when it changes); all have the
/// password [`Dovecot::PASSWORD`] and their mail processes run as
/// `nobody:nogroup`, so call [`make_readable`] on mail written as root
/// before reading it through Dovecot. TLS listeners use a fresh self-signed
/// certificate for `localhost` / `127.0.0.1` at [`Dovecot::cert`].
///
/// ```ignore
/// let mut dc = Dovecot::start(&tmp.join("dovecot"));
/// dc.add_user("alice", &maildir);
/// make_readable(&maildir);
/// let msgs = dc.imap_fetch_all("alice");
/// ```
pub struct Dovecot {
    /// The directory holding config, state, logs, certificate.
    pub dir: PathBuf,
    /// The generated dovecot.conf.
    pub conf: PathBuf,
    /// Address every listener is bound to.
    pub host: &'static str,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub pop3_port: u16,
    pub pop3s_port: u16,
    pub lmtp_port: u16,
    /// Self-signed server certificate (PEM); trust it to talk TLS to this server.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Dovecot's log (errors and info).
    pub log: PathBuf,
    users: Vec<String>,
    child: std::process::Child,
}

impl Dovecot {
    /// Every user's password.
    pub const PASSWORD: &'static str = "secret";

    /// Write a config in `dir` (created), start Dovecot in the foreground as
    /// a child process and wait until all its ports accept connections.
    /// Panics with Dovecot's log when it does not come up in time.
    pub fn start(dir: &Path) -> Dovecot {
        assert!(
            is_root(),
            "Dovecot::start needs root (use skip_unless(is_root(), ..))"
        );
        retry_port_race(|| Dovecot::try_start(dir))
    }

    fn try_start(dir: &Path) -> Result<Dovecot, String> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::path::absolute(dir).expect("absolute");
        for sub in [
            "run",
            "state",
            "mailstate/index",
            "mailstate/control",
            "mailstate/home",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("create dovecot dirs");
        }
        std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        make_readable(&dir.join("mailstate"));
        make_traversable(&dir);
        // Unix sockets live in base_dir; their paths must fit in sun_path.
        assert!(
            dir.join("run/login/imap-login-xxxxxxxx").as_os_str().len() < 100,
            "dovecot dir path too long"
        );
        for c in [" ", ":", "%"] {
            assert!(
                !dir.to_string_lossy().contains(c),
                "dovecot dir path must not contain {c:?}"
            );
        }

        let (cert, key) = self_signed_cert(&dir);

        let ports = free_ports(5);
        let (imap_port, imaps_port, pop3_port, pop3s_port, lmtp_port) =
            (ports[0], ports[1], ports[2], ports[3], ports[4]);
        let host = "127.0.0.1";
        let users_file = dir.join("users");
        write_file_0644(&users_file, b"");
        let log = dir.join("dovecot.log");
        static INSTANCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let instance = format!(
            "postline-test-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let d = dir.display();
        let conf_text = format!(
            r#"# Generated by the postline test harness.
base_dir = {d}/run
state_dir = {d}/state
instance_name = {instance}
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap pop3 lmtp
listen = {host}
shutdown_clients = yes
hostname = localhost
postmaster_address = postmaster@localhost

# Mail processes run as nobody: Dovecot refuses root.
first_valid_uid = {MAIL_UID}
last_valid_uid = {MAIL_UID}
first_valid_gid = {MAIL_GID}
last_valid_gid = {MAIL_GID}
mail_location = maildir:~/Maildir
mail_max_userip_connections = 100
mail_fsync = optimized

disable_plaintext_auth = no
# Tests of wrong passwords should not wait 2 s each.
auth_failure_delay = 0
auth_mechanisms = plain login apop
auth_username_format = %Ln
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {users}
}}

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2

service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {host}
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    address = {host}
    port = {pop3s_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {lmtp_port}
  }}
}}
protocol lmtp {{
  auth_username_format = %Ln
}}
protocol pop3 {{
  pop3_uidl_format = %08Xu%08Xv
}}
# SMTP AUTH for the harness Postfix (smtpd_sasl_type = dovecot).
service auth {{
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
"#,
            users = users_file.display(),
            cert = cert.display(),
            key = key.display(),
        );
        let conf = dir.join("dovecot.conf");
        write_file_0644(&conf, conf_text.as_bytes());
        let _ = std::fs::remove_file(&log);
        let startup = std::fs::File::create(dir.join("startup.log")).expect("startup log");
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(startup.try_clone().expect("dup"))
            .stderr(startup)
            .spawn()
            .map_err(|e| format!("cannot run dovecot: {e}"))?;
        let mut dc = Dovecot {
            dir: dir.clone(),
            conf,
            host,
            imap_port,
            imaps_port,
            pop3_port,
            pop3s_port,
            lmtp_port,
            cert,
            key,
            log,
            users: Vec::new(),
            child,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        for port in [imap_port, imaps_port, pop3_port, pop3s_port, lmtp_port] {
            loop {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                if std::net::TcpStream::connect_timeout(
                    &addr,
                    std::time::Duration::from_millis(200),
                )
                .is_ok()
                {
                    break;
                }
                if let Ok(Some(st)) = dc.child.try_wait() {
                    let msg = format!(
                        "dovecot exited ({st}) before listening on {port}\n{}",
                        dc.logs()
                    );
                    return Err(msg);
                }
                if std::time::Instant::now() > deadline {
                    let msg = format!(
                        "dovecot did not listen on {port} within 20 s\n{}",
                        dc.logs()
                    );
                    dc.stop();
                    return Err(msg);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Ok(dc)
    }

    /// The startup output and the log, for failure messages.
    pub fn logs(&self) -> String {
        let read = |p: PathBuf| {
            std::fs::read(&p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        format!(
            "--- dovecot startup output ---\n{}--- {} ---\n{}",
            read(self.dir.join("startup.log")),
            self.log.display(),
            read(self.log.clone())
        )
    }

    /// Add a user whose INBOX is the Maildir at `maildir` (Maildir++ folders
    /// under it). Dovecot keeps its index and control files elsewhere (in
    /// this instance's dir), so the Maildir holds only what the tool wrote
    /// plus whatever Dovecot does to messages (moving new/ to cur/).
    ///
    /// A Maildir that does not exist yet is created, owned by the mail user
    /// (so LMTP can deliver into it); an existing one is left as it is: call
    /// [`make_readable`] on it after writing to it as root.
    pub fn add_user(&mut self, name: &str, maildir: &Path) {
        if !maildir.exists() {
            std::fs::create_dir_all(maildir).expect("create Maildir");
            make_readable(maildir);
        }
        let md = std::path::absolute(maildir).expect("absolute");
        let md = md.to_string_lossy();
        self.push_user(name, &format!("maildir:{}", md.trim_end_matches('/')));
    }

    /// [`Dovecot::add_user`] with Dovecot's default Maildir layout: index
    /// and control files (`dovecot-uidlist`, `dovecot-keywords`) in the
    /// Maildir folders themselves, as a plain `maildir:~/Maildir` has them.
    pub fn add_user_default_layout(&mut self, name: &str, maildir: &Path) {
        self.add_user(name, maildir);
        let line = self.users.pop().expect("the user just added");
        let plain = line
            .split_once(":INDEX=")
            .map_or(line.clone(), |(l, _)| format!("{l}\n"));
        self.users.push(plain);
        let tmp = self.dir.join("users.new");
        write_file_0644(&tmp, self.users.concat().as_bytes());
        std::fs::rename(&tmp, self.dir.join("users")).expect("install users file");
    }

    /// Add a user whose INBOX is the mbox file `mbox` (other folders in a
    /// directory of this instance). Dovecot takes a dotlock next to the
    /// file, so [`make_readable`] its directory, not only the file.
    pub fn add_mbox_user(&mut self, name: &str, mbox: &Path) {
        let root = self.dir.join("mailstate/mboxroot").join(name);
        std::fs::create_dir_all(&root).expect("mbox root");
        make_readable(&root);
        let mb = std::path::absolute(mbox).expect("absolute");
        self.push_user(
            name,
            &format!("mbox:{}:INBOX={}", root.display(), mb.display()),
        );
    }

    fn push_user(&mut self, name: &str, location: &str) {
        assert!(
            !name.is_empty()
                && name.bytes().all(|c| c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || c == b'-'
                    || c == b'_'),
            "user names are lowercase letters, digits, - and _: {name:?}"
        );
        for c in [' ', '%', '\n'] {
            assert!(
                !location.contains(c),
                "mail location must not contain {c:?}: {location}"
            );
        }
        let st = self.dir.join("mailstate");
        let home = st.join("home").join(name);
        std::fs::create_dir_all(&home).expect("home");
        make_readable(&home);
        self.users.push(format!(
            "{name}:{{PLAIN}}{pw}:{MAIL_UID}:{MAIL_GID}::{home}::userdb_mail={location}:INDEX={st}/index/{name}:CONTROL={st}/control/{name}\n",
            pw = Dovecot::PASSWORD,
            home = home.display(),
            st = st.display(),
        ));
        // Replace atomically (a new inode), so Dovecot sees the change.
        let tmp = self.dir.join("users.new");
        write_file_0644(&tmp, self.users.concat().as_bytes());
        std::fs::rename(&tmp, self.dir.join("users")).expect("install users file");
    }

    /// Every message of `folder` (e.g. `INBOX`, `Lists.rust`) as the server
    /// sends BODY[] (CRLF line ends), in UID order, read over plain IMAP by
    /// Python's imaplib (`tests/helpers/imap_fetch.py`).
    pub fn imap_fetch(&self, user: &str, folder: &str) -> Vec<Vec<u8>> {
        let out = Command::new("python3")
            .arg(helper("imap_fetch.py"))
            .arg(self.host)
            .arg(self.imap_port.to_string())
            .arg(user)
            .arg(Dovecot::PASSWORD)
            .arg(folder)
            .stdin(Stdio::null())
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "imap_fetch.py {user} {folder} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        parse_length_prefixed(&out.stdout)
    }

    /// Every message in `user`'s INBOX, in UID order, with the CRLF of the
    /// IMAP wire turned back into LF (so it compares with what is on disk).
    pub fn imap_fetch_all(&self, user: &str) -> Vec<Vec<u8>> {
        self.imap_fetch(user, "INBOX")
            .iter()
            .map(|m| crlf_to_lf(m))
            .collect()
    }

    /// Lines of the Dovecot log that report errors (empty when all is well).
    pub fn log_errors(&self) -> Vec<String> {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("Error:") || l.contains("Panic:") || l.contains("Fatal:"))
            .map(str::to_string)
            .collect()
    }

    /// Stop Dovecot (SIGTERM, then SIGKILL after 10 s) and reap it.
    pub fn stop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_file_0644(path: &Path, data: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod 0644");
}

/// A self-signed certificate for `localhost` / `127.0.0.1` (EC P-256) and its
/// key, as `DIR/cert.pem` and `DIR/key.pem`, made once (kept when present).
/// Trust the certificate itself to talk TLS to a server using it.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !cert.exists() {
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args([
                "-nodes",
                "-days",
                "3650",
                "-sha256",
                "-subj",
                "/CN=localhost",
            ])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644))
            .expect("chmod cert");
    }
    (cert, key)
}

/// `n` distinct free TCP ports on 127.0.0.1 (bound together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// The harness itself: a Dovecot that later tests (mail-fetch, mail-send,
/// the MTA tests) can rely on.
mod selftest {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;

    /// Send `cmd` (unless empty) and read one reply line.
    fn talk(r: &mut BufReader<TcpStream>, cmd: &str) -> String {
        if !cmd.is_empty() {
            r.get_mut().write_all(cmd.as_bytes()).expect("send");
        }
        let mut line = String::new();
        r.read_line(&mut line).expect("reply");
        line
    }

    /// Read reply lines until an SMTP/LMTP final line (`NNN `).
    fn smtp_reply(r: &mut BufReader<TcpStream>, cmd: &str) -> String {
        let mut line = talk(r, cmd);
        while line.as_bytes().get(3) == Some(&b'-') {
            line = talk(r, "");
        }
        line
    }

    fn connect(port: u16) -> BufReader<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        BufReader::new(s)
    }

    #[test]
    fn dovecot_serves_imap_pop3_lmtp_and_tls() {
        if skip_unless(is_root(), "Dovecot needs root") {
            return;
        }
        let t = TempDir::new();
        let md = t.join("mail/alice");
        let mut dc = Dovecot::start(&t.join("dovecot"));
        // A user added while Dovecot runs, whose Maildir does not exist yet.
        dc.add_user("alice", &md);

        // LMTP delivery into the user's Maildir.
        let mut l = connect(dc.lmtp_port);
        assert!(smtp_reply(&mut l, "").starts_with("220 "));
        assert!(smtp_reply(&mut l, "LHLO test.example\r\n").starts_with("250 "));
        assert!(smtp_reply(&mut l, "MAIL FROM:<s@example.test>\r\n").starts_with("250 "));
        let r = smtp_reply(&mut l, "RCPT TO:<alice@example.test>\r\n");
        assert!(r.starts_with("250 "), "RCPT: {r}\n{}", dc.logs());
        assert!(smtp_reply(&mut l, "DATA\r\n").starts_with("354 "));
        let r = smtp_reply(&mut l, "Subject: over lmtp\r\n\r\nhello\r\n.\r\n");
        assert!(r.starts_with("250 "), "DATA: {r}\n{}", dc.logs());
        let _ = smtp_reply(&mut l, "QUIT\r\n");

        // Read back over IMAP (the helper) and POP3 (by hand).
        let msgs = dc.imap_fetch_all("alice");
        assert_eq!(msgs.len(), 1, "{}", dc.logs());
        assert!(
            msgs[0].ends_with(b"Subject: over lmtp\n\nhello\n"),
            "{:?}",
            String::from_utf8_lossy(&msgs[0])
        );
        let mut p = connect(dc.pop3_port);
        assert!(talk(&mut p, "").starts_with("+OK"));
        assert!(talk(&mut p, "USER alice\r\n").starts_with("+OK"));
        assert!(talk(&mut p, &format!("PASS {}\r\n", Dovecot::PASSWORD)).starts_with("+OK"));
        assert!(talk(&mut p, "STAT\r\n").starts_with("+OK 1 "));
        let _ = talk(&mut p, "QUIT\r\n");
        // A wrong password is refused.
        let mut p = connect(dc.pop3_port);
        let _ = talk(&mut p, "");
        let _ = talk(&mut p, "USER alice\r\n");
        assert!(talk(&mut p, "PASS wrong\r\n").starts_with("-ERR"));

        // Implicit TLS verifies against the harness certificate, by name and IP.
        for port in [dc.imaps_port, dc.pop3s_port] {
            let out = Command::new("openssl")
                .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
                .arg("-CAfile")
                .arg(&dc.cert)
                .args([
                    "-verify_return_error",
                    "-verify_hostname",
                    "localhost",
                    "-verify_ip",
                    "127.0.0.1",
                ])
                .stdin(Stdio::null())
                .output()
                .expect("openssl s_client");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("Verify return code: 0 (ok)"),
                "port {port}: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(dc.log_errors(), Vec::<String>::new());
        drop(dc);
    }
}
