//! Deadlines for every exchange with a peer: a socket that a slow or
//! stalling peer cannot hold open without bound.
//!
//! Owns [`Paced`], the wrapper every connection (SMTP, LMTP, POP3, IMAP,
//! plain or under TLS) reads and writes through.
//!
//! Guarantees:
//!
//! - **No exchange runs past its budget.** A socket read timeout alone
//!   bounds one `read` call, so a peer that sends one byte a second keeps a
//!   client busy for ever. Here an exchange (from its start until the next
//!   one is armed) may last `idle` plus one second for every [`MIN_RATE`]
//!   bytes moved in either direction: a greeting dripped a byte at a time
//!   fails after about `idle`; a large message at any honest speed passes.
//!   Since every size a peer can make us move is capped elsewhere, the
//!   whole exchange is bounded.
//! - An exchange starts automatically whenever the direction changes: the
//!   first write after reads (a new command) and the first read after
//!   writes (its reply: the bytes we sent buy the peer no time to answer),
//!   and explicitly with [`Paced::arm`] (each reply of a pipelined batch,
//!   which its client reads without writing in between). Only our own
//!   protocol steps write, so a peer cannot re-arm at will; TLS
//!   renegotiation, the one way a peer could make the layer above write on
//!   its own, is refused (`proto::tls`).
//! - A spent budget is an [`io::ErrorKind::TimedOut`] error naming the
//!   budget, never a partial success.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The slowest transfer rate (bytes a second) an exchange is allowed on
/// average: dial-up speed, far below any real mail server, far above a drip.
pub const MIN_RATE: u64 = 4096;

/// A socket whose per-call timeouts can be set (TCP and unix sockets).
pub trait Socket: Read + Write {
    /// Set the timeout of the next blocking reads.
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// Set the timeout of the next blocking writes.
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// Called before every read (TCP asks for a quick ACK here).
    fn before_read(&self) {}
}

impl Socket for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
    /// Servers such as Postfix write TLS records in small pieces with Nagle
    /// on: each piece waits for our ACK of the previous one, and Linux's
    /// delayed ACK holds that back for up to 40 ms, once per reply or
    /// handshake flight. TCP_QUICKACK is not sticky, so it is set before
    /// every read (one cheap setsockopt; a failure only costs speed).
    fn before_read(&self) {
        let _ = socket2::SockRef::from(self).set_tcp_quickack(true);
    }
}

impl Socket for UnixStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, t)
    }
}

/// A socket with an exchange budget (see the module docs).
#[derive(Debug)]
pub struct Paced<S> {
    inner: S,
    idle: Duration,
    start: Instant,
    moved: u64,
    writing: bool,
}

impl<S: Socket> Paced<S> {
    /// Wrap `inner`; `idle` is both the longest single wait and the base of
    /// every exchange's budget. The first exchange (the greeting) starts now.
    pub fn new(inner: S, idle: Duration) -> Paced<S> {
        Paced {
            inner,
            idle,
            start: Instant::now(),
            moved: 0,
            writing: false,
        }
    }

    /// Start a new exchange now (a fresh budget).
    pub fn arm(&mut self) {
        self.start = Instant::now();
        self.moved = 0;
    }

    /// The socket underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The budget's base: the longest single wait.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Change the idle time (IMAP IDLE waits longer for its next line than
    /// a reply may take) and start a new exchange with it.
    pub fn set_idle(&mut self, idle: Duration) {
        self.idle = idle.max(Duration::from_millis(1));
        self.arm();
    }

    /// This exchange's budget.
    fn budget(&self) -> Duration {
        self.idle + Duration::from_millis(self.moved.saturating_mul(1000) / MIN_RATE)
    }

    /// Time left in this exchange, or the error that ends it.
    fn left(&self) -> io::Result<Duration> {
        let budget = self.budget();
        let spent = self.start.elapsed();
        if spent >= budget {
            return Err(self.spent());
        }
        // Never a zero timeout: the socket would take it as "none".
        Ok((budget - spent)
            .min(self.idle)
            .max(Duration::from_millis(1)))
    }

