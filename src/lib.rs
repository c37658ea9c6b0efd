//! postline: small Unix mail tools over one shared library.
//!
//! The library holds every piece of logic; the binaries in `src/bin/` are thin
//! faces over [`tools`]. The library never prints, exits or panics on input:
//! it returns [`exit::Error`] values whose kind decides the exit code. See
//! `ARCHITECTURE.md` for the code map and the invariants.
// Unsafe code is denied everywhere; the one exception (ignoring SIGXFSZ in
// `tools::main`) is allowed locally and justified there.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod calendar;
pub mod child;
pub mod compose;
pub mod config;
pub mod dedup;
pub mod durable;
pub mod exit;
pub mod fetch;
pub mod mboxfmt;
pub mod message;
pub mod proto;
pub mod queue;
pub mod recv;
pub mod send;
pub mod sieve;
pub mod store;
pub mod sysnames;
pub mod tools;
pub mod trace;
