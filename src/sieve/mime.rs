//! What the Sieve tests read from a message: header values decoded per
//! RFC 2047, addresses split into parts, the text of a body (RFC 5173
//! `:text`/`:content`, MIME parts walked to a bounded depth) and dates;
//! and, the other way, RFC 2047 words for what Sieve writes into a field.
//!
//! Guarantee: never panics on any input; work is linear in the message
//! (MIME nesting bounded by [`MAX_MIME_DEPTH`], parts by [`MAX_PARTS`]).

use base64::Engine;

use crate::message::{self, Field};

/// Deepest MIME nesting walked by the body test.
pub const MAX_MIME_DEPTH: usize = 8;
/// Most MIME parts looked at by one body test.
pub const MAX_PARTS: usize = 256;

/// `s` as RFC 2047 encoded words (UTF-8, base64) of at most 45 input
/// bytes each, cut between characters, joined by `fold` (a newline and
/// the white space that continues the field): what the header fields
/// Sieve writes (editheader, vacation) carry for text that is not plain
/// ASCII.
pub fn encode_2047(s: &str, fold: &str) -> String {
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if cur.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(fold)
}

/// Decode RFC 2047 encoded words (`=?charset?B|Q?text?=`) in a header value.
/// UTF-8, US-ASCII and ISO-8859-1 are decoded; other charsets are read as
/// UTF-8 where valid (Windows-1252 as Latin-1). Blanks between adjacent
/// encoded words are dropped, as the RFC says. Malformed words stay as
/// written.
pub fn decode_2047(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut last_was_word = false;
    let mut pending_blank = String::new();
    while !rest.is_empty() {
        if let Some(start) = rest.find("=?") {
            let before = &rest[..start];
            if let Some((decoded, used)) = encoded_word(&rest[start..]) {
                if last_was_word && before.chars().all(|c| c == ' ' || c == '\t') {
                    // blanks between two encoded words vanish
                } else {
                    out.push_str(&pending_blank);
                    out.push_str(before);
                }
                pending_blank.clear();
                out.push_str(&decoded);
                rest = &rest[start + used..];
                last_was_word = true;
                continue;
            }
            out.push_str(&pending_blank);
            pending_blank.clear();
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            last_was_word = false;
        } else {
            out.push_str(&pending_blank);
            out.push_str(rest);
            break;
        }
    }
    out
}

/// One encoded word at the start of `s`: its text and the bytes used.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let q1 = inner.find('?')?;
    let charset = &inner[..q1];
    let after = &inner[q1 + 1..];
    let q2 = after.find('?')?;
    let enc = &after[..q2];
    let text_start = &after[q2 + 1..];
    let end = text_start.find("?=")?;
    let text = &text_start[..end];
    if text.contains(' ') || charset.is_empty() {
        return None;
    }
    let bytes = match enc {
        "B" | "b" => base64::engine::general_purpose::STANDARD
            .decode(text.trim_end_matches('='))
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim_end_matches('='))
            })
            .ok()?,
        "Q" | "q" => {
            let mut v = Vec::with_capacity(text.len());
            let b = text.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'_' => v.push(b' '),
                    b'=' => {
                        let h = b.get(i + 1..i + 3)?;
                        let h = std::str::from_utf8(h).ok()?;
                        v.push(u8::from_str_radix(h, 16).ok()?);
                        i += 2;
                    }
                    c => v.push(c),
                }
                i += 1;
            }
            v
        }
        _ => return None,
    };
    let used = 2 + q1 + 1 + q2 + 1 + end + 2;
    Some((charset_decode(charset, &bytes), used))
}

