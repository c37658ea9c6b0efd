//! mail-recv's domain: what the SMTP/LMTP server
//! ([`crate::proto::smtp::server`]) asks about recipients and messages.
//!
//! - [`policy`]: local, relayed or refused, and why (`--explain`);
//! - [`template`]: `--deliver TEMPLATE` paths from `{local}`/`{domain}`;
//! - [`command`]: delivery through `-- COMMAND ARGS...` and its exit codes;
//! - [`checkpassword`]: AUTH through the checkpassword interface;
//! - [`backend`]: the [`crate::proto::smtp::server::Backend`] tying them to
//!   the store, the delivery command and the queue;
//! - [`listen`]: the `--listen` listener (a thread per session, a cap,
//!   graceful stop).
//!
//! Guarantee: **250 from mail-recv means stored**: every 2xx the backend
//! returns after the data is for a message that is durable where it went
//! (stored, delivered by a command that exited 0, or queued).

pub mod backend;
pub mod checkpassword;
pub mod command;
pub mod listen;
pub mod policy;
pub mod template;
