//! Test builds only: the `vnd.dovecot.testsuite` commands of Pigeonhole's
//! conformance suite (`test`, `test_set`, `test_fail`, `test_message`,
//! `test_result_action`, `test_result_execute`, `test_result_reset`,
//! `test_script_compile`, `test_script_run`, `test_error`,
//! `test_mailbox_create`, `test_config_set`/`unset`/`reload`, and
//! `test_binary_save`/`load` as no-ops), written from the suite's own
//! use of them, so its `.svtest` files (tests/fixtures/mail-deliver/svtest,
//! LGPL-2.1, see its NOTICE) run on our interpreter; [`run_file`] gives one
//! file's verdict. The mail store and the outgoing mail are in memory;
//! what goes out is built by the code the delivery uses (the vacation
//! reply by `vacation::decide`, a redirect's recipient by
//! `eval::redirect_recipient`), except the rejection notice, which the
//! delivery leaves to the MTA. `test_set "message"` takes the envelope
//! from the message as Pigeonhole's testsuite does.
//!
//! Guarantee: a file's verdict is `Passed` only when every `test` block ran
//! to its end without `test_fail` and nothing outside them failed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::compile::{Cmd, Command, Comparator, Match, MatchKind, Rel, Test, TestKind};
use super::super::parser::RawArg;
use super::super::{RuntimeError, Script, compile_script, compile_script_all};
use super::{ActionKind, Env, Flow, Input, Limits, Run, rt};

/// A file's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every test passed.
    Passed,
    /// The file requires an extension we do not support (named).
    NotApplicable(String),
    /// Why it failed: the first failing test and its reason.
    Failed(String),
}

/// A stored message and its flags.
type Stored = (Vec<u8>, Vec<String>);

/// The testsuite's state in a run.
pub(in crate::sieve) struct State {
    dir: PathBuf,
    from: Option<String>,
    to: Option<String>,
    auth: Option<String>,
    compiled: Option<Script>,
    errors: Vec<String>,
    folders: BTreeMap<String, Vec<Stored>>,
    /// What the last result execution sent: message, envelope from, to.
    smtp: Vec<(Vec<u8>, Option<String>, String)>,
    implicit_head: Option<Option<Arc<[u8]>>>,
    config: HashMap<String, String>,
    current: Option<String>,
    /// An extension a loaded script required that we do not support.
    unsupported: Option<String>,
    /// Each test's name and failure.
    pub results: Vec<(String, Option<String>)>,
}

/// The message a file starts with.
const DEFAULT_MSG: &[u8] =
    b"From: sender@example.com\nTo: recipient@example.com\nSubject: Frop!\n\nFrop!\n";

const FAIL: &str = "\u{1}test_fail: ";

/// A folder's name in the in-memory store: INBOX (and the INBOX of a
/// hierarchical name, "Inbox.Junk") in any case is INBOX, as in Dovecot.
fn folder_key(n: &str) -> String {
    if n.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else if n.len() > 6 && n.is_char_boundary(6) && n[..6].eq_ignore_ascii_case("INBOX.") {
        format!("INBOX.{}", &n[6..])
    } else {
        n.to_string()
    }
}

impl State {
    pub(super) fn envelope(&self, part: &str) -> Option<String> {
        match part.to_ascii_lowercase().as_str() {
            "from" => self.from.clone(),
            "to" => self.to.clone(),
            "auth" => self.auth.clone(),
            _ => None,
        }
    }
    pub(super) fn mailbox_exists(&self, name: &str) -> bool {
        self.folders.contains_key(&folder_key(name))
    }
    /// Whether the configured lists forbid adding (`add`) or deleting
    /// `name`: `sieve_editheader_protected` both, `_forbid_add` and
    /// `_forbid_delete` one each.
    pub(super) fn protected(&self, name: &str, add: bool) -> bool {
        let listed = |k: &str| {
            self.config
                .get(k)
                .is_some_and(|l| l.split_whitespace().any(|p| p.eq_ignore_ascii_case(name)))
        };
        let one = if add {
            "sieve_editheader_forbid_add"
        } else {
            "sieve_editheader_forbid_delete"
        };
        // Subject cannot be protected: RFC 5293 wants it editable (and
        // Pigeonhole ignores it in these settings).
        !name.eq_ignore_ascii_case("subject")
            && (listed("sieve_editheader_protected") || listed(one))
    }
    pub(super) fn include_dir(&self, global: bool) -> PathBuf {
        self.dir.join(if global {
            "included-global"
        } else {
            "included"
        })
    }
}

