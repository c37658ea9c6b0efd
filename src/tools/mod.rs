//! The tools: one module per binary with its clap `command()` and `run()`,
//! and the one shared [`main`] that turns results into output and exit codes.
//!
//! This is the only part of the crate that writes to stdout/stderr. Its
//! promises: usage errors exit 64 (not clap's 2) with a one-line message;
//! every diagnostic is one line, `tool: context: cause`, with control
//! characters escaped ([`crate::proto::transcript::printable`]: a peer's reply
//! quoted in an error can neither break the line nor drive the terminal);
//! a closed stdout (`| head`) ends output quietly and never changes what
//! was stored.

pub mod conn;
pub mod deliver;
pub mod fetch;
pub mod queue;
pub mod recv;
pub mod send;
pub mod trace;

use std::ffi::OsString;
use std::io::{self, Write};

use clap::{ArgMatches, Command};

use crate::exit::{self, Error, Kind};
use crate::proto::transcript::printable;

/// A tool's binary name and the function building its clap command.
pub type ToolEntry = (&'static str, fn() -> Command);

/// Every tool: its binary name and its clap command (for man-page and
/// completion checks).
pub fn all() -> Vec<ToolEntry> {
    vec![
        ("mail-deliver", deliver::command),
        ("mail-trace", trace::command),
        ("mail-send", send::command),
        ("mail-queue", queue::command),
        ("mail-fetch", fetch::command),
        ("mail-recv", recv::command),
    ]
}

/// Output and diagnostics for a running tool.
pub struct Ctx {
    name: &'static str,
    out: io::BufWriter<io::Stdout>,
    out_closed: bool,
    worst: Option<Kind>,
    check_failed: bool,
    exit_code: Option<i32>,
}

impl Ctx {
    fn new(name: &'static str) -> Ctx {
        Ctx {
            name,
            out: io::BufWriter::with_capacity(1 << 16, io::stdout()),
            out_closed: false,
            worst: None,
            check_failed: false,
            exit_code: None,
        }
    }

    /// Print one line on stdout. Returns false once stdout is closed (the
    /// reader went away); the caller may stop producing output then.
    pub fn line(&mut self, s: &str) -> bool {
        if self.out_closed {
            return false;
        }
        if writeln!(self.out, "{s}").is_err() {
            self.out_closed = true;
        }
        !self.out_closed
    }

    /// [`Ctx::line`] for bytes (UTF-8 the caller made): one write into
    /// the buffer, no formatting.
    pub fn line_bytes(&mut self, s: &[u8]) -> bool {
        if self.out_closed {
            return false;
        }
        if self
            .out
            .write_all(s)
            .and_then(|()| self.out.write_all(b"\n"))
            .is_err()
        {
            self.out_closed = true;
        }
        !self.out_closed
    }

    /// Whole lines (each ending in a newline) the caller made, as one
    /// write into the buffer. Returns false once stdout is closed.
    pub fn lines_bytes(&mut self, s: &[u8]) -> bool {
        if self.out_closed {
            return false;
        }
        if self.out.write_all(s).is_err() {
            self.out_closed = true;
        }
        !self.out_closed
    }

    /// Flush stdout now (so paths reach a pipeline as they are stored).
    pub fn flush(&mut self) {
        if !self.out_closed && self.out.flush().is_err() {
            self.out_closed = true;
        }
    }

    /// Report an error that does not stop the run; the exit code will be the
    /// worst reported.
    pub fn report(&mut self, err: &Error) {
        self.note(err.kind());
        let text = err.to_string();
        let text = printable(&text);
        if err.kind() == Kind::Usage {
            let _ = writeln!(
                io::stderr(),
                "{}: {text} (see {} --help)",
                self.name,
                self.name
            );
        } else {
            let _ = writeln!(io::stderr(), "{}: {text}", self.name);
        }
    }

    /// Count an outcome toward the exit code without printing.
    pub fn note(&mut self, kind: Kind) {
        self.worst = exit::worst([self.worst, Some(kind)].iter().flatten());
    }

    /// Record that a check the user asked for failed: exit
    /// [`exit::CHECK_FAILED`] unless an error gives a worse code.
    pub fn check_failed(&mut self) {
        self.check_failed = true;
    }

    /// Is stdout a terminal?
    pub fn stdout_is_tty(&self) -> bool {
        use std::io::IsTerminal;
        io::stdout().is_terminal()
    }

    /// Exit with `code`, whatever was reported (for tools with their own
    /// codes, like mail-fetch's fetchmail-compatible ones).
    pub fn set_exit_code(&mut self, code: i32) {
        self.exit_code = Some(code);
    }

    /// A warning line on stderr that does not change the exit code.
    pub fn warn(&mut self, msg: &str) {
        let _ = writeln!(io::stderr(), "{}: {}", self.name, printable(msg));
    }
}

/// The body of every `src/bin/*.rs`: parse, run, map the result to an exit
/// code.
pub fn main(
    name: &'static str,
    command: fn() -> Command,
    run: fn(&ArgMatches, &mut Ctx) -> Result<(), Error>,
) -> std::process::ExitCode {
    ignore_file_size_signal();
    let args: Vec<OsString> = std::env::args_os().collect();
    let code = main_with(name, command(), run, args);
    std::process::ExitCode::from(code as u8)
}

/// [`main`] for a binary built without Rust's runtime set-up
/// (`#![no_main]`, a C `main` that returns this code): mail-deliver, run
/// once per message by an MTA, where the set-up (reading
/// `/proc/self/maps` for the main thread's stack guard, an alternate
/// signal stack) is a measurable part of the process's life. What that
/// set-up did and a tool needs is done here: SIGPIPE ignored (a closed
/// output is an EPIPE error, as in every other tool) and standard output
/// flushed before the process exits.
pub fn main_bare(
    name: &'static str,
    command: fn() -> Command,
    run: fn(&ArgMatches, &mut Ctx) -> Result<(), Error>,
) -> i32 {
    ignore_broken_pipe_signal();
    ignore_file_size_signal();
    let args: Vec<OsString> = std::env::args_os().collect();
    let code = main_with(name, command(), run, args);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    i32::from(code as u8)
}

/// SIGPIPE ignored, as Rust's runtime does before `main`.
#[allow(unsafe_code)]
fn ignore_broken_pipe_signal() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: as in `ignore_file_size_signal`: SIG_IGN, before any thread.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}

