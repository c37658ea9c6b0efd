//! What an IMAP server sends, read with bounds: [`Reader`] (one response
//! at a time over any `BufRead`: text capped, literals held only when the
//! caller asks, others read past in chunks) and [`FetchAnswer`] (one
//! `UID FETCH` answer judged response by response: only UIDs asked for,
//! each once, bodies judged by the bytes received), plus the small parsers
//! of response text (literal sizes, FETCH items, response codes).
//!
//! Guarantees: no panic on any bytes (the `imap_stream` fuzz target drives
//! [`Reader`] and [`FetchAnswer`] with arbitrary ones); memory follows the
//! caps ([`MAX_TEXT`], [`MAX_LITERAL`], [`FetchLimits`]), never the sizes a
//! server claims; server text reaches a message only through
//! [`printable`].

use std::collections::BTreeSet;
use std::io::{BufRead, Read};

use crate::proto::transcript::Transcript;

/// One untagged or tagged response: its text with every literal cut out,
/// and the literals in order (kept, or read and dropped).
#[derive(Debug, Default)]
pub struct Response {
    /// The text, literals replaced by `{N}` markers as sent.
    pub text: Vec<u8>,
    /// The literals.
    pub literals: Vec<Literal>,
}

/// A literal of a response: held, or read past without holding it.
#[derive(Debug, PartialEq, Eq)]
pub enum Literal {
    /// Its bytes.
    Kept(Vec<u8>),
    /// Its size; the bytes were read in chunks and dropped.
    Dropped(u64),
}

/// Why reading a response failed.
#[derive(Debug)]
pub enum ReadError {
    /// The stream failed (a timeout, a reset).
    Io(std::io::Error),
    /// The stream ended (inside a response when the text says so).
    Closed(&'static str),
    /// The server sent something that cannot be IMAP, or more than we hold.
    Protocol(String),
    /// The tagged reply was NO or BAD (its text).
    Refused(String),
    /// The server said BYE (its text).
    Bye(String),
}

/// Largest text of one response, every line of it together: a SEARCH
/// answer for a million messages fits (about 7 MB); a server sending more
/// is broken or hostile.
pub const MAX_TEXT: usize = 16 << 20;
/// Largest literal read at all. Larger sizes end the session: even read
/// and dropped, 2 GiB is more than any mail server sends for one item.
pub const MAX_LITERAL: u64 = 1 << 31;
/// Largest message held when `--max-size` does not say less: a larger one
/// is read in chunks, dropped and left on the server.
pub const MAX_MESSAGE: u64 = 256 << 20;
/// Bytes of responses we did not ask for (text and literals) that one
/// command may bring before the session ends as a protocol error: far
/// above the unsolicited FLAGS updates of a busy million-message folder.
pub const MAX_UNTAGGED: u64 = 128 << 20;
/// Asked before each literal with (text so far, start of the literal's
/// line, size): hold it (`Ok(true)`), read past it (`Ok(false)`) or end the
/// session as a protocol error (`Err`).
pub type KeepLiteral<'a> = dyn FnMut(&[u8], usize, u64) -> std::result::Result<bool, String> + 'a;

/// The response reader over any buffered stream: what [`Imap`](crate::proto::imap::Imap) reads its
/// server with, and what the fuzz target drives with arbitrary bytes.
///
/// Guarantees: at most `max_text` bytes of text per response; a literal is
/// held only when the caller's `keep` says so (its size is the server's
/// word, capped at [`MAX_LITERAL`]), otherwise read in chunks and dropped;
/// a `{N}` that is not a number is a protocol error, never text; no panic
/// on any bytes. Lines go to the transcript with control characters
/// escaped, literals only as their size.
pub struct Reader<R> {
    pub(super) r: R,
    max_text: usize,
    pub(super) transcript: Transcript,
    /// An untagged `* N EXISTS` was read since the client last cleared
    /// this: the folder grew (new mail may have arrived after a search).
    pub(super) exists_seen: bool,
}

impl<R: BufRead> Reader<R> {
    /// A reader over `r` with the standard caps and no transcript.
    pub fn new(r: R) -> Reader<R> {
        Reader {
            r,
            max_text: MAX_TEXT,
            transcript: Transcript::off(),
            exists_seen: false,
        }
    }

