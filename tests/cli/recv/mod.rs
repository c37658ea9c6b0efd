//! mail-recv end to end, through the command line only: sessions on
//! stdin/stdout (the inetd/UCSPI mode, also driven by `swaks --pipe`) and on
//! mail-recv's own listener, with real peers (swaks, Postfix, OpenSSL, a
//! checkpassword program) on loopback, and what was stored read back by an
//! independent reader (Python's `mailbox`) or by mail-trace.
//!
//! The client here speaks raw bytes (so the smuggling shapes, pipelined
//! STARTTLS and BDAT chunks are exactly what is on the wire) and waits for
//! each reply, so nothing is pipelined unless a test means it to be.
//!
//! The clock is pinned (`POSTLINE_NOW`), so the Received date is known.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{TempDir, Tool, bin, free_ports, retry_port_race};

mod command;
mod listener;
mod peers;
mod relay;
mod smuggling;
mod usage;

/// The domain every test's mail-recv serves.
pub const DOMAIN: &str = "example.org";
/// The `--hostname` every test's mail-recv gets (the Received `by`).
pub const HOST: &str = "mx.example.org";
/// The pinned clock: Sun, 06 Dec 2026 12:00:00 +0000.
pub const NOW: u64 = 1_796_558_400;
/// [`NOW`] as mail-trace prints a date.
pub const NOW_ISO: &str = "2026-12-06T12:00:00Z";
/// The longest a session or a run may take: a hang guard, not a timing.
pub const GUARD: Duration = Duration::from_secs(60);

/// mail-recv with the hermetic environment, the pinned clock, our host name
/// and `--domain example.org`.
pub fn recv(home: &Path) -> Tool {
    recv_as(home, HOST)
}

/// [`recv`] with another `--hostname`.
pub fn recv_as(home: &Path, hostname: &str) -> Tool {
    Tool::new("mail-recv", home)
        .env("POSTLINE_NOW", NOW.to_string())
        .args(["--hostname", hostname, "--domain", DOMAIN])
}

/// Mailboxes for local parts under one root, and the `--deliver` template
/// (`ROOT/{local}/`, a Maildir per recipient) that reaches them.
pub struct Boxes {
    pub root: PathBuf,
}

impl Boxes {
    /// `t/mail`, with a Maildir for each of `users`.
    pub fn new(t: &TempDir, users: &[&str]) -> Boxes {
        let b = Boxes {
            root: t.join("mail"),
        };
        for u in users {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(b.root.join(u).join(sub)).expect("create Maildir");
            }
        }
        b
    }
    /// The `--deliver` argument.
    pub fn template(&self) -> String {
        format!("{}/{{local}}/", self.root.display())
    }
    /// `user`'s Maildir.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.root.join(user)
    }
    /// Every message `user` holds, read by Python's `mailbox`.
    pub fn read(&self, user: &str) -> Vec<Vec<u8>> {
        crate::harness::python_read_mailbox(&self.maildir(user))
    }
    /// How many files are in `user`'s new/ and cur/ (what a reader would
    /// see, without parsing anything).
    pub fn count(&self, user: &str) -> usize {
        let md = self.maildir(user);
        crate::harness::dir_names(&md.join("new")).len()
            + crate::harness::dir_names(&md.join("cur")).len()
    }
}

/// A small message with `tag` in its Subject and body (LF line ends: the
/// client turns them into CRLF).
pub fn message(tag: &str) -> String {
    format!(
        "From: Alice <alice@remote.test>\nTo: bob@{DOMAIN}\nSubject: {tag}\nMessage-ID: <{tag}@remote.test>\n\nbody of {tag}\n.leading dot\n"
    )
}

