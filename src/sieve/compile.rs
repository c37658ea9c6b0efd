//! From the generic tree to the typed script: every command and test
//! checked against what RFC 5228 and the supported extensions allow, and
//! against the script's `require` (an extension used but not required, or
//! required but not supported, is a compile error with line and column).
//!
//! Guarantee: a [`Script`] that compiled only holds constructs the
//! evaluator implements.

use std::collections::{BTreeSet, HashMap};

use super::parser::{RawArg, RawCmd, RawTest};
use super::{CompileError, Pos};

/// The extensions this interpreter implements (the `require` names).
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "imap4flags",
    "mailbox",
    "copy",
    "subaddress",
    "variables",
    "relational",
    "body",
    "date",
    "vacation",
    "duplicate",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
    "comparator-i;ascii-numeric",
    "editheader",
    "include",
    "environment",
    "encoded-character",
];

/// A compiled script.
#[derive(Debug, Clone)]
pub struct Script {
    /// The top-level commands.
    pub commands: Vec<Command>,
    /// The extensions the script required.
    pub requires: BTreeSet<String>,
}

/// A command and where it is.
#[derive(Debug, Clone)]
pub struct Command {
    /// Where it starts.
    pub pos: Pos,
    /// What it does.
    pub kind: Cmd,
}

/// Which imap4flags command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `setflag`
    Set,
    /// `addflag`
    Add,
    /// `removeflag`
    Remove,
}

/// The commands.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// `require` (checked at compile time; nothing at run time).
    Require,
    /// `if`/`elsif`/`else`: the arms in order, then the `else` block.
    If {
        /// Each condition and its block.
        arms: Vec<(Test, Vec<Command>)>,
        /// The `else` block.
        otherwise: Option<Vec<Command>>,
    },
    /// `stop`
    Stop,
    /// `keep [:flags list]`
    Keep {
        /// Flags to store with (imap4flags).
        flags: Option<Vec<String>>,
    },
    /// `discard`
    Discard,
    /// `fileinto [:flags] [:copy] [:create] mailbox`
    FileInto {
        /// The folder.
        mailbox: String,
        /// Flags to store with.
        flags: Option<Vec<String>>,
        /// `:copy`: the implicit keep stays.
        copy: bool,
        /// `:create`: make a missing folder.
        create: bool,
    },
    /// `redirect [:copy] address`
    Redirect {
        /// The address.
        address: String,
        /// `:copy`
        copy: bool,
    },
    /// `reject` / `ereject`
    Reject {
        /// The reason.
        reason: String,
        /// `ereject`
        extended: bool,
    },
    /// `setflag`/`addflag`/`removeflag [variable] flags`
    Flags {
        /// Which.
        op: FlagOp,
        /// The variable, when not the internal one.
        var: Option<String>,
        /// The flags.
        flags: Vec<String>,
    },
    /// `set [modifiers] name value`
    Set {
        /// Modifiers in the order applied.
        mods: Vec<String>,
        /// Variable name (lower-cased).
        name: String,
        /// The value (expanded at run time).
        value: String,
    },
    /// `vacation` (RFC 5230): carried out by the caller through
    /// [`super::vacation`].
    Vacation {
        /// The reason (expanded at run time).
        reason: String,
        /// The tags (strings expanded at run time).
        options: super::vacation::Options,
    },
    /// `addheader [:last] name value` (editheader, RFC 5293).
    AddHeader {
        /// `:last`: append instead of prepend.
        last: bool,
        /// The field name (expanded at run time).
        name: String,
        /// The value (expanded at run time).
        value: String,
    },
    /// `deleteheader [:index N [:last]] [match] name [patterns]`.
    DeleteHeader {
        /// `:index N` (1-based) and `:last`.
        index: Option<(u64, bool)>,
        /// How to compare the values with the patterns.
        m: Match,
        /// The field name.
        name: String,
        /// Value patterns: none deletes every field of that name.
        keys: Option<Vec<String>>,
    },
    /// `include [:personal|:global] [:once] [:optional] name` (RFC 6609).
    Include {
        /// `:global` (else the personal location).
        global: bool,
        /// `:once`
        once: bool,
        /// `:optional`
        optional: bool,
        /// The script's name.
        name: String,
    },
    /// `return` (RFC 6609): leave the included script.
    Return,
    /// `global names` (RFC 6609): variables shared with included scripts.
    Global {
        /// Lower-cased names.
        names: Vec<String>,
    },
    /// `test "name" { ... }` (vnd.dovecot.testsuite, test builds only).
    #[cfg(test)]
    TestBlock {
        /// The test's name.
        name: String,
        /// Its commands.
        body: Vec<Command>,
    },
    /// Another vnd.dovecot.testsuite command (test builds only): its
    /// arguments are read by `eval::testsuite` at run time.
    #[cfg(test)]
    Testsuite {
        /// The command's name.
        name: String,
        /// Its arguments as written.
        args: Vec<RawArg>,
    },
}

/// A test, where it is and its source text (for reports).
#[derive(Debug, Clone)]
pub struct Test {
    /// Where it starts.
    pub pos: Pos,
    /// The test as written, blanks collapsed.
    pub text: String,
    /// What it checks.
    pub kind: TestKind,
}