    /// Cap the text of one response at `n` bytes instead of [`MAX_TEXT`].
    pub fn max_text(mut self, n: usize) -> Reader<R> {
        self.max_text = n.max(1);
        self
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &R {
        &self.r
    }

    /// The stream underneath, mutably.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.r
    }

    /// Read one response: a line, and each literal it announces plus the
    /// line that continues after it. `keep(text, line_start, size)` is asked
    /// before each literal, with the text so far (the literal's own line
    /// starts at `line_start`): `Ok(true)` holds it, `Ok(false)` reads past
    /// it, `Err` ends the session as a protocol error.
    pub fn read_response(
        &mut self,
        keep: &mut KeepLiteral<'_>,
    ) -> std::result::Result<Response, ReadError> {
        let mut resp = Response::default();
        loop {
            let start = resp.text.len();
            let room = self.max_text.saturating_sub(start);
            if room == 0 {
                return Err(too_long(self.max_text));
            }
            let n = (&mut self.r)
                .take(room as u64)
                .read_until(b'\n', &mut resp.text)
                .map_err(ReadError::Io)?;
            if !resp.text.ends_with(b"\n") || n == 0 {
                return Err(if n == room {
                    too_long(self.max_text)
                } else if start == 0 && n == 0 {
                    ReadError::Closed("the server closed the connection")
                } else {
                    ReadError::Closed("the server closed the connection in a reply")
                });
            }
            let line = &resp.text[start..];
            if self.transcript.is_on() {
                let shown = printable(line);
                self.transcript.received(shown.as_bytes());
            }
            let Some(size) = literal_size(line).map_err(|e| ReadError::Protocol(e.to_string()))?
            else {
                if start == 0 && is_exists(&resp.text) {
                    self.exists_seen = true;
                }
                return Ok(resp);
            };
            if size > MAX_LITERAL {
                return Err(ReadError::Protocol(format!(
                    "literal too large ({size} octets; at most {MAX_LITERAL} are read)"
                )));
            }
            let lit = if keep(&resp.text, start, size).map_err(ReadError::Protocol)? {
                let mut lit = Vec::new();
                lit.try_reserve_exact(size as usize).map_err(|_| {
                    ReadError::Io(std::io::Error::new(
                        std::io::ErrorKind::OutOfMemory,
                        format!("out of memory for a literal of {size} octets"),
                    ))
                })?;
                (&mut self.r)
                    .take(size)
                    .read_to_end(&mut lit)
                    .map_err(ReadError::Io)?;
                if (lit.len() as u64) < size {
                    return Err(ReadError::Closed(
                        "the server closed the connection in a literal",
                    ));
                }
                Literal::Kept(lit)
            } else {
                // Read past it in the stream's own chunks: nothing of it is
                // held, however large the server says it is.
                let got = std::io::copy(&mut (&mut self.r).take(size), &mut std::io::sink())
                    .map_err(ReadError::Io)?;
                if got < size {
                    return Err(ReadError::Closed(
                        "the server closed the connection in a literal",
                    ));
                }
                Literal::Dropped(size)
            };
            if self.transcript.is_on() {
                self.transcript.note(&format!("{size} octets"));
            }
            resp.literals.push(lit);
        }
    }

    /// Read one response holding none of its literals; their sizes and the
    /// text are added to `untagged`, which may not pass `max` (a server
    /// cannot keep one command going with responses nobody asked for).
    pub fn read_dropping(
        &mut self,
        untagged: &mut u64,
        max: u64,
    ) -> std::result::Result<Response, ReadError> {
        let resp = self.read_response(&mut |_, _, size| {
            *untagged = untagged.saturating_add(size);
            if *untagged > max {
                Err(not_asked_for(max))
            } else {
                Ok(false)
            }
        })?;
        *untagged = untagged.saturating_add(resp.text.len() as u64);
        if *untagged > max {
            return Err(ReadError::Protocol(not_asked_for(max)));
        }
        Ok(resp)
    }
}

/// Is `line` an untagged `* N EXISTS`?
fn is_exists(line: &[u8]) -> bool {
    let mut w = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    w.next() == Some(b"*")
        && w.next()
            .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
        && w.next()
            .is_some_and(|v| v.trim_ascii_end().eq_ignore_ascii_case(b"EXISTS"))
}

fn too_long(max: usize) -> ReadError {
    ReadError::Protocol(format!("a response longer than {} MiB", max >> 20))
}

fn not_asked_for(max: u64) -> String {
    format!(
        "the server sent more than {} MiB not asked for in answer to one command",
        max >> 20
    )
}

/// The caps of one FETCH answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Largest message held (bytes as received, not as claimed).
    pub message: u64,
    /// Bytes held for the whole answer: a message that would pass it
    /// (unless it is the first) is dropped and reported as deferred.
    pub batch: u64,
    /// Bytes of responses not asked for before the answer is refused.
    pub untagged: u64,
}

