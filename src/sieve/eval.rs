//! The tree-walking evaluator: runs a compiled [`Script`] over one message
//! and yields the actions it asks for, each with the script line and the
//! test that led to it. Nothing is carried out here (the caller stores,
//! rejects or reports), so a dry run and a delivery see the same list.
//!
//! Guarantees: every run ends within [`Limits::max_steps`] steps (a step is
//! a command, a test or a character compared), variables are capped at
//! [`MAX_VAR_LEN`] bytes and [`MAX_VARS`] names, actions at
//! [`MAX_ACTIONS`]; past a limit the run stops with a [`RuntimeError`]
//! and, as RFC 5228 section 2.10.6 asks, only the implicit keep remains.
//! Redirects past [`MAX_REDIRECTS`] are dropped and said so in the notes.

use std::collections::HashMap;
use std::sync::Arc;

use super::compile::{
    BodyTransform, Cmd, Command, Comparator, FlagOp, Match, MatchKind, Part, Rel, Script, Test,
    TestKind, Zone,
};
use super::duplicate::{self, Remember, Seen};
use super::mime;
use super::{Pos, RuntimeError};
use crate::calendar::{civil_from_days, days_from_civil};
use crate::message::{self, Field};

/// Longest variable value kept (RFC 5229 allows a limit; Pigeonhole's is 4 KiB).
pub const MAX_VAR_LEN: usize = 4096;
/// Most variables a script may set.
pub const MAX_VARS: usize = 255;
/// Most actions one run may collect.
pub const MAX_ACTIONS: usize = 64;
/// Most redirects carried per message (more are dropped with a note).
pub const MAX_REDIRECTS: usize = 4;
/// The highest match variable kept (`${32}`; RFC 5229 asks for 9 at
/// least).
pub const MAX_MATCH_VALUES: usize = 32;
/// The default step budget.
pub const DEFAULT_STEPS: u64 = 2_000_000;

/// What one run may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// CPU steps before the run is stopped.
    pub max_steps: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_steps: DEFAULT_STEPS,
        }
    }
}

/// The message and its envelope, and the clock.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The message (LF line ends, as stored).
    pub message: &'a [u8],
    /// The envelope sender (`""` for the null sender), when known.
    pub envelope_from: Option<&'a str>,
    /// The envelope recipient, when known.
    pub envelope_to: Option<&'a str>,
    /// Now, seconds since the epoch (pinned for tests and dry runs).
    pub now: i64,
    /// The local zone, minutes east of UTC (`currentdate` and `date`
    /// without `:zone`).
    pub local_offset: i32,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// Store in INBOX.
    Keep {
        /// IMAP flags to store with.
        flags: Vec<String>,
    },
    /// Store in a folder.
    FileInto {
        /// The folder name as the script gave it.
        mailbox: String,
        /// IMAP flags to store with.
        flags: Vec<String>,
        /// `:create`
        create: bool,
        /// `:copy`
        copy: bool,
    },
    /// Store nothing (here).
    Discard,
    /// Refuse the message.
    Reject {
        /// The reason.
        reason: String,
        /// `ereject`
        extended: bool,
    },
    /// Forward.
    Redirect {
        /// Where to.
        address: String,
        /// `:copy`
        copy: bool,
    },
    /// Answer the sender (RFC 5230; see [`super::vacation::decide`]).
    Vacation {
        /// The reason text.
        reason: String,
        /// The tags, variables expanded.
        options: super::vacation::Options,
    },
}

/// One action, with the command and the test that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// What to do.
    pub kind: ActionKind,
    /// The command's position; `None` for the implicit keep.
    pub pos: Option<Pos>,
    /// The conditions that led here (innermost last), as written.
    pub test: Option<String>,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The actions in order; the implicit keep last when it stands.
    pub actions: Vec<Action>,
    /// For each action (same index), the header block editheader left
    /// when the action was taken; `None`: the message as it came. See
    /// [`Outcome::message_for`].
    pub heads: Vec<Option<Arc<[u8]>>>,
    /// The error that stopped the run (then only the implicit keep remains).
    pub error: Option<RuntimeError>,
    /// Things dropped or limited, one line each.
    pub notes: Vec<String>,
    /// What the `duplicate` tests ask to remember once the message is
    /// handled (empty after an error).
    pub remember: Vec<Remember>,
}

enum Flow {
    Go,
    Stop,
    /// `return` (include): leave the current script.
    Return,
}

struct Run<'a> {
    input: Input<'a>,
    fields: Vec<Field<'a>>,
    limits: Limits,
    steps: u64,
    variables: bool,
    vars: HashMap<String, String>,
    match_vars: Vec<String>,
    flags: Vec<String>,
    actions: Vec<Action>,
    cancel_keep: bool,
    why: Vec<String>,
    notes: Vec<String>,
    redirects: usize,
    /// The header block as editheader left it (`None`: unedited).
    head: Option<Arc<[u8]>>,
    /// The message header edits apply to when not `input.message` (the
    /// testsuite sets messages).
    base: Option<Arc<[u8]>>,
    /// For each action, `head` when it was taken.
    heads: Vec<Option<Arc<[u8]>>>,
    /// Where included scripts and folders are, and the environment items.
    env: Env<'a>,
    /// include's state: globals, scripts included, depth.
    inc: include::State,
    /// What the `duplicate` tests ask to remember.
    remember: Vec<Remember>,
    /// Longest variable value kept ([`MAX_VAR_LEN`] unless the testsuite
    /// configures Pigeonhole's `sieve_variables_max_variable_size`).
    max_var_len: usize,
    /// The subaddress separators (any one of them splits user and detail).
    delimiter: String,
    /// The testsuite's state (test builds only).
    #[cfg(test)]
    ts: Option<Box<testsuite::State>>,
}

