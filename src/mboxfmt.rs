//! mbox framing: `From ` separator lines, mboxrd/mboxo quoting and
//! unquoting, and a streaming splitter for mbox input.
//!
//! Owns the one rule every mbox reader depends on: inside a stored message no
//! line may begin with `From `. mboxrd (the default) quotes `>*From ` by adding
//! one `>`, so a reader can undo it exactly; mboxo quotes only `From ` and is
//! lossy, kept for readers that want it. The splitter never fails on content:
//! anything between two separators is a message.

use std::io::{self, BufRead};
use std::time::SystemTime;

use crate::calendar::asctime;

/// Which quoting an mbox uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `>*From ` gets one more `>`; reversible.
    Mboxrd,
    /// Only `From ` gets a `>`; what old readers expect.
    Mboxo,
}

impl Format {
    /// Parse `mboxrd` / `mboxo`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "mboxrd" => Some(Format::Mboxrd),
            "mboxo" => Some(Format::Mboxo),
            _ => None,
        }
    }
}

/// Does this line need a `>` in front when stored?
fn needs_quote(line: &[u8], format: Format) -> bool {
    match format {
        Format::Mboxo => line.starts_with(b"From "),
        Format::Mboxrd => {
            let n = line.iter().take_while(|&&c| c == b'>').count();
            line[n..].starts_with(b"From ")
        }
    }
}