/// The CRLF line ends of a `text:` string as the LF the store keeps.
fn lf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").into_bytes()
}

/// Run one `.svtest` file.
pub fn run_file(path: &Path) -> Verdict {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Verdict::Failed(format!("unreadable: {e}")),
    };
    let script = match compile_script(&text) {
        Ok(s) => s,
        Err(e) => {
            if let Some(ext) = e.msg.strip_prefix("unsupported extension ") {
                return Verdict::NotApplicable(ext.trim_matches('"').to_string());
            }
            return Verdict::Failed(format!("does not compile: {e}"));
        }
    };
    let input = Input {
        message: DEFAULT_MSG,
        envelope_from: None,
        envelope_to: None,
        now: 1_767_225_600,
        local_offset: 0,
    };
    let limits = Limits {
        max_steps: 200_000_000,
    };
    let items = [
        ("name", "postline mail-deliver".to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("location", "MDA".to_string()),
        ("phase", "during".to_string()),
    ];
    let env = Env {
        items: &items,
        ..Env::default()
    };
    let mut r = Run::new(input, limits, env, &script);
    let mut folders = BTreeMap::new();
    folders.insert("INBOX".to_string(), Vec::new());
    r.ts = Some(Box::new(State {
        dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        from: Some("sender@example.com".into()),
        to: Some("recipient@example.com".into()),
        auth: None,
        compiled: None,
        errors: Vec::new(),
        folders,
        smtp: Vec::new(),
        implicit_head: None,
        config: HashMap::new(),
        current: None,
        unsupported: None,
        results: Vec::new(),
    }));
    let res = r.block(&script.commands);
    let (results, unsupported) =
        r.ts.take()
            .map(|t| (t.results, t.unsupported))
            .unwrap_or_default();
    let failed = res.is_err() || results.iter().any(|(_, f)| f.is_some());
    // A file where a script it loads needs an extension we do not have
    // tests that extension, not us: even when it passes (an `errors` file
    // counting the errors that extension's misuse makes could pass on
    // our "unsupported" errors by chance).
    if let (true, Some(ext)) = (failed || unsupported.is_some(), unsupported) {
        return Verdict::NotApplicable(ext);
    }
    if let Some((name, Some(why))) = results.iter().find(|(_, f)| f.is_some()) {
        return Verdict::Failed(format!("test {name:?}: {why}"));
    }
    if let Err(e) = res {
        let m = e.msg.strip_prefix(FAIL).unwrap_or(&e.msg);
        return Verdict::Failed(format!("line {}: {m}", e.pos.line));
    }
    Verdict::Passed
}

/// Arguments of a testsuite command: tags with their values, then
/// positional ones.
struct Args {
    tags: HashMap<String, Option<RawArg>>,
    pos: Vec<RawArg>,
}

fn args(a: &[RawArg]) -> Args {
    let takes = |t: &str| {
        matches!(
            t,
            "count" | "value" | "comparator" | "index" | "folder" | "extension"
        )
    };
    let mut out = Args {
        tags: HashMap::new(),
        pos: Vec::new(),
    };
    let mut i = 0;
    while i < a.len() {
        match &a[i] {
            RawArg::Tag(t, _) => {
                let v = if takes(t) {
                    i += 1;
                    a.get(i).cloned()
                } else {
                    None
                };
                out.tags.insert(t.clone(), v);
            }
            other => out.pos.push(other.clone()),
        }
        i += 1;
    }
    out
}

