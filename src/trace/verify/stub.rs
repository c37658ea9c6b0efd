//! The DNS record/replay stub of `mail-trace --verify`: a tiny DNS server
//! on a loopback UDP port that the verifier's resolver is pointed at.
//!
//! It owns the replay file format ([`Book`]) and the two modes:
//! - **replay** (`--dns-replay FILE`): every question is answered from the
//!   file only; nothing leaves the machine. A question the file does not
//!   hold is answered SERVFAIL (so the verdict is `temperror`, never a
//!   silent `none`), unless the file says `$DEFAULT NXDOMAIN`.
//! - **forward** (every other run, and `--dns-record FILE`): every question
//!   is forwarded to the real resolver (UDP, and TCP when the answer was
//!   truncated), answered with its reply, and the answer kept;
//!   [`Stub::book`] gives what was used, to be saved with [`Book::to_text`].
//!
//! In both modes an answer with more than one SPF record, or one whose
//! record breaks RFC 7208's grammar, is served as one record that does not
//! parse ([`TWO_SPF_RECORDS`], [`SPF_SYNTAX_ERROR`]), which gives the
//! permerror RFC 7208 4.5 and 4.6 ask for and mail-auth 0.13 does not;
//! unknown modifiers are dropped from a valid record (RFC 7208 6 ignores
//! them; mail-auth refuses some). So the verdicts are the same whichever
//! way the answers come; the record file keeps what the server said.
//!
//! Why a stub rather than the crate's cache hooks: mail-auth 0.13 caches
//! records after parsing them (an `Spf`, a `DomainKey`), which cannot be
//! written back as the TXT text that was received, and a cache miss would
//! still reach the network. A stub sees the wire answers themselves
//! (including NXDOMAIN versus no data, which SPF's void-lookup limit
//! counts), serves record, replay and tests the same way, and leaves the
//! crate unaware.
//!
//! The file is text, one answer a line: `NAME TYPE DATA`, DATA in zone-file
//! form (TXT as quoted strings, several strings of one record on one line),
//! or `NAME TYPE NXDOMAIN|NODATA|SERVFAIL`; `#` starts a comment; several
//! lines with the same NAME and TYPE are one answer's records.
//!
//! Guarantees: the stub answers only on 127.0.0.1; it holds one datagram at
//! a time (at most 64 KiB); it never panics on a malformed query (it is
//! dropped); it stops when the [`Stub`] is dropped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mail_auth::hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use crate::exit::{Error, Kind, Result};

/// One answer: its records, or a failure code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// NOERROR with these records (none: NODATA).
    Records(Vec<String>),
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL (or any other failure the upstream gave).
    ServFail,
}

/// The answers of a replay file, by (lower-case absolute name, type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    answers: BTreeMap<(String, String), Answer>,
    /// `$DEFAULT NXDOMAIN`: names not in the file do not exist.
    default_nxdomain: bool,
}

/// The book's key of a name: its absolute presentation form as hickory
/// writes it (odd bytes escaped), lower case; so a name from the file and
/// one from a query meet whatever bytes they hold.
fn key(name: &str, rtype: &str) -> (String, String) {
    let n = match parse_name(name) {
        Ok(n) => n.to_ascii().to_ascii_lowercase(),
        Err(_) => {
            let mut n = name.to_ascii_lowercase();
            if !n.ends_with('.') {
                n.push('.');
            }
            n
        }
    };
    (n, rtype.to_ascii_uppercase())
}

/// A name in zone-file form, absolute whether or not it ends in a dot:
/// labels split at unescaped dots, `\DDD` and `\X` escapes undone, any
/// other byte taken as it is (DNS labels may hold any byte; SPF test
/// suites use `:` and spaces).
fn parse_name(s: &str) -> std::result::Result<Name, String> {
    if s == "." {
        return Ok(Name::root());
    }
    let b = s.as_bytes();
    let mut labels: Vec<Vec<u8>> = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) => {
                let v: u32 = s[i + 1..i + 4]
                    .parse()
                    .map_err(|_| "bad escape".to_string())?;
                cur.push(u8::try_from(v).map_err(|_| "\\DDD above 255".to_string())?);
                i += 4;
            }
            b'\\' if i + 1 < b.len() => {
                cur.push(b[i + 1]);
                i += 2;
            }
            b'.' => {
                if cur.is_empty() {
                    return Err(format!("empty label in {s:?}"));
                }
                labels.push(std::mem::take(&mut cur));
                i += 1;
            }
            c => {
                cur.push(c);
                i += 1;
            }
        }
    }
    if !cur.is_empty() {
        labels.push(cur);
    }
    Name::from_labels(labels.iter().map(Vec::as_slice)).map_err(|e| e.to_string())
}

