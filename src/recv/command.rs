//! Delivery through a command (`mail-recv ... -- COMMAND ARGS...`): the
//! message on its stdin, the envelope in Postfix local(8)/pipe(8)
//! variables, its exit status turned into the SMTP reply.
//!
//! Guarantees: the command is run as argv (no shell); it runs through
//! [`crate::child`] in a process group of its own, killed at its deadline,
//! its stderr read up to a cap, no password variable in its environment.
//! Only exit 0 becomes a 2xx. A signal and a timeout are always
//! `451 4.3.0` (the client keeps the message); exit 75 is `451 4.3.0`
//! and other exit codes map as Postfix's `sys_exits` table maps them for
//! pipe(8), unless an RFC 3463 status starts the command's stderr
//! (`5.2.2 mailbox full`): that status wins, as in pipe(8).

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::child::{self, Ended};
use crate::proto::smtp::Reply;
use crate::proto::transcript::printable;

/// The stderr kept from a delivery command.
pub const STDERR_CAP: usize = 4096;

/// The envelope as the command sees it: Postfix's variable names.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// SENDER (empty for `<>`).
    pub sender: String,
    /// The recipients (RECIPIENT when one, RECIPIENTS newline-separated).
    pub recipients: Vec<String>,
    /// LOCAL, USER, EXTENSION, DOMAIN of the first recipient.
    pub local: Option<(String, String)>,
    /// CLIENT_ADDRESS.
    pub client_address: String,
    /// CLIENT_HELO.
    pub client_helo: String,
    /// CLIENT_PROTOCOL (the Received `with` word).
    pub client_protocol: String,
    /// SASL_USERNAME (empty when not authenticated).
    pub sasl_username: String,
}

impl Env {
    /// The variables, in a fixed order.
    pub fn vars(&self) -> Vec<(String, OsString)> {
        let mut v: Vec<(String, OsString)> = vec![
            ("SENDER".into(), self.sender.clone().into()),
            ("RECIPIENTS".into(), self.recipients.join("\n").into()),
            ("CLIENT_ADDRESS".into(), self.client_address.clone().into()),
            ("CLIENT_HELO".into(), self.client_helo.clone().into()),
            (
                "CLIENT_PROTOCOL".into(),
                self.client_protocol.clone().into(),
            ),
            ("SASL_USERNAME".into(), self.sasl_username.clone().into()),
        ];
        if let [one] = self.recipients.as_slice() {
            v.push(("RECIPIENT".into(), one.clone().into()));
        }
        if let Some((local, domain)) = &self.local {
            v.push(("LOCAL".into(), local.clone().into()));
            v.push(("DOMAIN".into(), domain.clone().into()));
            let (user, ext) = match local.split_once('+') {
                Some((u, e)) if !u.is_empty() => (u, Some(e)),
                _ => (local.as_str(), None),
            };
            v.push(("USER".into(), user.to_string().into()));
            if let Some(e) = ext {
                v.push(("EXTENSION".into(), e.to_string().into()));
            }
        }
        v
    }
}

/// Run `argv` with `message` on stdin and `env`, within `limit`; the reply
/// for the client.
pub fn deliver(argv: &[OsString], env: &Env, message: &[u8], limit: Duration) -> Reply {
    match child::run_argv(argv, &env.vars(), message, limit, STDERR_CAP) {
        Ok((ended, stderr)) => reply_for(&ended, &stderr),
        Err(e) => crate::recv::policy::reply(
            451,
            "4.3.0",
            format!(
                "delivery command failed to start: {}",
                crate::exit::describe_io(&e)
            ),
        ),
    }
}

