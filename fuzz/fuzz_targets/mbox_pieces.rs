//! An mbox cut into pieces (`Pieces`, for mail-trace's threads) gives the
//! header blocks one headers-only splitter gives over the whole input, in
//! order, and each piece holds the messages it says; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::mboxfmt::{Format, Piece, Pieces, Splitter, header_blocks};

fuzz_target!(|input: &[u8]| {
    let Some((&t, data)) = input.split_first() else {
        return;
    };
    let target = usize::from(t % 64) + 1;
    let mut whole = Vec::new();
    let mut sp = Splitter::new(data, Format::Mboxrd).headers_only();
    loop {
        match sp.next_entry() {
            Ok(Some(e)) => whole.push(e),
            Ok(None) => break,
            Err(_) => return,
        }
    }
    let mut got = Vec::new();
    let mut pieces = Pieces::new(data, target);
    while let Some(p) = pieces.next_piece().unwrap() {
        match p {
            Piece::Messages { data, starts } => {
                let n = got.len();
                got.extend(header_blocks(&data, &starts));
                assert_eq!(got.len() - n, starts.len());
            }
            Piece::Rest => {
                let rest = std::io::BufReader::new(pieces.into_rest());
                let mut sp = Splitter::new(rest, Format::Mboxrd).headers_only();
                while let Some(e) = sp.next_entry().unwrap() {
                    got.push(e);
                }
                break;
            }
        }
    }
    assert_eq!(got, whole);
});