impl Book {
    /// Read a replay file's text.
    pub fn parse(text: &str) -> Result<Book> {
        let mut b = Book::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| {
                Error::new(
                    Kind::Data,
                    format!("replay file line {}", n + 1),
                    why.to_string(),
                )
            };
            let mut parts = line.splitn(3, [' ', '\t']);
            let name = parts.next().unwrap_or_default();
            let rtype = parts.next().unwrap_or_default().trim();
            let data = parts.next().unwrap_or_default().trim();
            if name == "$DEFAULT" {
                match rtype {
                    "NXDOMAIN" => b.default_nxdomain = true,
                    "SERVFAIL" => b.default_nxdomain = false,
                    _ => return Err(bad("$DEFAULT takes NXDOMAIN or SERVFAIL")),
                }
                continue;
            }
            if rtype.is_empty() || RecordType::from_str(&rtype.to_ascii_uppercase()).is_err() {
                return Err(bad("expected NAME TYPE DATA"));
            }
            let k = key(name, rtype);
            let entry = b
                .answers
                .entry(k)
                .or_insert_with(|| Answer::Records(Vec::new()));
            match data {
                "NXDOMAIN" => *entry = Answer::NxDomain,
                "SERVFAIL" => *entry = Answer::ServFail,
                "NODATA" | "" => {}
                d => {
                    // Check the data now, so a bad file is named at once.
                    to_rdata(rtype, d).map_err(|e| bad(&e))?;
                    if let Answer::Records(v) = entry {
                        v.push(d.to_string());
                    } else {
                        return Err(bad("records after NXDOMAIN or SERVFAIL for the same name"));
                    }
                }
            }
        }
        Ok(b)
    }

    /// Read a replay file.
    pub fn load(path: &std::path::Path) -> Result<Book> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                Kind::Data,
                format!("reading {}", path.display()),
                crate::exit::describe_io(&e),
            )
        })?;
        Book::parse(&text).map_err(|e| e.within(path.display().to_string()))
    }

    /// The file text of this book.
    pub fn to_text(&self) -> String {
        let mut s = String::from(
            "# postline DNS replay file: NAME TYPE DATA | NXDOMAIN | NODATA | SERVFAIL\n",
        );
        if self.default_nxdomain {
            s.push_str("$DEFAULT NXDOMAIN\n");
        }
        for ((name, rtype), a) in &self.answers {
            match a {
                Answer::NxDomain => s.push_str(&format!("{name} {rtype} NXDOMAIN\n")),
                Answer::ServFail => s.push_str(&format!("{name} {rtype} SERVFAIL\n")),
                Answer::Records(v) if v.is_empty() => {
                    s.push_str(&format!("{name} {rtype} NODATA\n"))
                }
                Answer::Records(v) => {
                    for d in v {
                        s.push_str(&format!("{name} {rtype} {d}\n"));
                    }
                }
            }
        }
        s
    }

    /// Add a record (`data` in the file's form) for `name`/`rtype`.
    pub fn add(&mut self, name: &str, rtype: &str, data: &str) {
        let e = self
            .answers
            .entry(key(name, rtype))
            .or_insert_with(|| Answer::Records(Vec::new()));
        if let Answer::Records(v) = e {
            v.push(data.to_string());
        }
    }

    /// Set the answer for `name`/`rtype`.
    pub fn set(&mut self, name: &str, rtype: &str, a: Answer) {
        self.answers.insert(key(name, rtype), a);
    }

    /// Answer names not in the book with NXDOMAIN.
    pub fn default_nxdomain(&mut self, yes: bool) {
        self.default_nxdomain = yes;
    }

    fn lookup(&self, name: &str, rtype: &str) -> Answer {
        match self.answers.get(&key(name, rtype)) {
            Some(a) => a.clone(),
            // The name exists when any type is listed for it.
            None if self.default_nxdomain => {
                let k = key(name, rtype);
                if self.answers.keys().any(|(n, _)| *n == k.0) {
                    Answer::Records(Vec::new())
                } else {
                    Answer::NxDomain
                }
            }
            None => Answer::ServFail,
        }
    }
}