/// Append `msg` (LF line endings, ending in a newline) to `out`, quoted.
pub fn quote_into(msg: &[u8], format: Format, out: &mut Vec<u8>) {
    out.reserve(msg.len() + 64);
    for line in msg.split_inclusive(|&c| c == b'\n') {
        if needs_quote(line, format) {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
}

/// Undo the quoting of one line (LF included or not).
pub fn unquote_line(line: &[u8], format: Format) -> &[u8] {
    match format {
        Format::Mboxrd => {
            let n = line.iter().take_while(|&&c| c == b'>').count();
            if n > 0 && line[n..].starts_with(b"From ") {
                &line[1..]
            } else {
                line
            }
        }
        Format::Mboxo => {
            if line.starts_with(b">From ") {
                &line[1..]
            } else {
                line
            }
        }
    }
}

/// The `From sender date` line (with newline) that opens a message.
///
/// The sender must be one token: whitespace in it is replaced, an empty
/// sender becomes `MAILER-DAEMON` as in Postfix's local(8). The date is the
/// asctime form in UTC, the form every reader accepts.
pub fn from_line(sender: &str, when: SystemTime) -> Vec<u8> {
    let s: String = sender
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let s = if s.is_empty() {
        "MAILER-DAEMON".to_string()
    } else {
        s
    };
    format!("From {s} {}\n", asctime(when)).into_bytes()
}

/// One message read from an mbox stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The envelope sender from its `From ` line.
    pub sender: String,
    /// The message, unquoted, LF line endings, ending in a newline.
    pub data: Vec<u8>,
}

/// Splits an mbox stream into messages, one at a time, in bounded memory
/// (one message plus one line).
///
/// A separator is a `From ` line at the start of the stream or after an empty
/// line, the rule mutt and Dovecot apply; the empty line before a separator
/// belongs to the framing and is dropped. CRLF input is read as LF. Leading
/// empty lines are skipped; content before the first separator is an error
/// the caller reports (it is not an mbox).
pub struct Splitter<R> {
    input: R,
    format: Format,
    pending_sender: Option<String>,
    started: bool,
    line: Vec<u8>,
    headers_only: bool,
    /// The most bytes of one line kept (the rest is read and dropped).
    line_limit: usize,
    /// Byte offset of the line just read, for error messages.
    pub offset: u64,
    /// The input is one message ([`header_blocks`]): its body is not
    /// passed over.
    one_message: bool,
}

/// The most a header block may hold for tools that read only headers
/// (mail-trace, [`Splitter::headers_only`]): the rest of a longer one is
/// read past, never held. Real header blocks are kilobytes; the trace
/// parsers are tested with 1 MB ones.
pub const HEADER_LIMIT: usize = 4 << 20;

/// Read one line (through its LF) from `r`, keeping at most `limit` bytes
/// of it in `out` (a cut line still ends with LF). Returns the bytes
/// consumed, so memory stays bounded whatever the input's line length.
pub fn read_line_limited<R: BufRead>(
    r: &mut R,
    out: &mut Vec<u8>,
    limit: usize,
) -> io::Result<u64> {
    let mut consumed = 0u64;
    let mut cut = false;
    loop {
        let (used, done) = {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            let (used, done) = match memchr::memchr(b'\n', buf) {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = limit.saturating_sub(out.len());
            if used > room {
                cut = true;
            }
            out.extend_from_slice(&buf[..used.min(room)]);
            (used, done)
        };
        r.consume(used);
        consumed += used as u64;
        if done {
            break;
        }
    }
    if cut && out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    Ok(consumed)
}

/// What a separator looks like from the newline before it, for memmem
/// over a buffer (built once, not at every buffer); whether it is one
/// depends on that line being blank ([`ends_blank_line`]).
static SEPARATOR: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\nFrom "));

/// Whether the line ending with the newline at `buf[j]` is blank (`\n` or
/// `\r\n`), `buf` starting at the start of a line.
fn ends_blank_line(buf: &[u8], j: usize) -> bool {
    match j {
        0 => true,
        _ if buf[j - 1] == b'\n' => true,
        1 => buf[0] == b'\r',
        _ => buf[j - 1] == b'\r' && buf[j - 2] == b'\n',
    }
}

impl<R: BufRead> Splitter<R> {
    /// A splitter over `input` undoing `format`'s quoting.
    pub fn new(input: R, format: Format) -> Splitter<R> {
        Splitter {
            input,
            format,
            pending_sender: None,
            started: false,
            line: Vec::new(),
            headers_only: false,
            line_limit: usize::MAX,
            offset: 0,
            one_message: false,
        }
    }

    /// The input, for [`Pieces`] to cut instead (before any entry is read).
    pub fn into_input(self) -> R {
        self.input
    }

    /// Keep only each message's header block (up to and including the empty
    /// line), skipping bodies, for tools that read headers of huge
    /// mailboxes. Memory stays bounded by [`HEADER_LIMIT`]: a longer header
    /// block is cut there (the rest is skipped as if it were body), and no
    /// line, of a header or a body, is held longer than that.
    pub fn headers_only(mut self) -> Splitter<R> {
        self.headers_only = true;
        self.line_limit = HEADER_LIMIT;
        self
    }

    fn read_line(&mut self) -> io::Result<bool> {
        self.line.clear();
        let n = if self.line_limit == usize::MAX {
            self.input.read_until(b'\n', &mut self.line)? as u64
        } else {
            read_line_limited(&mut self.input, &mut self.line, self.line_limit)?
        };
        self.offset += n;
        if n == 0 {
            return Ok(false);
        }
        if self.line.ends_with(b"\r\n") {
            let l = self.line.len();
            self.line.truncate(l - 2);
            self.line.push(b'\n');
        }
        Ok(true)
    }

    /// With [`Self::headers_only`]: the lines of a header block, unquoted
    /// and with LF endings, appended to `data` through the empty line that
    /// ends it or until `data` reaches the limit (`true`), or to the end of
    /// input (`false`). What [`Self::read_line`] would give line by line;
    /// lines wholly inside the reader's buffer are taken from it in place,
    /// and only a line crossing its end (or longer than the limit) goes
    /// through `read_line`. Same rules, same `offset`.
    fn header_block(&mut self, data: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            let (used, ended) = {
                let buf = match self.input.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                let mut used = 0;
                let mut ended = false;
                while let Some(j) = memchr::memchr(b'\n', buf.get(used..).unwrap_or(&[])) {
                    if j + 1 > self.line_limit {
                        break;
                    }
                    let line = buf.get(used..used + j).unwrap_or(&[]);
                    used += j + 1;
                    // `read_line` turns a final CRLF into LF.
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    data.extend_from_slice(unquote_line(line, self.format));
                    data.push(b'\n');
                    if line.is_empty() || data.len() >= self.line_limit {
                        ended = true;
                        break;
                    }
                }
                (used, ended)
            };
            self.input.consume(used);
            self.offset += used as u64;
            if ended {
                return Ok(true);
            }
            if used == 0 {
                if !self.read_line()? {
                    return Ok(false);
                }
                data.extend_from_slice(unquote_line(&self.line, self.format));
                if self.line == b"\n" || data.len() >= self.line_limit {
                    return Ok(true);
                }
            }
        }
    }

    /// Skip a body (just after the empty line ending a header block) up to
    /// and including the next separator line, whose sender becomes pending;
    /// or up to the end of input. Lines wholly inside the reader's buffer are
    /// scanned in place; only a separator or a line crossing the buffer's end
    /// goes through [`Self::read_line`]. Same rules, same `offset`.
    fn skip_body(&mut self) -> io::Result<()> {
        let mut prev_blank = true;
        loop {
            let (used, at_separator) = {
                let buf = self.input.fill_buf()?;
                if buf.is_empty() {
                    return Ok(());
                }
                // The buffer starts at a line's start. A separator is a
                // `From ` line after a blank one: the first line when the
                // one before was blank, else a `\nFrom ` whose line ending
                // at that newline is blank, found with memmem instead of
                // line by line (bodies are most of an mbox).
                if prev_blank && buf.starts_with(b"From ") {
                    (0, true)
                } else {
                    let mut found = None;
                    for j in SEPARATOR.find_iter(buf) {
                        if ends_blank_line(buf, j) {
                            found = Some(j + 1);
                            break;
                        }
                    }
                    match found {
                        Some(at) => {
                            prev_blank = true;
                            (at, true)
                        }
                        None => match memchr::memrchr(b'\n', buf) {
                            Some(k) => {
                                prev_blank = ends_blank_line(buf, k);
                                (k + 1, false)
                            }
                            None => (0, false),
                        },
                    }
                }
            };
            self.input.consume(used);
            self.offset += used as u64;
            if used > 0 && !at_separator {
                continue;
            }
            if !self.read_line()? {
                return Ok(());
            }
            if prev_blank && self.line.starts_with(b"From ") {
                self.pending_sender = Some(crate::message::from_line_sender(&self.line));
                return Ok(());
            }
            prev_blank = self.line == b"\n";
        }
    }

    /// The next message; `Ok(None)` at the end. `Err` with
    /// `InvalidData` when the stream does not start with a `From ` line.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        if !self.started {
            loop {
                if !self.read_line()? {
                    return Ok(None);
                }
                if self.line.trim_ascii().is_empty() {
                    continue;
                }
                if self.line.starts_with(b"From ") {
                    self.pending_sender = Some(crate::message::from_line_sender(&self.line));
                    self.started = true;
                    break;
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "input is not an mbox: it does not start with a \"From \" line",
                ));
            }
        }
        let Some(sender) = self.pending_sender.take() else {
            return Ok(None);
        };
        let mut data = Vec::new();
        let mut prev_blank = false;
        let mut in_body = false;
        if self.headers_only {
            // After a blank line the body starts, so no separator can come
            // first: the header lines are all that is read here.
            in_body = self.header_block(&mut data)?;
            if in_body && !self.one_message {
                self.skip_body()?;
            }
        }
        while !self.headers_only && self.read_line()? {
            if prev_blank && self.line.starts_with(b"From ") {
                self.pending_sender = Some(crate::message::from_line_sender(&self.line));
                break;
            }
            prev_blank = self.line == b"\n";
            let unq = unquote_line(&self.line, self.format);
            data.extend_from_slice(unq);
            in_body = self.headers_only && (prev_blank || data.len() >= self.line_limit);
            if in_body {
                self.skip_body()?;
                break;
            }
        }
        // The empty line before the next separator (or at the end) is framing.
        if !in_body && data.ends_with(b"\n\n") {
            data.pop();
        }
        if data.last().is_some_and(|&c| c != b'\n') {
            data.push(b'\n');
        }
        Ok(Some(Entry { sender, data }))
    }
}