/// Bytes in `charset` to a string (see [`decode_2047`] for what is known).
pub fn charset_decode(charset: &str, bytes: &[u8]) -> String {
    let cs = charset.split('*').next().unwrap_or("").to_ascii_lowercase();
    match cs.as_str() {
        "iso-8859-1" | "latin1" | "iso8859-1" | "windows-1252" | "cp1252" => {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The decoded values of the header fields named `name`, in order.
pub fn header_values(fields: &[Field<'_>], name: &str) -> Vec<String> {
    fields
        .iter()
        .filter(|f| f.is(name))
        .map(|f| decode_2047(&unfold(f.value)))
        .collect()
}

/// A field's value unfolded as RFC 5322 2.2.3 says (the line breaks
/// removed, the blanks after them kept) and trimmed.
pub fn unfold(value: &[u8]) -> String {
    let v: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&c| c != b'\n' && c != b'\r')
        .collect();
    String::from_utf8_lossy(&v).trim().to_string()
}

/// The addr-specs in an address-list header value (display names, comments,
/// group syntax and angle brackets removed). A value that is not an address
/// list yields its trimmed text as one "address", as Pigeonhole does for
/// unparsable values.
pub fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut angle: Option<String> = None;
    let mut in_quote = false;
    let mut comment = 0usize;
    let mut chars = value.chars();
    let flush = |cur: &mut String, angle: &mut Option<String>, out: &mut Vec<String>| {
        let a = match angle.take() {
            Some(a) => a,
            None => cur.split_whitespace().collect::<Vec<_>>().join(""),
        };
        let a = a.trim().to_string();
        if !a.is_empty() {
            out.push(a);
        }
        cur.clear();
    };
    while let Some(c) = chars.next() {
        if comment > 0 {
            match c {
                '(' => comment += 1,
                ')' => comment -= 1,
                '\\' => {
                    chars.next();
                }
                _ => {}
            }
            continue;
        }
        if in_quote {
            match c {
                '"' => in_quote = false,
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                _ => cur.push(c),
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '(' => comment = 1,
            '<' => {
                let mut a = String::new();
                let mut depth = 0usize;
                while let Some(n) = chars.next() {
                    // Comments inside the brackets are dropped too.
                    match n {
                        '(' => depth += 1,
                        ')' if depth > 0 => depth -= 1,
                        '\\' if depth > 0 => {
                            chars.next();
                        }
                        '>' if depth == 0 => break,
                        _ if depth > 0 => {}
                        _ => a.push(n),
                    }
                }
                // A source route (<@a,@b:x@y>) is dropped.
                let a = match a.rfind(':') {
                    Some(i) if a.starts_with('@') => a[i + 1..].to_string(),
                    _ => a,
                };
                angle = Some(a);
            }
            ':' => cur.clear(), // group name
            ',' | ';' => flush(&mut cur, &mut angle, &mut out),
            _ => cur.push(c),
        }
    }
    flush(&mut cur, &mut angle, &mut out);
    if out.is_empty() && !value.trim().is_empty() {
        out.push(value.trim().to_string());
    }
    out
}

/// Split an address into local part and domain (at the last `@`).
pub fn split_address(a: &str) -> (&str, Option<&str>) {
    match a.rfind('@') {
        Some(i) => (&a[..i], Some(&a[i + 1..])),
        None => (a, None),
    }
}

/// The parameter `name` of a structured header value (`boundary=...`).
fn param(value: &str, name: &str) -> Option<String> {
    for p in value.split(';').skip(1) {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            return Some(v.to_string());
        }
    }
    None
}

/// A MIME entity's content type (lower-cased `type/subtype`; `text/plain`
/// when missing), charset and transfer encoding.
fn entity_type(fields: &[Field<'_>]) -> (String, Option<String>, String, Option<String>) {
    let ct = fields
        .iter()
        .find(|f| f.is("Content-Type"))
        .map(|f| f.text());
    let cte = fields
        .iter()
        .find(|f| f.is("Content-Transfer-Encoding"))
        .map(|f| f.text().to_ascii_lowercase())
        .unwrap_or_default();
    // RFC 2045 6.4: an entity with an unrecognised transfer encoding is
    // treated as application/octet-stream (it cannot be decoded).
    let known = ["", "7bit", "8bit", "binary", "quoted-printable", "base64"];
    if !known.contains(&cte.trim()) {
        let t = ct
            .as_deref()
            .and_then(|v| v.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| t.starts_with("multipart/"))
            .unwrap_or_else(|| "application/octet-stream".into());
        let boundary = ct.as_deref().and_then(|v| param(v, "boundary"));
        return (t, None, cte, boundary);
    }
    match ct {
        Some(v) => {
            let t = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            // A type with more than one "/" is no type at all: its part
            // is not text (as Pigeonhole has it).
            let t = match t.matches('/').count() {
                1 => t,
                0 => "text/plain".into(),
                _ => "application/octet-stream".into(),
            };
            (t, param(&v, "charset"), cte, param(&v, "boundary"))
        }
        None => ("text/plain".into(), None, cte, None),
    }
}

/// Split a whole entity into its header block and body.
fn split_entity(data: &[u8]) -> (&[u8], &[u8]) {
    if data.starts_with(b"\n") {
        return (&[], &data[1..]);
    }
    match memchr::memmem::find(data, b"\n\n") {
        Some(i) => (&data[..i + 1], &data[i + 2..]),
        None => (data, &[]),
    }
}

/// The body of a message (after the blank line ending the header).
pub fn raw_body(msg: &[u8]) -> &[u8] {
    split_entity(msg).1
}

/// Undo a transfer encoding.
fn decode_transfer(cte: &str, body: &[u8]) -> Vec<u8> {
    match cte {
        "base64" => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let clean = String::from_utf8_lossy(&clean);
            base64::engine::general_purpose::STANDARD
                .decode(clean.trim_end_matches('='))
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(clean.trim_end_matches('='))
                })
                .unwrap_or_else(|_| body.to_vec())
        }
        "quoted-printable" => {
            let mut v = Vec::with_capacity(body.len());
            let mut i = 0;
            while i < body.len() {
                if body[i] == b'=' {
                    if body.get(i + 1) == Some(&b'\n') {
                        i += 2;
                        continue;
                    }
                    if let (Some(a), Some(b)) = (body.get(i + 1), body.get(i + 2))
                        && let (Some(a), Some(b)) =
                            ((*a as char).to_digit(16), (*b as char).to_digit(16))
                    {
                        v.push((a * 16 + b) as u8);
                        i += 3;
                        continue;
                    }
                }
                v.push(body[i]);
                i += 1;
            }
            v
        }
        _ => body.to_vec(),
    }
}

