//! The mbox splitter never panics, and quoting round-trips: a message quoted
//! (mboxrd) and split again comes back byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::mboxfmt::{Format, Splitter, from_line, quote_into};

fuzz_target!(|data: &[u8]| {
    let mut sp = Splitter::new(data, Format::Mboxrd);
    while let Ok(Some(_)) = sp.next_entry() {}

    let msg = postline::message::normalize(data.iter().map(|&c| if c == b'\r' { b'\n' } else { c }).collect());
    if msg.is_empty() {
        return;
    }
    let mut out = from_line("a@b", std::time::UNIX_EPOCH);
    quote_into(&msg, Format::Mboxrd, &mut out);
    out.push(b'\n');
    let mut sp = Splitter::new(&out[..], Format::Mboxrd);
    let e = sp.next_entry().unwrap().unwrap();
    assert_eq!(e.data, msg);
});