/// TXT character-strings in zone-file form: each quoted, `"` and `\`
/// escaped, bytes outside printable ASCII as `\DDD`.
pub fn txt_text(strings: &[&[u8]]) -> String {
    let mut s = String::new();
    for (i, t) in strings.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push('"');
        for &b in *t {
            match b {
                b'"' | b'\\' => {
                    s.push('\\');
                    s.push(b as char);
                }
                0x20..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\{b:03}")),
            }
        }
        s.push('"');
    }
    s
}

/// Parse TXT data in zone-file form into its character-strings.
fn parse_txt(d: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    let b = d.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let quoted = b[i] == b'"';
        if quoted {
            i += 1;
        }
        let mut cur = Vec::new();
        loop {
            if i >= b.len() {
                if quoted {
                    return Err("unterminated quoted string".into());
                }
                break;
            }
            let c = b[i];
            if quoted && c == b'"' {
                i += 1;
                break;
            }
            if !quoted && c.is_ascii_whitespace() {
                break;
            }
            if c == b'\\' && i + 1 < b.len() {
                if i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
                    let v: u32 = std::str::from_utf8(&b[i + 1..i + 4])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(256);
                    if v > 255 {
                        return Err("\\DDD above 255".into());
                    }
                    cur.push(v as u8);
                    i += 4;
                } else {
                    cur.push(b[i + 1]);
                    i += 2;
                }
                continue;
            }
            cur.push(c);
            i += 1;
        }
        if cur.len() > 255 {
            return Err("a TXT string longer than 255 bytes".into());
        }
        out.push(cur);
    }
    Ok(out)
}

fn to_rdata(rtype: &str, d: &str) -> std::result::Result<RData, String> {
    use mail_auth::hickory_resolver::proto::rr::rdata::{CNAME, MX, PTR};
    let t = RecordType::from_str(&rtype.to_ascii_uppercase()).map_err(|e| e.to_string())?;
    match t {
        RecordType::MX => {
            let (pref, host) = d
                .trim()
                .split_once([' ', '\t'])
                .ok_or("expected PREFERENCE HOST")?;
            let pref: u16 = pref.parse().map_err(|_| "bad MX preference".to_string())?;
            return Ok(RData::MX(MX::new(pref, parse_name(host.trim())?)));
        }
        RecordType::PTR => return Ok(RData::PTR(PTR(parse_name(d.trim())?))),
        RecordType::CNAME => return Ok(RData::CNAME(CNAME(parse_name(d.trim())?))),
        _ => {}
    }
    if t == RecordType::TXT {
        let strings = parse_txt(d)?;
        return Ok(RData::TXT(
            mail_auth::hickory_resolver::proto::rr::rdata::TXT::from_bytes(
                strings.iter().map(Vec::as_slice).collect(),
            ),
        ));
    }
    RData::try_from_str(t, d).map_err(|e| e.to_string())
}

fn rdata_text(r: &RData) -> String {
    match r {
        RData::TXT(t) => txt_text(&t.txt_data.iter().map(|s| &s[..]).collect::<Vec<_>>()),
        RData::MX(m) => format!("{} {}", m.preference, m.exchange.to_ascii()),
        RData::PTR(p) => p.0.to_ascii(),
        RData::CNAME(c) => c.0.to_ascii(),
        other => other.to_string(),
    }
}

/// Void answers served (RFC 7208 4.6.4: NXDOMAIN, or NOERROR without a
/// record of the type asked), for SPF's void-lookup limit.
#[derive(Debug, Default)]
pub struct Voids {
    /// How many so far.
    pub count: AtomicUsize,
    /// Whether the last question answered was a TXT question with a void
    /// answer (an `exp=` lookup, when it ends a `fail`).
    pub last_was_txt: AtomicBool,
}

/// What the stub does with a question.
pub enum Mode {
    /// Answer from the book only.
    Replay(Book),
    /// Ask `upstream`, answer with its reply, keep the answer.
    Record(SocketAddr),
    /// Ask `upstream`, answer with its reply, keep nothing (so memory does
    /// not grow with the questions of a long run).
    Forward(SocketAddr),
}

