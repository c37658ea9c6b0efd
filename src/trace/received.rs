//! Our own parser for the value of one `Received:` (or `X-Received:`) field.
//!
//! This module owns turning a trace field into a [`Hop`]: who connected
//! (`from`, `helo`, `rdns`, `ip`, `port`), who received (`by`, `by_ip`), how
//! (`with` as written, `protocol` normalised, TLS version and cipher, SMTP
//! AUTH), the queue `id`, the `for` recipient, `via`, the envelope sender
//! and the date. It follows RFC 5321 section 4.4 and what real MTAs write:
//! Postfix, Exim (old and 4.95+ `tls` forms), Sendmail, qmail, OpenSMTPD,
//! Courier, ZMailer, Exchange and Office 365, Gmail, Dovecot LMTP, amavis,
//! SendGrid, SES, Yahoo, PowerMTA, smap, CommuniGate, IIS SMTPSVC and more.
//!
//! How the connecting host's names are read (the corpus README's rules):
//! `from` is the token after FROM as written. When the receiver wrote the
//! greeting explicitly (`helo=x`, `HELO x`) the FROM token is the PTR name;
//! when it wrote `from x (rdns [ip])`, `x` is the greeting and the comment
//! holds the PTR name (`unknown` meaning none); smap's glued `host(ip)` is a
//! PTR name with no greeting. `rdns` is never an address and never
//! `unknown`; addresses are normalised (no brackets, no `IPv6:`, no zone id,
//! IPv4-mapped written as IPv4) with the port apart.
//!
//! A [`Hop`] borrows its text from the unfolded field value: parsing a
//! field copies nothing in the common case, and [`super::Buffers`] keeps
//! the unfolded text and the parser's vectors from message to message.
//!
//! Guarantee: [`parse`] never fails, panics or prints. Whatever it does not
//! understand stays in [`Hop::raw`] and is named in [`Hop::warnings`]. Work
//! is linear in the input: comments nested any depth are matched with a
//! counter, never by recursion, and each attempt to read a date looks at a
//! bounded number of tokens.

use super::date::{self, MailDate};
use serde::Serialize;
use std::borrow::Cow;
use std::net::IpAddr;

/// Whether and how the sender authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Authenticated, user not recorded (`ESMTPA`, `(authenticated bits=0)`).
    Authenticated,
    /// Authenticated as this user (`(Authenticated sender: x)`, `account x`).
    User(String),
    /// A local submission by this login (Sendmail's leading `(from user@localhost)`).
    LocalUser(String),
}

impl Auth {
    /// A short text: `authenticated`, the user, or `local user NAME`.
    pub fn describe(&self) -> String {
        match self {
            Auth::Authenticated => "authenticated".to_string(),
            Auth::User(u) => u.clone(),
            Auth::LocalUser(u) => format!("local user {u}"),
        }
    }
}

/// JSON: `true` for a bare flag, else the text of [`Auth::describe`].
impl Serialize for Auth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Auth::Authenticated => s.serialize_bool(true),
            other => s.serialize_str(&other.describe()),
        }
    }
}

/// One parsed Received field. Every field is `None` unless the header said
/// it; nothing is guessed.
///
/// The text fields borrow from the unfolded field value (`'a`) wherever
/// the value is a slice of it (nearly always), so that parsing a field
/// allocates nothing in the common case; [`Hop::into_owned`] detaches one.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Hop<'a> {
    /// The token after FROM, as written (`[1.2.3.4]` keeps its brackets).
    pub from: Option<Cow<'a, str>>,
    /// The HELO/EHLO name the client gave.
    pub helo: Option<Cow<'a, str>>,
    /// The PTR name the receiver found (no trailing dot; never `unknown`).
    pub rdns: Option<Cow<'a, str>>,
    /// The connecting address, normalised.
    pub ip: Option<Cow<'a, str>>,
    /// The connecting port, when written.
    pub port: Option<u16>,
    /// The receiving host.
    pub by: Option<Cow<'a, str>>,
    /// The receiving host's address, when written in a comment after BY.
    pub by_ip: Option<Cow<'a, str>>,
    /// The WITH value as written (`esmtpsa`, `Microsoft SMTP Server`).
    pub with: Option<Cow<'a, str>>,
    /// The protocol normalised: `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPA`,
    /// `ESMTPSA`, `LMTP`, `LMTPS`, `SMTPS`, `UTF8SMTPS`..., `MAPI`, `HTTP`,
    /// `HTTPS`, `LOCAL`; other values as written (`Microsoft SMTPSVC`).
    pub protocol: Option<Cow<'a, str>>,
    /// TLS version, normalised to OpenSSL's names (`TLSv1`, `TLSv1.2`, `TLSv1.3`).
    pub tls_version: Option<Cow<'a, str>>,
    /// TLS cipher as written.
    pub tls_cipher: Option<Cow<'a, str>>,
    /// SMTP AUTH or local submission.
    pub auth: Option<Auth>,
    /// The receiver's queue id.
    pub id: Option<Cow<'a, str>>,
    /// The FOR recipient without angle brackets (`multiple recipients` too).
    #[serde(rename = "for")]
    pub for_addr: Option<Cow<'a, str>>,
    /// The VIA value (a link type or, at Microsoft, a host name).
    pub via: Option<Cow<'a, str>>,
    /// The envelope sender from `(envelope-from <x>)` or `envelope-from <x>`;
    /// `Some("")` is the null sender `<>`.
    pub envelope_from: Option<Cow<'a, str>>,
    /// The date stamp.
    pub date: Option<MailDate>,
    /// True when the date had no usable zone and was read as UTC.
    pub tz_assumed: bool,
    /// The receiver noted the PTR name was not forward-confirmed.
    pub may_be_forged: bool,
    /// The unfolded value.
    pub raw: Cow<'a, str>,
    /// What was not understood, in words.
    pub warnings: Vec<String>,
}

impl Hop<'_> {
    /// The same hop owning its text (for a hop that must outlive the
    /// header block it was read from).
    pub fn into_owned(self) -> Hop<'static> {
        fn own(v: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            v.map(|c| Cow::Owned(c.into_owned()))
        }
        Hop {
            from: own(self.from),
            helo: own(self.helo),
            rdns: own(self.rdns),
            ip: own(self.ip),
            port: self.port,
            by: own(self.by),
            by_ip: own(self.by_ip),
            with: own(self.with),
            protocol: own(self.protocol),
            tls_version: own(self.tls_version),
            tls_cipher: own(self.tls_cipher),
            auth: self.auth,
            id: own(self.id),
            for_addr: own(self.for_addr),
            via: own(self.via),
            envelope_from: own(self.envelope_from),
            date: self.date,
            tz_assumed: self.tz_assumed,
            may_be_forged: self.may_be_forged,
            raw: Cow::Owned(self.raw.into_owned()),
            warnings: self.warnings,
        }
    }
}

/// Parse a Received field value (folded or not). Never fails.
pub fn parse(value: &str) -> Hop<'static> {
    let raw = unfold(value);
    parse_unfolded(&raw).into_owned()
}

/// [`parse`] for raw header bytes (decoded lossily).
pub fn parse_bytes(value: &[u8]) -> Hop<'static> {
    parse(&super::lossy(value))
}

/// [`parse`] of a value already unfolded and trimmed (what [`unfold`] or
/// [`unfold_into`] give): the hop borrows its text from `raw`.
pub fn parse_unfolded(raw: &str) -> Hop<'_> {
    parse_with(raw, &mut Scratch::default())
}

/// [`parse_unfolded`] with work space kept from field to field.
pub(crate) fn parse_with<'a>(raw: &'a str, scratch: &mut Scratch) -> Hop<'a> {
    let mut p = Parser::new(raw, scratch);
    p.run();
    let mut hop = p.finish();
    hop.raw = Cow::Borrowed(raw);
    hop
}

/// Vectors the parser needs for each field, kept so that a run of fields
/// (a message's, a mailbox's) allocates them once: see [`super::Buffers`].
#[derive(Default)]
pub struct Scratch {
    /// The field's tokens.
    toks: Vec<Tok>,
    /// A comment's tokens.
    ctoks: Vec<Tok>,
    /// The tokenizer's parenthesis lists.
    open: Vec<usize>,
    unclosed: Vec<usize>,
    /// A comment's words (empty between uses; see [`recycle`]).
    words: Vec<&'static str>,
}

/// Unfold: a line break before whitespace goes away, any other becomes a space.
pub(crate) fn unfold(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let (a, b) = unfold_into(v, &mut out);
    if a == 0 && b == out.len() {
        out
    } else {
        out[a..b].to_string()
    }
}

/// [`unfold`], appended to `out`: the range of `out` that holds the
/// unfolded, trimmed value (the untrimmed text stays in `out`).
pub(crate) fn unfold_into(v: &str, out: &mut String) -> (usize, usize) {
    // Only ASCII CR and LF are removed or replaced, so the result stays UTF-8;
    // runs between line breaks are copied whole.
    let start = out.len();
    let b = v.as_bytes();
    let mut i = 0;
    while let Some(j) = memchr::memchr2(b'\r', b'\n', &b[i..]) {
        let mut k = i + j;
        out.push_str(v.get(i..k).unwrap_or(""));
        if b[k] == b'\r' && b.get(k + 1) == Some(&b'\n') {
            k += 1;
        }
        if !matches!(b.get(k + 1), Some(b' ' | b'\t')) {
            out.push(' ');
        }
        i = k + 1;
    }
    out.push_str(v.get(i..).unwrap_or(""));
    let all = out.get(start..).unwrap_or("");
    let t = all.trim_start();
    let a = start + (all.len() - t.len());
    (a, a + t.trim_end().len())
}

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Word,
    Comment,
    Semi,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Tok {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    /// No whitespace between this token and the previous one.
    pub glued: bool,
    /// For comments: the closing parenthesis was found.
    pub closed: bool,
}

/// Split into words, comments (matched with a depth counter, `\` quoting)
/// and semicolons. `<...>` and `"..."` are single words. Linear. The
/// tokens go into `toks` (cleared first); the tokenizer's two parenthesis
/// lists are given, so that a caller can keep all three.
fn tokenize_into(s: &str, toks: &mut Vec<Tok>, open: &mut Vec<usize>, unclosed: &mut Vec<usize>) {
    let b = s.as_bytes();
    toks.clear();
    // Positions of `(` known never to close (sorted).
    unclosed.clear();
    // `open`: the opening parentheses still open in the comment being
    // read, innermost last; one vector for every comment of the field.
    let mut i = 0;
    let mut ws_before = true;
    // Unclosed comments read again after their opening parenthesis.
    let mut rescans = 0;
    const MAX_RESCANS: usize = 4;
    while let Some(&c) = b.get(i) {
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            ws_before = true;
            i += 1;
            continue;
        }
        let glued = !ws_before && !toks.is_empty();
        ws_before = false;
        let start = i;
        match c {
            b';' => {
                toks.push(Tok {
                    kind: Kind::Semi,
                    start,
                    end: i + 1,
                    glued,
                    closed: true,
                });
                i += 1;
            }
            b'(' if unclosed.binary_search(&start).is_ok() => {
                // Known from an earlier scan never to close: a lone `(`,
                // and what follows is read as if it were not there.
                i += 1;
                toks.push(Tok {
                    kind: Kind::Comment,
                    start,
                    end: i,
                    glued,
                    closed: false,
                });
            }
            b'(' => {
                let closed;
                (i, closed) = comment_end(b, i, open);
                if closed || rescans == MAX_RESCANS {
                    toks.push(Tok {
                        kind: Kind::Comment,
                        start,
                        end: i,
                        glued,
                        closed,
                    });
                } else {
                    // A comment that never closes would swallow the rest
                    // of the field (its BY, WITH and date). Its opening
                    // parenthesis stands alone instead, and so does every
                    // other one this scan found unmatched. Backslashes escape only
                    // inside comments, so a later `(` may still scan to the
                    // end: after MAX_RESCANS of those, an unclosed comment
                    // takes the rest as it always did. Linear either way.
                    rescans += 1;
                    std::mem::swap(unclosed, open);
                    i = start + 1;
                    toks.push(Tok {
                        kind: Kind::Comment,
                        start,
                        end: i,
                        glued,
                        closed: false,
                    });
                }
            }
            _ => {
                if c == b'<' {
                    // An angle address may hold spaces: `<multiple recipients>`.
                    // The look-ahead is bounded so that many `<` stay linear.
                    let window = b.get(i..b.len().min(i + 256)).unwrap_or(&[]);
                    match window
                        .iter()
                        .position(|&x| x == b'>' || x == b'(' || x == b';')
                    {
                        Some(k) if b.get(i + k) == Some(&b'>') => i += k + 1,
                        _ => i += 1,
                    }
                } else if c == b'"' {
                    i += 1;
                    while let Some(&d) = b.get(i) {
                        i += 1;
                        if d == b'\\' && b.get(i).is_some_and(u8::is_ascii) {
                            i += 1;
                        } else if d == b'"' {
                            break;
                        }
                    }
                }
                while let Some(&d) = b.get(i) {
                    if WORD_END[usize::from(d)] {
                        break;
                    }
                    i += 1;
                }
                toks.push(Tok {
                    kind: Kind::Word,
                    start,
                    end: i,
                    glued,
                    closed: true,
                });
            }
        }
    }
}

