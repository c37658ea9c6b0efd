//! A message as raw bytes plus a view of its header block.
//!
//! This module owns line-ending normalisation and header edits made at final
//! delivery (Return-Path, Delivered-To). Its guarantee: the body is never
//! touched: edits only add or drop whole header fields, everything else is
//! byte for byte what came in (apart from CRLF -> LF and a final newline).
//! Nothing here fails on malformed input: a header block that is not one is
//! simply a message whose headers we cannot find, and it is stored as is.

/// Turn CRLF line endings into LF and make sure the data ends with a newline.
///
/// Bare CRs are left alone (they are data, not line ends). Works in place in
/// one pass so 50 MB bodies are not copied twice.
pub fn normalize(mut data: Vec<u8>) -> Vec<u8> {
    if memchr::memmem::find(&data, b"\r\n").is_some() {
        let mut w = 0;
        let n = data.len();
        let mut r = 0;
        while r < n {
            if data[r] == b'\r' && r + 1 < n && data[r + 1] == b'\n' {
                r += 1;
                continue;
            }
            data[w] = data[r];
            w += 1;
            r += 1;
        }
        data.truncate(w);
    }
    if data.last().is_some_and(|&c| c != b'\n') {
        data.push(b'\n');
    }
    data
}

/// True when the data holds nothing but whitespace: no message at all.
pub fn is_blank(data: &[u8]) -> bool {
    data.iter().all(|c| c.is_ascii_whitespace())
}

/// If `data` starts with an mbox `From ` line (as an MTA with the `F` flag or
/// a shell user might pass), split it off: returns (envelope sender, rest).
pub fn split_from_line(data: &[u8]) -> Option<(String, &[u8])> {
    if !data.starts_with(b"From ") {
        return None;
    }
    let end = data
        .iter()
        .position(|&c| c == b'\n')
        .map_or(data.len(), |i| i + 1);
    let sender = from_line_sender(&data[..end]);
    Some((sender, &data[end..]))
}

/// The envelope sender of a `From sender date` line (`MAILER-DAEMON` when empty).
pub fn from_line_sender(line: &[u8]) -> String {
    let rest = line.strip_prefix(b"From ").unwrap_or(line);
    let tok: Vec<u8> = rest
        .iter()
        .copied()
        .skip_while(|c| *c == b' ')
        .take_while(|c| !c.is_ascii_whitespace())
        .collect();
    let s = String::from_utf8_lossy(&tok).into_owned();
    if s.is_empty() || s == "<>" {
        "MAILER-DAEMON".to_string()
    } else {
        s
    }
}

/// One header field: its name and its raw value (folding kept, no trailing newline).
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// Field name as written (compare with [`Field::is`]).
    pub name: &'a [u8],
    /// Everything after the colon, continuation lines included.
    pub value: &'a [u8],
    /// Byte range of the whole field (with its final newline) in the message.
    pub start: usize,
    /// End of the field's range.
    pub end: usize,
}

impl Field<'_> {
    /// Case-insensitive name comparison.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value unfolded and trimmed, lossily decoded.
    pub fn text(&self) -> String {
        let unfolded: Vec<u8> = self
            .value
            .iter()
            .map(|&c| if c == b'\n' || c == b'\r' { b' ' } else { c })
            .collect();
        String::from_utf8_lossy(&unfolded).trim().to_string()
    }
}

/// A normalised message (LF line endings) and the end of its header block.
#[derive(Debug, Clone)]
pub struct Message {
    data: Vec<u8>,
    /// Index just past the blank line that ends the headers (or the end of
    /// data when there is no body).
    header_end: usize,
}

impl Message {
    /// Wrap normalised bytes (see [`normalize`]).
    pub fn new(data: Vec<u8>) -> Message {
        let header_end = find_header_end(&data);
        Message { data, header_end }
    }