/// A running stub; stops when dropped.
pub struct Stub {
    addr: SocketAddr,
    book: Arc<Mutex<Book>>,
    /// Void answers served.
    voids: Arc<Voids>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Stub {
    /// Start a stub on a free 127.0.0.1 UDP port.
    pub fn start(mode: Mode) -> Result<Stub> {
        let sock = UdpSocket::bind("127.0.0.1:0")
            .map_err(|e| Error::new(Kind::Temporary, "starting the DNS stub", e))?;
        let addr = sock
            .local_addr()
            .map_err(|e| Error::new(Kind::Temporary, "starting the DNS stub", e))?;
        // Woken regularly to see whether it should stop.
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let (book, upstream) = match mode {
            Mode::Replay(b) => (b, None),
            Mode::Record(u) => (Book::default(), Some((u, true))),
            Mode::Forward(u) => (Book::default(), Some((u, false))),
        };
        let book = Arc::new(Mutex::new(book));
        let stop = Arc::new(AtomicBool::new(false));
        let voids = Arc::new(Voids::default());
        let (b2, s2, v2) = (book.clone(), stop.clone(), voids.clone());
        let thread = std::thread::Builder::new()
            .name("dns-stub".into())
            .spawn(move || serve(&sock, &b2, upstream, &s2, &v2))
            .map_err(|e| Error::new(Kind::Temporary, "starting the DNS stub", e))?;
        Ok(Stub {
            addr,
            book,
            voids,
            stop,
            thread: Some(thread),
        })
    }

    /// Where the stub listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The void answers served so far, for SPF's limit.
    pub fn voids(&self) -> Arc<Voids> {
        self.voids.clone()
    }

    /// The answers given so far (record mode: what was used).
    pub fn book(&self) -> Book {
        self.book.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    sock: &UdpSocket,
    book: &Mutex<Book>,
    upstream: Option<(SocketAddr, bool)>,
    stop: &AtomicBool,
    voids: &Voids,
) {
    let mut buf = vec![0u8; 65535];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let reply = match upstream {
            None => book.lock().ok().and_then(|b| replay(&query, &b)),
            Some((u, keep)) => forward(&buf[..n], &query, u, keep.then_some(book)),
        };
        if let Some(mut r) = reply {
            two_spf_records(&mut r);
            let qtype = query.queries.first().map(|q| q.query_type);
            let void = r.metadata.response_code == ResponseCode::NXDomain
                || (r.metadata.response_code == ResponseCode::NoError
                    && !r.answers.iter().any(|a| Some(a.record_type()) == qtype));
            if void {
                voids.count.fetch_add(1, Ordering::Relaxed);
            }
            voids
                .last_was_txt
                .store(void && qtype == Some(RecordType::TXT), Ordering::Relaxed);
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, peer);
            }
        }
    }
}

fn response(query: &Message, code: ResponseCode) -> Message {
    let mut m = Message::response(query.metadata.id, OpCode::Query);
    m.metadata.response_code = code;
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(query.queries.iter().cloned());
    m
}

/// The record served in place of an RRset holding more than one SPF
/// record: it does not parse, so the verifier's result is permerror, as
/// RFC 7208 4.5 requires (mail-auth 0.13 takes the first record that
/// parses). The record file keeps what the server really said.
pub const TWO_SPF_RECORDS: &str = "v=spf1 two-spf-records-are-a-permerror";

fn is_spf(r: &RData) -> bool {
    let RData::TXT(t) = r else { return false };
    let joined: Vec<u8> = t.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
    joined.len() >= 6
        && joined[..6].eq_ignore_ascii_case(b"v=spf1")
        && (joined.len() == 6 || joined[6] == b' ')
}

/// The record served in place of an SPF record that breaks the grammar of
/// RFC 7208 section 12 ([`super::spf_syntax`]): permerror (4.6).
pub const SPF_SYNTAX_ERROR: &str = "v=spf1 a-syntax-error-is-a-permerror";

/// RFC 7208 4.5 and 4.6 on an answer before the verifier sees it: two SPF
/// records, or one with a syntax error, become one record that does not
/// parse (permerror); a valid one loses its unknown modifiers (ignored by
/// the RFC, refused by mail-auth when their names hold `-`, `_` or `.`).
fn two_spf_records(m: &mut Message) {
    let spf: Vec<usize> = (0..m.answers.len())
        .filter(|&i| is_spf(&m.answers[i].data))
        .collect();
    let Some(&first) = spf.first() else { return };
    let served = if spf.len() > 1 {
        TWO_SPF_RECORDS.to_string()
    } else {
        let RData::TXT(t) = &m.answers[first].data else {
            return;
        };
        let joined: Vec<u8> = t.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
        let text = String::from_utf8_lossy(&joined);
        match super::spf_syntax::check(&text) {
            super::spf_syntax::Verdict::Valid(r) if r == text => return,
            super::spf_syntax::Verdict::Valid(r) => r,
            super::spf_syntax::Verdict::Invalid(_) => SPF_SYNTAX_ERROR.to_string(),
        }
    };
    let keep = m.answers[first].clone();
    m.answers.retain(|r| !is_spf(&r.data));
    // Strings of at most 255 bytes; SPF joins them without a space.
    let strings: Vec<&[u8]> = served.as_bytes().chunks(255).collect();
    m.add_answer(Record::from_rdata(
        keep.name.clone(),
        keep.ttl,
        RData::TXT(mail_auth::hickory_resolver::proto::rr::rdata::TXT::from_bytes(strings)),
    ));
}