/// `s` with CRLF line ends and dot-stuffed, followed by the final `.` line.
pub fn data_block(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in s.lines() {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Does `hay` contain `needle`?
pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The header block of a message (up to the first empty line), as text.
pub fn header_block(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    let end = text
        .find("\n\n")
        .or_else(|| text.find("\r\n\r\n"))
        .unwrap_or(text.len());
    text[..end].to_string()
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/// One SMTP/LMTP reply: its code (0 when the server closed or timed out
/// instead of answering) and its lines.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx?
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// Does any line carry `s` (an enhanced status code, a keyword)?
    pub fn has(&self, s: &str) -> bool {
        self.lines.iter().any(|l| l.contains(s))
    }
}

/// A raw SMTP client over any byte stream, with its own read buffer (so the
/// bytes after a reply stay visible, e.g. a plain-text reply to an injected
/// command behind STARTTLS).
pub struct Client<S: Read + Write> {
    pub s: S,
    buf: Vec<u8>,
    eof: bool,
}

impl<S: Read + Write> Client<S> {
    pub fn new(s: S) -> Client<S> {
        Client {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Send raw bytes; a server that went away is not an error here (what
    /// it answered, or did not, is what the tests check).
    pub fn send(&mut self, b: impl AsRef<[u8]>) {
        let _ = self.s.write_all(b.as_ref());
        let _ = self.s.flush();
    }

    /// One line without its CRLF; `None` at end of stream, error or timeout.
    pub fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                let l = String::from_utf8_lossy(&l);
                return Some(l.trim_end_matches(['\r', '\n']).to_string());
            }
            if self.eof {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(n) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                // A read timeout (the hang guard) ends this read, not the stream.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                _ => self.eof = true,
            }
        }
    }

    /// The next reply (every line up to `NNN `); code 0 when the stream
    /// ended first.
    pub fn reply(&mut self) -> Reply {
        let mut lines = Vec::new();
        while let Some(l) = self.line() {
            let code = l.get(..3).and_then(|c| c.parse::<u16>().ok());
            let last = l.as_bytes().get(3) != Some(&b'-');
            lines.push(l);
            if let (Some(code), true) = (code, last) {
                return Reply { code, lines };
            }
        }
        Reply { code: 0, lines }
    }

    /// Send `line` + CRLF and read the reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n"));
        self.reply()
    }

    /// Send `line` + CRLF, read the reply and insist on `code`.
    #[track_caller]
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line:?} got {:?}", r.lines);
        r
    }

    /// Every reply until the stream ends.
    pub fn rest(&mut self) -> Vec<Reply> {
        let mut v = Vec::new();
        loop {
            let r = self.reply();
            if r.code == 0 {
                if !r.lines.is_empty() {
                    v.push(r);
                }
                return v;
            }
            v.push(r);
        }
    }

    /// The stream back, with what was read from it but not consumed.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.s, self.buf)
    }

    /// Greeting, `EHLO client.test` (LHLO with `lmtp`); returns the EHLO reply.
    #[track_caller]
    pub fn hello(&mut self, lmtp: bool) -> Reply {
        let g = self.reply();
        assert_eq!(g.code, 220, "greeting: {:?}", g.lines);
        let verb = if lmtp { "LHLO" } else { "EHLO" };
        self.expect(&format!("{verb} client.test"), 250)
    }

    /// MAIL, RCPT (each must get 250), DATA (354), the message; returns the
    /// reply after the final dot.
    #[track_caller]
    pub fn mail(&mut self, from: &str, rcpts: &[&str], msg: &str) -> Reply {
        self.expect(&format!("MAIL FROM:<{from}>"), 250);
        for r in rcpts {
            self.expect(&format!("RCPT TO:<{r}>"), 250);
        }
        self.expect("DATA", 354);
        self.send(data_block(msg));
        self.reply()
    }

    /// QUIT, expecting 221.
    #[track_caller]
    pub fn quit(&mut self) {
        self.expect("QUIT", 221);
    }
}

/// A child's stdout and stdin as one stream (the stdin/stdout mode).
pub struct Pipes {
    pub out: ChildStdout,
    pub inp: Option<ChildStdin>,
}

impl Read for Pipes {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.out.read(b)
    }
}

impl Write for Pipes {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match &mut self.inp {
            Some(i) => i.write(b),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inp {
            Some(i) => i.flush(),
            None => Ok(()),
        }
    }
}

/// A TCP client to 127.0.0.1:`port` with a hang guard on reads.
pub fn tcp(port: u16) -> Client<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to mail-recv");
    s.set_read_timeout(Some(GUARD)).expect("read timeout");
    Client::new(s)
}

// ---------------------------------------------------------------------------
// mail-recv on stdin/stdout
// ---------------------------------------------------------------------------

/// A mail-recv session on stdin/stdout (as inetd or tcpserver runs it),
/// killed by a watchdog if it outlives [`GUARD`].
pub struct Piped {
    pub c: Client<Pipes>,
    child: Child,
    stderr: PathBuf,
    done: Option<mpsc::Sender<()>>,
}