/// Where the comment opening at `b[start]` (a `(`) ends, and whether it
/// closed (else it runs to the end); `open` is left holding the
/// parentheses still open, innermost last.
fn comment_end(b: &[u8], start: usize, open: &mut Vec<usize>) -> (usize, bool) {
    open.clear();
    let mut i = start;
    // Only `\`, `(` and `)` matter inside a comment: jump from one to
    // the next.
    while let Some(k) = b
        .get(i..)
        .and_then(|r| memchr::memchr3(b'\\', b'(', b')', r))
    {
        i += k + 1;
        match b[i - 1] {
            b'\\' if b.get(i).is_some_and(u8::is_ascii) => i += 1,
            b'(' => open.push(i - 1),
            b')' => {
                open.pop();
                if open.is_empty() {
                    return (i, true);
                }
            }
            _ => {}
        }
    }
    (b.len(), false)
}

/// The bytes that end a word: whitespace, `(` and `;`.
const WORD_END: [bool; 256] = {
    let mut t = [false; 256];
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'\r' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'(' as usize] = true;
    t[b';' as usize] = true;
    t
};

fn slice(s: &str, a: usize, b: usize) -> &str {
    s.get(a..b).unwrap_or("")
}

/// The text of a comment token without its parentheses.
pub(crate) fn comment_inner<'a>(s: &'a str, t: &Tok) -> &'a str {
    let end = if t.closed {
        t.end.saturating_sub(1)
    } else {
        t.end
    };
    slice(s, t.start + 1, end.max(t.start + 1))
}

/// An emptied word list with another lifetime, keeping its allocation
/// (an empty vector's buffer holds no borrow; the standard library's
/// in-place `collect` reuses it), so that one list serves every field of
/// every message.
// `filter` cannot change the element's lifetime, which is the point here.
#[allow(clippy::unnecessary_filter_map)]
fn recycle<'b>(v: Vec<&str>) -> Vec<&'b str> {
    v.into_iter().filter_map(|_| None).collect()
}

/// What one pass over a comment's text saw: which ASCII letters (case
/// ignored), and whether it has a `=` or a `:`. The readings of a
/// comment that look for a text first ask whether its letters are there
/// at all, which turns most comments away without a search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    /// Bit `k` for the letter `a + k`, either case.
    letters: u32,
    eq: bool,
    colon: bool,
}

/// The bit of an ASCII letter in [`Seen::letters`] (0 for any other byte).
const fn letter_bit(c: u8) -> u32 {
    // `| 0x20` maps exactly the ASCII letters, and no other byte, into `a..=z`.
    let l = (c | 0x20).wrapping_sub(b'a');
    if l < 26 { 1 << l } else { 0 }
}

/// The letters of `s`, as [`Seen::letters`] holds them.
const fn letters_of(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut m = 0;
    let mut i = 0;
    while i < b.len() {
        m |= letter_bit(b[i]);
        i += 1;
    }
    m
}

impl Seen {
    /// Whether the text may contain `needle` ignoring ASCII case: `false`
    /// when one of its letters is missing (then it cannot).
    fn may_contain(&self, needle_letters: u32) -> bool {
        self.letters & needle_letters == needle_letters
    }
}

/// [`COMMENT_CLASS`] bits: whitespace, `=`, `:`, and what only the
/// tokenizer splits right (`(`, `;`, `<`, `"`).
const C_SPACE: u8 = 1;
const C_EQ: u8 = 2;
const C_COLON: u8 = 4;
const C_SPECIAL: u8 = 8;

/// The class of each byte of a comment for [`words`].
const COMMENT_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = C_SPACE;
    t[b'\t' as usize] = C_SPACE;
    t[b'\r' as usize] = C_SPACE;
    t[b'\n' as usize] = C_SPACE;
    t[b'=' as usize] = C_EQ;
    t[b':' as usize] = C_COLON;
    t[b'(' as usize] = C_SPECIAL;
    t[b';' as usize] = C_SPECIAL;
    t[b'<' as usize] = C_SPECIAL;
    t[b'"' as usize] = C_SPECIAL;
    t
};