/// An mbox stream cut into pieces of whole messages, so that several
/// threads can read it: [`header_blocks`] over each piece gives the
/// entries that one [`Splitter`] with [`Splitter::headers_only`] gives
/// over the whole stream, in the same order.
///
/// A piece ends just before a separator, found by the rule the splitter
/// applies (a `From ` line after a blank one), so each piece after the
/// first starts with its `From ` line; the first starts after the blank
/// lines the splitter skips. Where each message starts is recorded here,
/// so a reader can number the messages before it reads them and reads
/// only their header blocks, never their bodies again.
///
/// Memory stays bounded: a piece is about `target` bytes; a message longer
/// than [`PIECE_CAP`] is given as its header block alone and its body is
/// passed over without being held. Where the splitter would read a
/// message another way than the rule says (a header block with no blank
/// line within [`HEADER_LIMIT`]: the splitter cuts it and takes what
/// follows as body), the cutter gives [`Piece::Rest`] at that message and
/// the caller reads the rest with one splitter ([`Pieces::into_rest`]).
pub struct Pieces<R> {
    input: R,
    buf: Vec<u8>,
    /// `buf[..scanned]` has been searched for separators (a `\nFrom `
    /// starting in the last five bytes is found by the next search).
    scanned: usize,
    /// Where the separators found in `buf` after its first byte start.
    starts: Vec<usize>,
    /// Passing over the body of a message too long to hold: `buf` holds
    /// the bytes from `scanned - 2` only (what the rule looks back at).
    skipping: bool,
    /// The message at `buf[0]` is one the splitter reads its own way: the
    /// next answer is [`Piece::Rest`].
    rest: bool,
    started: bool,
    eof: bool,
    target: usize,
    /// Buffers given back ([`Pieces::recycle`]) for the next pieces.
    spare: Vec<Vec<u8>>,
}

/// What [`Pieces::next_piece`] gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Whole messages (for a message longer than [`PIECE_CAP`], its
    /// header block alone).
    Messages {
        /// The bytes, as read.
        data: Vec<u8>,
        /// Where each message's `From ` line starts in `data` (the first
        /// at 0): one entry per message.
        starts: Vec<usize>,
    },
    /// The rest of the stream is to be read with one [`Splitter`] (from
    /// [`Pieces::into_rest`]); it starts where a message starts.
    Rest,
}

/// Bytes of one message held by [`Pieces`] before it is given as its
/// header block alone: [`HEADER_LIMIT`] plus room for its `From ` line.
pub const PIECE_CAP: usize = HEADER_LIMIT + (128 << 10);

