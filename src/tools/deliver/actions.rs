//! mail-deliver's Sieve actions that leave the Maildir: `redirect` and
//! `vacation`, carried out by mail-send (the one SMTP path; the route
//! from the config) and, on a temporary failure, the postline queue; and the
//! `duplicate`/vacation memory ([`crate::sieve::duplicate::Memory`]).
//!
//! Guarantees:
//!
//! - A redirect keeps the original envelope sender (RFC 5228 4.2: MAIL
//!   FROM is the message's return path) and sends the message as
//!   delivered, without the Return-Path this delivery added (Delivered-To
//!   stays: it is what stops a loop back to this recipient).
//! - Nothing is lost: a redirect that is neither sent nor queued (no
//!   route, refused, `[send] no_queue`, the spool unusable) leaves the
//!   message in INBOX; exit 75 comes only when that store fails too.
//! - Loop protection: a message with more than `[deliver] max_received`
//!   (default 100, RFC 5321 6.3) Received fields is neither redirected nor
//!   answered; said on stderr and in the dry run.
//! - A dry run plans exactly what a delivery would send and sends nothing.

use std::path::PathBuf;

use crate::config::{Config, Service};
use crate::exit::Result;
use crate::message::Message;
use crate::send::{Envelope, Route};
use crate::sieve::duplicate::{Memory, Seen};
use crate::sieve::vacation::{self, Reply};
use crate::sieve::{self, Action, ActionKind};

/// Received fields allowed before redirect and vacation stop (RFC 5321
/// 6.3 suggests 100).
pub const DEFAULT_MAX_RECEIVED: usize = 100;

/// Where redirects and vacation replies go, decided once from the config.
pub struct Outbound {
    config: Config,
    /// The route and why it was chosen, or why there is none.
    route: std::result::Result<(Route, String), String>,
    /// `[deliver] max_received`.
    pub max_received: usize,
}

/// What became of one message sent.
#[derive(Debug)]
pub enum Sent {
    /// Accepted by the server.
    Delivered,
    /// In the queue, with the entry id.
    Queued(String),
    /// Neither; the reason.
    Failed(String),
}

impl Outbound {
    /// Decide the route: `[deliver] account`, else the sending account
    /// with `default = true`, else direct to MX with `[send] direct`.
    pub fn new(config: Config) -> Outbound {
        let sending = |a: &crate::config::Account| a.protocol.is_none_or(Service::sends);
        let route = if let Some(name) = &config.deliver.account {
            match config.account(name) {
                Ok(_) => Ok((
                    Route::Account { name: name.clone() },
                    format!("account {name} ([deliver] account)"),
                )),
                Err(e) => Err(e.to_string()),
            }
        } else if let Some((name, _)) = config.account.iter().find(|(_, a)| a.default && sending(a))
        {
            Ok((
                Route::Account { name: name.clone() },
                format!("account {name} (default = true)"),
            ))
        } else if config.send.direct {
            Ok((
                Route::Direct {
                    resolver: config.send.resolver.clone(),
                    mx_port: config.send.mx_port,
                },
                "direct to MX ([send] direct)".to_string(),
            ))
        } else {
            Err("no route to send by: set [deliver] account, an account with default = true, or [send] direct = true".to_string())
        };
        Outbound {
            max_received: config.deliver.max_received.unwrap_or(DEFAULT_MAX_RECEIVED),
            route,
            config,
        }
    }

    /// The route in words, for the dry run.
    pub fn route(&self) -> std::result::Result<&str, &str> {
        match &self.route {
            Ok((_, why)) => Ok(why),
            Err(e) => Err(e),
        }
    }

