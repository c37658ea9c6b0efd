//! TLS and the network stream every client (SMTP, LMTP, POP3, IMAP) talks over.
//!
//! Owns: connecting to `host:port` (every resolved address tried in turn,
//! TCP_NODELAY, read/write timeouts), the TLS policy ([`TlsMode`]), the
//! connector (OpenSSL: the system trust directory read lazily, an extra CA
//! file, SHA-256 certificate pinning) and [`Stream`], which is plain TCP
//! before STARTTLS and TLS after.
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
//!   [`Kind::Temporary`] (the message is kept), of [`Origin::Network`]
//!   (resolving, connecting) or [`Origin::Tls`] (the handshake, the
//!   certificate, the pin); a bad option is [`Kind::Config`].

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use openssl::ssl::{
    HandshakeError, Ssl, SslContext, SslMethod, SslOptions, SslVerifyMode, SslVersion,
};
use openssl::x509::X509VerifyResult;
use openssl::x509::verify::X509CheckFlags;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exit::{Context, Error, Kind, Origin, Result};
use crate::proto::Exchange;
use crate::proto::pace::Paced;

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
        .map_err(|e| Error::new(Kind::Temporary, &*ctx, e).from_origin(Origin::Network))?;
    let mut last: Option<io::Error> = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                let set = |r: io::Result<()>| r.net_context(&*ctx);
                set(s.set_nodelay(true))?;
                set(s.set_read_timeout(Some(timeout)))?;
                set(s.set_write_timeout(Some(timeout)))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => Error::net(ctx, &e),
        None => Error::new(Kind::Temporary, ctx, "the name resolved to no address")
            .from_origin(Origin::Network),
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
    Plain(Paced<TcpStream>),
    /// TLS over TCP (the handshake and every record under the same budget).
    Tls(Box<openssl::ssl::SslStream<Paced<TcpStream>>>),
}

impl Stream {
    /// A plain stream over `tcp`, paced by its read timeout (see
    /// [`crate::proto::pace`]): set by [`connect`].
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream::Plain(pace(tcp))
    }

    /// Start a new exchange budget (see [`Paced::arm`]): for a client that
    /// reads several pipelined replies without writing in between.
    pub fn arm(&mut self) {
        match self {
            Stream::Plain(s) => s.arm(),
            Stream::Tls(s) => s.get_mut().arm(),
        }
    }

    /// Is the stream encrypted?
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The idle time of the exchange budget.
    pub fn idle(&self) -> Duration {
        match self {
            Stream::Plain(s) => s.idle(),
            Stream::Tls(s) => s.get_ref().idle(),
        }
    }

    /// Change the idle time and start a new exchange (see [`Paced::set_idle`]).
    pub fn set_idle(&mut self, idle: Duration) {
        match self {
            Stream::Plain(s) => s.set_idle(idle),
            Stream::Tls(s) => s.get_mut().set_idle(idle),
        }
    }

    /// The underlying TCP stream (for shutdown; timeouts belong to the
    /// exchange budget: use [`Stream::set_idle`]).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s.get_ref(),
            Stream::Tls(s) => s.get_ref().get_ref(),
        }
    }

    /// SHA-256 of the server certificate, when TLS.
    pub fn peer_fingerprint(&self) -> Option<[u8; 32]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => {
                let der = s.ssl().peer_certificate()?.to_der().ok()?;
                Some(Sha256::digest(&der).into())
            }
        }
    }

    /// Wrap this (plain) stream in TLS for `host`; on a stream that is
    /// already TLS, a [`Kind::Temporary`] error (a second STARTTLS is a
    /// protocol error).
    pub fn upgrade(self, host: &str, opts: &TlsOptions) -> Result<Stream> {
        match self {
            Stream::Plain(tcp) => handshake_paced(tcp, host, opts),
            Stream::Tls(_) => Err(Error::new(
                Kind::Temporary,
                format!("TLS with {host}"),
                "already encrypted",
            )
            .from_origin(Origin::Tls)),
        }
    }
}