/// What a run may look at besides the message: the folders for
/// `mailboxexists`, the locations `include` reads and the `environment`
/// items. The default has none of them.
#[derive(Clone, Copy, Default)]
pub struct Env<'a> {
    /// `include :personal` scripts: `NAME.sieve` in this directory.
    pub personal_dir: Option<&'a std::path::Path>,
    /// `include :global` scripts.
    pub global_dir: Option<&'a std::path::Path>,
    /// Whether a folder exists (`mailboxexists`); none: only INBOX does.
    pub mailbox_exists: Option<&'a dyn Fn(&str) -> bool>,
    /// `environment` items (name lower-cased, value).
    pub items: &'a [(&'a str, String)],
    /// What answers the `duplicate` tests (none: nothing was seen).
    pub seen: Option<&'a dyn Seen>,
    /// The subaddress separators, as Dovecot's `recipient_delimiter`: the
    /// first of these characters in a local part ends the user part
    /// (RFC 5233); none: `+`.
    pub recipient_delimiter: Option<&'a str>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("personal_dir", &self.personal_dir)
            .field("global_dir", &self.global_dir)
            .field("items", &self.items)
            .finish()
    }
}

/// Run `script` over `input`, with nothing remembered from earlier
/// messages (every `duplicate` test is false).
pub fn run(script: &Script, input: Input<'_>, limits: Limits) -> Outcome {
    run_env(script, input, limits, Env::default())
}

/// Run `script` over `input`; `seen` answers the `duplicate` tests.
pub fn run_with<'a>(
    script: &Script,
    input: Input<'a>,
    limits: Limits,
    seen: &'a dyn Seen,
) -> Outcome {
    let env = Env {
        seen: Some(seen),
        ..Env::default()
    };
    run_env(script, input, limits, env)
}

/// Run `script` over `input` with `env` (include locations, folders,
/// environment items).
pub fn run_env<'a>(script: &Script, input: Input<'a>, limits: Limits, env: Env<'a>) -> Outcome {
    let mut r = Run::new(input, limits, env, script);
    let res = r.block(&script.commands);
    r.finish(res)
}

impl<'a> Run<'a> {
    fn new(input: Input<'a>, limits: Limits, env: Env<'a>, script: &Script) -> Run<'a> {
        let head_end =
            memchr::memmem::find(input.message, b"\n\n").map_or(input.message.len(), |i| i + 1);
        let head = if input.message.starts_with(b"\n") {
            &[][..]
        } else {
            &input.message[..head_end]
        };
        Run {
            input,
            fields: message::fields(head),
            limits,
            steps: 0,
            variables: script.requires.contains("variables"),
            vars: HashMap::new(),
            match_vars: Vec::new(),
            flags: Vec::new(),
            actions: Vec::new(),
            cancel_keep: false,
            why: Vec::new(),
            notes: Vec::new(),
            redirects: 0,
            head: None,
            base: None,
            heads: Vec::new(),
            env,
            inc: include::State::default(),
            remember: Vec::new(),
            max_var_len: MAX_VAR_LEN,
            delimiter: env.recipient_delimiter.unwrap_or("+").to_string(),
            #[cfg(test)]
            ts: None,
        }
    }

    /// The outcome once the script has run (or stopped with an error).
    fn finish(mut self, res: Result<Flow, RuntimeError>) -> Outcome {
        let mut out = Outcome {
            notes: std::mem::take(&mut self.notes),
            ..Outcome::default()
        };
        match res {
            Ok(_) => {
                out.actions = std::mem::take(&mut self.actions);
                out.heads = std::mem::take(&mut self.heads);
                out.remember = std::mem::take(&mut self.remember);
                if !self.cancel_keep {
                    out.actions.push(Action {
                        kind: ActionKind::Keep {
                            flags: self.flags.clone(),
                        },
                        pos: None,
                        test: None,
                    });
                    out.heads.push(self.head.clone());
                }
            }
            Err(e) => {
                out.error = Some(e);
                out.actions.push(Action {
                    kind: ActionKind::Keep { flags: Vec::new() },
                    pos: None,
                    test: None,
                });
                out.heads.push(None);
            }
        }
        out
    }
}

impl Outcome {
    /// The message action `i` stores or sends: `original` with the header
    /// block editheader left at that action (borrowed when unedited).
    pub fn message_for<'m>(&self, i: usize, original: &'m [u8]) -> std::borrow::Cow<'m, [u8]> {
        match self.heads.get(i) {
            Some(Some(h)) => {
                let body = &original[editheader::body_start(original)..];
                let mut v = Vec::with_capacity(h.len() + body.len());
                v.extend_from_slice(h);
                v.extend_from_slice(body);
                std::borrow::Cow::Owned(v)
            }
            _ => std::borrow::Cow::Borrowed(original),
        }
    }
}

fn rt(pos: Pos, msg: impl Into<String>) -> RuntimeError {
    RuntimeError {
        pos,
        msg: msg.into(),
    }
}

