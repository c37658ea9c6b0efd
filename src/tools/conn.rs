//! The connection flags mail-send and mail-fetch share: `--tls`,
//! `--tls-ca-file`, `--tls-fingerprint`, `--user`, `--password-command`,
//! `--password-env`, `--auth`, `--timeout`.
//!
//! Owns their one declaration ([`args`]: names, value names, help texts,
//! value parsers) and their one reading ([`Conn::from_matches`]), so the
//! two tools cannot drift apart in how a server is reached. Guarantee: a
//! bad `--tls`, `--tls-fingerprint` or (mail-send's) `--auth` value is a
//! usage error naming the flag, caught by clap before anything runs.
//! Where the tools differ, they differ on purpose: `--auth` of mail-fetch
//! also takes POP3's `apop` and `user`.

use std::path::PathBuf;

use clap::{Arg, ArgMatches, Command, value_parser};

use crate::config::Account;
use crate::exit::Result;
use crate::proto::tls::TlsMode;

/// Which protocols a tool logs in with: decides what `--auth` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logins {
    /// SMTP AUTH: the SASL mechanisms only (checked by clap).
    Smtp,
    /// IMAP and POP3: SASL, and POP3's `apop` and `user` (checked when the
    /// protocol is known).
    Mailbox,
}

/// `cmd` with the connection flags added.
pub fn args(cmd: Command, logins: Logins) -> Command {
    let value = |id: &'static str, name: &'static str, help: &'static str| {
        Arg::new(id).long(id).value_name(name).help(help)
    };
    let auth = match logins {
        Logins::Smtp => value(
            "auth",
            "MECH",
            "AUTH mechanism: plain, login or xoauth2 [default: the best of plain and login offered]",
        )
        .value_parser(super::mechanism_value),
        Logins::Mailbox => value(
            "auth",
            "MECH",
            "plain, login or xoauth2; POP3 also apop or user [default: plain when offered]",
        ),
    };
    cmd.arg(
        value(
            "tls",
            "MODE",
            "starttls (default; required), implicit or none",
        )
        .value_parser(super::tls_mode_value),
    )
    .arg(
        value(
            "tls-ca-file",
            "FILE",
            "Also trust the CA certificate(s) in FILE (PEM)",
        )
        .value_parser(value_parser!(PathBuf)),
    )
    .arg(
        value(
            "tls-fingerprint",
            "SHA256",
            "Accept exactly the server certificate with this SHA-256 fingerprint",
        )
        .value_parser(super::fingerprint_value),
    )
    .arg(value("user", "USER", "Login name"))
    .arg(value(
        "password-command",
        "COMMAND",
        "Run COMMAND with sh -c; its first output line is the password or OAuth2 token",
    ))
    .arg(value(
        "password-env",
        "VAR",
        "Take the password or token from $VAR",
    ))
    .arg(auth)
    .arg(
        value(
            "timeout",
            "SECONDS",
            "Connect and read timeout in seconds [default: 60]",
        )
        .value_parser(value_parser!(u64)),
    )
}

/// The connection flags as given (each `None` when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conn {
    /// `--tls`.
    pub tls: Option<TlsMode>,
    /// `--tls-ca-file`.
    pub tls_ca_file: Option<PathBuf>,
    /// `--tls-fingerprint`.
    pub tls_fingerprint: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--password-command`.
    pub password_command: Option<String>,
    /// `--password-env`.
    pub password_env: Option<String>,
    /// `--auth`.
    pub auth: Option<crate::config::AuthMethod>,
    /// `--timeout`, seconds.
    pub timeout: Option<u64>,
}

impl Conn {
    /// Read the flags [`args`] added.
    pub fn from_matches(m: &ArgMatches) -> Result<Conn> {
        let s = |id: &str| m.get_one::<String>(id).cloned();
        Ok(Conn {
            // Checked by clap's value parser already; parsed again for the
            // type (a failure here is still a usage error naming the flag).
            tls: s("tls")
                .map(|t| TlsMode::parse(&t))
                .transpose()
                .map_err(|e| crate::exit::Error::new(crate::exit::Kind::Usage, "--tls", e))?,
            tls_ca_file: m.get_one::<PathBuf>("tls-ca-file").cloned(),
            tls_fingerprint: s("tls-fingerprint"),
            user: s("user"),
            password_command: s("password-command"),
            password_env: s("password-env"),
            auth: s("auth")
                .map(|v| crate::config::AuthMethod::parse(&v))
                .transpose()
                .map_err(|e| crate::exit::Error::new(crate::exit::Kind::Usage, "--auth", e))?,
            timeout: m.get_one::<u64>("timeout").copied(),
        })
    }

    /// The first flag given that only a one-off server can use (every one
    /// but `--timeout`, which also applies to accounts), for mail-send's
    /// "needs --host"; in the order that message has always checked them.
    pub fn first_server_only(&self) -> Option<&'static str> {
        [
            ("tls", self.tls.is_some()),
            ("user", self.user.is_some()),
            ("password-command", self.password_command.is_some()),
            ("password-env", self.password_env.is_some()),
            ("tls-ca-file", self.tls_ca_file.is_some()),
            ("tls-fingerprint", self.tls_fingerprint.is_some()),
            ("auth", self.auth.is_some()),
        ]
        .into_iter()
        .find_map(|(f, given)| given.then_some(f))
    }

    /// These settings over `a` (the account's server, port and other keys
    /// kept).
    pub fn apply(&self, a: Account) -> Account {
        Account {
            tls: self.tls,
            tls_ca_file: self.tls_ca_file.clone(),
            tls_fingerprint: self.tls_fingerprint.clone(),
            user: self.user.clone(),
            password_command: self.password_command.clone(),
            password_env: self.password_env.clone(),
            auth: self.auth,
            timeout: self.timeout,
            ..a
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(logins: Logins, argv: &[&str]) -> std::result::Result<Conn, String> {
        args(Command::new("t"), logins)
            .try_get_matches_from(std::iter::once("t").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())
            .and_then(|m| Conn::from_matches(&m).map_err(|e| e.to_string()))
    }

    #[test]
    fn flags_read_into_one_struct() {
        let c = parse(
            Logins::Smtp,
            &[
                "--tls",
                "implicit",
                "--tls-ca-file",
                "/ca.pem",
                "--user",
                "me",
                "--password-env",
                "PW",
                "--auth",
                "login",
                "--timeout",
                "7",
            ],
        )
        .unwrap();
        assert_eq!(c.tls, Some(TlsMode::Implicit));
        assert_eq!(c.tls_ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.first_server_only(), Some("tls"));
        let a = c.apply(Account {
            host: Some("h".into()),
            ..Account::default()
        });
        assert_eq!((a.host.as_deref(), a.timeout), (Some("h"), Some(7)));
        assert_eq!(
            parse(Logins::Smtp, &["--timeout", "5"])
                .unwrap()
                .first_server_only(),
            None
        );
    }

    #[test]
    fn bad_values_are_refused_by_the_parser_and_pop3_logins_only_for_mailboxes() {
        assert!(parse(Logins::Smtp, &["--tls", "startls"]).is_err());
        assert!(parse(Logins::Smtp, &["--tls-fingerprint", "zz"]).is_err());
        assert!(parse(Logins::Smtp, &["--auth", "apop"]).is_err());
        assert!(parse(Logins::Mailbox, &["--auth", "apop"]).is_ok());
    }
}