    /// The bytes to store.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Consume into the bytes to store.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    /// The header fields, in order. Lines that are not fields (no colon,
    /// bad name) are skipped, never fatal.
    pub fn fields(&self) -> Vec<Field<'_>> {
        fields(&self.data[..self.header_end])
    }

    /// The line that ended the header block because it is neither a field
    /// nor a continuation (`quite Delivered-To: x`), with its 1-based line
    /// number; `None` when a blank line or the end of data ended it. What
    /// follows it is body to every reader, so a reader should say so
    /// (Python's email parser records it as a defect).
    pub fn stray_line(&self) -> Option<(usize, &[u8])> {
        let rest = &self.data[self.header_end..];
        if self.header_end == 0 || self.data.get(self.header_end - 1) != Some(&b'\n') {
            return None;
        }
        let before = &self.data[..self.header_end];
        if before.ends_with(b"\n\n") || before == b"\n" || rest.is_empty() {
            return None;
        }
        let line = rest.split(|&c| c == b'\n').next().unwrap_or(rest);
        let n = memchr::memchr_iter(b'\n', before).count() + 1;
        Some((n, line))
    }

    /// Values of every field called `name`, unfolded.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.fields()
            .into_iter()
            .filter(|f| f.is(name))
            .map(|f| f.text())
            .collect()
    }

    /// The Message-ID, angle brackets and surrounding space removed.
    pub fn message_id(&self) -> Option<String> {
        let v = self.header_values("Message-ID").into_iter().next()?;
        let v = v
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        if v.is_empty() {
            None
        } else {
            Some(v.to_string())
        }
    }

    /// Does the message already carry `Delivered-To: addr`? (a mail loop)
    pub fn delivered_to(&self, addr: &str) -> bool {
        let want = bare_address(addr);
        self.header_values("Delivered-To")
            .iter()
            .any(|v| bare_address(v).eq_ignore_ascii_case(&want))
    }

    /// Drop every field called `name` and put `lines` (complete header lines,
    /// each ending in `\n`) at the top. The body is copied untouched.
    pub fn replace_at_top(&mut self, drop: &[&str], lines: &[String]) {
        let doomed: Vec<(usize, usize)> = self
            .fields()
            .into_iter()
            .filter(|f| drop.iter().any(|d| f.is(d)))
            .map(|f| (f.start, f.end))
            .collect();
        if doomed.is_empty() && lines.is_empty() {
            return;
        }
        let added: usize = lines.iter().map(|l| l.len()).sum();
        let mut out = Vec::with_capacity(self.data.len() + added);
        for l in lines {
            out.extend_from_slice(l.as_bytes());
        }
        let mut pos = 0;
        for (s, e) in doomed {
            out.extend_from_slice(&self.data[pos..s]);
            pos = e;
        }
        out.extend_from_slice(&self.data[pos..]);
        *self = Message::new(out);
    }
}

/// `"Name <a@b>"`, `<a@b>`, ` a@b ` -> `a@b`.
pub fn bare_address(s: &str) -> String {
    let s = s.trim();
    if let (Some(l), Some(r)) = (s.rfind('<'), s.rfind('>'))
        && l < r
    {
        return s[l + 1..r].trim().to_string();
    }
    s.to_string()
}

/// Where the header block ends: just past the first empty line, or at the
/// first line that cannot be a header or continuation (a message whose
/// "headers" are garbage has no headers), or at the end of data.
fn find_header_end(data: &[u8]) -> usize {
    let mut pos = 0;
    while pos < data.len() {
        let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i + 1);
        let line = &data[pos..end];
        if line == b"\n" {
            return end;
        }
        let continuation = line[0] == b' ' || line[0] == b'\t';
        if !continuation && field_name(line).is_none() {
            return pos;
        }
        pos = end;
    }
    data.len()
}

/// The field name of a line `Name: value`, if it is one (RFC 5322 ftext:
/// printable ASCII except colon; we also refuse spaces before the colon
/// beyond the obsolete trailing-WSP form).
fn field_name(line: &[u8]) -> Option<&[u8]> {
    field_name_at(line).map(|(name, _)| name)
}