/// Relational operators (RFC 5231).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rel {
    /// gt
    Gt,
    /// ge
    Ge,
    /// lt
    Lt,
    /// le
    Le,
    /// eq
    Eq,
    /// ne
    Ne,
}

/// Match types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// `:is`
    Is,
    /// `:contains`
    Contains,
    /// `:matches`
    Matches,
    /// `:count OP`
    Count(Rel),
    /// `:value OP`
    Value(Rel),
}

/// Comparators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// `i;octet`
    Octet,
    /// `i;ascii-casemap` (the default)
    Casemap,
    /// `i;ascii-numeric`
    Numeric,
}

/// A match type with its comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// The match type.
    pub kind: MatchKind,
    /// The comparator.
    pub cmp: Comparator,
}

/// Address parts (RFC 5228 2.7.4, RFC 5233).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `:all`
    All,
    /// `:localpart`
    Local,
    /// `:domain`
    Domain,
    /// `:user`
    User,
    /// `:detail`
    Detail,
}

/// The body transforms (RFC 5173).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyTransform {
    /// `:raw`
    Raw,
    /// `:text` (the default)
    Text,
    /// `:content types`
    Content(Vec<String>),
}

/// Zones for the date tests (RFC 5260).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// Local time (the clock's zone).
    Local,
    /// `:originalzone`
    Original,
    /// `:zone "+hhmm"`, in minutes east.
    Fixed(i32),
}

/// The tests.
#[derive(Debug, Clone)]
pub enum TestKind {
    /// `true`
    True,
    /// `false`
    False,
    /// `not`
    Not(Box<Test>),
    /// `allof`
    AllOf(Vec<Test>),
    /// `anyof`
    AnyOf(Vec<Test>),
    /// `exists`
    Exists(Vec<String>),
    /// `size :over/:under`
    Size {
        /// `:over` (else `:under`).
        over: bool,
        /// The limit in octets.
        limit: u64,
    },
    /// `header`
    Header {
        /// How to compare.
        m: Match,
        /// Header names.
        names: Vec<String>,
        /// Keys.
        keys: Vec<String>,
    },
    /// `address` (or `envelope` when `envelope` is true)
    Address {
        /// How to compare.
        m: Match,
        /// Which part.
        part: Part,
        /// Header (or envelope part) names.
        names: Vec<String>,
        /// Keys.
        keys: Vec<String>,
        /// The `envelope` test.
        envelope: bool,
    },
    /// `body`
    Body {
        /// How to compare.
        m: Match,
        /// What part of the body.
        transform: BodyTransform,
        /// Keys.
        keys: Vec<String>,
    },
    /// `date` (header Some) or `currentdate` (header None)
    Date {
        /// How to compare.
        m: Match,
        /// The zone to convert to.
        zone: Zone,
        /// The header holding the date.
        header: Option<String>,
        /// The date part.
        part: String,
        /// Keys.
        keys: Vec<String>,
    },
    /// `hasflag [variables] keys`
    HasFlag {
        /// How to compare.
        m: Match,
        /// Variables (none: the internal one).
        vars: Vec<String>,
        /// Keys.
        keys: Vec<String>,
    },
    /// `duplicate` (RFC 7352).
    Duplicate(super::duplicate::Test),
    /// `string sources keys` (variables)
    Str {
        /// How to compare.
        m: Match,
        /// Source strings.
        sources: Vec<String>,
        /// Keys.
        keys: Vec<String>,
    },
    /// `mailboxexists names` (RFC 5490): true when every folder exists.
    MailboxExists(Vec<String>),
    /// `environment [match] name keys` (RFC 5183).
    Environment {
        /// How to compare.
        m: Match,
        /// The item's name (lower-cased).
        name: String,
        /// Keys.
        keys: Vec<String>,
    },
    /// A vnd.dovecot.testsuite test (test builds only).
    #[cfg(test)]
    Testsuite {
        /// The test's name.
        name: String,
        /// Its arguments as written.
        args: Vec<RawArg>,
    },
}

/// The date parts RFC 5260 defines.
pub const DATE_PARTS: &[&str] = &[
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601",
    "std11", "zone", "weekday",
];

/// What a tag takes after it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Takes {
    Nothing,
    Str,
    List,
    Num,
}

/// Tags gathered from a command's or test's arguments.
pub(super) struct Tags {
    pub(super) map: HashMap<String, (Pos, Option<RawArg>)>,
    pub(super) positional: Vec<RawArg>,
}

pub(super) struct Cx<'a> {
    src: &'a str,
    requires: BTreeSet<String>,
    /// Still in the leading `require` commands.
    in_prologue: bool,
    /// The errors so far (the compiler goes on at the next command after
    /// one, as sievec does, up to [`MAX_ERRORS`]).
    errors: Vec<CompileError>,
    /// The variable names `set` names, to refuse more than the run keeps.
    vars: BTreeSet<String>,
}

/// Longest variable name (Pigeonhole's limit; RFC 5229 leaves it open).
pub const MAX_VAR_NAME: usize = 64;

/// Most compile errors collected from one script.
pub const MAX_ERRORS: usize = 20;

impl Cx<'_> {
    /// Keep `e` (up to [`MAX_ERRORS`]) and go on.
    fn note(&mut self, e: CompileError) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }

    /// The value of `r`, or `None` with its error kept.
    fn keep<T>(&mut self, r: Result<T, CompileError>) -> Option<T> {
        r.map_err(|e| self.note(e)).ok()
    }
}