    /// Send `msg` to `env` through mail-send (which queues it on a
    /// temporary failure, unless `[send] no_queue`).
    ///
    /// Why a child and not `send::Sender` in this process: mail-deliver is
    /// started once per message, and linking the SMTP client (TLS, its
    /// certificate roots) into it tripled its start-up (11 MB, 25,000
    /// relocations and 150 more page faults a delivery, paid by every
    /// message, filtered or not). mail-send is the one SMTP path; it reads
    /// the same config (`--config` passed on), gets its password itself
    /// (never through us: argv and environment stay clean), and says
    /// "queued as ID" when it queued. Run under a deadline in its own
    /// process group (`child::run_argv`).
    pub fn send(&self, env: &Envelope, msg: &[u8]) -> Sent {
        use std::ffi::OsString;
        let route = match &self.route {
            Ok((r, _)) => r,
            Err(e) => return Sent::Failed(e.clone()),
        };
        // The sender joined to -f: a sender that starts with '-' (it comes
        // from the message's envelope) stays the option's value.
        let from = if env.from.is_empty() { "<>" } else { &env.from };
        let mut argv: Vec<OsString> =
            vec![mail_send().into(), "-i".into(), format!("-f{from}").into()];
        if let Some(p) = &self.config.path {
            argv.push("--config".into());
            argv.push(p.clone().into());
        }
        let mut limit = std::time::Duration::from_secs(60);
        match route {
            Route::Account { name } => {
                argv.push("--account".into());
                argv.push(name.into());
                if let Ok(a) = self.config.account(name)
                    && let Some(t) = a.timeout
                {
                    limit = std::time::Duration::from_secs(t);
                }
            }
            Route::Direct { .. } => argv.push("--direct".into()),
            other => return Sent::Failed(format!("no route to send by: {other:?}")),
        }
        argv.push("--".into());
        argv.extend(env.rcpts.iter().map(OsString::from));
        // mail-send's own deadlines cover connecting and each reply; the
        // whole child gets room for a few of them before it is killed.
        let limit = limit * 4 + std::time::Duration::from_secs(30);
        match crate::child::run_argv(&argv, &[], msg, limit, 4096) {
            Ok((crate::child::Ended::Exited(st), err)) => {
                let err = String::from_utf8_lossy(&err);
                let said = err
                    .lines()
                    .map(|l| l.strip_prefix("mail-send: ").unwrap_or(l).trim())
                    .find(|l| !l.is_empty())
                    .unwrap_or("")
                    .to_string();
                if st.success() {
                    match said.strip_prefix("queued as ") {
                        Some(rest) => {
                            Sent::Queued(rest.split(':').next().unwrap_or(rest).trim().to_string())
                        }
                        None => Sent::Delivered,
                    }
                } else if said.is_empty() {
                    Sent::Failed(format!("mail-send ended with {st}"))
                } else {
                    Sent::Failed(said)
                }
            }
            Ok((crate::child::Ended::TimedOut, _)) => {
                Sent::Failed("mail-send did not finish in time (killed)".to_string())
            }
            Ok((crate::child::Ended::TooMuch, _)) => {
                Sent::Failed("mail-send said too much (killed)".to_string())
            }
            Err(e) => Sent::Failed(format!("cannot run mail-send: {e}")),
        }
    }
}

/// mail-send beside this program (an installation keeps the tools in one
/// directory), else from PATH.
fn mail_send() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("mail-send"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("mail-send"))
}

/// What one redirect or vacation action will send, or why not.
#[derive(Debug)]
pub enum Plan {
    /// Send this message to this envelope.
    Redirect {
        /// MAIL FROM (the original sender) and RCPT.
        env: Envelope,
    },
    /// Send this reply (from `<>`).
    Vacation(Box<Reply>),
    /// Not carried out, and why.
    Skip(String),
}

/// The Received fields of a message's header.
fn received_count(data: &[u8]) -> usize {
    Message::new(data.to_vec())
        .fields()
        .iter()
        .filter(|f| f.is("Received"))
        .count()
}

/// The plan of every action (None for those that stay in the Maildir).
pub fn plan(
    actions: &[Action],
    data: &[u8],
    envelope_from: Option<&str>,
    envelope_to: Option<&str>,
    now: i64,
    max_received: usize,
    memory: &Memory,
) -> Vec<Option<Plan>> {
    let received = received_count(data);
    let looped = (received > max_received).then(|| {
        format!("the message has {received} Received fields (more than {max_received}): a loop")
    });
    actions
        .iter()
        .map(|a| match &a.kind {
            ActionKind::Redirect { address, .. } => Some(match &looped {
                Some(l) => Plan::Skip(l.clone()),
                None => match sieve::eval::redirect_recipient(address) {
                    None => Plan::Skip(format!("{address:?} is not an address")),
                    Some(to) => Plan::Redirect {
                        env: Envelope {
                            from: envelope_from.unwrap_or("").to_string(),
                            rcpts: vec![to],
                            ..Envelope::default()
                        },
                    },
                },
            }),
            ActionKind::Vacation { reason, options } => Some(match &looped {
                Some(l) => Plan::Skip(l.clone()),
                None if !memory.usable() => Plan::Skip(
                    "the vacation memory cannot be used, so no reply is sent (it could repeat)"
                        .into(),
                ),
                None => match vacation::decide(
                    reason,
                    options,
                    vacation::Context {
                        message: data,
                        sender: envelope_from,
                        recipient: envelope_to,
                        now,
                    },
                    memory as &dyn Seen,
                ) {
                    Ok(r) => Plan::Vacation(Box::new(r)),
                    Err(why) => Plan::Skip(why),
                },
            }),
            _ => None,
        })
        .collect()
}

