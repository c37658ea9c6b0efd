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

/// Where a failure came from: decides, with the [`Kind`], how a tool that
/// has its own exit classes (mail-fetch follows fetchmail) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Not said (the classification falls back to the kind).
    Unknown,
    /// This machine: files, disks, locks, children, configuration.
    Local,
    /// The network: connecting, reading, writing, timeouts.
    Network,
    /// TLS: the handshake, a certificate, a pin.
    Tls,
    /// The peer broke the protocol: a reply it may not send, bad syntax,
    /// sizes it lied about, data not asked for.
    Protocol,
    /// The peer refused our credentials.
    Auth,
}

/// A typed error: a kind, an origin, a context (what we were doing, on
/// what) and a cause, which keeps the I/O error kind when there was one.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    origin: Origin,
    context: String,
    cause: String,
    io: Option<io::ErrorKind>,
}

impl Error {
    /// A new error of `kind` while doing `context`, because of `cause`.
    pub fn new(kind: Kind, context: impl Into<String>, cause: impl fmt::Display) -> Error {
        Error {
            kind,
            origin: Origin::Unknown,
            context: context.into(),
            cause: cause.to_string(),
            io: None,
        }
    }

    /// An I/O error, classified: every storage I/O failure is temporary.
    ///
    /// Disk full, quota, EIO, a read-only remount, even a permission problem
    /// are fixed by an admin and the delivery then succeeds; bouncing the
    /// message would lose it, so all of them tell the caller to keep it.
    pub fn io(context: impl Into<String>, err: &io::Error) -> Error {
        let mut e = Error::new(Kind::Temporary, context, describe_io(err));
        e.io = Some(err.kind());
        e
    }

    /// A network I/O error talking to a peer: temporary, [`Origin::Network`],
    /// the I/O kind kept (so a timeout can be told apart).
    pub fn net(context: impl Into<String>, err: &io::Error) -> Error {
        Error::io(context, err).from_origin(Origin::Network)
    }

    /// The peer broke the protocol: [`Kind::Unavailable`] (a server that
    /// says what it may not is not fixed by retrying at once), origin
    /// [`Origin::Protocol`].
    pub fn protocol(context: impl Into<String>, cause: impl fmt::Display) -> Error {
        Error::new(Kind::Unavailable, context, cause).from_origin(Origin::Protocol)
    }

    /// This error with `origin` (replacing what it had).
    pub fn from_origin(mut self, origin: Origin) -> Error {
        self.origin = origin;
        self
    }

    /// This error with `origin` when it had none.
    pub fn or_origin(mut self, origin: Origin) -> Error {
        if self.origin == Origin::Unknown {
            self.origin = origin;
        }
        self
    }

    /// This error as another kind (a caller that knows better what the
    /// failure means to it: mail-fetch counts a password command that fails
    /// as a configuration error).
    pub fn with_kind(mut self, kind: Kind) -> Error {
        self.kind = kind;
        self
    }

    /// The error's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Where it came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The I/O error kind behind it, if it was one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        self.io
    }

    /// Did a deadline or timeout end it? (Linux reports a socket timeout as
    /// `WouldBlock`.)
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.io,
            Some(io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
        )
    }

    /// The sysexits code for this error.
    pub fn code(&self) -> i32 {
        self.kind.code()
    }

    /// What we were doing.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Why it failed.
    pub fn cause(&self) -> &str {
        &self.cause
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

/// `.context("what we were doing")` on I/O results: the one way an
/// `io::Error` becomes an [`Error`] ([`Error::io`], local and temporary),
/// instead of `.map_err(|e| Error::io(..., &e))` at every call.
pub trait Context<T> {
    /// Turn an I/O failure into an [`Error`] with this context.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// [`Context::context`] with the context built only on failure.
    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T>;
    /// A network I/O failure ([`Error::net`]).
    fn net_context(self, context: impl Into<String>) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, io::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::io(context, &e).or_origin(Origin::Local))
    }
    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::io(f(), &e).or_origin(Origin::Local))
    }
    fn net_context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::net(context, &e))
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
    fn errors_keep_their_origin_and_io_kind() {
        let r: std::result::Result<(), io::Error> =
            Err(io::Error::new(io::ErrorKind::TimedOut, "slow"));
        let e = r.net_context("reading the greeting").unwrap_err();
        assert_eq!((e.kind(), e.origin()), (Kind::Temporary, Origin::Network));
        assert!(e.is_timeout());
        assert_eq!(e.to_string(), "reading the greeting: slow");
        let r: std::result::Result<(), io::Error> = Err(io::ErrorKind::StorageFull.into());
        let e = r.context("writing").unwrap_err();
        assert_eq!(e.origin(), Origin::Local);
        assert_eq!(e.io_kind(), Some(io::ErrorKind::StorageFull));
        assert!(!e.is_timeout());
        let e = Error::protocol("UID FETCH", "a literal size {-5}");
        assert_eq!(
            (e.kind(), e.origin()),
            (Kind::Unavailable, Origin::Protocol)
        );
        assert_eq!(e.or_origin(Origin::Local).origin(), Origin::Protocol);
    }

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
