//! The IMAP client mail-fetch reads mailboxes with (RFC 3501, with UIDPLUS,
//! IDLE and SASL-IR where offered): connecting (implicit TLS or a required
//! STARTTLS), LOGIN or AUTHENTICATE PLAIN/LOGIN/XOAUTH2, SELECT, UID SEARCH,
//! batched `UID FETCH ... BODY.PEEK[]`, flags, UID EXPUNGE and IDLE.
//!
//! Written on the stream of `tls.rs` rather than on the `imap` crate: that
//! crate cannot send STARTTLS on a client it did not connect itself, panics
//! on some server replies (an IDLE refused) and logs through `eprintln!`,
//! where our transcript must redact credentials. This client does only what
//! fetching needs, and its guarantees are:
//!
//! - **No panic, no plain text by surprise.** Every server reply, however
//!   malformed, becomes an [`Error`]; with [`TlsMode::Starttls`] a server
//!   that does not offer STARTTLS is refused before any credential is sent.
//! - **Exact bytes.** A message is the literal the server sent for
//!   `BODY[]`, byte for byte (CRLF line ends as on the wire).
//! - **Credentials never logged**: they go through
//!   [`Transcript::sent_secret`]; message literals appear in the
//!   transcript only as their size.
//! - Errors have kinds: network trouble is [`Kind::Temporary`], refused
//!   credentials [`Kind::Auth`], a refused or malformed command
//!   [`Kind::Unavailable`] (a protocol error).

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use crate::exit::{Error, Kind, Result};
use crate::sasl::{self, Mechanism, Secret};
use crate::tls::{self, Stream, TlsMode, TlsOptions};
use crate::transcript::Transcript;

/// How to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// AUTHENTICATE PLAIN when offered, else LOGIN.
    Auto,
    /// The LOGIN command.
    Login,
    /// AUTHENTICATE with this mechanism (never another).
    Sasl(Mechanism),
}

/// What SELECT told us about a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    /// UIDVALIDITY (0 when the server sent none).
    pub uidvalidity: u32,
    /// Messages in the folder.
    pub exists: u32,
    /// The next UID to be assigned, when sent.
    pub uidnext: Option<u32>,
}

/// One untagged or tagged response: its text with every literal cut out,
/// and the literals in order.
#[derive(Debug, Default)]
struct Response {
    /// The text, literals replaced by `{N}` markers as sent.
    text: Vec<u8>,
    /// The literals' bytes.
    literals: Vec<Vec<u8>>,
}

/// An IMAP connection (after the greeting).
pub struct Imap {
    r: BufReader<Stream>,
    tag: u32,
    caps: Vec<String>,
    host: String,
    transcript: Transcript,
    selected: Option<String>,
    /// The last I/O error was a read timeout.
    timed_out: bool,
}

/// Largest line we accept: a SEARCH answer for a million messages fits
/// (about 7 MB); a server sending more is broken or hostile.
const MAX_LINE: usize = 16 << 20;
/// Largest literal we accept in one response (a message of 2 GiB is not
/// something we can hold).
const MAX_LITERAL: u64 = 1 << 31;

