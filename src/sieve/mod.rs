//! Sieve mail filtering (RFC 5228), our own interpreter: a lexer and a
//! parser with line and column on every node ([`lexer`], [`parser`]), a
//! compiler that checks commands, tests, tags and `require`
//! ([`compile`]), and a tree-walking evaluator that yields the actions with
//! the line and test that caused each ([`eval`]). Extensions:
//! [`compile::EXTENSIONS`].
//!
//! Written from the RFCs (5228, 5229, 5230, 5231, 5232, 5233, 5173, 5260, 7352,
//! 5429, 5490, 3894); no code from Pigeonhole or sieve-rs (AGPL), whose
//! licences a MIT OR Apache-2.0 toolkit cannot take.
//!
//! Guarantees: compiling and running never panic and never print; a run
//! is bounded in steps and memory ([`eval::Limits`]) whatever the script
//! and the message; nothing here stores or sends: the caller carries out
//! the [`eval::Action`]s, so a dry run and a delivery see the same list.
//! What is remembered between messages (`duplicate`, vacation replies) is
//! read through [`duplicate::Seen`] and written by the caller
//! ([`duplicate::Memory`]); [`vacation`] decides and builds a reply.

pub mod compile;
pub mod duplicate;
pub mod encoded;
pub mod eval;
pub mod lexer;
pub mod mime;
pub mod parser;
pub mod vacation;

#[cfg(test)]
mod tests;

use std::fmt;

pub use compile::{EXTENSIONS, Script};
pub use eval::{Action, ActionKind, Input, Limits, Outcome, run, run_with};

/// A place in the script: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Why a script does not compile, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub msg: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.pos.line, self.pos.col, self.msg
        )
    }
}

impl std::error::Error for CompileError {}

/// Why a run stopped, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeError {
    /// The command or test running.
    pub pos: Pos,
    /// What.
    pub msg: String,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.pos.line, self.pos.col, self.msg
        )
    }
}

impl std::error::Error for RuntimeError {}

/// Largest script accepted, in bytes.
pub const MAX_SCRIPT: usize = 1 << 20;

/// Compile a script's text; the first error.
pub fn compile_script(src: &str) -> Result<Script, CompileError> {
    compile_script_all(src).map_err(|mut e| e.swap_remove(0))
}

/// Compile a script's text; every error, in script order (at least one,
/// at most [`compile::MAX_ERRORS`]). A lexer or parser error is the only
/// one (the structure is lost there); past that, the compiler goes on at
/// the next command after each error, as sievec does.
pub fn compile_script_all(src: &str) -> Result<Script, Vec<CompileError>> {
    if src.len() > MAX_SCRIPT {
        return Err(vec![CompileError {
            pos: Pos { line: 1, col: 1 },
            msg: format!("script larger than {MAX_SCRIPT} bytes"),
        }]);
    }
    let toks = lexer::tokenize(src).map_err(|e| vec![e])?;
    let lines = src.split('\n').count() as u32;
    let last_col = src.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    let raw = parser::parse(
        &toks,
        Pos {
            line: lines.max(1),
            col: last_col,
        },
    )
    .map_err(|e| vec![e])?;
    compile::compile_all(src, &raw)
}
