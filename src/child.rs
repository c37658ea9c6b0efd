//! The commands postline runs for the user: `password_command` (mail-send,
//! mail-queue, mail-fetch) and mail-fetch's MDA, both through `/bin/sh -c`.
//!
//! Owns how such a child is started, bounded and ended, and what it sees.
//!
//! Guarantees:
//!
//! - **No child outlives its deadline.** Each runs in a process group of
//!   its own; when the deadline passes the whole group is killed (SIGKILL),
//!   so a shell's background children (`cmd &`, pipelines) go with it, and
//!   the run reports [`Ended::TimedOut`]. A child that stops reading its
//!   input cannot block us either: the input is written from a thread of
//!   its own.
//! - **No child's output is held without bound.** At most `cap` bytes of
//!   its stdout are kept; a child that prints more is killed and reported
//!   as [`Ended::TooMuch`].
//! - **No child sees a secret it was not given.** Every environment
//!   variable named as a password source (`password_env` of any account in
//!   the config, `--password-env`) is registered with [`hide_env`] and
//!   removed from the environment of every child started here.
//!
//! A child in its own process group is not in the terminal's foreground
//! group: a password command that prompts on the terminal itself is
//! stopped (and then killed at the deadline); prompting belongs to an
//! agent (gpg-agent's pinentry, `pass`).

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// Names of environment variables that hold secrets.
static HIDDEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Never pass the variable `name` to a child (it holds a password).
pub fn hide_env(name: &str) {
    if let Ok(mut h) = HIDDEN.lock() {
        h.insert(name.to_string());
    }
}

/// How a child ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited (or was killed by a signal it did not get from us).
    Exited(ExitStatus),
    /// The deadline passed: its process group was killed.
    TimedOut,
    /// It printed more than the cap: its process group was killed.
    TooMuch,
}

/// `/bin/sh -c line` in a process group of its own, without the hidden
/// variables.
fn shell(line: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(line).process_group(0);
    if let Ok(h) = HIDDEN.lock() {
        for name in h.iter() {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Kill the child's whole process group (its pid is the group id).
fn kill_group(pid: u32) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Ok(p) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
    }
}

/// Wait for `child` until `deadline`; past it, kill its group and reap it.
fn wait_until(child: Child, deadline: Instant) -> io::Result<Ended> {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let mut child = child;
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(status) => status.map(Ended::Exited),
        Err(_) => {
            kill_group(pid);
            // SIGKILL cannot be ignored: the wait returns now.
            let _ = rx.recv();
            Ok(Ended::TimedOut)
        }
    }
}

/// Run `line` with no input and stderr inherited; keep at most `cap` bytes
/// of its stdout. Ends within `limit` (then [`Ended::TimedOut`]).
pub fn capture(line: &str, limit: Duration, cap: usize) -> io::Result<(Ended, Vec<u8>)> {
    let deadline = Instant::now() + limit;
    let mut child = shell(line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let Some(out) = child.stdout.take() else {
        kill_group(pid);
        let _ = child.wait();
        return Err(io::Error::other("no pipe to the child"));
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // One byte over the cap tells "too much" from "exactly the cap".
        let mut buf = Vec::new();
        let res = out.take(cap as u64 + 1).read_to_end(&mut buf);
        let _ = tx.send(res.map(|_| buf));
    });
    let left = deadline.saturating_duration_since(Instant::now());
    let output = match rx.recv_timeout(left) {
        Ok(r) => r,
        Err(_) => {
            // The reader may stay blocked on a pipe some escaped grandchild
            // holds; it ends with that pipe, and nothing waits for it.
            kill_group(pid);
            let _ = wait_until(child, Instant::now());
            return Ok((Ended::TimedOut, Vec::new()));
        }
    };
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            kill_group(pid);
            let _ = wait_until(child, Instant::now());
            return Err(e);
        }
    };
    if output.len() > cap {
        kill_group(pid);
        let _ = wait_until(child, Instant::now());
        return Ok((Ended::TooMuch, Vec::new()));
    }
    Ok((wait_until(child, deadline)?, output))
}