impl Imap {
    /// Connect, read the greeting and secure the connection as `mode` says.
    pub fn connect(
        host: &str,
        port: u16,
        mode: TlsMode,
        opts: &TlsOptions,
        timeout: Duration,
        transcript: Transcript,
    ) -> Result<Imap> {
        let stream = tls::open(host, port, mode, opts, timeout)?;
        let mut c = Imap {
            r: BufReader::with_capacity(1 << 16, stream),
            tag: 0,
            caps: Vec::new(),
            host: tls::display_host_port(host, port),
            transcript,
            selected: None,
            timed_out: false,
        };
        let greeting = c.read_response()?;
        let g = String::from_utf8_lossy(&greeting.text).into_owned();
        let upper = g.to_ascii_uppercase();
        if upper.starts_with("* BYE") {
            return Err(c.err(Kind::Temporary, "greeting", g.trim()));
        }
        if !upper.starts_with("* OK") && !upper.starts_with("* PREAUTH") {
            return Err(c.err(
                Kind::Unavailable,
                "greeting",
                format!("not IMAP: {}", g.trim()),
            ));
        }
        c.note_caps(&g);
        if mode == TlsMode::Starttls {
            if c.caps.is_empty() {
                c.capability()?;
            }
            if !c.has("STARTTLS") {
                return Err(c.err(
                    Kind::Unavailable,
                    "STARTTLS",
                    "the server does not offer STARTTLS, which is required (use --tls implicit or, on a trusted network, --tls none)",
                ));
            }
            c.command("STARTTLS")?;
            // Anything buffered before the handshake would be injected
            // plain text (CVE-2011-0411 style): refuse it.
            if !c.r.buffer().is_empty() {
                return Err(c.err(
                    Kind::Unavailable,
                    "STARTTLS",
                    "the server sent data after its STARTTLS reply",
                ));
            }
            let Imap {
                r,
                tag,
                host: h,
                mut transcript,
                ..
            } = c;
            let plain = r.into_inner();
            let stream = plain.upgrade(host, opts)?;
            transcript.note("TLS established");
            c = Imap {
                r: BufReader::with_capacity(1 << 16, stream),
                tag,
                caps: Vec::new(),
                host: h,
                transcript,
                selected: None,
                timed_out: false,
            };
            c.capability()?;
        } else if c.caps.is_empty() {
            c.capability()?;
        }
        Ok(c)
    }

    /// `host:port`, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Does the server announce capability `cap` (case-insensitive)?
    pub fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    fn err(&self, kind: Kind, what: &str, cause: impl std::fmt::Display) -> Error {
        Error::new(kind, what.to_string(), cause)
    }

    fn note_caps(&mut self, line: &str) {
        let upper = line.to_ascii_uppercase();
        if let Some(i) = upper.find("[CAPABILITY ") {
            let rest = &line[i + 12..];
            let end = rest.find(']').unwrap_or(rest.len());
            self.caps = rest[..end].split_whitespace().map(str::to_string).collect();
        } else if let Some(rest) = upper.strip_prefix("* CAPABILITY ") {
            let _ = rest;
            self.caps = line[13..].split_whitespace().map(str::to_string).collect();
        }
    }

    fn capability(&mut self) -> Result<()> {
        let untagged = self.command("CAPABILITY")?;
        for u in untagged {
            let t = String::from_utf8_lossy(&u.text).into_owned();
            self.note_caps(t.trim_end());
        }
        Ok(())
    }