pub(super) fn err(pos: Pos, msg: impl Into<String>) -> CompileError {
    CompileError {
        pos,
        msg: msg.into(),
    }
}

impl Cx<'_> {
    pub(super) fn need(&self, ext: &str, pos: Pos, what: &str) -> Result<(), CompileError> {
        if self.requires.contains(ext) {
            Ok(())
        } else {
            Err(err(pos, format!("{what} needs require \"{ext}\"")))
        }
    }

    /// Split `args` into known tags (each once) and positional arguments.
    /// `spec` lists (tag, extension or "", what follows it).
    pub(super) fn tags(
        &self,
        what: &str,
        args: &[RawArg],
        spec: &[(&str, &str, Takes)],
    ) -> Result<Tags, CompileError> {
        let mut t = Tags {
            map: HashMap::new(),
            positional: Vec::new(),
        };
        let mut i = 0;
        while i < args.len() {
            match &args[i] {
                RawArg::Tag(name, pos) => {
                    if !t.positional.is_empty() {
                        return Err(err(
                            *pos,
                            format!("tag :{name} after positional arguments of {what}"),
                        ));
                    }
                    let Some((_, ext, takes)) = spec.iter().find(|(n, _, _)| n == name) else {
                        return Err(err(*pos, format!("unknown tag :{name} for {what}")));
                    };
                    if !ext.is_empty() {
                        self.need(ext, *pos, &format!(":{name}"))?;
                    }
                    let value = if *takes == Takes::Nothing {
                        None
                    } else {
                        i += 1;
                        let v = args.get(i).cloned();
                        let ok = match (&v, takes) {
                            (Some(RawArg::Str(..)), Takes::Str | Takes::List) => true,
                            (Some(RawArg::List(l, _)), Takes::List) => !l.is_empty(),
                            (Some(RawArg::List(l, _)), Takes::Str) => l.len() == 1,
                            (Some(RawArg::Num(..)), Takes::Num) => true,
                            _ => false,
                        };
                        if !ok {
                            return Err(err(
                                *pos,
                                format!("tag :{name} of {what} needs an argument"),
                            ));
                        }
                        v
                    };
                    if t.map.insert(name.clone(), (*pos, value)).is_some() {
                        return Err(err(*pos, format!("tag :{name} given twice")));
                    }
                }
                other => t.positional.push(other.clone()),
            }
            i += 1;
        }
        Ok(t)
    }
}

/// The tags every match-using test takes.
pub(super) const MATCH_TAGS: &[(&str, &str, Takes)] = &[
    ("is", "", Takes::Nothing),
    ("contains", "", Takes::Nothing),
    ("matches", "", Takes::Nothing),
    ("count", "relational", Takes::Str),
    ("value", "relational", Takes::Str),
    ("comparator", "", Takes::Str),
];

const PART_TAGS: &[(&str, &str, Takes)] = &[
    ("all", "", Takes::Nothing),
    ("localpart", "", Takes::Nothing),
    ("domain", "", Takes::Nothing),
    ("user", "subaddress", Takes::Nothing),
    ("detail", "subaddress", Takes::Nothing),
];

pub(super) fn one_str(a: &RawArg) -> Option<String> {
    match a {
        RawArg::Str(s, _) => Some(s.clone()),
        RawArg::List(l, _) if l.len() == 1 => Some(l[0].clone()),
        _ => None,
    }
}

pub(super) fn list(a: &RawArg) -> Option<Vec<String>> {
    match a {
        RawArg::Str(s, _) => Some(vec![s.clone()]),
        RawArg::List(l, _) => Some(l.clone()),
        _ => None,
    }
}

impl Tags {
    pub(super) fn has(&self, t: &str) -> bool {
        self.map.contains_key(t)
    }
    pub(super) fn str_of(&self, t: &str) -> Option<String> {
        self.map
            .get(t)
            .and_then(|(_, v)| v.as_ref())
            .and_then(one_str)
    }
    pub(super) fn list_of(&self, t: &str) -> Option<Vec<String>> {
        self.map.get(t).and_then(|(_, v)| v.as_ref()).and_then(list)
    }
    pub(super) fn only_one<'s>(
        &self,
        set: &[&'s str],
        what: &str,
    ) -> Result<Option<&'s str>, CompileError> {
        let mut found: Option<(&str, Pos)> = None;
        for s in set {
            if let Some((p, _)) = self.map.get(*s) {
                if let Some((f, _)) = found {
                    return Err(err(
                        *p,
                        format!(":{s} and :{f} cannot both be given to {what}"),
                    ));
                }
                found = Some((s, *p));
            }
        }
        Ok(found.map(|(s, _)| s))
    }
    /// Positional arguments: exactly the kinds in `want` ('s' string, 'l'
    /// string list, 'n' number).
    pub(super) fn positional(
        &self,
        what: &str,
        pos: Pos,
        want: &str,
    ) -> Result<Vec<RawArg>, CompileError> {
        if self.positional.len() != want.len() {
            return Err(err(
                pos,
                format!(
                    "{what} takes {} positional argument(s), found {}",
                    want.len(),
                    self.positional.len()
                ),
            ));
        }
        for (a, w) in self.positional.iter().zip(want.chars()) {
            let ok = match (a, w) {
                (RawArg::Str(..), 's' | 'l') | (RawArg::List(..), 'l') | (RawArg::Num(..), 'n') => {
                    true
                }
                (RawArg::List(l, _), 's') => l.len() == 1,
                _ => false,
            };
            if !ok {
                let kind = match w {
                    's' => "a string",
                    'l' => "a string list",
                    _ => "a number",
                };
                return Err(err(a.pos(), format!("{what} expects {kind} here")));
            }
        }
        Ok(self.positional.clone())
    }
}