/// Run `line` with `input` on its stdin, stdout discarded and stderr
/// inherited. Ends within `limit` (then [`Ended::TimedOut`]), whether or
/// not the child reads its input.
pub fn feed(line: &str, input: &[u8], limit: Duration) -> io::Result<Ended> {
    let deadline = Instant::now() + limit;
    let mut child = shell(line)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    if let Some(mut si) = child.stdin.take() {
        let data = input.to_vec();
        // A child that exits (or stops reading) early breaks the pipe: its
        // exit status says what happened, not the write.
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    wait_until(child, deadline)
}

/// Run `argv` directly (no shell: nothing in it is interpreted) in a
/// process group of its own, with `env` added to our environment (minus
/// the hidden variables) and `input` on its stdin; stdout is discarded and
/// at most `err_cap` bytes of its stderr are kept (the rest is read and
/// dropped, so a chatty child never blocks). Ends within `limit` (then
/// [`Ended::TimedOut`]), whether or not the child reads its input.
pub fn run_argv(
    argv: &[std::ffi::OsString],
    env: &[(String, std::ffi::OsString)],
    input: &[u8],
    limit: Duration,
    err_cap: usize,
) -> io::Result<(Ended, Vec<u8>)> {
    let deadline = Instant::now() + limit;
    let Some((prog, args)) = argv.split_first() else {
        return Err(io::Error::other("empty command"));
    };
    let mut cmd = Command::new(prog);
    cmd.args(args).process_group(0);
    if let Ok(h) = HIDDEN.lock() {
        for name in h.iter() {
            cmd.env_remove(name);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut si) = child.stdin.take() {
        let data = input.to_vec();
        // A child that exits early breaks the pipe: its exit status says
        // what happened, not the write.
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    let (tx, rx) = mpsc::channel();
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut err = err;
            let _ = (&mut err).take(err_cap as u64).read_to_end(&mut kept);
            let _ = io::copy(&mut err, &mut io::sink());
            let _ = tx.send(kept);
        });
    }
    let ended = wait_until(child, deadline)?;
    // The stderr reader ends with the pipe; a grandchild that escaped the
    // group kill may hold it, so wait only briefly for what it kept.
    let kept = rx
        .recv_timeout(Duration::from_millis(200))
        .unwrap_or_default();
    Ok((ended, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_captured_and_capped() {
        let (e, out) = capture("echo hello", Duration::from_secs(10), 100).unwrap();
        assert!(matches!(e, Ended::Exited(s) if s.success()), "{e:?}");
        assert_eq!(out, b"hello\n");
        let (e, out) = capture("yes", Duration::from_secs(10), 1000).unwrap();
        assert!(matches!(e, Ended::TooMuch), "{e:?}");
        assert!(out.is_empty());
        let (e, _) = capture("exit 3", Duration::from_secs(10), 10).unwrap();
        assert!(
            matches!(e, Ended::Exited(s) if s.code() == Some(3)),
            "{e:?}"
        );
    }

    #[test]
    fn a_child_past_its_deadline_is_killed_with_its_group() {
        let (e, _) = capture("sleep 1000 & wait", Duration::from_millis(300), 10).unwrap();
        assert!(matches!(e, Ended::TimedOut), "{e:?}");
        // A child that never reads a large input cannot block the writer.
        let big = vec![b'x'; 4 << 20];
        let e = feed("sleep 1000", &big, Duration::from_millis(300)).unwrap();
        assert!(matches!(e, Ended::TimedOut), "{e:?}");
        let e = feed("cat > /dev/null; exit 75", &big, Duration::from_secs(10)).unwrap();
        assert!(
            matches!(e, Ended::Exited(s) if s.code() == Some(75)),
            "{e:?}"
        );
    }

    #[test]
    fn argv_children_get_no_shell_and_their_stderr_is_capped() {
        let argv: Vec<std::ffi::OsString> = [
            "/bin/sh",
            "-c",
            "printf '%s' \"$1$X\" >&2; head -c 100000 /dev/zero >&2; exit 3",
            "sh",
            "$(id)",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let env = [("X".to_string(), std::ffi::OsString::from("+x"))];
        let (e, err) = run_argv(&argv, &env, b"", Duration::from_secs(10), 10).unwrap();
        assert!(
            matches!(e, Ended::Exited(s) if s.code() == Some(3)),
            "{e:?}"
        );
        assert_eq!(err, b"$(id)+x\0\0\0");
        let (e, _) = run_argv(
            &["/bin/sleep".into(), "1000".into()],
            &[],
            b"",
            Duration::from_millis(200),
            10,
        )
        .unwrap();
        assert!(matches!(e, Ended::TimedOut), "{e:?}");
        assert!(run_argv(&[], &[], b"", Duration::from_secs(1), 10).is_err());
    }

    #[test]
    fn hidden_variables_are_not_passed_on() {
        // A variable cargo sets in the test's own environment (setting one
        // here would need `unsafe`).
        let name = "CARGO_PKG_NAME";
        if std::env::var_os(name).is_none() {
            return;
        }
        let show = format!("printf %s \"${{{name}-unset}}\"");
        let (_, before) = capture(&show, Duration::from_secs(10), 100).unwrap();
        assert_eq!(before, b"postline");
        hide_env(name);
        let (_, after) = capture(&show, Duration::from_secs(10), 100).unwrap();
        assert_eq!(after, b"unset");
    }
}