    fn io_err(&mut self, e: &std::io::Error) -> Error {
        self.timed_out = matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        );
        Error::io(format!("talking to {}", self.host), e)
    }

    /// Send one command line (the tag is added) and read up to its tagged
    /// reply; returns the untagged responses. NO and BAD are errors.
    fn command(&mut self, cmd: &str) -> Result<Vec<Response>> {
        self.send(cmd, None)?;
        self.finish(cmd)
    }

    fn send(&mut self, cmd: &str, secret_shown: Option<&str>) -> Result<()> {
        self.tag += 1;
        let line = format!("a{} {cmd}\r\n", self.tag);
        match secret_shown {
            Some(shown) => self
                .transcript
                .sent_secret(&format!("a{} {shown}", self.tag)),
            None => self.transcript.sent(line.as_bytes()),
        }
        let s = self.r.get_mut();
        s.write_all(line.as_bytes())
            .and_then(|()| s.flush())
            .map_err(|e| Error::io(format!("talking to {}", self.host), &e))
    }

    /// Read responses up to the tagged one of the last command.
    fn finish(&mut self, what: &str) -> Result<Vec<Response>> {
        self.finish_tag(self.tag, what)
    }

    /// Read responses up to the tagged reply of command number `tag`.
    fn finish_tag(&mut self, tag: u32, what: &str) -> Result<Vec<Response>> {
        let tag = format!("a{tag} ");
        let mut untagged = Vec::new();
        loop {
            let resp = self.read_response()?;
            if resp.text.starts_with(tag.as_bytes()) {
                let rest = String::from_utf8_lossy(&resp.text[tag.len()..])
                    .trim_end()
                    .to_string();
                let verb = what.split_whitespace().next().unwrap_or(what);
                let verb = if verb.eq_ignore_ascii_case("UID") {
                    what.split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    verb.to_string()
                };
                let upper = rest.to_ascii_uppercase();
                if upper.starts_with("OK") {
                    self.note_caps(&rest);
                    return Ok(untagged);
                }
                return Err(self.err(Kind::Unavailable, &verb, format!("the server said: {rest}")));
            }
            if resp.text.starts_with(b"* BYE") || resp.text.starts_with(b"* bye") {
                let t = String::from_utf8_lossy(&resp.text).trim_end().to_string();
                return Err(self.err(Kind::Temporary, what, format!("the server closed: {t}")));
            }
            untagged.push(resp);
        }
    }

    /// Read one response: a line, and each literal it announces plus the
    /// line that continues after it.
    fn read_response(&mut self) -> Result<Response> {
        let mut resp = Response::default();
        loop {
            let start = resp.text.len();
            let n = (&mut self.r)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut resp.text)
                .map_err(|e| self.io_err(&e))?;
            if n == 0 {
                return Err(Error::new(
                    Kind::Temporary,
                    format!("talking to {}", self.host),
                    "the server closed the connection",
                ));
            }
            if !resp.text.ends_with(b"\n") {
                return Err(self.err(Kind::Unavailable, "reading a reply", "line too long"));
            }
            let line = &resp.text[start..];
            if self.transcript.is_on() {
                let l = line.to_vec();
                self.transcript.received(&l);
            }
            match literal_size(line) {
                Some(size) if size <= MAX_LITERAL => {
                    let mut lit = Vec::new();
                    lit.try_reserve_exact(size as usize).map_err(|_| {
                        self.err(Kind::Temporary, "reading a message", "out of memory")
                    })?;
                    (&mut self.r)
                        .take(size)
                        .read_to_end(&mut lit)
                        .map_err(|e| self.io_err(&e))?;
                    if (lit.len() as u64) < size {
                        return Err(Error::new(
                            Kind::Temporary,
                            format!("talking to {}", self.host),
                            "the server closed the connection in a literal",
                        ));
                    }
                    if self.transcript.is_on() {
                        self.transcript.note(&format!("{size} octets"));
                    }
                    resp.literals.push(lit);
                }
                Some(_) => {
                    return Err(self.err(
                        Kind::Unavailable,
                        "reading a reply",
                        "literal too large",
                    ));
                }
                None => return Ok(resp),
            }
        }
    }

    /// Log in as `user`.
    pub fn login(&mut self, user: &str, pass: &Secret, how: Login) -> Result<()> {
        let offered: Vec<String> = self
            .caps
            .iter()
            .filter_map(|c| {
                c.get(..5)
                    .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                    .map(|_| c[5..].to_string())
            })
            .collect();
        let mech = match how {
            Login::Login => None,
            Login::Sasl(m) => Some(Mechanism::choose(Some(m), &offered)?),
            Login::Auto => {
                if offered.iter().any(|o| o.eq_ignore_ascii_case("PLAIN")) {
                    Some(Mechanism::Plain)
                } else {
                    None
                }
            }
        };
        let res = match mech {
            None => {
                if self.has("LOGINDISABLED") {
                    return Err(self.err(
                        Kind::Auth,
                        "LOGIN",
                        "the server does not allow LOGIN here (LOGINDISABLED)",
                    ));
                }
                let cmd = format!("LOGIN {} {}", quote(user), quote(pass.expose()));
                self.send(&cmd, Some(&format!("LOGIN {}", quote(user))))?;
                self.finish("LOGIN")
            }
            Some(m) => self.authenticate(m, user, pass),
        };
        match res {
            Ok(_) => {
                // Capabilities may change after login.
                if !self
                    .caps
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case("IMAP4rev1"))
                {
                    self.capability()?;
                }
                Ok(())
            }
            Err(e) if e.kind() == Kind::Unavailable => Err(Error::new(
                Kind::Auth,
                format!("logging in as {user}"),
                e.to_string(),
            )),
            Err(e) => Err(e),
        }
    }

    fn authenticate(&mut self, m: Mechanism, user: &str, pass: &Secret) -> Result<Vec<Response>> {
        let first = match m {
            Mechanism::Plain => Some(sasl::plain(user, pass)),
            Mechanism::XOAuth2 => Some(sasl::xoauth2(user, pass)),
            Mechanism::Login => None,
        };
        let ir = self.has("SASL-IR");
        match (&first, ir) {
            (Some(resp), true) => {
                let cmd = format!("AUTHENTICATE {} {resp}", m.name());
                self.send(&cmd, Some(&format!("AUTHENTICATE {}", m.name())))?;
            }
            _ => self.send(&format!("AUTHENTICATE {}", m.name()), None)?,
        }
        let mut answers: Vec<String> = match (m, first, ir) {
            (Mechanism::Login, _, _) => vec![
                sasl::b64(user.as_bytes()),
                sasl::b64(pass.expose().as_bytes()),
            ],
            (_, Some(r), false) => vec![r],
            // XOAUTH2 failures come as a challenge with details: answer
            // it with an empty line so the server sends its NO.
            (_, _, _) => Vec::new(),
        };
        answers.reverse();
        let tag = format!("a{} ", self.tag);
        loop {
            let resp = self.read_response()?;
            if resp.text.starts_with(b"+") {
                let ans = answers.pop().unwrap_or_default();
                self.transcript.sent_secret("");
                let s = self.r.get_mut();
                s.write_all(format!("{ans}\r\n").as_bytes())
                    .and_then(|()| s.flush())
                    .map_err(|e| Error::io(format!("talking to {}", self.host), &e))?;
                continue;
            }
            if resp.text.starts_with(tag.as_bytes()) {
                let rest = String::from_utf8_lossy(&resp.text[tag.len()..])
                    .trim_end()
                    .to_string();
                if rest.to_ascii_uppercase().starts_with("OK") {
                    self.note_caps(&rest);
                    return Ok(Vec::new());
                }
                return Err(self.err(
                    Kind::Unavailable,
                    &format!("AUTHENTICATE {}", m.name()),
                    format!("the server said: {rest}"),
                ));
            }
        }
    }

    /// SELECT `folder` (read-write: flags and deletions need it).
    pub fn select(&mut self, folder: &str) -> Result<Selected> {
        let untagged = self.command(&format!("SELECT {}", quote(folder)))?;
        let mut sel = Selected {
            uidvalidity: 0,
            exists: 0,
            uidnext: None,
        };
        for u in &untagged {
            let t = String::from_utf8_lossy(&u.text).to_ascii_uppercase();
            let words: Vec<&str> = t.split_whitespace().collect();
            if words.len() >= 3 && words[2] == "EXISTS" {
                sel.exists = words[1].parse().unwrap_or(0);
            }
            if let Some(v) = bracket_number(&t, "[UIDVALIDITY ") {
                sel.uidvalidity = v;
            }
            if let Some(v) = bracket_number(&t, "[UIDNEXT ") {
                sel.uidnext = Some(v);
            }
        }
        self.selected = Some(folder.to_string());
        Ok(sel)
    }

    /// `UID SEARCH criteria`: the UIDs, ascending.
    pub fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>> {
        let untagged = self.command(&format!("UID SEARCH {criteria}"))?;
        let mut uids = Vec::new();
        for u in &untagged {
            let t = String::from_utf8_lossy(&u.text);
            let mut w = t.split_whitespace();
            if w.next() == Some("*") && w.next().is_some_and(|s| s.eq_ignore_ascii_case("SEARCH")) {
                uids.extend(w.filter_map(|n| n.parse::<u32>().ok()));
            }
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// The sizes (RFC822.SIZE) of `uids`, as (uid, size) in UID order.
    pub fn uid_sizes(&mut self, uids: &[u32]) -> Result<Vec<(u32, u64)>> {
        let mut out = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(5000) {
            let untagged = self.command(&format!("UID FETCH {} (RFC822.SIZE)", uid_set(chunk)))?;
            for u in &untagged {
                let t = String::from_utf8_lossy(&u.text).to_ascii_uppercase();
                if let (Some(uid), Some(size)) =
                    (item_number(&t, "UID "), item_number(&t, "RFC822.SIZE "))
                {
                    out.push((uid as u32, size));
                }
            }
        }
        out.sort_unstable();
        out.dedup_by_key(|x| x.0);
        Ok(out)
    }

    /// Fetch the messages `uids` with one `UID FETCH` (BODY.PEEK[], so no
    /// \Seen is set) and hand each to `f` as (uid, bytes), in the order the
    /// server sends them. A UID the server no longer has is simply absent.
    pub fn uid_fetch(&mut self, uids: &[u32], f: &mut dyn FnMut(u32, Vec<u8>)) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let tag = self.uid_fetch_send(uids)?;
        self.uid_fetch_read(tag, f)
    }

    /// Send `UID FETCH uids (UID BODY.PEEK[])` without waiting: the server
    /// streams the messages while we store the previous batch. Returns the
    /// command's tag for [`Imap::uid_fetch_read`], which must come before
    /// any other command is sent.
    pub fn uid_fetch_send(&mut self, uids: &[u32]) -> Result<u32> {
        self.send(
            &format!("UID FETCH {} (UID BODY.PEEK[])", uid_set(uids)),
            None,
        )?;
        Ok(self.tag)
    }

    /// Read the answer to the FETCH sent as `tag` (see [`Imap::uid_fetch`]).
    pub fn uid_fetch_read(&mut self, tag: u32, f: &mut dyn FnMut(u32, Vec<u8>)) -> Result<()> {
        let untagged = self.finish_tag(tag, "UID FETCH")?;
        for mut u in untagged {
            let t = String::from_utf8_lossy(&u.text).to_ascii_uppercase();
            if !t.contains(" FETCH ") {
                continue;
            }
            let Some(uid) = item_number(&t, "UID ") else {
                continue;
            };
            let body = if let Some(i) = t.find("BODY[] ") {
                let after = &t[i + 7..];
                if after.starts_with('{') {
                    // The literal of BODY[] is the one after the number of
                    // literals announced before it in the text.
                    let before = t[..i].matches("}\r\n").count();
                    if before < u.literals.len() {
                        std::mem::take(&mut u.literals[before])
                    } else {
                        continue;
                    }
                } else if after.starts_with("NIL") {
                    Vec::new()
                } else if after.starts_with('"') {
                    // A quoted body: rare but legal; cut from the raw bytes.
                    let raw = &u.text;
                    let Some(at) = raw
                        .windows(8)
                        .position(|w| w.eq_ignore_ascii_case(b"BODY[] \""))
                    else {
                        continue;
                    };
                    let rest = &raw[at + 8..];
                    let end = rest.iter().position(|&c| c == b'"').unwrap_or(rest.len());
                    rest[..end].to_vec()
                } else {
                    continue;
                }
            } else {
                continue;
            };
            f(uid as u32, body);
        }
        Ok(())
    }

    /// Add `flags` (e.g. `\Seen`, `\Deleted`) to `uids`, silently.
    pub fn uid_add_flags(&mut self, uids: &[u32], flags: &str) -> Result<()> {
        for chunk in uids.chunks(5000) {
            self.command(&format!(
                "UID STORE {} +FLAGS.SILENT ({flags})",
                uid_set(chunk)
            ))?;
        }
        Ok(())
    }

    /// Remove `uids` from the selected folder: \Deleted, then UID EXPUNGE
    /// (UIDPLUS), else EXPUNGE (which also removes other \Deleted messages,
    /// as any IMAP client's expunge does).
    pub fn delete(&mut self, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.uid_add_flags(uids, "\\Deleted")?;
        if self.has("UIDPLUS") {
            for chunk in uids.chunks(5000) {
                self.command(&format!("UID EXPUNGE {}", uid_set(chunk)))?;
            }
        } else {
            self.command("EXPUNGE")?;
        }
        Ok(())
    }

    /// Wait with IDLE until the selected folder changes or `max` passes
    /// (then NOOP-style end); returns true when new mail may be there.
    pub fn idle(&mut self, max: Duration) -> Result<bool> {
        if !self.has("IDLE") {
            std::thread::sleep(max.min(Duration::from_secs(60)));
            return Ok(true);
        }
        self.send("IDLE", None)?;
        let first = self.read_response()?;
        if !first.text.starts_with(b"+") {
            let t = String::from_utf8_lossy(&first.text).trim_end().to_string();
            return Err(self.err(Kind::Unavailable, "IDLE", format!("the server said: {t}")));
        }
        let deadline = Instant::now() + max;
        let mut changed = false;
        let old = self.r.get_ref().idle();
        while !changed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.r.get_mut().set_idle(left.min(Duration::from_secs(60)));
            match self.read_response() {
                Ok(r) => {
                    let t = String::from_utf8_lossy(&r.text).to_ascii_uppercase();
                    if t.contains(" EXISTS") || t.contains(" RECENT") {
                        changed = true;
                    }
                    if t.starts_with("* BYE") {
                        self.r.get_mut().set_idle(old);
                        return Err(self.err(Kind::Temporary, "IDLE", t.trim_end()));
                    }
                }
                // A read timeout is the normal way out of a quiet IDLE
                // (servers send whole lines, so none was cut); anything
                // else ends it.
                Err(_) if self.timed_out => self.timed_out = false,
                Err(e) => {
                    self.r.get_mut().set_idle(old);
                    return Err(e);
                }
            }
        }
        self.r.get_mut().set_idle(old);
        self.transcript.sent(b"DONE\r\n");
        let s = self.r.get_mut();
        s.write_all(b"DONE\r\n")
            .and_then(|()| s.flush())
            .map_err(|e| Error::io(format!("talking to {}", self.host), &e))?;
        self.finish("IDLE")?;
        Ok(changed)
    }

    /// LOGOUT and close (errors ignored: the work is done).
    pub fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }
}