/// Compile a parsed script; the first error.
pub fn compile(src: &str, raw: &[RawCmd]) -> Result<Script, CompileError> {
    compile_all(src, raw).map_err(|mut e| e.swap_remove(0))
}

/// Compile a parsed script; every error (at most [`MAX_ERRORS`], at least
/// one), in script order: after an error the compiler goes on at the next
/// command.
pub fn compile_all(src: &str, raw: &[RawCmd]) -> Result<Script, Vec<CompileError>> {
    let decoded;
    // Strings are decoded only when every required extension is known, so
    // an unsupported one is the error reported, not a bad sequence.
    let known = super::encoded::required_names(raw)
        .iter()
        .all(|n| EXTENSIONS.contains(&n.as_str()) || (cfg!(test) && n == "vnd.dovecot.testsuite"));
    let raw = if known && super::encoded::required(raw) {
        let mut r = raw.to_vec();
        super::encoded::decode_tree(&mut r).map_err(|e| vec![e])?;
        decoded = r;
        &decoded[..]
    } else {
        raw
    };
    let mut cx = Cx {
        src,
        requires: BTreeSet::new(),
        in_prologue: true,
        errors: Vec::new(),
        vars: BTreeSet::new(),
    };
    let commands = block(&mut cx, raw, true);
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    let commands = commands.map_err(|e| vec![e])?;
    Ok(Script {
        commands,
        requires: cx.requires,
    })
}

pub(super) fn block(
    cx: &mut Cx<'_>,
    raw: &[RawCmd],
    top: bool,
) -> Result<Vec<Command>, CompileError> {
    let mut out: Vec<Command> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let c = &raw[i];
        if c.name != "require" {
            cx.in_prologue = false;
        }
        namespaces(cx, &c.args, &c.tests);
        if c.name == "elsif" || c.name == "else" {
            cx.note(err(c.pos, format!("{} without a preceding if", c.name)));
            i += 1;
            continue;
        }
        if c.name == "if" {
            // Each test and block is compiled even after an error in
            // another, so every error is found.
            let mut ok = true;
            let arm = |cx: &mut Cx<'_>, n: &RawCmd| {
                let t = cond(cx, n);
                let t = cx.keep(t);
                let b = body(cx, n);
                let b = cx.keep(b);
                t.zip(b)
            };
            let first = arm(cx, c);
            ok &= first.is_some();
            let mut arms: Vec<(Test, Vec<Command>)> = first.into_iter().collect();
            let mut otherwise = None;
            while let Some(n) = raw.get(i + 1) {
                match n.name.as_str() {
                    "elsif" => match arm(cx, n) {
                        Some(a) => arms.push(a),
                        None => ok = false,
                    },
                    "else" => {
                        if !n.args.is_empty() || !n.tests.is_empty() {
                            cx.note(err(n.pos, "else takes no arguments"));
                            ok = false;
                        }
                        let b = body(cx, n);
                        otherwise = cx.keep(b);
                        ok &= otherwise.is_some();
                        i += 1;
                        break;
                    }
                    _ => break,
                }
                i += 1;
            }
            if ok {
                out.push(Command {
                    pos: c.pos,
                    kind: Cmd::If { arms, otherwise },
                });
            }
        } else {
            let r = simple(cx, c, top);
            if let Some(cmd) = cx.keep(r) {
                out.push(cmd);
            }
        }
        i += 1;
    }
    // The errors are in cx; the caller looks there.
    Ok(out)
}

/// RFC 5229 3: a reference to a variable namespace no extension provides
/// (`${ns.name}`; only `global` with include exists here) is an error,
/// and so is a match value past the highest kept (`${33}`).
fn namespaces(cx: &mut Cx<'_>, args: &[RawArg], tests: &[RawTest]) {
    if !cx.requires.contains("variables") {
        return;
    }
    for a in args {
        let (strs, pos): (Vec<&String>, Pos) = match a {
            RawArg::Str(s, p) => (vec![s], *p),
            RawArg::List(l, p) => (l.iter().collect(), *p),
            _ => continue,
        };
        for s in strs {
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                let after = &rest[i + 2..];
                let Some(end) = after.find('}') else { break };
                let name = &after[..end];
                if !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_digit())
                    && name
                        .parse::<usize>()
                        .map_or(true, |n| n > super::eval::MAX_MATCH_VALUES)
                {
                    cx.note(err(
                        pos,
                        format!(
                            "match value ${{{name}}} past the highest kept, ${{{}}}",
                            super::eval::MAX_MATCH_VALUES
                        ),
                    ));
                }
                if let Some((ns, var)) = name.split_once('.')
                    && valid_var_name(ns)
                    && var.split('.').all(valid_var_name)
                    && !(ns.eq_ignore_ascii_case("global") && cx.requires.contains("include"))
                    // The testsuite's own namespace.
                    && !(ns.eq_ignore_ascii_case("tst")
                        && cx.requires.contains("vnd.dovecot.testsuite"))
                {
                    cx.note(err(
                        pos,
                        format!("unknown variable namespace {ns:?} in ${{{name}}}"),
                    ));
                }
                rest = &after[end..];
            }
        }
    }
    for t in tests {
        namespaces(cx, &t.args, &t.tests);
    }
}

