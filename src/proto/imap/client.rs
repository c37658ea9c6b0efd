//! The IMAP session over any [`Exchange`] stream ([`Imap`]): the greeting
//! and capabilities, STARTTLS (over the network stream only), LOGIN or
//! AUTHENTICATE, SELECT, UID SEARCH, sizes, pipelined batch `UID FETCH`,
//! flags, UID EXPUNGE/EXPUNGE, IDLE and LOGOUT, with the guarantees the
//! module docs of [`crate::proto::imap`] list.
//!
//! Errors: network I/O is [`Kind::Temporary`] of [`Origin::Network`] (a
//! timeout keeps its I/O kind: [`Error::is_timeout`], which is how IDLE
//! tells a quiet folder from a dead connection); a server breaking the
//! protocol is [`Error::protocol`]; refused credentials are [`Kind::Auth`]
//! of [`Origin::Auth`]; a STARTTLS that cannot be trusted is of
//! [`Origin::Tls`]; a NO or BAD to any other command keeps no origin (its
//! kind, [`Kind::Unavailable`], says what it means).

use std::collections::BTreeSet;
use std::io::BufReader;
use std::time::{Duration, Instant};

use crate::exit::{Context, Error, Kind, Origin, Result};
use crate::proto::Exchange;
use crate::proto::imap::response::{bracket_number, is_bye, item_number};
use crate::proto::imap::{
    FetchAnswer, FetchLimits, Fetched, MAX_UNTAGGED, ReadError, Reader, Response, printable,
};
use crate::proto::sasl::{self, Mechanism, Secret};
use crate::proto::tls::{self, Stream, TlsMode, TlsOptions};
use crate::proto::transcript::Transcript;

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

/// Most UIDs one SEARCH may report (before duplicates are removed, twice
/// that is held at most).
pub const MAX_UIDS: usize = 1 << 21;

/// An IMAP connection (after the greeting) over a stream `S` (the
/// network's [`Stream`] unless said otherwise).
pub struct Imap<S: Exchange = Stream> {
    r: Reader<BufReader<S>>,
    tag: u32,
    caps: Vec<String>,
    host: String,
    selected: Option<String>,
}

/// Most SASL challenges answered in one AUTHENTICATE: LOGIN needs two, an
/// XOAUTH2 failure one more; a server asking for ever is not logging us in.
const MAX_CHALLENGES: usize = 4;

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
        let mut c = Imap::greet(stream, host, port, transcript)?;
        if mode == TlsMode::Starttls {
            c.starttls_request()?;
            let Imap {
                r, tag, host: h, ..
            } = c;
            let Reader { r, transcript, .. } = r;
            // starttls_request saw the read buffer empty: nothing is lost
            // by unwrapping the stream for the handshake.
            let plain = r.into_inner();
            let stream = plain.upgrade(host, opts)?;
            let mut r = Reader::new(BufReader::with_capacity(1 << 16, stream));
            r.transcript = transcript;
            r.transcript.note("TLS established");
            c = Imap {
                r,
                tag,
                // RFC 3501 6.2.1: forget what was learnt in plain text.
                caps: Vec::new(),
                host: h,
                selected: None,
            };
            c.capability()?;
        } else if c.caps.is_empty() {
            c.capability()?;
        }
        Ok(c)
    }
}

impl<S: Exchange> Imap<S> {
    /// Start a session over a connected `stream` to `host`:`port` (the
    /// names are for messages): read the greeting and learn the
    /// capabilities. No TLS upgrade: that is [`Imap::connect`]'s.
    pub fn start(stream: S, host: &str, port: u16, transcript: Transcript) -> Result<Imap<S>> {
        let mut c = Imap::greet(stream, host, port, transcript)?;
        if c.caps.is_empty() {
            c.capability()?;
        }
        Ok(c)
    }

    /// A session whose greeting has been read (and the capabilities it
    /// carried noted).
    fn greet(stream: S, host: &str, port: u16, transcript: Transcript) -> Result<Imap<S>> {
        let mut r = Reader::new(BufReader::with_capacity(1 << 16, stream));
        r.transcript = transcript;
        let mut c = Imap {
            r,
            tag: 0,
            caps: Vec::new(),
            host: tls::display_host_port(host, port),
            selected: None,
        };
        let greeting = c.read_plain(&mut 0)?;
        let g = printable(&greeting.text);
        let upper = g.to_ascii_uppercase();
        if upper.starts_with("* BYE") {
            return Err(c.err(Kind::Temporary, "greeting", &g));
        }
        if !upper.starts_with("* OK") && !upper.starts_with("* PREAUTH") {
            return Err(Error::protocol("greeting", format!("not IMAP: {g}")));
        }
        c.note_caps(&g);
        Ok(c)
    }

