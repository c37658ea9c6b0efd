//! The integration tests: one binary, a module per tool, a small harness.
//!
//! Run with `cargo test --test cli` (or `make test`). Tests that need root
//! (Dovecot, a tmpfs for the full-disk case) skip with a note when not root,
//! unless `POSTLINE_REQUIRE_ALL=1` or `CI` is set, where they fail instead.

mod dns;
mod harness;
mod hostile;
mod mta;

mod courier;
mod deliver;
mod docs;
mod fetch;
mod pop3;
mod queue;
mod recv;
mod send;
mod sieve;
mod sieve_actions;
mod smtp;
mod trace;
mod trace_mta;
mod trace_verify;