fn cond(cx: &mut Cx<'_>, c: &RawCmd) -> Result<Test, CompileError> {
    if !c.args.is_empty() || c.tests.len() != 1 {
        return Err(err(c.pos, format!("{} takes exactly one test", c.name)));
    }
    test(cx, &c.tests[0])
}

fn body(cx: &mut Cx<'_>, c: &RawCmd) -> Result<Vec<Command>, CompileError> {
    match &c.block {
        Some(b) => block(cx, b, false),
        None => Err(err(c.pos, format!("{} needs a block", c.name))),
    }
}

fn simple(cx: &mut Cx<'_>, c: &RawCmd, top: bool) -> Result<Command, CompileError> {
    let what = c.name.as_str();
    #[cfg(test)]
    if what == "test" || what.starts_with("test_") {
        cx.need("vnd.dovecot.testsuite", c.pos, what)?;
        let kind = match (&c.block, c.args.as_slice()) {
            (Some(b), [RawArg::Str(name, _)]) if what == "test" => Cmd::TestBlock {
                name: name.clone(),
                body: block(cx, b, false)?,
            },
            (None, _) if what != "test" => Cmd::Testsuite {
                name: what.to_string(),
                args: c.args.clone(),
            },
            _ => return Err(err(c.pos, format!("malformed testsuite command {what}"))),
        };
        return Ok(Command { pos: c.pos, kind });
    }
    if c.block.is_some() {
        return Err(err(c.pos, format!("{what} takes no block")));
    }
    if !c.tests.is_empty() {
        return Err(err(c.tests[0].pos, format!("{what} takes no test")));
    }
    let kind = match what {
        "require" => {
            if !top || !cx.in_prologue {
                return Err(err(
                    c.pos,
                    "require is only allowed at the start of the script",
                ));
            }
            let t = cx.tags(what, &c.args, &[])?;
            let a = t.positional(what, c.pos, "l")?;
            for name in list(&a[0]).unwrap_or_default() {
                // The testsuite's commands exist only in test builds.
                let testsuite = cfg!(test) && name == "vnd.dovecot.testsuite";
                if !EXTENSIONS.contains(&name.as_str()) && !testsuite {
                    return Err(err(a[0].pos(), format!("unsupported extension \"{name}\"")));
                }
                cx.requires.insert(name);
            }
            Cmd::Require
        }
        "stop" => {
            cx.tags(what, &c.args, &[])?.positional(what, c.pos, "")?;
            Cmd::Stop
        }
        "discard" => {
            cx.tags(what, &c.args, &[])?.positional(what, c.pos, "")?;
            Cmd::Discard
        }
        "keep" => {
            let t = cx.tags(what, &c.args, &[("flags", "imap4flags", Takes::List)])?;
            t.positional(what, c.pos, "")?;
            Cmd::Keep {
                flags: t.list_of("flags"),
            }
        }
        "fileinto" => {
            cx.need("fileinto", c.pos, what)?;
            let t = cx.tags(
                what,
                &c.args,
                &[
                    ("flags", "imap4flags", Takes::List),
                    ("copy", "copy", Takes::Nothing),
                    ("create", "mailbox", Takes::Nothing),
                ],
            )?;
            let a = t.positional(what, c.pos, "s")?;
            Cmd::FileInto {
                mailbox: one_str(&a[0]).unwrap_or_default(),
                flags: t.list_of("flags"),
                copy: t.has("copy"),
                create: t.has("create"),
            }
        }
        "redirect" => {
            let t = cx.tags(what, &c.args, &[("copy", "copy", Takes::Nothing)])?;
            let a = t.positional(what, c.pos, "s")?;
            Cmd::Redirect {
                address: one_str(&a[0]).unwrap_or_default(),
                copy: t.has("copy"),
            }
        }
        "reject" | "ereject" => {
            cx.need(what, c.pos, what)?;
            let t = cx.tags(what, &c.args, &[])?;
            let a = t.positional(what, c.pos, "s")?;
            Cmd::Reject {
                reason: one_str(&a[0]).unwrap_or_default(),
                extended: what == "ereject",
            }
        }
        "setflag" | "addflag" | "removeflag" => {
            cx.need("imap4flags", c.pos, what)?;
            let t = cx.tags(what, &c.args, &[])?;
            let (var, flags) = match t.positional.len() {
                2 => {
                    let a = t.positional(what, c.pos, "sl")?;
                    cx.need("variables", c.pos, "a flag variable")?;
                    (
                        one_str(&a[0]).map(|s| s.to_ascii_lowercase()),
                        list(&a[1]).unwrap_or_default(),
                    )
                }
                _ => {
                    let a = t.positional(what, c.pos, "l")?;
                    (None, list(&a[0]).unwrap_or_default())
                }
            };
            Cmd::Flags {
                op: match what {
                    "setflag" => FlagOp::Set,
                    "addflag" => FlagOp::Add,
                    _ => FlagOp::Remove,
                },
                var,
                flags,
            }
        }
        "set" => {
            cx.need("variables", c.pos, what)?;
            let mods = [
                "lower",
                "upper",
                "lowerfirst",
                "upperfirst",
                "quotewildcard",
                "length",
            ];
            let spec: Vec<(&str, &str, Takes)> =
                mods.iter().map(|m| (*m, "", Takes::Nothing)).collect();
            let t = cx.tags(what, &c.args, &spec)?;
            t.only_one(&["lower", "upper"], what)?;
            t.only_one(&["lowerfirst", "upperfirst"], what)?;
            let a = t.positional(what, c.pos, "ss")?;
            let name = one_str(&a[0]).unwrap_or_default().to_ascii_lowercase();
            // RFC 6609 3.5: "global.NAME" names a global variable.
            let global_ns = name
                .strip_prefix("global.")
                .is_some_and(|g| valid_var_name(g) && cx.requires.contains("include"));
            if name.len() > MAX_VAR_NAME {
                return Err(err(
                    a[0].pos(),
                    format!("variable name longer than {MAX_VAR_NAME} characters"),
                ));
            }
            if !valid_var_name(&name) && !global_ns {
                return Err(err(a[0].pos(), format!("invalid variable name {name:?}")));
            }
            // More names than a run keeps is said once, where it happens.
            if !global_ns
                && cx.vars.insert(name.clone())
                && cx.vars.len() == super::eval::MAX_VARS + 1
            {
                return Err(err(
                    a[0].pos(),
                    format!("more than {} variables", super::eval::MAX_VARS),
                ));
            }
            // RFC 5229 3.1: applied by precedence, highest first.
            // :lower/:upper (40), then :lowerfirst/:upperfirst (30),
            // :quotewildcard (20), :length (10).
            let order = [
                "lower",
                "upper",
                "lowerfirst",
                "upperfirst",
                "quotewildcard",
                "length",
            ];
            let mods = order
                .iter()
                .filter(|m| t.has(m))
                .map(|m| m.to_string())
                .collect();
            Cmd::Set {
                mods,
                name,
                value: one_str(&a[1]).unwrap_or_default(),
            }
        }
        "addheader" | "deleteheader" => super::eval::editheader::compile(cx, c)?,
        "include" | "return" | "global" => super::eval::include::compile(cx, c)?,
        "vacation" => {
            cx.need("vacation", c.pos, what)?;
            let t = cx.tags(
                what,
                &c.args,
                &[
                    ("days", "", Takes::Num),
                    ("subject", "", Takes::Str),
                    ("from", "", Takes::Str),
                    ("addresses", "", Takes::List),
                    ("mime", "", Takes::Nothing),
                    ("handle", "", Takes::Str),
                ],
            )?;
            let a = t.positional(what, c.pos, "s")?;
            Cmd::Vacation {
                reason: one_str(&a[0]).unwrap_or_default(),
                options: super::vacation::Options {
                    days: t.map.get("days").and_then(|(_, v)| match v {
                        Some(RawArg::Num(n, _)) => Some(*n),
                        _ => None,
                    }),
                    subject: t.str_of("subject"),
                    from: t.str_of("from"),
                    addresses: t.list_of("addresses").unwrap_or_default(),
                    mime: t.has("mime"),
                    handle: t.str_of("handle"),
                    auto_handle: None,
                },
            }
        }
        other => return Err(err(c.pos, format!("unknown command \"{other}\""))),
    };
    Ok(Command { pos: c.pos, kind })
}

