//! The Sieve grammar (RFC 5228 section 8.2) over the lexer's tokens, into a
//! generic tree (commands, tests, arguments, blocks) with the position and
//! source span of every node; `compile` turns it into the typed script.
//!
//! Guarantee: never panics; nesting is bounded ([`MAX_DEPTH`]) so a hostile
//! script cannot exhaust the stack.

use super::lexer::{Tok, Token};
use super::{CompileError, Pos};

/// Deepest nesting of blocks and test lists accepted.
pub const MAX_DEPTH: usize = 64;

/// One argument as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawArg {
    /// `:name`
    Tag(String, Pos),
    /// A number.
    Num(u64, Pos),
    /// A single string.
    Str(String, Pos),
    /// A bracketed string list.
    List(Vec<String>, Pos),
}

impl RawArg {
    /// Where it starts.
    pub fn pos(&self) -> Pos {
        match self {
            RawArg::Tag(_, p) | RawArg::Num(_, p) | RawArg::Str(_, p) | RawArg::List(_, p) => *p,
        }
    }
}

/// A test as written: name, arguments, nested tests.
#[derive(Debug, Clone)]
pub struct RawTest {
    /// Lower-cased identifier.
    pub name: String,
    /// Where it starts.
    pub pos: Pos,
    /// Byte span in the script, for reports.
    pub span: (usize, usize),
    /// Arguments in order.
    pub args: Vec<RawArg>,
    /// A test list `(a, b)` or a single test argument.
    pub tests: Vec<RawTest>,
}

/// A command as written.
#[derive(Debug, Clone)]
pub struct RawCmd {
    /// Lower-cased identifier.
    pub name: String,
    /// Where it starts.
    pub pos: Pos,
    /// Arguments in order.
    pub args: Vec<RawArg>,
    /// Test argument(s) (`if`'s condition).
    pub tests: Vec<RawTest>,
    /// The block, if the command ends in one.
    pub block: Option<Vec<RawCmd>>,
}

struct P<'a> {
    toks: &'a [Token],
    at: usize,
    depth: usize,
    end_pos: Pos,
}

impl P<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|t| &t.tok)
    }
    fn pos(&self) -> Pos {
        self.toks.get(self.at).map_or(self.end_pos, |t| t.pos)
    }
    fn err(&self, msg: impl Into<String>) -> CompileError {
        CompileError {
            pos: self.pos(),
            msg: msg.into(),
        }
    }
    fn describe(&self) -> String {
        match self.peek() {
            None => "end of script".into(),
            Some(Tok::Ident(s)) => format!("identifier {s:?}"),
            Some(Tok::Tag(s)) => format!("tag :{s}"),
            Some(Tok::Num(n)) => format!("number {n}"),
            Some(Tok::Str(_)) => "string".into(),
            Some(t) => format!("{t:?}"),
        }
    }
    fn enter(&mut self) -> Result<(), CompileError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }
}

/// Parse a whole script's tokens into commands.
pub fn parse(toks: &[Token], src_len_pos: Pos) -> Result<Vec<RawCmd>, CompileError> {
    let mut p = P {
        toks,
        at: 0,
        depth: 0,
        end_pos: src_len_pos,
    };
    let mut out = Vec::new();
    while p.peek().is_some() {
        out.push(command(&mut p)?);
    }
    Ok(out)
}

fn command(p: &mut P<'_>) -> Result<RawCmd, CompileError> {
    let pos = p.pos();
    let Some(Tok::Ident(name)) = p.peek().cloned() else {
        return Err(p.err(format!("expected a command, found {}", p.describe())));
    };
    p.at += 1;
    let args = arguments(p)?;
    let mut tests = Vec::new();
    if matches!(p.peek(), Some(Tok::LParen)) {
        tests = test_list(p)?;
    } else if matches!(p.peek(), Some(Tok::Ident(_))) {
        tests.push(test(p)?);
    }
    let block = match p.peek() {
        Some(Tok::Semi) => {
            p.at += 1;
            None
        }
        Some(Tok::LBrace) => {
            p.at += 1;
            p.enter()?;
            let mut cmds = Vec::new();
            loop {
                match p.peek() {
                    Some(Tok::RBrace) => {
                        p.at += 1;
                        break;
                    }
                    None => return Err(p.err("missing '}' at the end of a block")),
                    _ => cmds.push(command(p)?),
                }
            }
            p.depth -= 1;
            Some(cmds)
        }
        _ => {
            return Err(p.err(format!(
                "expected ';' or a block after command {name:?}, found {}",
                p.describe()
            )));
        }
    };
    Ok(RawCmd {
        name,
        pos,
        args,
        tests,
        block,
    })
}

fn arguments(p: &mut P<'_>) -> Result<Vec<RawArg>, CompileError> {
    let mut args = Vec::new();
    loop {
        let pos = p.pos();
        match p.peek().cloned() {
            Some(Tok::Tag(t)) => args.push(RawArg::Tag(t, pos)),
            Some(Tok::Num(n)) => args.push(RawArg::Num(n, pos)),
            Some(Tok::Str(s)) => args.push(RawArg::Str(s, pos)),
            Some(Tok::LBracket) => {
                p.at += 1;
                let mut list = Vec::new();
                loop {
                    match p.peek().cloned() {
                        Some(Tok::Str(s)) => list.push(s),
                        _ => {
                            return Err(p.err(format!(
                                "expected a string in a string list, found {}",
                                p.describe()
                            )));
                        }
                    }
                    p.at += 1;
                    match p.peek() {
                        Some(Tok::Comma) => p.at += 1,
                        Some(Tok::RBracket) => break,
                        _ => {
                            return Err(p.err(format!(
                                "expected ',' or ']' in a string list, found {}",
                                p.describe()
                            )));
                        }
                    }
                }
                args.push(RawArg::List(list, pos));
            }
            _ => return Ok(args),
        }
        p.at += 1;
    }
}

fn test(p: &mut P<'_>) -> Result<RawTest, CompileError> {
    let pos = p.pos();
    let start = p.toks.get(p.at).map_or(0, |t| t.start);
    let Some(Tok::Ident(name)) = p.peek().cloned() else {
        return Err(p.err(format!("expected a test, found {}", p.describe())));
    };
    p.at += 1;
    p.enter()?;
    let args = arguments(p)?;
    let tests = match p.peek() {
        Some(Tok::LParen) => test_list(p)?,
        Some(Tok::Ident(_)) => vec![test(p)?],
        _ => Vec::new(),
    };
    p.depth -= 1;
    let end = p.toks[..p.at].last().map_or(start, |t| t.end);
    Ok(RawTest {
        name,
        pos,
        span: (start, end),
        args,
        tests,
    })
}

fn test_list(p: &mut P<'_>) -> Result<Vec<RawTest>, CompileError> {
    p.at += 1; // (
    let mut out = Vec::new();
    loop {
        out.push(test(p)?);
        match p.peek() {
            Some(Tok::Comma) => p.at += 1,
            Some(Tok::RParen) => {
                p.at += 1;
                return Ok(out);
            }
            _ => {
                return Err(p.err(format!(
                    "expected ',' or ')' in a test list, found {}",
                    p.describe()
                )));
            }
        }
    }
}
