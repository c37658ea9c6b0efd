//! The wire protocols: everything that talks to a peer over a socket.
//!
//! Owns the clients (and, for SMTP, room for the server that mail-recv
//! adds beside the client): [`smtp`] (SMTP and LMTP), [`pop3`], [`imap`],
//! and what they share: [`tls`] (connecting, TLS policy, the stream),
//! [`pace`] (the exchange budget every connection keeps), [`sasl`],
//! [`dns`] (MX lookups for direct delivery), [`stdio`] (the inetd/UCSPI
//! client on fds 0 and 1, for the server) and [`transcript`] (the `-v`
//! dialogue and the one escaper of peer text).
//!
//! Guarantees kept by every module here: no panic on any byte a peer
//! sends; nothing held in proportion to what a peer sends beyond the
//! documented caps; no exchange past its deadline; secrets only through
//! the redacting transcript call; peer text escaped before it is shown.
//! Domain logic (what to store, when to delete, queues) lives outside, in
//! `fetch`, `send` and `queue`, which use these clients.
//!
//! Every client is generic over its stream ([`Exchange`]: `Read + Write`
//! and the few hooks the deadlines need), so each is tested with scripted
//! in-memory servers and fuzzed on arbitrary bytes; only connecting and
//! the TLS upgrade (STARTTLS, STLS) need the real [`tls::Stream`] and live
//! in `impl Client<tls::Stream>` blocks.

use std::io::{Read, Write};
use std::time::Duration;

pub mod dns;
pub mod imap;
pub mod pace;
pub mod pop3;
pub mod sasl;
#[cfg(test)]
pub(crate) mod script;
pub mod smtp;
pub mod stdio;
pub mod tls;
pub mod transcript;

/// A stream a protocol client runs over: any `Read + Write`, plus the hooks
/// of the exchange budget ([`pace`]) that a client calls between replies.
///
/// The network stream ([`tls::Stream`]) and a bare [`pace::Paced`] socket
/// implement them; in-memory streams (scripted tests, fuzz targets) keep
/// the defaults, which do nothing, so the same client code runs over both.
pub trait Exchange: Read + Write {
    /// Start a fresh exchange budget: called before each reply of a
    /// pipelined batch (read without a write in between), so a slow but
    /// honest server is not cut off while a dripping one still is.
    fn arm(&mut self) {}

    /// The budget's idle time, when the stream has one (IMAP IDLE saves it
    /// before waiting longer and puts it back after).
    fn idle(&self) -> Option<Duration> {
        None
    }

    /// Change the idle time and start a new exchange with it.
    fn set_idle(&mut self, _idle: Duration) {}

    /// Is the stream encrypted?
    fn is_tls(&self) -> bool {
        false
    }

    /// End the stream politely after the last reply (TLS close_notify);
    /// best effort, since the dialogue is already over.
    fn close(&mut self) {}
}