/// The words of a comment's inner text, at its top level, in the
/// scratch's word list (taken out of it: put it back when done), and what
/// the pass over its bytes saw.
fn words<'a>(inner: &'a str, sc: &mut Scratch) -> (Vec<&'a str>, Seen) {
    let mut ws = recycle(std::mem::take(&mut sc.words));
    let b = inner.as_bytes();
    let mut seen = Seen::default();
    // Split at spaces while nothing the tokenizer treats specially
    // (comments, `;`, angle addresses, quotes) turns up; if something
    // does, the tokenizer gives the words instead.
    let mut start = None;
    let mut marks = 0u8;
    for (i, &c) in b.iter().enumerate() {
        seen.letters |= letter_bit(c);
        let class = COMMENT_CLASS[usize::from(c)];
        marks |= class;
        let space = class & C_SPACE != 0;
        match (start, space) {
            (None, false) => start = Some(i),
            (Some(s), true) => {
                ws.push(slice(inner, s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        ws.push(slice(inner, s, b.len()));
    }
    seen.eq = marks & C_EQ != 0;
    seen.colon = marks & C_COLON != 0;
    if marks & C_SPECIAL != 0 {
        ws.clear();
        tokenize_into(inner, &mut sc.ctoks, &mut sc.open, &mut sc.unclosed);
        ws.extend(
            sc.ctoks
                .iter()
                .filter(|t| t.kind == Kind::Word)
                .map(|t| slice(inner, t.start, t.end)),
        );
    }
    (ws, seen)
}

// ---------------------------------------------------------------- parser

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Start,
    From,
    By,
    With,
    Via,
    Id,
    For,
    EnvFrom,
    Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    From,
    By,
    Via,
    With,
    Id,
    For,
    EnvFrom,
}

fn keyword(w: &str) -> Option<Kw> {
    // By length first: most words are no keyword and are turned away
    // without a comparison. The short keywords are all letters, and a
    // byte `| 0x20` is a given lower-case letter exactly when it is that
    // letter in either case: compared without a call.
    let l = |c: &u8| c | 0x20;
    let kw = match w.as_bytes() {
        [a, b] => match [l(a), l(b)] {
            [b'b', b'y'] => Kw::By,
            [b'i', b'd'] => Kw::Id,
            _ => return None,
        },
        [a, b, c] => match [l(a), l(b), l(c)] {
            [b'v', b'i', b'a'] => Kw::Via,
            [b'f', b'o', b'r'] => Kw::For,
            _ => return None,
        },
        [a, b, c, d] => match [l(a), l(b), l(c), l(d)] {
            [b'f', b'r', b'o', b'm'] => Kw::From,
            [b'w', b'i', b't', b'h'] => Kw::With,
            _ => return None,
        },
        b if b.len() == 13 && b.eq_ignore_ascii_case(b"envelope-from") => Kw::EnvFrom,
        _ => return None,
    };
    Some(kw)
}

/// What the FROM clause said, resolved into names at the end.
#[derive(Default)]
struct FromInfo<'a> {
    present: bool,
    value: Option<&'a str>,
    comments: usize,
    /// The first comment touches the value: smap's `host(ip)`.
    glued: bool,
    /// A comment with TCP information (address, name, `unknown`, HELO).
    tcp_seen: bool,
    /// The glued comment held a name.
    glued_named: bool,
    explicit_helo: Option<&'a str>,
    comment_rdns: Option<&'a str>,
    /// `unknown` or a name was seen in a TCP-info comment.
    named: bool,
}

const MAX_WARNINGS: usize = 32;

struct Parser<'a, 's> {
    s: &'a str,
    /// The field's tokens are in `scratch.toks`.
    scratch: &'s mut Scratch,
    i: usize,
    hop: Hop<'a>,
    ctx: Ctx,
    from: FromInfo<'a>,
    /// A TLS marker without version or cipher (`(TLS)`, `ESMTP/TLS`).
    tls_flag: bool,
    seen: [bool; 7],
}

impl<'a, 's> Parser<'a, 's> {
    fn new(s: &'a str, scratch: &'s mut Scratch) -> Parser<'a, 's> {
        {
            let sc = &mut *scratch;
            tokenize_into(s, &mut sc.toks, &mut sc.open, &mut sc.unclosed);
        }
        Parser {
            s,
            scratch,
            i: 0,
            // `raw` is filled in by `parse_with`.
            hop: Hop::default(),
            ctx: Ctx::Start,
            from: FromInfo::default(),
            tls_flag: false,
            seen: [false; 7],
        }
    }

    /// Token `i` of the field.
    fn tok(&self, i: usize) -> Option<Tok> {
        self.scratch.toks.get(i).copied()
    }

    fn warn(&mut self, msg: String) {
        if self.hop.warnings.len() < MAX_WARNINGS {
            self.hop.warnings.push(msg);
        } else if self.hop.warnings.len() == MAX_WARNINGS {
            self.hop
                .warnings
                .push("more not understood; see raw".to_string());
        }
    }

    fn text(&self, t: &Tok) -> &'a str {
        slice(self.s, t.start, t.end)
    }

    fn run(&mut self) {
        while let Some(t) = self.tok(self.i) {
            match t.kind {
                Kind::Semi => {
                    self.i += 1;
                    // The date; a word that is not one is named below.
                    // (A comment first is read as a comment: IBM puts its
                    // TLS details there, and the date follows it.)
                    if let Some(n) = self.tok(self.i)
                        && n.kind == Kind::Word
                    {
                        self.try_date(n.start);
                    }
                }
                Kind::Comment => {
                    if !t.closed {
                        self.warn("unclosed comment".to_string());
                    }
                    if t.closed || !trim(comment_inner(self.s, &t)).is_empty() {
                        self.comment(&t);
                    }
                    self.i += 1;
                }
                Kind::Word => {
                    let w = self.text(&t);
                    if let Some(kw) = keyword(w) {
                        self.i += 1;
                        self.clause(kw);
                    } else if w.eq_ignore_ascii_case("tls") && self.ctx == Ctx::With {
                        // Exim 4.95+: `with esmtps (TLS1.3) tls CIPHER`
                        self.i += 1;
                        if let Some(c) = self.value_word() {
                            self.hop.tls_cipher.get_or_insert(Cow::Borrowed(c));
                        }
                    } else if self.ctx == Ctx::From && w.eq_ignore_ascii_case("named") {
                        // Gmail API: `from 717937561175 named unknown by gmailapi.google.com`
                        self.i += 1;
                        let _ = self.value_word();
                    } else if self.ctx == Ctx::From
                        && w.starts_with('[')
                        && let Some((ip, port)) = any_ip(w)
                    {
                        // SMTPD32 and others: `from helo [ip] by ...`, the
                        // address bare after the greeting.
                        self.i += 1;
                        self.from.tcp_seen = true;
                        if self.hop.ip.is_none() {
                            self.hop.ip = Some(ip);
                            self.hop.port = port;
                        }
                    } else if !self.try_date(t.start) {
                        self.warn(format!("not understood: '{}'", short(w)));
                        self.i += 1;
                    }
                }
            }
        }
    }

    /// A date starting at byte `start`; on success the tokens it covers are
    /// skipped.
    fn try_date(&mut self, start: usize) -> bool {
        if self.hop.date.is_some() {
            return false;
        }
        let Some((d, used)) = self.s.get(start..).and_then(date::parse_prefix) else {
            return false;
        };
        self.hop.date = Some(d);
        let end = start + used;
        while self.tok(self.i).is_some_and(|t| t.start < end) {
            self.i += 1;
        }
        self.ctx = Ctx::Date;
        true
    }

    /// Whether a date starts at this word (bounded work).
    fn date_starts(&self, t: &Tok) -> bool {
        self.hop.date.is_none() && self.s.get(t.start..).and_then(date::parse_prefix).is_some()
    }

    /// The next token if it is a word that is not a keyword; consumed.
    fn value_word(&mut self) -> Option<&'a str> {
        let t = self.tok(self.i)?;
        if t.kind != Kind::Word || keyword(self.text(&t)).is_some() {
            return None;
        }
        self.i += 1;
        Some(self.text(&t))
    }

    /// Words up to the next keyword, comment, `;` or date (at most four),
    /// joined by one space: the field's own text when it has them so.
    fn value_words(&mut self) -> Option<Cow<'a, str>> {
        let first = self.i;
        // Where the words begin and end, and whether one space parts each.
        let (mut start, mut end, mut n) = (0, 0, 0);
        let mut spaced = true;
        while let Some(t) = self.tok(self.i) {
            let w = self.text(&t);
            if t.kind != Kind::Word
                || n == 4
                || keyword(w).is_some()
                || w.eq_ignore_ascii_case("tls")
                || self.date_starts(&t)
            {
                break;
            }
            if n == 0 {
                start = t.start;
            } else if t.start != end + 1 || self.s.as_bytes().get(end) != Some(&b' ') {
                spaced = false;
            }
            end = t.end;
            n += 1;
            self.i += 1;
        }
        if n == 0 {
            None
        } else if spaced {
            Some(Cow::Borrowed(slice(self.s, start, end)))
        } else {
            let words: Vec<&str> = (first..self.i)
                .filter_map(|k| self.tok(k))
                .map(|t| self.text(&t))
                .collect();
            Some(Cow::Owned(words.join(" ")))
        }
    }

    fn clause(&mut self, kw: Kw) {
        if kw == Kw::From && self.from.present && self.ctx == Ctx::For {
            // Domino: `for <rcpt> from <sender>`: the envelope sender.
            self.ctx = Ctx::EnvFrom;
            let v = self.value_word().map(strip_angle);
            if self.hop.envelope_from.is_none() {
                self.hop.envelope_from = v.map(Cow::Borrowed);
            }
            return;
        }
        let slot = kw as usize;
        if self.seen.get(slot).copied().unwrap_or(false) && kw != Kw::EnvFrom {
            self.warn(format!("repeated {kw:?} clause"));
        }
        if let Some(s) = self.seen.get_mut(slot) {
            *s = true;
        }
        match kw {
            Kw::From => {
                self.ctx = Ctx::From;
                if self.from.present {
                    // keep the first one
                    let _ = self.value_word();
                    return;
                }
                self.from.present = true;
                self.from.value = self.value_word();
                if self.from.value.is_none() {
                    self.warn("FROM without a host name".to_string());
                }
                if let Some(n) = self.tok(self.i)
                    && n.kind == Kind::Comment
                    && n.glued
                    && self.from.value.is_some()
                {
                    self.from.glued = true;
                }
            }
            Kw::By => {
                self.ctx = Ctx::By;
                let v = self.value_word().map(|v| v.trim_end_matches(','));
                if self.hop.by.is_none() {
                    self.hop.by = v.map(Cow::Borrowed);
                }
            }
            Kw::With => {
                self.ctx = Ctx::With;
                // qpsmtpd: `with (CIPHER encrypted) SMTP`: the comment
                // comes before the protocol word.
                while let Some(t) = self.tok(self.i)
                    && t.kind == Kind::Comment
                    && t.closed
                {
                    self.comment(&t);
                    self.i += 1;
                }
                let v = self.value_words();
                if self.hop.with.is_none() {
                    self.hop.with = v;
                }
            }
            Kw::Via => {
                self.ctx = Ctx::Via;
                let v = self.value_words().map(|v| match v {
                    Cow::Borrowed(b) => Cow::Borrowed(b.trim_end_matches(',')),
                    Cow::Owned(o) => Cow::Owned(o.trim_end_matches(',').to_string()),
                });
                if self.hop.via.is_none() {
                    self.hop.via = v;
                }
            }
            Kw::Id => {
                self.ctx = Ctx::Id;
                let v = self
                    .value_word()
                    .map(|v| strip_angle(v.trim_end_matches(',')));
                if self.hop.id.is_none() {
                    self.hop.id = v.map(Cow::Borrowed);
                }
            }
            Kw::For => {
                self.ctx = Ctx::For;
                let v = self
                    .value_word()
                    .map(|v| strip_angle(v.trim_end_matches(',')));
                if self.hop.for_addr.is_none() {
                    self.hop.for_addr = v.map(Cow::Borrowed);
                }
            }
            Kw::EnvFrom => {
                self.ctx = Ctx::EnvFrom;
                let v = self.value_word().map(strip_angle);
                if self.hop.envelope_from.is_none() {
                    self.hop.envelope_from = v.map(Cow::Borrowed);
                }
            }
        }
    }

    fn comment(&mut self, t: &Tok) {
        let inner = trim(comment_inner(self.s, t));
        // Split once, for every reading below; the list goes back into
        // the scratch at the end.
        let (ws, seen) = words(inner, self.scratch);
        self.comment_words(inner, &ws, seen);
        self.scratch.words = recycle(ws);
    }

    /// [`Parser::comment`] given the comment's words. Case is ignored
    /// with ASCII comparisons, never through a lower-cased copy.
    fn comment_words(&mut self, inner: &'a str, ws: &[&'a str], seen: Seen) {
        if self.ctx == Ctx::Start {
            // Sendmail's local submission: `(from user@localhost)`; qmail's
            // `(qmail 123 invoked by uid 89)`.
            if let [f, user, ..] = ws
                && f.eq_ignore_ascii_case("from")
            {
                let login = user.split('@').next().unwrap_or("").to_string();
                if !login.is_empty() {
                    self.hop.auth = Some(Auth::LocalUser(login));
                }
            } else if let Some(uid) = after_words(ws, "by", "uid") {
                self.hop.auth = Some(Auth::LocalUser(format!("uid {uid}")));
            }
            return;
        }
        const FORGED: &str = "may be forged";
        if seen.may_contain(letters_of(FORGED)) && contains_ci(inner, FORGED) {
            self.hop.may_be_forged = true;
        }
        let auth_colon = starts_ci(inner, "auth:");
        if auth_colon {
            // Courier: `(AUTH: LOGIN user, TLS: TLSv1.2,128bits,CIPHER)`
            if let Some(u) = ws.get(2) {
                let u = u.trim_end_matches(',');
                if !u.is_empty() {
                    self.hop.auth = Some(Auth::User(u.to_string()));
                }
            }
        }
        if let Some((v, c)) = tls_info(inner, ws, seen) {
            self.tls_flag = true;
            if self.hop.tls_version.is_none() {
                self.hop.tls_version = v;
            }
            if self.hop.tls_cipher.is_none() {
                self.hop.tls_cipher = c;
            }
            return;
        }
        if auth_colon {
            return;
        }
        if starts_ci(inner, "envelope-from") || starts_ci(inner, "envelope-sender") {
            let v = ws.get(1).map(|w| strip_angle(w));
            if self.hop.envelope_from.is_none() {
                self.hop.envelope_from = v.map(Cow::Borrowed);
            }
            return;
        }
        if starts_ci(inner, "orcpt") {
            // ZMailer: `(ORCPT <rfc822;user@example.net>)`, the original
            // recipient (RFC 3461), where others write FOR.
            let addr = inner
                .get(5..)
                .unwrap_or("")
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>');
            let addr = match addr.split_once(';') {
                Some((_, a)) => a,
                None => addr,
            };
            if !addr.is_empty() && self.hop.for_addr.is_none() {
                self.hop.for_addr = Some(Cow::Borrowed(addr));
            }
            return;
        }
        const AUTHENTICATED: &str = "authenticated";
        if seen.may_contain(letters_of(AUTHENTICATED)) && contains_ci(inner, AUTHENTICATED) {
            let pos = ws.iter().position(|w| starts_ci(w, "authenticated"));
            let user = pos.and_then(|p| {
                let next = ws.get(p + 1)?;
                if next.eq_ignore_ascii_case("sender:")
                    || next.eq_ignore_ascii_case("as")
                    || next.eq_ignore_ascii_case("user")
                {
                    ws.get(p + 2)
                        .map(|u| strip_angle(u.trim_end_matches([',', ')'])).to_string())
                } else {
                    None
                }
            });
            match user {
                Some(u) if !u.is_empty() => self.hop.auth = Some(Auth::User(u)),
                _ => {
                    if self.hop.auth.is_none() {
                        self.hop.auth = Some(Auth::Authenticated);
                    }
                }
            }
            return;
        }
        match self.ctx {
            Ctx::From => self.tcp_info_comment(ws),
            Ctx::By => {
                if self.hop.by_ip.is_none() {
                    self.hop.by_ip = ws.iter().find_map(|w| any_ip(w).map(|(ip, _)| ip));
                }
                // Postfix's local submission: `by host (Postfix, from userid 1000)`
                if let Some(uid) = after_words(ws, "from", "userid")
                    && self.hop.auth.is_none()
                {
                    self.hop.auth = Some(Auth::LocalUser(format!("uid {uid}")));
                }
            }
            _ => {}
        }
    }

    /// A comment in the FROM clause: TCP information in any MTA's layout.
    fn tcp_info_comment(&mut self, ws: &[&'a str]) {
        let first = self.from.comments == 0;
        self.from.comments += 1;
        // The tests that need no address parser first: usually a `[`
        // decides, and the words' addresses are read once, in the loop.
        let tcp = ws.len() <= 1
            || ws.iter().any(|w| {
                w.starts_with('[')
                    || starts_ci(w, "helo=")
                    || w.eq_ignore_ascii_case("helo")
                    || w.eq_ignore_ascii_case("account")
                    || starts_ci(w, "ident=")
            })
            || ws
                .iter()
                .any(|w| any_ip(w).is_some() || ident_ip(w).is_some());
        if !tcp {
            return;
        }
        self.from.tcp_seen = true;
        let mut k = 0;
        while let Some(w) = ws.get(k).copied() {
            let is = |x: &str| w.eq_ignore_ascii_case(x);
            if let Some(h) = w.get(5..).filter(|_| starts_ci(w, "helo=")) {
                if !h.is_empty() && self.from.explicit_helo.is_none() {
                    self.from.explicit_helo = Some(h);
                }
            } else if is("helo") || is("account") {
                if let Some(next) = ws.get(k + 1).copied() {
                    if is("helo") {
                        self.from.explicit_helo.get_or_insert(next);
                    } else {
                        self.hop.auth = Some(Auth::User(next.to_string()));
                    }
                }
                k += 1;
            } else if let Some(p) = w.get(5..).filter(|_| starts_ci(w, "port=")) {
                if self.hop.port.is_none() {
                    self.hop.port = p.parse().ok();
                }
            } else if starts_ci(w, "ident=") {
                // RFC 1413 ident: not kept
            } else if let Some((ip, port)) = any_ip(w).or_else(|| ident_ip(w).map(|ip| (ip, None)))
            {
                if self.hop.ip.is_none() {
                    self.hop.ip = Some(ip);
                    if port.is_some() {
                        self.hop.port = port;
                    }
                }
            } else if w.starts_with('[') {
                // `[local]`, `[UNAVAILABLE]`: no address
            } else if is("unknown") {
                self.from.named = true;
            } else if k == 0 && !self.from.named && hostname_chars(w) {
                // (`hostname_like`: the branches above found it is no
                // address and not `unknown`.)
                let name = w.trim_end_matches('.');
                if first && self.from.glued {
                    self.from.glued_named = true;
                }
                self.from.comment_rdns.get_or_insert(name);
                self.from.named = true;
            }
            k += 1;
        }
    }

    fn finish(mut self) -> Hop<'a> {
        // Names of the connecting host.
        let f = std::mem::take(&mut self.from);
        if f.present {
            let value = f.value;
            let value_ip = value.and_then(any_ip);
            let value_host = value
                .filter(|v| value_ip.is_none() && hostname_like_not_ip(v))
                .map(|v| v.trim_end_matches('.'));
            if let Some(h) = f.explicit_helo {
                self.hop.helo = Some(Cow::Borrowed(h));
                self.hop.rdns = f.comment_rdns.or(value_host).map(Cow::Borrowed);
            } else if f.glued && !f.glued_named {
                // smap / Obtuse smtpd: `from rdns(ip)`
                self.hop.rdns = value_host.map(Cow::Borrowed);
            } else if f.tcp_seen {
                self.hop.helo = value.map(Cow::Borrowed);
                self.hop.rdns = f.comment_rdns.map(Cow::Borrowed);
            } else if value_ip.is_none() {
                self.hop.helo = value.map(Cow::Borrowed);
            }
            if self.hop.ip.is_none()
                && let Some((ip, port)) = value_ip
            {
                self.hop.ip = Some(ip);
                if self.hop.port.is_none() {
                    self.hop.port = port;
                }
            }
            self.hop.from = value.map(Cow::Borrowed);
        }
        // Protocol, and what a `PROTO/TLS/CIPHER` value says.
        if let Some(with) = self.hop.with.clone() {
            let w: &str = &with;
            // (Split only when there is a `/`: most values have none.)
            let mut parts = w.splitn(3, '/');
            let slash = memchr::memchr(b'/', w.as_bytes()).is_some();
            let first = if slash { parts.next().unwrap_or("") } else { w };
            let second = if slash { parts.next() } else { None };
            let base = if second.is_some_and(|p| p.eq_ignore_ascii_case("tls")) {
                self.tls_flag = true;
                // The parts after the second `/`, as written.
                let cipher = parts.next().unwrap_or("");
                if !cipher.is_empty() && self.hop.tls_cipher.is_none() {
                    self.hop.tls_cipher = Some(part_of(&with, cipher));
                }
                first
            } else {
                w
            };
            let tls =
                self.tls_flag || self.hop.tls_version.is_some() || self.hop.tls_cipher.is_some();
            self.hop.protocol = Some(match protocol_name(base, tls) {
                Ok(known) => Cow::Borrowed(known),
                Err(as_written) => part_of(&with, as_written),
            });
        }
        if let Some(p) = &self.hop.protocol
            && authenticated_protocol(p)
            && self.hop.auth.is_none()
        {
            self.hop.auth = Some(Auth::Authenticated);
        }
        // Exim's `from user by host with local`: the FROM token is a login.
        if self.hop.protocol.as_deref() == Some("LOCAL") && !f.tcp_seen {
            self.hop.helo = None;
        }
        self.hop.tz_assumed = self.hop.date.is_some_and(|d| d.tz_assumed);
        self.hop
    }
}