/// Turn "file too large" from a signal into an error.
///
/// Postfix's local(8) and many shells run an MDA under a file-size limit
/// (RLIMIT_FSIZE). Exceeding it raises SIGXFSZ, whose default action kills
/// the process mid-write: a half-appended mbox and a bounce-free exit by
/// signal. Ignored, the write fails with EFBIG instead, which the storage
/// code handles like a full disk (cut back, exit 75).
#[allow(unsafe_code)]
fn ignore_file_size_signal() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN installs no handler code, so none of the
    // async-signal-safety hazards that make `signal` unsafe apply; it runs
    // first thing in main, before any other thread exists.
    let _ = unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) };
}

/// clap value parser for `--tls`, shared by every tool with that flag: a
/// bad mode is a usage error (64) naming the flag, like any bad value.
pub fn tls_mode_value(s: &str) -> Result<String, String> {
    crate::proto::tls::TlsMode::parse(s)
        .map(|_| s.to_string())
        .map_err(|_| "expected starttls, implicit or none".to_string())
}

/// clap value parser for `--tls-fingerprint` (see [`tls_mode_value`]).
pub fn fingerprint_value(s: &str) -> Result<String, String> {
    crate::proto::tls::parse_fingerprint(s)
        .map(|_| s.to_string())
        .map_err(|_| "expected a SHA-256 fingerprint: 64 hex digits, colons allowed".to_string())
}

/// clap value parser for a SASL `--auth` mechanism (see [`tls_mode_value`]).
pub fn mechanism_value(s: &str) -> Result<String, String> {
    crate::proto::sasl::Mechanism::parse(s)
        .map(|_| s.to_string())
        .map_err(|_| "expected plain, login or xoauth2".to_string())
}

/// One line from a clap error: its first line, and when that ends in `:`
/// ("the following required arguments were not provided:") the items of
/// the indented list after it, so the line names what is wrong.
pub fn clap_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("bad usage");
    let mut out = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if out.ends_with(':') {
        let items: Vec<&str> = lines
            .take_while(|l| l.starts_with(' ') || l.starts_with('\t'))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if !items.is_empty() {
            out.push(' ');
            out.push_str(&items.join(", "));
        }
    }
    out
}

fn main_with(
    name: &'static str,
    cmd: Command,
    run: fn(&ArgMatches, &mut Ctx) -> Result<(), Error>,
    args: Vec<OsString>,
) -> i32 {
    let matches = match cmd.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind as E;
            return match e.kind() {
                E::DisplayHelp | E::DisplayVersion => {
                    let _ = e.print();
                    exit::OK
                }
                _ => {
                    let first = clap_error_line(&e);
                    let _ = writeln!(io::stderr(), "{name}: {first} (see {name} --help)");
                    exit::USAGE
                }
            };
        }
    };
    let mut ctx = Ctx::new(name);
    let res = run(&matches, &mut ctx);
    ctx.flush();
    if let Err(e) = res {
        ctx.report(&e);
    }
    if let Some(code) = ctx.exit_code {
        return code;
    }
    let fallback = if ctx.check_failed {
        exit::CHECK_FAILED
    } else {
        exit::OK
    };
    ctx.worst.map_or(fallback, Kind::code)
}
