//! The Received parser, and the whole trace analysis, never panic on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::trace::{chain, collect, received};

fuzz_target!(|data: &[u8]| {
    let _ = received::parse_bytes(data);
    let _ = collect(data);
    let _ = chain::analyse(data);
});
