//! Configuration shared by the tools: the XDG paths where postline keeps its
//! state, and the TOML config file with its `[account.NAME]` blocks (used by
//! mail-send, mail-queue and mail-fetch alike) and `[queue]` settings.
//!
//! Guarantees: a config file with an unknown key, a wrong type or a bad
//! value is a [`Kind::Config`] error naming the file and the key (a typo is
//! never silently ignored); a missing *default* config file is an empty
//! config, a missing file named with `--config` is an error. Passwords are
//! never stored in the file: only `password_command` (run with `sh -c`) or
//! `password_env`, and the value is a [`Secret`] that never prints.
//!
//! A password source that fails (the command fails, hangs past the
//! account's timeout, prints nothing or more than [`MAX_PASSWORD_OUTPUT`],
//! the variable is unset) is [`Kind::Temporary`]: the mail waits (mail-send
//! queues) instead of being refused for good. Every `password_env` named in
//! a config, or read, is hidden from every child ([`crate::child`]).

use std::collections::BTreeMap;
use std::env;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::child::{self, Ended};
use crate::exit::{Error, Kind, Result};
use crate::proto::sasl::{Mechanism, Secret};
use crate::proto::tls::TlsMode;

/// `$XDG_STATE_HOME/postline`, else `$HOME/.local/state/postline`, else
/// `./.postline-state` when there is no home at all (cron with a bare env).
pub fn state_dir() -> PathBuf {
    if let Some(x) = env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("postline");
    }
    if let Some(h) = env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/state/postline");
    }
    PathBuf::from(".postline-state")
}

/// `$XDG_CONFIG_HOME/postline/config.toml`, else
/// `$HOME/.config/postline/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(x) = env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("postline/config.toml"));
    }
    let h = env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(PathBuf::from(h).join(".config/postline/config.toml"))
}

/// The default Maildir: `$MAILDIR`, else `$HOME/Maildir/`.
pub fn default_maildir() -> Option<String> {
    if let Some(m) = env::var_os("MAILDIR").filter(|v| !v.is_empty()) {
        let mut s = m.to_string_lossy().into_owned();
        if !s.ends_with('/') {
            s.push('/');
        }
        return Some(s);
    }
    let h = env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(format!(
        "{}/Maildir/",
        h.to_string_lossy().trim_end_matches('/')
    ))
}

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[account.NAME]` blocks, by name (sorted, so "every account" has a
    /// stable order).
    #[serde(default)]
    pub account: BTreeMap<String, Account>,
    /// `[queue]`: the spool and its retry policy.
    #[serde(default)]
    pub queue: QueueConfig,
    /// `[send]`: defaults for mail-send.
    #[serde(default)]
    pub send: SendConfig,
    /// `[recv]`: defaults for mail-recv.
    #[serde(default)]
    pub recv: RecvConfig,
    /// `[deliver]`: defaults for mail-deliver.
    #[serde(default)]
    pub deliver: DeliverConfig,
    /// Where the config was read from (None: no file).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// One server account: a smarthost for mail-send, a mailbox for mail-fetch.
/// Keys are named like the command-line flags (`tls_ca_file` is
/// `--tls-ca-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// `smtp` (default for sending), `lmtp`, `pop3` (or `pop`) or `imap`.
    pub protocol: Option<Service>,
    /// Server host name or address.
    pub host: Option<String>,
    /// Server port (default by protocol and TLS mode).
    pub port: Option<u16>,
    /// `starttls` (default), `implicit` or `none`.
    pub tls: Option<TlsMode>,
    /// An extra trusted CA certificate (PEM).
    pub tls_ca_file: Option<PathBuf>,
    /// Pin the server certificate's SHA-256 fingerprint.
    pub tls_fingerprint: Option<String>,
    /// Login name.
    pub user: Option<String>,
    /// A shell command printing the password (or OAuth2 token) on stdout.
    pub password_command: Option<String>,
    /// An environment variable holding the password (or token).
    pub password_env: Option<String>,
    /// SASL mechanism: `plain`, `login`, `xoauth2` (default: the best offered
    /// of plain and login); for POP3 also `apop` or `user`.
    pub auth: Option<AuthMethod>,
    /// Connect/read timeout in seconds (default 60).
    pub timeout: Option<u64>,

    // --- sending ---
    /// Envelope-sender patterns this account sends for (`*@example.org`,
    /// `me@example.org`, `example.org`); mail-send picks the first account
    /// whose pattern matches the sender (msmtp's `--read-envelope-from`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub from: Vec<String>,
    /// Use this account when no `from` pattern matches.
    #[serde(default)]
    pub default: bool,
    /// The name to say in EHLO (default: the host name).
    pub helo: Option<String>,
    /// Envelope sender to use when none is given.
    pub envelope_from: Option<String>,

    // --- fetching ---
    /// IMAP folders to fetch (default `INBOX`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub folders: Vec<String>,
    /// Leave messages on the server (fetch only new ones next time).
    #[serde(default)]
    pub keep: bool,
    /// IMAP: find new mail by `UNSEEN` instead of by UID.
    #[serde(default)]
    pub unseen: bool,
    /// IMAP: mark fetched messages \Seen (when kept).
    pub mark_seen: Option<bool>,
    /// Fetch at most this many messages per run.
    pub max_messages: Option<u64>,
    /// Leave messages larger than this many bytes on the server (reported).
    pub max_size: Option<u64>,
    /// Deliver into this Maildir.
    pub maildir: Option<String>,
    /// Deliver into this mbox file.
    pub mbox: Option<String>,
    /// Deliver through this MDA command (`%F` sender, `%T` recipient).
    pub mda: Option<String>,
    /// Kill the MDA (its process group) when it runs longer than this many
    /// seconds; the message stays on the server (default 600).
    pub mda_timeout: Option<u64>,
    /// Hand to this SMTP server, `HOST[:PORT]`.
    pub smtp: Option<String>,
    /// Hand to this LMTP server, `HOST[:PORT]` or a socket path.
    pub lmtp: Option<String>,
    /// Envelope recipient for SMTP/LMTP/MDA targets.
    pub recipient: Option<String>,
}

