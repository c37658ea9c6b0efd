//! TLS and the network stream every client (SMTP, LMTP, POP3, IMAP) talks over.
//!
//! Owns: connecting to `host:port` (every resolved address tried in turn,
//! TCP_NODELAY, read/write timeouts), the TLS policy ([`TlsMode`]), the
//! connector (system trust store, an extra CA file, SHA-256 certificate
//! pinning) and [`Stream`], which is plain TCP before STARTTLS and TLS after.
//!
//! Guarantees:
//!
//! - **Verified by default.** Certificates are checked against the system
//!   store (plus `ca_file` when given) and the host name. The only ways to
//!   accept another certificate are pinning its SHA-256 fingerprint (then
//!   exactly that certificate is accepted, whatever signed it) or
//!   [`TlsOptions::opportunistic`], which direct MX delivery uses for
//!   RFC 7435 opportunistic encryption where plain text would be the
//!   alternative.
//! - **No silent downgrade.** Whether STARTTLS is required is decided by the
//!   caller from [`TlsMode`]; this module never falls back to plain text on
//!   its own.
//! - Every failure is an [`Error`]; connection and handshake failures are
//!   [`Kind::Temporary`] (the message is kept), a bad option is
//!   [`Kind::Config`].

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exit::{Error, Kind, Result};

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connect, then STARTTLS (STLS for POP3); required: a server that
    /// does not offer it gets nothing.
    Starttls,
    /// TLS from the first byte (SMTPS 465, IMAPS 993, POP3S 995).
    Implicit,
    /// No TLS at all (loopback, or an explicit choice).
    None,
}

impl TlsMode {
    /// Parse `starttls`, `implicit` (or `tls`, `ssl`) or `none` (or `off`).
    pub fn parse(s: &str) -> Result<TlsMode> {
        match s.to_ascii_lowercase().as_str() {
            "starttls" | "stls" => Ok(TlsMode::Starttls),
            "implicit" | "tls" | "ssl" | "smtps" => Ok(TlsMode::Implicit),
            "none" | "off" | "plain" => Ok(TlsMode::None),
            _ => Err(Error::new(
                Kind::Config,
                format!("tls mode {s:?}"),
                "expected starttls, implicit or none",
            )),
        }
    }

    /// The name used in the config file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Starttls => "starttls",
            TlsMode::Implicit => "implicit",
            TlsMode::None => "none",
        }
    }
}

/// What a TLS handshake accepts.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// An extra CA certificate (PEM) trusted besides the system store.
    pub ca_file: Option<PathBuf>,
    /// A SHA-256 fingerprint of the server's certificate (DER): when set,
    /// exactly this certificate is accepted and chain checks are skipped.
    pub fingerprint: Option<[u8; 32]>,
    /// Accept any certificate (opportunistic TLS to an MX, where the
    /// alternative is plain text). Never set for a configured account.
    pub opportunistic: bool,
}

/// Parse a SHA-256 fingerprint: 64 hex digits, with or without `:` between
/// bytes, optionally prefixed `sha256:` or `sha256/`.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32]> {
    let bad = || {
        Error::new(
            Kind::Config,
            format!("tls fingerprint {s:?}"),
            "expected a SHA-256 fingerprint: 64 hex digits, colons allowed",
        )
    };
    let t = s.trim();
    let t = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .or_else(|| t.strip_prefix("sha256/"))
        .unwrap_or(t);
    let hex: Vec<u8> = t.bytes().filter(|&b| b != b':').collect();
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Format a fingerprint as colon-separated upper-case hex (as msmtp and
/// `openssl x509 -fingerprint` print it).
pub fn format_fingerprint(fp: &[u8]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Connect to `host:port`, trying every address it resolves to, with
/// TCP_NODELAY and `timeout` for the connect and every later read/write.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let ctx = format!("connecting to {}", display_host_port(host, port));
    let addrs = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| Error::new(Kind::Temporary, &*ctx, e))?;
    let mut last: Option<io::Error> = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                let set = |r: io::Result<()>| r.map_err(|e| Error::io(&*ctx, &e));
                set(s.set_nodelay(true))?;
                set(s.set_read_timeout(Some(timeout)))?;
                set(s.set_write_timeout(Some(timeout)))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => Error::io(ctx, &e),
        None => Error::new(Kind::Temporary, ctx, "the name resolved to no address"),
    })
}

/// `host:port`, with brackets around an IPv6 literal.
pub fn display_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A plain or TLS connection.
pub enum Stream {
    /// Plain TCP (before STARTTLS, or `tls = none`).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<native_tls::TlsStream<TcpStream>>),
}

