//! Where fetched messages go: a Maildir or mbox (the storage code of
//! mail-deliver, with grouped syncs), an MDA command, an SMTP or LMTP
//! server (the shared `send::Sender`), or an mboxrd stream on stdout.
//!
//! Guarantee: a message is reported [`Fate::Stored`] only once the target
//! confirmed it durable: fsynced in the Maildir/mbox, exit 0 from the MDA,
//! a final 2xx from the server. The MDA runs through [`crate::child`]: in
//! its own process group, killed with it after its deadline
//! ([`DEFAULT_MDA_TIMEOUT`], `mda_timeout`; the message is then kept), and
//! without any password variable in its environment. Stdout cannot confirm anything, so
//! [`Target::may_delete`] is false for it and nothing is deleted on the
//! server. Everything else is either kept for a later run
//! ([`Fate::Kept`]) or refused ([`Fate::Refused`]); both leave the message
//! on the server.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::child::{self, Ended};
use crate::config::Config;
use crate::exit::{Error, Kind, Result};
use crate::mboxfmt::{self, Format};
use crate::message::{self, Message};
use crate::proto::transcript::Transcript;
use crate::send::{Envelope, Fate as SendFate, Route, SendOptions, Sender};
use crate::store::{Destination, Item, Locking, Options};

/// A writer shared by every account's thread (stdout).
pub type SharedOut = Arc<Mutex<Box<dyn Write + Send>>>;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// A Maildir (created when missing).
    Mailbox(String),
    /// An mbox file, even when the path looks like a directory.
    Mbox(String),
    /// A shell command (`%F` sender, `%T` recipient).
    Mda(String),
    /// An SMTP server `HOST[:PORT]` (plain: a local MTA).
    Smtp(String),
    /// An LMTP server `HOST[:PORT]` or socket path.
    Lmtp(String),
    /// An mboxrd stream on stdout.
    Stdout,
}

impl Spec {
    /// How the target is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Spec::Mailbox(p) | Spec::Mbox(p) => p.clone(),
            Spec::Mda(c) => format!("the MDA {c:?}"),
            Spec::Smtp(h) => format!("SMTP {h}"),
            Spec::Lmtp(h) => format!("LMTP {h}"),
            Spec::Stdout => "stdout".to_string(),
        }
    }
}

/// One fetched message, line ends already LF.
pub struct Msg {
    /// The message (LF line ends, final newline).
    pub data: Vec<u8>,
    /// The envelope sender, from Return-Path (empty: unknown / null).
    pub sender: String,
}