/// What an account's server speaks: `protocol = "..."`, any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// An SMTP smarthost (mail-send, mail-queue).
    Smtp,
    /// An LMTP server (mail-send, mail-queue).
    Lmtp,
    /// An IMAP mailbox (mail-fetch).
    Imap,
    /// A POP3 maildrop (mail-fetch); also spelt `pop`.
    Pop3,
}

impl Service {
    /// The value as the config file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::Lmtp => "lmtp",
            Service::Imap => "imap",
            Service::Pop3 => "pop3",
        }
    }

    /// Read a `protocol` value, any case.
    pub fn parse(s: &str) -> std::result::Result<Service, String> {
        match s.to_ascii_lowercase().as_str() {
            "smtp" => Ok(Service::Smtp),
            "lmtp" => Ok(Service::Lmtp),
            "imap" => Ok(Service::Imap),
            "pop3" | "pop" => Ok(Service::Pop3),
            _ => Err(format!("protocol {s:?}: expected smtp, lmtp, imap or pop3")),
        }
    }

    /// Does mail-send (or mail-queue) send through it?
    pub fn sends(self) -> bool {
        matches!(self, Service::Smtp | Service::Lmtp)
    }
}

/// How an account logs in: `auth = "..."`, any case. A SASL mechanism, or
/// one of POP3's own logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A SASL mechanism (`plain`, `login`, `xoauth2`, also spelt `oauth2`
    /// and `oauthbearer`).
    Sasl(Mechanism),
    /// POP3 APOP.
    Apop,
    /// POP3 USER/PASS.
    User,
}

impl AuthMethod {
    /// Read an `auth` value, any case. A bad value is said as
    /// [`Mechanism::parse`] says it (the POP3 logins are the fetcher's
    /// business, and it names them in its own help).
    pub fn parse(s: &str) -> Result<AuthMethod> {
        match s.to_ascii_lowercase().as_str() {
            "apop" => Ok(AuthMethod::Apop),
            "user" => Ok(AuthMethod::User),
            _ => Mechanism::parse(s).map(AuthMethod::Sasl),
        }
    }

