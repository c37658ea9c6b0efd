//! mail-recv's [`Backend`]: what happens to a recipient at RCPT and to a
//! message after the final dot.
//!
//! Guarantee: **a 2xx only for what is durable.** A template recipient is
//! answered 250 only after [`store::Destination::store`] returned (the one
//! storage path: fsynced, renamed into place), a command recipient only
//! after the command exited 0, a queued one only after
//! [`queue::Spool::enqueue`] returned the entry's id. Recipients that share
//! a destination get one stored copy. With SMTP the one reply is the worst
//! outcome (a temporary failure over a permanent one over success: a
//! retry may duplicate, never lose); with LMTP each recipient has its own.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::message::{self, Message};
use crate::proto::smtp::Reply;
use crate::proto::smtp::server::{AuthVerdict, Backend, Session, Transaction};
use crate::queue::Spool;
use crate::recv::checkpassword::Checkpassword;
use crate::recv::command;
use crate::recv::policy::{Policy, Verdict, reply};
use crate::recv::template::{Missing, Template};
use crate::send::{Envelope, Route};
use crate::store::{self, Destination, Item};

/// Where local recipients go.
#[derive(Debug, Clone)]
pub enum Local {
    /// `--deliver TEMPLATE`: a Maildir or mbox per recipient.
    Template(Template),
    /// `-- COMMAND ARGS...`: a delivery command.
    Command(Vec<OsString>),
    /// Neither: `--queue` alone; local recipients are queued too.
    Queue,
}

/// Everything the backend needs, decided once by the tool.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Our domains and whether relaying is possible.
    pub policy: Policy,
    /// Local delivery.
    pub local: Local,
    /// Storage options for template destinations.
    pub store: store::Options,
    /// `--queue`: the spool directory.
    pub spool: Option<PathBuf>,
    /// How queued mail is sent on (direct to MX, as mail-send --direct).
    pub route: Route,
    /// LMTP: the command runs once per recipient.
    pub lmtp: bool,
    /// The delivery command's deadline.
    pub mda_timeout: Duration,
    /// `--checkpassword`.
    pub checkpassword: Option<Checkpassword>,
}

/// Where one recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dest {
    Path(String),
    Command { local: String, domain: String },
    Queue,
}

/// The backend of one session.
pub struct Receiver {
    setup: std::sync::Arc<Setup>,
    log: Option<Box<dyn Write + Send>>,
    size: usize,
    stored: Vec<String>,
}

/// One `--log-json` record.
#[derive(Serialize)]
struct Record<'a> {
    time: String,
    client_ip: Option<String>,
    helo: &'a str,
    tls: Option<String>,
    auth_user: Option<&'a str>,
    mail_from: &'a str,
    rcpts: &'a [String],
    size: usize,
    id: &'a str,
    replies: Vec<String>,
    stored: &'a [String],
}

impl Receiver {
    /// A backend over `setup`; `log` receives one JSON line per transaction
    /// (`--log-json`), or nothing.
    pub fn new(setup: std::sync::Arc<Setup>, log: Option<Box<dyn Write + Send>>) -> Receiver {
        Receiver {
            setup,
            log,
            size: 0,
            stored: Vec::new(),
        }
    }

    fn classify(&self, rcpt: &str, authenticated: bool) -> Result<Dest, Reply> {
        match self.setup.policy.decide(rcpt, authenticated).verdict {
            Verdict::Refuse(r) => Err(r),
            Verdict::Relay { .. } => Ok(Dest::Queue),
            Verdict::Local { local, domain } => match &self.setup.local {
                Local::Queue => Ok(Dest::Queue),
                Local::Command(_) => Ok(Dest::Command { local, domain }),
                Local::Template(t) => match t.resolve(&local, &domain) {
                    Ok(p) => Ok(Dest::Path(p)),
                    Err(Missing::NoSuchMailbox(_) | Missing::Unsafe(_)) => {
                        Err(reply(550, "5.1.1", "no such mailbox here"))
                    }
                },
            },
        }
    }

    fn enqueue(&mut self, tx: &Transaction, rcpts: Vec<String>, msg: &[u8]) -> Reply {
        let Some(dir) = &self.setup.spool else {
            return reply(451, "4.3.0", "no queue configured");
        };
        let env = Envelope {
            from: tx.mail_from.clone(),
            rcpts,
            dsn: Default::default(),
        };
        match Spool::open(dir).and_then(|s| s.enqueue(&self.setup.route, &env, msg, "")) {
            Ok(id) => {
                self.stored.push(format!("queue:{id}"));
                reply(250, "2.0.0", format!("queued as {id}"))
            }
            Err(e) => reply(451, "4.3.0", format!("queueing failed: {e}")),
        }
    }

