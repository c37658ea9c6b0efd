//! include (RFC 6609): `include [:personal|:global] [:once] [:optional]
//! NAME`, `return` and `global`. A personal script is `NAME.sieve` in
//! the including script's directory ([`super::Env::personal_dir`]), a
//! global one in the configured global directory
//! ([`super::Env::global_dir`]). An included script runs with its own
//! variables; those it and its includer declare `global` are shared.
//! Actions, the implicit keep and the step budget are the one run's.
//!
//! Guarantees: nesting is at most [`MAX_DEPTH`] scripts deep and a run
//! includes at most [`MAX_INCLUDES`] scripts; a script that includes
//! itself (directly or not) is an error, as is a missing script without
//! `:optional` or one that does not compile: each stops the run with a
//! [`RuntimeError`] naming the script and the limit, so the message is
//! kept. Scripts are read once per run (at most [`super::super::MAX_SCRIPT`]
//! bytes each) and names cannot leave their directory.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;

use super::super::compile::{Cmd, Command, Cx, Takes, err, list, valid_var_name};
use super::super::parser::RawCmd;
use super::super::{CompileError, Pos, RuntimeError, Script};
use super::{Flow, MAX_VARS, Run, rt};

/// Deepest include nesting (Pigeonhole's default).
pub const MAX_DEPTH: usize = 10;
/// Most scripts one run includes (Pigeonhole's default).
pub const MAX_INCLUDES: usize = 255;

/// include's per-run state.
#[derive(Default)]
pub(in crate::sieve) struct State {
    /// Shared (global) variables.
    pub globals: HashMap<String, String>,
    /// The names the running script declared `global`.
    pub declared: HashSet<String>,
    /// Scripts included so far (location, name): for `:once`.
    done: HashSet<(bool, String)>,
    /// The include chain now (location, name).
    stack: Vec<(bool, String)>,
    /// Scripts read and compiled, by (location, name).
    cache: HashMap<(bool, String), Rc<Script>>,
    /// Includes carried out.
    count: usize,
    /// Limits the testsuite may lower (0: the default).
    pub max_depth: usize,
    /// See `max_depth`.
    pub max_includes: usize,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("include::State")
            .field("stack", &self.stack)
            .finish()
    }
}

/// Compile `include`, `return` and `global`.
pub(in crate::sieve) fn compile(cx: &mut Cx<'_>, c: &RawCmd) -> Result<Cmd, CompileError> {
    let what = c.name.as_str();
    cx.need("include", c.pos, what)?;
    match what {
        "return" => {
            cx.tags(what, &c.args, &[])?.positional(what, c.pos, "")?;
            Ok(Cmd::Return)
        }
        "global" => {
            cx.need("variables", c.pos, what)?;
            let a = cx.tags(what, &c.args, &[])?.positional(what, c.pos, "l")?;
            let names: Vec<String> = list(&a[0])
                .unwrap_or_default()
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect();
            if let Some(bad) = names.iter().find(|n| !valid_var_name(n)) {
                return Err(err(
                    a[0].pos(),
                    format!("global: invalid variable name {bad:?}"),
                ));
            }
            Ok(Cmd::Global { names })
        }
        _ => {
            let t = cx.tags(
                what,
                &c.args,
                &[
                    ("personal", "", Takes::Nothing),
                    ("global", "", Takes::Nothing),
                    ("once", "", Takes::Nothing),
                    ("optional", "", Takes::Nothing),
                ],
            )?;
            t.only_one(&["personal", "global"], what)?;
            let a = t.positional(what, c.pos, "s")?;
            let name = super::super::compile::one_str(&a[0]).unwrap_or_default();
            if !valid_script_name(&name) {
                return Err(err(
                    a[0].pos(),
                    format!("include: invalid script name {name:?}"),
                ));
            }
            Ok(Cmd::Include {
                global: t.has("global"),
                once: t.has("once"),
                optional: t.has("optional"),
                name,
            })
        }
    }
}

/// A script name that stays in its directory: no `/`, no NUL or control
/// characters, not `.` or `..`, not empty.
pub fn valid_script_name(n: &str) -> bool {
    !n.is_empty()
        && n != "."
        && n != ".."
        && !n.contains('/')
        && !n.chars().any(char::is_control)
        && n.len() <= 255
}

