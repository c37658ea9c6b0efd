//! Error kinds and the sysexits(3) codes every postline tool returns.
//!
//! This module owns the one mapping from "what went wrong" to "what exit code
//! the caller sees". The library returns [`Error`] values carrying a [`Kind`];
//! only the tools' shared `main` helper turns a kind into a process exit code,
//! through [`Kind::code`]. Keeping the mapping in one function is what lets an
//! MTA or fetcher rely on the promise that matters most: anything that might
//! succeed later is [`TEMPFAIL`] (75), so the caller keeps the message.

use std::fmt;
use std::io;

/// Success.
pub const OK: i32 = 0;
/// A check asked for failed (mail-trace `--strict` found an anomaly); not
/// an error of the tool.
pub const CHECK_FAILED: i32 = 1;
/// The command was used incorrectly (bad flag, bad argument).
pub const USAGE: i32 = 64;
/// The input data was incorrect (empty message, mail loop, not an mbox).
pub const DATAERR: i32 = 65;
/// An addressee or user is unknown.
pub const NOUSER: i32 = 67;
/// A service is unavailable.
pub const UNAVAILABLE: i32 = 69;
/// An output file or directory cannot be created (not a Maildir or mbox).
pub const CANTCREAT: i32 = 73;
/// An I/O error that is not known to be temporary.
pub const IOERR: i32 = 74;
/// A temporary failure: try again later, keep the message.
pub const TEMPFAIL: i32 = 75;
/// Permission denied, permanently.
pub const NOPERM: i32 = 77;
/// A configuration error.
pub const CONFIG: i32 = 78;

// mail-fetch's own codes, fetchmail's numbers (scripts written for
// fetchmail test them); see `fetch::Class` and mail-fetch(1).
/// mail-fetch: a connection, TLS or socket error.
pub const FETCH_CONNECTION: i32 = 2;
/// mail-fetch: the server refused the credentials.
pub const FETCH_AUTH: i32 = 3;
/// mail-fetch: a protocol error (an unexpected or refused command).
pub const FETCH_PROTOCOL: i32 = 4;
/// mail-fetch: the configuration is wrong.
pub const FETCH_CONFIG: i32 = 5;
/// mail-fetch: another mail-fetch is fetching the same account.
pub const FETCH_LOCKED: i32 = 8;
/// mail-fetch: a message could not be stored (it stays on the server).
pub const FETCH_DELIVERY: i32 = 10;

/// What kind of failure an [`Error`] is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Bad command line.
    Usage,
    /// Bad input data that will never be accepted (empty message, loop).
    Data,
    /// Unknown user or recipient.
    NoUser,
    /// A peer or service refused for good.
    Unavailable,
    /// A destination exists but is not something we can write to.
    CantCreate,
    /// Permission denied that retrying will not fix.
    NoPerm,
    /// The server refused our credentials (wrong password, expired token).
    /// Exit code 77 like [`Kind::NoPerm`]; a separate kind so tools with
    /// their own codes (mail-fetch follows fetchmail: 3) can tell it apart.
    Auth,
    /// The configuration is wrong.
    Config,
    /// May succeed later: disk full, quota, lock timeout, I/O error.
    Temporary,
}

impl Kind {
    /// The sysexits code for this kind.
    pub fn code(self) -> i32 {
        match self {
            Kind::Usage => USAGE,
            Kind::Data => DATAERR,
            Kind::NoUser => NOUSER,
            Kind::Unavailable => UNAVAILABLE,
            Kind::CantCreate => CANTCREAT,
            Kind::NoPerm => NOPERM,
            Kind::Auth => NOPERM,
            Kind::Config => CONFIG,
            Kind::Temporary => TEMPFAIL,
        }
    }

    /// Is this failure worth retrying later?
    pub fn is_temporary(self) -> bool {
        self == Kind::Temporary
    }

    /// How bad an outcome is when several are combined ("worst wins").
    ///
    /// A temporary failure ranks above every permanent one: when any part of
    /// a delivery may succeed later, the caller must keep the message rather
    /// than bounce it, or it would be lost.
    pub fn severity(self) -> u8 {
        match self {
            Kind::Temporary => 100,
            Kind::Config => 90,
            Kind::Usage => 80,
            Kind::CantCreate => 70,
            Kind::NoPerm => 60,
            Kind::Auth => 65,
            Kind::Unavailable => 50,
            Kind::NoUser => 40,
            Kind::Data => 30,
        }
    }
}

/// A typed error: a kind, a context (what we were doing, on what) and a cause.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    context: String,
    cause: String,
}

impl Error {
    /// A new error of `kind` while doing `context`, because of `cause`.
    pub fn new(kind: Kind, context: impl Into<String>, cause: impl fmt::Display) -> Error {
        Error {
            kind,
            context: context.into(),
            cause: cause.to_string(),
        }
    }

    /// An I/O error, classified: every storage I/O failure is temporary.
    ///
    /// Disk full, quota, EIO, a read-only remount, even a permission problem
    /// are fixed by an admin and the delivery then succeeds; bouncing the
    /// message would lose it, so all of them tell the caller to keep it.
    pub fn io(context: impl Into<String>, err: &io::Error) -> Error {
        Error::new(Kind::Temporary, context, describe_io(err))
    }

    /// The error's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The sysexits code for this error.
    pub fn code(&self) -> i32 {
        self.kind.code()
    }

    /// What we were doing.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Prefix more context: `outer: inner-context: cause`.
    pub fn within(mut self, outer: impl fmt::Display) -> Error {
        self.context = if self.context.is_empty() {
            outer.to_string()
        } else {
            format!("{outer}: {}", self.context)
        };
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.context.is_empty() {
            write!(f, "{}", self.cause)
        } else {
            write!(f, "{}: {}", self.context, self.cause)
        }
    }
}

impl std::error::Error for Error {}

/// `std::io::Error`'s text without the "(os error N)" suffix, which means
/// nothing to a mail admin reading a log line.
pub fn describe_io(err: &io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The worst of several outcomes (see [`Kind::severity`]), `None` if all were fine.
pub fn worst<'a, I: IntoIterator<Item = &'a Kind>>(kinds: I) -> Option<Kind> {
    kinds.into_iter().copied().max_by_key(|k| k.severity())
}

/// Shorthand for results in this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_beats_permanent() {
        assert_eq!(
            worst(&[Kind::Data, Kind::Temporary, Kind::NoPerm]),
            Some(Kind::Temporary)
        );
        assert_eq!(worst(&[Kind::Data]), Some(Kind::Data));
        assert_eq!(worst(&[]), None);
    }

    #[test]
    fn io_errors_are_temporary_and_readable() {
        let e = Error::io("writing x", &io::Error::from_raw_os_error(28));
        assert_eq!(e.code(), TEMPFAIL);
        assert_eq!(e.to_string(), "writing x: No space left on device");
    }
}