impl Default for FetchLimits {
    fn default() -> FetchLimits {
        FetchLimits {
            message: MAX_MESSAGE,
            batch: u64::MAX,
            untagged: MAX_UNTAGGED,
        }
    }
}

/// What one FETCH response of an answer amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A message asked for, whole: (UID, bytes).
    Message(u32, Vec<u8>),
    /// A message asked for whose body is larger than
    /// [`FetchLimits::message`]: read and dropped (UID, its size).
    TooLarge(u32, u64),
    /// A message asked for that did not fit the answer's byte budget: read
    /// and dropped; fetch it again.
    Deferred(u32),
    /// A message asked for whose body is NIL or cannot be read.
    Unreadable(u32),
    /// A body for a UID not asked for (or a second one for the same UID),
    /// or with no UID at all: dropped.
    Unrequested(Option<u32>),
}

/// Reading the answer to one `UID FETCH uids (UID BODY.PEEK[])`, one
/// [`Fetched`] at a time, over any [`Reader`].
///
/// Guarantees: only UIDs asked for, each at most once, come out as
/// messages; what is held at any time is at most one response's text plus
/// the kept bodies within [`FetchLimits`]; responses not asked for are read
/// past and counted against [`FetchLimits::untagged`].
pub struct FetchAnswer {
    tag: Vec<u8>,
    wanted: BTreeSet<u32>,
    kept: u64,
    untagged: u64,
    limits: FetchLimits,
    done: bool,
}

impl FetchAnswer {
    /// The answer to the command tagged `a{tag}`, which asked for `uids`.
    pub fn new(tag: u32, uids: &[u32], limits: FetchLimits) -> FetchAnswer {
        FetchAnswer {
            tag: format!("a{tag} ").into_bytes(),
            wanted: uids.iter().copied().collect(),
            kept: 0,
            untagged: 0,
            limits,
            done: false,
        }
    }

    /// The next message event; `None` after the tagged OK.
    pub fn next<R: BufRead>(
        &mut self,
        r: &mut Reader<R>,
    ) -> std::result::Result<Option<Fetched>, ReadError> {
        while !self.done {
            let mut body_at: Option<usize> = None;
            let mut held = 0u64;
            let mut count = 0usize;
            let (wanted, limits, kept, untagged) = (
                &self.wanted,
                self.limits,
                &mut self.kept,
                &mut self.untagged,
            );
            let resp = r.read_response(&mut |text, line_start, size| {
                let i = count;
                count += 1;
                let line = &text[line_start..];
                if body_at.is_some() || !is_fetch(text) || !ends_with_body_item(line) {
                    *untagged = untagged.saturating_add(size);
                    if *untagged > limits.untagged {
                        return Err(not_asked_for(limits.untagged));
                    }
                    return Ok(false);
                }
                body_at = Some(i);
                let upper = line.to_ascii_uppercase();
                if let Some(uid) = item_number(&String::from_utf8_lossy(&upper), "UID ")
                    && !u32::try_from(uid).is_ok_and(|u| wanted.contains(&u))
                {
                    return Ok(false);
                }
                if size > limits.message || (*kept > 0 && kept.saturating_add(size) > limits.batch)
                {
                    return Ok(false);
                }
                *kept += size;
                held = size;
                Ok(true)
            })?;
            if resp.text.starts_with(&self.tag) {
                let rest = printable(&resp.text[self.tag.len()..]);
                if rest.to_ascii_uppercase().starts_with("OK") {
                    self.done = true;
                    return Ok(None);
                }
                return Err(ReadError::Refused(rest));
            }
            if is_bye(&resp.text) {
                return Err(ReadError::Bye(printable(&resp.text)));
            }
            let ev = self.judge(resp, body_at, held);
            if self.untagged > self.limits.untagged {
                return Err(ReadError::Protocol(not_asked_for(self.limits.untagged)));
            }
            if ev.is_some() {
                return Ok(ev);
            }
        }
        Ok(None)
    }

