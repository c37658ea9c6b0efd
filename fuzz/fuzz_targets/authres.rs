//! The Authentication-Results, ARC, Received-SPF and DKIM tag-list parsers
//! never panic, and a header block of such fields analyses without panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::trace::{authres, chain};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = authres::parse(&s);
    let _ = authres::parse_arc(&s);
    let _ = authres::parse_received_spf(&s);
    let _ = authres::parse_signature(&s, true);
    let _ = authres::parse_signature(&s, false);
    for name in ["Authentication-Results", "ARC-Authentication-Results", "DKIM-Signature", "ARC-Seal"] {
        let mut block = format!("{name}: ").into_bytes();
        block.extend_from_slice(data);
        let _ = chain::analyse(&block);
    }
});
