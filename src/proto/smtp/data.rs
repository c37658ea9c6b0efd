//! The DATA payload: the one place a message becomes SMTP's wire form
//! ([`encode_data`], the client) and comes back from it ([`DataReader`],
//! the server).
//!
//! Guarantees:
//!
//! - **The body cannot end the DATA early.** Every bare LF and bare CR
//!   becomes CRLF, lines starting with `.` are dot-stuffed, a final CRLF is
//!   added when missing and `.` CRLF ends the payload, so the "SMTP
//!   smuggling" shapes `\n.\n`, `\r\n.\r` and `\n.\r\n` arrive as
//!   dot-stuffed lines, never as an end of data.
//! - **Only CRLF `.` CRLF ends what a client sends.** [`DataReader`] ends
//!   DATA on exactly those five octets (the message's first line counts as
//!   following a CRLF: the DATA command's). A bare LF or bare CR is a line
//!   end for the stored message (normalised to CRLF, or noted so the
//!   server refuses it: [`BareLf`]), but the line after it is never a
//!   place the terminator can start, nor a dot there un-stuffed.
//! - **Bounded memory.** The reader keeps at most `max_size` octets of the
//!   message; past that it drops what it has, keeps counting and still
//!   finds the end, so the server can answer 552 in step with the client.

use memchr::memchr2;

use super::server::BareLf;

/// Where the reader is in the line structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After a CRLF (or at the start): a `.` here is stuffing or the end.
    LineStart,
    /// After a bare CR or LF made a line end: a `.` here is text.
    SoftStart,
    /// Inside a line.
    Text,
    /// A CR was read; the next octet decides whether it is a CRLF.
    Cr,
    /// `.` at a line start.
    Dot,
    /// `.` CR at a line start: LF ends the data.
    DotCr,
}

/// The name a header line must start with to count as a trace header.
const RECEIVED: &[u8] = b"received:";

/// Reads a message sent after DATA (dot-stuffed, up to CRLF `.` CRLF) or in
/// BDAT chunks (octets as they are), fed in pieces as they arrive: the
/// reverse of [`encode_data`] with the guarantees of the module docs.
#[derive(Debug)]
pub struct DataReader {
    /// DATA (stuffed, terminated) rather than BDAT.
    stuffed: bool,
    bare_lf: BareLf,
    max_size: u64,
    max_text_line: usize,
    state: State,
    buf: Vec<u8>,
    size: u64,
    over: bool,
    bare_seen: bool,
    done: bool,
    in_headers: bool,
    line_len: usize,
    /// The first octets of the current line, lower-cased (for `Received:`).
    prefix: [u8; 9],
    received: usize,
    long_lines: u64,
}

impl DataReader {
    /// A reader for a DATA payload: dot-stuffed, ending at CRLF `.` CRLF.
    pub fn dot(max_size: u64, max_text_line: usize, bare_lf: BareLf) -> DataReader {
        DataReader::new(true, max_size, max_text_line, bare_lf)
    }

    /// A reader for BDAT chunks: no stuffing, no terminator; the caller
    /// feeds each chunk's octets and calls [`DataReader::finish`] at LAST.
    pub fn chunked(max_size: u64, max_text_line: usize, bare_lf: BareLf) -> DataReader {
        DataReader::new(false, max_size, max_text_line, bare_lf)
    }

    fn new(stuffed: bool, max_size: u64, max_text_line: usize, bare_lf: BareLf) -> DataReader {
        DataReader {
            stuffed,
            bare_lf,
            max_size,
            max_text_line,
            state: State::LineStart,
            buf: Vec::new(),
            size: 0,
            over: false,
            bare_seen: false,
            done: false,
            in_headers: true,
            line_len: 0,
            prefix: [0; 9],
            received: 0,
            long_lines: 0,
        }
    }