/// `part`, a slice of `whole`'s text, with `whole`'s lifetime when
/// `whole` borrows (else a copy).
fn part_of<'a>(whole: &Cow<'a, str>, part: &str) -> Cow<'a, str> {
    if let Cow::Borrowed(w) = whole {
        let off = (part.as_ptr() as usize).wrapping_sub(w.as_ptr() as usize);
        if let Some(p) = w.get(off..off.saturating_add(part.len()))
            && p.as_ptr() == part.as_ptr()
        {
            return Cow::Borrowed(p);
        }
    }
    Cow::Owned(part.to_string())
}

// ---------------------------------------------------------------- helpers

fn short(w: &str) -> String {
    if w.chars().count() <= 60 {
        w.to_string()
    } else {
        let mut s: String = w.chars().take(57).collect();
        s.push_str("...");
        s
    }
}

/// `str::trim`, with the usual case (nothing to trim) found without
/// decoding characters: an ASCII byte that is not whitespace at each end.
pub(crate) fn trim(s: &str) -> &str {
    let maybe_space = |c: &u8| MAYBE_SPACE[usize::from(*c)];
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(z)) if !maybe_space(a) && !maybe_space(z) => s,
        _ => s.trim(),
    }
}

/// The bytes that may be (part of) whitespace `str::trim` removes: ASCII
/// tab to carriage return, space, and every non-ASCII byte.
const MAYBE_SPACE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = matches!(c, b'\t'..=b'\r' | b' ') || !c.is_ascii();
        i += 1;
    }
    t
};

/// `w` starts with the ASCII text `prefix`, ignoring case.
fn starts_ci(w: &str, prefix: &str) -> bool {
    w.as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Where `w` contains `needle` (`w.find(needle)` for a short haystack,
/// without setting up a searcher).
fn find_exact(w: &str, needle: &str) -> Option<usize> {
    let (h, n) = (w.as_bytes(), needle.as_bytes());
    let first = *n.first()?;
    // A plain loop: the haystacks are comments, mostly a few dozen bytes,
    // shorter than what a vectorised search needs to pay off.
    (0..h.len()).find(|&at| h[at] == first && h.get(at..at + n.len()) == Some(n))
}

/// `w` contains the ASCII text `needle` (not empty), ignoring case: what
/// `w.to_ascii_lowercase().contains(needle)` says for a lower-case
/// needle, without the copy.
fn contains_ci(w: &str, needle: &str) -> bool {
    let (h, n) = (w.as_bytes(), needle.as_bytes());
    let Some(&first) = n.first() else {
        return true;
    };
    let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    // A plain loop, as in `find_exact`.
    (0..h.len()).any(|at| {
        (h[at] == lo || h[at] == up)
            && h.get(at..at + n.len())
                .is_some_and(|c| c.eq_ignore_ascii_case(n))
    })
}

/// The word after the pair `a b` (case-insensitive), if any.
fn after_words<'w>(ws: &[&'w str], a: &str, b: &str) -> Option<&'w str> {
    ws.windows(3)
        .find(|w| {
            w.first().is_some_and(|x| x.eq_ignore_ascii_case(a))
                && w.get(1).is_some_and(|x| x.eq_ignore_ascii_case(b))
        })
        .and_then(|w| w.get(2).copied())
        .map(|u| u.trim_end_matches([',', ')']))
}

fn strip_angle(v: &str) -> &str {
    let v = trim(v);
    let v = v.strip_prefix('<').unwrap_or(v);
    let v = v.strip_suffix('>').unwrap_or(v);
    trim(v)
}

/// A host name: letters, digits, `-._` (and non-ASCII), not an address, not
/// `unknown`. (The parser asks [`hostname_like_not_ip`] or
/// [`hostname_chars`] once it has read the word's address.)
#[cfg(test)]
fn hostname_like(w: &str) -> bool {
    hostname_like_not_ip(w) && any_ip(w).is_none()
}

/// [`hostname_like`] for a word known not to be an address.
fn hostname_like_not_ip(w: &str) -> bool {
    hostname_chars(w) && !w.eq_ignore_ascii_case("unknown")
}

/// The characters of a host name: letters, digits, `-._` and non-ASCII,
/// at least one letter or digit.
fn hostname_chars(w: &str) -> bool {
    // One pass over the bytes that only gathers their classes (the usual
    // case is all ASCII); characters are decoded only when one is not.
    let seen = w
        .bytes()
        .fold(0u8, |acc, c| acc | HOST_CLASS[usize::from(c)]);
    if seen & NON_ASCII != 0 {
        return w.chars().any(|c| c.is_alphanumeric())
            && w.chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.' || c == '_' || !c.is_ascii());
    }
    seen & OTHER == 0 && seen & ALNUM != 0
}

/// [`HOST_CLASS`] bits: an ASCII letter or digit, `-._`, another ASCII
/// byte, a byte of a non-ASCII character.
const ALNUM: u8 = 1;
const PUNCT: u8 = 2;
const OTHER: u8 = 4;
const NON_ASCII: u8 = 8;

/// The class of each byte for [`hostname_chars`].
const HOST_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_alphanumeric() {
            ALNUM
        } else if c == b'-' || c == b'.' || c == b'_' {
            PUNCT
        } else if c.is_ascii() {
            OTHER
        } else {
            NON_ASCII
        };
        i += 1;
    }
    t
};

/// Normalise an address: `IPv6:` prefix and zone id dropped, IPv4-mapped
/// IPv6 written as IPv4.
pub fn normalize_ip(s: &str) -> Option<String> {
    normalize_ip_cow(s).map(Cow::into_owned)
}

/// [`normalize_ip`], borrowing the text when it is already normal (an
/// IPv4 address is).
pub(crate) fn normalize_ip_cow(s: &str) -> Option<Cow<'_, str>> {
    let s = trim(s);
    let s = match s.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ipv6:") => s.get(5..).unwrap_or(""),
        _ => s,
    };
    // Only hex digits, `.` and `:` can make an address (up to a `%` and
    // its zone id, dropped): a host name is turned away at its first
    // other byte, before the two parsers try it.
    let s = match s
        .bytes()
        .position(|c| !(c.is_ascii_hexdigit() || c == b'.' || c == b':'))
    {
        Some(k) if s.as_bytes()[k] == b'%' => s.get(..k).unwrap_or(""),
        Some(_) => return None,
        None => s,
    };
    if canonical_ipv4(s) {
        return Some(Cow::Borrowed(s));
    }
    match s.parse::<IpAddr>().ok()? {
        // The parser takes only the canonical dotted quad (no leading
        // zeros, no spaces), so the text is already what `to_string` gives.
        IpAddr::V4(_) => Some(Cow::Borrowed(s)),
        IpAddr::V6(v6) => Some(Cow::Owned(match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        })),
    }
}

/// Whether `s` is a dotted quad as `Ipv4Addr`'s parser takes it (and
/// writes it): four decimal numbers up to 255, each `0` or without a
/// leading zero. The usual address is checked here without the parser;
/// anything else goes to it.
fn canonical_ipv4(s: &str) -> bool {
    let mut parts = 0;
    let mut value = 0u32;
    let mut digits = 0;
    for &c in s.as_bytes() {
        if c.is_ascii_digit() {
            if digits > 0 && value == 0 {
                // A leading zero.
                return false;
            }
            value = value * 10 + u32::from(c - b'0');
            digits += 1;
            if value > 255 {
                return false;
            }
        } else if c == b'.' && digits > 0 && parts < 3 {
            parts += 1;
            value = 0;
            digits = 0;
        } else {
            return false;
        }
    }
    parts == 3 && digits > 0
}

/// An address with optional port: `[a]`, `[a]:port`, `[IPv6:a%z]`, a bare
/// address, or `a.b.c.d:port`. Extra closing brackets are tolerated.
pub fn any_ip(w: &str) -> Option<(Cow<'_, str>, Option<u16>)> {
    let w = trim(w).trim_end_matches(',');
    if let Some(rest) = w.strip_prefix('[') {
        let (inner, after) = match memchr::memchr(b']', rest.as_bytes()) {
            Some(k) => (rest.get(..k).unwrap_or(""), rest.get(k + 1..).unwrap_or("")),
            None => (rest, ""),
        };
        let ip = normalize_ip_cow(inner)?;
        let port = after.strip_prefix(':').and_then(|p| {
            let n = p.bytes().take_while(u8::is_ascii_digit).count();
            p.get(..n)?.parse().ok()
        });
        return Some((ip, port));
    }
    // Unbracketed, an address starts with a digit, a hex letter, `:`, `.`
    // or the `IPv6:` prefix: most host names are turned away here.
    if !w
        .as_bytes()
        .first()
        .is_some_and(|&c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.' | b'i' | b'I'))
    {
        return None;
    }
    if let Some(ip) = normalize_ip_cow(w) {
        return Some((ip, None));
    }
    let colon = memchr::memrchr(b':', w.as_bytes())?;
    let (a, p) = (w.get(..colon)?, w.get(colon + 1..)?);
    if memchr::memchr(b':', a.as_bytes()).is_some() {
        return None;
    }
    a.parse::<std::net::Ipv4Addr>().ok()?;
    // Canonical when it parses (see `normalize_ip`): kept as written.
    Some((Cow::Borrowed(a), Some(p.parse().ok()?)))
}

/// qmail's `ident@a.b.c.d`: the address part.
fn ident_ip(w: &str) -> Option<Cow<'_, str>> {
    let at = memchr::memrchr(b'@', w.as_bytes())?;
    any_ip(w.get(at + 1..)?).map(|(ip, _)| ip)
}

/// Is this a TLS protocol name (`TLSv1.3`, `TLS1_2`, `TLS1.3`, `SSLv3`)?
fn is_tls_version(w: &str) -> bool {
    if !(starts_ci(w, "tls") || starts_ci(w, "ssl")) {
        return false;
    }
    let rest = w.get(3..).unwrap_or("");
    let rest = rest
        .strip_prefix('v')
        .or_else(|| rest.strip_prefix('V'))
        .unwrap_or(rest);
    rest.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && rest
            .bytes()
            .all(|c| c.is_ascii_digit() || c == b'.' || c == b'_')
}

/// OpenSSL's names: `TLS1_3`, `TLS1.3`, `tlsv1.3` -> `TLSv1.3`; `TLS1_0` -> `TLSv1`.
pub fn normalize_tls_version(w: &str) -> String {
    normalize_tls_version_cow(w).into_owned()
}

/// [`normalize_tls_version`], borrowing `w` when it is already normal.
fn normalize_tls_version_cow(w: &str) -> Cow<'_, str> {
    if !is_tls_version(w) {
        return Cow::Borrowed(w);
    }
    // Already OpenSSL's name: `TLSv` or `SSLv`, no `_`, no `.0` to drop.
    if let Some(rest) = w.strip_prefix("TLSv").or_else(|| w.strip_prefix("SSLv"))
        && !rest.contains('_')
        && !matches!(
            (w.as_bytes()[0], rest),
            (b'T', "1.0") | (b'S', "3.0" | "2.0")
        )
    {
        return Cow::Borrowed(w);
    }
    let l = w.to_ascii_lowercase();
    let (name, rest) = if let Some(r) = l.strip_prefix("tls") {
        ("TLS", r)
    } else {
        ("SSL", l.get(3..).unwrap_or(""))
    };
    let rest = rest.strip_prefix('v').unwrap_or(rest).replace('_', ".");
    let rest = match (name, rest.as_str()) {
        ("TLS", "1.0") => "1".to_string(),
        ("SSL", "3.0") => "3".to_string(),
        ("SSL", "2.0") => "2".to_string(),
        _ => rest,
    };
    Cow::Owned(format!("{name}v{rest}"))
}

/// A TLS version and cipher read from a comment.
type TlsInfo<'a> = (Option<Cow<'a, str>>, Option<Cow<'a, str>>);

