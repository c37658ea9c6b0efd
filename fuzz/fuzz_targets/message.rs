//! Header parsing, normalisation and edits never panic, and never touch the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::message::{self, Message};

fuzz_target!(|data: &[u8]| {
    let norm = message::normalize(data.to_vec());
    let mut m = Message::new(norm.clone());
    let _ = m.message_id();
    let _ = m.delivered_to("a@b");
    m.replace_at_top(&["Return-Path"], &["Return-Path: <x@y>\n".to_string()]);
    assert!(m.bytes().len() + 200 >= norm.len());
    let _ = message::split_from_line(data);
});