/// A variable name for `set`: identifier characters, not starting with a
/// digit.
pub fn valid_var_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn match_of(cx: &Cx<'_>, t: &Tags, what: &str, pos: Pos) -> Result<Match, CompileError> {
    let kind = match t.only_one(&["is", "contains", "matches", "count", "value"], what)? {
        None | Some("is") => MatchKind::Is,
        Some("contains") => MatchKind::Contains,
        Some("matches") => MatchKind::Matches,
        Some(k) => {
            let op = t.str_of(k).unwrap_or_default().to_ascii_lowercase();
            let rel = match op.as_str() {
                "gt" => Rel::Gt,
                "ge" => Rel::Ge,
                "lt" => Rel::Lt,
                "le" => Rel::Le,
                "eq" => Rel::Eq,
                "ne" => Rel::Ne,
                _ => {
                    let p = t.map.get(k).map_or(pos, |(p, _)| *p);
                    return Err(err(p, format!("unknown relational operator {op:?}")));
                }
            };
            if k == "count" {
                MatchKind::Count(rel)
            } else {
                MatchKind::Value(rel)
            }
        }
    };
    let cmp = match t.str_of("comparator") {
        None => Comparator::Casemap,
        Some(c) => {
            let p = t.map.get("comparator").map_or(pos, |(p, _)| *p);
            match c.to_ascii_lowercase().as_str() {
                "i;octet" => Comparator::Octet,
                "i;ascii-casemap" => Comparator::Casemap,
                "i;ascii-numeric" => {
                    cx.need(
                        "comparator-i;ascii-numeric",
                        p,
                        "comparator i;ascii-numeric",
                    )?;
                    Comparator::Numeric
                }
                other => return Err(err(p, format!("unsupported comparator {other:?}"))),
            }
        }
    };
    if cmp == Comparator::Numeric && matches!(kind, MatchKind::Contains | MatchKind::Matches) {
        return Err(err(
            pos,
            "i;ascii-numeric allows only :is, :count and :value",
        ));
    }
    Ok(Match { kind, cmp })
}