    /// What a complete response is; `None` for one that carries no body
    /// (a FLAGS update, any other untagged response), after counting it.
    fn judge(&mut self, mut resp: Response, body_at: Option<usize>, held: u64) -> Option<Fetched> {
        let upper = String::from_utf8_lossy(&resp.text).to_ascii_uppercase();
        let inline_body = body_at.is_none() && is_fetch(&resp.text) && upper.contains("BODY[] ");
        // Literals other than the body were counted as they were read.
        let text = resp.text.len() as u64;
        if body_at.is_none() && !inline_body {
            self.untagged = self.untagged.saturating_add(text);
            return None;
        }
        let uid = the_uid(&upper);
        let Some(uid) = uid.filter(|u| self.wanted.remove(u)) else {
            self.kept -= held;
            let body = match body_at.and_then(|i| resp.literals.get(i)) {
                Some(Literal::Kept(v)) => v.len() as u64,
                Some(Literal::Dropped(n)) => *n,
                None => 0,
            };
            self.untagged = self.untagged.saturating_add(text).saturating_add(body);
            return Some(Fetched::Unrequested(uid));
        };
        if let Some(i) = body_at {
            return Some(match resp.literals.get_mut(i) {
                Some(Literal::Kept(v)) => Fetched::Message(uid, std::mem::take(v)),
                Some(Literal::Dropped(n)) if *n > self.limits.message => Fetched::TooLarge(uid, *n),
                Some(Literal::Dropped(_)) => Fetched::Deferred(uid),
                None => Fetched::Unreadable(uid),
            });
        }
        // A body sent inline: a quoted string (rare but legal) or NIL.
        // Found in the bytes: the lossy text's offsets may differ.
        let at = resp
            .text
            .windows(7)
            .position(|w| w.eq_ignore_ascii_case(b"BODY[] "))
            .map_or(resp.text.len(), |i| i + 7);
        // It counts against the batch like a literal.
        Some(match quoted(&resp.text[at..]) {
            Some(b) if b.len() as u64 > self.limits.message => {
                Fetched::TooLarge(uid, b.len() as u64)
            }
            Some(b)
                if self.kept > 0
                    && self.kept.saturating_add(b.len() as u64) > self.limits.batch =>
            {
                Fetched::Deferred(uid)
            }
            Some(b) => {
                self.kept += b.len() as u64;
                Fetched::Message(uid, b)
            }
            None => Fetched::Unreadable(uid),
        })
    }
}

/// follows. Braces holding a word that is not a number (`{-5}`, `{1x2}`,
/// more digits than any size) are an error: read as text they would make
/// the literal's bytes pass for responses. Braces around nothing or around
/// words with spaces are text.
pub(super) fn literal_size(line: &[u8]) -> std::result::Result<Option<u64>, &'static str> {
    let Some(l) = line.strip_suffix(b"\n") else {
        return Ok(None);
    };
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let Some(l) = l.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = l.iter().rposition(|&c| c == b'{') else {
        return Ok(None);
    };
    let inner = &l[open + 1..];
    let digits = inner.strip_suffix(b"+").unwrap_or(inner);
    if inner.is_empty() || inner.iter().any(|c| c.is_ascii_whitespace()) {
        return Ok(None);
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err("a literal size that is not a number");
    }
    if digits.len() > 12 {
        return Err("literal too large");
    }
    // At most 12 ASCII digits: always a valid u64.
    Ok(std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok()))
}

/// Does this response start `* N FETCH `?
pub(super) fn is_fetch(text: &[u8]) -> bool {
    let Some(rest) = text.strip_prefix(b"* ") else {
        return false;
    };
    let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    n > 0
        && rest
            .get(n..n + 7)
            .is_some_and(|w| w.eq_ignore_ascii_case(b" FETCH "))
}

