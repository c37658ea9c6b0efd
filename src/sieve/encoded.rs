//! encoded-character (RFC 5228 section 2.4.2.4): in a script that
//! requires it, `${hex:48 69}` and `${unicode:1F600}` in strings stand for
//! the octets or characters they name, decoded once when the script is
//! compiled.
//!
//! Guarantee: a sequence that is not well formed stays as written (as the
//! RFC says); one that is well formed but names no character (octets that
//! are not UTF-8, a surrogate, a value past U+10FFFF) is a compile error
//! with the string's position. Work and output are linear in the string.

use super::parser::{RawArg, RawCmd, RawTest};
use super::{CompileError, Pos};

/// The extensions the script's leading `require` commands name.
pub fn required_names(raw: &[RawCmd]) -> Vec<String> {
    raw.iter()
        .take_while(|c| c.name == "require")
        .flat_map(|c| c.args.iter())
        .flat_map(|a| match a {
            RawArg::Str(s, _) => vec![s.clone()],
            RawArg::List(l, _) => l.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// Does the script's leading `require` ask for encoded-character?
pub fn required(raw: &[RawCmd]) -> bool {
    required_names(raw).iter().any(|s| s == "encoded-character")
}

/// Decode every string of the tree in place.
pub fn decode_tree(raw: &mut [RawCmd]) -> Result<(), CompileError> {
    for c in raw {
        decode_args(&mut c.args)?;
        for t in &mut c.tests {
            decode_test(t)?;
        }
        if let Some(b) = &mut c.block {
            decode_tree(b)?;
        }
    }
    Ok(())
}

fn decode_test(t: &mut RawTest) -> Result<(), CompileError> {
    decode_args(&mut t.args)?;
    for n in &mut t.tests {
        decode_test(n)?;
    }
    Ok(())
}

fn decode_args(args: &mut [RawArg]) -> Result<(), CompileError> {
    for a in args {
        match a {
            RawArg::Str(s, p) => *s = decode(s, *p)?,
            RawArg::List(l, p) => {
                for s in l.iter_mut() {
                    *s = decode(s, *p)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One encoded sequence's body (between `${hex:` or `${unicode:` and `}`)
/// as the hex numbers it holds, or None when it is not well formed.
fn numbers(body: &str, max_digits: usize) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for w in body
        .split([' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
    {
        if !w.bytes().all(|b| b.is_ascii_hexdigit()) || (max_digits == 2 && w.len() > 2) {
            return None;
        }
        // unicode-hex is 1*HEXDIG: leading zeros are allowed; a value too
        // large for any character is u32::MAX (an error, not a wrap).
        let digits = w.trim_start_matches('0');
        out.push(if digits.len() > 6 {
            u32::MAX
        } else {
            u32::from_str_radix(w.get(w.len().saturating_sub(6)..).unwrap_or(w), 16).ok()?
        });
    }
    // At least one number (RFC 5228 8.1, hex-pair-seq).
    (!out.is_empty()).then_some(out)
}

/// Decode the encoded characters of one string.
pub fn decode(s: &str, pos: Pos) -> Result<String, CompileError> {
    if !s.contains("${") {
        return Ok(s.to_string());
    }
    let err = |msg: String| CompileError { pos, msg };
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let (kind, body_start) = match after.find(':') {
            Some(c) if after[..c].eq_ignore_ascii_case("hex") => ("hex", c + 1),
            Some(c) if after[..c].eq_ignore_ascii_case("unicode") => ("unicode", c + 1),
            _ => {
                out.push_str("${");
                rest = after;
                continue;
            }
        };
        let Some(end) = after[body_start..].find('}') else {
            out.push_str("${");
            rest = after;
            continue;
        };
        let body = &after[body_start..body_start + end];
        let nums = numbers(body, if kind == "hex" { 2 } else { 6 });
        match nums {
            None => {
                // Not well formed: left as written.
                out.push_str("${");
                rest = after;
                continue;
            }
            Some(nums) if kind == "hex" => {
                let bytes: Vec<u8> = nums.iter().map(|&n| n as u8).collect();
                let text = String::from_utf8(bytes)
                    .map_err(|_| err(format!("encoded-character: ${{hex:{body}}} is not UTF-8")))?;
                out.push_str(&text);
            }
            Some(nums) => {
                for n in nums {
                    let c = char::from_u32(n).ok_or_else(|| {
                        err(format!(
                            "encoded-character: U+{n:X} in ${{unicode:{body}}} is not a character"
                        ))
                    })?;
                    out.push(c);
                }
            }
        }
        rest = &after[body_start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<String, CompileError> {
        decode(s, Pos::default())
    }

    #[test]
    fn hex_and_unicode_sequences() {
        assert_eq!(d("${hex:40}").unwrap(), "@");
        assert_eq!(d("a${HEX: 24 24 }b").unwrap(), "a$$b");
        assert_eq!(d("${unicode:40}${Unicode:1F600}").unwrap(), "@😀");
        assert_eq!(d("${UnICoDE:0000040}").unwrap(), "@");
        assert!(d("${unicode:1000000040}").is_err());
        assert_eq!(d("${hex:c3 a9}").unwrap(), "é");
        // Not well formed: as written.
        for s in [
            "${hex:xyz}",
            "${hex:123}",
            "${hex:40",
            "${other:40}",
            "${x}",
            "${hex:}x",
        ] {
            assert_eq!(d(s).unwrap(), s, "{s}");
        }
        assert!(d("${unicode:D800}").is_err());
        assert!(d("${unicode:110000}").is_err());
        assert!(d("${hex:ff}").is_err());
    }
}