    fn store(&mut self, path: &str, sender: &str, msg: &[u8]) -> Reply {
        let dest = match Destination::open(path, &self.setup.store) {
            Ok(d) => d,
            Err(e) => return store_error(&e),
        };
        let sender = if sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            sender
        };
        let (paths, err) = dest.store(&[Item { data: msg, sender }]);
        match (paths.first(), err) {
            (Some(p), None) => {
                self.stored.push(p.display().to_string());
                reply(250, "2.0.0", "stored")
            }
            (_, Some(e)) => store_error(&e),
            (None, None) => reply(451, "4.3.0", "not stored"),
        }
    }

    fn run_command(
        &self,
        argv: &[OsString],
        session: &Session,
        tx: &Transaction,
        rcpts: &[(String, String, String)],
        msg: &[u8],
    ) -> Reply {
        let env = command::Env {
            sender: tx.mail_from.clone(),
            recipients: rcpts.iter().map(|r| r.0.clone()).collect(),
            local: rcpts.first().map(|r| (r.1.clone(), r.2.clone())),
            client_address: session.peer.ip.map(|i| i.to_string()).unwrap_or_default(),
            client_helo: session.helo.clone(),
            client_protocol: session.with.clone(),
            sasl_username: session.auth_user.clone().unwrap_or_default(),
        };
        command::deliver(argv, &env, msg, self.setup.mda_timeout)
    }
}

/// `--explain ADDR`: what RCPT TO would answer for an unauthenticated and
/// for an authenticated client, why, and where the message would go.
/// Returns the lines to print and whether an unauthenticated client's
/// RCPT would be accepted.
pub fn explain(setup: &std::sync::Arc<Setup>, addr: &str) -> (Vec<String>, bool) {
    let b = Receiver::new(setup.clone(), None);
    let mut lines = vec![format!("recipient: {addr}")];
    let mut accepted = false;
    for (who, authed) in [("unauthenticated", false), ("authenticated", true)] {
        let d = setup.policy.decide(addr, authed);
        let outcome = match b.classify(addr, authed) {
            Ok(Dest::Path(p)) => format!("250 2.1.5 accepted: stored in {p}"),
            Ok(Dest::Command { .. }) => "250 2.1.5 accepted: handed to the delivery command".into(),
            Ok(Dest::Queue) => match &setup.spool {
                Some(dir) => format!("250 2.1.5 accepted: queued in {}", dir.display()),
                None => "250 2.1.5 accepted: queued".into(),
            },
            Err(r) => r.text(),
        };
        if !authed {
            accepted = outcome.starts_with("250");
        }
        let mut reason = d.reason;
        if let (Verdict::Local { .. }, Local::Template(t)) = (&d.verdict, &setup.local)
            && !outcome.starts_with("250")
        {
            reason = format!("{reason}; but {} has no destination for it", t.as_str());
        }
        lines.push(format!("{who}: {outcome}"));
        lines.push(format!("  because {reason}"));
        if setup.checkpassword.is_none() && !authed {
            lines.push("  (no --checkpassword: no client can authenticate)".into());
            break;
        }
    }
    (lines, accepted)
}

/// The reply for a storage failure: temporary unless the data itself can
/// never be stored (the caller keeps everything else and retries).
fn store_error(e: &crate::exit::Error) -> Reply {
    use crate::exit::Kind;
    match e.kind() {
        Kind::Data => reply(554, "5.6.0", format!("cannot store: {e}")),
        _ => reply(
            451,
            "4.3.0",
            "cannot store the message now; try again later",
        ),
    }
}

/// Worst outcome first: a temporary failure, then a permanent one, then
/// success (SMTP's single reply).
fn worst(replies: &[Reply]) -> Reply {
    replies
        .iter()
        .find(|r| r.is_temporary())
        .or_else(|| replies.iter().find(|r| r.is_permanent()))
        .or_else(|| replies.first())
        .cloned()
        .unwrap_or_else(|| reply(451, "4.3.0", "no recipients"))
}