impl Exchange for Stream {
    fn arm(&mut self) {
        Stream::arm(self);
    }
    fn idle(&self) -> Option<Duration> {
        Some(Stream::idle(self))
    }
    fn set_idle(&mut self, idle: Duration) {
        Stream::set_idle(self, idle);
    }
    fn is_tls(&self) -> bool {
        Stream::is_tls(self)
    }
    fn close(&mut self) {
        if let Stream::Tls(s) = self {
            // Best effort close_notify: the peer has answered already.
            let _ = s.shutdown();
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

/// Does `opts` ask for the certificate chain and name to be checked?
fn verifies(opts: &TlsOptions) -> bool {
    opts.fingerprint.is_none() && !opts.opportunistic
}

/// Build the TLS context for `opts`.
///
/// Trust comes from the system's hashed certificate directory
/// (`/etc/ssl/certs`), looked up lazily for the issuers a server actually
/// presents, rather than from the whole bundle file: OpenSSL parses a bundle
/// eagerly, ~150 certificates and ~40 ms at every process start, which for a
/// one-message-per-process `sendmail` was most of its run time.
/// `SSL_CERT_FILE`/`SSL_CERT_DIR` in the environment are honoured as OpenSSL
/// does; `ca_file` is added on top.
fn context(opts: &TlsOptions) -> Result<SslContext> {
    let setup = |e: openssl::error::ErrorStack| Error::new(Kind::Config, "setting up TLS", e);
    let mut b = SslContext::builder(SslMethod::tls_client()).map_err(setup)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(setup)?;
    // No renegotiation: a server's HelloRequest would make OpenSSL write a
    // handshake inside our read, which would re-arm the exchange budget
    // (`proto::pace`) at the peer's will; mail never needs it.
    b.set_options(SslOptions::NO_COMPRESSION | SslOptions::NO_RENEGOTIATION);
    if verifies(opts) {
        b.set_verify(SslVerifyMode::PEER);
        match system_trust() {
            Trust::Dir(dir) => b.load_verify_locations(None, Some(&dir)).map_err(setup)?,
            Trust::Default => b.set_default_verify_paths().map_err(setup)?,
        }
        if let Some(path) = &opts.ca_file {
            if let Err(e) = std::fs::metadata(path) {
                return Err(Error::new(
                    Kind::Config,
                    format!("reading the CA file {}", path.display()),
                    crate::exit::describe_io(&e),
                ));
            }
            b.load_verify_locations(Some(path), None).map_err(|e| {
                Error::new(
                    Kind::Config,
                    format!("reading the CA file {}", path.display()),
                    e,
                )
            })?;
        }
    } else {
        // Pinning replaces the chain check (checked after the handshake
        // below); opportunistic TLS accepts any certificate by design.
        b.set_verify(SslVerifyMode::NONE);
    }
    Ok(b.build())
}

/// Where Debian and most distributions keep the hashed CA directory.
const SYSTEM_CERT_DIR: &str = "/etc/ssl/certs";

/// How the system's trusted CAs are loaded.
enum Trust {
    /// A hashed directory, read lazily.
    Dir(PathBuf),
    /// OpenSSL's defaults (`SSL_CERT_FILE`/`SSL_CERT_DIR` or its built-in
    /// paths), bundle file included.
    Default,
}

/// `SSL_CERT_DIR` (else `/etc/ssl/certs`) when it is a directory, unless
/// `SSL_CERT_FILE` names a bundle elsewhere (then OpenSSL's defaults, so
/// that file is honoured). A bundle inside the directory itself (Debian's
/// `ca-certificates.crt`) is built from the same certificates as the hash
/// links, so skipping it trusts nothing less.
fn system_trust() -> Trust {
    let dir = std::env::var_os("SSL_CERT_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(SYSTEM_CERT_DIR), PathBuf::from);
    if !dir.is_dir() {
        return Trust::Default;
    }
    if let Some(file) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        let file = PathBuf::from(file);
        if file.parent() != Some(dir.as_path()) {
            return Trust::Default;
        }
    }
    Trust::Dir(dir)
}

/// A TCP stream paced with its own read timeout as the idle time.
fn pace(tcp: TcpStream) -> Paced<TcpStream> {
    let idle = tcp
        .read_timeout()
        .ok()
        .flatten()
        .unwrap_or(Duration::from_secs(60));
    Paced::new(tcp, idle)
}

/// Run a TLS client handshake over `tcp` for `host`, verifying as `opts` say.
pub fn handshake(tcp: TcpStream, host: &str, opts: &TlsOptions) -> Result<Stream> {
    handshake_paced(pace(tcp), host, opts)
}

/// [`handshake`] over a stream that is already paced (STARTTLS): the
/// handshake is one exchange.
fn handshake_paced(mut tcp: Paced<TcpStream>, host: &str, opts: &TlsOptions) -> Result<Stream> {
    tcp.arm();
    let ctx = format!("TLS handshake with {host}");
    let context = context(opts)?;
    let setup = |e: openssl::error::ErrorStack| Error::new(Kind::Config, "setting up TLS", e);
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let ip: Option<std::net::IpAddr> = name.parse().ok();
    let mut ssl = Ssl::new(&context).map_err(setup)?;
    if ip.is_none() {
        // SNI is for names only (RFC 6066 3).
        ssl.set_hostname(name).map_err(setup)?;
    }
    if verifies(opts) {
        let param = ssl.param_mut();
        param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
        match ip {
            Some(ip) => param.set_ip(ip).map_err(setup)?,
            None => param.set_host(name).map_err(setup)?,
        }
    }
    let tls = ssl.connect(tcp).map_err(|e| {
        let cause = match &e {
            HandshakeError::Failure(mid) | HandshakeError::WouldBlock(mid) => {
                let verify = mid.ssl().verify_result();
                if verify != X509VerifyResult::OK {
                    format!("certificate not trusted: {}", verify.error_string())
                } else if let Some(io) = mid.error().io_error() {
                    crate::exit::describe_io(io)
                } else {
                    mid.error().to_string()
                }
            }
            HandshakeError::SetupFailure(e) => e.to_string(),
        };
        Error::new(Kind::Temporary, &*ctx, cause).from_origin(Origin::Tls)
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
                )
                .from_origin(Origin::Tls));
            }
            None => {
                return Err(Error::new(
                    Kind::Temporary,
                    ctx,
                    "the server sent no certificate to check the pin against",
                )
                .from_origin(Origin::Tls));
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
        TlsMode::Starttls | TlsMode::None => Ok(Stream::plain(tcp)),
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