impl Msg {
    /// A message as the server sent it (CRLF): normalised, sender found.
    pub fn from_wire(data: Vec<u8>) -> Msg {
        let data = message::normalize(data);
        let m = Message::new(data);
        let sender = m
            .header_values("Return-Path")
            .first()
            .map(|v| message::bare_address(v))
            .unwrap_or_default();
        Msg {
            data: m.into_bytes(),
            sender,
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Durable in the target: may be deleted on the server.
    Stored,
    /// Temporarily refused (MDA exit 75, a 4xx): stays, tried next run.
    Kept(String),
    /// Refused for good by the target: stays on the server, reported.
    Refused(String),
}

/// How long an MDA may run for one message unless `mda_timeout` says
/// otherwise: far more than any real delivery agent takes, and still an
/// end to one that hangs.
pub const DEFAULT_MDA_TIMEOUT: Duration = Duration::from_secs(600);

/// An open target for one account's run.
pub struct Target {
    kind: Open,
    recipient: String,
    mda_timeout: Duration,
}

enum Open {
    Store(Destination),
    Mda(String),
    Send(Box<Sender>, Route),
    Stdout(SharedOut),
}

impl Target {
    /// Warnings of the store so far, taken away (an mbox whose repair
    /// journal was not trusted: see [`Destination::take_notes`]).
    pub fn take_notes(&self) -> Vec<String> {
        match &self.kind {
            Open::Store(d) => d.take_notes(),
            _ => Vec::new(),
        }
    }

    /// Open `spec`; `recipient` is the envelope recipient for MDA, SMTP and
    /// LMTP targets.
    pub fn open(
        spec: &Spec,
        recipient: &str,
        stdout: Option<&SharedOut>,
        transcript: Transcript,
    ) -> Result<Target> {
        let opts = Options {
            folder: None,
            mbox_format: Format::Mboxrd,
            locking: Locking::default(),
        };
        let kind = match spec {
            Spec::Mailbox(p) => {
                // --maildir always means a Maildir, even one that does not
                // exist yet and was named without a trailing slash.
                let mut p = expand_home(p);
                if !p.ends_with('/') {
                    p.push('/');
                }
                Open::Store(Destination::open(&p, &opts)?)
            }
            Spec::Mbox(p) => {
                let p = expand_home(p);
                Open::Store(Destination::Mbox(crate::store::Mbox::new(
                    std::path::Path::new(&p),
                    Format::Mboxrd,
                    Locking::default(),
                )))
            }
            Spec::Mda(c) => Open::Mda(c.clone()),
            Spec::Smtp(h) => {
                let (host, port) = crate::send::split_host_port(h, 25)?;
                let server = crate::config::Account {
                    protocol: Some(crate::config::Service::Smtp),
                    host: Some(host),
                    port: Some(port),
                    tls: Some(crate::proto::tls::TlsMode::None),
                    ..Default::default()
                };
                Open::Send(
                    Box::new(Sender::new(
                        Config::default(),
                        SendOptions::default(),
                        transcript,
                    )),
                    Route::Server {
                        server: Box::new(server),
                    },
                )
            }
            Spec::Lmtp(t) => Open::Send(
                Box::new(Sender::new(
                    Config::default(),
                    SendOptions::default(),
                    transcript,
                )),
                Route::Lmtp { target: t.clone() },
            ),
            Spec::Stdout => match stdout {
                Some(o) => Open::Stdout(o.clone()),
                None => {
                    return Err(Error::new(Kind::Usage, "--stdout", "no stdout to write to"));
                }
            },
        };
        Ok(Target {
            kind,
            recipient: recipient.to_string(),
            mda_timeout: DEFAULT_MDA_TIMEOUT,
        })
    }

    /// Kill an MDA after `limit` (None: [`DEFAULT_MDA_TIMEOUT`]).
    pub fn with_mda_timeout(mut self, limit: Option<Duration>) -> Target {
        self.mda_timeout = limit.unwrap_or(DEFAULT_MDA_TIMEOUT);
        self
    }

    /// May messages stored here be deleted on the server?
    pub fn may_delete(&self) -> bool {
        !matches!(self.kind, Open::Stdout(_))
    }

    /// Deliver `msgs` in order. Returns one fate per message handled (a
    /// prefix of `msgs`) and, when the target broke down (disk full, the
    /// Maildir gone), the error that stopped the rest.
    pub fn deliver(&mut self, msgs: &[Msg]) -> (Vec<Fate>, Option<Error>) {
        match &mut self.kind {
            Open::Store(d) => {
                let items: Vec<Item<'_>> = msgs
                    .iter()
                    .map(|m| Item {
                        data: &m.data,
                        sender: &m.sender,
                    })
                    .collect();
                let (stored, err) = d.store(&items);
                (vec![Fate::Stored; stored.len()], err)
            }
            Open::Mda(cmd) => {
                let mut fates = Vec::with_capacity(msgs.len());
                for m in msgs {
                    match run_mda(cmd, &m.sender, &self.recipient, &m.data, self.mda_timeout) {
                        Ok(f) => fates.push(f),
                        Err(e) => return (fates, Some(e)),
                    }
                }
                (fates, None)
            }
            Open::Send(sender, route) => {
                let fates = msgs
                    .iter()
                    .map(|m| {
                        let env = Envelope {
                            from: m.sender.clone(),
                            rcpts: vec![self.recipient.clone()],
                            ..Envelope::default()
                        };
                        let out = sender.deliver(route, &env, &m.data);
                        match out.first() {
                            Some(o) => match o.fate {
                                SendFate::Delivered => Fate::Stored,
                                SendFate::Temporary => Fate::Kept(o.reply.clone()),
                                SendFate::Permanent { .. } => Fate::Refused(o.reply.clone()),
                            },
                            None => Fate::Kept("no reply".to_string()),
                        }
                    })
                    .collect();
                (fates, None)
            }
            Open::Stdout(out) => {
                let mut buf = Vec::new();
                let now = SystemTime::now();
                for m in msgs {
                    buf.extend_from_slice(&mboxfmt::from_line(&m.sender, now));
                    mboxfmt::quote_into(&m.data, Format::Mboxrd, &mut buf);
                    buf.push(b'\n');
                }
                let res = match out.lock() {
                    Ok(mut w) => w.write_all(&buf).and_then(|()| w.flush()),
                    Err(_) => Err(std::io::Error::other("stdout writer poisoned")),
                };
                match res {
                    Ok(()) => (vec![Fate::Stored; msgs.len()], None),
                    Err(e) => (Vec::new(), Some(Error::io("writing to stdout", &e))),
                }
            }
        }
    }

    /// Start storing `msgs`; [`Pending::wait`] says how it went. A Maildir
    /// stores on a thread of its own, so that the caller can read the next
    /// batch from the server while this one is written and synced (the
    /// disk and the network overlap); every other target delivers here,
    /// before this returns. Either way nothing is confirmed until `wait`,
    /// and the caller records nothing as stored before it.
    pub fn begin(&mut self, msgs: Vec<Msg>) -> Pending {
        if let Open::Store(Destination::Maildir(md)) = &self.kind
            && !msgs.is_empty()
        {
            let md = md.clone();
            let spawned = std::thread::Builder::new()
                .name("store".to_string())
                .spawn(move || {
                    let datas: Vec<&[u8]> = msgs.iter().map(|m| m.data.as_slice()).collect();
                    let (stored, err) = md.deliver_batch(&datas);
                    (vec![Fate::Stored; stored.len()], err)
                });
            return match spawned {
                Ok(h) => Pending(Waiting::Thread(h)),
                // No thread to be had (a limit on processes): nothing was
                // stored, and the messages stay on the server.
                Err(e) => Pending(Waiting::Done(
                    Vec::new(),
                    Some(Error::io("starting the storing thread", &e)),
                )),
            };
        }
        let (fates, err) = self.deliver(&msgs);
        Pending(Waiting::Done(fates, err))
    }

    /// A mark to find a batch by later: where in an mbox the batch's append
    /// will start (None for other targets). That is the settled length,
    /// not the file's: a killed writer's partial append is cut off before
    /// the next one, so the batch may start before the file's end.
    pub fn mark(&self) -> Option<u64> {
        match &self.kind {
            Open::Store(Destination::Mbox(mb)) => Some(mb.settled_len()),
            _ => None,
        }
    }

    /// Which of `msgs` are already in the target, stored by a run that died
    /// before recording them. A Maildir compares its files in `new/` and
    /// `cur/` younger than `since`; an mbox the messages between `mark`
    /// (where that run's append started) and its settled length (a group
    /// the kill cut short counts for nothing, not even its complete
    /// messages: the next append cuts it off whole). Other targets cannot
    /// tell and answer "no" (see the man page).
    ///
    /// The walk goes through the store's reading side (`store::read`), the
    /// same one mail-trace reads with.
    pub fn find_stored(&self, since: SystemTime, mark: Option<u64>, msgs: &[&Msg]) -> Vec<bool> {
        use crate::store::read::{self, Extent, MaildirReader};
        let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        match &self.kind {
            Open::Store(Destination::Maildir(md)) => {
                if let Ok(files) = MaildirReader::open(md.root(), Extent::Whole) {
                    for (_, m) in files.modified_since(since) {
                        if let Ok(m) = m {
                            seen.insert(m.data);
                        }
                    }
                }
            }
            Open::Store(Destination::Mbox(mb)) => {
                // Only up to the settled length: a killed writer's partial
                // append holds complete messages before the cut, but the
                // next append cuts them off with the rest of their group.
                // Taken as stored, they would be recorded and deleted on
                // the server, then cut: lost.
                let end = mb.settled_len();
                if let Some(mark) = mark
                    && mark < end
                    && let Ok(mut entries) = read::mbox_range(mb.path(), mark, end)
                {
                    while let Ok(Some(e)) = entries.next_entry() {
                        seen.insert(e.data);
                    }
                }
            }
            _ => {}
        }
        // The mbox reader takes a CR before a line's LF for part of the line
        // end, and a message can still hold one after the network's CRLF
        // was undone (`\r\r\n` on the wire): compare what it reads back, or
        // such a message would never be found and would be stored twice.
        let mbox = matches!(self.kind, Open::Store(Destination::Mbox(_)));
        msgs.iter()
            .map(|m| {
                if mbox && m.data.windows(2).any(|w| w == b"\r\n") {
                    seen.contains(&message::normalize(m.data.clone()))
                } else {
                    seen.contains(&m.data)
                }
            })
            .collect()
    }

    /// Close connections (QUIT).
    pub fn finish(&mut self) {
        if let Open::Send(s, _) = &mut self.kind {
            s.finish();
        }
    }
}

/// A batch handed to [`Target::begin`], not yet confirmed.
pub struct Pending(Waiting);

type Outcome = (Vec<Fate>, Option<Error>);

enum Waiting {
    Done(Vec<Fate>, Option<Error>),
    Thread(std::thread::JoinHandle<Outcome>),
}

impl Pending {
    /// Wait until the batch is stored or has failed: one fate per message
    /// handled (a prefix, as [`Target::deliver`]) and the error that
    /// stopped the rest.
    pub fn wait(self) -> Outcome {
        match self.0 {
            Waiting::Done(f, e) => (f, e),
            Waiting::Thread(h) => h.join().unwrap_or_else(|_| {
                // A storing thread that died confirmed nothing: the batch
                // stays on the server (the in-flight record finds what it
                // may have stored).
                (
                    Vec::new(),
                    Some(Error::new(
                        Kind::Temporary,
                        "storing a batch",
                        "the storing thread failed",
                    )),
                )
            }),
        }
    }
}

/// `~/x` -> `$HOME/x` (config files are written by people).
fn expand_home(p: &str) -> String {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty())
    {
        return format!("{}/{rest}", h.to_string_lossy().trim_end_matches('/'));
    }
    p.to_string()
}

/// Quote `s` for `sh`: single quotes, with `'` as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The MDA command with `%F` and `%T` replaced by the quoted sender and
/// recipient (`%%` is a `%`).
pub fn mda_command(cmd: &str, sender: &str, rcpt: &str) -> String {
    let mut out = String::with_capacity(cmd.len() + 32);
    let mut chars = cmd.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.peek() {
                Some('F') => {
                    chars.next();
                    out.push_str(&shell_quote(sender));
                    continue;
                }
                Some('T') => {
                    chars.next();
                    out.push_str(&shell_quote(rcpt));
                    continue;
                }
                Some('%') => {
                    chars.next();
                    out.push('%');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Run the MDA once for one message: 0 stored, 75 kept, else refused;
/// still running after `limit`: killed (with its process group), kept.
/// Failing to start the shell at all is an error that stops the run.
fn run_mda(cmd: &str, sender: &str, rcpt: &str, data: &[u8], limit: Duration) -> Result<Fate> {
    let line = mda_command(cmd, sender, rcpt);
    let ended = child::feed(&line, data, limit)
        .map_err(|e| Error::io(format!("running the MDA {cmd:?}"), &e))?;
    // An MDA that exits 0 without reading everything still said "stored";
    // one that broke the pipe and failed did not.
    Ok(match ended {
        Ended::Exited(status) => match status.code() {
            Some(0) => Fate::Stored,
            Some(75) => Fate::Kept("the MDA exited 75 (temporary failure)".to_string()),
            Some(c) => Fate::Refused(format!("the MDA exited {c}")),
            None => Fate::Kept(format!("the MDA was killed ({status})")),
        },
        Ended::TimedOut | Ended::TooMuch => Fate::Kept(format!(
            "the MDA did not finish within {} s (killed)",
            limit.as_secs()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mda_substitution_is_shell_safe() {
        assert_eq!(
            mda_command("deliver -f %F -r %T 100%%", "a'b@x", "me"),
            "deliver -f 'a'\\''b@x' -r 'me' 100%"
        );
        assert_eq!(mda_command("x %Z", "a", "b"), "x %Z");
    }

    #[test]
    fn an_appended_batch_is_found_after_its_mark() {
        let dir = std::env::temp_dir().join(format!("postline-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mbox");
        let spec = Spec::Mbox(path.display().to_string());
        let t = Target::open(&spec, "me", None, Transcript::off()).unwrap();
        let a = Msg::from_wire(b"Subject: a\r\n\r\nFrom here\r\n".to_vec());
        let b = Msg::from_wire(b"Subject: b\r\n\r\nbody".to_vec());
        let c = Msg::from_wire(b"Subject: c\r\n\r\nnot stored\r\n".to_vec());
        // A CR left before a line end after the CRLF was undone.
        let d = Msg::from_wire(b"Subject: d\r\n\r\nbare CR\r\r\n".to_vec());
        let mut t = t;
        assert_eq!(
            t.deliver(&[Msg {
                data: a.data.clone(),
                sender: a.sender.clone()
            }])
            .0
            .len(),
            1
        );
        let mark = t.mark();
        assert!(mark.unwrap() > 0);
        let (fates, err) = t.deliver(&[
            Msg {
                data: a.data.clone(),
                sender: String::new(),
            },
            Msg {
                data: b.data.clone(),
                sender: String::new(),
            },
            Msg {
                data: d.data.clone(),
                sender: String::new(),
            },
        ]);
        assert!(err.is_none() && fates.len() == 3);
        let since = SystemTime::now();
        assert_eq!(
            t.find_stored(since, mark, &[&a, &b, &c, &d]),
            vec![true, true, false, true]
        );
        // Before the mark only the first a: found only when asked from 0.
        assert_eq!(t.find_stored(since, Some(0), &[&c]), vec![false]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn complete_messages_of_a_cut_append_are_not_taken_as_stored() {
        let dir = std::env::temp_dir().join(format!("postline-target-cut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mbox");
        let spec = Spec::Mbox(path.display().to_string());
        let mut t = Target::open(&spec, "me", None, Transcript::off()).unwrap();
        let msg =
            |s: &str| Msg::from_wire(format!("Subject: {s}\r\n\r\nbody {s}\r\n").into_bytes());
        assert!(t.deliver(&[msg("a")]).1.is_none());
        let start = t.mark().unwrap();
        assert!(t.deliver(&[msg("b"), msg("c")]).1.is_none());
        let end = std::fs::metadata(&path).unwrap().len();
        // A writer killed inside its write: b complete, c cut short, the
        // journal still there.
        // (The journal as mail-deliver(1) documents it: the file's device
        // and inode, the range, then the bytes being written; mode 0600.)
        use std::io::Write;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let meta = std::fs::metadata(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap()[start as usize..].to_vec();
        let mut j = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("mbox.postline-append"))
            .unwrap();
        writeln!(
            j,
            "postline-append 2 pid=1 dev={} ino={} start={start} end={end}",
            meta.dev(),
            meta.ino()
        )
        .unwrap();
        j.write_all(&bytes).unwrap();
        drop(j);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(end - 3).unwrap();
        drop(f);
        // The next append cuts b off with c: b must not count as stored,
        // and the next batch starts where the cut group started.
        assert_eq!(t.mark(), Some(start));
        let since = SystemTime::now();
        assert_eq!(
            t.find_stored(since, Some(start), &[&msg("b"), &msg("c")]),
            vec![false, false]
        );
        assert!(t.deliver(&[msg("b"), msg("c")]).1.is_none());
        assert_eq!(
            t.find_stored(since, Some(start), &[&msg("b"), &msg("c")]),
            vec![true, true]
        );
        let data = std::fs::read(&path).unwrap();
        let mut sp = mboxfmt::Splitter::new(&data[..], Format::Mboxrd);
        let mut n = 0;
        while let Ok(Some(_)) = sp.next_entry() {
            n += 1;
        }
        assert_eq!(n, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn return_path_gives_the_sender() {
        let m = Msg::from_wire(b"Return-Path: <s@x.org>\r\nSubject: a\r\n\r\nbody\r\n".to_vec());
        assert_eq!(m.sender, "s@x.org");
        assert_eq!(m.data, b"Return-Path: <s@x.org>\nSubject: a\n\nbody\n");
    }
}
