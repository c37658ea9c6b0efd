//! TLS and the network stream every client (SMTP, LMTP, POP3, IMAP) talks over.
//!
//! Owns: connecting to `host:port` (every resolved address tried in turn,
//! TCP_NODELAY, read/write timeouts), the TLS policy ([`TlsMode`]), the
//! connector (OpenSSL: the system trust directory read lazily, an extra CA
//! file, SHA-256 certificate pinning) and [`Stream`], which is plain TCP
//! before STARTTLS and TLS after. For the server side (mail-recv):
//! [`ServerTls`] (the certificate and key) and [`ServerStream`], a paced
//! socket of any kind (TCP, a unix socket, stdin/stdout) that the SMTP
//! server can upgrade with STARTTLS or that starts in TLS (port 465).
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
//! - **The server side is TLS 1.2 or newer, without renegotiation**, and
//!   its handshake runs under the same exchange budget as every read
//!   (`proto::pace`): a client that stalls in the handshake is cut off.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use std::path::Path;
use std::sync::Arc;

use openssl::ssl::{
    HandshakeError, Ssl, SslAcceptor, SslContext, SslFiletype, SslMethod, SslOptions, SslStream,
    SslVerifyMode, SslVersion,
};
use openssl::x509::X509VerifyResult;
use openssl::x509::verify::X509CheckFlags;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exit::{Context, Error, Kind, Origin, Result};
use crate::proto::Exchange;
use crate::proto::pace::{Paced, Socket};
use crate::proto::smtp::server::{TlsInfo, Upgrade};

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

/// The server's TLS setup: its certificate chain and key, TLS 1.2 and
/// newer (Mozilla's intermediate profile), no renegotiation. Cheap to
/// clone: one context shared by every session of a listener.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: Arc<SslAcceptor>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Load the certificate chain (`--tls-cert`, PEM, leaf first) and the
    /// private key (`--tls-key`, PEM). A file that cannot be read, or a key
    /// that does not match, is a [`Kind::Config`] error naming the file.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls> {
        let setup = |e: openssl::error::ErrorStack| Error::new(Kind::Config, "setting up TLS", e);
        for path in [cert, key] {
            if let Err(e) = std::fs::metadata(path) {
                return Err(Error::new(
                    Kind::Config,
                    format!("reading {}", path.display()),
                    crate::exit::describe_io(&e),
                ));
            }
        }
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(setup)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(setup)?;
        // No renegotiation: a client's request would make OpenSSL write
        // inside our read and re-arm the exchange budget.
        b.set_options(SslOptions::NO_COMPRESSION | SslOptions::NO_RENEGOTIATION);
        b.set_certificate_chain_file(cert).map_err(|e| {
            Error::new(
                Kind::Config,
                format!("reading the certificate {}", cert.display()),
                e,
            )
        })?;
        b.set_private_key_file(key, SslFiletype::PEM).map_err(|e| {
            Error::new(
                Kind::Config,
                format!("reading the key {}", key.display()),
                e,
            )
        })?;
        b.check_private_key().map_err(|e| {
            Error::new(
                Kind::Config,
                format!(
                    "the key {} and the certificate {}",
                    key.display(),
                    cert.display()
                ),
                format!("do not match: {e}"),
            )
        })?;
        Ok(ServerTls {
            acceptor: Arc::new(b.build()),
        })
    }

    /// The server handshake over `sock`, as one exchange of its budget.
    fn accept<S: Socket>(&self, mut sock: Paced<S>) -> Result<SslStream<Paced<S>>> {
        sock.arm();
        self.acceptor.accept(sock).map_err(|e| {
            let cause = match &e {
                HandshakeError::Failure(mid) | HandshakeError::WouldBlock(mid) => {
                    match mid.error().io_error() {
                        Some(io) => crate::exit::describe_io(io),
                        None => mid.error().to_string(),
                    }
                }
                HandshakeError::SetupFailure(e) => e.to_string(),
            };
            Error::new(Kind::Temporary, "TLS handshake with the client", cause)
                .from_origin(Origin::Tls)
        })
    }
}

/// The server's connection: a paced socket (TCP, unix, stdin/stdout
/// through [`crate::proto::stdio::Duplex`]), plain until STARTTLS or TLS
/// from the start. It is the stream [`crate::proto::smtp::server::serve`]
/// runs over.
pub struct ServerStream<S: Socket> {
    conn: ServerConn<S>,
    tls: Option<ServerTls>,
}

enum ServerConn<S: Socket> {
    Plain(Paced<S>),
    Tls(Box<SslStream<Paced<S>>>),
}