/// The message a redirect sends: as delivered, without the Return-Path
/// this delivery added (the next hop writes its own).
pub fn redirected(data: &[u8]) -> Vec<u8> {
    let mut m = Message::new(data.to_vec());
    m.replace_at_top(&["Return-Path"], &[]);
    m.into_bytes()
}

/// One line saying what a plan sends, for the dry run and `--expect`.
pub fn plan_text(p: &Plan) -> String {
    match p {
        Plan::Redirect { env } => format!(
            "would send to <{}> from <{}>",
            env.rcpts.join(">, <"),
            env.from
        ),
        Plan::Vacation(r) => format!("would reply to <{}>: {:?}", r.to, r.subject),
        Plan::Skip(why) => format!("not carried out: {why}"),
    }
}

/// The memory for a run: for deliveries the store, locked; for dry runs
/// the store when it exists (nothing is written); for scripts that use
/// neither `duplicate` nor `vacation`, none.
pub fn memory(uses: bool, dry_run: bool, now: i64) -> Result<Memory> {
    let dir = crate::config::state_dir().join("sieve");
    if !uses || (dry_run && !dir.is_dir()) {
        return Ok(Memory::empty());
    }
    Memory::open(&dir, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(address: &str) -> Action {
        Action {
            kind: ActionKind::Redirect {
                address: address.into(),
                copy: false,
            },
            pos: None,
            test: None,
        }
    }

    #[test]
    fn redirects_keep_the_sender_and_refuse_what_is_no_address() {
        let acts = [
            redirect("Far <far@example.org>"),
            redirect("bob"),
            redirect("a b@example.org"),
            redirect("\"Sirius\"@example.net"),
            redirect("\"S[r]us\"@example.net"),
        ];
        let p = plan(
            &acts,
            b"Subject: x\n\nbody\n",
            Some("orig@example.net"),
            None,
            0,
            DEFAULT_MAX_RECEIVED,
            &Memory::empty(),
        );
        match &p[0] {
            Some(Plan::Redirect { env }) => {
                assert_eq!(env.from, "orig@example.net");
                assert_eq!(env.rcpts, vec!["far@example.org".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&p[1], Some(Plan::Skip(w)) if w.contains("not an address")));
        assert!(matches!(&p[2], Some(Plan::Skip(_))));
        // Quotes a local part does not need are dropped; needed ones stay.
        let rcpt = |i: usize| match &p[i] {
            Some(Plan::Redirect { env }) => env.rcpts[0].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(rcpt(3), "Sirius@example.net");
        assert_eq!(rcpt(4), "\"S[r]us\"@example.net");
    }

    #[test]
    fn the_received_limit_stops_redirects() {
        let mut msg = b"Received: x\n".repeat(3);
        msg.extend_from_slice(b"Subject: x\n\nbody\n");
        let acts = [redirect("far@example.org")];
        let run = |max| plan(&acts, &msg, None, None, 0, max, &Memory::empty());
        assert!(matches!(&run(2)[0], Some(Plan::Skip(w)) if w.contains("3 Received fields")));
        assert!(matches!(&run(3)[0], Some(Plan::Redirect { env }) if env.from.is_empty()));
    }

    #[test]
    fn a_redirected_message_loses_only_the_return_path() {
        let m = b"Return-Path: <a@b>\nDelivered-To: me@x\nSubject: s\n\nReturn-Path: body\n";
        assert_eq!(
            redirected(m),
            b"Delivered-To: me@x\nSubject: s\n\nReturn-Path: body\n".to_vec()
        );
    }
}
