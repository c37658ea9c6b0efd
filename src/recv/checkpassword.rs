//! AUTH through the checkpassword interface (qmail's, spoken by vpopmail,
//! Dovecot's `checkpassword` helpers and many small programs): the
//! program reads `user\0password\0timestamp\0` from file descriptor 3 and
//! exits 0 (good; it then runs the rest of its argv, here `true`), 1 (bad)
//! or 111 (cannot check now).
//!
//! Guarantees: the password travels only through a pipe on fd 3, never in
//! argv, the environment or a log line; the program runs through
//! [`crate::child`] (argv, its own process group, killed at the deadline,
//! its stderr capped and dropped); anything but a clean exit 0 or 1 (a
//! signal, a timeout, an unknown code, a program that cannot start) is
//! [`AuthVerdict::Temporary`], so a broken checker never lets anyone in
//! and never locks a user out for good.

use std::ffi::OsString;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::child::{self, Ended};
use crate::proto::smtp::server::AuthVerdict;

/// Moves the input (stdin, a pipe) to fd 3 and runs the program: a fixed
/// script, every user value passed as a positional argument, never parsed.
const FD3: &str = "exec 3<&0 </dev/null; exec \"$@\"";

/// A checkpassword program and its deadline.
#[derive(Debug, Clone)]
pub struct Checkpassword {
    argv: Vec<OsString>,
    limit: Duration,
}

impl Checkpassword {
    /// `prog` (a path, run as `PROG true`) with `limit` to answer.
    pub fn new(prog: impl Into<OsString>, limit: Duration) -> Checkpassword {
        Checkpassword {
            argv: vec![prog.into(), "true".into()],
            limit,
        }
    }

    /// Check `user` and `password`.
    pub fn check(&self, user: &str, password: &[u8]) -> AuthVerdict {
        if user.is_empty() || user.contains('\0') || password.contains(&0) {
            return AuthVerdict::Bad;
        }
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut input = Vec::with_capacity(user.len() + password.len() + 24);
        input.extend_from_slice(user.as_bytes());
        input.push(0);
        input.extend_from_slice(password);
        input.push(0);
        input.extend_from_slice(format!("<{stamp}@mail-recv>").as_bytes());
        input.push(0);
        let mut argv: Vec<OsString> = vec![
            "/bin/sh".into(),
            "-c".into(),
            FD3.into(),
            "checkpassword".into(),
        ];
        argv.extend(self.argv.iter().cloned());
        let res = child::run_argv(&argv, &[], &input, self.limit, 1024);
        // The buffer held the password: clear it before it is freed.
        input.iter_mut().for_each(|b| *b = 0);
        match res {
            Ok((Ended::Exited(s), _)) => match s.code() {
                Some(0) => AuthVerdict::Ok,
                Some(1) => AuthVerdict::Bad,
                _ => AuthVerdict::Temporary,
            },
            _ => AuthVerdict::Temporary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A checkpassword in sh: good for `bob` / `s3cret`; writes what it saw
    /// on its argv and environment for the test to inspect.
    fn script(dir: &std::path::Path, body: &str) -> OsString {
        let p = dir.join("checkpw");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.into_os_string()
    }

    #[test]
    fn the_program_reads_fd_3_and_its_exit_decides() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let prog = script(
            dir.path(),
            &format!(
                "user=$(tr '\\0' '\\n' <&3 | head -n 1)\n\
                 echo \"argv: $*\" > '{0}'; env >> '{0}'\n\
                 case \"$user\" in bob) exec \"$@\";; tmp) exit 111;; *) exit 1;; esac",
                seen.display()
            ),
        );
        let c = Checkpassword::new(prog.clone(), Duration::from_secs(30));
        assert_eq!(c.check("bob", b"s3cret"), AuthVerdict::Ok);
        let seen_text = std::fs::read_to_string(&seen).unwrap();
        assert!(seen_text.starts_with("argv: true\n"), "{seen_text}");
        assert!(
            !seen_text.contains("s3cret"),
            "password leaked: {seen_text}"
        );
        assert_eq!(c.check("alice", b"s3cret"), AuthVerdict::Bad);
        assert_eq!(c.check("tmp", b"x"), AuthVerdict::Temporary);
        assert_eq!(c.check("", b"x"), AuthVerdict::Bad);
        assert_eq!(c.check("bob", b"a\0b"), AuthVerdict::Bad);
    }

    #[test]
    fn the_whole_input_is_user_password_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("dump");
        let prog = script(
            dir.path(),
            &format!("cat <&3 > '{}'; exit 1", dump.display()),
        );
        let c = Checkpassword::new(prog, Duration::from_secs(30));
        assert_eq!(c.check("bob", b"pw"), AuthVerdict::Bad);
        let got = std::fs::read(&dump).unwrap();
        let parts: Vec<&[u8]> = got.split(|&b| b == 0).collect();
        assert_eq!(parts.len(), 4, "{got:?}");
        assert_eq!((parts[0], parts[1]), (&b"bob"[..], &b"pw"[..]));
        assert!(parts[2].starts_with(b"<") && parts[2].ends_with(b"@mail-recv>"));
        assert!(parts[3].is_empty());
    }

    #[test]
    fn a_broken_or_slow_checker_is_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let slow = script(dir.path(), "sleep 1000");
        let c = Checkpassword::new(slow, Duration::from_millis(200));
        assert_eq!(c.check("bob", b"pw"), AuthVerdict::Temporary);
        let c = Checkpassword::new("/nonexistent/checkpw", Duration::from_secs(30));
        assert_eq!(c.check("bob", b"pw"), AuthVerdict::Temporary);
        let dir2 = tempfile::tempdir().unwrap();
        let odd = script(dir2.path(), "exit 2");
        assert_eq!(
            Checkpassword::new(odd, Duration::from_secs(30)).check("bob", b"pw"),
            AuthVerdict::Temporary
        );
    }
}
