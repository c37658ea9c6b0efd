//! The POP3 response decoding never panics: status lines, response codes,
//! APOP timestamps and multi-line bodies (dot-unstuffing) over any bytes,
//! read through buffers of every small size; a decoded body is never longer
//! than what was read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::proto::pop3;
use std::io::BufReader;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let _ = pop3::parse_status(rest);
    let text = String::from_utf8_lossy(rest);
    let _ = pop3::response_code(&text);
    let _ = pop3::apop_timestamp(&text);
    let mut r = BufReader::with_capacity(1 + (first as usize % 32), rest);
    let mut out = Vec::new();
    if pop3::read_multiline(&mut r, &mut out, 256).is_ok() {
        assert!(out.len() <= rest.len());
    }
    let mut line = Vec::new();
    let mut r = BufReader::with_capacity(1 + (first as usize % 7), rest);
    let _ = pop3::read_line_into(&mut r, &mut line, 64);
    assert!(line.len() <= 64);
});