/// The reply for how the command ended and what it said on stderr.
pub fn reply_for(ended: &Ended, stderr: &[u8]) -> Reply {
    use crate::recv::policy::reply;
    let said = enhanced_prefix(stderr);
    let status = match ended {
        Ended::TimedOut => return reply(451, "4.3.0", "delivery command timed out"),
        Ended::TooMuch => return reply(451, "4.3.0", "delivery command misbehaved"),
        Ended::Exited(s) => s,
    };
    if let Some(sig) = status.signal() {
        return reply(
            451,
            "4.3.0",
            format!("delivery command killed by signal {sig}"),
        );
    }
    let code = status.code().unwrap_or(75);
    if code == 0 {
        return reply(250, "2.0.0", "delivered");
    }
    let (enh, text) = sys_exit(code);
    let text = match &said {
        Some((_, t)) if !t.is_empty() => t.clone(),
        _ => format!("delivery command: {text} (exit {code})"),
    };
    // As pipe(8) does (Postfix 2.3 and later): an RFC 3463 status at the
    // start of the command's stderr takes precedence over its exit status,
    // in both directions (a filter that exits 75 with "5.2.2 mailbox full"
    // means it). A signal or a timeout never gets here: always 451.
    let enh = match &said {
        Some((e, _)) if e.starts_with('4') || e.starts_with('5') => e.clone(),
        _ => enh.to_string(),
    };
    reply(smtp_code(&enh), &enh, text)
}

/// Postfix's `sys_exits` table (global/sys_exits.c), as pipe(8) uses it:
/// the enhanced status and text for an exit code; codes outside
/// sysexits(3) are `5.3.0` like Postfix's default entry.
pub fn sys_exit(code: i32) -> (&'static str, &'static str) {
    match code {
        64 => ("5.3.0", "command line usage error"),
        65 => ("5.6.0", "data format error"),
        66 => ("5.3.0", "cannot open input"),
        67 => ("5.1.1", "user unknown"),
        68 => ("5.1.2", "host name unknown"),
        69 => ("5.3.0", "service unavailable"),
        70 => ("5.3.0", "internal software error"),
        71 => ("4.3.0", "system resource problem"),
        72 => ("5.3.0", "critical OS file missing"),
        73 => ("5.2.0", "can't create user output file"),
        74 => ("5.3.0", "input/output error"),
        75 => ("4.3.0", "temporary failure"),
        76 => ("5.5.0", "remote error in protocol"),
        77 => ("5.7.0", "permission denied"),
        78 => ("5.3.5", "local configuration error"),
        _ => ("5.3.0", "unknown mail system error"),
    }
}

/// The SMTP code for an enhanced status.
pub fn smtp_code(enh: &str) -> u16 {
    match enh {
        e if e.starts_with('2') => 250,
        "4.2.2" | "4.3.1" => 452,
        e if e.starts_with('4') => 451,
        "5.2.2" | "5.3.4" => 552,
        e if e.starts_with("5.1.") || e.starts_with("5.7.") || e.starts_with("5.2.") => 550,
        _ => 554,
    }
}