    /// Read from `input`; returns how many octets were used. A DATA reader
    /// stops right after the terminator ([`DataReader::is_done`]); the
    /// rest of `input` belongs to the next command.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() && !self.done {
            let b = input[i];
            match self.state {
                State::Text | State::SoftStart | State::LineStart
                    if b != b'\r'
                        && b != b'\n'
                        && !(self.state == State::LineStart && b == b'.' && self.stuffed) =>
                {
                    // A run of text up to the next CR or LF, in one piece.
                    let end = memchr2(b'\r', b'\n', &input[i..]).map_or(input.len(), |n| i + n);
                    self.text(&input[i..end]);
                    self.state = State::Text;
                    i = end;
                    continue;
                }
                State::LineStart if b == b'.' => self.state = State::Dot,
                State::Text | State::SoftStart | State::LineStart => {
                    if b == b'\r' {
                        self.state = State::Cr;
                    } else {
                        self.bare_end();
                    }
                }
                State::Cr => {
                    if b == b'\n' {
                        self.line_end(true);
                    } else {
                        // A bare CR: a line end, and this octet is looked
                        // at again at the (soft) start of the next line.
                        self.bare_end();
                        continue;
                    }
                }
                State::Dot => match b {
                    b'\r' => self.state = State::DotCr,
                    b'\n' => {
                        // `.` LF: the dot stays text; the LF is bare.
                        self.text(b".");
                        self.bare_end();
                    }
                    _ => {
                        // The stuffing dot goes; the line goes on.
                        self.state = State::Text;
                        continue;
                    }
                },
                State::DotCr => {
                    if b == b'\n' {
                        self.done = true;
                    } else {
                        // `.` CR and something else: a dot, a bare CR.
                        self.text(b".");
                        self.bare_end();
                        continue;
                    }
                }
            }
            i += 1;
        }
        i
    }

    /// The end of the BDAT LAST chunk: a CR still pending is bare.
    pub fn finish(&mut self) {
        match self.state {
            State::Cr => self.bare_end(),
            State::Dot => self.text(b"."),
            State::DotCr => {
                self.text(b".");
                self.bare_end();
            }
            _ => {}
        }
        self.done = true;
    }

    /// Text octets of the current line.
    fn text(&mut self, t: &[u8]) {
        if self.line_len < self.prefix.len() {
            let n = (self.prefix.len() - self.line_len).min(t.len());
            for (k, &c) in t[..n].iter().enumerate() {
                self.prefix[self.line_len + k] = c.to_ascii_lowercase();
            }
        }
        self.line_len = self.line_len.saturating_add(t.len());
        self.push(t);
    }

    /// A bare CR or LF: a line end in the stored message (CRLF), after
    /// which no terminator can start.
    fn bare_end(&mut self) {
        self.bare_seen = true;
        self.line_end(false);
    }

    /// The end of a line (CRLF, or a bare one normalised to it).
    fn line_end(&mut self, crlf: bool) {
        if self.line_len + 2 > self.max_text_line {
            self.long_lines += 1;
        }
        if self.in_headers {
            if self.line_len == 0 {
                self.in_headers = false;
            } else if self.line_len >= RECEIVED.len() && self.prefix == RECEIVED {
                self.received += 1;
            }
        }
        self.line_len = 0;
        self.push(b"\r\n");
        self.state = if crlf {
            State::LineStart
        } else {
            State::SoftStart
        };
    }

    /// Keep `t` unless the message is already too big (then drop it all).
    fn push(&mut self, t: &[u8]) {
        self.size = self.size.saturating_add(t.len() as u64);
        if self.over {
            return;
        }
        if self.size > self.max_size {
            self.over = true;
            self.buf = Vec::new();
            return;
        }
        if self.buf.capacity() - self.buf.len() < t.len() {
            // Grow by doubling, but never past the size limit: what is held
            // stays within max_size (plus the first reservation).
            let want = (self.buf.capacity() * 2)
                .max(self.buf.len() + t.len())
                .max(4096)
                .min(
                    usize::try_from(self.max_size)
                        .unwrap_or(usize::MAX)
                        .max(self.buf.len() + t.len()),
                );
            self.buf.reserve_exact(want - self.buf.len());
        }
        self.buf.extend_from_slice(t);
    }

    /// DATA: the terminator was read; BDAT: [`DataReader::finish`] was called.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The message's size in octets (CRLF line ends, un-stuffed), counted
    /// past the limit.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The message went over `max_size` (it is no longer held).
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// A bare CR or LF was seen (normalised in the message; with
    /// [`BareLf::Reject`] the server refuses it).
    pub fn saw_bare_line_end(&self) -> bool {
        self.bare_seen
    }

    /// Does the message have to be refused for its line ends?
    pub fn refused_for_bare_lf(&self) -> bool {
        self.bare_seen && self.bare_lf == BareLf::Reject
    }

    /// `Received:` header fields in the message's header section.
    pub fn received(&self) -> usize {
        self.received
    }

    /// Text lines longer than the text line limit (accepted, counted).
    pub fn long_lines(&self) -> u64 {
        self.long_lines
    }

    /// The octets the reader holds (at most `max_size`, plus one
    /// reservation step when the limit is not a power of two).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The message (CRLF line ends, un-stuffed; a last line without its
    /// line end in BDAT gets none added), empty when it went over the
    /// limit.
    pub fn into_message(self) -> Vec<u8> {
        self.buf
    }
}

