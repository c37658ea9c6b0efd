//! editheader (RFC 5293): `addheader [:last]` and `deleteheader [:index N
//! [:last]]`, and the evaluator's view of the message they change: tests
//! after an edit see it, and each action carries the header block as it
//! was when the action was taken ([`super::Outcome::message_for`]), so
//! what is stored is what the script saw.
//!
//! Guarantees: only the header block is ever copied (the body stays the
//! caller's), each edit is charged to the step budget by the header's
//! size, a header grows to at most [`MAX_HEAD`] bytes and a field added
//! to at most [`MAX_FIELD`] (past either, a run-time error: the implicit
//! keep of the message as it came). `Received` and `Auto-Submitted` are
//! protected from deletion (RFC 5293 section 6): deleting them is
//! ignored, silently, and adding them allowed, as Pigeonhole does.

use std::borrow::Cow;
use std::sync::Arc;

use super::super::compile::{
    Cmd, Command, Cx, MATCH_TAGS, MatchKind, Takes, err, match_of, one_str,
};
use super::super::parser::{RawArg, RawCmd};
use super::super::{CompileError, Pos, RuntimeError};
use super::{Run, rt};
use crate::message::{self, Field};

/// Largest header block an edit may leave, in bytes.
pub const MAX_HEAD: usize = 1 << 20;
/// Largest field `addheader` adds (name, value and folding), in bytes
/// (Pigeonhole's default `sieve_editheader_max_header_size`).
pub const MAX_FIELD: usize = 2048;
/// Fields no script may delete (RFC 5293 keeps the trace and the
/// auto-reply marker; adding them is allowed, as in Pigeonhole).
pub const PROTECTED: &[&str] = &["received", "auto-submitted"];

/// Where the body starts: just past the header block's last field, so
/// `msg[..body_start]` is the fields (each ending in a line end) and the
/// rest is the blank line and the body.
pub fn body_start(msg: &[u8]) -> usize {
    if msg.starts_with(b"\n") || msg.starts_with(b"\r\n") {
        return 0;
    }
    match memchr::memmem::find(msg, b"\n\n") {
        Some(i) => i + 1,
        None => match memchr::memmem::find(msg, b"\n\r\n") {
            Some(i) => i + 1,
            None => msg.len(),
        },
    }
}

/// A field name RFC 5322 allows: printable ASCII but `:`.
pub fn valid_field_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Compile `addheader` / `deleteheader`.
pub(in crate::sieve) fn compile(cx: &mut Cx<'_>, c: &RawCmd) -> Result<Cmd, CompileError> {
    let what = c.name.as_str();
    cx.need("editheader", c.pos, what)?;
    let check_name = |a: &RawArg| -> Result<String, CompileError> {
        let n = one_str(a).unwrap_or_default();
        // A name built from variables is checked when it is known.
        if !n.contains("${") && !valid_field_name(&n) {
            return Err(err(
                a.pos(),
                format!("{what}: header field name {n:?} is invalid"),
            ));
        }
        Ok(n)
    };
    if what == "addheader" {
        let t = cx.tags(what, &c.args, &[("last", "", Takes::Nothing)])?;
        let a = t.positional(what, c.pos, "ss")?;
        let name = check_name(&a[0])?;
        let value = one_str(&a[1]).unwrap_or_default();
        // NUL can never be in a header field (RFC 5322); other control
        // characters are made harmless when the field is written.
        if value.contains('\0') {
            return Err(err(
                a[1].pos(),
                format!("addheader: header field value {value:?} is invalid (NUL)"),
            ));
        }
        if !value.contains("${") && value.len() + name.len() + 2 > MAX_FIELD {
            return Err(err(
                a[1].pos(),
                format!("addheader: field longer than {MAX_FIELD} bytes"),
            ));
        }
        return Ok(Cmd::AddHeader {
            last: t.has("last"),
            name,
            value,
        });
    }
    let mut spec = MATCH_TAGS.to_vec();
    spec.push(("index", "", Takes::Num));
    spec.push(("last", "", Takes::Nothing));
    let t = cx.tags(what, &c.args, &spec)?;
    let m = match_of(cx, &t, what, c.pos)?;
    if matches!(m.kind, MatchKind::Count(_)) {
        return Err(err(c.pos, "deleteheader: :count is not allowed"));
    }
    let index = match t.map.get("index") {
        Some((_, Some(RawArg::Num(n, p)))) => {
            if *n == 0 {
                return Err(err(*p, "deleteheader: :index starts at 1"));
            }
            Some((*n, t.has("last")))
        }
        _ => {
            if let Some((p, _)) = t.map.get("last") {
                return Err(err(*p, "deleteheader: :last needs :index"));
            }
            None
        }
    };
    let (name, keys) = match t.positional.len() {
        1 => {
            let a = t.positional(what, c.pos, "s")?;
            (check_name(&a[0])?, None)
        }
        _ => {
            let a = t.positional(what, c.pos, "sl")?;
            (check_name(&a[0])?, super::super::compile::list(&a[1]))
        }
    };
    Ok(Cmd::DeleteHeader {
        index,
        m,
        name,
        keys,
    })
}