fn replay(query: &Message, book: &Book) -> Option<Message> {
    let q = query.queries.first()?;
    let rtype = q.query_type.to_string();
    let mut m = response(query, ResponseCode::NoError);
    let mut name = q.name.clone();
    // A CNAME is followed (a few levels, as a resolver would) when the
    // book has no answer of the type asked for the alias itself.
    for _ in 0..8 {
        let text = name.to_ascii();
        let answer = match book.answers.get(&key(&text, &rtype)) {
            None if rtype != "CNAME" => match book.answers.get(&key(&text, "CNAME")) {
                Some(Answer::Records(c)) if !c.is_empty() => {
                    let Ok(RData::CNAME(target)) = to_rdata("CNAME", &c[0]) else {
                        return Some(response(query, ResponseCode::ServFail));
                    };
                    let next = target.0.clone();
                    m.add_answer(Record::from_rdata(name.clone(), 60, RData::CNAME(target)));
                    name = next;
                    continue;
                }
                _ => book.lookup(&text, &rtype),
            },
            _ => book.lookup(&text, &rtype),
        };
        match answer {
            Answer::NxDomain => m.metadata.response_code = ResponseCode::NXDomain,
            Answer::ServFail => return Some(response(query, ResponseCode::ServFail)),
            Answer::Records(v) => {
                for d in v {
                    match to_rdata(&rtype, &d) {
                        Ok(r) => {
                            m.add_answer(Record::from_rdata(name.clone(), 60, r));
                        }
                        Err(_) => return Some(response(query, ResponseCode::ServFail)),
                    }
                }
            }
        }
        return Some(m);
    }
    // A CNAME loop: what a resolver reports as a failure.
    Some(response(query, ResponseCode::ServFail))
}

/// Ask `upstream` (UDP, TCP when truncated); keep the answer in `book`
/// when given; return the reply for the client (SERVFAIL when upstream
/// failed).
fn forward(
    raw: &[u8],
    query: &Message,
    upstream: SocketAddr,
    book: Option<&Mutex<Book>>,
) -> Option<Message> {
    let q = query.queries.first()?;
    let name = q.name.to_ascii();
    let rtype = q.query_type.to_string();
    let reply = ask_udp(raw, query.metadata.id, upstream).and_then(|m| {
        if m.metadata.truncation {
            ask_tcp(raw, upstream)
        } else {
            Some(m)
        }
    });
    let Some(m) = reply else {
        if let Some(Ok(mut b)) = book.map(Mutex::lock) {
            b.set(&name, &rtype, Answer::ServFail);
        }
        return Some(response(query, ResponseCode::ServFail));
    };
    let Some(book) = book else {
        return Some(m);
    };
    let answer = match m.metadata.response_code {
        ResponseCode::NoError => Answer::Records(
            m.answers
                .iter()
                .filter(|r| r.record_type() == q.query_type)
                .map(|r| rdata_text(&r.data))
                .collect(),
        ),
        ResponseCode::NXDomain => Answer::NxDomain,
        _ => Answer::ServFail,
    };
    if let Ok(mut b) = book.lock() {
        b.set(&name, &rtype, answer);
    }
    Some(m)
}

/// How long the stub waits for the upstream resolver, per read.
const UPSTREAM_WAIT: Duration = Duration::from_secs(3);

fn ask_udp(raw: &[u8], id: u16, upstream: SocketAddr) -> Option<Message> {
    let local = if upstream.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let s = UdpSocket::bind(local).ok()?;
    // Shorter than the verifier's own wait, so it gets our SERVFAIL
    // rather than retrying into a stub still busy with the first try.
    s.set_read_timeout(Some(UPSTREAM_WAIT)).ok()?;
    s.connect(upstream).ok()?;
    s.send(raw).ok()?;
    let mut buf = vec![0u8; 65535];
    // A stray datagram with another id is skipped; the timeout ends the wait.
    for _ in 0..8 {
        let n = s.recv(&mut buf).ok()?;
        if let Ok(m) = Message::from_vec(&buf[..n])
            && m.metadata.id == id
        {
            return Some(m);
        }
    }
    None
}