/// `Return-Path: <sender>` at the top, replacing any the client sent
/// (RFC 5321 4.4: only final delivery adds it).
fn with_return_path(lf: &[u8], sender: &str) -> Vec<u8> {
    let clean: String = sender.chars().filter(|c| !c.is_control()).collect();
    let mut m = Message::new(lf.to_vec());
    m.replace_at_top(&["Return-Path"], &[format!("Return-Path: <{clean}>\n")]);
    m.into_bytes()
}

impl Backend for Receiver {
    fn rcpt(&mut self, session: &Session, tx: &Transaction, rcpt: &str) -> Result<(), Reply> {
        // The server strips a source route (`<@a,@b:user@dom>`, RFC 5321
        // C) and hands it over here: put it back so the policy, which
        // never relays along one, sees what the client asked for.
        match &tx.rcpt_source_route {
            Some(route) => self
                .classify(&format!("{route}:{rcpt}"), session.auth_user.is_some())
                .map(|_| ()),
            None => self.classify(rcpt, session.auth_user.is_some()).map(|_| ()),
        }
    }

    fn auth(&mut self, user: &str, password: &[u8]) -> AuthVerdict {
        match &self.setup.checkpassword {
            Some(c) => c.check(user, password),
            None => AuthVerdict::Bad,
        }
    }

    fn deliver(&mut self, session: &Session, tx: &Transaction, message: &[u8]) -> Vec<Reply> {
        self.size = message.len();
        self.stored.clear();
        let n = tx.rcpts.len();
        let authed = session.auth_user.is_some();
        let lf = message::normalize(message.to_vec());
        let mut replies: Vec<Option<Reply>> = vec![None; n];
        let mut queued = Vec::new();
        let mut paths: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut commands = Vec::new();
        for (i, r) in tx.rcpts.iter().enumerate() {
            match self.classify(r, authed) {
                Err(e) => replies[i] = Some(e),
                Ok(Dest::Queue) => queued.push(i),
                Ok(Dest::Path(p)) => paths.entry(p).or_default().push(i),
                Ok(Dest::Command { local, domain }) => commands.push((i, local, domain)),
            }
        }
        if !queued.is_empty() {
            let rcpts = queued.iter().map(|&i| tx.rcpts[i].clone()).collect();
            let r = self.enqueue(tx, rcpts, &lf);
            for &i in &queued {
                replies[i] = Some(r.clone());
            }
        }
        if !paths.is_empty() || !commands.is_empty() {
            let final_msg = with_return_path(&lf, &tx.mail_from);
            for (path, idx) in &paths {
                let r = self.store(path, &tx.mail_from, &final_msg);
                for &i in idx {
                    replies[i] = Some(r.clone());
                }
            }
            if let Local::Command(argv) = &self.setup.local {
                let groups: Vec<Vec<&(usize, String, String)>> = if self.setup.lmtp {
                    commands.iter().map(|c| vec![c]).collect()
                } else if commands.is_empty() {
                    Vec::new()
                } else {
                    vec![commands.iter().collect()]
                };
                for g in groups {
                    let rc: Vec<(String, String, String)> = g
                        .iter()
                        .map(|(i, l, d)| (tx.rcpts[*i].clone(), l.clone(), d.clone()))
                        .collect();
                    let r = self.run_command(argv, session, tx, &rc, &final_msg);
                    if r.is_success() {
                        self.stored
                            .push(format!("command:{}", argv[0].to_string_lossy()));
                    }
                    for (i, _, _) in g {
                        replies[*i] = Some(r.clone());
                    }
                }
            }
        }
        let replies: Vec<Reply> = replies
            .into_iter()
            .map(|r| r.unwrap_or_else(|| reply(451, "4.3.0", "not delivered")))
            .collect();
        if self.setup.lmtp {
            replies
        } else {
            vec![worst(&replies)]
        }
    }