/// A value as a field body: non-ASCII text as RFC 2047 words (UTF-8,
/// base64), line breaks turned into folding, NULs dropped.
fn field_value(v: &str) -> String {
    let v: String = v.chars().filter(|&c| c != '\0').collect();
    let v = if v.is_ascii() {
        v
    } else {
        super::super::mime::encode_2047(&v, "\n\t")
    };
    let mut out = String::with_capacity(v.len());
    for (i, line) in v.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if i > 0 {
            out.push('\n');
            if !line.starts_with([' ', '\t']) {
                out.push('\t');
            }
        }
        out.push_str(line);
    }
    out
}

impl<'a> Run<'a> {
    /// The message as it came (or as the testsuite set it).
    pub(super) fn original(&self) -> &[u8] {
        self.base.as_deref().unwrap_or(self.input.message)
    }

    /// The header block now: edited, or the original's.
    pub(super) fn head_bytes(&self) -> &[u8] {
        match &self.head {
            Some(h) => h,
            None => {
                let o = self.original();
                &o[..body_start(o)]
            }
        }
    }

    /// The message's size now.
    pub(super) fn msg_len(&self) -> usize {
        let o = self.original();
        self.head_bytes().len() + o.len() - body_start(o)
    }

    /// The size the `size` test sees: the message's octets as stored
    /// (as Pigeonhole's sieve-test counts a file). The testsuite's
    /// messages were written with CRLF and are kept with LF, so there the
    /// CRLF size is given back.
    pub(super) fn wire_len(&self) -> usize {
        #[cfg(test)]
        if self.ts.is_some() {
            let bare_lf = |b: &[u8]| {
                memchr::memchr_iter(b'\n', b)
                    .filter(|&i| i == 0 || b[i - 1] != b'\r')
                    .count()
            };
            let o = self.original();
            return self.msg_len() + bare_lf(self.head_bytes()) + bare_lf(&o[body_start(o)..]);
        }
        self.msg_len()
    }

