//! The POP3 client mail-fetch retrieves with (RFC 1939, CAPA/PIPELINING/
//! UIDL/RESP-CODES per RFC 2449, STLS per RFC 2595, AUTH per RFC 5034, APOP).
//!
//! This module owns the client side of one POP3 session over any
//! [`Exchange`] stream:
//! the greeting, CAPA, STLS, the logins ([`Login`]: SASL PLAIN, LOGIN,
//! XOAUTH2, USER/PASS, APOP), STAT, LIST, UIDL, TOP, pipelined RETR and
//! DELE ([`Pop3::retr_limited`], [`Pop3::dele_many`]) and QUIT, plus the
//! response decoding (status lines, dot-unstuffing of multi-line
//! responses) and the [`header_digest`] that tells messages apart.
//!
//! Guarantees:
//!
//! - **Nothing is deleted by accident.** DELE only marks; the marks take
//!   effect at [`Pop3::quit`] and only when the server answers it `+OK`.
//!   A session dropped without `quit` (error, crash, kill) deletes nothing.
//!   After any I/O error, timeout or malformed response the session is
//!   marked broken: every later command, `quit` included, fails without
//!   sending anything, so a desynchronised stream can never turn into an
//!   unintended command or a commit.
//! - **No plain-text fallback.** With [`TlsMode::Starttls`] a server that
//!   does not offer STLS, or refuses it, is an error; bytes the server sent
//!   after its `+OK` to STLS but before the handshake (an injection attempt)
//!   are an error too.
//! - **Secrets stay secret.** Passwords, tokens and APOP digests go to the
//!   transcript only through [`Transcript::sent_secret`]; they never appear
//!   in errors. User names and passwords holding CR, LF or NUL are refused
//!   before anything is sent (no command injection).
//! - **No panic on any server bytes.** Status lines are limited to
//!   [`MAX_STATUS_LINE`] bytes, lines inside a message to
//!   [`MAX_MESSAGE_LINE`] bytes; longer lines, EOF in the middle of a
//!   response, and anything that is not `+OK`/`-ERR` are errors naming
//!   the server and the command.
//! - **Server text is shown escaped.** Text from the server reaches an
//!   error only through [`printable`]: no control character or bidi
//!   override from a peer gets to the user's terminal raw.
//! - **What a server sends never costs more memory than its limits.** A
//!   retrieved message is read up to the limit the caller gives for it
//!   ([`MAX_MESSAGE`] by default), whatever the server announced; past it
//!   reading stops in the middle of the message and the session is broken
//!   (no QUIT, so nothing is deleted). Preallocation follows the server's
//!   announced size only up to that limit.
//! - **Messages arrive as sent.** A retrieved message is un-dot-stuffed and
//!   its terminator removed; its line ends (CRLF on the wire) are kept, so
//!   the caller decides how to normalise.
//!
//! Error kinds: connection trouble, timeouts and EOF are
//! [`Kind::Temporary`]; a malformed or unexpected response (a bad status
//! line or listing line, a line over its limit) is a protocol error,
//! [`Kind::Unavailable`], as is `-ERR` to a command, with the server's
//! text, except `-ERR` to a login ([`Kind::Auth`]) and the
//! RFC 2449/3206 response codes `[SYS/TEMP]`, `[IN-USE]` and `[LOGIN-DELAY]`
//! ([`Kind::Temporary`]: the mailbox is locked or the server is busy, try
//! later) and `[AUTH]` ([`Kind::Auth`]).
//!
//! Speed: one [`BufReader`] with a large buffer for the whole session,
//! lines found with `memchr` and copied once, straight into the message
//! buffer (no per-line allocation); pipelined commands are written in
//! batches of up to [`RETR_WINDOW`] (RETR) or [`DELE_WINDOW`] (DELE)
//! outstanding commands, refilled when half have been answered. The window
//! bounds what is in flight so that neither side's socket buffers can fill
//! up while the other waits (the commands are tiny; the answers are read as
//! they come). Each answer of a window is an exchange of its own for the
//! connection's deadline ([`crate::proto::pace`]), so a slow but steady server is
//! not cut off in the middle of a long window, and a dripping one still is.
//!
//! [`BufReader`]: std::io::BufReader
//! [`Kind::Auth`]: crate::exit::Kind::Auth
//! [`Kind::Temporary`]: crate::exit::Kind::Temporary
//! [`Kind::Unavailable`]: crate::exit::Kind::Unavailable
//! [`TlsMode::Starttls`]: crate::proto::tls::TlsMode::Starttls
//! [`Transcript::sent_secret`]: crate::proto::transcript::Transcript::sent_secret
//! [`Exchange`]: crate::proto::Exchange