/// The longest `From ` line [`Pieces`] handles itself (the splitter cuts a
/// line at [`HEADER_LIMIT`]; far below that, nothing differs).
const FROM_LINE_MAX: usize = 64 << 10;

/// The header blocks of the messages of one piece (`data`, with `starts`
/// from [`Piece::Messages`]), as [`Splitter::headers_only`] reads them:
/// only the header blocks are read, bodies are not looked at.
pub fn header_blocks<'a>(data: &'a [u8], starts: &'a [usize]) -> impl Iterator<Item = Entry> + 'a {
    starts.iter().enumerate().filter_map(move |(i, &a)| {
        let b = starts.get(i + 1).copied().unwrap_or(data.len());
        let msg = data.get(a..b).unwrap_or(&[]);
        plain_header_block(msg).or_else(|| {
            let mut one = Splitter::new(msg, Format::Mboxrd).headers_only();
            one.one_message = true;
            one.next_entry().ok().flatten()
        })
    })
}

/// The header block of one mbox message (`From ` line first) taken as one
/// slice, when nothing in it needs the splitter's line-by-line reading: no
/// CR, no line starting with `>` (so no mboxrd quoting to undo), a short
/// `From ` line and a blank line ending the block within [`HEADER_LIMIT`].
/// Then the splitter would give exactly these bytes; otherwise `None`.
fn plain_header_block(msg: &[u8]) -> Option<Entry> {
    let f = memchr::memchr(b'\n', msg.get(..FROM_LINE_MAX.min(msg.len()))?)? + 1;
    let rest = msg.get(f..)?;
    let e = if rest.first() == Some(&b'\n') {
        1
    } else {
        memchr::memmem::find(rest, b"\n\n")? + 2
    };
    let block = rest.get(..e)?;
    let plain = e < HEADER_LIMIT
        && block.first() != Some(&b'>')
        && memchr::memchr(b'\r', msg.get(..f + e)?).is_none()
        && memchr::memmem::find(block, b"\n>").is_none();
    plain.then(|| Entry {
        sender: crate::message::from_line_sender(msg.get(..f).unwrap_or(&[])),
        data: block.to_vec(),
    })
}

impl<R: io::Read> Pieces<R> {
    /// Cut `input`, an mbox from its start (blank lines, then a `From `
    /// line), into pieces of about `target` bytes.
    pub fn new(input: R, target: usize) -> Pieces<R> {
        Pieces {
            input,
            buf: Vec::new(),
            scanned: 0,
            starts: Vec::new(),
            skipping: false,
            rest: false,
            started: false,
            eof: false,
            target: target.max(1),
            spare: Vec::new(),
        }
    }

    /// Give back a piece's buffer once read, to hold a later piece (no
    /// new memory for each piece). A few are kept; the rest are freed.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < 4 && buf.capacity() <= 2 * self.target + (64 << 10) {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// What is left of the stream, unread pieces first, for one
    /// [`Splitter`] after [`Piece::Rest`].
    pub fn into_rest(self) -> io::Chain<io::Cursor<Vec<u8>>, R> {
        io::Read::chain(io::Cursor::new(self.buf), self.input)
    }