    /// The whole message now (a copy only when edited).
    pub(super) fn whole(&self) -> Cow<'_, [u8]> {
        match &self.head {
            None => Cow::Borrowed(self.original()),
            Some(h) => {
                let o = self.original();
                let mut v = h.to_vec();
                v.extend_from_slice(&o[body_start(o)..]);
                Cow::Owned(v)
            }
        }
    }

    /// What reading the fields costs in steps: nothing for the message as
    /// it came (parsed once), the header's size once it was edited (it is
    /// parsed again for each test).
    pub(super) fn fields_cost(&self) -> u64 {
        if self.head.is_none() && self.base.is_none() {
            0
        } else {
            self.head_bytes().len() as u64
        }
    }

    /// The header fields now.
    pub(super) fn cur_fields(&self) -> Cow<'_, [Field<'_>]> {
        if self.head.is_none() && self.base.is_none() {
            Cow::Borrowed(&self.fields[..])
        } else {
            Cow::Owned(message::fields(self.head_bytes()))
        }
    }

    /// An envelope part ("from", "to"; "auth" only in the testsuite).
    pub(super) fn envelope_part(&self, part: &str) -> Option<String> {
        #[cfg(test)]
        if let Some(ts) = &self.ts {
            return ts.envelope(part);
        }
        if part.eq_ignore_ascii_case("from") {
            self.input.envelope_from.map(str::to_string)
        } else if part.eq_ignore_ascii_case("to") {
            self.input.envelope_to.map(str::to_string)
        } else {
            None
        }
    }

    /// Whether a folder exists, for `mailboxexists` (INBOX always does).
    pub(super) fn mailbox_exists(&self, name: &str) -> bool {
        if name.eq_ignore_ascii_case("INBOX") {
            return true;
        }
        #[cfg(test)]
        if let Some(ts) = &self.ts {
            return ts.mailbox_exists(name);
        }
        self.env.mailbox_exists.is_some_and(|f| f(name))
    }

    /// Whether `name` may not be added (`add`) or deleted.
    fn protected(&self, name: &str, add: bool) -> bool {
        #[cfg(test)]
        if let Some(ts) = &self.ts
            && ts.protected(name, add)
        {
            return true;
        }
        !add && PROTECTED.iter().any(|p| p.eq_ignore_ascii_case(name))
    }

    /// Replace the header block, charged to the step budget.
    fn set_head(&mut self, pos: Pos, h: Vec<u8>) -> Result<(), RuntimeError> {
        self.step(h.len() as u64, pos)?;
        if h.len() > MAX_HEAD {
            return Err(rt(
                pos,
                format!("editheader: header block larger than {MAX_HEAD} bytes"),
            ));
        }
        self.head = Some(Arc::from(h));
        Ok(())
    }

    /// Carry out `addheader` or `deleteheader`.
    pub(super) fn editheader(&mut self, c: &Command) -> Result<(), RuntimeError> {
        match &c.kind {
            Cmd::AddHeader { last, name, value } => {
                let name = self.expand(name);
                if !valid_field_name(&name) {
                    return Err(rt(
                        c.pos,
                        format!("addheader: header field name {name:?} is invalid"),
                    ));
                }
                let value = self.expand(value);
                if self.protected(&name, true) {
                    return Ok(());
                }
                let field = format!("{name}: {}\n", field_value(&value));
                if field.len() > MAX_FIELD {
                    return Err(rt(
                        c.pos,
                        format!("addheader: field longer than {MAX_FIELD} bytes"),
                    ));
                }
                let old = self.head_bytes();
                let mut h = Vec::with_capacity(old.len() + field.len() + 1);
                if *last {
                    h.extend_from_slice(old);
                    if !h.is_empty() && !h.ends_with(b"\n") {
                        h.push(b'\n');
                    }
                    h.extend_from_slice(field.as_bytes());
                } else {
                    h.extend_from_slice(field.as_bytes());
                    h.extend_from_slice(old);
                }
                self.set_head(c.pos, h)
            }
            Cmd::DeleteHeader {
                index,
                m,
                name,
                keys,
            } => {
                let name = self.expand(name);
                if !valid_field_name(&name) {
                    return Err(rt(
                        c.pos,
                        format!("deleteheader: header field name {name:?} is invalid"),
                    ));
                }
                if self.protected(&name, false) {
                    return Ok(());
                }
                self.step(self.fields_cost(), c.pos)?;
                // The fields of that name, as (start, end, decoded value).
                let found: Vec<(usize, usize, String)> = self
                    .cur_fields()
                    .iter()
                    .filter(|f| f.is(&name))
                    .map(|f| (f.start, f.end, super::mime::decode_2047(&f.text())))
                    .collect();
                self.step(found.len() as u64 + 1, c.pos)?;
                let n = found.len();
                let mut gone: Vec<(usize, usize)> = Vec::new();
                for (i, (start, end, value)) in found.into_iter().enumerate() {
                    if let Some((idx, from_end)) = index {
                        let nth = if *from_end { n - i } else { i + 1 };
                        if nth as u64 != *idx {
                            continue;
                        }
                    }
                    let hit = match keys {
                        None => true,
                        Some(k) => self.matches(c.pos, *m, &[value], k)?,
                    };
                    if hit {
                        gone.push((start, end));
                    }
                }
                if gone.is_empty() {
                    return Ok(());
                }
                let old = self.head_bytes();
                let mut h = Vec::with_capacity(old.len());
                let mut at = 0;
                for (s, e) in gone {
                    h.extend_from_slice(&old[at..s]);
                    at = e;
                }
                h.extend_from_slice(&old[at..]);
                self.set_head(c.pos, h)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::{compile_script, eval};
    use super::*;

    fn run(script: &str, msg: &[u8]) -> (Vec<String>, Vec<u8>) {
        let s = compile_script(script).unwrap();
        let out = eval::run(
            &s,
            eval::Input {
                message: msg,
                envelope_from: None,
                envelope_to: None,
                now: 0,
                local_offset: 0,
            },
            eval::Limits::default(),
        );
        assert!(out.error.is_none(), "{:?}", out.error);
        let last = out.actions.len() - 1;
        (
            out.actions
                .iter()
                .map(|a| format!("{:?}", a.kind))
                .collect(),
            out.message_for(last, msg).into_owned(),
        )
    }

    const M: &[u8] = b"Received: x\nSubject: a\nX-A: 1\nX-A: 2\nX-A: 3\n\nbody\n";

    #[test]
    fn addheader_first_and_last() {
        let (_, m) = run(
            "require \"editheader\"; addheader \"X-B\" \"b\"; addheader :last \"X-C\" \"c\";",
            M,
        );
        assert_eq!(
            m,
            b"X-B: b\nReceived: x\nSubject: a\nX-A: 1\nX-A: 2\nX-A: 3\nX-C: c\n\nbody\n"
        );
    }

    #[test]
    fn deleteheader_index_last_and_patterns() {
        let (_, m) = run(
            "require \"editheader\"; deleteheader :index 1 :last \"x-a\"; deleteheader :matches \"X-A\" \"1*\";",
            M,
        );
        assert_eq!(m, b"Received: x\nSubject: a\nX-A: 2\n\nbody\n");
    }

    #[test]
    fn protected_fields_stay_and_tests_see_edits() {
        let (acts, m) = run(
            "require [\"editheader\", \"fileinto\"]; deleteheader \"received\"; addheader \"X-Spam\" \"yes\";\
             if header \"x-spam\" \"yes\" { fileinto \"Junk\"; }",
            M,
        );
        assert!(acts[0].contains("Junk"), "{acts:?}");
        assert!(m.starts_with(b"X-Spam: yes\nReceived: x\n"));
        // Adding one is allowed; deleting it is not.
        let (_, m) = run(
            "require \"editheader\"; addheader \"Auto-Submitted\" \"no\"; deleteheader \"auto-submitted\";",
            M,
        );
        assert!(
            m.starts_with(b"Auto-Submitted: no\nReceived: x\n"),
            "{}",
            String::from_utf8_lossy(&m)
        );
    }

    #[test]
    fn an_action_before_an_edit_stores_the_message_as_it_was() {
        let s = compile_script(
            "require [\"editheader\", \"fileinto\"]; fileinto \"A\"; addheader \"X-B\" \"b\";",
        )
        .unwrap();
        let out = eval::run(
            &s,
            eval::Input {
                message: M,
                envelope_from: None,
                envelope_to: None,
                now: 0,
                local_offset: 0,
            },
            eval::Limits::default(),
        );
        assert_eq!(out.message_for(0, M).as_ref(), M);
        assert!(out.actions.len() == 1);
    }

    #[test]
    fn reading_an_edited_header_is_charged() {
        let mut msg = Vec::new();
        for i in 0..2000 {
            msg.extend_from_slice(format!("X-F{i}: {}\n", "v".repeat(50)).as_bytes());
        }
        msg.extend_from_slice(b"\nbody\n");
        let tests = "if header \"x-none\" \"y\" { stop; }\n".repeat(30);
        let s = compile_script(&format!(
            "require \"editheader\"; addheader \"X-A\" \"1\";\n{tests}"
        ))
        .unwrap();
        let input = eval::Input {
            message: &msg,
            envelope_from: None,
            envelope_to: None,
            now: 0,
            local_offset: 0,
        };
        let out = eval::run(&s, input, eval::Limits::default());
        let e = out.error.expect("the budget stops it");
        assert!(e.msg.contains("step budget"), "{e}");
        // Unedited, the same tests are cheap.
        let s = compile_script(&tests).unwrap();
        assert!(
            eval::run(&s, input, eval::Limits::default())
                .error
                .is_none()
        );
    }

    #[test]
    fn invalid_names_and_values() {
        assert!(compile_script("require \"editheader\"; addheader \"a b\" \"x\";").is_err());
        assert!(compile_script("require \"editheader\"; deleteheader :last \"a\";").is_err());
        assert!(compile_script("addheader \"a\" \"x\";").is_err());
        let nul =
            "require [\"editheader\", \"encoded-character\"]; addheader \"X\" \"a${hex:00}b\";";
        assert!(compile_script(nul).unwrap_err().msg.contains("value"));
        assert_eq!(field_value("a\nb"), "a\n\tb");
        assert_eq!(field_value("é"), "=?UTF-8?B?w6k=?=");
    }
}