impl Piped {
    /// Start `tool` with piped stdin/stdout, stderr to `DIR/stderr-N`.
    pub fn start(tool: Tool, dir: &Path) -> Piped {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stderr = dir.join(format!("stderr-{n}"));
        let (mut cmd, _) = tool.command();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin("mail-recv").display()));
        let pipes = Pipes {
            out: child.stdout.take().unwrap(),
            inp: child.stdin.take(),
        };
        let (tx, rx) = mpsc::channel::<()>();
        let pid = child.id() as i32;
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(GUARD) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        });
        Piped {
            c: Client::new(pipes),
            child,
            stderr,
            done: Some(tx),
        }
    }

    /// Close stdin, read what is left, wait for the exit; returns the exit
    /// status and the replies that were still to come.
    pub fn finish(&mut self) -> (ExitStatus, Vec<Reply>) {
        self.c.s.inp = None;
        let rest = self.c.rest();
        let st = self.child.wait().expect("wait for mail-recv");
        self.done.take();
        (st, rest)
    }

    /// QUIT, then [`Piped::finish`]; the exit status must be 0.
    #[track_caller]
    pub fn quit(&mut self) {
        self.c.quit();
        let (st, _) = self.finish();
        assert!(st.success(), "mail-recv exit: {st}; {}", self.stderr());
    }

    /// Everything mail-recv wrote on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// mail-recv's own listener
// ---------------------------------------------------------------------------

/// mail-recv with `--listen 127.0.0.1:PORT` (a free port), running until
/// dropped (SIGKILL) or stopped with [`Listener::term`].
pub struct Listener {
    pub port: u16,
    child: Child,
    stderr: PathBuf,
}

impl Listener {
    /// Start `make()` (a fresh Tool each try: a port taken in between is
    /// retried) with `--listen 127.0.0.1:PORT` added, and wait until it
    /// accepts connections.
    pub fn start(dir: &Path, make: impl Fn() -> Tool) -> Listener {
        Listener::start_with(dir, "--listen", make)
    }

    /// [`Listener::start`] with another listen flag (`--listen-tls`).
    pub fn start_with(dir: &Path, flag: &str, make: impl Fn() -> Tool) -> Listener {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        retry_port_race(|| {
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let stderr = dir.join(format!("listener-{n}.err"));
            let port = free_ports(1)[0];
            let (mut cmd, _) = make().arg(flag).arg(format!("127.0.0.1:{port}")).command();
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).expect("stderr file"))
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin("mail-recv").display()));
            let mut l = Listener {
                port,
                child,
                stderr,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                // A bare connect, closed at once: a session that ends at EOF.
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(l);
                }
                if let Ok(Some(st)) = l.child.try_wait() {
                    return Err(format!("mail-recv exited ({st}): {}", l.stderr()));
                }
                if Instant::now() > deadline {
                    return Err(format!("mail-recv did not listen: {}", l.stderr()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    }

    pub fn connect(&self) -> Client<TcpStream> {
        tcp(self.port)
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Send `sig` to mail-recv.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("signal mail-recv");
    }

    /// Wait for mail-recv to exit (SIGKILL after [`GUARD`]: the test fails).
    #[track_caller]
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + GUARD;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("mail-recv did not exit: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything mail-recv wrote on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// TLS and AUTH
// ---------------------------------------------------------------------------

/// The client side of a TLS handshake on `s`, trusting only `cert` (the
/// harness's self-signed certificate for localhost / 127.0.0.1).
pub fn tls_connect<S: Read + Write + std::fmt::Debug>(
    s: S,
    cert: &Path,
) -> openssl::ssl::SslStream<S> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let mut b = SslConnector::builder(SslMethod::tls_client()).expect("ssl builder");
    b.set_ca_file(cert).expect("trust the test certificate");
    b.set_verify(SslVerifyMode::PEER);
    b.build()
        .connect("localhost", s)
        .unwrap_or_else(|e| panic!("TLS handshake with mail-recv: {e}"))
}

/// `AUTH PLAIN` argument for `user` / `password`.
pub fn plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// The user and password the checkpassword fixture accepts.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland";

/// The checkpassword program (tests/fixtures/mail-recv/checkpassword)
/// copied into `dir`, executable; it accepts only [`USER`]/[`PASSWORD`].
pub fn checkpassword(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("checkpassword");
    std::fs::write(&p, crate::harness::fixture("mail-recv", "checkpassword")).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}