    /// Read up to `target` more bytes (false at the end of input).
    fn fill(&mut self) -> io::Result<bool> {
        use io::Read as _;
        let want = self.target as u64;
        let before = self.buf.len();
        // Exactly: the reader fills what is there and grows nothing.
        self.buf.reserve_exact(self.target);
        loop {
            match (&mut self.input).take(want).read_to_end(&mut self.buf) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.buf.len() == before {
            self.eof = true;
        }
        Ok(!self.eof)
    }

    /// Search `buf[scanned..]` for separators. Skipping, the first one
    /// ends the skip: the bytes before it are dropped and the search
    /// starts again at the new message.
    fn scan(&mut self) {
        loop {
            let from = self.scanned;
            let mut restart = None;
            for j in SEPARATOR.find_iter(self.buf.get(from..).unwrap_or(&[])) {
                let j = from + j;
                if !ends_blank_line(&self.buf, j) {
                    continue;
                }
                if self.skipping {
                    restart = Some(j + 1);
                    break;
                }
                self.starts.push(j + 1);
            }
            match restart {
                Some(at) => {
                    self.buf.drain(..at);
                    self.skipping = false;
                    self.scanned = 0;
                    self.starts.clear();
                }
                None => {
                    self.scanned = self.scanned.max(self.buf.len().saturating_sub(5));
                    if self.skipping {
                        // The rule looks back two bytes from a newline.
                        let keep = self.scanned.saturating_sub(2);
                        self.buf.drain(..keep);
                        self.scanned -= keep;
                    }
                    return;
                }
            }
        }
    }

    /// Drop the blank lines before the first `From ` line, as the splitter
    /// does; false when the stream must go to a splitter instead (what
    /// follows them is not a `From ` line, or they are longer than
    /// [`FROM_LINE_MAX`]).
    fn start(&mut self) -> io::Result<bool> {
        loop {
            while let Some(i) = memchr::memchr(b'\n', &self.buf) {
                if !self.buf[..i].trim_ascii().is_empty() {
                    break;
                }
                self.buf.drain(..=i);
            }
            if memchr::memchr(b'\n', &self.buf).is_some() || self.eof {
                return Ok(self.buf.starts_with(b"From ") || self.buf.trim_ascii().is_empty());
            }
            if self.buf.len() >= FROM_LINE_MAX {
                return Ok(false);
            }
            self.fill()?;
        }
    }

    /// Cut the first `upto` bytes of `buf` off as a piece of the messages
    /// starting at 0 and at `starts` before `upto`.
    fn cut(&mut self, upto: usize) -> Piece {
        let mut starts = Vec::with_capacity(self.starts.len() + 1);
        starts.push(0);
        starts.extend(self.starts.iter().copied().filter(|&s| s < upto));
        let mut rest = self.spare.pop().unwrap_or_default();
        rest.extend_from_slice(self.buf.get(upto..).unwrap_or(&[]));
        self.buf.truncate(upto);
        let data = std::mem::replace(&mut self.buf, rest);
        self.starts.retain(|&s| s > upto);
        for s in &mut self.starts {
            *s -= upto;
        }
        self.scanned = self.scanned.saturating_sub(upto);
        Piece::Messages { data, starts }
    }

    /// The first message in `buf[..upto]` (the cutter's messages, from 0
    /// and at `starts`) that the splitter would read its own way: longer
    /// than [`HEADER_LIMIT`] without its header block ending (a blank
    /// line) within it.
    fn first_unruly(&self, upto: usize) -> Option<usize> {
        let bounds = std::iter::once(0).chain(self.starts.iter().copied().filter(|&s| s < upto));
        let ends = self
            .starts
            .iter()
            .copied()
            .filter(|&s| s < upto)
            .chain([upto]);
        bounds
            .zip(ends)
            .find(|&(a, b)| b - a >= HEADER_LIMIT && self.header_end(a).is_none())
            .map(|(a, _)| a)
    }

    /// The next piece; `None` at the end of the stream.
    pub fn next_piece(&mut self) -> io::Result<Option<Piece>> {
        if !self.started {
            self.fill()?;
            self.started = true;
            if !self.start()? {
                return Ok(Some(Piece::Rest));
            }
            if self.buf.trim_ascii().is_empty() && self.eof {
                self.buf.clear();
            }
        }
        if self.rest {
            return Ok(Some(Piece::Rest));
        }
        loop {
            self.scan();
            let last = self.starts.last().copied();
            let upto = match last {
                Some(l) if !self.skipping && (self.buf.len() >= self.target || self.eof) => Some(l),
                _ if !self.skipping && self.eof && !self.buf.is_empty() => Some(self.buf.len()),
                _ => None,
            };
            if let Some(upto) = upto {
                return Ok(Some(match self.first_unruly(upto) {
                    Some(0) => {
                        self.rest = true;
                        Piece::Rest
                    }
                    Some(a) => {
                        self.rest = true;
                        self.cut(a)
                    }
                    None => self.cut(upto),
                }));
            }
            if self.eof {
                self.buf.clear();
                return Ok(None);
            }
            if !self.skipping && last.is_none() && self.buf.len() >= PIECE_CAP {
                // One message longer than is held: its header block alone,
                // when the splitter would end that block at a blank line.
                let Some(e) = self.header_end(0) else {
                    self.rest = true;
                    return Ok(Some(Piece::Rest));
                };
                let data = self.buf[..e].to_vec();
                let keep = self.scanned.saturating_sub(2).max(e);
                self.buf.drain(..keep);
                self.buf.shrink_to(2 * self.target);
                self.scanned -= keep;
                self.skipping = true;
                return Ok(Some(Piece::Messages {
                    data,
                    starts: vec![0],
                }));
            }
            self.fill()?;
        }
    }

    /// Where the header block of the message at `buf[a]` ends (after its
    /// blank line), when its `From ` line is short and the block, blank
    /// line included, is shorter than [`HEADER_LIMIT`]: then the splitter
    /// ends it at that blank line too.
    fn header_end(&self, a: usize) -> Option<usize> {
        let msg = self.buf.get(a..)?;
        let f = memchr::memchr(b'\n', msg.get(..FROM_LINE_MAX.min(msg.len()))?)? + 1;
        let mut at = f;
        loop {
            let i = memchr::memchr(b'\n', msg.get(at..)?)?;
            let line = &msg[at..at + i];
            at += i + 1;
            if at - f >= HEADER_LIMIT {
                return None;
            }
            if line.is_empty() || line == b"\r" {
                return Some(a + at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn mboxrd_round_trips() {
        let msg = b"S: x\n\nFrom here\n>From there\n>>From far\nFromage\n";
        let mut out = from_line("a@b", UNIX_EPOCH);
        quote_into(msg, Format::Mboxrd, &mut out);
        out.push(b'\n');
        assert!(out.starts_with(b"From a@b Thu Jan  1 00:00:00 1970\n"));
        let mut sp = Splitter::new(&out[..], Format::Mboxrd);
        let e = sp.next_entry().unwrap().unwrap();
        assert_eq!(e.data, msg);
        assert_eq!(e.sender, "a@b");
        assert!(sp.next_entry().unwrap().is_none());
    }

    #[test]
    fn mboxo_quotes_only_from() {
        let mut out = Vec::new();
        quote_into(b"From x\n>From y\n", Format::Mboxo, &mut out);
        assert_eq!(out, b">From x\n>From y\n");
    }

    #[test]
    fn splits_only_after_blank_lines() {
        let input =
            b"\r\nFrom a x\r\nS: 1\r\n\r\nbody\r\nFrom not a separator\r\n\r\nFrom b y\nS: 2\n\nb2";
        let mut sp = Splitter::new(&input[..], Format::Mboxrd);
        let a = sp.next_entry().unwrap().unwrap();
        assert_eq!(a.data, b"S: 1\n\nbody\nFrom not a separator\n");
        let b = sp.next_entry().unwrap().unwrap();
        assert_eq!(
            (b.sender.as_str(), &b.data[..]),
            ("b", &b"S: 2\n\nb2\n"[..])
        );
        assert!(sp.next_entry().unwrap().is_none());
    }

    #[test]
    fn headers_only_skips_bodies() {
        let input = b"From a x\nS: 1\n\nbody\n\nFrom b y\nS: 2\nT: 3\n\nb2\n";
        let mut sp = Splitter::new(&input[..], Format::Mboxrd).headers_only();
        assert_eq!(sp.next_entry().unwrap().unwrap().data, b"S: 1\n\n");
        assert_eq!(sp.next_entry().unwrap().unwrap().data, b"S: 2\nT: 3\n\n");
        assert!(sp.next_entry().unwrap().is_none());
    }

    /// headers_only gives each message's header portion as full mode sees
    /// it, whatever the bodies hold and however the reader's buffer cuts them.
    /// Every entry read through [`Pieces`] (a headers-only splitter per
    /// piece, then one over the rest after [`Piece::Rest`]), with the
    /// count each piece claimed checked against what its splitter read.
    fn through_pieces(input: &[u8], target: usize) -> (Vec<Entry>, bool) {
        let mut out = Vec::new();
        let mut pieces = Pieces::new(input, target);
        while let Some(p) = pieces.next_piece().unwrap() {
            match p {
                Piece::Messages { data, starts } => {
                    // The same entries as one splitter over the piece.
                    let mut sp = Splitter::new(&data[..], Format::Mboxrd).headers_only();
                    let mut whole = Vec::new();
                    while let Some(e) = sp.next_entry().unwrap() {
                        whole.push(e);
                    }
                    let got: Vec<Entry> = header_blocks(&data, &starts).collect();
                    assert_eq!(got, whole, "target {target}, piece {data:?}");
                    out.extend(got);
                }
                Piece::Rest => {
                    let rest = io::BufReader::new(pieces.into_rest());
                    let mut sp = Splitter::new(rest, Format::Mboxrd).headers_only();
                    while let Some(e) = sp.next_entry().unwrap() {
                        out.push(e);
                    }
                    return (out, true);
                }
            }
        }
        (out, false)
    }

    fn whole(input: &[u8]) -> Vec<Entry> {
        let mut sp = Splitter::new(input, Format::Mboxrd).headers_only();
        let mut v = Vec::new();
        while let Some(e) = sp.next_entry().unwrap() {
            v.push(e);
        }
        v
    }

    #[test]
    fn pieces_give_what_one_splitter_gives() {
        let fixed: &[&[u8]] = &[
            b"From a x\nS: 1\n\nbody\nFrom not after a blank\n>From quoted\n\n\
            From b y\r\nS: 2\r\nT: 3\r\n\r\nline\r\nFrom still body\r\n\r\n\r\nmore\r\n\r\n\
            From c z\nS: 3\n\n\nFrom d w\nS: 4\n\nlast line without newline\n\nFrom e v\nS: 5\n\nend",
            b"\n \n\t\r\nFrom a x\nS: 1\n\nFrom b y\nS: 2\n",
            b"From a x\nFrom b y\nS: 1\n\n\r\nFrom c\r\n\r\nFrom d\n\r\r\nFrom e\n",
            b"From only",
            b"From a\n\nFrom b\n\nFrom c\n\n",
            b"\n\n",
        ];
        // Random mboxes from lines that matter to the rule.
        let words: [&[u8]; 10] = [
            b"From a@b Mon\n",
            b"\n",
            b"\r\n",
            b"\r\r\n",
            b"S: x\n",
            b">From q\n",
            b"From \n",
            b"body line\n",
            b"From",
            b"\r",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut inputs: Vec<Vec<u8>> = fixed.iter().map(|f| f.to_vec()).collect();
        for _ in 0..300 {
            let mut v = b"From first x\n".to_vec();
            let n = (seed % 60) as usize;
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                v.extend_from_slice(words[(seed % words.len() as u64) as usize]);
            }
            inputs.push(v);
        }
        for input in &inputs {
            let want = whole(input);
            for target in [1, 2, 3, 5, 7, 8, 13, 32, 100, 1 << 20] {
                let (got, rest) = through_pieces(input, target);
                assert!(!rest, "{input:?}");
                assert_eq!(
                    got,
                    want,
                    "target {target}: {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn a_plain_header_block_is_one_slice_and_what_the_splitter_reads() {
        for (msg, plain) in [
            (&b"From a x\nS: 1\nT: 2\n\nbody\n>From q\n"[..], true),
            (b"From a x\n\nbody\n", true),
            (b"From a x\nS: 1\n>From q\n\nbody\n", false),
            (b"From a x\n>From S\n\n", false),
            (b"From a x\r\nS: 1\r\n\r\nbody\r\n", false),
            (b"From a x\nS: 1\r\n\nbody\n", false),
            (b"From a x\nS: 1\n", false),
        ] {
            let want = whole(msg).into_iter().next();
            let got = plain_header_block(msg);
            assert_eq!(got.is_some(), plain, "{:?}", String::from_utf8_lossy(msg));
            if plain {
                assert_eq!(got, want);
            }
            assert_eq!(header_blocks(msg, &[0]).next(), want);
        }
    }

    #[test]
    fn a_message_longer_than_a_piece_is_given_as_its_header_block() {
        let mut input = b"From a x\nS: 1\nT: 2\n\n".to_vec();
        let line = [b'y'; 999];
        while input.len() < PIECE_CAP + (3 << 20) {
            input.extend_from_slice(&line);
            input.extend_from_slice(b"\nFrom not a separator: no blank line before\n");
        }
        input.extend_from_slice(b"\nFrom b y\nS: 2\n\nbody\n");
        let want = whole(&input);
        assert_eq!(want.len(), 2);
        let mut pieces = Pieces::new(&input[..], 64 << 10);
        let mut held = 0;
        let mut sizes = Vec::new();
        while let Some(Piece::Messages { data, starts }) = pieces.next_piece().unwrap() {
            assert_eq!(starts, vec![0]);
            sizes.push(data.len());
            held = held.max(pieces.buf.capacity());
        }
        assert_eq!(sizes, vec![20, 20], "the header blocks alone");
        assert!(held < PIECE_CAP + (1 << 20), "held {held} bytes");
        assert_eq!(through_pieces(&input, 64 << 10), (want, false));
    }

    #[test]
    fn a_header_block_at_the_limit_inside_a_piece_goes_to_one_splitter() {
        // A message shorter than PIECE_CAP but with no blank line within
        // HEADER_LIMIT: the splitter takes the line after its cut as body,
        // so the `From ` line there starts a message for it (not for the
        // rule). The messages before it still come as a piece.
        let mut input = b"From a x\nS: 1\n\nbody\n\nFrom b y\n".to_vec();
        let block = input.len();
        // The block reaches the limit with the line just before `From c`.
        while input.len() - block < HEADER_LIMIT {
            input.extend_from_slice(
                b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
            );
        }
        input.extend_from_slice(b"From c z\nS: 3\n\nbody\n");
        assert!(input.len() < PIECE_CAP);
        let want = whole(&input);
        assert_eq!(want.len(), 3, "the splitter's own reading");
        let (got, rest) = through_pieces(&input, 64 << 10);
        assert!(rest);
        assert_eq!(got, want);
    }

    #[test]
    fn a_header_block_at_the_limit_goes_to_one_splitter() {
        // No blank line within HEADER_LIMIT: the splitter cuts the block
        // and reads on as body, which the cutter does not copy.
        let mut input = b"From a x\n".to_vec();
        while input.len() < PIECE_CAP + 1000 {
            input.extend_from_slice(
                b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
            );
        }
        input.extend_from_slice(b"From b y\nS: 2\n\nbody\n");
        let want = whole(&input);
        let (got, rest) = through_pieces(&input, 64 << 10);
        assert!(rest);
        assert_eq!(got, want);
    }

    #[test]
    fn headers_only_matches_full_mode() {
        let input: &[u8] = b"From a x\nS: 1\n\nbody\nFrom not after a blank\n>From quoted\n\n\
            From b y\r\nS: 2\r\nT: 3\r\n\r\nline\r\nFrom still body\r\n\r\n\r\nmore\r\n\r\n\
            From c z\nS: 3\n\n\nFrom d w\nS: 4\n\nlast line without newline\n\nFrom e v\nS: 5\n\nend";
        let header_part = |d: &[u8]| -> Vec<u8> {
            match d.windows(2).position(|w| w == b"\n\n") {
                Some(i) => d[..i + 2].to_vec(),
                None => d.to_vec(),
            }
        };
        let all = |sp: &mut dyn FnMut() -> Option<Entry>| {
            let mut v = Vec::new();
            while let Some(e) = sp() {
                v.push(e);
            }
            v
        };
        let mut full = Splitter::new(input, Format::Mboxrd);
        let full = all(&mut || full.next_entry().unwrap());
        assert_eq!(full.len(), 5);
        for cap in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 4096] {
            let mut sp = Splitter::new(io::BufReader::with_capacity(cap, input), Format::Mboxrd)
                .headers_only();
            let heads = all(&mut || sp.next_entry().unwrap());
            assert_eq!(sp.offset, input.len() as u64, "capacity {cap}");
            assert_eq!(heads.len(), full.len(), "capacity {cap}");
            for (h, f) in heads.iter().zip(&full) {
                assert_eq!(h.sender, f.sender, "capacity {cap}");
                assert_eq!(h.data, header_part(&f.data), "capacity {cap}");
            }
        }
        // The last message ends without a blank line or newline; the body of
        // the first holds a `From ` line that is not a separator.
        assert_eq!(full[4].data, b"S: 5\n\nend\n");
        assert!(
            full[0]
                .data
                .ends_with(b"From not after a blank\nFrom quoted\n")
        );
        assert_eq!(
            full[1].data,
            b"S: 2\nT: 3\n\nline\nFrom still body\n\n\nmore\n"
        );
    }

    /// Header lines taken in place from the reader's buffer are what
    /// line-by-line reading gives: quoting undone, CRLF (and a CR before
    /// it) as LF, and a line longer than the limit cut there.
    #[test]
    fn headers_in_place_match_line_by_line() {
        let input: &[u8] = b"From a x\r\n>From quoted\r\nS: 1\r\r\n>>From twice\n\r\nbody\n\n\
            From b y\nT: 2\n>From\n\nFrom c z\nU: 3";
        let heads = |cap: usize| {
            let mut sp = Splitter::new(io::BufReader::with_capacity(cap, input), Format::Mboxrd)
                .headers_only();
            let mut v = Vec::new();
            while let Some(e) = sp.next_entry().unwrap() {
                v.push(e.data);
            }
            (v, sp.offset)
        };
        let want = vec![
            b"From quoted\nS: 1\r\n>From twice\n\n".to_vec(),
            b"T: 2\n>From\n\n".to_vec(),
            b"U: 3\n".to_vec(),
        ];
        for cap in [1, 7, 64, 4096] {
            assert_eq!(
                heads(cap),
                (want.clone(), input.len() as u64),
                "capacity {cap}"
            );
        }
        // One line longer than the limit, in one buffer: cut at the limit.
        let mut big = b"From a x\nX: ".to_vec();
        big.resize(big.len() + HEADER_LIMIT + 10, b'y');
        big.extend_from_slice(b"\nS: 2\n\nbody\n");
        let mut sp = Splitter::new(&big[..], Format::Mboxrd).headers_only();
        let e = sp.next_entry().unwrap().unwrap();
        assert_eq!(e.data.len(), HEADER_LIMIT + 1);
        assert!(e.data.starts_with(b"X: yyy") && e.data.ends_with(b"y\n"));
        assert!(sp.next_entry().unwrap().is_none());
    }

    #[test]
    fn not_an_mbox_is_an_error() {
        let mut sp = Splitter::new(&b"Subject: x\n"[..], Format::Mboxrd);
        assert_eq!(
            sp.next_entry().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    /// The fuzz target's property, on a few thousand pseudo-random inputs
    /// biased toward the bytes that matter (newlines, `>`, `From `).
    #[test]
    fn random_messages_round_trip() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: [&[u8]; 8] = [
            b"\n",
            b"From ",
            b">",
            b"x",
            b"\r",
            b" ",
            b"\n\n",
            b"\xff\x00",
        ];
        for _ in 0..3000 {
            let mut msg = Vec::new();
            for _ in 0..(next() % 40) {
                msg.extend_from_slice(pieces[(next() % 8) as usize]);
            }
            let msg = crate::message::normalize(msg);
            if msg.is_empty() {
                continue;
            }
            for format in [Format::Mboxrd, Format::Mboxo] {
                let mut out = from_line("a@b", UNIX_EPOCH);
                quote_into(&msg, format, &mut out);
                out.push(b'\n');
                let mut sp = Splitter::new(&out[..], format);
                let e = sp.next_entry().unwrap().unwrap();
                assert!(sp.next_entry().unwrap().is_none(), "one message: {msg:?}");
                if format == Format::Mboxrd && !msg.windows(2).any(|w| w == b"\r\n") {
                    assert_eq!(e.data, msg, "round trip of {msg:?}");
                }
            }
        }
    }
}