impl Args {
    fn tag_str(&self, t: &str) -> Option<String> {
        match self.tags.get(t)? {
            Some(RawArg::Str(s, _)) => Some(s.clone()),
            Some(RawArg::List(l, _)) => l.first().cloned(),
            _ => None,
        }
    }
    fn tag_num(&self, t: &str) -> Option<u64> {
        match self.tags.get(t)? {
            Some(RawArg::Num(n, _)) => Some(*n),
            _ => None,
        }
    }
    fn matcher(&self) -> Match {
        let rel = |s: Option<String>| match s.unwrap_or_default().to_ascii_lowercase().as_str() {
            "gt" => Rel::Gt,
            "ge" => Rel::Ge,
            "lt" => Rel::Lt,
            "le" => Rel::Le,
            "ne" => Rel::Ne,
            _ => Rel::Eq,
        };
        let kind = if self.tags.contains_key("count") {
            MatchKind::Count(rel(self.tag_str("count")))
        } else if self.tags.contains_key("value") {
            MatchKind::Value(rel(self.tag_str("value")))
        } else if self.tags.contains_key("contains") {
            MatchKind::Contains
        } else if self.tags.contains_key("matches") {
            MatchKind::Matches
        } else {
            MatchKind::Is
        };
        let cmp = match self.tag_str("comparator").as_deref() {
            Some("i;octet") => Comparator::Octet,
            Some("i;ascii-numeric") => Comparator::Numeric,
            _ => Comparator::Casemap,
        };
        Match { kind, cmp }
    }
}

fn action_name(k: &ActionKind) -> &'static str {
    match k {
        ActionKind::Keep { .. } => "keep",
        ActionKind::FileInto { .. } => "store",
        ActionKind::Discard => "discard",
        ActionKind::Reject { .. } => "reject",
        ActionKind::Redirect { .. } => "redirect",
        ActionKind::Vacation { .. } => "vacation",
    }
}