/// [`field_name`] and where its colon is.
fn field_name_at(line: &[u8]) -> Option<(&[u8], usize)> {
    let colon = memchr::memchr(b':', line)?;
    let name = &line[..colon];
    let trimmed = name.trim_ascii_end();
    if trimmed.is_empty() || !trimmed.iter().all(|&c| (33..=126).contains(&c)) {
        return None;
    }
    Some((trimmed, colon))
}

/// Parse the fields of a header block (LF line endings).
pub fn fields(block: &[u8]) -> Vec<Field<'_>> {
    // Room for a usual header block's fields, so that it grows once or never.
    let mut out: Vec<Field<'_>> = Vec::with_capacity(16);
    let mut pos = 0;
    while pos < block.len() {
        let end = memchr::memchr(b'\n', &block[pos..]).map_or(block.len(), |i| pos + i + 1);
        let line = &block[pos..end];
        if line == b"\n" {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = out.last_mut()
                && last.end == pos
            {
                last.end = end;
                let vstart = last.value.as_ptr() as usize - block.as_ptr() as usize;
                last.value = trim_newline(&block[vstart..end]);
            }
        } else if let Some((name, colon)) = field_name_at(line) {
            out.push(Field {
                name,
                value: trim_newline(&block[pos + colon + 1..end]),
                start: pos,
                end,
            });
        }
        pos = end;
    }
    out
}

fn trim_newline(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\n").unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stray_line_that_ends_the_header_block_is_reported() {
        let m =
            Message::new(b"Received: x\n  y\nquite Delivered-To: z\nSubject: s\n\nbody\n".to_vec());
        assert_eq!(m.stray_line(), Some((3, &b"quite Delivered-To: z"[..])));
        assert_eq!(m.fields().len(), 1);
        for fine in [
            &b"Subject: s\n\nquite: body\n"[..],
            b"Subject: s\n",
            b"Subject: s",
            b"\nbody\n",
            b"",
        ] {
            assert_eq!(Message::new(fine.to_vec()).stray_line(), None, "{fine:?}");
        }
    }

    #[test]
    fn crlf_becomes_lf_and_final_newline_is_added() {
        assert_eq!(normalize(b"a\r\nb\rc\r\n\r\nd".to_vec()), b"a\nb\rc\n\nd\n");
        assert_eq!(normalize(Vec::new()), b"");
    }

    #[test]
    fn headers_are_found_and_edited_without_touching_the_body() {
        let mut m = Message::new(
            b"Return-Path: <old@x>\nSubject: hi\n folded\nMessage-ID:  <id@x> \n\nReturn-Path: body\n".to_vec(),
        );
        assert_eq!(m.message_id().as_deref(), Some("id@x"));
        assert_eq!(m.header_values("subject"), vec!["hi  folded"]);
        m.replace_at_top(&["Return-Path"], &["Return-Path: <new@y>\n".into()]);
        assert_eq!(
            m.bytes(),
            b"Return-Path: <new@y>\nSubject: hi\n folded\nMessage-ID:  <id@x> \n\nReturn-Path: body\n"
        );
    }

    #[test]
    fn loops_are_detected_case_insensitively() {
        let m = Message::new(b"Delivered-To: Bob@Example.org\n\nx\n".to_vec());
        assert!(m.delivered_to("<bob@example.org>"));
        assert!(!m.delivered_to("alice@example.org"));
    }

    #[test]
    fn garbage_has_no_headers() {
        let m = Message::new(b"\x00\xff no colon here\nDelivered-To: a@b\n".to_vec());
        assert!(m.fields().is_empty());
        assert!(!m.delivered_to("a@b"));
    }

    #[test]
    fn from_line_is_split_off() {
        let (s, rest) = split_from_line(b"From a@b Thu Jan  1 00:00:00 1970\nX: y\n").unwrap();
        assert_eq!(s, "a@b");
        assert_eq!(rest, b"X: y\n");
        assert!(split_from_line(b"From: a@b\n").is_none());
    }
}
