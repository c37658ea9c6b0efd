//! The IMAP client mail-fetch reads mailboxes with (RFC 3501, with UIDPLUS,
//! IDLE and SASL-IR where offered): connecting (implicit TLS or a required
//! STARTTLS), LOGIN or AUTHENTICATE PLAIN/LOGIN/XOAUTH2, SELECT, UID SEARCH,
//! batched `UID FETCH ... BODY.PEEK[]`, flags, UID EXPUNGE and IDLE.
//!
//! In two parts: [`response`] reads what the server sends (the bounded
//! [`Reader`] over any `BufRead`, and [`FetchAnswer`], which judges one
//! FETCH answer), and [`client`] holds the session ([`Imap`], generic over
//! its [`crate::proto::Exchange`] stream; connecting and STARTTLS need the
//! network stream). Everything public keeps its path
//! `crate::proto::imap::Name`.
//!
//! Written on the stream of `tls.rs` rather than on the `imap` crate: that
//! crate cannot send STARTTLS on a client it did not connect itself, panics
//! on some server replies (an IDLE refused) and logs through `eprintln!`,
//! where our transcript must redact credentials. This client does only what
//! fetching needs, and its guarantees are:
//!
//! - **No panic, no plain text by surprise.** Every server reply, however
//!   malformed, becomes an [`Error`]; with [`TlsMode::Starttls`] a server
//!   that does not offer STARTTLS is refused before any credential is sent.
//! - **Exact bytes.** A message is the literal the server sent for
//!   `BODY[]`, byte for byte (CRLF line ends as on the wire).
//! - **Credentials never logged**: they go through
//!   [`Transcript::sent_secret`]; message literals appear in the
//!   transcript only as their size.
//! - **Memory and time follow what we asked for, not what the server
//!   sends.** Responses are read by [`Reader`] (over any `BufRead`, so the
//!   fuzz target drives it with arbitrary bytes) and handed on one at a
//!   time, never collected: a response's text is capped at [`MAX_TEXT`], a
//!   literal nobody asked for is read past in chunks, a message body is held
//!   only up to [`FetchLimits`] (`--max-size`, else [`MAX_MESSAGE`], and the
//!   batch's byte budget), judged by the bytes received rather than by the
//!   RFC822.SIZE claimed, and one command may bring at most
//!   [`MAX_UNTAGGED`] bytes it did not ask for.
//! - **Only what was asked for is a message.** A FETCH answer yields a
//!   message only for a UID in the request, at most once
//!   ([`FetchAnswer`]); a body for any other UID, or without one, is
//!   reported as [`Fetched::Unrequested`], so it is never stored, deleted or
//!   remembered.
//! - **Server text is shown escaped**: control characters in replies reach
//!   neither error messages nor the transcript raw ([`printable`]).
//! - Errors have kinds: network trouble is [`Kind::Temporary`], refused
//!   credentials [`Kind::Auth`], a refused or malformed command or reply
//!   (a literal size that is not a number, a flood) [`Kind::Unavailable`]
//!   (a protocol error).
//!
//! [`Error`]: crate::exit::Error
//! [`Kind::Auth`]: crate::exit::Kind::Auth
//! [`Kind::Temporary`]: crate::exit::Kind::Temporary
//! [`Kind::Unavailable`]: crate::exit::Kind::Unavailable
//! [`TlsMode::Starttls`]: crate::proto::tls::TlsMode::Starttls
//! [`Transcript::sent_secret`]: crate::proto::transcript::Transcript::sent_secret

pub mod client;
pub mod response;

pub use client::{Imap, Login, MAX_UIDS, Selected, quote, uid_set};
pub use response::{
    FetchAnswer, FetchLimits, Fetched, KeepLiteral, Literal, MAX_LITERAL, MAX_MESSAGE, MAX_TEXT,
    MAX_UNTAGGED, ReadError, Reader, Response, printable,
};
