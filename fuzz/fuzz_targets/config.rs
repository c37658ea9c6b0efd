//! The config file parser and the duration and fingerprint parsers never
//! panic: any text is a config or a one-line error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::{config, proto::{tls}};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = config::Config::parse(&text) {
        let _ = e.to_string();
    }
    let _ = config::parse_duration(&text);
    let _ = tls::parse_fingerprint(&text);
    let _ = tls::TlsMode::parse(&text);
});