fn ask_tcp(raw: &[u8], upstream: SocketAddr) -> Option<Message> {
    let mut s = TcpStream::connect_timeout(&upstream, UPSTREAM_WAIT).ok()?;
    s.set_read_timeout(Some(UPSTREAM_WAIT)).ok()?;
    s.set_write_timeout(Some(UPSTREAM_WAIT)).ok()?;
    let len = u16::try_from(raw.len()).ok()?;
    s.write_all(&len.to_be_bytes()).ok()?;
    s.write_all(raw).ok()?;
    let mut l = [0u8; 2];
    s.read_exact(&mut l).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(l))];
    s.read_exact(&mut buf).ok()?;
    Message::from_vec(&buf).ok()
}

/// The first name server of the system's configuration, for record mode.
pub fn system_server() -> Result<SocketAddr> {
    let (config, _) = mail_auth::hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| Error::new(Kind::Temporary, "reading the system DNS configuration", e))?;
    config
        .name_servers()
        .first()
        .map(|ns| {
            let port = ns.connections.first().map_or(53, |c| c.port);
            SocketAddr::new(ns.ip, port)
        })
        .ok_or_else(|| {
            Error::new(
                Kind::Temporary,
                "reading the system DNS configuration",
                "no name server",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_round_trips_with_several_strings() {
        let t = txt_text(&[b"v=DKIM1; p=ab\"c", b"\x01def"]);
        assert_eq!(t, r#""v=DKIM1; p=ab\"c" "\001def""#);
        assert_eq!(
            parse_txt(&t).unwrap(),
            vec![b"v=DKIM1; p=ab\"c".to_vec(), b"\x01def".to_vec()]
        );
    }

    #[test]
    fn book_parses_and_writes_back() {
        let text = "# c\n$DEFAULT NXDOMAIN\nExample.COM TXT \"v=spf1 -all\"\nexample.com. A 192.0.2.1\nnx.example. MX NXDOMAIN\ne.example. AAAA NODATA\n";
        let b = Book::parse(text).unwrap();
        assert_eq!(
            b.lookup("example.com.", "TXT"),
            Answer::Records(vec!["\"v=spf1 -all\"".into()])
        );
        assert_eq!(b.lookup("nx.example", "MX"), Answer::NxDomain);
        assert_eq!(b.lookup("e.example", "AAAA"), Answer::Records(vec![]));
        // Listed name, other type: no data; unlisted name: NXDOMAIN.
        assert_eq!(b.lookup("example.com", "MX"), Answer::Records(vec![]));
        assert_eq!(b.lookup("other.example", "A"), Answer::NxDomain);
        assert_eq!(Book::parse(&b.to_text()).unwrap(), b);
        assert!(Book::parse("x.example TXT \"open").is_err());
        assert!(Book::parse("x.example BOGUS 1").is_err());
    }

    #[test]
    fn a_cname_is_followed_and_a_loop_fails() {
        let b = Book::parse(
            "alias.example. CNAME target.example.\ntarget.example. A 192.0.2.1\n\
             l1.example. CNAME l2.example.\nl2.example. CNAME l1.example.\n$DEFAULT NXDOMAIN\n",
        )
        .unwrap();
        let ask = |name: &str| {
            let mut q = Message::query();
            q.add_query(mail_auth::hickory_resolver::proto::op::Query::query(
                mail_auth::hickory_resolver::proto::rr::Name::from_ascii(name).unwrap(),
                RecordType::A,
            ));
            replay(&q, &b).unwrap()
        };
        let m = ask("alias.example.");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let types: Vec<RecordType> = m.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types, [RecordType::CNAME, RecordType::A]);
        assert_eq!(
            ask("l1.example.").metadata.response_code,
            ResponseCode::ServFail
        );
        assert_eq!(
            ask("nx.example.").metadata.response_code,
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn without_default_an_unknown_question_is_servfail() {
        let b = Book::parse("a.example A 192.0.2.1\n").unwrap();
        assert_eq!(b.lookup("b.example", "A"), Answer::ServFail);
    }
}
