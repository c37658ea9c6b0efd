//! SMTP and LMTP: the one client core that mail-send, mail-queue and
//! mail-fetch share, split along the parts of the protocol the way lettre
//! splits it, so that the server side can share them:
//!
//! - [`reply`]: [`Reply`], parsing reply lines and whole replies, the
//!   [`Stage`] a reply answers and what a non-positive one means there;
//! - [`capabilities`]: what EHLO/LHLO announce ([`Capabilities`]) and the
//!   ESMTP parameters built from them ([`MailParams`], [`xtext`]);
//! - [`data`]: the DATA encoding ([`encode_data`]): every bare CR/LF
//!   becomes CRLF, dot-stuffing, one terminator;
//! - [`client`]: [`Client`] over any [`Exchange`] stream: the greeting,
//!   EHLO/HELO or LHLO, STARTTLS, AUTH, one mail transaction
//!   ([`Client::send`]) with PIPELINING when offered (MAIL, every RCPT and
//!   DATA in one write: one round trip), QUIT.
//!
//! - [`server`]: the server side (mail-recv: an SMTP/LMTP receiver,
//!   issue 14), [`server::serve`] over any stream that can
//!   [`server::Upgrade`] to TLS, beside the client; it shares [`Reply`]
//!   and `data` (the reverse of the encoding: [`data::DataReader`]
//!   un-stuffs up to the terminator).
//!
//! Everything public keeps its path `crate::proto::smtp::Name`: the parts
//! are re-exported here.
//!
//! Guarantees:
//!
//! - **No panic on any server bytes.** A malformed reply, a reply line longer
//!   than [`MAX_LINE`] or a reply of more than [`MAX_REPLY_LINES`] lines is a
//!   [`Kind::Temporary`] error, as are connection errors, EOF and timeouts.
//! - **A 4xx is temporary at every stage** (greeting, hello, MAIL, RCPT,
//!   DATA, after the final dot). A 5xx is permanent: [`Kind::NoUser`] for
//!   550, 551 and 553 on RCPT TO (the mailbox is unknown or unusable), and
//!   [`Kind::Unavailable`] for every other 5xx.
//! - **The body cannot end the DATA early.** Every bare LF and bare CR
//!   becomes CRLF, lines starting with `.` are dot-stuffed, a final CRLF is
//!   added when missing and `.` CRLF ends the payload; the whole payload is
//!   written with one `write_all`. So the "SMTP smuggling" shapes `\n.\n`,
//!   `\r\n.\r` and `\n.\r\n` arrive as dot-stuffed lines, never as an end of
//!   data.
//! - **Per-recipient outcomes.** [`Client::send`] reports every recipient's
//!   fate with the server's reply; DATA is sent only when at least one
//!   recipient was accepted; with LMTP each accepted recipient gets its own
//!   reply after the final dot.
//! - **Only the reply a stage allows counts.** 220 to the greeting and
//!   STARTTLS, 250 to EHLO/LHLO/HELO, 2xx to MAIL, RCPT and after the final
//!   dot (with LMTP, each accepted recipient's own reply), 354 only to DATA,
//!   334 only inside AUTH. A 3xx where a 2xx belongs is a server out of
//!   step: a temporary failure, never a delivery.
//! - **A reply counts only for what the server was sent.** Bytes already
//!   read when a command or the message is about to go out answer nothing
//!   yet sent (a desynchronised or injecting peer): a [`Kind::Temporary`]
//!   error, and nothing more is written. So a "250" that arrives with the
//!   354 is never taken for the final reply.
//! - **Pipelined replies each get a fresh budget** ([`Exchange::arm`]), so
//!   a slow but honest server is not cut off by [`crate::proto::pace`] while a
//!   dripping one still is.
//! - **No command injection.** Addresses holding CR, LF, NUL, `<` or `>` are
//!   refused ([`Kind::Data`]) before anything is written.
//!
//! - **STARTTLS is never half done.** [`Client::starttls`] refuses to go on
//!   when the server sent anything after its 220 (a man in the middle
//!   injecting plain-text replies, CVE-2011-0411 style), forgets every
//!   capability learnt in clear and says EHLO again over TLS.
//! - **Credentials stay off the transcript.** [`Client::auth`] sends its
//!   lines through [`Transcript::sent_secret`]; a 535 (and every other 5xx
//!   to AUTH) is [`Kind::Auth`], a 4xx temporary.
//! - MAIL FROM carries SIZE, BODY=8BITMIME (8-bit message and the server
//!   offers it), SMTPUTF8 (non-ASCII address) and the DSN parameters
//!   RET/ENVID (xtext) and NOTIFY when the server offers DSN.
//!
//! [`Kind::Auth`]: crate::exit::Kind::Auth
//! [`Kind::Data`]: crate::exit::Kind::Data
//! [`Kind::NoUser`]: crate::exit::Kind::NoUser
//! [`Kind::Temporary`]: crate::exit::Kind::Temporary
//! [`Kind::Unavailable`]: crate::exit::Kind::Unavailable
//! [`Transcript::sent_secret`]: crate::proto::transcript::Transcript::sent_secret

pub mod capabilities;
pub mod client;
pub mod data;
pub mod reply;
pub mod server;

pub use crate::proto::Exchange;
pub use capabilities::{Capabilities, MailParams, xtext};
pub use client::{Client, Outcome, RcptResult, SharedTranscript, Status};
pub use data::encode_data;
pub use reply::{MAX_LINE, MAX_REPLY_LINES, Reply, Stage, parse_reply, parse_reply_line};

/// Which protocol the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// SMTP (RFC 5321): EHLO, falling back to HELO on a 5xx.
    Smtp,
    /// LMTP (RFC 2033): LHLO, one reply per accepted recipient after DATA.
    Lmtp,
}
