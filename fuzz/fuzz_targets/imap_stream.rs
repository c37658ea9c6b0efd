//! The IMAP response reader driven as a stream never panics and never holds
//! more than its caps: arbitrary bytes read through buffers of every small
//! size as the answer to a `UID FETCH` of a few UIDs, with small limits.
//! Only UIDs asked for come out as messages, each at most once; no message
//! is larger than the message cap; together they stay within the batch
//! budget (or one message, when the first alone is larger); the reader then
//! goes on over the rest as plain responses with bounded text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::proto::imap::{FetchAnswer, FetchLimits, Fetched, Reader};
use std::collections::BTreeSet;
use std::io::BufReader;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let limits = FetchLimits {
        message: 1 + u64::from(knobs & 0x3f),
        batch: 1 + u64::from(knobs >> 2),
        untagged: 4096,
    };
    let asked = [1u32, 2, 3, 7];
    let wire = BufReader::with_capacity(1 + (knobs as usize % 13), rest);
    let mut r = Reader::new(wire).max_text(1024);
    let mut answer = FetchAnswer::new(1, &asked, limits);
    let mut seen = BTreeSet::new();
    let mut held = 0u64;
    while let Ok(Some(ev)) = answer.next(&mut r) {
        let uid = match ev {
            Fetched::Message(uid, body) => {
                assert!(body.len() as u64 <= limits.message);
                held += body.len() as u64;
                uid
            }
            Fetched::TooLarge(uid, size) => {
                assert!(size > limits.message);
                uid
            }
            Fetched::Deferred(uid) | Fetched::Unreadable(uid) => uid,
            Fetched::Unrequested(_) => continue,
        };
        assert!(asked.contains(&uid), "UID {uid} was not asked for");
        assert!(seen.insert(uid), "UID {uid} came twice");
    }
    assert!(held <= limits.batch.max(limits.message));
    // Whatever is left, as responses of any other command.
    let mut untagged = 0;
    while let Ok(resp) = r.read_dropping(&mut untagged, 1 << 16) {
        assert!(resp.text.len() <= 1024);
        assert!(
            resp.literals
                .iter()
                .all(|l| matches!(l, postline::proto::imap::Literal::Dropped(_)))
        );
    }
});