pub mod client;
pub mod response;

pub use client::{DELE_WINDOW, Login, MAX_MESSAGE, Pop3, RETR_WINDOW, TooLarge};
pub use response::{
    Capa, MAX_MESSAGE_LINE, MAX_STATUS_LINE, ReadError, Status, err_kind, parse_status, printable,
    read_line_into, read_multiline, read_multiline_limited, response_code,
};

use md5::{Digest, Md5};

use crate::proto::pop3::response::trim_eol;
use crate::proto::sasl::Secret;

/// The APOP timestamp in a greeting's text: the last `<...>` holding an `@`.
pub fn apop_timestamp(greeting: &str) -> Option<String> {
    let end = greeting.rfind('>')?;
    let start = greeting[..end].rfind('<')?;
    let ts = &greeting[start..=end];
    (ts.contains('@') && ts.bytes().all(|b| (0x21..0x7f).contains(&b))).then(|| ts.to_string())
}

/// The APOP digest: lower-case hex MD5 of the timestamp followed by the
/// secret (RFC 1939, section 7).
pub fn apop_digest(timestamp: &str, secret: &Secret) -> String {
    let mut data = Vec::with_capacity(timestamp.len() + secret.expose().len());
    data.extend_from_slice(timestamp.as_bytes());
    data.extend_from_slice(secret.expose().as_bytes());
    md5(&data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest of a message's header block (up to its first empty line, CR
/// before LF dropped), as lower-case hex: the same for `RETR` and `TOP n 0`
/// of one message, so mail-fetch can tell a message from another that a
/// server lists under the same UIDL and size. Not a security measure: the
/// server chooses what it sends either way.
pub fn header_digest(msg: &[u8]) -> String {
    let mut head = Vec::with_capacity(msg.len().min(64 * 1024));
    for line in msg.split_inclusive(|&b| b == b'\n') {
        let l = trim_eol(line);
        // The first 64 KiB tell messages apart as well as all of it would.
        if l.is_empty() || head.len() >= 64 * 1024 {
            break;
        }
        head.extend_from_slice(l);
        head.push(b'\n');
    }
    md5(&head).iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 (RFC 1321) from RustCrypto, for APOP and [`header_digest`] (the
/// same family as the `sha2` the TLS pinning uses).
fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_rfc_1321() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let vectors: [(&[u8], &str); 7] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"a", "0cc175b9c0f1b6a831c399e269772661"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                b"abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in vectors {
            assert_eq!(
                hex(md5(input)),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn apop_digest_matches_rfc_1939() {
        let greeting = "POP3 server ready <1896.697170952@dbc.mtview.ca.us>";
        let ts = apop_timestamp(greeting).unwrap();
        assert_eq!(ts, "<1896.697170952@dbc.mtview.ca.us>");
        assert_eq!(
            apop_digest(&ts, &Secret::new("tanstaaf")),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
        assert_eq!(apop_timestamp("Dovecot ready."), None);
        assert_eq!(apop_timestamp("ready <no-at-sign>"), None);
    }

    #[test]
    fn header_digest_is_the_same_for_retr_and_top_and_tells_headers_apart() {
        let retr = b"Subject: x\r\nFrom: a\r\n\r\nbody\r\n";
        let top = b"Subject: x\r\nFrom: a\r\n\r\n";
        assert_eq!(header_digest(retr), header_digest(top));
        assert_eq!(
            header_digest(b"Subject: x\nFrom: a\n\nother\n"),
            header_digest(retr)
        );
        assert_ne!(
            header_digest(b"Subject: y\r\nFrom: a\r\n\r\nbody\r\n"),
            header_digest(retr)
        );
        assert_eq!(header_digest(retr).len(), 32);
    }
}