/// `{N}` at the end of a line (before CRLF): the size of the literal that
/// follows.
fn literal_size(line: &[u8]) -> Option<u64> {
    let l = line.strip_suffix(b"\n")?;
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&c| c == b'{')?;
    let digits = &l[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || digits.len() > 12 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The number after `[NAME ` in a response code.
fn bracket_number(t: &str, key: &str) -> Option<u32> {
    let i = t.find(key)?;
    let rest = &t[i + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The number after a FETCH item name (`UID `, `RFC822.SIZE `), matched
/// as a whole item (after `(` or a space).
fn item_number(t: &str, key: &str) -> Option<u64> {
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

/// An IMAP quoted string (backslash and quote escaped); control characters
/// cannot be quoted and are dropped, so a name can never end a command.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            '\r' | '\n' | '\0' => {}
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// A compact UID set: ascending UIDs as `1:5,7,9:12`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 7, 9, 10]), "1:3,5,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn literals_and_items_parse() {
        assert_eq!(
            literal_size(b"* 1 FETCH (UID 4 BODY[] {123}\r\n"),
            Some(123)
        );
        assert_eq!(literal_size(b"* 1 FETCH (UID 4 BODY[] {12x}\r\n"), None);
        assert_eq!(literal_size(b"a1 OK done\r\n"), None);
        let t = "* 3 FETCH (RFC822.SIZE 99 UID 12)";
        assert_eq!(item_number(t, "UID "), Some(12));
        assert_eq!(item_number(t, "RFC822.SIZE "), Some(99));
        assert_eq!(item_number("* 3 FETCH (XUID 5)", "UID "), None);
        assert_eq!(
            bracket_number("* OK [UIDVALIDITY 1234] x", "[UIDVALIDITY "),
            Some(1234)
        );
        assert_eq!(quote("a\"b\\c\r\n"), "\"a\\\"b\\\\c\"");
    }
}