    /// The plain-text half of STARTTLS: refuse a server that does not offer
    /// it, send it, take its OK, and refuse anything that came with it (the
    /// handshake is [`Imap::connect`]'s, over the network stream).
    fn starttls_request(&mut self) -> Result<()> {
        if self.caps.is_empty() {
            self.capability()?;
        }
        if !self.has("STARTTLS") {
            return Err(self.err(
                Kind::Unavailable,
                "STARTTLS",
                "the server does not offer STARTTLS, which is required (use --tls implicit or, on a trusted network, --tls none)",
            ));
        }
        self.command("STARTTLS")?;
        // Anything buffered before the handshake would be injected
        // plain text (CVE-2011-0411 style): refuse it.
        if !self.r.get_ref().buffer().is_empty() {
            return Err(Error::protocol(
                "STARTTLS",
                "the server sent data after its STARTTLS reply",
            ));
        }
        Ok(())
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
        } else if upper.starts_with("* CAPABILITY ") {
            self.caps = line[13..].split_whitespace().map(str::to_string).collect();
        }
    }

    fn capability(&mut self) -> Result<()> {
        let mut lines = Vec::new();
        self.command_each("CAPABILITY", &mut |t| {
            if t.len() < 64 << 10 {
                lines.push(printable(t));
            }
        })?;
        for l in lines {
            self.note_caps(&l);
        }
        Ok(())
    }

    /// The error for a failed read during `what`.
    fn read_err(&self, e: ReadError, what: &str) -> Error {
        match e {
            // A timeout keeps its I/O kind (`Error::is_timeout`): IDLE
            // waits for one.
            ReadError::Io(e) => Error::net(format!("talking to {}", self.host), &e),
            ReadError::Closed(why) => {
                Error::new(Kind::Temporary, format!("talking to {}", self.host), why)
                    .from_origin(Origin::Network)
            }
            ReadError::Protocol(why) => Error::protocol(
                format!("reading the answer to {what} from {}", self.host),
                why,
            ),
            ReadError::Refused(rest) => {
                self.err(Kind::Unavailable, what, format!("the server said: {rest}"))
            }
            ReadError::Bye(t) => self.err(Kind::Temporary, what, format!("the server closed: {t}")),
        }
    }

    /// Read one response holding none of its literals (see
    /// [`Reader::read_dropping`]).
    fn read_plain(&mut self, untagged: &mut u64) -> Result<Response> {
        self.r
            .read_dropping(untagged, MAX_UNTAGGED)
            .map_err(|e| self.read_err(e, "a command"))
    }

    /// Send one command line (the tag is added) and read up to its tagged
    /// reply. NO and BAD are errors.
    fn command(&mut self, cmd: &str) -> Result<()> {
        self.command_each(cmd, &mut |_| {})
    }

    /// [`Imap::command`], handing the text of each untagged response to
    /// `on` as it arrives (none is kept after).
    fn command_each(&mut self, cmd: &str, on: &mut dyn FnMut(&[u8])) -> Result<()> {
        self.send(cmd, None)?;
        self.finish_tag(self.tag, cmd, on)
    }

    fn send(&mut self, cmd: &str, secret_shown: Option<&str>) -> Result<()> {
        self.tag += 1;
        let line = format!("a{} {cmd}\r\n", self.tag);
        match secret_shown {
            Some(shown) => self
                .r
                .transcript
                .sent_secret(&format!("a{} {shown}", self.tag)),
            None => self.r.transcript.sent(line.as_bytes()),
        }
        self.write_raw(line.as_bytes())
    }

    fn write_raw(&mut self, b: &[u8]) -> Result<()> {
        let s = self.r.get_mut().get_mut();
        s.write_all(b)
            .and_then(|()| s.flush())
            .net_context(format!("talking to {}", self.host))
    }

    /// Read responses up to the tagged reply of command number `tag`,
    /// handing each untagged one's text to `on`.
    fn finish_tag(&mut self, tag: u32, what: &str, on: &mut dyn FnMut(&[u8])) -> Result<()> {
        let tag = format!("a{tag} ");
        let verb = {
            let mut w = what.split_whitespace();
            match (w.next(), w.next()) {
                (Some(u), Some(v)) if u.eq_ignore_ascii_case("UID") => format!("{u} {v}"),
                (Some(v), _) => v.to_string(),
                _ => what.to_string(),
            }
        };
        let mut untagged = 0u64;
        loop {
            let resp = self
                .r
                .read_dropping(&mut untagged, MAX_UNTAGGED)
                .map_err(|e| self.read_err(e, &verb))?;
            if resp.text.starts_with(tag.as_bytes()) {
                let rest = printable(&resp.text[tag.len()..]);
                if rest.to_ascii_uppercase().starts_with("OK") {
                    self.note_caps(&rest);
                    return Ok(());
                }
                return Err(self.read_err(ReadError::Refused(rest), &verb));
            }
            if is_bye(&resp.text) {
                return Err(self.read_err(ReadError::Bye(printable(&resp.text)), &verb));
            }
            on(&resp.text);
        }
    }

    /// RFC 6855: with `UTF8=ACCEPT` enabled, a server that offers it
    /// hands over a message whose header holds raw UTF-8 as it is (one that
    /// is not asked may downgrade or refuse it): we store what the server
    /// holds, byte for byte. A refusal (NO/BAD) is not an error.
    fn enable_utf8(&mut self) -> Result<()> {
        if !(self.has("ENABLE") && self.has("UTF8=ACCEPT")) {
            return Ok(());
        }
        match self.command("ENABLE UTF8=ACCEPT") {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == Kind::Unavailable && e.origin() != Origin::Protocol => Ok(()),
            Err(e) => Err(e),
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
                    return Err(self
                        .err(
                            Kind::Auth,
                            "LOGIN",
                            "the server does not allow LOGIN here (LOGINDISABLED)",
                        )
                        .from_origin(Origin::Auth));
                }
                let cmd = format!("LOGIN {} {}", quote(user), quote(pass.expose()));
                self.send(&cmd, Some(&format!("LOGIN {}", quote(user))))?;
                self.finish_tag(self.tag, "LOGIN", &mut |_| {})
            }
            Some(m) => self.authenticate(m, user, pass),
        };
        match res {
            Ok(()) => {
                // Capabilities may change after login.
                if !self
                    .caps
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case("IMAP4rev1"))
                {
                    self.capability()?;
                }
                self.enable_utf8()?;
                Ok(())
            }
            Err(e) if e.kind() == Kind::Unavailable => {
                Err(
                    Error::new(Kind::Auth, format!("logging in as {user}"), e.to_string())
                        .from_origin(Origin::Auth),
                )
            }
            Err(e) => Err(e),
        }
    }

    fn authenticate(&mut self, m: Mechanism, user: &str, pass: &Secret) -> Result<()> {
        let first = match m {
            Mechanism::Plain => Some(sasl::plain(user, pass)),
            Mechanism::XOAuth2 => Some(sasl::xoauth2(user, pass)),
            Mechanism::Login => None,
        };
        let ir = self.has("SASL-IR");
        let what = format!("AUTHENTICATE {}", m.name());
        match (&first, ir) {
            (Some(resp), true) => {
                let cmd = format!("{what} {resp}");
                self.send(&cmd, Some(&what))?;
            }
            _ => self.send(&what, None)?,
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
        let mut untagged = 0u64;
        let mut challenges = 0;
        loop {
            let resp = self
                .r
                .read_dropping(&mut untagged, MAX_UNTAGGED)
                .map_err(|e| self.read_err(e, &what))?;
            if resp.text.starts_with(b"+") {
                challenges += 1;
                if challenges > MAX_CHALLENGES {
                    return Err(self.err(
                        Kind::Unavailable,
                        &what,
                        "the server keeps sending challenges",
                    ));
                }
                let ans = answers.pop().unwrap_or_default();
                self.r.transcript.sent_secret("");
                self.write_raw(format!("{ans}\r\n").as_bytes())?;
                continue;
            }
            if resp.text.starts_with(tag.as_bytes()) {
                let rest = printable(&resp.text[tag.len()..]);
                if rest.to_ascii_uppercase().starts_with("OK") {
                    self.note_caps(&rest);
                    return Ok(());
                }
                return Err(self.err(Kind::Unavailable, &what, format!("the server said: {rest}")));
            }
            if is_bye(&resp.text) {
                return Err(self.read_err(ReadError::Bye(printable(&resp.text)), &what));
            }
        }
    }

    /// SELECT `folder` (read-write: flags and deletions need it).
    pub fn select(&mut self, folder: &str) -> Result<Selected> {
        let mut sel = Selected {
            uidvalidity: 0,
            exists: 0,
            uidnext: None,
        };
        self.command_each(&format!("SELECT {}", quote(folder)), &mut |text| {
            // Only the head of a line carries what SELECT tells.
            let head = &text[..text.len().min(256)];
            let t = String::from_utf8_lossy(head).to_ascii_uppercase();
            let words: Vec<&str> = t.split_whitespace().take(3).collect();
            if words.len() >= 3 && words[2] == "EXISTS" {
                sel.exists = words[1].parse().unwrap_or(0);
            }
            if let Some(v) = bracket_number(&t, "[UIDVALIDITY ") {
                sel.uidvalidity = v;
            }
            if let Some(v) = bracket_number(&t, "[UIDNEXT ") {
                sel.uidnext = Some(v);
            }
        })?;
        self.selected = Some(folder.to_string());
        Ok(sel)
    }

    /// `UID SEARCH criteria`: the UIDs, ascending (at most [`MAX_UIDS`]).
    pub fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>> {
        let mut uids = Vec::new();
        let mut too_many = false;
        // This search sees every message that exists now: only an EXISTS
        // after it means new mail (see [`Imap::idle`]).
        self.r.exists_seen = false;
        self.command_each(&format!("UID SEARCH {criteria}"), &mut |text| {
            if too_many {
                return;
            }
            let t = String::from_utf8_lossy(text);
            let mut w = t.split_whitespace();
            if w.next() == Some("*") && w.next().is_some_and(|s| s.eq_ignore_ascii_case("SEARCH")) {
                for n in w.filter_map(|n| n.parse::<u32>().ok()) {
                    uids.push(n);
                    // Repeated lines cannot grow the list past the cap:
                    // duplicates go first, then a real excess is an error.
                    if uids.len() >= 2 * MAX_UIDS {
                        uids.sort_unstable();
                        uids.dedup();
                        if uids.len() > MAX_UIDS {
                            too_many = true;
                            return;
                        }
                    }
                }
            }
        })?;
        if too_many {
            return Err(Error::protocol(
                "UID SEARCH",
                format!("the server reported more than {MAX_UIDS} messages in one folder"),
            ));
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// The sizes (RFC822.SIZE) the server claims for `uids`, as (uid, size)
    /// in UID order; UIDs not asked for are ignored.
    pub fn uid_sizes(&mut self, uids: &[u32]) -> Result<Vec<(u32, u64)>> {
        let wanted: BTreeSet<u32> = uids.iter().copied().collect();
        let mut out = std::collections::BTreeMap::new();
        for chunk in uids.chunks(5000) {
            self.command_each(
                &format!("UID FETCH {} (RFC822.SIZE)", uid_set(chunk)),
                &mut |text| {
                    let t = String::from_utf8_lossy(text).to_ascii_uppercase();
                    if let (Some(uid), Some(size)) =
                        (item_number(&t, "UID "), item_number(&t, "RFC822.SIZE "))
                        && let Ok(uid) = u32::try_from(uid)
                        && wanted.contains(&uid)
                    {
                        out.insert(uid, size);
                    }
                },
            )?;
        }
        Ok(out.into_iter().collect())
    }

    /// Fetch the messages `uids` with one `UID FETCH` (BODY.PEEK[], so no
    /// \Seen is set) and hand each event to `f`, in the order the server
    /// sends them (see [`Imap::uid_fetch_read`]).
    pub fn uid_fetch(
        &mut self,
        uids: &[u32],
        limits: FetchLimits,
        f: &mut dyn FnMut(Fetched),
    ) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let tag = self.uid_fetch_send(uids)?;
        self.uid_fetch_read(tag, uids, limits, f)
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

    /// Read the answer to the FETCH sent as `tag` for `uids`, one
    /// [`Fetched`] at a time, holding no more than `limits` allow. A UID the
    /// server no longer has is simply absent; one not asked for comes as
    /// [`Fetched::Unrequested`] and is never a message.
    pub fn uid_fetch_read(
        &mut self,
        tag: u32,
        uids: &[u32],
        limits: FetchLimits,
        f: &mut dyn FnMut(Fetched),
    ) -> Result<()> {
        // The command went out before the previous batch was stored: its
        // answer's exchange starts now, and again after each message asked
        // for (a fresh budget per message, so a slow but honest server
        // passes; responses not asked for earn none, so a drip cannot).
        self.r.get_mut().get_mut().arm();
        let mut answer = FetchAnswer::new(tag, uids, limits);
        loop {
            let ev = answer
                .next(&mut self.r)
                .map_err(|e| self.read_err(e, "UID FETCH"))?;
            match ev {
                None => return Ok(()),
                Some(ev @ Fetched::Unrequested(_)) => f(ev),
                Some(ev) => {
                    self.r.get_mut().get_mut().arm();
                    f(ev);
                }
            }
        }
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

    /// Remove `uids` from the selected folder: \Deleted, then
    /// [`Imap::expunge`].
    pub fn delete(&mut self, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.uid_add_flags(uids, "\\Deleted")?;
        self.expunge(uids)
    }

    /// Expunge `uids` (flagged \Deleted before): UID EXPUNGE (UIDPLUS),
    /// else EXPUNGE (which also removes other \Deleted messages, as any
    /// IMAP client's expunge does).
    pub fn expunge(&mut self, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
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
        // Mail that arrived after the last search was announced with an
        // EXISTS inside a later answer (FETCH, STORE, EXPUNGE): IDLE would
        // not report it again, so it would wait until the next change.
        if std::mem::take(&mut self.r.exists_seen) {
            return Ok(true);
        }
        if !self.has("IDLE") {
            std::thread::sleep(max.min(Duration::from_secs(60)));
            return Ok(true);
        }
        self.send("IDLE", None)?;
        let mut untagged = 0u64;
        let first = self.read_plain(&mut untagged)?;
        if !first.text.starts_with(b"+") {
            let t = printable(&first.text);
            return Err(self.err(Kind::Unavailable, "IDLE", format!("the server said: {t}")));
        }
        let deadline = Instant::now() + max;
        let mut changed = false;
        // The wait between two lines of IDLE is longer than a reply may
        // take; the stream's own idle time comes back after (streams
        // without a budget have none to save).
        let old = self.r.get_ref().get_ref().idle();
        let restore = |c: &mut Self| {
            if let Some(old) = old {
                c.r.get_mut().get_mut().set_idle(old);
            }
        };
        while !changed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.r
                .get_mut()
                .get_mut()
                .set_idle(left.min(Duration::from_secs(60)));
            match self.read_plain(&mut untagged) {
                Ok(r) => {
                    let head = &r.text[..r.text.len().min(256)];
                    let t = String::from_utf8_lossy(head).to_ascii_uppercase();
                    if t.contains(" EXISTS") || t.contains(" RECENT") {
                        changed = true;
                    }
                    if is_bye(&r.text) {
                        restore(self);
                        return Err(self.err(Kind::Temporary, "IDLE", printable(&r.text)));
                    }
                }
                // A read timeout is the normal way out of a quiet IDLE
                // (servers send whole lines, so none was cut); anything
                // else ends it.
                Err(e) if e.is_timeout() => {}
                Err(e) => {
                    restore(self);
                    return Err(e);
                }
            }
        }
        restore(self);
        self.r.transcript.sent(b"DONE\r\n");
        self.write_raw(b"DONE\r\n")?;
        self.finish_tag(self.tag, "IDLE", &mut |_| {})?;
        Ok(changed)
    }

    /// LOGOUT and close (errors ignored: the work is done).
    pub fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }
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
    use crate::proto::script::{Script, Sent, Sink};
    use std::io;

    /// A session with the server `script` (greeting and capabilities
    /// read), and the record of what the client sends.
    fn open(script: Script, t: Transcript) -> (Result<Imap<Script>>, Sent) {
        let sent = script.sent();
        (Imap::start(script, "127.0.0.1", 143, t), sent)
    }

    const GREET: &str = "* OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE AUTH=PLAIN SASL-IR] ready\r\n";

    #[test]
    fn utf8_accept_is_enabled_when_offered_and_a_refusal_is_no_error() {
        for (answer, ok) in [("a2 OK enabled\r\n", true), ("a2 NO not now\r\n", true)] {
            let (c, sent) = open(
                Script::segments(&[
                    "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n",
                    "a1 OK [CAPABILITY IMAP4rev1 ENABLE UTF8=ACCEPT] in\r\n",
                    answer,
                ]),
                Transcript::off(),
            );
            let mut c = c.unwrap();
            assert_eq!(c.login("me", &Secret::new("pw"), Login::Auto).is_ok(), ok);
            assert_eq!(
                sent.lines().last().map(String::as_str),
                Some("a2 ENABLE UTF8=ACCEPT")
            );
        }
        // Not offered: not sent.
        let (c, sent) = open(
            Script::segments(&[GREET, "a1 OK [CAPABILITY IMAP4rev1 ENABLE] in\r\n"]),
            Transcript::off(),
        );
        c.unwrap()
            .login("me", &Secret::new("pw"), Login::Auto)
            .unwrap();
        assert_eq!(sent.lines().len(), 1, "{:?}", sent.lines());
    }

    #[test]
    fn a_whole_session_in_memory() {
        let sink = Sink::default();
        let (c, sent) = open(
            Script::segments(&[
                GREET,
                "a1 OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE] logged in\r\n",
                "* 2 EXISTS\r\n* OK [UIDVALIDITY 77] x\r\n* OK [UIDNEXT 9] x\r\na2 OK [READ-WRITE] done\r\n",
                "* SEARCH 5 3\r\n* SEARCH 3\r\na3 OK\r\n",
                "* 1 FETCH (UID 3 RFC822.SIZE 5)\r\n* 2 FETCH (UID 5 RFC822.SIZE 3)\r\na4 OK\r\n",
                "* 1 FETCH (UID 3 BODY[] {5}\r\nhello)\r\n",
                "* 2 FETCH (UID 5 BODY[] {3}\r\nbye)\r\na5 OK\r\n",
                "a6 OK\r\n",
                "* 1 EXPUNGE\r\n* 1 EXPUNGE\r\na7 OK\r\n",
                "* BYE\r\na8 OK\r\n",
            ]),
            Transcript::to(Box::new(sink.clone()), ""),
        );
        let mut c = c.unwrap();
        assert_eq!(c.host(), "127.0.0.1:143");
        c.login("me", &Secret::new("hunter2"), Login::Auto).unwrap();
        assert!(!c.has("AUTH=PLAIN") && c.has("uidplus"));
        assert_eq!(
            c.select("INBOX").unwrap(),
            Selected {
                uidvalidity: 77,
                exists: 2,
                uidnext: Some(9)
            }
        );
        assert_eq!(c.uid_search("UNSEEN").unwrap(), vec![3, 5]);
        assert_eq!(c.uid_sizes(&[3, 5]).unwrap(), vec![(3, 5), (5, 3)]);
        let mut got = Vec::new();
        c.uid_fetch(&[3, 5], FetchLimits::default(), &mut |ev| got.push(ev))
            .unwrap();
        assert_eq!(
            got,
            [
                Fetched::Message(3, b"hello".to_vec()),
                Fetched::Message(5, b"bye".to_vec())
            ]
        );
        c.delete(&[3, 5]).unwrap();
        c.logout();
        let ir = sasl::plain("me", &Secret::new("hunter2"));
        assert_eq!(
            sent.lines(),
            [
                format!("a1 AUTHENTICATE PLAIN {ir}").as_str(),
                "a2 SELECT \"INBOX\"",
                "a3 UID SEARCH UNSEEN",
                "a4 UID FETCH 3,5 (RFC822.SIZE)",
                "a5 UID FETCH 3,5 (UID BODY.PEEK[])",
                "a6 UID STORE 3,5 +FLAGS.SILENT (\\Deleted)",
                "a7 UID EXPUNGE 3,5",
                "a8 LOGOUT",
            ]
        );
        let t = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
        assert!(t.contains("C: a1 AUTHENTICATE PLAIN <redacted>"), "{t}");
        assert!(!t.contains(&ir) && !t.contains("hunter2"), "{t}");
        // Literals only as their size.
        assert!(t.contains("-- 5 octets") && !t.contains("hello"), "{t}");
    }

    #[test]
    fn refused_logins_are_auth_errors_and_login_quotes_its_arguments() {
        let (c, _) = open(
            Script::lines(&format!("{GREET}a1 NO [AUTHENTICATIONFAILED] bad\r\n")),
            Transcript::off(),
        );
        let e = c
            .unwrap()
            .login("me", &Secret::new("pw"), Login::Auto)
            .unwrap_err();
        assert_eq!((e.kind(), e.origin()), (Kind::Auth, Origin::Auth), "{e}");
        assert!(!e.to_string().contains("pw\""), "{e}");

        let (c, sent) = open(
            Script::lines("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] hi\r\n"),
            Transcript::off(),
        );
        let e = c
            .unwrap()
            .login("me", &Secret::new("pw"), Login::Login)
            .unwrap_err();
        assert_eq!((e.kind(), e.origin()), (Kind::Auth, Origin::Auth));
        assert!(sent.lines().is_empty());

        // No capabilities in the greeting: asked for; LOGIN, then asked
        // again since the login changed nothing announced.
        let (c, sent) = open(
            Script::lines(
                "* OK hi\r\n* CAPABILITY IMAP4 AUTH=LOGIN\r\na1 OK\r\na2 OK\r\n* CAPABILITY IMAP4rev1\r\na3 OK\r\n",
            ),
            Transcript::off(),
        );
        let mut c = c.unwrap();
        c.login("m\"e", &Secret::new("p\\w"), Login::Auto).unwrap();
        assert!(c.has("IMAP4rev1"));
        assert_eq!(
            sent.lines(),
            [
                "a1 CAPABILITY",
                "a2 LOGIN \"m\\\"e\" \"p\\\\w\"",
                "a3 CAPABILITY"
            ]
        );
    }

    #[test]
    fn authenticate_login_answers_challenges_and_stops_an_endless_server() {
        let (c, sent) = open(
            Script::lines(
                "* OK [CAPABILITY IMAP4rev1 AUTH=LOGIN] hi\r\n+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\na1 OK\r\n",
            ),
            Transcript::off(),
        );
        c.unwrap()
            .login("me", &Secret::new("pw"), Login::Sasl(Mechanism::Login))
            .unwrap();
        assert_eq!(
            sent.lines(),
            [
                "a1 AUTHENTICATE LOGIN",
                &sasl::b64(b"me"),
                &sasl::b64(b"pw")
            ]
        );
        let (c, _) = open(
            Script::lines(&format!(
                "* OK [CAPABILITY IMAP4rev1 AUTH=LOGIN] hi\r\n{}",
                "+ more\r\n".repeat(10)
            )),
            Transcript::off(),
        );
        let e = c
            .unwrap()
            .login("me", &Secret::new("pw"), Login::Sasl(Mechanism::Login))
            .unwrap_err();
        assert_eq!(e.kind(), Kind::Auth, "{e}");
        assert!(e.to_string().contains("keeps sending challenges"), "{e}");
    }

    #[test]
    fn greetings_that_are_not_imap_and_a_server_that_hangs_up() {
        let (c, _) = open(Script::lines("220 smtp ESMTP\r\n"), Transcript::off());
        let e = c.err().unwrap();
        assert_eq!(
            (e.kind(), e.origin()),
            (Kind::Unavailable, Origin::Protocol)
        );
        let (c, _) = open(Script::lines("* BYE busy\r\n"), Transcript::off());
        assert_eq!(c.err().unwrap().kind(), Kind::Temporary);
        let (c, _) = open(Script::lines(GREET), Transcript::off());
        let e = c.unwrap().select("INBOX").unwrap_err();
        assert_eq!((e.kind(), e.origin()), (Kind::Temporary, Origin::Network));
        assert!(!e.is_timeout());
        // A literal size that is not a number is never text.
        let (c, _) = open(
            Script::lines(&format!("{GREET}* 1 FETCH (X {{-5}}\r\na1 OK\r\n")),
            Transcript::off(),
        );
        let e = c.unwrap().select("INBOX").unwrap_err();
        assert_eq!(
            (e.kind(), e.origin()),
            (Kind::Unavailable, Origin::Protocol)
        );
    }

    #[test]
    fn starttls_refused_or_injected_sends_no_credentials() {
        let (c, sent) = open(
            Script::lines("* OK hi\r\n* CAPABILITY IMAP4rev1\r\na1 OK\r\n"),
            Transcript::off(),
        );
        let e = c.unwrap().starttls_request().unwrap_err();
        assert_eq!(e.kind(), Kind::Unavailable);
        assert!(e.to_string().contains("does not offer STARTTLS"), "{e}");
        assert_eq!(sent.lines(), ["a1 CAPABILITY"]);

        let (c, sent) = open(
            Script::segments(&[
                "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n",
                "a1 OK go\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n",
            ]),
            Transcript::off(),
        );
        let e = c.unwrap().starttls_request().unwrap_err();
        assert_eq!(
            (e.kind(), e.origin()),
            (Kind::Unavailable, Origin::Protocol)
        );
        assert_eq!(sent.lines(), ["a1 STARTTLS"]);
    }

    #[test]
    fn idle_waits_through_timeouts_until_the_folder_changes() {
        let (c, sent) = open(
            Script::lines(&format!("{GREET}+ idling\r\n"))
                .then_fail(io::ErrorKind::WouldBlock)
                .then("* 1 RECENT\r\n")
                .then("a1 OK done\r\n"),
            Transcript::off(),
        );
        let mut c = c.unwrap();
        assert!(c.idle(Duration::from_secs(30)).unwrap());
        assert_eq!(sent.lines(), ["a1 IDLE", "DONE"]);

        // Any other error ends it; so does a BYE.
        let (c, _) = open(
            Script::lines(&format!("{GREET}+ idling\r\n"))
                .then_fail(io::ErrorKind::ConnectionReset),
            Transcript::off(),
        );
        let e = c.unwrap().idle(Duration::from_secs(30)).unwrap_err();
        assert_eq!((e.kind(), e.origin()), (Kind::Temporary, Origin::Network));
        let (c, _) = open(
            Script::lines(&format!("{GREET}+ idling\r\n* BYE shutting down\r\n")),
            Transcript::off(),
        );
        let e = c.unwrap().idle(Duration::from_secs(30)).unwrap_err();
        assert_eq!(e.kind(), Kind::Temporary);
        // A refused IDLE.
        let (c, _) = open(
            Script::lines(&format!("{GREET}a1 BAD no\r\n")),
            Transcript::off(),
        );
        let e = c.unwrap().idle(Duration::from_secs(30)).unwrap_err();
        assert_eq!(e.kind(), Kind::Unavailable);
    }

    #[test]
    fn expunge_without_uidplus() {
        let (c, sent) = open(
            Script::lines("* OK [CAPABILITY IMAP4rev1] hi\r\na1 OK\r\n* 3 EXPUNGE\r\na2 OK\r\n"),
            Transcript::off(),
        );
        c.unwrap().delete(&[7]).unwrap();
        assert_eq!(
            sent.lines(),
            ["a1 UID STORE 7 +FLAGS.SILENT (\\Deleted)", "a2 EXPUNGE"]
        );
    }

    /// Mail announced (`* N EXISTS`) inside an answer after the search
    /// (here the EXPUNGE of what was just stored) is new mail: the next
    /// idle returns at once instead of waiting in IDLE for a change the
    /// server will not announce again. A later search clears it.
    #[test]
    fn an_exists_after_the_search_ends_the_next_idle_at_once() {
        let (c, sent) = open(
            Script::lines(&format!(
                "{GREET}a1 OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE] in\r\n\
                 * 1 EXISTS\r\na2 OK [READ-WRITE] sel\r\n\
                 * SEARCH 1\r\na3 OK\r\n\
                 a4 OK\r\n\
                 * 1 EXPUNGE\r\n* 1 EXISTS\r\na5 OK\r\n\
                 * SEARCH 2\r\na6 OK\r\n\
                 + idling\r\n* 2 EXISTS\r\na7 OK\r\n"
            )),
            Transcript::off(),
        );
        let mut c = c.unwrap();
        c.login("u", &Secret::new("p"), Login::Auto).unwrap();
        c.select("INBOX").unwrap();
        assert_eq!(c.uid_search("ALL").unwrap(), vec![1]);
        c.delete(&[1]).unwrap();
        assert!(c.idle(Duration::from_secs(30)).unwrap());
        assert!(!sent.lines().iter().any(|l| l.ends_with("IDLE")));
        // The search after it saw the new message; the next idle waits.
        assert_eq!(c.uid_search("ALL").unwrap(), vec![2]);
        assert!(c.idle(Duration::from_secs(30)).unwrap());
        assert_eq!(sent.lines().last().map(String::as_str), Some("DONE"));
    }

    /// The client through a whole session on streams built from response
    /// fragments (what the `imap_stream` fuzz target does for the reader):
    /// no panic, and only UIDs asked for come out as messages.
    #[test]
    fn arbitrary_server_streams_never_panic_nor_yield_unasked_messages() {
        let frags: &[&str] = &[
            GREET,
            "* OK hi\r\n",
            "* CAPABILITY IMAP4rev1 IDLE\r\n",
            "a1 OK\r\n",
            "a2 OK [READ-WRITE]\r\n",
            "a3 OK\r\n",
            "a4 OK\r\n",
            "a5 NO\r\n",
            "* 3 EXISTS\r\n",
            "* SEARCH 1 2 9\r\n",
            "* 1 FETCH (UID 1 BODY[] {3}\r\n",
            "* 2 FETCH (UID 9 BODY[] \"x\")\r\n",
            "abc)\r\n",
            "+ go\r\n",
            "* BYE\r\n",
            "{",
            "}\r\n",
            "\r\n",
            "\x1b[31m",
            " ",
        ];
        let mut noise = crate::proto::script::Noise::new(0x2545_f491_4f6c_dd1d, frags);
        for _ in 0..3000 {
            let segs = noise.segments(16);
            let Ok(mut c) = Imap::start(Script::segments(&segs), "h", 143, Transcript::off())
            else {
                continue;
            };
            if c.login("u", &Secret::new("p"), Login::Auto).is_err() || c.select("INBOX").is_err() {
                continue;
            }
            let uids = c.uid_search("ALL").unwrap_or_default();
            let mut got = Vec::new();
            let _ = c.uid_fetch(&[1, 2], FetchLimits::default(), &mut |ev| got.push(ev));
            for ev in got {
                if let Fetched::Message(uid, _) = ev {
                    assert!([1, 2].contains(&uid), "{segs:?}: {uid} ({uids:?})");
                }
            }
            let _ = c.idle(Duration::ZERO);
            c.logout();
        }
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 7, 9, 10]), "1:3,5,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(quote("a\"b\\c\r\n"), "\"a\\\"b\\\\c\"");
    }
}
