//! Deterministic stand-in for the cargo-fuzz targets (nightly is not
//! always at hand): a few thousand inputs built by a fixed pseudo-random
//! generator from the pieces the parsers care about, through every parser
//! and the chain analysis. None may panic; dates must be possible.

use super::{authres, chain, collect, date, received};

const PIECES: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "IPv6:",
    "IPv6:::1",
    "::ffff:",
    "from ",
    "by ",
    "with ",
    "id ",
    "for ",
    "via ",
    ";",
    " ",
    "\t",
    "\n",
    "\n ",
    "\r\n",
    "0",
    "1",
    "9",
    "12",
    "2024",
    "99",
    "255.",
    "192.0.2.1",
    "Jan",
    "Feb",
    "Mar",
    "Dec",
    "Mon, ",
    "+0000",
    "-0800",
    "PST",
    "UT",
    "Z",
    "T",
    ":",
    ".",
    ",",
    "<",
    ">",
    "@",
    "=",
    "\"",
    "\\",
    "ESMTPS",
    "LMTP",
    "TLSv1.3",
    "cipher",
    "version=",
    "envelope-from",
    "unknown",
    "localhost",
    "127.0.0.1",
    "amavisd",
    "spf=pass",
    "dkim=fail",
    "dmarc=pass",
    "header.d=",
    "smtp.mailfrom=",
    "i=1",
    "cv=fail",
    "d=",
    "s=",
    "none",
    "\u{e9}",
    "\u{ff}",
    "%",
];

/// xorshift64*: small, fixed, good enough to shuffle pieces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn input(rng: &mut Rng) -> String {
    let n = 1 + rng.below(40);
    (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect()
}

#[test]
fn no_panic_on_pseudo_random_pieces() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let start = std::time::Instant::now();
    for _ in 0..3000 {
        let s = input(&mut rng);
        let _ = received::parse(&s);
        if let Some(d) = date::parse(&s) {
            assert!(d.nanos < 1_000_000_000, "{s:?}");
            let _ = d.to_rfc3339_utc();
            let _ = d.to_rfc3339_local();
        }
        let _ = date::parse_prefix(&s);
        let _ = authres::parse(&s);
        let _ = authres::parse_arc(&s);
        let _ = authres::parse_received_spf(&s);
        let _ = authres::parse_signature(&s, true);
        let name = [
            "Received",
            "X-Received",
            "Authentication-Results",
            "ARC-Seal",
            "DKIM-Signature",
            "Received-SPF",
            "Date",
        ][rng.below(7)];
        let block = format!(
            "{name}: {s}\nReceived: {}\nFrom: {}\n\n",
            input(&mut rng),
            input(&mut rng)
        );
        let _ = collect(block.as_bytes());
        let _ = chain::analyse(block.as_bytes());
        let mut bytes = block.into_bytes();
        if !bytes.is_empty() {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        let _ = chain::analyse(&bytes);
    }
    // Generous for slow debug builds; the point is "bounded", not a benchmark.
    assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
}