    /// The value as the config file spells it.
    pub fn name(self) -> String {
        match self {
            AuthMethod::Sasl(m) => m.name().to_ascii_lowercase(),
            AuthMethod::Apop => "apop".to_string(),
            AuthMethod::User => "user".to_string(),
        }
    }

    /// The SASL mechanism, for a protocol that has only SASL (SMTP, IMAP):
    /// the POP3 logins are refused with [`Mechanism::parse`]'s words.
    pub fn mechanism(self) -> Result<Mechanism> {
        match self {
            AuthMethod::Sasl(m) => Ok(m),
            AuthMethod::Apop | AuthMethod::User => Mechanism::parse(&self.name()),
        }
    }
}

// Both are strings in the file (and in queue entries, which keep an
// account's settings): read any case, written as the file spells them.
impl Serialize for Service {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Service {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Service, D::Error> {
        let s = String::deserialize(d)?;
        Service::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for AuthMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for AuthMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<AuthMethod, D::Error> {
        let s = String::deserialize(d)?;
        AuthMethod::parse(&s).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// `[queue]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The spool directory (default `$XDG_STATE_HOME/postline/queue`).
    pub dir: Option<PathBuf>,
    /// First retry after this long (e.g. `5m`; default 5 minutes).
    pub retry_min: Option<String>,
    /// Retries are at most this far apart (e.g. `4h`; default 4 hours).
    pub retry_max: Option<String>,
    /// Send a "delayed" DSN to the sender after this long (off when unset).
    pub warn_after: Option<String>,
    /// Bounce after this long (default `5d`).
    pub expire: Option<String>,
}

/// `[send]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendConfig {
    /// Deliver to recipients' MX hosts when no account matches.
    #[serde(default)]
    pub direct: bool,
    /// DNS server for MX lookups, `IP[:PORT]`.
    pub resolver: Option<String>,
    /// SMTP port on MX hosts (default 25).
    pub mx_port: Option<u16>,
    /// Never queue: exit 75 on a temporary failure.
    #[serde(default)]
    pub no_queue: bool,
    /// The domain a bare sender or recipient (`root`) gets, as Postfix's
    /// myorigin (default: the host's fully qualified name).
    pub domain: Option<String>,
}

/// `[deliver]`: mail-deliver's settings; the command line wins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverConfig {
    /// The Sieve script every delivery runs through (`--sieve`).
    pub sieve: Option<String>,
    /// The account Sieve redirects and vacation replies are sent through
    /// (default: the account with `default = true`, else `[send] direct`).
    pub account: Option<String>,
    /// Received fields after which redirect and vacation stop (default 100).
    pub max_received: Option<usize>,
    /// Where `include :global` finds scripts (`NAME.sieve`).
    pub sieve_global: Option<String>,
}

/// `[recv]`: mail-recv's settings, named like its flags; the command line
/// wins over each.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecvConfig {
    /// The domains received for (`--domain`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub domains: Vec<String>,
    /// The delivery template (`--deliver`).
    pub deliver: Option<String>,
    /// The delivery command as argv (`-- COMMAND ARGS...`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub command: Vec<String>,
    /// Queue relayed (and, without a delivery, local) mail (`--queue`).
    #[serde(default)]
    pub queue: bool,
    /// Speak LMTP (`--lmtp`).
    #[serde(default)]
    pub lmtp: bool,
    /// Listen on these `ADDR:PORT`s (`--listen`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub listen: Vec<String>,
    /// Implicit-TLS listeners (`--listen-tls`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub listen_tls: Vec<String>,
    /// The server certificate chain, PEM (`--tls-cert`).
    pub tls_cert: Option<PathBuf>,
    /// Its private key, PEM (`--tls-key`).
    pub tls_key: Option<PathBuf>,
    /// Largest message in octets (`--max-size`).
    pub max_size: Option<u64>,
    /// Concurrent sessions on the listeners (`--max-sessions`).
    pub max_sessions: Option<usize>,
    /// Recipients per message (`--max-recipients`).
    pub max_recipients: Option<usize>,
    /// `normalize` or `reject` (`--bare-lf`).
    pub bare_lf: Option<String>,
    /// The checkpassword program for AUTH (`--checkpassword`).
    pub checkpassword: Option<PathBuf>,
    /// Our name in the greeting and Received (`--hostname`).
    pub hostname: Option<String>,
    /// Idle timeout in seconds (`--timeout`).
    pub timeout: Option<u64>,
    /// The delivery command's deadline in seconds (`--mda-timeout`).
    pub mda_timeout: Option<u64>,
    /// One JSON record per transaction on stderr (`--log-json`).
    #[serde(default)]
    pub log_json: bool,
}