impl<S: Socket> ServerStream<S> {
    /// A plain session over `sock` with `idle` as its exchange budget's
    /// base; with `tls`, STARTTLS can upgrade it.
    pub fn plain(sock: S, idle: Duration, tls: Option<ServerTls>) -> ServerStream<S> {
        ServerStream {
            conn: ServerConn::Plain(Paced::new(sock, idle)),
            tls,
        }
    }

    /// Implicit TLS (port 465): the handshake now, before the greeting.
    pub fn implicit(sock: S, idle: Duration, tls: &ServerTls) -> Result<ServerStream<S>> {
        let s = tls.accept(Paced::new(sock, idle))?;
        Ok(ServerStream {
            conn: ServerConn::Tls(Box::new(s)),
            tls: Some(tls.clone()),
        })
    }

    /// The socket underneath (its peer address, shutdown).
    pub fn socket(&self) -> &S {
        match &self.conn {
            ServerConn::Plain(p) => p.get_ref(),
            ServerConn::Tls(t) => t.get_ref().get_ref(),
        }
    }

    fn paced_mut(&mut self) -> &mut Paced<S> {
        match &mut self.conn {
            ServerConn::Plain(p) => p,
            ServerConn::Tls(t) => t.get_mut(),
        }
    }

    fn paced(&self) -> &Paced<S> {
        match &self.conn {
            ServerConn::Plain(p) => p,
            ServerConn::Tls(t) => t.get_ref(),
        }
    }
}

impl<S: Socket> Read for ServerStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.conn {
            ServerConn::Plain(s) => s.read(buf),
            ServerConn::Tls(s) => s.read(buf),
        }
    }
}

impl<S: Socket> Write for ServerStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.conn {
            ServerConn::Plain(s) => s.write(buf),
            ServerConn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.conn {
            ServerConn::Plain(s) => s.flush(),
            ServerConn::Tls(s) => s.flush(),
        }
    }
}

impl<S: Socket> Exchange for ServerStream<S> {
    fn arm(&mut self) {
        self.paced_mut().arm();
    }
    fn idle(&self) -> Option<Duration> {
        Some(self.paced().idle())
    }
    fn set_idle(&mut self, idle: Duration) {
        self.paced_mut().set_idle(idle);
    }
    fn is_tls(&self) -> bool {
        matches!(self.conn, ServerConn::Tls(_))
    }
    fn close(&mut self) {
        if let ServerConn::Tls(s) = &mut self.conn {
            let _ = s.shutdown();
        }
    }
}

impl<S: Socket> Upgrade for ServerStream<S> {
    /// The server handshake; an error when already TLS or when no
    /// certificate was configured (the server offers STARTTLS only then).
    fn start_tls(self) -> Result<Self> {
        let not = |why: &str| {
            Error::new(Kind::Temporary, "STARTTLS", why.to_string()).from_origin(Origin::Tls)
        };
        let Some(tls) = self.tls else {
            return Err(not("no certificate configured"));
        };
        match self.conn {
            ServerConn::Plain(p) => Ok(ServerStream {
                conn: ServerConn::Tls(Box::new(tls.accept(p)?)),
                tls: Some(tls),
            }),
            ServerConn::Tls(_) => Err(not("already encrypted")),
        }
    }

    fn tls_info(&self) -> Option<TlsInfo> {
        match &self.conn {
            ServerConn::Plain(_) => None,
            ServerConn::Tls(s) => Some(TlsInfo {
                version: s.ssl().version_str().to_string(),
                cipher: s
                    .ssl()
                    .current_cipher()
                    .map_or_else(String::new, |c| c.name().to_string()),
            }),
        }
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

#[cfg(test)]
mod server_tests {
    use super::*;
    use crate::proto::sasl::{Mechanism, Secret};
    use crate::proto::smtp::server::{
        self, AuthVerdict, Backend, BareLf, Limits, Peer, Session, Settings, Transaction,
    };
    use crate::proto::smtp::{Client, Protocol, Reply};
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509, X509NameBuilder};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A self-signed certificate for `localhost` and 127.0.0.1, written as
    /// PEM files in `dir`: (cert, key).
    fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "localhost").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = dir.join("cert.pem");
        let keyf = dir.join("key.pem");
        std::fs::write(&cert, b.build().to_pem().unwrap()).unwrap();
        std::fs::write(&keyf, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (cert, keyf)
    }

