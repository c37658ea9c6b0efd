//! The SMTP reply parser and the EHLO capability parser never panic on any
//! server bytes, and the DATA encoder never lets a payload end early: the
//! encoded message has no bare CR or LF and one lone-dot line, its last.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::proto::smtp;

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    for l in &lines {
        let _ = smtp::parse_reply_line(l);
    }
    if let Ok(reply) = smtp::parse_reply(lines.iter().copied()) {
        let _ = smtp::Capabilities::parse(&reply);
        let _ = reply.text();
    }
    // Every CR and LF in the encoding is part of a CRLF pair, and the only
    // line that is a lone dot is the last one.
    let enc = smtp::encode_data(data);
    assert!(enc.ends_with(b".\r\n"));
    for (i, &b) in enc.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(enc.get(i + 1), Some(&b'\n'));
        }
        if b == b'\n' {
            assert!(i > 0 && enc[i - 1] == b'\r');
        }
    }
    let mut lines: Vec<&[u8]> = enc.split(|&b| b == b'\n').collect();
    assert_eq!(lines.pop(), Some(&b""[..]));
    assert_eq!(lines.pop(), Some(&b".\r"[..]));
    assert!(lines.iter().all(|l| *l != b".\r"));
});