    fn transaction_end(&mut self, session: &Session, tx: &Transaction, replies: &[Reply]) {
        let size = std::mem::take(&mut self.size);
        let stored = std::mem::take(&mut self.stored);
        let Some(log) = self.log.as_mut() else {
            return;
        };
        let rec = Record {
            time: crate::calendar::format_rfc3339(crate::queue::now() as i64, 0, 0, "Z"),
            client_ip: session.peer.ip.map(|i| i.to_string()),
            helo: &session.helo,
            tls: session
                .tls
                .as_ref()
                .map(|t| format!("{} {}", t.version, t.cipher)),
            auth_user: session.auth_user.as_deref(),
            mail_from: &tx.mail_from,
            rcpts: &tx.rcpts,
            size,
            id: &tx.id,
            replies: replies.iter().map(Reply::text).collect(),
            stored: &stored,
        };
        if let Ok(mut line) = serde_json::to_vec(&rec) {
            line.push(b'\n');
            let _ = log.write_all(&line);
            let _ = log.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::smtp::server::{Peer, TlsInfo};
    use crate::store::Locking;
    use std::sync::{Arc, Mutex};

    fn session(auth: Option<&str>) -> Session {
        Session {
            peer: Peer {
                ip: Some("192.0.2.7".parse().unwrap()),
                host: None,
            },
            helo: "client.example".into(),
            tls: Some(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS_AES_256_GCM_SHA384".into(),
            }),
            auth_user: auth.map(String::from),
            with: "ESMTPS".into(),
        }
    }

    fn tx(rcpts: &[&str]) -> Transaction {
        Transaction {
            id: "T1".into(),
            mail_from: "alice@sender.example".into(),
            rcpts: rcpts.iter().map(|s| s.to_string()).collect(),
            ..Transaction::default()
        }
    }

    fn setup(local: Local, spool: Option<PathBuf>, lmtp: bool) -> Arc<Setup> {
        Arc::new(Setup {
            policy: Policy::new(&["example.org"], spool.is_some()),
            local,
            store: store::Options {
                folder: None,
                mbox_format: crate::mboxfmt::Format::Mboxrd,
                locking: Locking::default(),
            },
            spool,
            route: Route::Direct {
                resolver: None,
                mx_port: None,
            },
            lmtp,
            mda_timeout: Duration::from_secs(30),
            checkpassword: None,
        })
    }

    /// A `--log-json` sink the test can read.
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const MSG: &[u8] = b"Received: from client.example by mx\r\nReturn-Path: <forged@x>\r\nSubject: hi\r\n\r\nbody\r\n";

    fn new_files(md: &std::path::Path) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = std::fs::read_dir(md.join("new"))
            .map(|d| {
                d.map(|e| std::fs::read(e.unwrap().path()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn template_delivery_stores_once_per_destination_with_return_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        for u in ["bob", "carol"] {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(dir.path().join(u).join(sub)).unwrap();
            }
        }
        let t = Template::parse(&format!("{root}/{{local}}/")).unwrap();
        let log = Arc::new(Mutex::new(Vec::<u8>::new()));
        let mut b = Receiver::new(
            setup(Local::Template(t), None, false),
            Some(Box::new(Sink(log.clone()))),
        );
        let s = session(None);
        let t0 = tx(&[]);
        assert!(b.rcpt(&s, &t0, "Bob@Example.org").is_ok());
        assert!(b.rcpt(&s, &t0, "bob+x@example.org").is_ok());
        let e = b.rcpt(&s, &t0, "nobody@example.org").unwrap_err();
        assert_eq!((e.code, e.enhanced.as_deref()), (550, Some("5.1.1")));
        let e = b.rcpt(&s, &t0, "bob@other.example").unwrap_err();
        assert_eq!((e.code, e.enhanced.as_deref()), (550, Some("5.7.1")));
        let e = b.rcpt(&s, &t0, "../bob@example.org").unwrap_err();
        assert_eq!(e.code, 550);

        let t = tx(&["Bob@Example.org", "bob+x@example.org", "carol@example.org"]);
        let replies = b.deliver(&s, &t, MSG);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].code, 250, "{replies:?}");
        let bob = new_files(&dir.path().join("bob"));
        assert_eq!(
            bob.len(),
            1,
            "one copy for two recipients sharing a Maildir"
        );
        assert_eq!(
            bob[0],
            b"Return-Path: <alice@sender.example>\nReceived: from client.example by mx\nSubject: hi\n\nbody\n"
        );
        assert_eq!(new_files(&dir.path().join("carol")).len(), 1);
        b.transaction_end(&s, &t, &replies);
        let line = String::from_utf8(log.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["client_ip"], "192.0.2.7");
        assert_eq!(v["mail_from"], "alice@sender.example");
        assert_eq!(v["size"], MSG.len());
        assert_eq!(v["stored"].as_array().unwrap().len(), 2);
        assert!(v["replies"][0].as_str().unwrap().starts_with("250 2.0.0"));
        assert_eq!(v["tls"], "TLSv1.3 TLS_AES_256_GCM_SHA384");
    }

    #[test]
    fn a_command_exiting_75_is_451_and_lmtp_runs_it_per_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "cat >> '{0}'; echo \"=$RECIPIENT\" >> '{0}'; test \"$LOCAL\" = fail && exit 75; exit 0",
            out.display()
        );
        let argv: Vec<OsString> = ["/bin/sh", "-c", &script]
            .iter()
            .map(OsString::from)
            .collect();
        let s = session(None);
        let mut smtp = Receiver::new(setup(Local::Command(argv.clone()), None, false), None);
        let r = smtp.deliver(&s, &tx(&["ok@example.org", "fail@example.org"]), MSG);
        assert_eq!(r.len(), 1);
        // SMTP: once per message (RECIPIENT unset with two recipients), and
        // LOCAL is the first recipient's.
        assert_eq!(r[0].code, 250, "{r:?}");
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            got.matches("Return-Path: <alice@sender.example>\n").count(),
            1
        );
        assert!(got.ends_with("=\n"), "{got}");
        std::fs::remove_file(&out).unwrap();
        let mut lmtp = Receiver::new(setup(Local::Command(argv), None, true), None);
        let r = lmtp.deliver(&s, &tx(&["ok@example.org", "fail@example.org"]), MSG);
        let codes: Vec<u16> = r.iter().map(|r| r.code).collect();
        assert_eq!(codes, vec![250, 451]);
        let got = std::fs::read_to_string(&out).unwrap();
        assert!(
            got.contains("=ok@example.org\n") && got.contains("=fail@example.org\n"),
            "{got}"
        );
        // SMTP with the failing one alone: 451, and the worst wins.
        let mut smtp = Receiver::new(
            setup(
                Local::Command(
                    ["/bin/sh", "-c", "cat >/dev/null; exit 75"]
                        .iter()
                        .map(OsString::from)
                        .collect(),
                ),
                None,
                false,
            ),
            None,
        );
        let log = Arc::new(Mutex::new(Vec::<u8>::new()));
        smtp.log = Some(Box::new(Sink(log.clone())));
        let t = tx(&["x@example.org"]);
        let r = smtp.deliver(&s, &t, MSG);
        assert_eq!((r[0].code, r[0].enhanced.as_deref()), (451, Some("4.3.0")));
        smtp.transaction_end(&s, &t, &r);
        let line = String::from_utf8(log.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["stored"], serde_json::json!([]), "{line}");
        assert!(v["replies"][0].as_str().unwrap().starts_with("451 4.3.0"));
    }

    #[test]
    fn a_failing_store_is_451_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A Maildir template under a regular file cannot be created.
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let t = Template::parse(&format!("{}/file/{{domain}}/", dir.path().display())).unwrap();
        let mut b = Receiver::new(setup(Local::Template(t), None, false), None);
        let r = b.deliver(&session(None), &tx(&["x@example.org"]), MSG);
        assert_eq!(r[0].code, 451, "{r:?}");
        assert!(b.stored.is_empty());
    }

    #[test]
    fn relayed_recipients_of_authenticated_clients_are_queued_for_their_mx() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let md = dir.path().join("md");
        let t = Template::parse(&format!("{}/", md.display())).unwrap();
        let mut b = Receiver::new(setup(Local::Template(t), Some(spool.clone()), true), None);
        let anon = session(None);
        assert!(b.rcpt(&anon, &tx(&[]), "far@other.example").is_err());
        let authed = session(Some("alice"));
        assert!(b.rcpt(&authed, &tx(&[]), "far@other.example").is_ok());
        let r = b.deliver(&authed, &tx(&["far@other.example", "me@example.org"]), MSG);
        assert_eq!(r.len(), 2);
        assert!(r[0].lines[0].starts_with("queued as "), "{r:?}");
        assert_eq!(r[1].code, 250);
        let sp = Spool::open(&spool).unwrap();
        let ids = sp.ids().unwrap();
        assert_eq!(ids.len(), 1);
        let st = sp.load(&ids[0]).unwrap();
        assert_eq!(st.rcpts.len(), 1);
        assert_eq!(st.rcpts[0].addr, "far@other.example");
        assert!(matches!(st.route, Route::Direct { .. }));
        let queued = sp.message(&ids[0]).unwrap();
        assert!(
            queued.starts_with(b"Received: "),
            "no Return-Path in a relayed copy"
        );
        assert_eq!(new_files(&md).len(), 1);
    }
}