impl Run<'_> {
    /// The value of a variable in the running script's scope.
    pub(super) fn var(&self, name: &str) -> Option<&str> {
        if self.inc.declared.contains(name) {
            self.inc.globals.get(name).map(String::as_str)
        } else {
            self.vars.get(name).map(String::as_str)
        }
    }

    /// Set a variable declared `global`.
    pub(super) fn set_global(
        &mut self,
        pos: Pos,
        name: &str,
        mut v: String,
    ) -> Result<(), RuntimeError> {
        if !self.inc.globals.contains_key(name) && self.inc.globals.len() >= MAX_VARS {
            return Err(rt(pos, format!("more than {MAX_VARS} global variables")));
        }
        if v.len() > self.max_var_len {
            let mut cut = self.max_var_len;
            while !v.is_char_boundary(cut) {
                cut -= 1;
            }
            v.truncate(cut);
        }
        self.step(v.len() as u64, pos)?;
        self.inc.globals.insert(name.to_string(), v);
        Ok(())
    }

    /// `global names`.
    pub(super) fn declare_globals(
        &mut self,
        pos: Pos,
        names: &[String],
    ) -> Result<(), RuntimeError> {
        self.step(names.len() as u64, pos)?;
        for n in names {
            // A local of that name becomes the global (RFC 6609 3.3).
            if let Some(v) = self.vars.remove(n)
                && !self.inc.globals.contains_key(n)
            {
                self.inc.globals.insert(n.clone(), v);
            }
            self.inc.declared.insert(n.clone());
        }
        Ok(())
    }

    fn dir(&self, global: bool) -> Option<PathBuf> {
        #[cfg(test)]
        if let Some(ts) = &self.ts {
            return Some(ts.include_dir(global));
        }
        if global {
            self.env.global_dir.map(PathBuf::from)
        } else {
            self.env.personal_dir.map(PathBuf::from)
        }
    }

    /// Read and compile an included script; `Ok(None)` when it is missing.
    fn load(
        &mut self,
        pos: Pos,
        global: bool,
        name: &str,
    ) -> Result<Option<Rc<Script>>, RuntimeError> {
        let key = (global, name.to_string());
        if let Some(s) = self.inc.cache.get(&key) {
            return Ok(Some(s.clone()));
        }
        let loc = if global { "global" } else { "personal" };
        let Some(dir) = self.dir(global) else {
            return Err(rt(
                pos,
                format!("include: no {loc} script location is configured (script {name:?})"),
            ));
        };
        let path = dir.join(format!("{name}.sieve"));
        // Read at most one byte past the largest script, so a huge file
        // costs no memory.
        let read = std::fs::File::open(&path).and_then(|f| {
            use std::io::Read;
            let mut t = Vec::new();
            f.take(super::super::MAX_SCRIPT as u64 + 1)
                .read_to_end(&mut t)?;
            Ok(t)
        });
        let text = match read {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(rt(pos, format!("include: reading {}: {e}", path.display())));
            }
        };
        self.step(text.len() as u64, pos)?;
        let text = String::from_utf8(text)
            .map_err(|_| rt(pos, format!("include: {} is not UTF-8", path.display())))?;
        let script = super::super::compile_script(&text)
            .map_err(|e| rt(pos, format!("include: {loc} script {name:?}: {e}")))?;
        let script = Rc::new(script);
        self.inc.cache.insert(key, script.clone());
        Ok(Some(script))
    }

    /// Carry out `include`.
    pub(super) fn include(&mut self, c: &Command) -> Result<Flow, RuntimeError> {
        let Cmd::Include {
            global,
            once,
            optional,
            name,
        } = &c.kind
        else {
            return Ok(Flow::Go);
        };
        let key = (*global, name.clone());
        if *once && self.inc.done.contains(&key) {
            return Ok(Flow::Go);
        }
        if self.inc.stack.contains(&key) {
            return Err(rt(
                c.pos,
                format!("include: script {name:?} includes itself (circular include)"),
            ));
        }
        let max_depth = if self.inc.max_depth > 0 {
            self.inc.max_depth
        } else {
            MAX_DEPTH
        };
        if self.inc.stack.len() >= max_depth {
            return Err(rt(
                c.pos,
                format!("include: nested more than {max_depth} scripts deep (script {name:?})"),
            ));
        }
        let max_includes = if self.inc.max_includes > 0 {
            self.inc.max_includes
        } else {
            MAX_INCLUDES
        };
        if self.inc.count >= max_includes {
            return Err(rt(
                c.pos,
                format!("include: more than {max_includes} scripts included (script {name:?})"),
            ));
        }
        let Some(script) = self.load(c.pos, *global, name)? else {
            if *optional {
                return Ok(Flow::Go);
            }
            return Err(rt(
                c.pos,
                format!(
                    "include: {} script {name:?} not found",
                    if *global { "global" } else { "personal" }
                ),
            ));
        };
        self.inc.count += 1;
        self.inc.done.insert(key.clone());
        self.inc.stack.push(key);
        // The included script's own scope.
        let saved = (
            std::mem::take(&mut self.vars),
            std::mem::take(&mut self.inc.declared),
            std::mem::take(&mut self.match_vars),
            self.variables,
        );
        self.variables = script.requires.contains("variables");
        let res = self.block(&script.commands);
        (
            self.vars,
            self.inc.declared,
            self.match_vars,
            self.variables,
        ) = saved;
        self.inc.stack.pop();
        match res? {
            Flow::Stop => Ok(Flow::Stop),
            Flow::Go | Flow::Return => Ok(Flow::Go),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::compile_script;
    use super::super::{Env, Input, Limits, run_env};

    fn go(dir: &std::path::Path, script: &str) -> (Vec<String>, Option<String>) {
        let s = compile_script(script).unwrap();
        let out = run_env(
            &s,
            Input {
                message: b"Subject: x\n\nb\n",
                envelope_from: None,
                envelope_to: None,
                now: 0,
                local_offset: 0,
            },
            Limits::default(),
            Env {
                personal_dir: Some(dir),
                ..Env::default()
            },
        );
        (
            out.actions
                .iter()
                .map(|a| format!("{:?}", a.kind))
                .collect(),
            out.error.map(|e| e.to_string()),
        )
    }

    #[test]
    fn include_once_optional_return_globals_and_limits() {
        let d = tempfile::tempdir().unwrap();
        let w = |n: &str, t: &str| std::fs::write(d.path().join(format!("{n}.sieve")), t).unwrap();
        w(
            "a",
            "require [\"include\", \"variables\", \"fileinto\"]; global \"g\";\
             set \"g\" \"${g}a\"; if true { return; } fileinto \"never\";",
        );
        w("self", "require \"include\"; include \"self\";");
        w("bad", "keep");
        let (acts, e) = go(
            d.path(),
            "require [\"include\", \"variables\", \"fileinto\"]; global \"g\";\
             include \"a\"; include \"a\"; include :once \"a\"; include :optional \"none\";\
             fileinto \"${g}\";",
        );
        assert_eq!(e, None);
        assert_eq!(
            acts[0],
            "FileInto { mailbox: \"aa\", flags: [], create: false, copy: false }"
        );
        let (_, e) = go(d.path(), "require \"include\"; include \"self\";");
        assert!(e.unwrap().contains("circular"));
        let (_, e) = go(d.path(), "require \"include\"; include \"none\";");
        assert!(e.unwrap().contains("not found"));
        let (_, e) = go(d.path(), "require \"include\"; include \"bad\";");
        assert!(e.unwrap().contains("\"bad\""));
        for i in 0..12 {
            w(
                &format!("d{i}"),
                &format!("require \"include\"; include \"d{}\";", i + 1),
            );
        }
        let (_, e) = go(d.path(), "require \"include\"; include \"d0\";");
        assert!(e.unwrap().contains("nested more than 10"));
        assert!(compile_script("require \"include\"; include \"../x\";").is_err());
        assert!(compile_script("require \"include\"; include :personal :global \"x\";").is_err());
    }
}