impl Config {
    /// Read the config: `path` when given (must exist), else the default
    /// path when it exists, else an empty config.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match default_config_path() {
                Some(p) => (p, false),
                None => return Ok(Config::default()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default());
            }
            Err(e) => {
                return Err(Error::new(
                    Kind::Config,
                    format!("reading {}", path.display()),
                    crate::exit::describe_io(&e),
                ));
            }
        };
        let mut c = Config::parse(&text).map_err(|e| e.within(path.display()))?;
        c.path = Some(path);
        Ok(c)
    }

    /// Parse config text. Every account's `password_env` is hidden from
    /// children from now on (an MDA must not see another account's secret).
    pub fn parse(text: &str) -> Result<Config> {
        let c = toml::from_str::<Config>(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            Error::new(
                Kind::Config,
                match line {
                    Some(l) => format!("line {l}"),
                    None => "config".to_string(),
                },
                msg,
            )
        })?;
        for a in c.account.values() {
            if let Some(var) = &a.password_env {
                child::hide_env(var);
            }
        }
        Ok(c)
    }

    /// The account called `name`, or a config error naming the known ones.
    pub fn account(&self, name: &str) -> Result<&Account> {
        self.account.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.account.keys().map(String::as_str).collect();
            Error::new(
                Kind::Config,
                format!("account {name:?}"),
                if known.is_empty() {
                    match &self.path {
                        Some(p) => format!("no accounts in {}", p.display()),
                        None => "no config file".to_string(),
                    }
                } else {
                    format!("not in the config (known: {})", known.join(", "))
                },
            )
        })
    }
}

impl Account {
    /// The password or token: from `password_env`, else the first line of
    /// `password_command`'s output, which gets the account's `timeout`
    /// (default [`DEFAULT_TIMEOUT`]). `Ok(None)` when neither is set.
    pub fn password(&self, account: &str) -> Result<Option<Secret>> {
        let limit = self.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        self.password_within(account, limit)
    }

    /// [`Account::password`] with `limit` for the command.
    pub fn password_within(&self, account: &str, limit: Duration) -> Result<Option<Secret>> {
        get_password(
            account,
            self.password_env.as_deref(),
            self.password_command.as_deref(),
            limit,
        )
    }

    /// The TLS settings of this account (CA file, pinned fingerprint);
    /// certificates are verified, never opportunistic.
    pub fn tls_options(&self) -> Result<crate::proto::tls::TlsOptions> {
        Ok(crate::proto::tls::TlsOptions {
            ca_file: self.tls_ca_file.clone(),
            fingerprint: self
                .tls_fingerprint
                .as_deref()
                .map(crate::proto::tls::parse_fingerprint)
                .transpose()?,
            opportunistic: false,
        })
    }

    /// Does this account's `from` list match `sender`? Patterns: an exact
    /// address, `*@domain`, `@domain` or `domain` (case-insensitive).
    pub fn matches_from(&self, sender: &str) -> bool {
        self.from.iter().any(|p| from_pattern_matches(p, sender))
    }
}

