//! mail-deliver: store one message (or an mbox stream) in Maildirs and mboxes.
//!
//! Built without Rust's runtime set-up (`no_main`): an MTA starts it once
//! per message, so its start-up is part of every delivery's cost; see
//! `postline::tools::main_bare` for what that set-up did and is done there.
// The unit-test build of this file keeps the harness's own main.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    use postline::tools::{deliver, main_bare};
    main_bare("mail-deliver", deliver::command, deliver::run)
}