impl Run<'_> {
    fn ts(&mut self) -> &mut State {
        self.ts.get_or_insert_with(|| {
            Box::new(State {
                dir: PathBuf::from("."),
                from: None,
                to: None,
                auth: None,
                compiled: None,
                errors: Vec::new(),
                folders: BTreeMap::new(),
                smtp: Vec::new(),
                implicit_head: None,
                config: HashMap::new(),
                current: None,
                unsupported: None,
                results: Vec::new(),
            })
        })
    }

    /// Positional argument `i` as a string, variables expanded.
    fn ts_str(&self, a: &Args, i: usize) -> String {
        match a.pos.get(i) {
            Some(RawArg::Str(s, _)) => self.expand(s),
            Some(RawArg::List(l, _)) => l.first().map(|s| self.expand(s)).unwrap_or_default(),
            Some(RawArg::Num(n, _)) => n.to_string(),
            _ => String::new(),
        }
    }

    fn ts_list(&self, a: &Args, i: usize) -> Vec<String> {
        match a.pos.get(i) {
            Some(RawArg::Str(s, _)) => vec![s.clone()],
            Some(RawArg::List(l, _)) => l.clone(),
            Some(RawArg::Num(n, _)) => vec![n.to_string()],
            _ => Vec::new(),
        }
    }

    /// The message with header block `head` (or the current one).
    fn with_head(&self, head: Option<&Arc<[u8]>>) -> Vec<u8> {
        let o = self.original();
        let start = super::editheader::body_start(o);
        let mut v = match head {
            Some(h) => h.to_vec(),
            None => o[..start].to_vec(),
        };
        v.extend_from_slice(&o[start..]);
        v
    }

    /// A new current message; its envelope is taken from it as
    /// Pigeonhole's testsuite takes it: the recipient from Envelope-To,
    /// else To; the sender from Return-Path, else Sender, else From.
    fn set_message(&mut self, m: Vec<u8>) {
        let first = |names: &[&str]| {
            let end = memchr::memmem::find(&m, b"\n\n").map_or(m.len(), |i| i + 1);
            let fields = crate::message::fields(&m[..end]);
            names.iter().find_map(|n| {
                super::super::mime::header_values(&fields, n)
                    .first()
                    .and_then(|v| super::super::mime::addresses(v).into_iter().next())
                    .filter(|a| !a.is_empty())
            })
        };
        let to = first(&["Envelope-To", "To"]).unwrap_or_else(|| "recipient@example.com".into());
        let from = first(&["Return-Path", "Sender", "From"])
            .unwrap_or_else(|| "sender@example.com".into());
        let ts = self.ts();
        ts.to = Some(to);
        ts.from = Some(from);
        self.base = Some(Arc::from(m));
        self.head = None;
    }

    fn result_reset(&mut self) {
        self.actions.clear();
        self.heads.clear();
        self.cancel_keep = false;
        self.flags.clear();
        self.head = None;
        self.redirects = 0;
        self.ts().implicit_head = None;
    }

    /// Store the result: each action, then the implicit keep. False when
    /// one cannot be carried out (a folder that does not exist).
    fn execute(&mut self) -> bool {
        let mut ok = true;
        let actions = self.actions.clone();
        let heads = self.heads.clone();
        let implicit_head = self.ts().implicit_head.clone();
        let keep_head = implicit_head.unwrap_or_else(|| self.head.clone());
        let mut store: Vec<(String, Vec<u8>, Vec<String>, bool)> = Vec::new();
        let mut sent: Vec<(Vec<u8>, Option<String>, String)> = Vec::new();
        let sender = self.ts().from.clone();
        for (i, a) in actions.iter().enumerate() {
            let msg = self.with_head(heads.get(i).and_then(|h| h.as_ref()));
            match &a.kind {
                ActionKind::Keep { flags } => {
                    store.push(("INBOX".into(), msg, flags.clone(), true))
                }
                ActionKind::FileInto {
                    mailbox,
                    flags,
                    create,
                    ..
                } => store.push((folder_key(mailbox), msg, flags.clone(), *create)),
                ActionKind::Redirect { address, .. } => {
                    // The recipient as the delivery computes it; none: not
                    // sent (the delivery skips it and says so).
                    if let Some(to) = super::redirect_recipient(address) {
                        sent.push((msg, sender.clone(), to));
                    }
                }
                ActionKind::Reject { reason, .. } => {
                    let to = self.ts().from.clone().unwrap_or_default();
                    sent.push((
                        format!("To: {to}\nSubject: Rejected: \n\n{reason}\n").into_bytes(),
                        None,
                        to,
                    ));
                }
                ActionKind::Vacation { reason, options } => {
                    // The reply the delivery would send (the library's
                    // decision and message, nothing remembered from an
                    // earlier run); none when it would send none.
                    let ts = self.ts();
                    let (from, to) = (ts.from.clone(), ts.to.clone());
                    let cx = super::super::vacation::Context {
                        message: &msg,
                        sender: from.as_deref(),
                        recipient: to.as_deref(),
                        now: self.input.now,
                    };
                    if let Ok(r) = super::super::vacation::decide(reason, options, cx, &()) {
                        sent.push((r.message, Some(String::new()), r.to));
                    }
                }
                ActionKind::Discard => {}
            }
        }
        if !self.cancel_keep {
            let msg = self.with_head(keep_head.as_ref());
            store.push(("INBOX".into(), msg, self.flags.clone(), true));
        }
        let ts = self.ts();
        for (folder, msg, flags, create) in store {
            match ts.folders.get_mut(&folder) {
                Some(f) => f.push((msg, flags)),
                None if create => {
                    ts.folders.insert(folder, vec![(msg, flags)]);
                }
                None => {
                    ok = false;
                    ts.errors.push(format!("mailbox {folder:?} does not exist"));
                }
            }
        }
        ts.smtp = sent;
        ok
    }

    /// `test_message :folder F N` / `:smtp N`: make that message current.
    fn select(&mut self, a: &Args) -> bool {
        let n = match a.pos.first() {
            Some(RawArg::Num(n, _)) => *n as usize,
            _ => self.ts_str(a, 0).parse().unwrap_or(0),
        };
        let found = match a.tag_str("folder") {
            Some(f) => {
                let f = folder_key(&self.expand(&f));
                self.ts().folders.get(&f).and_then(|v| v.get(n)).cloned()
            }
            None => match self.ts().smtp.get(n).cloned() {
                Some((m, from, to)) => {
                    // The envelope it was sent with, not one from its
                    // header.
                    self.set_message(m);
                    let ts = self.ts();
                    ts.from = from;
                    ts.to = Some(to);
                    self.flags = Vec::new();
                    return true;
                }
                None => None,
            },
        };
        match found {
            Some((m, flags)) => {
                self.set_message(m);
                self.flags = flags;
                true
            }
            None => false,
        }
    }

    /// A testsuite command.
    pub(super) fn ts_command(&mut self, c: &Command) -> Result<Flow, RuntimeError> {
        match &c.kind {
            Cmd::TestBlock { name, body } => {
                let name = self.expand(name);
                self.ts().current = Some(name.clone());
                let res = self.block(body);
                let fail = match res {
                    Ok(_) => None,
                    Err(e) => Some(match e.msg.strip_prefix(FAIL) {
                        Some(m) => format!("line {}: test_fail: {m}", e.pos.line),
                        None => format!("line {}: runtime error: {}", e.pos.line, e.msg),
                    }),
                };
                let ts = self.ts();
                ts.current = None;
                ts.results.push((name, fail));
                Ok(Flow::Go)
            }
            Cmd::Testsuite { name, args: raw } => {
                let a = args(raw);
                match name.as_str() {
                    "test_fail" => {
                        let why = self.ts_str(&a, 0);
                        return Err(rt(c.pos, format!("{FAIL}{why}")));
                    }
                    "test_set" => {
                        let what = self.ts_str(&a, 0).to_ascii_lowercase();
                        let v = self.ts_str(&a, 1);
                        match what.as_str() {
                            "message" => self.set_message(lf(&v)),
                            "envelope.from" => self.ts().from = Some(v),
                            "envelope.to" | "envelope.orig_to" => self.ts().to = Some(v),
                            "envelope.auth" => self.ts().auth = Some(v),
                            other => {
                                return Err(rt(c.pos, format!("test_set: unknown item {other:?}")));
                            }
                        }
                    }
                    "test_result_reset" => self.result_reset(),
                    "test_result_execute" => {
                        if !self.execute() {
                            return Err(rt(c.pos, "test_result_execute failed"));
                        }
                    }
                    "test_message" => {
                        if !self.select(&a) {
                            return Err(rt(c.pos, "test_message: no such message"));
                        }
                    }
                    "test_mailbox_create" => {
                        let f = folder_key(&self.ts_str(&a, 0));
                        self.ts().folders.entry(f).or_default();
                    }
                    "test_config_set" => {
                        let k = self.ts_str(&a, 0);
                        let v = self.ts_str(&a, 1);
                        let n: usize = v.parse().unwrap_or(0);
                        match k.as_str() {
                            "sieve_include_max_nesting_depth" => self.inc.max_depth = n,
                            "sieve_include_max_includes" => self.inc.max_includes = n,
                            "sieve_variables_max_variable_size" => self.max_var_len = n,
                            "recipient_delimiter" => self.delimiter = v.clone(),
                            _ => {}
                        }
                        self.ts().config.insert(k, v);
                    }
                    "test_config_unset" => {
                        let k = self.ts_str(&a, 0);
                        match k.as_str() {
                            "sieve_variables_max_variable_size" => {
                                self.max_var_len = super::MAX_VAR_LEN;
                            }
                            "recipient_delimiter" => self.delimiter = "+".into(),
                            _ => {}
                        }
                        self.ts().config.remove(&k);
                    }
                    // No binary form and nothing to reload: the compiled
                    // script stays as it is.
                    "test_config_reload" | "test_binary_save" | "test_binary_load" => {}
                    other => {
                        return Err(rt(
                            c.pos,
                            format!("testsuite command {other} is not implemented"),
                        ));
                    }
                }
                Ok(Flow::Go)
            }
            _ => Ok(Flow::Go),
        }
    }

    /// A testsuite test.
    pub(super) fn ts_test(&mut self, t: &Test) -> Result<bool, RuntimeError> {
        let TestKind::Testsuite { name, args: raw } = &t.kind else {
            return Ok(false);
        };
        let a = args(raw);
        Ok(match name.as_str() {
            "test_script_compile" => {
                let rel = self.ts_str(&a, 0);
                let path = self.ts().dir.join(&rel);
                let ts = self.ts();
                ts.compiled = None;
                ts.errors.clear();
                match std::fs::read_to_string(&path) {
                    Err(e) => {
                        ts.errors.push(format!("{rel}: {e}"));
                        false
                    }
                    Ok(text) => match compile_script_all(&text) {
                        Ok(s) => {
                            ts.compiled = Some(s);
                            true
                        }
                        Err(errs) => {
                            // An unsupported extension counts when it
                            // stopped the script (its first error).
                            if let Some(x) = errs[0].msg.strip_prefix("unsupported extension ") {
                                ts.unsupported
                                    .get_or_insert_with(|| x.trim_matches('"').to_string());
                            }
                            ts.errors.extend(errs.iter().map(ToString::to_string));
                            // Pigeonhole's compiler ends a failed compile
                            // with one more error line ("validation
                            // failed"), which its testsuite counts too.
                            ts.errors.push("compile failed".into());
                            false
                        }
                    },
                }
            }
            "test_script_run" => self.script_run(a.tags.contains_key("append_result")),
            "test_result_execute" => self.execute(),
            "test_message" => self.select(&a),
            "test_result_action" => {
                let names: Vec<String> = self
                    .actions
                    .iter()
                    .map(|x| action_name(&x.kind).to_string())
                    .collect();
                let values = match a.tag_num("index") {
                    Some(i) => match names.get((i as usize).wrapping_sub(1)) {
                        Some(n) => vec![n.clone()],
                        None => return Ok(false),
                    },
                    None => names,
                };
                let keys = self.ts_list(&a, 0);
                self.matches(t.pos, a.matcher(), &values, &keys)?
            }
            "test_error" => {
                let errors = self.ts().errors.clone();
                let values = match a.tag_num("index") {
                    Some(i) => match errors.get((i as usize).wrapping_sub(1)) {
                        Some(n) => vec![n.clone()],
                        None => return Ok(false),
                    },
                    None => errors,
                };
                let keys = self.ts_list(&a, 0);
                self.matches(t.pos, a.matcher(), &values, &keys)?
            }
            other => {
                return Err(rt(
                    t.pos,
                    format!("testsuite test {other} is not implemented"),
                ));
            }
        })
    }

    /// `test_script_run`: the compiled script over the current message;
    /// its actions become the result.
    fn script_run(&mut self, append: bool) -> bool {
        let Some(script) = self.ts().compiled.clone() else {
            return false;
        };
        let msg = self.with_head(self.head.as_ref());
        let ts = self.ts();
        let (from, to) = (ts.from.clone(), ts.to.clone());
        let personal = ts.include_dir(false);
        let global = ts.include_dir(true);
        let folders: Vec<String> = ts.folders.keys().cloned().collect();
        let exists = move |n: &str| folders.iter().any(|f| *f == folder_key(n));
        let delimiter = self.delimiter.clone();
        let env = Env {
            personal_dir: Some(&personal),
            global_dir: Some(&global),
            mailbox_exists: Some(&exists),
            items: &[],
            seen: None,
            recipient_delimiter: Some(&delimiter),
        };
        let input = Input {
            message: &msg,
            envelope_from: from.as_deref(),
            envelope_to: to.as_deref(),
            now: self.input.now,
            local_offset: self.input.local_offset,
        };
        let out = super::run_env(&script, input, Limits::default(), env);
        if let Some(e) = out.error {
            self.ts().errors = vec![e.to_string()];
            return false;
        }
        if !append {
            self.actions.clear();
            self.heads.clear();
            self.cancel_keep = false;
            self.flags.clear();
        }
        let mut implicit = None;
        for (i, act) in out.actions.into_iter().enumerate() {
            let h = out.heads.get(i).cloned().flatten();
            // The sub-run's heads are over its own message: rebase them on
            // ours by keeping them whole.
            if act.pos.is_none() {
                if let ActionKind::Keep { flags } = &act.kind {
                    self.flags = flags.clone();
                }
                implicit = Some(h);
                continue;
            }
            self.actions.push(act);
            self.heads.push(h);
        }
        self.cancel_keep = implicit.is_none();
        self.ts().implicit_head = implicit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixtures' root.
    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mail-deliver/svtest")
    }

    fn line(rel: &str, v: &Verdict) -> String {
        match v {
            Verdict::Passed => format!("{rel}\tpassed"),
            Verdict::NotApplicable(e) => format!("{rel}\tnot applicable\t{e}"),
            Verdict::Failed(w) => format!("{rel}\tfailed\t{}", w.replace(['\t', '\n', '\r'], " ")),
        }
    }

    /// Every .svtest file's verdict against the recorded one
    /// (svtest/RESULTS), so any change in conformance is seen; run with
    /// SVTEST_BLESS=1 to record the current verdicts.
    #[test]
    fn pigeonhole_conformance_suite() {
        let root = root();
        let mut files = Vec::new();
        let mut dirs = vec![root.join("tests")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "svtest") {
                    files.push(p);
                }
            }
        }
        files.sort();
        assert_eq!(files.len(), 147);
        let mut got = String::new();
        for f in &files {
            let rel = f
                .strip_prefix(root.join("tests"))
                .unwrap()
                .display()
                .to_string();
            got.push_str(&line(&rel, &run_file(f)));
            got.push('\n');
        }
        let results = root.join("RESULTS");
        if std::env::var_os("SVTEST_BLESS").is_some() {
            std::fs::write(&results, &got).unwrap();
        }
        let want = std::fs::read_to_string(&results).unwrap_or_default();
        if want != got {
            let diff: Vec<String> = want
                .lines()
                .zip(got.lines())
                .filter(|(w, g)| w != g)
                .map(|(w, g)| format!("- {w}\n+ {g}"))
                .collect();
            panic!(
                "svtest verdicts changed (SVTEST_BLESS=1 to record):\n{}",
                diff.join("\n")
            );
        }
    }

    #[test]
    fn a_failing_test_block_fails_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.svtest");
        std::fs::write(
            &p,
            "require \"vnd.dovecot.testsuite\";\ntest \"ok\" { if false { test_fail \"no\"; } }\ntest \"bad\" {\n test_fail \"why ${x}\"; }\n",
        )
        .unwrap();
        assert_eq!(
            run_file(&p),
            Verdict::Failed("test \"bad\": line 4: test_fail: why ${x}".into())
        );
        std::fs::write(&p, "require [\"vnd.dovecot.testsuite\", \"regex\"];").unwrap();
        assert_eq!(run_file(&p), Verdict::NotApplicable("regex".into()));
    }
}