fn with(
    base: &[(&'static str, &'static str, Takes)],
    more: &[(&'static str, &'static str, Takes)],
) -> Vec<(&'static str, &'static str, Takes)> {
    let mut v = base.to_vec();
    v.extend_from_slice(more);
    v
}

fn parse_zone(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 5 || !(b[0] == b'+' || b[0] == b'-') || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let h: i32 = s[1..3].parse().ok()?;
    let m: i32 = s[3..5].parse().ok()?;
    if m > 59 {
        return None;
    }
    let v = h * 60 + m;
    Some(if b[0] == b'-' { -v } else { v })
}

fn test(cx: &mut Cx<'_>, r: &RawTest) -> Result<Test, CompileError> {
    let what = r.name.as_str();
    let pos = r.pos;
    let no_tests = |r: &RawTest| -> Result<(), CompileError> {
        match r.tests.first() {
            Some(t) => Err(err(t.pos, format!("{} takes no nested test", r.name))),
            None => Ok(()),
        }
    };
    let kind = match what {
        "true" | "false" => {
            no_tests(r)?;
            cx.tags(what, &r.args, &[])?.positional(what, pos, "")?;
            if what == "true" {
                TestKind::True
            } else {
                TestKind::False
            }
        }
        "not" => {
            cx.tags(what, &r.args, &[])?.positional(what, pos, "")?;
            if r.tests.len() != 1 {
                return Err(err(pos, "not takes exactly one test"));
            }
            TestKind::Not(Box::new(test(cx, &r.tests[0])?))
        }
        "allof" | "anyof" => {
            cx.tags(what, &r.args, &[])?.positional(what, pos, "")?;
            if r.tests.is_empty() {
                return Err(err(pos, format!("{what} needs a test list")));
            }
            let ts = r
                .tests
                .iter()
                .map(|t| test(cx, t))
                .collect::<Result<Vec<_>, _>>()?;
            if what == "allof" {
                TestKind::AllOf(ts)
            } else {
                TestKind::AnyOf(ts)
            }
        }
        "exists" => {
            no_tests(r)?;
            let a = cx.tags(what, &r.args, &[])?.positional(what, pos, "l")?;
            TestKind::Exists(list(&a[0]).unwrap_or_default())
        }
        "size" => {
            no_tests(r)?;
            let t = cx.tags(
                what,
                &r.args,
                &[("over", "", Takes::Nothing), ("under", "", Takes::Nothing)],
            )?;
            let over = match t.only_one(&["over", "under"], what)? {
                Some("over") => true,
                Some(_) => false,
                None => return Err(err(pos, "size needs :over or :under")),
            };
            let a = t.positional(what, pos, "n")?;
            let limit = match a[0] {
                RawArg::Num(n, _) => n,
                _ => return Err(err(pos, "size expects a number")),
            };
            TestKind::Size { over, limit }
        }
        "header" => {
            no_tests(r)?;
            let t = cx.tags(what, &r.args, MATCH_TAGS)?;
            let m = match_of(cx, &t, what, pos)?;
            let a = t.positional(what, pos, "ll")?;
            TestKind::Header {
                m,
                names: list(&a[0]).unwrap_or_default(),
                keys: list(&a[1]).unwrap_or_default(),
            }
        }
        "address" | "envelope" => {
            no_tests(r)?;
            if what == "envelope" {
                cx.need("envelope", pos, what)?;
            }
            let t = cx.tags(what, &r.args, &with(MATCH_TAGS, PART_TAGS))?;
            let m = match_of(cx, &t, what, pos)?;
            let part = match t.only_one(&["all", "localpart", "domain", "user", "detail"], what)? {
                None | Some("all") => Part::All,
                Some("localpart") => Part::Local,
                Some("domain") => Part::Domain,
                Some("user") => Part::User,
                Some(_) => Part::Detail,
            };
            let a = t.positional(what, pos, "ll")?;
            let names = list(&a[0]).unwrap_or_default();
            if what == "envelope" {
                for n in &names {
                    // "auth" (RFC 5228 5.4) is known; mail-deliver has no
                    // authenticated sender, so it matches nothing.
                    if !["from", "to", "auth"].contains(&n.to_ascii_lowercase().as_str()) {
                        return Err(err(
                            a[0].pos(),
                            format!("envelope part {n:?} is not supported (from, to)"),
                        ));
                    }
                }
            }
            TestKind::Address {
                m,
                part,
                names,
                keys: list(&a[1]).unwrap_or_default(),
                envelope: what == "envelope",
            }
        }
        "body" => {
            no_tests(r)?;
            cx.need("body", pos, what)?;
            let t = cx.tags(
                what,
                &r.args,
                &with(
                    MATCH_TAGS,
                    &[
                        ("raw", "", Takes::Nothing),
                        ("text", "", Takes::Nothing),
                        ("content", "", Takes::List),
                    ],
                ),
            )?;
            let m = match_of(cx, &t, what, pos)?;
            let transform = match t.only_one(&["raw", "text", "content"], what)? {
                Some("raw") => BodyTransform::Raw,
                Some("content") => BodyTransform::Content(t.list_of("content").unwrap_or_default()),
                _ => BodyTransform::Text,
            };
            let a = t.positional(what, pos, "l")?;
            TestKind::Body {
                m,
                transform,
                keys: list(&a[0]).unwrap_or_default(),
            }
        }
        "date" | "currentdate" => {
            no_tests(r)?;
            cx.need("date", pos, what)?;
            let mut spec = with(MATCH_TAGS, &[("zone", "", Takes::Str)]);
            if what == "date" {
                spec.push(("originalzone", "", Takes::Nothing));
            }
            let t = cx.tags(what, &r.args, &spec)?;
            let m = match_of(cx, &t, what, pos)?;
            t.only_one(&["zone", "originalzone"], what)?;
            let zone =
                if t.has("originalzone") {
                    Zone::Original
                } else if let Some(z) = t.str_of("zone") {
                    let p = t.map.get("zone").map_or(pos, |(p, _)| *p);
                    Zone::Fixed(parse_zone(&z).ok_or_else(|| {
                        err(p, format!("invalid zone {z:?} (want +hhmm or -hhmm)"))
                    })?)
                } else {
                    Zone::Local
                };
            let a = t.positional(what, pos, if what == "date" { "ssl" } else { "sl" })?;
            let (header, rest) = if what == "date" {
                (one_str(&a[0]), &a[1..])
            } else {
                (None, &a[..])
            };
            let part = one_str(&rest[0]).unwrap_or_default().to_ascii_lowercase();
            if !DATE_PARTS.contains(&part.as_str()) {
                return Err(err(rest[0].pos(), format!("unknown date part {part:?}")));
            }
            TestKind::Date {
                m,
                zone,
                header,
                part,
                keys: list(&rest[1]).unwrap_or_default(),
            }
        }
        "hasflag" => {
            no_tests(r)?;
            cx.need("imap4flags", pos, what)?;
            let t = cx.tags(what, &r.args, MATCH_TAGS)?;
            let m = match_of(cx, &t, what, pos)?;
            let (vars, keys) = if t.positional.len() == 2 {
                cx.need("variables", pos, "a flag variable")?;
                let a = t.positional(what, pos, "ll")?;
                (
                    list(&a[0]).unwrap_or_default(),
                    list(&a[1]).unwrap_or_default(),
                )
            } else {
                let a = t.positional(what, pos, "l")?;
                (Vec::new(), list(&a[0]).unwrap_or_default())
            };
            TestKind::HasFlag {
                m,
                vars: vars.into_iter().map(|v| v.to_ascii_lowercase()).collect(),
                keys,
            }
        }
        "duplicate" => {
            no_tests(r)?;
            cx.need("duplicate", pos, what)?;
            let t = cx.tags(
                what,
                &r.args,
                &[
                    ("handle", "", Takes::Str),
                    ("header", "", Takes::Str),
                    ("uniqueid", "", Takes::Str),
                    ("seconds", "", Takes::Num),
                    ("last", "", Takes::Nothing),
                ],
            )?;
            t.only_one(&["header", "uniqueid"], what)?;
            t.positional(what, pos, "")?;
            TestKind::Duplicate(super::duplicate::Test {
                handle: t.str_of("handle"),
                header: t.str_of("header"),
                uniqueid: t.str_of("uniqueid"),
                seconds: t.map.get("seconds").and_then(|(_, v)| match v {
                    Some(RawArg::Num(n, _)) => Some(*n),
                    _ => None,
                }),
                last: t.has("last"),
            })
        }
        "string" => {
            no_tests(r)?;
            cx.need("variables", pos, what)?;
            let t = cx.tags(what, &r.args, MATCH_TAGS)?;
            let mut m = match_of(cx, &t, what, pos)?;
            // Pigeonhole compares `string` with i;octet unless told
            // otherwise (its own suite checks it); we do the same, so a
            // script behaves alike under both.
            if !t.has("comparator") {
                m.cmp = Comparator::Octet;
            }
            let a = t.positional(what, pos, "ll")?;
            TestKind::Str {
                m,
                sources: list(&a[0]).unwrap_or_default(),
                keys: list(&a[1]).unwrap_or_default(),
            }
        }
        "mailboxexists" => {
            no_tests(r)?;
            cx.need("mailbox", pos, what)?;
            let a = cx.tags(what, &r.args, &[])?.positional(what, pos, "l")?;
            TestKind::MailboxExists(list(&a[0]).unwrap_or_default())
        }
        "environment" => {
            no_tests(r)?;
            cx.need("environment", pos, what)?;
            let t = cx.tags(what, &r.args, MATCH_TAGS)?;
            let m = match_of(cx, &t, what, pos)?;
            let a = t.positional(what, pos, "sl")?;
            TestKind::Environment {
                m,
                name: one_str(&a[0]).unwrap_or_default().to_ascii_lowercase(),
                keys: list(&a[1]).unwrap_or_default(),
            }
        }
        #[cfg(test)]
        name if name.starts_with("test_") => {
            cx.need("vnd.dovecot.testsuite", pos, what)?;
            TestKind::Testsuite {
                name: name.to_string(),
                args: r.args.clone(),
            }
        }
        other => return Err(err(pos, format!("unknown test \"{other}\""))),
    };
    let raw_text = cx.src.get(r.span.0..r.span.1).unwrap_or("");
    let text = raw_text.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(Test { pos, text, kind })
}