/// Does this line (ending in `{N}` CRLF) announce the literal of `BODY[]`?
pub(super) fn ends_with_body_item(line: &[u8]) -> bool {
    let Some(open) = line.iter().rposition(|&c| c == b'{') else {
        return false;
    };
    let before = line[..open].trim_ascii_end();
    before.len() >= 6 && before[before.len() - 6..].eq_ignore_ascii_case(b"BODY[]")
}

/// Is this an untagged BYE?
pub(super) fn is_bye(text: &[u8]) -> bool {
    text.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"* BYE"))
}

/// An IMAP quoted string at the start of `b` (after spaces), unescaped;
/// `None` for NIL or anything else.
pub(super) fn quoted(b: &[u8]) -> Option<Vec<u8>> {
    let b = b.trim_ascii_start().strip_prefix(b"\"")?;
    let mut out = Vec::new();
    let mut it = b.iter();
    while let Some(&c) = it.next() {
        match c {
            b'"' => return Some(out),
            b'\\' => out.push(*it.next()?),
            c => out.push(c),
        }
    }
    None
}

/// Server text fit for a terminal: lossy UTF-8, trailing CRLF removed,
/// every other control character escaped (`\x1b`), so a peer can neither
/// move the cursor nor retitle the window through our messages.
pub fn printable(b: &[u8]) -> String {
    let t = String::from_utf8_lossy(b);
    crate::proto::transcript::printable(t.trim_end_matches(['\r', '\n'])).into_owned()
}