    /// The error for a spent budget.
    fn spent(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "timed out: the peer took more than {} s for one exchange ({} bytes moved; after the first {} s at least {} KiB/s is required)",
                self.budget().as_secs(),
                self.moved,
                self.idle.as_secs(),
                MIN_RATE / 1024,
            ),
        )
    }

    /// A socket timeout as one clear error: the budget's when it is spent,
    /// otherwise the idle time's (Linux reports both as `WouldBlock`).
    fn timeout_error(&self, e: io::Error) -> io::Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                if self.start.elapsed() >= self.budget() {
                    self.spent()
                } else {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "timed out: nothing from the peer for {} s",
                            self.idle.as_secs()
                        ),
                    )
                }
            }
            _ => e,
        }
    }
}

impl<S: Socket> crate::proto::Exchange for Paced<S> {
    fn arm(&mut self) {
        Paced::arm(self);
    }
    fn idle(&self) -> Option<Duration> {
        Some(Paced::idle(self))
    }
    fn set_idle(&mut self, idle: Duration) {
        Paced::set_idle(self, idle);
    }
}

impl<S: Socket> Read for Paced<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.writing {
            // The reply to what we sent: a fresh budget, not one grown by
            // our own bytes (a 25 MB DATA would otherwise give the final
            // reply hours).
            self.writing = false;
            self.arm();
        }
        let left = self.left()?;
        self.inner.set_read_timeout(Some(left))?;
        self.inner.before_read();
        let n = self.inner.read(buf).map_err(|e| self.timeout_error(e))?;
        self.moved += n as u64;
        Ok(n)
    }
}

impl<S: Socket> Write for Paced<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.writing {
            // A command after the peer's reply: a new exchange.
            self.writing = true;
            self.arm();
        }
        let left = self.left()?;
        self.inner.set_write_timeout(Some(left))?;
        let n = self.inner.write(buf).map_err(|e| self.timeout_error(e))?;
        self.moved += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_dripping_peer_is_cut_off_after_about_the_idle_time() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            for _ in 0..60 {
                if s.write_all(b"+").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let tcp = TcpStream::connect(addr).unwrap();
        let mut p = Paced::new(tcp, Duration::from_secs(1));
        let mut buf = [0u8; 16];
        let err = loop {
            match p.read(&mut buf) {
                Ok(0) => panic!("the peer ended before the budget"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        // Each read waited less than the idle time, yet the exchange ended
        // after about one second although bytes kept coming.
        assert!(p.moved < 30, "{}", p.moved);
        drop(p);
        server.join().unwrap();
    }

    #[test]
    fn what_we_send_buys_the_reply_no_time() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut p = Paced::new(a, Duration::from_millis(300));
        // The peer reads our 64 KiB (16 s of budget if it were shared),
        // then drips its reply a byte every 50 ms for 2 s.
        let peer = std::thread::spawn(move || {
            let mut sink = vec![0u8; 1 << 16];
            b.read_exact(&mut sink).unwrap();
            for _ in 0..40 {
                if b.write_all(b"2").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        p.write_all(&vec![b'x'; 1 << 16]).unwrap();
        let mut got = 0;
        let end = loop {
            match p.read(&mut [0u8; 1]) {
                Ok(0) => break None,
                Ok(_) => got += 1,
                Err(e) => break Some(e),
            }
        };
        drop(p);
        peer.join().unwrap();
        let e = end.expect("the drip outlived the reply's budget");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(got < 40, "{got}");
    }

    #[test]
    fn a_write_after_reads_starts_a_fresh_budget() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut p = Paced::new(a, Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(250));
        // The greeting's budget is spent ...
        let e = p.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // ... and a new command gets a new one.
        p.write_all(b"NOOP\r\n").unwrap();
        b.write_all(b"+OK\r\n").unwrap();
        let mut got = [0u8; 5];
        p.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"+OK\r\n");
    }
}