    #[test]
    fn implicit_tls_handshakes_with_the_client_side_and_names_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        let tls = ServerTls::from_pem_files(&cert, &key).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (tcp, _) = l.accept().unwrap();
            let mut s = ServerStream::implicit(tcp, Duration::from_secs(10), &tls).unwrap();
            let info = s.tls_info().unwrap();
            s.write_all(b"hello\n").unwrap();
            s.flush().unwrap();
            let mut b = [0u8; 3];
            s.read_exact(&mut b).unwrap();
            assert!(s.is_tls());
            (info, b)
        });
        let tcp = connect("127.0.0.1", addr.port(), Duration::from_secs(10)).unwrap();
        let opts = TlsOptions {
            ca_file: Some(cert.clone()),
            ..TlsOptions::default()
        };
        let mut c = handshake(tcp, "localhost", &opts).unwrap();
        let mut b = [0u8; 6];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello\n");
        c.write_all(b"bye").unwrap();
        let (info, got) = server.join().unwrap();
        assert_eq!(&got, b"bye");
        assert!(info.version.starts_with("TLSv1."), "{info:?}");
        assert!(!info.cipher.is_empty(), "{info:?}");
        // A key that is not the certificate's is a config error.
        let other = tempfile::tempdir().unwrap();
        let (_, key2) = self_signed(other.path());
        let e = ServerTls::from_pem_files(&cert, &key2).unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        let e = ServerTls::from_pem_files(&dir.path().join("nope.pem"), &key).unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
    }

    #[derive(Clone, Default)]
    struct Store(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Backend for Store {
        fn rcpt(
            &mut self,
            _: &Session,
            _: &Transaction,
            _: &str,
        ) -> std::result::Result<(), Reply> {
            Ok(())
        }
        fn auth(&mut self, user: &str, password: &[u8]) -> AuthVerdict {
            if user == "bob" && password == b"pw" {
                AuthVerdict::Ok
            } else {
                AuthVerdict::Bad
            }
        }
        fn deliver(&mut self, _: &Session, _: &Transaction, message: &[u8]) -> Vec<Reply> {
            self.0.lock().unwrap().push(message.to_vec());
            vec![server::reply(250, "2.0.0", "stored")]
        }
    }

    #[test]
    fn the_smtp_client_talks_starttls_and_auth_to_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        let tls = ServerTls::from_pem_files(&cert, &key).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let store = Store::default();
        let mut backend = store.clone();
        let server = std::thread::spawn(move || {
            let (tcp, peer) = l.accept().unwrap();
            let s = ServerStream::plain(tcp, Duration::from_secs(10), Some(tls));
            let settings = Settings {
                protocol: Protocol::Smtp,
                hostname: "mx.example".into(),
                limits: Limits::default(),
                bare_lf: BareLf::Normalize,
                starttls: true,
                auth: true,
            };
            let peer = Peer {
                ip: Some(peer.ip()),
                host: None,
            };
            server::serve(s, &settings, peer, &mut backend).unwrap()
        });
        let mut c = Client::connect_tcp(addr, Duration::from_secs(10), Protocol::Smtp).unwrap();
        c.greeting().unwrap();
        assert!(c.hello("client.example").unwrap().starttls);
        let opts = TlsOptions {
            ca_file: Some(cert),
            ..TlsOptions::default()
        };
        let mut c = c.starttls("localhost", &opts, "client.example").unwrap();
        assert_eq!(c.capabilities().auth, vec!["PLAIN", "LOGIN"]);
        c.auth(Mechanism::Plain, "bob", &Secret::new("pw")).unwrap();
        let o = c
            .send("a@x.example", &["b@mx.example"], b"Subject: t\n\n.hi\n")
            .unwrap();
        assert!(o.all_accepted(), "{o:?}");
        c.quit().unwrap();
        let summary = server.join().unwrap();
        assert_eq!(summary.accepted, 1);
        assert_eq!(summary.aborted, None);
        let msgs = store.0.lock().unwrap();
        let msg = String::from_utf8_lossy(&msgs[0]).into_owned();
        let hop = crate::trace::received::parse(
            msg.split_once("\r\nSubject")
                .unwrap()
                .0
                .strip_prefix("Received:")
                .unwrap(),
        );
        assert_eq!(hop.protocol.as_deref(), Some("ESMTPSA"), "{msg}");
        assert_eq!(hop.ip.as_deref(), Some("127.0.0.1"), "{msg}");
        assert!(
            hop.tls_version
                .as_deref()
                .is_some_and(|v| v.starts_with("TLSv1.")),
            "{msg}"
        );
        assert!(msg.ends_with("\r\nSubject: t\r\n\r\n.hi\r\n"), "{msg}");
    }
}
