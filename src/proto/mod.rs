//! The wire protocols: everything that talks to a peer over a socket.
//!
//! Owns the clients (and, for SMTP, room for the server that mail-recv
//! adds beside the client): [`smtp`] (SMTP and LMTP), [`pop3`], [`imap`],
//! and what they share: [`tls`] (connecting, TLS policy, the stream),
//! [`pace`] (the exchange budget every connection keeps), [`sasl`],
//! [`dns`] (MX lookups for direct delivery) and [`transcript`] (the `-v`
//! dialogue and the one escaper of peer text).
//!
//! Guarantees kept by every module here: no panic on any byte a peer
//! sends; nothing held in proportion to what a peer sends beyond the
//! documented caps; no exchange past its deadline; secrets only through
//! the redacting transcript call; peer text escaped before it is shown.
//! Domain logic (what to store, when to delete, queues) lives outside, in
//! `fetch`, `send` and `queue`, which use these clients.

pub mod dns;
pub mod imap;
pub mod pace;
pub mod pop3;
pub mod sasl;
pub mod smtp;
pub mod tls;
pub mod transcript;