/// Split flag strings (space-separated lists) into flags, without
/// duplicates (compared case-insensitively), order kept.
pub fn flag_list<S: AsRef<str>>(items: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for it in items {
        for f in it.as_ref().split_whitespace() {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(f)) {
                out.push(f.to_string());
            }
        }
    }
    out
}

impl<'a> Run<'a> {
    fn step(&mut self, n: u64, pos: Pos) -> Result<(), RuntimeError> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.limits.max_steps {
            return Err(rt(
                pos,
                format!("step budget of {} exceeded", self.limits.max_steps),
            ));
        }
        Ok(())
    }

    fn block(&mut self, cmds: &[Command]) -> Result<Flow, RuntimeError> {
        for c in cmds {
            self.step(1, c.pos)?;
            match self.command(c)? {
                Flow::Go => {}
                f => return Ok(f),
            }
        }
        Ok(Flow::Go)
    }

    /// `${name}` and `${N}` expanded, when the script requires variables.
    fn expand(&self, s: &str) -> String {
        if !self.variables || !s.contains("${") {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let name = after[..end].to_ascii_lowercase();
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_digit()) {
                let n: usize = name.parse().unwrap_or(usize::MAX);
                out.push_str(self.match_vars.get(n).map_or("", String::as_str));
                rest = &after[end + 1..];
            } else if super::compile::valid_var_name(&name) {
                out.push_str(self.var(&name).unwrap_or(""));
                rest = &after[end + 1..];
            } else if let Some(g) = name.strip_prefix("global.")
                && super::compile::valid_var_name(g)
            {
                // RFC 6609 3.5: the "global" namespace.
                out.push_str(self.inc.globals.get(g).map_or("", String::as_str));
                rest = &after[end + 1..];
            } else {
                // Not a variable reference: left as written.
                out.push_str("${");
                rest = after;
            }
            if out.len() > self.max_var_len * 4 {
                break;
            }
        }
        out.push_str(rest);
        out
    }

    fn expand_all(&self, v: &[String]) -> Vec<String> {
        v.iter().map(|s| self.expand(s)).collect()
    }

    fn why(&self) -> Option<String> {
        (!self.why.is_empty()).then(|| self.why.join(" and "))
    }

    /// Record an action; false when it repeats one already recorded (then,
    /// as in Pigeonhole, it is dropped whole: it cancels no implicit keep).
    fn push(&mut self, pos: Pos, kind: ActionKind) -> Result<bool, RuntimeError> {
        let stores = |k: &ActionKind| {
            matches!(
                k,
                ActionKind::Keep { .. } | ActionKind::FileInto { .. } | ActionKind::Redirect { .. }
            )
        };
        if matches!(kind, ActionKind::Reject { .. }) && self.actions.iter().any(|a| stores(&a.kind))
        {
            return Err(rt(
                pos,
                "reject conflicts with an earlier keep, fileinto or redirect",
            ));
        }
        if stores(&kind)
            && self
                .actions
                .iter()
                .any(|a| matches!(a.kind, ActionKind::Reject { .. }))
        {
            return Err(rt(
                pos,
                "keep, fileinto or redirect conflicts with an earlier reject",
            ));
        }
        // Vacation and reject are incompatible (an answer and a refusal
        // to the same sender; RFC 5429 says so, and Pigeonhole refuses the
        // pair), whichever comes first.
        let reject = |k: &ActionKind| matches!(k, ActionKind::Reject { .. });
        let vacation = |k: &ActionKind| matches!(k, ActionKind::Vacation { .. });
        if (reject(&kind) && self.actions.iter().any(|a| vacation(&a.kind)))
            || (vacation(&kind) && self.actions.iter().any(|a| reject(&a.kind)))
        {
            return Err(rt(pos, "vacation and reject cannot both be used"));
        }
        let target = |k: &ActionKind| match k {
            ActionKind::Keep { .. } => Some("INBOX".to_string()),
            ActionKind::FileInto { mailbox, .. } => {
                Some(if mailbox.eq_ignore_ascii_case("INBOX") {
                    "INBOX".into()
                } else {
                    mailbox.clone()
                })
            }
            ActionKind::Redirect { address, .. } => Some(format!(
                "redirect {}",
                message::bare_address(address).to_ascii_lowercase()
            )),
            _ => None,
        };
        // RFC 5228 2.10.3: a message is stored once per mailbox and sent
        // once per address.
        if let Some(t) = target(&kind)
            && let Some(i) = self
                .actions
                .iter()
                .position(|a| target(&a.kind).as_ref() == Some(&t))
        {
            // RFC 5232 section 5: of a repeated keep or fileinto, the last
            // flag list wins.
            if let (
                ActionKind::Keep { flags: new } | ActionKind::FileInto { flags: new, .. },
                ActionKind::Keep { flags: old } | ActionKind::FileInto { flags: old, .. },
            ) = (&kind, &mut self.actions[i].kind)
            {
                *old = new.clone();
            }
            return Ok(false);
        }
        if self.actions.len() >= MAX_ACTIONS {
            return Err(rt(pos, format!("more than {MAX_ACTIONS} actions")));
        }
        let test = self.why();
        self.actions.push(Action {
            kind,
            pos: Some(pos),
            test,
        });
        self.heads.push(self.head.clone());
        Ok(true)
    }

    fn command(&mut self, c: &Command) -> Result<Flow, RuntimeError> {
        match &c.kind {
            Cmd::Require => {}
            Cmd::If { arms, otherwise } => {
                let mut failed: Vec<&str> = Vec::new();
                for (t, body) in arms {
                    if self.test(t)? {
                        self.why.push(format!("{} (line {})", t.text, t.pos.line));
                        let f = self.block(body);
                        self.why.pop();
                        return f;
                    }
                    failed.push(&t.text);
                }
                if let Some(body) = otherwise {
                    self.why.push(format!(
                        "else of: {} (line {})",
                        failed.join("; "),
                        c.pos.line
                    ));
                    let f = self.block(body);
                    self.why.pop();
                    return f;
                }
            }
            Cmd::Stop => return Ok(Flow::Stop),
            Cmd::Keep { flags } => {
                let flags = match flags {
                    Some(f) => flag_list(&self.expand_all(f)),
                    None => self.flags.clone(),
                };
                self.push(c.pos, ActionKind::Keep { flags })?;
                self.cancel_keep = true;
            }
            Cmd::Discard => {
                self.push(c.pos, ActionKind::Discard)?;
                self.cancel_keep = true;
            }
            Cmd::FileInto {
                mailbox,
                flags,
                copy,
                create,
            } => {
                let flags = match flags {
                    Some(f) => flag_list(&self.expand_all(f)),
                    None => self.flags.clone(),
                };
                let mailbox = self.expand(mailbox);
                // A match variable cut inside a UTF-8 sequence ("?" is one
                // octet) makes no folder name: an error, as in Pigeonhole,
                // so only the implicit keep stands.
                if mailbox.contains('\u{FFFD}') {
                    return Err(rt(
                        c.pos,
                        format!("fileinto: invalid folder name {mailbox:?} (not UTF-8)"),
                    ));
                }
                if self.push(
                    c.pos,
                    ActionKind::FileInto {
                        mailbox,
                        flags,
                        create: *create,
                        copy: *copy,
                    },
                )? && !copy
                {
                    self.cancel_keep = true;
                }
            }
            Cmd::Redirect { address, copy } => {
                let address = self.expand(address);
                if self.redirects >= MAX_REDIRECTS {
                    self.notes.push(format!(
                        "line {}: redirect to {address} dropped: more than {MAX_REDIRECTS} redirects",
                        c.pos.line
                    ));
                } else {
                    self.redirects += 1;
                    if self.push(
                        c.pos,
                        ActionKind::Redirect {
                            address,
                            copy: *copy,
                        },
                    )? && !copy
                    {
                        self.cancel_keep = true;
                    }
                }
            }
            Cmd::Reject { reason, extended } => {
                let reason = self.expand(reason);
                self.push(
                    c.pos,
                    ActionKind::Reject {
                        reason,
                        extended: *extended,
                    },
                )?;
                self.cancel_keep = true;
            }
            Cmd::Vacation { reason, options } => {
                // RFC 5230 4.7 and Pigeonhole: one vacation per run.
                if self
                    .actions
                    .iter()
                    .any(|a| matches!(a.kind, ActionKind::Vacation { .. }))
                {
                    return Err(rt(c.pos, "duplicate vacation action not allowed"));
                }
                let raw_reason = reason;
                let reason = self.expand(reason);
                let options = super::vacation::Options {
                    days: options.days,
                    subject: options.subject.as_ref().map(|s| self.expand(s)),
                    from: options.from.as_ref().map(|s| self.expand(s)),
                    addresses: self.expand_all(&options.addresses),
                    mime: options.mime,
                    handle: options.handle.as_ref().map(|s| self.expand(s)),
                    auto_handle: options.handle.is_none().then(|| options.handle(raw_reason)),
                };
                self.push(c.pos, ActionKind::Vacation { reason, options })?;
            }
            Cmd::Flags { op, var, flags } => {
                let given = flag_list(&self.expand_all(flags));
                let current = match var {
                    Some(v) => flag_list(&[self.var(v).unwrap_or_default().to_string()]),
                    None => self.flags.clone(),
                };
                let new = match op {
                    FlagOp::Set => given,
                    FlagOp::Add => {
                        let mut all = current;
                        all.extend(given);
                        flag_list(&all)
                    }
                    FlagOp::Remove => current
                        .into_iter()
                        .filter(|f| !given.iter().any(|g| g.eq_ignore_ascii_case(f)))
                        .collect(),
                };
                match var {
                    Some(v) => self.set_var(c.pos, v, new.join(" "))?,
                    None => self.flags = new,
                }
            }
            Cmd::AddHeader { .. } | Cmd::DeleteHeader { .. } => self.editheader(c)?,
            Cmd::Include { .. } => return self.include(c),
            Cmd::Return => return Ok(Flow::Return),
            Cmd::Global { names } => self.declare_globals(c.pos, names)?,
            #[cfg(test)]
            Cmd::TestBlock { .. } | Cmd::Testsuite { .. } => return self.ts_command(c),
            Cmd::Set { mods, name, value } => {
                let mut v = self.expand(value);
                for m in mods {
                    v = match m.as_str() {
                        "lower" => v.to_ascii_lowercase(),
                        "upper" => v.to_ascii_uppercase(),
                        "lowerfirst" => first_case(&v, false),
                        "upperfirst" => first_case(&v, true),
                        "quotewildcard" => quote_wildcard(&v, self.max_var_len),
                        _ => v.chars().count().to_string(),
                    };
                }
                self.set_var(c.pos, name, v)?;
            }
        }
        Ok(Flow::Go)
    }

    fn set_var(&mut self, pos: Pos, name: &str, mut v: String) -> Result<(), RuntimeError> {
        if self.inc.declared.contains(name) {
            return self.set_global(pos, name, v);
        }
        if let Some(g) = name.strip_prefix("global.") {
            return self.set_global(pos, g, v);
        }
        if !self.vars.contains_key(name) && self.vars.len() >= MAX_VARS {
            return Err(rt(pos, format!("more than {MAX_VARS} variables")));
        }
        if v.len() > self.max_var_len {
            let mut cut = self.max_var_len;
            while !v.is_char_boundary(cut) {
                cut -= 1;
            }
            v.truncate(cut);
        }
        self.step(v.len() as u64, pos)?;
        self.vars.insert(name.to_string(), v);
        Ok(())
    }

    /// The decoded values of header `name`, the work charged to the step
    /// budget (a scan of every field and the bytes decoded), so a message
    /// with many fields cannot make a long script run unbounded.
    fn header(&mut self, name: &str, pos: Pos) -> Result<Vec<String>, RuntimeError> {
        self.step(self.fields_cost(), pos)?;
        let (n, values) = {
            let fields = self.cur_fields();
            (fields.len(), mime::header_values(&fields, name))
        };
        self.step(n as u64, pos)?;
        self.step(values.iter().map(|v| v.len() as u64).sum(), pos)?;
        Ok(values)
    }

    fn test(&mut self, t: &Test) -> Result<bool, RuntimeError> {
        self.step(1, t.pos)?;
        Ok(match &t.kind {
            TestKind::True => true,
            TestKind::False => false,
            TestKind::Not(inner) => !self.test(inner)?,
            TestKind::AllOf(ts) => {
                for x in ts {
                    if !self.test(x)? {
                        return Ok(false);
                    }
                }
                true
            }
            TestKind::AnyOf(ts) => {
                for x in ts {
                    if self.test(x)? {
                        return Ok(true);
                    }
                }
                false
            }
            TestKind::Exists(names) => {
                let names = self.expand_all(names);
                self.step(self.fields_cost(), t.pos)?;
                let (n, all) = {
                    let fields = self.cur_fields();
                    let all = names.iter().all(|n| fields.iter().any(|f| f.is(n)));
                    (fields.len(), all)
                };
                self.step((names.len() * n) as u64, t.pos)?;
                all
            }
            TestKind::Size { over, limit } => {
                let size = self.wire_len() as u64;
                if *over { size > *limit } else { size < *limit }
            }
            TestKind::Header { m, names, keys } => {
                let mut values = Vec::new();
                for n in self.expand_all(names) {
                    values.extend(self.header(&n, t.pos)?);
                }
                self.matches(t.pos, *m, &values, keys)?
            }
            TestKind::Address {
                m,
                part,
                names,
                keys,
                envelope,
            } => {
                let mut addrs: Vec<String> = Vec::new();
                for n in self.expand_all(names) {
                    if *envelope {
                        // A path that does not parse matches nothing.
                        if let Some(a) = self.envelope_part(&n).and_then(|a| envelope_path(&a)) {
                            addrs.push(a);
                        }
                    } else {
                        for v in self.header(&n, t.pos)? {
                            addrs.extend(mime::addresses(&v));
                        }
                    }
                }
                let values: Vec<String> = addrs
                    .iter()
                    .filter_map(|a| {
                        // RFC 5228 5.4: the null reverse-path is the empty
                        // string, whatever the address part.
                        if *envelope && a.is_empty() {
                            Some(String::new())
                        } else if *envelope && !valid_address(a) {
                            // An envelope path that is not an address
                            // matches nothing, not even as :all.
                            None
                        } else {
                            address_part(a, *part, &self.delimiter)
                        }
                    })
                    .collect();
                self.matches(t.pos, *m, &values, keys)?
            }
            TestKind::Body { m, transform, keys } => {
                self.step(self.msg_len() as u64, t.pos)?;
                let msg = self.whole();
                let values = match transform {
                    // RFC 5173: a header without the empty line after it
                    // has no body, and every body test is false, even for
                    // "".
                    BodyTransform::Raw
                        if !msg.starts_with(b"\n")
                            && memchr::memmem::find(&msg, b"\n\n").is_none() =>
                    {
                        Vec::new()
                    }
                    BodyTransform::Raw => {
                        vec![String::from_utf8_lossy(mime::raw_body(&msg)).into_owned()]
                    }
                    BodyTransform::Text => mime::body_text(&msg),
                    BodyTransform::Content(types) => {
                        mime::body_parts(&msg, &self.expand_all(types))
                    }
                };
                // The body in its canonical form, CRLF line ends (RFC 5173
                // and how the message travels and IMAP shows it), the form
                // a `text:` key has; the store keeps LF.
                let values: Vec<String> = values.iter().map(|v| crlf(v)).collect();
                let size: u64 = values.iter().map(|v| v.len() as u64).sum();
                self.step(size, t.pos)?;
                // The body test sets no match variables (as in Pigeonhole:
                // a whole body is no value to keep).
                let kept = std::mem::take(&mut self.match_vars);
                let hit = self.matches(t.pos, *m, &values, keys);
                self.match_vars = kept;
                hit?
            }
            TestKind::Date {
                m,
                zone,
                header,
                part,
                keys,
            } => {
                let mut values = Vec::new();
                match header {
                    Some(h) => {
                        let h = self.expand(h);
                        // RFC 5260: the first such header; a value that is
                        // not a date makes the test false.
                        if let Some(v) = self.header(&h, t.pos)?.into_iter().next() {
                            let v = if h.eq_ignore_ascii_case("received") {
                                v.rsplit(';').next().unwrap_or("").to_string()
                            } else {
                                v
                            };
                            if let Some(d) = crate::trace::date::parse(&v) {
                                let off = match zone {
                                    Zone::Local => self.input.local_offset,
                                    Zone::Original => d.offset_minutes.unwrap_or(0),
                                    Zone::Fixed(z) => *z,
                                };
                                values.push(date_part(d.unix, off, part));
                            }
                        }
                    }
                    None => {
                        let off = match zone {
                            Zone::Fixed(z) => *z,
                            _ => self.input.local_offset,
                        };
                        values.push(date_part(self.input.now, off, part));
                    }
                }
                self.matches(t.pos, *m, &values, keys)?
            }
            TestKind::HasFlag { m, vars, keys } => {
                let values = if vars.is_empty() {
                    self.flags.clone()
                } else {
                    let all: Vec<String> = vars
                        .iter()
                        .map(|v| self.var(v).unwrap_or_default().to_string())
                        .collect();
                    flag_list(&all)
                };
                if matches!(m.kind, MatchKind::Count(_)) {
                    self.matches(t.pos, *m, &values, keys)?
                } else {
                    // RFC 5232 3.2: a key is a list of flags too ("b A").
                    let keys = flag_list(&self.expand_all(keys));
                    self.matches(t.pos, *m, &values, &keys)?
                }
            }
            TestKind::Duplicate(d) => {
                // RFC 7352: the id is :uniqueid, else the first field named
                // by :header (Message-ID by default); no id, no duplicate.
                let id = match &d.uniqueid {
                    Some(u) => Some(self.expand(u)),
                    None => {
                        let h = d
                            .header
                            .as_ref()
                            .map_or_else(|| "Message-ID".to_string(), |h| self.expand(h));
                        self.header(&h, t.pos)?.into_iter().next()
                    }
                };
                match id {
                    None => false,
                    Some(id) => {
                        let handle = d.handle.as_ref().map(|h| self.expand(h));
                        let key = duplicate::duplicate_key(handle.as_deref().unwrap_or(""), &id);
                        let dup = self.env.seen.is_some_and(|s| s.seen(&key, self.input.now));
                        if !self.remember.iter().any(|r| r.key == key) {
                            self.remember.push(Remember {
                                key,
                                seconds: d
                                    .seconds
                                    .unwrap_or(duplicate::DEFAULT_SECONDS)
                                    .min(duplicate::MAX_SECONDS),
                                refresh: d.last,
                            });
                        }
                        dup
                    }
                }
            }
            TestKind::MailboxExists(names) => {
                let names = self.expand_all(names);
                self.step(names.len() as u64, t.pos)?;
                names.iter().all(|n| self.mailbox_exists(n))
            }
            TestKind::Environment { m, name, keys } => {
                let values: Vec<String> = self
                    .env
                    .items
                    .iter()
                    .filter(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
                    .collect();
                // RFC 5183 4: an unknown item fails whatever the match.
                !values.is_empty() && self.matches(t.pos, *m, &values, keys)?
            }
            #[cfg(test)]
            TestKind::Testsuite { .. } => self.ts_test(t)?,
            TestKind::Str { m, sources, keys } => {
                let values = self.expand_all(sources);
                // RFC 5229 5: for :count, empty strings are not counted.
                let values = if matches!(m.kind, MatchKind::Count(_)) {
                    values.into_iter().filter(|v| !v.is_empty()).collect()
                } else {
                    values
                };
                self.matches(t.pos, *m, &values, keys)?
            }
        })
    }

    /// Compare every value with every key; `:matches` success sets the
    /// match variables.
    fn matches(
        &mut self,
        pos: Pos,
        m: Match,
        values: &[String],
        keys: &[String],
    ) -> Result<bool, RuntimeError> {
        let keys = self.expand_all(keys);
        match m.kind {
            MatchKind::Count(rel) => {
                let n = values.len().to_string();
                Ok(keys.iter().any(|k| relate(order(m.cmp, &n, k), rel)))
            }
            MatchKind::Value(rel) => {
                for v in values {
                    for k in &keys {
                        self.step((v.len() + k.len()) as u64, pos)?;
                        if relate(order(m.cmp, v, k), rel) {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            MatchKind::Is => {
                for v in values {
                    for k in &keys {
                        self.step((v.len() + k.len()) as u64, pos)?;
                        if order(m.cmp, v, k) == std::cmp::Ordering::Equal {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            MatchKind::Contains => {
                for v in values {
                    for k in &keys {
                        self.step((v.len() + k.len()) as u64, pos)?;
                        let hit = match m.cmp {
                            Comparator::Octet => v.contains(k.as_str()),
                            _ => v.to_ascii_lowercase().contains(&k.to_ascii_lowercase()),
                        };
                        if hit {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            MatchKind::Matches => {
                for v in values {
                    // RFC 5228 2.7.1 with RFC 4790: both comparators work
                    // on octets, so "?" is one octet (as in Pigeonhole).
                    let chars = v.as_bytes();
                    for k in &keys {
                        let pat = pattern(k);
                        let budget = self.limits.max_steps.saturating_sub(self.steps);
                        let (caps, used) = glob(&pat, chars, m.cmp == Comparator::Octet, budget);
                        self.step(used, pos)?;
                        if let Some(caps) = caps {
                            if self.variables {
                                let mut mv = vec![v.clone()];
                                mv.extend(caps.iter().map(|&(a, b)| {
                                    String::from_utf8_lossy(&chars[a..b]).into_owned()
                                }));
                                // ${0} to ${32}, as Pigeonhole keeps.
                                mv.truncate(MAX_MATCH_VALUES + 1);
                                self.match_vars = mv;
                            }
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
        }
    }
}

fn first_case(s: &str, upper: bool) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => {
            // ASCII only, as the comparators (and Pigeonhole) do.
            let f = if upper {
                f.to_ascii_uppercase()
            } else {
                f.to_ascii_lowercase()
            };
            format!("{f}{}", c.as_str())
        }
        None => String::new(),
    }
}

/// An address that parsed: no list or comment syntax left in it (a quoted
/// local part may stay), and when
/// it has an `@`, something on both sides.
fn valid_address(a: &str) -> bool {
    !a.contains([' ', ':', ';', ',', '<', '>', '(', ')'])
        && match a.rsplit_once('@') {
            Some((l, d)) => !l.is_empty() && !d.is_empty(),
            None => true,
        }
}

/// The envelope recipient a `redirect` to `address` sends to: the
/// address of a `Name <addr>` or a bare one, its local part unquoted
/// when the quotes are not needed (`"Sirius"@example.net` is
/// `Sirius@example.net`, RFC 5321 4.1.2 asks senders to prefer the
/// unquoted form; Pigeonhole does the same); `None` when it is not an
/// address with a domain. The delivery and the testsuite both take the
/// recipient from here.
pub fn redirect_recipient(address: &str) -> Option<String> {
    let to = message::bare_address(address);
    if !to.contains('@')
        || to.starts_with('@')
        || to.ends_with('@')
        || to.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let (local, domain) = to.rsplit_once('@')?;
    if let Some(inner) = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .filter(|i| !i.contains('\\'))
        && is_dot_atom(inner)
    {
        return Some(format!("{inner}@{domain}"));
    }
    Some(to)
}

/// RFC 5322 dot-atom text: atext runs separated by single dots.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        })
}

/// The address of an envelope path (RFC 5321 4.1.2): `<` and `>` around
/// it or neither, a source route dropped, one `@` outside a quoted local
/// part; `None` when it is not one. The null path is `""`.
fn envelope_path(s: &str) -> Option<String> {
    let s = s.trim();
    let inner = match s.strip_prefix('<') {
        Some(r) => r.strip_suffix('>')?,
        None => s,
    };
    if inner.contains(['<', '>']) {
        return None;
    }
    let inner = if inner.starts_with('@') {
        let (route, rest) = inner.split_once(':')?;
        // A-d-l: "@" Domain, separated by ",".
        let ok = route
            .split(',')
            .all(|d| d.strip_prefix('@').is_some_and(is_domain));
        if !ok {
            return None;
        }
        rest
    } else {
        inner
    };
    if let Some((local, domain)) = inner.rsplit_once('@')
        && (local.is_empty()
            || !is_domain(domain)
            || (local.contains('@') && !(local.starts_with('"') && local.ends_with('"'))))
    {
        return None;
    }
    Some(inner.to_string())
}

/// An RFC 5321 Domain: dot-separated labels of letters, digits and `-`
/// (non-ASCII allowed, RFC 6531; `_` too, seen in the wild and accepted by
/// Pigeonhole), or an address literal in `[...]`.
fn is_domain(d: &str) -> bool {
    if d.starts_with('[') && d.ends_with(']') && d.len() > 2 {
        return true;
    }
    !d.is_empty()
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        })
}

/// `s` with each bare LF made CRLF.
fn crlf(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 16);
    let mut prev = '\0';
    for c in s.chars() {
        if c == '\n' && prev != '\r' {
            out.push('\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// `:quotewildcard` (RFC 5229 4.1): `\\`, `*` and `?` get a backslash.
/// Past `max` bytes the value stops at the last whole character, never
/// between a backslash and what it quotes (the later cut to `max` would
/// leave a lone `\\`), as Pigeonhole does.
fn quote_wildcard(v: &str, max: usize) -> String {
    let mut out = String::with_capacity(v.len().min(max));
    for ch in v.chars() {
        let quoted = matches!(ch, '\\' | '*' | '?');
        if out.len() + ch.len_utf8() + usize::from(quoted) > max {
            break;
        }
        if quoted {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn address_part(a: &str, part: Part, delimiter: &str) -> Option<String> {
    // A value that did not parse as an address (kept whole, as Pigeonhole
    // does) matches as :all only: it has no local part or domain.
    if part != Part::All && !valid_address(a) {
        return None;
    }
    let (local, domain) = mime::split_address(a);
    match part {
        Part::All => Some(a.to_string()),
        Part::Local => Some(local.to_string()),
        Part::Domain => domain.map(str::to_string),
        // RFC 5233: the first separator splits; the detail keeps any
        // further ones ("a+-b" with "+-" has the detail "-b", as in
        // Pigeonhole).
        Part::User => Some(
            local
                .split_once(|c| delimiter.contains(c))
                .map_or(local, |(u, _)| u)
                .to_string(),
        ),
        Part::Detail => local
            .split_once(|c| delimiter.contains(c))
            .map(|(_, d)| d.to_string()),
    }
}

/// The leading digits of `s` as a number for i;ascii-numeric; `None`
/// (positive infinity) when there are none.
fn numeric(s: &str) -> Option<u128> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 38 {
        return Some(u128::MAX);
    }
    Some(trimmed.parse().unwrap_or(0))
}

/// The comparator's order of two strings.
fn order(cmp: Comparator, a: &str, b: &str) -> std::cmp::Ordering {
    match cmp {
        Comparator::Octet => a.as_bytes().cmp(b.as_bytes()),
        Comparator::Casemap => a
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase())),
        Comparator::Numeric => match (numeric(a), numeric(b)) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) => x.cmp(&y),
        },
    }
}

fn relate(o: std::cmp::Ordering, rel: Rel) -> bool {
    use std::cmp::Ordering::*;
    match rel {
        Rel::Gt => o == Greater,
        Rel::Ge => o != Less,
        Rel::Lt => o == Less,
        Rel::Le => o != Greater,
        Rel::Eq => o == Equal,
        Rel::Ne => o != Equal,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pat {
    Lit(u8),
    One,
    Star,
}

/// A `:matches` key: `*`, `?`, and `\` quoting the next character.
fn pattern(k: &str) -> Vec<Pat> {
    let mut out = Vec::new();
    let mut c = k.bytes();
    while let Some(ch) = c.next() {
        out.push(match ch {
            b'*' => Pat::Star,
            b'?' => Pat::One,
            b'\\' => match c.next() {
                Some(n) => Pat::Lit(n),
                None => Pat::Lit(b'\\'),
            },
            other => Pat::Lit(other),
        });
    }
    out
}

/// Glob match with one backtrack point (linear space, O(n·m) time at
/// worst, counted in steps). Returns the wildcards' spans when it matches
/// (earlier stars as short as possible) and the steps used; gives up
/// (no match) once `budget` steps are spent.
fn glob(pat: &[Pat], s: &[u8], octet: bool, budget: u64) -> (Option<Vec<(usize, usize)>>, u64) {
    let eq = |a: u8, b: u8| {
        if octet {
            a == b
        } else {
            a.eq_ignore_ascii_case(&b)
        }
    };
    let wild: Vec<usize> = pat
        .iter()
        .scan(0usize, |n, p| {
            let i = *n;
            if matches!(p, Pat::One | Pat::Star) {
                *n += 1;
            }
            Some(i)
        })
        .collect();
    let nwild = pat
        .iter()
        .filter(|p| matches!(p, Pat::One | Pat::Star))
        .count();
    let mut caps = vec![(0usize, 0usize); nwild];
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize, usize)> = None; // pattern index, span start, text resume
    let mut steps = 0u64;
    while i < s.len() {
        steps += 1;
        if steps > budget {
            return (None, steps);
        }
        match pat.get(p) {
            Some(Pat::Star) => {
                star = Some((p, i, i));
                caps[wild[p]] = (i, i);
                p += 1;
                continue;
            }
            Some(Pat::One) => {
                caps[wild[p]] = (i, i + 1);
                p += 1;
                i += 1;
                continue;
            }
            Some(Pat::Lit(c)) if eq(*c, s[i]) => {
                p += 1;
                i += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, start, resume)) => {
                star = Some((sp, start, resume + 1));
                caps[wild[sp]] = (start, resume + 1);
                p = sp + 1;
                i = resume + 1;
            }
            None => return (None, steps),
        }
    }
    while let Some(Pat::Star) = pat.get(p) {
        caps[wild[p]] = (i, i);
        p += 1;
    }
    if p == pat.len() {
        (Some(caps), steps)
    } else {
        (None, steps)
    }
}

/// One RFC 5260 date part of the instant `unix` seen in zone `off`.
fn date_part(unix: i64, off: i32, part: &str) -> String {
    // Clamped to years 0..9999 so no input can overflow the calendar maths.
    let t = unix
        .clamp(-62_167_219_200, 253_402_300_799)
        .saturating_add(i64::from(off) * 60);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let sign = if off < 0 { '-' } else { '+' };
    let zone = format!(
        "{sign}{:02}{:02}",
        off.unsigned_abs() / 60,
        off.unsigned_abs() % 60
    );
    match part {
        "year" => format!("{y:04}"),
        "month" => format!("{m:02}"),
        "day" => format!("{d:02}"),
        "date" => format!("{y:04}-{m:02}-{d:02}"),
        "julian" => (days_from_civil(y, m, d) - days_from_civil(1858, 11, 17)).to_string(),
        "hour" => format!("{hh:02}"),
        "minute" => format!("{mm:02}"),
        "second" => format!("{ss:02}"),
        "time" => format!("{hh:02}:{mm:02}:{ss:02}"),
        "iso8601" => format!(
            "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{sign}{:02}:{:02}",
            off.unsigned_abs() / 60,
            off.unsigned_abs() % 60
        ),
        "std11" => {
            const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            format!(
                "{}, {d:02} {} {y:04} {hh:02}:{mm:02}:{ss:02} {zone}",
                DAYS[days.rem_euclid(7) as usize],
                MONTHS[(m as usize).saturating_sub(1).min(11)]
            )
        }
        "zone" => zone,
        // weekday: 0 is Sunday; 1970-01-01 was a Thursday.
        _ => ((days + 4).rem_euclid(7)).to_string(),
    }
}

#[path = "editheader.rs"]
pub(super) mod editheader;
#[path = "include.rs"]
pub(super) mod include;
#[cfg(test)]
#[path = "testsuite.rs"]
pub(super) mod testsuite;