/// Does `pattern` match the address `sender`? See [`Account::matches_from`].
pub fn from_pattern_matches(pattern: &str, sender: &str) -> bool {
    let p = pattern.trim().to_ascii_lowercase();
    let s = sender.trim().to_ascii_lowercase();
    let domain = s.rsplit_once('@').map_or("", |(_, d)| d);
    if let Some(d) = p.strip_prefix("*@").or_else(|| p.strip_prefix('@')) {
        return d == domain;
    }
    if !p.contains('@') {
        return p == domain;
    }
    p == s
}

/// A list of strings, or one string as a list of one (`from = "me@x"`, as
/// msmtp users write it).
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    OneOrMany::deserialize(d)
        .map(|v| match v {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        })
        .map_err(|_| serde::de::Error::custom("expected a string or a list of strings"))
}

/// The timeout of an account that sets none (network and password command).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The most a password command may print: a password or an OAuth2 token
/// is far shorter; more is an error, never held in memory.
pub const MAX_PASSWORD_OUTPUT: usize = 64 * 1024;

/// Fetch a secret from an env var or a command (see [`Account::password`]);
/// the command is killed (with its process group) after `limit`.
pub fn get_password(
    account: &str,
    env_var: Option<&str>,
    command: Option<&str>,
    limit: Duration,
) -> Result<Option<Secret>> {
    // Every failure of the source is temporary: it is the user's setup
    // (an agent not running, a token service down) that may work later,
    // never the message that is wrong.
    if let Some(var) = env_var {
        child::hide_env(var);
        return match env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
            _ => Err(Error::new(
                Kind::Temporary,
                format!("account {account}: password_env"),
                format!("${var} is not set"),
            )),
        };
    }
    let Some(cmd) = command else {
        return Ok(None);
    };
    let ctx = format!("account {account}: password_command");
    let fail = |cause: String| Error::new(Kind::Temporary, &*ctx, cause);
    let (ended, out) = child::capture(cmd, limit, MAX_PASSWORD_OUTPUT)
        .map_err(|e| fail(format!("cannot run: {}", crate::exit::describe_io(&e))))?;
    match ended {
        Ended::Exited(status) if status.success() => {}
        // The status, never the output: it may hold the secret.
        Ended::Exited(status) => return Err(fail(format!("failed ({status})"))),
        Ended::TimedOut => {
            return Err(fail(format!(
                "did not finish within {} s (killed)",
                limit.as_secs()
            )));
        }
        Ended::TooMuch => {
            return Err(fail(format!(
                "printed more than {MAX_PASSWORD_OUTPUT} bytes (killed)"
            )));
        }
    }
    let text = String::from_utf8_lossy(&out);
    let first = text.lines().next().unwrap_or("").to_string();
    if first.is_empty() {
        return Err(fail("printed nothing".to_string()));
    }
    Ok(Some(Secret::new(first)))
}

