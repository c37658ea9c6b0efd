//! The DATA payload: the one place a message becomes SMTP's wire form.
//!
//! Guarantee: **the body cannot end the DATA early.** Every bare LF and
//! bare CR becomes CRLF, lines starting with `.` are dot-stuffed, a final
//! CRLF is added when missing and `.` CRLF ends the payload, so the "SMTP
//! smuggling" shapes `\n.\n`, `\r\n.\r` and `\n.\r\n` arrive as
//! dot-stuffed lines, never as an end of data. (The server side adds the
//! reverse here: un-stuffing up to the terminator.)

/// Encode a message for DATA: bare LF and bare CR become CRLF, lines starting
/// with `.` get another `.`, a final CRLF is added when missing, and `.` CRLF
/// ends it. The result is the exact bytes to write after the 354.
pub fn encode_data(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 32 + 5);
    let mut at_line_start = true;
    let mut i = 0;
    while i < msg.len() {
        let b = msg[i];
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if msg.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_data_safely() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
            (b"a\nb", b"a\r\nb\r\n.\r\n"),
            (b"", b".\r\n"),
            (b"a\n.\nb\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r\n.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b".\n..x\n", b"..\r\n...x\r\n.\r\n"),
            (b"a\rb\r", b"a\r\nb\r\n.\r\n"),
            (b"x.y\n", b"x.y\r\n.\r\n"),
            (b"\r\r\n\n", b"\r\n\r\n\r\n.\r\n"),
        ];
        for (msg, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&encode_data(msg)),
                String::from_utf8_lossy(want),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
        // No shape ends the data early: the only "\r\n.\r\n" is the end.
        let nasty = b"x\n.\n\r\n.\r\r.\n\n.\r\n.\r\r\n.\r\n";
        let enc = encode_data(nasty);
        let end = enc.windows(5).position(|w| w == b"\r\n.\r\n").unwrap();
        assert_eq!(end + 5, enc.len());
        assert!(!enc.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'));
    }
}