/// An RFC 3463 status (`4.x.y` or `5.x.y`, up to three digits each
/// after the class) at the very start of `stderr`, and the rest of its
/// first line, escaped and cut to 200 characters.
pub fn enhanced_prefix(stderr: &[u8]) -> Option<(String, String)> {
    let line = stderr.split(|&b| b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let (code, rest) = line.split_once([' ', '\t', '\r']).unwrap_or((&line, ""));
    let mut parts = code.split('.');
    let class = parts.next()?;
    if !matches!(class, "2" | "4" | "5") {
        return None;
    }
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || !digits(subject) || !digits(detail) {
        return None;
    }
    let text: String = printable(rest.trim()).chars().take(200).collect();
    Some((code.to_string(), text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn exited(code: i32) -> Ended {
        Ended::Exited(ExitStatus::from_raw(code << 8))
    }

    fn short(r: &Reply) -> String {
        format!("{} {}", r.code, r.enhanced.as_deref().unwrap_or("-"))
    }

    #[test]
    fn exit_codes_map_as_postfix_pipe_does() {
        let cases = [
            (0, "250 2.0.0"),
            (64, "554 5.3.0"),
            (65, "554 5.6.0"),
            (66, "554 5.3.0"),
            (67, "550 5.1.1"),
            (68, "550 5.1.2"),
            (69, "554 5.3.0"),
            (70, "554 5.3.0"),
            (71, "451 4.3.0"),
            (72, "554 5.3.0"),
            (73, "550 5.2.0"),
            (74, "554 5.3.0"),
            (75, "451 4.3.0"),
            (76, "554 5.5.0"),
            (77, "550 5.7.0"),
            (78, "554 5.3.5"),
            (1, "554 5.3.0"),
            (100, "554 5.3.0"),
        ];
        for (code, want) in cases {
            assert_eq!(short(&reply_for(&exited(code), b"")), want, "exit {code}");
        }
        let killed = Ended::Exited(ExitStatus::from_raw(9));
        assert_eq!(short(&reply_for(&killed, b"")), "451 4.3.0");
        assert_eq!(
            short(&reply_for(&Ended::TimedOut, b"5.1.1 no")),
            "451 4.3.0"
        );
    }

    #[test]
    fn an_enhanced_status_on_stderr_wins_over_the_exit_status() {
        let r = reply_for(&exited(73), b"5.2.2 mailbox full\nmore\n");
        assert_eq!(short(&r), "552 5.2.2");
        assert_eq!(r.lines, vec!["mailbox full".to_string()]);
        // A temporary status softens a permanent exit.
        assert_eq!(
            short(&reply_for(&exited(1), b"4.2.2 over quota")),
            "452 4.2.2"
        );
        // A permanent status wins over exit 75 too (pipe(8)).
        let r = reply_for(&exited(75), b"5.1.1 no such user");
        assert_eq!(short(&r), "550 5.1.1");
        // Without a status, 75 is temporary.
        assert_eq!(short(&reply_for(&exited(75), b"try later")), "451 4.3.0");
        // Exit 0 is delivered, whatever stderr says.
        assert_eq!(short(&reply_for(&exited(0), b"5.0.0 odd")), "250 2.0.0");
        // Text from the child is escaped.
        let r = reply_for(&exited(67), b"5.1.1 \x1b[31mred\x07");
        assert!(!r.lines[0].contains('\x1b'), "{:?}", r.lines);
    }

    #[test]
    fn only_a_well_formed_status_at_the_start_counts() {
        assert_eq!(
            enhanced_prefix(b"5.2.2 mailbox full"),
            Some(("5.2.2".into(), "mailbox full".into()))
        );
        assert_eq!(
            enhanced_prefix(b"4.3.0"),
            Some(("4.3.0".into(), String::new()))
        );
        for no in [
            &b"error 5.2.2 mailbox full"[..],
            b"5.2 short",
            b"5.2.2.2 long",
            b"6.1.1 bad class",
            b"5.1234.1 too many digits",
            b"5.a.1 letters",
            b"",
            b" 5.1.1 leading space",
        ] {
            assert_eq!(
                enhanced_prefix(no),
                None,
                "{:?}",
                String::from_utf8_lossy(no)
            );
        }
    }

    #[test]
    fn the_command_gets_the_message_and_the_envelope_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "cat > '{0}'; printf '%s|%s|%s|%s|%s|%s' \"$SENDER\" \"$RECIPIENT\" \"$LOCAL\" \"$EXTENSION\" \"$DOMAIN\" \"$CLIENT_ADDRESS\" >> '{0}'; exit \"$1\"",
            out.display()
        );
        let argv: Vec<OsString> = ["/bin/sh", "-c", &script, "sh", "0"]
            .iter()
            .map(OsString::from)
            .collect();
        let env = Env {
            sender: "a@x.org".into(),
            recipients: vec!["Bob+tag@example.org".into()],
            local: Some(("Bob+tag".into(), "example.org".into())),
            client_address: "192.0.2.9".into(),
            ..Env::default()
        };
        let r = deliver(
            &argv,
            &env,
            b"Subject: hi\n\nbody $(touch /tmp/x)\n",
            Duration::from_secs(30),
        );
        assert_eq!(r.code, 250, "{r:?}");
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            got,
            "Subject: hi\n\nbody $(touch /tmp/x)\na@x.org|Bob+tag@example.org|Bob+tag|tag|example.org|192.0.2.9"
        );
        let mut argv75 = argv.clone();
        argv75[4] = "75".into();
        assert_eq!(
            deliver(&argv75, &env, b"x\n", Duration::from_secs(30)).code,
            451
        );
        let missing = vec![OsString::from("/nonexistent/mda")];
        assert_eq!(
            deliver(&missing, &env, b"x\n", Duration::from_secs(30)).code,
            451
        );
        let slow: Vec<OsString> = ["/bin/sleep", "1000"].iter().map(OsString::from).collect();
        let r = deliver(&slow, &env, b"x\n", Duration::from_millis(200));
        assert_eq!(short(&r), "451 4.3.0");
    }
}