/// TLS version and cipher from a comment, in every MTA's syntax; `None`
/// when the comment is not about TLS.
///
/// `inner` is trimmed; `ws` are its [`words`] and `seen` what they saw.
fn tls_info<'a>(inner: &'a str, ws: &[&'a str], seen: Seen) -> Option<TlsInfo<'a>> {
    let t = inner;
    let ver = |w: &'a str| is_tls_version(w).then(|| normalize_tls_version_cow(w));
    // Postfix, Stalwart: `using TLSv1.3 with cipher X (256/256 bits) ...`
    if starts_ci(t, "using ") {
        let version = ws.get(1).and_then(|w| ver(w));
        let cipher = ws
            .iter()
            .position(|w| w.eq_ignore_ascii_case("cipher"))
            .and_then(|p| ws.get(p + 1))
            .map(|c| Cow::Borrowed(*c));
        return Some((version, cipher));
    }
    // The next two forms need a `=` or a `:`; most comments have neither.
    let (eq, colon) = (seen.eq, seen.colon);
    // Sendmail, Gmail, OpenSMTPD, Exchange: `version=X cipher=Y`, maybe comma separated
    if eq && (contains_ci(t, "cipher=") || contains_ci(t, "version=")) {
        let mut version = None;
        let mut cipher = None;
        for piece in t.split([' ', ',', '\t']) {
            if starts_ci(piece, "version=") {
                version = piece
                    .get(8..)
                    .filter(|v| !v.is_empty())
                    .map(normalize_tls_version_cow);
            } else if starts_ci(piece, "cipher=") {
                cipher = piece.get(7..).filter(|v| !v.is_empty()).map(Cow::Borrowed);
            }
        }
        if version.is_some() || cipher.is_some() {
            return Some((version, cipher));
        }
    }
    // Courier: `TLS: TLSv1.2,128bits,ECDHE-RSA-AES128-GCM-SHA256`
    if colon && let Some(k) = find_exact(t, "TLS: ") {
        let rest = t.get(k + 5..).unwrap_or("");
        let parts: Vec<&str> = rest
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let version = parts.first().map(|v| normalize_tls_version_cow(v));
        let cipher = parts
            .iter()
            .skip(1)
            .rev()
            .find(|p| !p.to_ascii_lowercase().ends_with("bits"))
            .map(|c| Cow::Borrowed(*c));
        return Some((version, cipher));
    }
    if let [w] = ws {
        // Exim before 4.95, old OpenSMTPD: `TLSv1.3:TLS_AES_256_GCM_SHA384:256`
        // (Only a comment with a `:` can have this form.)
        let mut parts = w.split(':');
        let (first, second) = match colon {
            true => (parts.next().unwrap_or(""), parts.next()),
            false => (*w, None),
        };
        if let Some(second) = second
            && is_tls_version(first)
        {
            let cipher = Some(second).filter(|c| !c.is_empty()).map(Cow::Borrowed);
            return Some((ver(first), cipher));
        }
        // Exim 4.95+: `(TLS1.3)`; Exchange: `(TLS)`
        if is_tls_version(w) {
            return Some((ver(w), None));
        }
        if w.eq_ignore_ascii_case("tls") || w.eq_ignore_ascii_case("ssl") {
            return Some((None, None));
        }
    }
    // qmail TLS patch: `(DHE-RSA-AES256-SHA encrypted)`
    // qpsmtpd, Stalwart: `(CIPHER encrypted, authenticated)`
    if let [c, e, ..] = ws
        && e.trim_end_matches(',').eq_ignore_ascii_case("encrypted")
    {
        return Some((None, Some(Cow::Borrowed(*c))));
    }
    // Gmail: `(Google Transport Security)`
    if t.eq_ignore_ascii_case("google transport security") {
        return Some((None, None));
    }
    None
}

/// `[UTF8](SMTP|ESMTP|LMTP)[S][A]` in upper case: [`smtp_family`]'s names.
const SMTP_FAMILY: [&str; 24] = [
    "SMTP",
    "SMTPS",
    "SMTPA",
    "SMTPSA",
    "ESMTP",
    "ESMTPS",
    "ESMTPA",
    "ESMTPSA",
    "LMTP",
    "LMTPS",
    "LMTPA",
    "LMTPSA",
    "UTF8SMTP",
    "UTF8SMTPS",
    "UTF8SMTPA",
    "UTF8SMTPSA",
    "UTF8ESMTP",
    "UTF8ESMTPS",
    "UTF8ESMTPA",
    "UTF8ESMTPSA",
    "UTF8LMTP",
    "UTF8LMTPS",
    "UTF8LMTPA",
    "UTF8LMTPSA",
];

/// Other WITH values known by name, in upper case.
const OTHER_PROTOCOLS: [&str; 14] = [
    "HTTP",
    "HTTPS",
    "MAPI",
    "LOCAL",
    "LOCAL-ESMTP",
    "LOCAL-SMTP",
    "LOCAL-BSMTP",
    "UUCP",
    "BSMTP",
    "QMQP",
    "QMTP",
    "ASMTP",
    "IMAP",
    "HTTPREST",
];

/// The upper-case name in `names` that `w` is, ignoring ASCII case.
fn known_name(names: &[&'static str], w: &str) -> Option<&'static str> {
    names.iter().copied().find(|n| n.eq_ignore_ascii_case(w))
}

/// Normalise a WITH value; `tls` says whether TLS was noted anywhere.
pub fn normalize_protocol(with: &str, tls: bool) -> String {
    match protocol_name(with, tls) {
        Ok(known) => known.to_string(),
        Err(as_written) => as_written.to_string(),
    }
}

/// [`normalize_protocol`] without a copy: a known protocol's name, or
/// (`Err`) the part of `with` that is the protocol as written.
fn protocol_name(with: &str, tls: bool) -> Result<&'static str, &str> {
    let t = trim(with);
    if starts_ci(t, "microsoft smtp server") {
        return Ok(if tls { "ESMTPS" } else { "ESMTP" });
    }
    if let Some(n) = known_name(&SMTP_FAMILY, t).or_else(|| known_name(&OTHER_PROTOCOLS, t)) {
        return Ok(n);
    }
    // A banner or host name around the protocol word: IBM's
    // `IBM ESMTP SMTP Gateway: ...`, `host.example ESMTP`.
    match t
        .split_whitespace()
        .find_map(|w| known_name(&SMTP_FAMILY, w))
    {
        Some(n) => Ok(n),
        None => Err(t),
    }
}

/// `[UTF8](SMTP|ESMTP|LMTP)[S][A]`, ignoring ASCII case.
fn smtp_family(l: &str) -> bool {
    known_name(&SMTP_FAMILY, l).is_some()
}

fn authenticated_protocol(p: &str) -> bool {
    (smtp_family(p) && p.ends_with(['a', 'A'])) || p.eq_ignore_ascii_case("asmtp")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Hop<'static> {
        parse(s)
    }

    fn utc(h: &Hop) -> Option<String> {
        h.date.map(|d| d.to_rfc3339_utc())
    }

    #[test]
    fn postfix_plain_tls_and_auth() {
        let h = p(
            "from mail.example.org (mail.example.org [192.0.2.1])\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)\n\t(No client certificate requested)\n\tby mx.example.com (Postfix) with ESMTPS id 4Abc1x2Y3z\n\tfor <bob@example.com>; Mon,  1 Jan 2024 12:00:00 +0100 (CET)",
        );
        assert_eq!(h.from.as_deref(), Some("mail.example.org"));
        assert_eq!(h.helo.as_deref(), Some("mail.example.org"));
        assert_eq!(h.rdns.as_deref(), Some("mail.example.org"));
        assert_eq!(h.ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(h.by.as_deref(), Some("mx.example.com"));
        assert_eq!(h.protocol.as_deref(), Some("ESMTPS"));
        assert_eq!(h.tls_version.as_deref(), Some("TLSv1.3"));
        assert_eq!(h.tls_cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
        assert_eq!(h.id.as_deref(), Some("4Abc1x2Y3z"));
        assert_eq!(h.for_addr.as_deref(), Some("bob@example.com"));
        assert_eq!(utc(&h).as_deref(), Some("2024-01-01T11:00:00Z"));
        assert_eq!(h.auth, None);
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);

        let h = p(
            "from laptop (unknown [198.51.100.7])\n\t(Authenticated sender: alice@example.com)\n\tby smtp.example.com (Postfix) with ESMTPSA id 1A2B3C\n\tfor <x@example.net>; Tue, 2 Jan 2024 08:00:00 +0000 (UTC)",
        );
        assert_eq!(h.helo.as_deref(), Some("laptop"));
        assert_eq!(h.rdns, None);
        assert_eq!(h.auth, Some(Auth::User("alice@example.com".into())));
        assert_eq!(h.protocol.as_deref(), Some("ESMTPSA"));

        // UTF8 variants, LMTP, SMTPUTF8
        let h = p(
            "from a (a [192.0.2.9]) by b (Postfix) with UTF8SMTPSA id X; 1 Jan 2024 00:00:00 +0000",
        );
        assert_eq!(h.protocol.as_deref(), Some("UTF8SMTPSA"));
        assert_eq!(h.auth, Some(Auth::Authenticated));
    }

    #[test]
    fn exim_forms() {
        // 4.95+: `(TLS1.3) tls CIPHER`
        let h = p(
            "from mail.example.org ([192.0.2.1]:51234 helo=smtp.example.org)\n\tby mx.example.com with esmtps  (TLS1.3) tls TLS_AES_256_GCM_SHA384\n\t(Exim 4.96)\n\t(envelope-from <alice@example.org>)\n\tid 1qZ9Xy-000AbC-2D\n\tfor bob@example.com;\n\tSun, 27 Aug 2023 12:00:06 +0200",
        );
        assert_eq!(h.from.as_deref(), Some("mail.example.org"));
        assert_eq!(h.rdns.as_deref(), Some("mail.example.org"));
        assert_eq!(h.helo.as_deref(), Some("smtp.example.org"));
        assert_eq!(h.ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(h.port, Some(51234));
        assert_eq!(h.with.as_deref(), Some("esmtps"));
        assert_eq!(h.protocol.as_deref(), Some("ESMTPS"));
        assert_eq!(h.tls_version.as_deref(), Some("TLSv1.3"));
        assert_eq!(h.tls_cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
        assert_eq!(h.envelope_from.as_deref(), Some("alice@example.org"));
        assert_eq!(h.id.as_deref(), Some("1qZ9Xy-000AbC-2D"));
        assert_eq!(h.for_addr.as_deref(), Some("bob@example.com"));
        assert_eq!(utc(&h).as_deref(), Some("2023-08-27T10:00:06Z"));
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);

        // unknown rDNS with port=
        let h = p(
            "from [192.0.2.7] (port=40000 helo=client.example)\n\tby mx.example.com with esmtp (Exim 4.92)\n\t(envelope-from <>)\n\tid 1abcde-0001Xy-Zz; Mon, 01 Jan 2024 10:00:00 +0000",
        );
        assert_eq!(h.ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(h.port, Some(40000));
        assert_eq!(h.helo.as_deref(), Some("client.example"));
        assert_eq!(h.rdns, None);
        assert_eq!(h.envelope_from.as_deref(), Some(""));

        // local submission
        let h = p(
            "from alice by host.example.com with local (Exim 4.92)\n\t(envelope-from <alice@host.example.com>)\n\tid 1abcde-0001Xy-Zz; Mon, 01 Jan 2024 10:00:00 +0000",
        );
        assert_eq!(h.from.as_deref(), Some("alice"));
        assert_eq!(h.helo, None);
        assert_eq!(h.protocol.as_deref(), Some("LOCAL"));
    }

    #[test]
    fn sendmail_and_gmail_key_value_tls() {
        let h = p(
            "from client.example.org (client.example.org [192.0.2.3])\n\tby mx.example.com (8.15.2/8.15.2) with ESMTPS id 40AB1c2D003456\n\t(version=TLSv1.2 cipher=ECDHE-RSA-AES256-GCM-SHA384 bits=256 verify=NOT)\n\tfor <bob@example.com>; Mon, 1 Jan 2024 10:00:00 -0500",
        );
        assert_eq!(h.tls_version.as_deref(), Some("TLSv1.2"));
        assert_eq!(h.tls_cipher.as_deref(), Some("ECDHE-RSA-AES256-GCM-SHA384"));
        assert_eq!(utc(&h).as_deref(), Some("2024-01-01T15:00:00Z"));

        let h = p(
            "from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41])\n        by mx.google.com with SMTPS id a1sor123456qkb.12.2024.01.01.10.00.00\n        for <bob@example.com>\n        (Google Transport Security);\n        Mon, 01 Jan 2024 10:00:00 -0800 (PST)",
        );
        assert_eq!(h.rdns.as_deref(), Some("mail-sor-f41.google.com"));
        assert_eq!(h.protocol.as_deref(), Some("SMTPS"));
        assert_eq!(h.ip.as_deref(), Some("209.85.220.41"));

        let h = p(
            "from smtp.example.org (smtp.example.org. [2607:f8b0:4864:20::62b])\n        by mx.google.com with ESMTPS id x12si345678pfa.100.2024.01.01.10.00.00\n        for <bob@gmail.com>\n        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);\n        Mon, 01 Jan 2024 10:00:00 -0800 (PST)",
        );
        assert_eq!(h.tls_version.as_deref(), Some("TLSv1.3"));
        assert_eq!(h.tls_cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
        assert_eq!(h.ip.as_deref(), Some("2607:f8b0:4864:20::62b"));

        // Gmail submission over SMTP with AUTH
        let h = p(
            "from [192.168.1.10] ([203.0.113.5])\n        by smtp.gmail.com with ESMTPSA id k3sm1234567wrx.50.2024.01.01.10.00.00\n        for <bob@example.com>\n        (version=TLS1_2 cipher=ECDHE-ECDSA-AES128-GCM-SHA256 bits=128/128);\n        Mon, 01 Jan 2024 10:00:00 -0800 (PST)",
        );
        assert_eq!(h.helo.as_deref(), Some("[192.168.1.10]"));
        assert_eq!(h.ip.as_deref(), Some("203.0.113.5"));
        assert_eq!(h.auth, Some(Auth::Authenticated));

        // Gmail internal hop: BY is an address, no FROM
        let h = p(
            "by 2002:a05:6a10:a0c:b0:4f2:1a3b:5c6d with SMTP id abc123csp456789pxb;\n        Mon, 1 Jan 2024 10:00:01 -0800 (PST)",
        );
        assert_eq!(h.by.as_deref(), Some("2002:a05:6a10:a0c:b0:4f2:1a3b:5c6d"));
        assert_eq!(h.by_ip, None);
        assert_eq!(h.from, None);
        assert_eq!(utc(&h).as_deref(), Some("2024-01-01T18:00:01Z"));

        // Sendmail local submission
        let h = p(
            "(from root@localhost)\n\tby host.example.com (8.15.2/8.15.2/Submit) id 401A0B1c000123;\n\tMon, 1 Jan 2024 10:00:00 GMT",
        );
        assert_eq!(h.auth, Some(Auth::LocalUser("root".into())));
        assert_eq!(h.from, None);
    }

    #[test]
    fn opensmtpd_courier_zmailer_qmail() {
        let h = p(
            "from mail.example.org (mail.example.org [192.0.2.1])\n\tby mx.example.com (OpenSMTPD) with ESMTPS id 1a2b3c4d (TLSv1.3:TLS_AES_256_GCM_SHA384:256:NO)\n\tfor <bob@example.com>;\n\tMon, 1 Jan 2024 10:00:00 +0000 (UTC)",
        );
        assert_eq!(h.tls_version.as_deref(), Some("TLSv1.3"));
        assert_eq!(h.tls_cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
        let h = p(
            "from mail.example.org (mail.example.org [192.0.2.1])\n\tby mx.example.com (OpenSMTPD) with ESMTPS id 5e6f7a8b\n\t(TLS version=TLSv1.3 cipher=TLS_CHACHA20_POLY1305_SHA256 bits=256 verify=NO)\n\tfor <bob@example.com>; Mon, 1 Jan 2024 10:00:00 +0000 (UTC)",
        );
        assert_eq!(h.tls_version.as_deref(), Some("TLSv1.3"));
        assert_eq!(
            h.tls_cipher.as_deref(),
            Some("TLS_CHACHA20_POLY1305_SHA256")
        );

        // Courier: AUTH and TLS in one comment, id after the date
        let h = p(
            "from client.example.org (client.example.org [::ffff:192.0.2.44])\n  (AUTH: LOGIN alice, TLS: TLSv1.2,256bits,ECDHE-RSA-AES256-GCM-SHA384)\n  by mail.example.com with ESMTPSA; Mon, 01 Jan 2024 10:00:00 +0000\n  id 00000000.65920000.00001234",
        );
        assert_eq!(h.ip.as_deref(), Some("192.0.2.44"));
        assert_eq!(h.auth, Some(Auth::User("alice".into())));
        assert_eq!(h.tls_version.as_deref(), Some("TLSv1.2"));
        assert_eq!(h.tls_cipher.as_deref(), Some("ECDHE-RSA-AES256-GCM-SHA384"));
        assert_eq!(h.id.as_deref(), Some("00000000.65920000.00001234"));
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);

        // ZMailer: id in angle brackets
        let h = p(
            "from example.net (example.net [192.0.2.5]) by mx.example.com with ESMTP id <20240101100000Z12345-678+9>; Mon, 1 Jan 2024 12:00:00 +0200",
        );
        assert_eq!(h.id.as_deref(), Some("20240101100000Z12345-678+9"));

        // qmail: local and network
        let h = p("(qmail 12345 invoked by uid 89); 1 Jan 2024 10:00:00 -0000");
        assert_eq!(utc(&h).as_deref(), Some("2024-01-01T10:00:00Z"));
        assert_eq!(h.auth, Some(Auth::LocalUser("uid 89".into())));
        let h = p("(qmail 12345 invoked from network); 1 Jan 2024 10:00:00 -0000");
        assert_eq!(h.auth, None);
        // Postfix local submission
        let h = p(
            "by mail.example.com (Postfix, from userid 1000)\n\tid 4Tq1x2y3z4; Mon,  1 Jan 2024 10:00:00 +0100 (CET)",
        );
        assert_eq!(h.auth, Some(Auth::LocalUser("uid 1000".into())));
        assert_eq!(h.by_ip, None);
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        // Gmail API submission
        let h = p(
            "from 717937561175 named unknown by gmailapi.google.com with HTTPREST; Mon, 24 Jan 2022 08:00:00 -0800",
        );
        assert_eq!(h.by.as_deref(), Some("gmailapi.google.com"));
        assert_eq!(h.protocol.as_deref(), Some("HTTPREST"));
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        let h = p(
            "from unknown (HELO client) (198.51.100.20)\n  by mail.example.com with SMTP; 1 Jan 2024 10:00:00 -0000",
        );
        assert_eq!(h.helo.as_deref(), Some("client"));
        assert_eq!(h.rdns, None);
        assert_eq!(h.ip.as_deref(), Some("198.51.100.20"));
        // qmail TLS patch
        let h = p(
            "from unknown (HELO client) (198.51.100.20)\n  (DHE-RSA-AES256-GCM-SHA384 encrypted) by mail.example.com with ESMTPS; 1 Jan 2024 10:00:00 -0000",
        );
        assert_eq!(h.tls_cipher.as_deref(), Some("DHE-RSA-AES256-GCM-SHA384"));
    }

    #[test]
    fn exchange_office365() {
        let h = p(
            "from DM6PR11MB1234.namprd11.prod.outlook.com (2603:10b6:5:1c0::15) by\n BN6PR11MB5678.namprd11.prod.outlook.com (2603:10b6:404:b4::20) with\n Microsoft SMTP Server (version=TLS1_2,\n cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.4308.18; Mon, 19 Jul\n 2021 18:02:21 +0000",
        );
        assert_eq!(
            h.helo.as_deref(),
            Some("DM6PR11MB1234.namprd11.prod.outlook.com")
        );
        assert_eq!(h.ip.as_deref(), Some("2603:10b6:5:1c0::15"));
        assert_eq!(h.by_ip.as_deref(), Some("2603:10b6:404:b4::20"));
        assert_eq!(h.with.as_deref(), Some("Microsoft SMTP Server"));
        assert_eq!(h.protocol.as_deref(), Some("ESMTPS"));
        assert_eq!(h.tls_version.as_deref(), Some("TLSv1.2"));
        assert_eq!(
            h.tls_cipher.as_deref(),
            Some("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
        );
        assert_eq!(h.id.as_deref(), Some("15.20.4308.18"));
        assert_eq!(utc(&h).as_deref(), Some("2021-07-19T18:02:21Z"));
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);

        let h = p(
            "from BN6PR11CA0012.namprd11.prod.outlook.com (2603:10b6:405:2::22) by\n DM6PR11MB1234.namprd11.prod.outlook.com (2603:10b6:5:1c0::15) with Microsoft\n SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id\n 15.20.4308.18 via Frontend Transport; Mon, 19 Jul 2021 18:02:20 +0000",
        );
        assert_eq!(h.via.as_deref(), Some("Frontend Transport"));
        let h = p(
            "from mail.example.org (192.0.2.1) by EXCH01.corp.example.com (10.0.0.5) with Microsoft SMTP Server id 14.3.468.0; Mon, 19 Jul 2021 18:02:20 +0000",
        );
        assert_eq!(h.protocol.as_deref(), Some("ESMTP"));
        assert_eq!(h.by_ip.as_deref(), Some("10.0.0.5"));
        let h = p(
            "from AM0PR01MB1234.eurprd01.prod.exchangelabs.com\n ([fe80::1c2d:3e4f:5a6b:7c8d]) by AM0PR01MB1234.eurprd01.prod.exchangelabs.com\n ([fe80::1c2d:3e4f:5a6b:7c8d%4]) with mapi id 15.20.4308.026; Mon, 19 Jul 2021\n 18:02:19 +0000",
        );
        assert_eq!(h.protocol.as_deref(), Some("MAPI"));
        assert_eq!(h.by_ip.as_deref(), Some("fe80::1c2d:3e4f:5a6b:7c8d"));
        let h = p("from [IPv6:fe80::1%eth0]:25 by x with HTTPS; 1 Jan 2024 00:00:00 +0000");
        assert_eq!(h.ip.as_deref(), Some("fe80::1"));
        assert_eq!(h.port, Some(25));
        assert_eq!(h.protocol.as_deref(), Some("HTTPS"));
    }

    #[test]
    fn senders_and_filters() {
        // amavis
        let h = p(
            "from mail.example.com ([127.0.0.1])\n\tby localhost (mail.example.com [127.0.0.1]) (amavisd-new, port 10024)\n\twith ESMTP id AbCdEfGh1234 for <bob@example.com>;\n\tMon,  1 Jan 2024 10:00:00 +0100 (CET)",
        );
        assert_eq!(h.by.as_deref(), Some("localhost"));
        assert_eq!(h.by_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(h.protocol.as_deref(), Some("ESMTP"));
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        // Dovecot LMTP
        let h = p(
            "from mail.example.com\n\tby mail.example.com with LMTP\n\tid AbCdEf0123456789ab (envelope-from <alice@example.org>)\n\tfor <bob@example.com>; Mon, 01 Jan 2024 10:00:00 +0100",
        );
        assert_eq!(h.protocol.as_deref(), Some("LMTP"));
        assert_eq!(h.helo.as_deref(), Some("mail.example.com"));
        assert_eq!(h.envelope_from.as_deref(), Some("alice@example.org"));
        assert_eq!(h.id.as_deref(), Some("AbCdEf0123456789ab"));
        let h = p(
            "from mx.example.com ([192.0.2.8])\n\tby imap.example.com with LMTPS\n\tid 2ABCD (envelope-from <a@b>) for <c@d>; Mon, 01 Jan 2024 10:00:00 +0100",
        );
        assert_eq!(h.protocol.as_deref(), Some("LMTPS"));
        // SES
        let h = p(
            "from a8-30.smtp-out.amazonses.com (a8-30.smtp-out.amazonses.com. [54.240.8.30])\n        by mx.google.com with ESMTPS id x1si1234567qtb.123.2024.01.01.10.00.00\n        for <bob@example.com>\n        (version=TLS1_2 cipher=ECDHE-RSA-AES128-SHA bits=128/128);\n        Mon, 01 Jan 2024 10:00:00 -0800 (PST)",
        );
        assert_eq!(h.rdns.as_deref(), Some("a8-30.smtp-out.amazonses.com"));
        assert_eq!(h.tls_cipher.as_deref(), Some("ECDHE-RSA-AES128-SHA"));
        // Yahoo modern
        let h = p(
            "from 10.197.33.10\n by atlas116.free.mail.bf1.yahoo.com with HTTP; Mon, 1 Jan 2024 10:00:00 +0000",
        );
        assert_eq!(h.ip.as_deref(), Some("10.197.33.10"));
        assert_eq!(h.helo, None);
        assert_eq!(h.protocol.as_deref(), Some("HTTP"));
        let h = p(
            "from [203.0.113.9] by smtp.mail.yahoo.com (VZM Hermes SMTP Server) with ESMTPA ID 0123456789abcdef;\n          Mon, 01 Jan 2024 10:00:00 +0000 (UTC)",
        );
        assert_eq!(h.id.as_deref(), Some("0123456789abcdef"));
        assert_eq!(h.auth, Some(Auth::Authenticated));
        // SendGrid ISO-like date and multiple recipients
        let h = p(
            "by filter0001p1las1.sendgrid.net with SMTP id abc-123 for <multiple recipients> 2024-01-02 03:04:05.123 +0000 UTC",
        );
        assert_eq!(h.for_addr.as_deref(), Some("multiple recipients"));
        assert_eq!(utc(&h).as_deref(), Some("2024-01-02T03:04:05.123Z"));
        // IronPort-style `ESMTP/TLS/cipher`
        let h = p(
            "from unknown (HELO x.example) ([192.0.2.1])\n  by esa.example.com with ESMTP/TLS/ECDHE-RSA-AES256-GCM-SHA384; 02 Sep 2023 04:24:06 +0200",
        );
        assert_eq!(h.protocol.as_deref(), Some("ESMTP"));
        assert_eq!(h.tls_cipher.as_deref(), Some("ECDHE-RSA-AES256-GCM-SHA384"));
    }

    #[test]
    fn odd_layouts() {
        // uppercase keywords, no `;`, date before ids and FOR
        let h = p(
            "FROM a.example (a.example [192.0.2.1]) BY b.example WITH ESMTP ID 123 FOR <c@d> ; 1 Jan 2024 00:00:00 +0000",
        );
        assert_eq!(h.by.as_deref(), Some("b.example"));
        assert_eq!(h.id.as_deref(), Some("123"));
        assert_eq!(h.for_addr.as_deref(), Some("c@d"));
        let h = p("from x ([192.0.2.1]) by y with ESMTP id ABC Mon, 1 Jan 2024 00:00:00 +0000");
        assert_eq!(h.id.as_deref(), Some("ABC"));
        assert_eq!(utc(&h).as_deref(), Some("2024-01-01T00:00:00Z"));
        // may be forged
        let h = p(
            "from a.example (b.example [192.0.2.1] (may be forged)) by c; 1 Jan 2024 00:00:00 +0000",
        );
        assert!(h.may_be_forged);
        assert_eq!(h.rdns.as_deref(), Some("b.example"));
        // asctime without zone flags tz_assumed
        let h = p("from x by y; Sun Nov 13 14:50:12 2005");
        assert!(h.tz_assumed);
        // junk is kept and named
        let h = p("from x by y zzz qqq; garbage here");
        assert!(!h.warnings.is_empty());
        assert_eq!(h.raw, "from x by y zzz qqq; garbage here");
        // empty and nonsense
        assert_eq!(p("").by, None);
        let _ = p(";;;;((((");
        let _ = p("from");
        let _ = p("from (");
        let _ = p("[[[");
        let _ = p("from [IPv6:]");
        let _ = p("from x (\\");
        let _ = p("<<<<");
        let _ = p("\"unterminated");
        let _ = p("from é (é [é]) by é; é");
    }

    #[test]
    fn shapes_from_the_public_corpora() {
        // A bracketed address written without parentheses (SMTPD32).
        let h = p(
            "from xcar [192.168.0.2] by jeeves.wooster.local (SMTPD32-7.07 EVAL) id A1B2C3D4; Sat, 23 Dec 2000 20:47:23 +0000",
        );
        assert_eq!(h.from.as_deref(), Some("xcar"));
        assert_eq!(h.helo.as_deref(), Some("xcar"));
        assert_eq!(h.ip.as_deref(), Some("192.168.0.2"));
        assert_eq!(h.by.as_deref(), Some("jeeves.wooster.local"));
        assert_eq!(h.id.as_deref(), Some("A1B2C3D4"));
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);

        // An unclosed parenthesis must not swallow the rest of the hop.
        let h = p(
            "from a.example (by a.example (8.12.10/8.12.11) with ESMTP id i8MDi1Lb012345; Mon, 22 Sep 2008 12:00:00 +0200",
        );
        assert_eq!(h.from.as_deref(), Some("a.example"));
        assert_eq!(h.by.as_deref(), Some("a.example"));
        assert_eq!(h.protocol.as_deref(), Some("ESMTP"));
        assert_eq!(h.id.as_deref(), Some("i8MDi1Lb012345"));
        assert_eq!(utc(&h).as_deref(), Some("2008-09-22T10:00:00Z"));
        assert!(
            h.warnings.iter().any(|w| w.contains("unclosed")),
            "{:?}",
            h.warnings
        );

        // IBM gateways: a banner after WITH, TLS after the `;`.
        let h = p(
            "from mail.example.com ([203.0.113.5]) by e1.ny.us.ibm.com with IBM ESMTP SMTP Gateway: Authorized Use Only! Violators will be prosecuted;(version=TLSv1/SSLv3 cipher=AES256-SHA bits=256 verify=NO) Mon, 6 Aug 2012 10:00:00 -0400",
        );
        assert_eq!(h.protocol.as_deref(), Some("ESMTP"));
        assert_eq!(h.tls_cipher.as_deref(), Some("AES256-SHA"));
        assert_eq!(h.tls_version.as_deref(), Some("TLSv1/SSLv3"));
        assert_eq!(h.ip.as_deref(), Some("203.0.113.5"));
        assert_eq!(utc(&h).as_deref(), Some("2012-08-06T14:00:00Z"));
        // A host name before the protocol word.
        let h =
            p("from a ([192.0.2.1]) by b with host.example ESMTP id X; 1 Jan 2024 00:00:00 +0000");
        assert_eq!(h.protocol.as_deref(), Some("ESMTP"));
        // Domino: `for <a> from <b>`: the second FROM is the envelope sender.
        let h = p(
            "from smtp.example.org ([192.0.2.7]) by domino.example.com (Lotus Domino Release 8.5.3) with ESMTP id 2012080610 for <rcpt@example.com> from <sender@example.org>; Mon, 6 Aug 2012 10:00:00 +0200",
        );
        assert_eq!(h.from.as_deref(), Some("smtp.example.org"));
        assert_eq!(h.for_addr.as_deref(), Some("rcpt@example.com"));
        assert_eq!(h.envelope_from.as_deref(), Some("sender@example.org"));
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);

        // A cipher in a comment after WITH.
        let h = p(
            "from x (x [192.0.2.1]) by qp.example with (AES128-SHA encrypted) SMTP; 1 Jan 2024 00:00:00 +0000",
        );
        assert_eq!(h.protocol.as_deref(), Some("SMTP"));
        assert_eq!(h.tls_cipher.as_deref(), Some("AES128-SHA"));
        let h = p(
            "from x (x [192.0.2.1]) by s.example with ESMTPSA (TLS_AES_256_GCM_SHA384 encrypted, authenticated); 1 Jan 2024 00:00:00 +0000",
        );
        assert_eq!(h.protocol.as_deref(), Some("ESMTPSA"));
        assert_eq!(h.tls_cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
        assert_eq!(h.auth, Some(Auth::Authenticated));
        let h = p(
            "from x ([192.0.2.1]) by ironport.example with ESMTP/TLS/ECDHE-RSA-AES256-GCM-SHA384; 1 Jan 2024 00:00:00 +0000",
        );
        assert_eq!(h.protocol.as_deref(), Some("ESMTP"));
        assert_eq!(h.tls_cipher.as_deref(), Some("ECDHE-RSA-AES256-GCM-SHA384"));
        // ZMailer: the recipient in an ORCPT comment.
        let h = p(
            "from x (x [192.0.2.1]) by zm.example with ESMTP id <20240101000000Z.1234@zm.example> (ORCPT <rfc822;user@example.net>); 1 Jan 2024 00:00:00 +0000",
        );
        assert_eq!(h.for_addr.as_deref(), Some("user@example.net"));
        assert_eq!(utc(&h).as_deref(), Some("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn addresses_normalise() {
        assert_eq!(
            normalize_ip("IPv6:2001:DB8::1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            normalize_ip("::ffff:192.0.2.1").as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(normalize_ip("fe80::1%6").as_deref(), Some("fe80::1"));
        assert_eq!(
            normalize_ip("2001:470:1f07:1126:0:43:6f73:7461").as_deref(),
            Some("2001:470:1f07:1126:0:43:6f73:7461")
        );
        assert_eq!(
            any_ip("[192.0.2.1]:25"),
            Some(("192.0.2.1".into(), Some(25)))
        );
        assert_eq!(
            any_ip("192.0.2.1:587"),
            Some(("192.0.2.1".into(), Some(587)))
        );
        assert_eq!(any_ip("[local]"), None);
        // IPv4 is kept as written: only the canonical form parses.
        for w in [
            "192.0.2.1",
            "010.0.0.1",
            "1.2.3.04",
            "0.0.0.0",
            "1.2.3",
            "1.2.3.4.",
            " 1.2.3.4",
            "1.2.3.256",
            "+1.2.3.4",
            "0x1.2.3.4",
            "1.2.3.4:",
        ] {
            let canonical = w.parse::<std::net::Ipv4Addr>().ok().map(|a| a.to_string());
            assert!(canonical.as_deref().is_none_or(|c| c == w), "{w}");
            assert_eq!(
                normalize_ip(w),
                w.trim()
                    .parse::<std::net::Ipv4Addr>()
                    .ok()
                    .map(|a| a.to_string()),
                "{w}"
            );
        }
        assert_eq!(normalize_tls_version("TLS1_2"), "TLSv1.2");
        assert_eq!(normalize_tls_version("TLS1.3"), "TLSv1.3");
        assert_eq!(normalize_tls_version("TLSv1"), "TLSv1");
        assert_eq!(normalize_tls_version("TLS1_0"), "TLSv1");
        assert_eq!(normalize_tls_version("SSLv3"), "SSLv3");
        assert_eq!(normalize_tls_version("TLSv1/SSLv3"), "TLSv1/SSLv3");
    }

    #[test]
    fn hostile_input_is_bounded() {
        let deep = format!(
            "from x ({}a{}) by y; 1 Jan 2024 00:00:00 +0000",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        let h = p(&deep);
        assert_eq!(h.by.as_deref(), Some("y"));
        let unclosed = format!("from x {}", "(".repeat(100_000));
        assert!(!p(&unclosed).warnings.is_empty());
        let many_days = "Mon, ".repeat(200_000);
        let h = p(&many_days);
        assert!(h.warnings.len() <= MAX_WARNINGS + 1);
        let many_words = "from a by b with c d e f g ".repeat(40_000);
        let _ = p(&many_words);
        let many_comments = "1 Jan (x)".repeat(100_000);
        let _ = p(&many_comments);
        let big = "x".repeat(1_000_000);
        let _ = p(&big);
        let _ = p(&"[".repeat(1_000_000));
        let _ = p(&"<".repeat(1_000_000));
        let _ = p(&"\"".repeat(1_000_001));
        let _ = p(&"\\(".repeat(500_000));
    }

    /// The allocation-free helpers give what the copying code they
    /// replaced gave (kept here as the reference).
    #[test]
    fn fast_paths_match_their_references() {
        let texts = [
            "",
            " ",
            "plain",
            " padded\t",
            "\u{a0}nbsp\u{a0}",
            "\u{3000}wide",
            "\x0bvt\x0b",
            "é",
            "x\u{2028}",
            "Using TLSv1.3 with CIPHER=X",
            "may be FORGED",
            "the AUTHENTICATED sender",
            "TLS: TLSv1.2,128bits,C",
            "tls: lower",
        ];
        for t in texts {
            assert_eq!(trim(t), t.trim(), "{t:?}");
            for n in [
                "may be forged",
                "cipher=",
                "version=",
                "authenticated",
                "using ",
            ] {
                assert_eq!(
                    contains_ci(t, n),
                    t.to_ascii_lowercase().contains(n),
                    "{t:?} {n:?}"
                );
            }
            assert_eq!(find_exact(t, "TLS: "), t.find("TLS: "), "{t:?}");
        }
        // The TLS version names, against the old lower-casing code.
        fn reference(w: &str) -> String {
            let l = w.to_ascii_lowercase();
            let Some(rest) = l.strip_prefix("tls").or_else(|| l.strip_prefix("ssl")) else {
                return w.to_string();
            };
            let rest = rest.strip_prefix('v').unwrap_or(rest);
            if rest.is_empty()
                || !rest.starts_with(|c: char| c.is_ascii_digit())
                || !rest
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '_')
            {
                return w.to_string();
            }
            let name = if l.starts_with("tls") { "TLS" } else { "SSL" };
            let rest = rest.replace('_', ".");
            let rest = match (name, rest.as_str()) {
                ("TLS", "1.0") => "1".to_string(),
                ("SSL", "3.0") => "3".to_string(),
                ("SSL", "2.0") => "2".to_string(),
                _ => rest,
            };
            format!("{name}v{rest}")
        }
        for w in [
            "TLSv1.3", "TLSv1", "TLSv1.0", "TLS1_2", "tlsv1.2", "TLSV1.2", "SSLv3", "SSLv3.0",
            "SSLv2.0", "SSLv1.0", "TLSv3.0", "TLS1.3", "TLSvv1", "TLS", "TLSv", "TLSx1", "ssl3",
            "TLSv1_3", "tls1.0",
        ] {
            let got = normalize_tls_version_cow(w);
            assert_eq!(got, reference(w), "{w}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), got == w, "{w}");
        }
        // Protocol names, against the old lower-casing code.
        fn old_protocol(with: &str, tls: bool) -> String {
            let l = with.trim().to_ascii_lowercase();
            let family = |l: &str| {
                let core = l.strip_prefix("utf8").unwrap_or(l);
                ["esmtp", "smtp", "lmtp"]
                    .iter()
                    .find_map(|b| core.strip_prefix(b))
                    .is_some_and(|r| matches!(r, "" | "s" | "a" | "sa"))
            };
            if l.starts_with("microsoft smtp server") {
                return if tls { "ESMTPS" } else { "ESMTP" }.to_string();
            }
            if family(&l) || OTHER_PROTOCOLS.iter().any(|o| o.eq_ignore_ascii_case(&l)) {
                l.to_ascii_uppercase()
            } else if let Some(w) = l.split_whitespace().find(|w| family(w)) {
                w.to_ascii_uppercase()
            } else {
                with.trim().to_string()
            }
        }
        for w in [
            "esmtps",
            "ESMTPSA",
            "Utf8SmtpA",
            "utf8lmtps",
            "smtpx",
            "esmtpas",
            "local-esmtp",
            "HTTPREST",
            " mapi ",
            "IBM ESMTP SMTP Gateway: x",
            "host.example esmtp",
            "Microsoft SMTP Server (version=TLS1_2)",
            "Microsoft SMTPSVC",
            "",
            "utf8utf8smtp",
        ] {
            for tls in [false, true] {
                assert_eq!(normalize_protocol(w, tls), old_protocol(w, tls), "{w:?}");
            }
        }
    }

    /// The one pass over a comment gives the words the tokenizer gives
    /// (or the split at spaces when it has nothing special), and letters,
    /// `=` and `:` that rule out only what is not there; the address and
    /// host-name tests give what the code they replaced gave.
    #[test]
    fn comment_pass_and_word_tests_match_their_references() {
        fn old_words(inner: &str) -> Vec<String> {
            let b = inner.as_bytes();
            if !b.iter().any(|c| matches!(c, b'(' | b';' | b'<' | b'"')) {
                return inner
                    .split([' ', '\t', '\r', '\n'])
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            let (mut toks, mut open, mut unclosed) = (Vec::new(), Vec::new(), Vec::new());
            tokenize_into(inner, &mut toks, &mut open, &mut unclosed);
            toks.iter()
                .filter(|t| t.kind == Kind::Word)
                .map(|t| slice(inner, t.start, t.end).to_string())
                .collect()
        }
        let texts = [
            "",
            "edge.example.com [192.0.2.1]",
            "Postfix",
            "may be forged",
            "MAY BE Forged",
            "authenticated sender: a@b",
            "using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
            "version=TLS1_2 cipher=X bits=256",
            "TLS: TLSv1.2,128bits,C",
            "envelope-from <a@b>",
            "ORCPT <rfc822;user@example.net>",
            "a\t b\r\nc",
            "\"quoted word\" x",
            "x (nested) y",
            "unclosed ( z",
            "Z[\\]^_`{|}~@ \u{e9}t\u{e9} \u{1f600}",
            " lead and trail ",
            "qmail 123 invoked by uid 89",
        ];
        let mut sc = Scratch::default();
        for t in texts {
            let (ws, seen) = words(t, &mut sc);
            let got: Vec<String> = ws.iter().map(|w| w.to_string()).collect();
            sc.words = recycle(ws);
            assert_eq!(got, old_words(t), "{t:?}");
            assert_eq!(seen.eq, t.contains('='), "{t:?}");
            assert_eq!(seen.colon, t.contains(':'), "{t:?}");
            for c in b'a'..=b'z' {
                let has = t.bytes().any(|b| b.to_ascii_lowercase() == c);
                assert_eq!(
                    seen.letters & letter_bit(c) != 0,
                    has,
                    "{t:?} {}",
                    c as char
                );
            }
            for n in [
                "may be forged",
                "authenticated",
                "cipher=",
                "version=",
                "using ",
            ] {
                if contains_ci(t, n) {
                    assert!(seen.may_contain(letters_of(n)), "{t:?} {n:?}");
                }
            }
        }
        for b in 0..=255u8 {
            assert_eq!(letter_bit(b) != 0, b.is_ascii_alphabetic(), "{b}");
        }
        // Host names and addresses, against the code before the one pass.
        fn old_chars(w: &str) -> bool {
            if w.is_ascii() {
                w.bytes().any(|c| c.is_ascii_alphanumeric())
                    && w.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
            } else {
                w.chars().any(|c| c.is_alphanumeric())
                    && w.chars().all(|c| {
                        c.is_alphanumeric() || c == '-' || c == '.' || c == '_' || !c.is_ascii()
                    })
            }
        }
        fn old_normalize(s: &str) -> Option<String> {
            let s = s.trim();
            let s = match s.get(..5) {
                Some(p) if p.eq_ignore_ascii_case("ipv6:") => s.get(5..).unwrap_or(""),
                _ => s,
            };
            let s = match s.find('%') {
                Some(k) => &s[..k],
                None => s,
            };
            if !s
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b'.' || c == b':')
            {
                return None;
            }
            match s.parse::<IpAddr>().ok()? {
                IpAddr::V4(_) => Some(s.to_string()),
                IpAddr::V6(v6) => Some(match v6.to_ipv4_mapped() {
                    Some(v4) => v4.to_string(),
                    None => v6.to_string(),
                }),
            }
        }
        fn old_port_form(w: &str) -> Option<(String, u16)> {
            let w = w.trim().trim_end_matches(',');
            let (a, p) = w.rsplit_once(':')?;
            if a.contains(':') {
                return None;
            }
            a.parse::<std::net::Ipv4Addr>().ok()?;
            Some((a.to_string(), p.parse().ok()?))
        }
        // The dotted quads taken without the parser are the parser's.
        let mut quads: Vec<String> = [
            "0.0.0.0",
            "255.255.255.255",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3",
            "1..2.3",
            "01.2.3.4",
            "1.2.3.00",
            "1.2.3.0",
            "10.0.0.1",
            "1.2.3.4.5",
            "",
            "1234.1.1.1",
            "1.2.3.999",
            "1.2.3.4a",
            "00.0.0.0",
            "0.0.0.01",
            "4294967296.1.1.1",
        ]
        .map(str::to_string)
        .to_vec();
        for a in [0u32, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255, 256, 300] {
            quads.push(format!("{a}.{a}.0.{a}"));
            quads.push(format!("0{a}.1.1.1"));
        }
        for q in &quads {
            assert_eq!(
                canonical_ipv4(q),
                q.parse::<std::net::Ipv4Addr>().is_ok(),
                "{q:?}"
            );
        }
        for w in [
            "edge.example.com",
            "EDGE.example.com.",
            "unknown",
            "UNKNOWN",
            "a_b-c",
            "-",
            "...",
            "",
            "h\u{e9}te.example",
            "\u{e9}",
            "x!y",
            "\u{e9}!",
            "192.0.2.1",
            "192.0.2.1:25",
            "192.0.2.1:+25",
            "192.0.2.1:x",
            "1:2.3.4.5:6",
            "IPv6:2001:DB8::1",
            "ipv6:::1",
            "fe80::1%eth0",
            "fe80::1%",
            "%1",
            "dead:beef::1",
            "deadbeef",
            "::ffff:192.0.2.1",
            "[192.0.2.1]",
            "192.0.2.1,",
            "abc.def",
            "cafe",
        ] {
            assert_eq!(hostname_chars(w), old_chars(w), "{w:?}");
            assert_eq!(
                hostname_like(w),
                old_chars(w) && !w.eq_ignore_ascii_case("unknown") && any_ip(w).is_none(),
                "{w:?}"
            );
            assert_eq!(normalize_ip(w), old_normalize(w), "{w:?}");
            if !w.starts_with('[') && old_normalize(w.trim().trim_end_matches(',')).is_none() {
                let got = any_ip(w).map(|(ip, p)| (ip.into_owned(), p));
                let want = old_port_form(w).map(|(ip, p)| (ip, Some(p)));
                assert_eq!(got, want, "{w:?}");
            }
        }
    }

    /// The keyword test without calls answers as `eq_ignore_ascii_case`
    /// does, for every byte in every position of every keyword.
    #[test]
    fn keywords_match_their_reference() {
        fn reference(w: &str) -> Option<Kw> {
            [
                ("by", Kw::By),
                ("id", Kw::Id),
                ("via", Kw::Via),
                ("for", Kw::For),
                ("from", Kw::From),
                ("with", Kw::With),
                ("envelope-from", Kw::EnvFrom),
            ]
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(w))
            .map(|(_, kw)| kw)
        }
        for k in [
            "by",
            "id",
            "via",
            "for",
            "from",
            "with",
            "envelope-from",
            "BY",
            "x",
        ] {
            for at in 0..k.len() {
                for c in 0..=255u8 {
                    let mut b = k.as_bytes().to_vec();
                    b[at] = c;
                    let w = String::from_utf8_lossy(&b);
                    assert_eq!(keyword(&w), reference(&w), "{w:?}");
                }
            }
        }
        for w in [
            "",
            "b",
            "byy",
            "From",
            "WITH",
            "Envelope-From",
            "envelope\rfrom",
        ] {
            assert_eq!(keyword(w), reference(w), "{w:?}");
        }
    }

    /// The comment scan that jumps between `\`, `(` and `)` ends where
    /// the byte-by-byte scan it replaced ended.
    #[test]
    fn comment_end_matches_the_byte_scan() {
        fn reference(b: &[u8], start: usize, open: &mut Vec<usize>) -> (usize, bool) {
            open.clear();
            let mut i = start;
            while let Some(&d) = b.get(i) {
                i += 1;
                match d {
                    b'\\' if b.get(i).is_some_and(u8::is_ascii) => i += 1,
                    b'(' => open.push(i - 1),
                    b')' => {
                        open.pop();
                        if open.is_empty() {
                            return (i, true);
                        }
                    }
                    _ => {}
                }
            }
            (i, false)
        }
        for t in [
            "(a)",
            "(a [1.2.3.4]) by x",
            "((a) b) c)",
            "(a \\) b) c",
            "(a \\\\) b",
            "(\\",
            "(\\\u{e9})",
            "(((",
            "(a (b",
            "()",
            "( ) )",
            "(a\\(b) c)",
        ] {
            for start in t.match_indices('(').map(|(k, _)| k) {
                let (mut o1, mut o2) = (Vec::new(), Vec::new());
                let got = comment_end(t.as_bytes(), start, &mut o1);
                let want = reference(t.as_bytes(), start, &mut o2);
                assert_eq!(got, want, "{t:?} at {start}");
                assert_eq!(o1, o2, "{t:?} at {start}");
            }
        }
        for b in 0..=255u8 {
            assert_eq!(
                MAYBE_SPACE[usize::from(b)],
                matches!(b, b'\t'..=b'\r' | b' ') || !b.is_ascii(),
                "{b}"
            );
            assert_eq!(
                WORD_END[usize::from(b)],
                matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'(' | b';'),
                "{b}"
            );
        }
        for w in [
            "",
            "a",
            "a-b.c_d",
            "-",
            "x!",
            "h\u{e9}te",
            "\u{e9}!",
            "UNKNOWN",
        ] {
            let want = if w.is_ascii() {
                w.bytes().any(|c| c.is_ascii_alphanumeric())
                    && w.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
            } else {
                w.chars().any(char::is_alphanumeric)
                    && w.chars()
                        .all(|c| c.is_alphanumeric() || "-._".contains(c) || !c.is_ascii())
            };
            assert_eq!(hostname_chars(w), want, "{w:?}");
        }
    }

    /// Values of several words are the field's text when one space parts
    /// them, and joined by one space otherwise.
    #[test]
    fn multi_word_values_borrow_or_join() {
        let h = parse_unfolded(
            "from a by b with Microsoft SMTP Server id 1; 1 Jan 2024 00:00:00 +0000",
        );
        assert_eq!(h.with.as_deref(), Some("Microsoft SMTP Server"));
        assert!(matches!(h.with, Some(Cow::Borrowed(_))));
        let h = parse_unfolded(
            "from a by b with Microsoft \t SMTP  Server id 1; 1 Jan 2024 00:00:00 +0000",
        );
        assert_eq!(h.with.as_deref(), Some("Microsoft SMTP Server"));
        let h = parse_unfolded("from a by b via Frontend  Transport, id 1");
        assert_eq!(h.via.as_deref(), Some("Frontend Transport"));
        // A hop detached from its text equals the borrowing one.
        let text = "from x.example (x.example [192.0.2.1]) by y.example with ESMTP/TLS/AES id Q for <r@z.example>; Mon, 1 Jan 2024 10:00:00 +0000";
        let h = parse_unfolded(text);
        assert_eq!(h.tls_cipher.as_deref(), Some("AES"));
        assert_eq!(h.protocol.as_deref(), Some("ESMTP"));
        assert!(matches!(h.ip, Some(Cow::Borrowed(_))));
        assert_eq!(h.clone().into_owned(), h);
        assert_eq!(parse(text), h);
    }
}