/// Parse a duration: a number with an optional unit `s`, `m`, `h`, `d`, `w`
/// (seconds when none), e.g. `90s`, `5m`, `4h`, `5d`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::new(
            Kind::Config,
            format!("duration {s:?}"),
            "expected a number with an optional unit s, m, h, d or w (e.g. 5m, 4h, 5d)",
        )
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).map(Duration::from_secs).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_string_is_a_list_of_one() {
        // msmtp users write `from = "me@example.org"`.
        let c = Config::parse(
            "[account.a]\nhost = \"h\"\nfrom = \"me@example.org\"\nfolders = \"INBOX\"\n",
        )
        .unwrap();
        let a = c.account("a").unwrap();
        assert_eq!(a.from, vec!["me@example.org".to_string()]);
        assert_eq!(a.folders, vec!["INBOX".to_string()]);
        let c = Config::parse("[account.a]\nhost = \"h\"\nfrom = [\"x@y\", \"z\"]\n").unwrap();
        assert_eq!(c.account("a").unwrap().from.len(), 2);
        let e = Config::parse("[account.a]\nhost = \"h\"\nfrom = 5\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(
            e.to_string().contains("a string or a list of strings"),
            "{e}"
        );
    }

    #[test]
    fn accounts_parse_with_every_key() {
        let c = Config::parse(
            r#"
[account.work]
host = "smtp.example.org"
port = 587
tls = "starttls"
user = "me"
password_command = "echo secret"
from = ["*@example.org"]

[account.home]
protocol = "imap"
host = "imap.example.net"
tls = "implicit"
folders = ["INBOX", "Lists"]
keep = true
maildir = "~/Maildir/"

[queue]
expire = "3d"
"#,
        )
        .unwrap();
        let w = c.account("work").unwrap();
        assert_eq!(w.tls, Some(TlsMode::Starttls));
        assert!(w.matches_from("Me@Example.org"));
        assert!(!w.matches_from("me@example.com"));
        assert_eq!(w.password("work").unwrap().unwrap().expose(), "secret");
        assert_eq!(c.account("home").unwrap().folders.len(), 2);
        assert_eq!(c.queue.expire.as_deref(), Some("3d"));
        let e = c.account("nope").unwrap_err().to_string();
        assert!(e.contains("known: home, work"), "{e}");
    }

    #[test]
    fn typos_and_bad_values_are_config_errors_with_a_line() {
        let e = Config::parse("[account.a]\nhost = \"x\"\npasword_command = \"y\"\n").unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(e.to_string().contains("pasword_command"), "{e}");
        let e = Config::parse("[account.a]\ntls = \"startls\"\n").unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
    }

    #[test]
    fn protocol_and_auth_are_enums_read_in_any_case_and_written_as_spelt() {
        let c = Config::parse(
            "[account.a]\nprotocol = \"POP\"\nauth = \"Apop\"\n[account.b]\nprotocol = \"lmtp\"\nauth = \"oauth2\"\n",
        )
        .unwrap();
        let a = c.account("a").unwrap();
        assert_eq!(
            (a.protocol, a.auth),
            (Some(Service::Pop3), Some(AuthMethod::Apop))
        );
        let b = c.account("b").unwrap();
        assert_eq!(b.auth, Some(AuthMethod::Sasl(Mechanism::XOAuth2)));
        // Queue entries keep accounts as JSON: the same strings come back.
        let json = serde_json::to_string(b).unwrap();
        assert!(json.contains(r#""protocol":"lmtp""#), "{json}");
        assert!(json.contains(r#""auth":"xoauth2""#), "{json}");
        assert_eq!(&serde_json::from_str::<Account>(&json).unwrap(), b);
        // SMTP has no POP3 logins: refused in the words it always used.
        let e = AuthMethod::Apop.mechanism().unwrap_err().to_string();
        assert_eq!(
            e,
            "auth mechanism \"apop\": expected plain, login or xoauth2"
        );
        let e = Config::parse("[account.a]\nauth = \"cram\"\n").unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(
            e.to_string()
                .contains("auth mechanism \"cram\": expected plain, login or xoauth2"),
            "{e}"
        );
        let e = Config::parse("[account.a]\nprotocol = \"pop4\"\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(e.to_string().contains("imap or pop3"), "{e}");
    }

    #[test]
    fn passwords_fail_loudly_and_never_echo() {
        let t = DEFAULT_TIMEOUT;
        let e = get_password("a", None, Some("echo hunter2; exit 3"), t).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(e.kind(), Kind::Temporary);
        assert!(get_password("a", Some("POSTLINE_SURELY_UNSET_VAR"), None, t).is_err());
        assert!(get_password("a", None, None, t).unwrap().is_none());
        // A command that hangs or floods is cut off, temporary.
        let e = get_password("a", None, Some("sleep 100"), Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("did not finish"), "{e}");
        assert_eq!(e.kind(), Kind::Temporary);
        let e = get_password("a", None, Some("yes"), t).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("5d").unwrap().as_secs(), 432_000);
        assert!(parse_duration("5 years").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn from_patterns() {
        assert!(from_pattern_matches("example.org", "a@EXAMPLE.org"));
        assert!(from_pattern_matches("@example.org", "a@example.org"));
        assert!(!from_pattern_matches("*@example.org", "a@sub.example.org"));
        assert!(from_pattern_matches("a@example.org", "A@example.org"));
    }
}