impl Stream {
    /// Is the stream encrypted?
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The underlying TCP stream (for timeouts, shutdown).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }

    /// SHA-256 of the server certificate, when TLS.
    pub fn peer_fingerprint(&self) -> Option<[u8; 32]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => {
                let der = s.peer_certificate().ok()??.to_der().ok()?;
                Some(Sha256::digest(&der).into())
            }
        }
    }

    /// Wrap this (plain) stream in TLS for `host`; on a stream that is
    /// already TLS, a [`Kind::Temporary`] error (a second STARTTLS is a
    /// protocol error).
    pub fn upgrade(self, host: &str, opts: &TlsOptions) -> Result<Stream> {
        match self {
            Stream::Plain(tcp) => handshake(tcp, host, opts),
            Stream::Tls(_) => Err(Error::new(
                Kind::Temporary,
                format!("TLS with {host}"),
                "already encrypted",
            )),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Build the connector for `opts`.
fn connector(opts: &TlsOptions) -> Result<native_tls::TlsConnector> {
    let mut b = native_tls::TlsConnector::builder();
    b.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    if let Some(path) = &opts.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            Error::new(
                Kind::Config,
                format!("reading the CA file {}", path.display()),
                crate::exit::describe_io(&e),
            )
        })?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            Error::new(
                Kind::Config,
                format!("reading the CA file {}", path.display()),
                e,
            )
        })?;
        b.add_root_certificate(cert);
    }
    if opts.fingerprint.is_some() || opts.opportunistic {
        // Pinning replaces the chain check (checked after the handshake
        // below); opportunistic TLS accepts any certificate by design.
        b.danger_accept_invalid_certs(true);
        b.danger_accept_invalid_hostnames(true);
    }
    b.build()
        .map_err(|e| Error::new(Kind::Config, "setting up TLS", e))
}

/// Run a TLS client handshake over `tcp` for `host`, verifying as `opts` say.
pub fn handshake(tcp: TcpStream, host: &str, opts: &TlsOptions) -> Result<Stream> {
    let ctx = format!("TLS handshake with {host}");
    let conn = connector(opts)?;
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let tls = conn.connect(name, tcp).map_err(|e| {
        let cause = match e {
            native_tls::HandshakeError::Failure(e) => e.to_string(),
            native_tls::HandshakeError::WouldBlock(_) => "timed out".to_string(),
        };
        Error::new(Kind::Temporary, &*ctx, cause)
    })?;
    let stream = Stream::Tls(Box::new(tls));
    if let Some(want) = opts.fingerprint {
        match stream.peer_fingerprint() {
            Some(got) if got == want => {}
            Some(got) => {
                return Err(Error::new(
                    Kind::Temporary,
                    ctx,
                    format!(
                        "certificate fingerprint {} does not match the pinned {}",
                        format_fingerprint(&got),
                        format_fingerprint(&want)
                    ),
                ));
            }
            None => {
                return Err(Error::new(
                    Kind::Temporary,
                    ctx,
                    "the server sent no certificate to check the pin against",
                ));
            }
        }
    }
    Ok(stream)
}

/// Connect to `host:port` and, for [`TlsMode::Implicit`], do the TLS
/// handshake at once. STARTTLS is the protocol client's job (it must read
/// the greeting and capabilities first).
pub fn open(
    host: &str,
    port: u16,
    mode: TlsMode,
    opts: &TlsOptions,
    timeout: Duration,
) -> Result<Stream> {
    let tcp = connect(host, port, timeout)?;
    match mode {
        TlsMode::Implicit => handshake(tcp, host, opts),
        TlsMode::Starttls | TlsMode::None => Ok(Stream::Plain(tcp)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_every_common_spelling() {
        let hex = "AB".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex).unwrap(), [0xAB; 32]);
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xAB; 32]);
        assert_eq!(
            parse_fingerprint(&format!("sha256:{colons}")).unwrap(),
            [0xAB; 32]
        );
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
        assert_eq!(format_fingerprint(&[0xAB, 0x01]), "AB:01");
    }

    #[test]
    fn modes_parse_and_reject_typos() {
        assert_eq!(TlsMode::parse("STARTTLS").unwrap(), TlsMode::Starttls);
        assert_eq!(TlsMode::parse("implicit").unwrap(), TlsMode::Implicit);
        assert_eq!(TlsMode::parse("none").unwrap(), TlsMode::None);
        assert_eq!(TlsMode::parse("startls").unwrap_err().kind(), Kind::Config);
    }

    #[test]
    fn refused_connection_is_temporary() {
        // Port 1 on loopback: nothing listens there in the test environment.
        let e = connect("127.0.0.1", 1, Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), Kind::Temporary);
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    }
}
