//! The Sieve lexer (RFC 5228 section 2): tokens with the line and column
//! where each starts.
//!
//! Guarantee: never panics and always ends; every token and every error
//! carries a 1-based line and column (columns count characters).

use super::{CompileError, Pos};

/// One token's kind and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// An identifier (command or test name), lower-cased.
    Ident(String),
    /// A tagged argument (`:contains`), lower-cased, without the colon.
    Tag(String),
    /// A number with its K/M/G quantifier applied.
    Num(u64),
    /// A quoted or multi-line (`text:`) string, escapes undone.
    Str(String),
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `;`
    Semi,
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Where it starts.
    pub pos: Pos,
    /// Byte offset of its start in the script.
    pub start: usize,
    /// Byte offset just past its end.
    pub end: usize,
}

struct Lexer<'a> {
    src: &'a str,
    at: usize,
    line: u32,
    col: u32,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.at..].chars().next()
    }
    fn peek2(&self) -> Option<char> {
        let mut c = self.src[self.at..].chars();
        c.next();
        c.next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }
    fn err(&self, pos: Pos, msg: impl Into<String>) -> CompileError {
        CompileError {
            pos,
            msg: msg.into(),
        }
    }
}

/// Split `src` into tokens, or the first lexical error.
pub fn tokenize(src: &str) -> Result<Vec<Token>, CompileError> {
    let mut lx = Lexer {
        src,
        at: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    while let Some(c) = lx.peek() {
        let pos = lx.pos();
        let start = lx.at;
        let tok = match c {
            ' ' | '\t' | '\r' | '\n' => {
                lx.bump();
                continue;
            }
            '#' => {
                while let Some(c) = lx.bump() {
                    if c == '\n' {
                        break;
                    }
                }
                continue;
            }
            '/' if lx.peek2() == Some('*') => {
                lx.bump();
                lx.bump();
                loop {
                    match lx.bump() {
                        None => return Err(lx.err(pos, "unterminated /* comment")),
                        Some('*') if lx.peek() == Some('/') => {
                            lx.bump();
                            break;
                        }
                        Some(_) => {}
                    }
                }
                continue;
            }
            '[' | ']' | '(' | ')' | '{' | '}' | ',' | ';' => {
                lx.bump();
                match c {
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    ',' => Tok::Comma,
                    _ => Tok::Semi,
                }
            }
            '"' => {
                lx.bump();
                let mut s = String::new();
                loop {
                    match lx.bump() {
                        None => return Err(lx.err(pos, "unterminated string")),
                        Some('"') => break,
                        // RFC 5228 2.4.2: a backslash quotes the next
                        // character, whatever it is.
                        Some('\\') => match lx.bump() {
                            Some(n) => s.push(n),
                            None => return Err(lx.err(pos, "unterminated string")),
                        },
                        // A line break in a quoted string is CRLF, as in
                        // a text: string (a bare LF becomes CRLF, as
                        // Pigeonhole does).
                        Some('\n') => {
                            if !s.ends_with('\r') {
                                s.push('\r');
                            }
                            s.push('\n');
                        }
                        Some(ch) => s.push(ch),
                    }
                }
                Tok::Str(s)
            }
            ':' => {
                lx.bump();
                let name = ident(&mut lx);
                if name.is_empty() {
                    return Err(lx.err(pos, "':' not followed by a tag name"));
                }
                Tok::Tag(name)
            }
            '0'..='9' => {
                let mut n: u64 = 0;
                while let Some(d) = lx.peek().and_then(|c| c.to_digit(10)) {
                    lx.bump();
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(d)))
                        .ok_or_else(|| lx.err(pos, "number too large"))?;
                }
                let shift = match lx.peek() {
                    Some('k' | 'K') => 10,
                    Some('m' | 'M') => 20,
                    Some('g' | 'G') => 30,
                    _ => 0,
                };
                if shift > 0 {
                    lx.bump();
                    n = n
                        .checked_mul(1 << shift)
                        .ok_or_else(|| lx.err(pos, "number too large"))?;
                }
                Tok::Num(n)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let name = ident(&mut lx);
                if name == "text" && lx.peek() == Some(':') {
                    lx.bump();
                    Tok::Str(multiline(&mut lx, pos)?)
                } else {
                    Tok::Ident(name)
                }
            }
            other => {
                return Err(lx.err(pos, format!("unexpected character {other:?}")));
            }
        };
        out.push(Token {
            tok,
            pos,
            start,
            end: lx.at,
        });
    }
    Ok(out)
}

fn ident(lx: &mut Lexer<'_>) -> String {
    let mut s = String::new();
    while let Some(c) = lx.peek() {
        if c.is_ascii_alphanumeric() || c == '_' {
            s.push(c.to_ascii_lowercase());
            lx.bump();
        } else {
            break;
        }
    }
    s
}

/// The rest of a `text:` string: blanks and an optional comment up to the
/// line end, then lines up to a lone `.`, with leading `..` unstuffed.
fn multiline(lx: &mut Lexer<'_>, pos: Pos) -> Result<String, CompileError> {
    while matches!(lx.peek(), Some(' ' | '\t')) {
        lx.bump();
    }
    if lx.peek() == Some('#') {
        while matches!(lx.peek(), Some(c) if c != '\n') {
            lx.bump();
        }
    }
    if lx.peek() == Some('\r') {
        lx.bump();
    }
    if lx.bump() != Some('\n') {
        return Err(lx.err(pos, "text: must be followed by a line break"));
    }
    let mut s = String::new();
    loop {
        let mut line = String::new();
        let mut ended = false;
        while let Some(c) = lx.bump() {
            if c == '\n' {
                ended = true;
                break;
            }
            line.push(c);
        }
        if line.ends_with('\r') {
            line.pop();
        }
        if line == "." {
            return Ok(s);
        }
        if !ended {
            return Err(lx.err(pos, "unterminated text: string (no line with a lone '.')"));
        }
        let line = line
            .strip_prefix('.')
            .filter(|l| l.starts_with('.'))
            .unwrap_or(&line);
        s.push_str(line);
        s.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn tokens_have_line_and_column() {
        let t = tokenize("if true {\n  keep;\n}").unwrap();
        assert_eq!(t[0].pos, Pos { line: 1, col: 1 });
        assert_eq!(t[3].tok, Tok::Ident("keep".into()));
        assert_eq!(t[3].pos, Pos { line: 2, col: 3 });
        assert_eq!(t[5].pos, Pos { line: 3, col: 1 });
    }

    #[test]
    fn strings_numbers_tags_comments() {
        assert_eq!(
            toks("size :OVER 10K; # c\n/* x */ \"a\\\"b\\\\\" 2M 1g"),
            vec![
                Tok::Ident("size".into()),
                Tok::Tag("over".into()),
                Tok::Num(10240),
                Tok::Semi,
                Tok::Str("a\"b\\".into()),
                Tok::Num(2 << 20),
                Tok::Num(1 << 30),
            ]
        );
    }

    #[test]
    fn multiline_strings_unstuff_dots() {
        assert_eq!(
            toks("text: # note\nline 1\n..dot\n.\n;"),
            vec![Tok::Str("line 1\r\n.dot\r\n".into()), Tok::Semi]
        );
    }

    #[test]
    fn errors_point_at_the_start() {
        let e = tokenize("keep;\n  \"open").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 3 });
        let e = tokenize("x 99999999999999999999").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 3 });
        assert!(tokenize("/* never").is_err());
        assert!(tokenize("text:\nno end").is_err());
        assert!(tokenize("keep @").is_err());
    }
}