/// Encode a message for DATA: bare LF and bare CR become CRLF, lines starting
/// with `.` get another `.`, a final CRLF is added when missing, and `.` CRLF
/// ends it. The result is the exact bytes to write after the 354.
pub fn encode_data(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 32 + 5);
    let mut at_line_start = true;
    let mut i = 0;
    while i < msg.len() {
        let b = msg[i];
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if msg.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_data_safely() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
            (b"a\nb", b"a\r\nb\r\n.\r\n"),
            (b"", b".\r\n"),
            (b"a\n.\nb\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r\n.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b".\n..x\n", b"..\r\n...x\r\n.\r\n"),
            (b"a\rb\r", b"a\r\nb\r\n.\r\n"),
            (b"x.y\n", b"x.y\r\n.\r\n"),
            (b"\r\r\n\n", b"\r\n\r\n\r\n.\r\n"),
        ];
        for (msg, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&encode_data(msg)),
                String::from_utf8_lossy(want),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
        // No shape ends the data early: the only "\r\n.\r\n" is the end.
        let nasty = b"x\n.\n\r\n.\r\r.\n\n.\r\n.\r\r\n.\r\n";
        let enc = encode_data(nasty);
        let end = enc.windows(5).position(|w| w == b"\r\n.\r\n").unwrap();
        assert_eq!(end + 5, enc.len());
        assert!(!enc.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'));
    }

    /// Feed `input` in pieces of `step`; the message and what was used.
    fn read(input: &[u8], step: usize, bare: BareLf) -> (DataReader, usize) {
        let mut r = DataReader::dot(1 << 20, 1000, bare);
        let mut used = 0;
        while used < input.len() && !r.is_done() {
            let end = (used + step).min(input.len());
            used += r.feed(&input[used..end]);
        }
        (r, used)
    }

    #[test]
    fn reads_back_what_encode_data_writes() {
        let msgs: &[&[u8]] = &[
            b"a\r\nb\r\n",
            b"",
            b".\r\n..x\r\n",
            b"x.y\r\n.\r\n",
            b"Subject: x\r\n\r\nbody",
        ];
        for m in msgs {
            let enc = encode_data(m);
            for step in [1, 2, 3, 7, 1000] {
                let (r, used) = read(&enc, step, BareLf::Reject);
                assert!(r.is_done());
                assert_eq!(used, enc.len());
                assert!(!r.saw_bare_line_end());
                let mut want = m.to_vec();
                if !want.is_empty() && !want.ends_with(b"\r\n") {
                    want.extend_from_slice(b"\r\n");
                }
                assert_eq!(r.into_message(), want, "{m:?} step {step}");
            }
        }
    }

    #[test]
    fn only_crlf_dot_crlf_ends_the_data() {
        for shape in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\r.\n",
            b"\n.\r",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\r\n\0.\r\n",
            b"\r\n.\0\r\n",
            b"\r\n .\r\n",
        ] {
            let input = [&b"one"[..], shape, b"two\r\n.\r\nNEXT"].concat();
            for step in [1, 4, 1000] {
                let (r, used) = read(&input, step, BareLf::Normalize);
                assert!(r.is_done(), "{shape:?}");
                assert_eq!(&input[used..], b"NEXT", "{shape:?}");
                let m = r.into_message();
                assert!(m.ends_with(b"two\r\n"), "{shape:?}: {m:?}");
                // Every line end stored is a CRLF.
                for (i, &b) in m.iter().enumerate() {
                    if b == b'\n' {
                        assert_eq!(m[i - 1], b'\r', "{shape:?}: {m:?}");
                    }
                    if b == b'\r' {
                        assert_eq!(m.get(i + 1), Some(&b'\n'), "{shape:?}: {m:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn bare_line_ends_are_noted_and_counted_headers_stop_at_the_body() {
        let (r, _) = read(b"a\nb\r\n.\r\n", 1000, BareLf::Reject);
        assert!(r.refused_for_bare_lf());
        let (r, _) = read(b"a\nb\r\n.\r\n", 1000, BareLf::Normalize);
        assert!(r.saw_bare_line_end() && !r.refused_for_bare_lf());
        assert_eq!(r.into_message(), b"a\r\nb\r\n");
        let (r, _) = read(
            b"Received: a\r\n\tfolded\r\nRECEIVED:b\r\nX: y\r\n\r\nReceived: body\r\n.\r\n",
            3,
            BareLf::Normalize,
        );
        assert_eq!(r.received(), 2);
        let long = [b"x".repeat(1200), b"\r\n.\r\n".to_vec()].concat();
        let (r, _) = read(&long, 1000, BareLf::Normalize);
        assert_eq!(r.long_lines(), 1);
        assert_eq!(r.size(), 1202);
    }

    #[test]
    fn bdat_chunks_are_not_unstuffed_and_a_split_crlf_is_one() {
        let mut r = DataReader::chunked(100, 1000, BareLf::Reject);
        r.feed(b"a\r");
        r.feed(b"\n.\r\n..x\r");
        assert!(!r.is_done());
        r.finish();
        assert!(r.is_done());
        assert!(r.refused_for_bare_lf(), "a trailing CR is bare");
        assert_eq!(r.into_message(), b"a\r\n.\r\n..x\r\n");
        let mut r = DataReader::chunked(4, 1000, BareLf::Normalize);
        r.feed(b"12345");
        r.finish();
        assert!(r.is_over());
        assert_eq!(r.size(), 5);
    }
}