/// Does content type `t` match one of the `:content` types (`""` all,
/// `"text"` every text subtype, `"text/html"` exactly)?
fn type_matches(t: &str, wanted: &[String]) -> bool {
    wanted.iter().any(|w| {
        let w = w.to_ascii_lowercase();
        w.is_empty()
            || if w.contains('/') {
                w == t
            } else {
                t.split('/').next() == Some(w.as_str())
            }
    })
}

/// The decoded texts of the parts whose type matches `types` (for `:text`,
/// `types` is `["text"]`), multipart containers walked, in order.
pub fn body_parts(msg: &[u8], types: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut budget = MAX_PARTS;
    walk(msg, types, false, 0, &mut out, &mut budget);
    out
}

/// The body as `:text` reads it (RFC 5173 5.2): the text parts (XHTML
/// too), HTML turned into its text (tags dropped, a few entities decoded), as
/// Pigeonhole does.
pub fn body_text(msg: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut budget = MAX_PARTS;
    walk(msg, &["text".to_string()], true, 0, &mut out, &mut budget);
    out
}

/// The text of an HTML document: tags, comments and the content of
/// `script` and `style` dropped, tags that break lines as line breaks,
/// the common entities decoded. Linear in the input.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with("<!--") {
            i += lower[i..].find("-->").map_or(html.len() - i, |e| e + 3);
            continue;
        }
        if rest.starts_with('<') {
            let end = rest.find('>').map_or(rest.len(), |e| e + 1);
            let inner = &lower[i + 1..i + end];
            let closing = inner.starts_with('/');
            let tag = inner.trim_start_matches('/');
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            i += end;
            if !closing && (name == "script" || name == "style") && !lower[..i].ends_with("/>") {
                let close = format!("</{name}");
                if let Some(e) = lower[i..].find(&close) {
                    i += e;
                } else {
                    i = html.len();
                }
                continue;
            }
            if !closing
                && matches!(
                    name.as_str(),
                    "br" | "p" | "div" | "tr" | "li" | "h1" | "h2" | "h3"
                )
            {
                out.push('\n');
            }
            continue;
        }
        if rest.starts_with('&') {
            let ent = [
                ("&amp;", '&'),
                ("&lt;", '<'),
                ("&gt;", '>'),
                ("&quot;", '"'),
                ("&apos;", '\''),
                ("&nbsp;", ' '),
            ];
            if let Some((e, c)) = ent.iter().find(|(e, _)| lower[i..].starts_with(e)) {
                out.push(*c);
                i += e.len();
                continue;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn walk(
    entity: &[u8],
    types: &[String],
    text: bool,
    depth: usize,
    out: &mut Vec<String>,
    budget: &mut usize,
) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let (head, body) = split_entity(entity);
    let fields = message::fields(head);
    let (t, charset, cte, boundary) = entity_type(&fields);
    if t.starts_with("multipart/")
        && depth < MAX_MIME_DEPTH
        && let Some(b) = boundary.filter(|b| !b.is_empty())
    {
        let delim = format!("--{b}");
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut start: Option<usize> = None;
        let mut at: usize = 0;
        // Where the first delimiter starts and the closing one ends.
        let mut prologue_end: Option<usize> = None;
        let mut epilogue_start: Option<usize> = None;
        for line in body.split_inclusive(|&c| c == b'\n') {
            let l = line.strip_suffix(b"\n").unwrap_or(line);
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            if l.starts_with(delim.as_bytes()) {
                let tail = &l[delim.len()..];
                let closing = tail.starts_with(b"--");
                if closing || tail.iter().all(|c| c.is_ascii_whitespace()) {
                    prologue_end.get_or_insert(at.saturating_sub(1));
                    if closing {
                        epilogue_start = Some(at + line.len());
                    }
                    if let Some(s) = start {
                        // the line break before the delimiter belongs to it
                        let end = at.saturating_sub(1).max(s);
                        parts.push(&body[s..end]);
                    }
                    if closing {
                        start = None;
                        break;
                    }
                    start = Some(at + line.len());
                }
            }
            at += line.len();
        }
        if let Some(s) = start {
            parts.push(&body[s..]);
        }
        // RFC 5173 5.2: a multipart that :content names is searched in
        // its prologue and epilogue, each one string.
        if !text && type_matches(&t, types) {
            let pro = &body[..prologue_end.unwrap_or(body.len()).min(body.len())];
            out.push(String::from_utf8_lossy(pro).into_owned());
            if let Some(e) = epilogue_start.filter(|&e| e < body.len()) {
                out.push(String::from_utf8_lossy(&body[e..]).into_owned());
            }
        }
        for p in parts {
            walk(p, types, text, depth + 1, out, budget);
        }
        return;
    }
    if t.starts_with("multipart/") {
        return;
    }
    // RFC 5173 5.2: a message/rfc822 part that :content names is searched
    // in its header only, as one string; its own parts count when their
    // types are named.
    if t == "message/rfc822" && !text && type_matches(&t, types) {
        out.push(String::from_utf8_lossy(split_entity(body).0).into_owned());
        if depth < MAX_MIME_DEPTH {
            walk(body, types, text, depth + 1, out, budget);
        }
        return;
    }
    let xhtml = text && t == "application/xhtml+xml";
    if type_matches(&t, types) || xhtml {
        let bytes = decode_transfer(&cte, body);
        let s = charset_decode(charset.as_deref().unwrap_or("utf-8"), &bytes);
        out.push(if text && (t == "text/html" || xhtml) {
            html_text(&s)
        } else {
            s
        });
    } else if t == "message/rfc822" && depth < MAX_MIME_DEPTH {
        walk(body, types, text, depth + 1, out, budget);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_with_an_unknown_transfer_encoding_is_no_text() {
        let m = b"Content-Type: text/plain\nContent-Transfer-Encoding: x-frop\n\nhello\n";
        assert!(body_text(m).is_empty());
        let m = b"Content-Type: text/plain\nContent-Transfer-Encoding: 8BIT\n\nhello\n";
        assert_eq!(body_text(m), ["hello\n"]);
    }

    #[test]
    fn a_named_message_rfc822_part_is_searched_in_its_header_only() {
        let m =
            b"Content-Type: message/rfc822\n\nFrom: a@example.org\nSubject: hi\n\nsecret body\n";
        let got = body_parts(m, &["message/rfc822".to_string()]);
        assert_eq!(got, ["From: a@example.org\nSubject: hi\n"]);
        // Its text part counts when text is named.
        let got = body_parts(m, &["text".to_string()]);
        assert_eq!(got, ["secret body\n"]);
    }

    #[test]
    fn encoded_words_are_decoded() {
        assert_eq!(decode_2047("=?UTF-8?B?w6l0w6k=?="), "été");
        assert_eq!(
            decode_2047("=?iso-8859-1?Q?caf=E9_au_lait?= now"),
            "café au lait now"
        );
        assert_eq!(decode_2047("=?utf-8?q?a?= =?utf-8?q?b?="), "ab");
        assert_eq!(decode_2047("x =?utf-8?q?a?= y"), "x a y");
        assert_eq!(decode_2047("=?bad"), "=?bad");
        assert_eq!(decode_2047("=?utf-8?x?abc?="), "=?utf-8?x?abc?=");
        assert_eq!(decode_2047("=?utf-8?q?=4?="), "=?utf-8?q?=4?=");
    }

    #[test]
    fn content_multipart_reads_prologue_and_epilogue() {
        let m = b"Content-Type: multipart/mixed; boundary=b\n\npro\n--b\n\ninner\n--b--\nepi\n";
        assert_eq!(body_parts(m, &["multipart".into()]), vec!["pro", "epi\n"]);
        assert_eq!(body_parts(m, &["text".into()]), vec!["inner"]);
    }

    #[test]
    fn html_becomes_its_text() {
        assert_eq!(
            html_text(
                "<html><head><style>p{}</style></head><body>A &amp; B<br>C<!-- x --><script>if(a<b){}</script></body></html>"
            ),
            "A & B\nC"
        );
        assert_eq!(html_text("<<<<"), "");
        assert_eq!(html_text("é <b>ü"), "é ü");
        let m = b"Content-Type: text/html\n\n<p>Hi <i>there</i></p>\n";
        assert_eq!(body_text(m), vec!["\nHi there\n"]);
        assert_eq!(
            body_parts(m, &["text".into()]),
            vec!["<p>Hi <i>there</i></p>\n"]
        );
    }

    #[test]
    fn addresses_are_split_out() {
        assert_eq!(
            addresses("\"Doe, J\" <j@x.org>, b@y.net (Bob), grp: c@z;"),
            vec!["j@x.org", "b@y.net", "c@z"]
        );
        assert_eq!(addresses("<@r.example:u@d.example>"), vec!["u@d.example"]);
        // Nothing parsed: the value itself, as Pigeonhole does.
        assert_eq!(
            addresses(" undisclosed-recipients:; "),
            vec!["undisclosed-recipients:;"]
        );
        assert_eq!(split_address("a+b@c@d"), ("a+b@c", Some("d")));
    }

    #[test]
    fn body_text_walks_multiparts() {
        let m = b"Content-Type: multipart/alternative; boundary=\"B\"\n\npre\n--B\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nhello=20world=\nx\n--B\nContent-Type: text/html\n\n<p>hi</p>\n--B--\nepilogue\n";
        assert_eq!(body_parts(m, &["text/plain".into()]), vec!["hello worldx"]);
        assert_eq!(body_parts(m, &["text".into()]).len(), 2);
        assert_eq!(
            body_parts(b"Subject: x\n\nplain body\n", &["text".into()]),
            vec!["plain body\n"]
        );
    }
}