/// The number after `[NAME ` in a response code.
pub(super) fn bracket_number(t: &str, key: &str) -> Option<u32> {
    let i = t.find(key)?;
    let rest = &t[i + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The number after a FETCH item name (`UID `, `RFC822.SIZE `), matched
/// as a whole item (after `(` or a space).
pub(super) fn item_number(t: &str, key: &str) -> Option<u64> {
    let mut from = 0;
    while let Some(i) = t[from..].find(key) {
        let at = from + i;
        let ok = at > 0 && matches!(t.as_bytes()[at - 1], b'(' | b' ');
        let rest = &t[at + key.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if ok && end > 0 {
            return rest[..end].parse().ok();
        }
        from = at + key.len();
    }
    None
}

/// The UID of a FETCH response: its `UID` item, when every `UID` item in
/// it agrees (a response naming two UIDs belongs to neither).
pub(super) fn the_uid(t: &str) -> Option<u32> {
    let mut uid = None;
    let mut from = 0;
    while let Some(i) = t[from..].find("UID ") {
        let at = from + i;
        from = at + 4;
        if at == 0 || !matches!(t.as_bytes()[at - 1], b'(' | b' ') {
            continue;
        }
        let rest = &t[at + 4..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if end == 0 {
            continue;
        }
        let u: u32 = rest[..end].parse().ok()?;
        if uid.is_some_and(|v| v != u) {
            return None;
        }
        uid = Some(u);
    }
    uid
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn literals_and_items_parse() {
        assert_eq!(
            literal_size(b"* 1 FETCH (UID 4 BODY[] {123}\r\n"),
            Ok(Some(123))
        );
        assert!(literal_size(b"* 1 FETCH (UID 4 BODY[] {12x}\r\n").is_err());
        assert_eq!(literal_size(b"a1 OK done\r\n"), Ok(None));
        assert_eq!(literal_size(b"* OK [ALERT] {see below}\r\n"), Ok(None));
        let t = "* 3 FETCH (RFC822.SIZE 99 UID 12)";
        assert_eq!(item_number(t, "UID "), Some(12));
        assert_eq!(item_number(t, "RFC822.SIZE "), Some(99));
        assert_eq!(item_number("* 3 FETCH (XUID 5)", "UID "), None);
        assert_eq!(the_uid("* 3 FETCH (XUID 5 UID 4 FLAGS () UID 4)"), Some(4));
        assert_eq!(the_uid("* 3 FETCH (UID 4 UID 5)"), None);
        assert_eq!(the_uid("* 3 FETCH (\u{e9}UID 4 UID 99999999999)"), None);
        assert_eq!(
            bracket_number("* OK [UIDVALIDITY 1234] x", "[UIDVALIDITY "),
            Some(1234)
        );
    }

    /// The events of one FETCH answer for `uids` read from `wire`.
    fn answer(
        wire: impl Read,
        uids: &[u32],
        limits: FetchLimits,
    ) -> (Vec<Fetched>, Option<ReadError>) {
        let mut r = Reader::new(BufReader::with_capacity(7, wire));
        let mut a = FetchAnswer::new(1, uids, limits);
        let mut evs = Vec::new();
        loop {
            match a.next(&mut r) {
                Ok(Some(ev)) => evs.push(ev),
                Ok(None) => return (evs, None),
                Err(e) => return (evs, Some(e)),
            }
        }
    }

    fn protocol(e: Option<ReadError>) -> String {
        match e {
            Some(ReadError::Protocol(m)) => m,
            other => panic!("not a protocol error: {other:?}"),
        }
    }

    #[test]
    fn literal_sizes_that_are_not_numbers_are_protocol_errors() {
        for bad in ["{-5}", "{1x2}", "{+}", "{9999999999999}"] {
            let wire = format!("* 1 FETCH (UID 1 BODY[] {bad}\r\nhello\r\n)\r\na1 OK\r\n");
            let (evs, e) = answer(wire.as_bytes(), &[1], FetchLimits::default());
            assert!(evs.is_empty(), "{bad}");
            assert!(protocol(e).contains("literal"), "{bad}");
        }
        // Larger than anything read at all, though a number.
        let wire = b"* 1 FETCH (UID 1 BODY[] {3000000000}\r\n";
        let (_, e) = answer(&wire[..], &[1], FetchLimits::default());
        assert!(protocol(e).contains("literal too large"));
    }

    #[test]
    fn a_huge_literal_is_read_past_not_held() {
        let size = 20_000_000u64;
        let wire = b"* 1 FETCH (UID 1 BODY[] {20000000}\r\n"
            .chain(std::io::repeat(b'x').take(size))
            .chain(&b")\r\n* 2 FETCH (UID 2 BODY[] {2}\r\nok)\r\na1 OK done\r\n"[..]);
        let limits = FetchLimits {
            message: 1024,
            ..FetchLimits::default()
        };
        let (evs, e) = answer(wire, &[1, 2], limits);
        assert!(e.is_none(), "{e:?}");
        assert_eq!(
            evs,
            [
                Fetched::TooLarge(1, size),
                Fetched::Message(2, b"ok".to_vec())
            ]
        );
        // Not asked for at all: read past too, and counted.
        let wire = b"* 1 FETCH (UID 1 X-JUNK {20000000}\r\n"
            .chain(std::io::repeat(b'x').take(size))
            .chain(&b")\r\na1 OK done\r\n"[..]);
        let limits = FetchLimits {
            untagged: 1 << 20,
            ..FetchLimits::default()
        };
        let (evs, e) = answer(wire, &[1], limits);
        assert!(evs.is_empty());
        assert!(protocol(e).contains("not asked for"));
    }

    #[test]
    fn only_uids_asked_for_become_messages_and_each_once() {
        let wire = concat!(
            "* 1 FETCH (UID 1 BODY[] {2}\r\nm1)\r\n",
            "* 9 FETCH (UID 100 BODY[] {4}\r\nm100)\r\n",
            "* 1 FETCH (UID 1 BODY[] {5}\r\nagain)\r\n",
            "* 3 FETCH (BODY[] {4}\r\nnone)\r\n",
            "* 2 FETCH (BODY[] {2}\r\nm2 UID 2)\r\n",
            "* 4 FETCH (BODY[] {2}\r\nm4 UID 4)\r\n",
            "* 5 FETCH (FLAGS (\\Seen) UID 5)\r\n",
            "* 6 FETCH (UID 6 BODY[] \"a \\\"q\\\" b\")\r\n",
            "* 7 FETCH (UID 7 BODY[] NIL)\r\n",
            "* 8 FETCH (UID 2 UID 3 BODY[] {2}\r\nm3)\r\n",
            "* 9 FETCH (X \u{ff}\u{fe}\u{fd}\u{fc} UID 3 BODY[] \"q\")\r\n",
            "a1 OK done\r\n"
        );
        let (evs, e) = answer(wire.as_bytes(), &[1, 2, 3, 5, 6, 7], FetchLimits::default());
        assert!(e.is_none(), "{e:?}");
        assert_eq!(
            evs,
            [
                Fetched::Message(1, b"m1".to_vec()),
                Fetched::Unrequested(Some(100)),
                Fetched::Unrequested(Some(1)),
                Fetched::Unrequested(None),
                Fetched::Message(2, b"m2".to_vec()),
                Fetched::Unrequested(Some(4)),
                Fetched::Message(6, b"a \"q\" b".to_vec()),
                Fetched::Unreadable(7),
                Fetched::Unrequested(None),
                Fetched::Message(3, b"q".to_vec()),
            ]
        );
    }

    #[test]
    fn invalid_utf_8_does_not_shift_where_an_inline_body_is_cut() {
        let wire = b"* 9 FETCH (X \xff\xfe\xfd\xfc\xfb\xfa\xf9 UID 3 BODY[] \"q\")\r\na1 OK\r\n";
        let (evs, e) = answer(&wire[..], &[3], FetchLimits::default());
        assert!(e.is_none(), "{e:?}");
        assert_eq!(evs, [Fetched::Message(3, b"q".to_vec())]);
    }

    #[test]
    fn the_batch_budget_counts_bytes_received() {
        let wire = concat!(
            "* 1 FETCH (UID 1 BODY[] {8}\r\n12345678)\r\n",
            "* 2 FETCH (UID 2 BODY[] {8}\r\n12345678)\r\n",
            "* 3 FETCH (UID 3 BODY[] \"12345678\")\r\n",
            "* 4 FETCH (UID 4 BODY[] {2}\r\n12)\r\n",
            "a1 OK done\r\n"
        );
        let limits = FetchLimits {
            batch: 10,
            ..FetchLimits::default()
        };
        let (evs, e) = answer(wire.as_bytes(), &[1, 2, 3, 4], limits);
        assert!(e.is_none(), "{e:?}");
        assert_eq!(
            evs,
            [
                Fetched::Message(1, b"12345678".to_vec()),
                Fetched::Deferred(2),
                Fetched::Deferred(3),
                Fetched::Message(4, b"12".to_vec()),
            ]
        );
    }

    #[test]
    fn floods_long_lines_refusals_and_ends_are_errors() {
        // Untagged lines without end.
        let flood = b"* 1 RECENT\r\n".repeat(10_000);
        let limits = FetchLimits {
            untagged: 64 << 10,
            ..FetchLimits::default()
        };
        let (_, e) = answer(&flood[..], &[1], limits);
        assert!(protocol(e).contains("not asked for"));
        // One line longer than the text cap.
        let mut r = Reader::new(&b"* OK xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"[..])
            .max_text(16);
        let e = r.read_dropping(&mut 0, u64::MAX).err();
        assert!(protocol(e).contains("longer than"));
        // Literals of one response cannot add up past the text cap either.
        let many = b"* 1 FETCH (X {1}\r\nx".repeat(1000);
        let mut r = Reader::new(&many[..]).max_text(4096);
        assert!(protocol(r.read_dropping(&mut 0, u64::MAX).err()).contains("longer than"));
        let (_, e) = answer(&b"a1 NO \x1b[31mno\r\n"[..], &[1], FetchLimits::default());
        assert!(matches!(e, Some(ReadError::Refused(t)) if t == "NO \\u{1b}[31mno"));
        let (_, e) = answer(&b"* BYE going\r\n"[..], &[1], FetchLimits::default());
        assert!(matches!(e, Some(ReadError::Bye(_))));
        let (_, e) = answer(
            &b"* 1 FETCH (UID 1 BODY[] {10}\r\nshort"[..],
            &[1],
            FetchLimits::default(),
        );
        assert!(matches!(e, Some(ReadError::Closed(_))));
        let (_, e) = answer(&b""[..], &[1], FetchLimits::default());
        assert!(matches!(e, Some(ReadError::Closed(_))));
    }

    #[test]
    fn server_text_is_printable() {
        assert_eq!(
            printable(b"NO \x1b]0;x\x07 ok\r\n"),
            "NO \\u{1b}]0;x\\u{7} ok"
        );
        assert_eq!(
            printable("caf\u{e9} \u{9b}".as_bytes()),
            "caf\u{e9} \\u{9b}"
        );
    }
}
