//! The inetd/UCSPI connection: a client on file descriptors 0 and 1
//! (inetd, tcpserver, systemd `Accept=yes`, `swaks --pipe`), as a
//! [`Socket`] the exchange budget ([`crate::proto::pace`]) can pace.
//!
//! Owns [`Duplex`]: one descriptor to read and one to write. They may be
//! the same socket twice or two pipes; either way every read and write
//! waits in poll(2) for at most the timeout the budget sets, because a
//! pipe has no SO_RCVTIMEO and a socket's would be lost on a pipe.
//!
//! Guarantee: no read or write waits longer than the timeout last set; a
//! wait that runs out is an [`io::ErrorKind::TimedOut`] error (which
//! `Paced` turns into the budget's message).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::proto::pace::Socket;

/// A client on a read descriptor and a write descriptor (see the module
/// docs).
#[derive(Debug)]
pub struct Duplex {
    read: File,
    write: File,
    read_timeout: Cell<Option<Duration>>,
    write_timeout: Cell<Option<Duration>>,
}

impl Duplex {
    /// Read from `read`, write to `write` (they may be one socket dup'ed).
    pub fn new(read: OwnedFd, write: OwnedFd) -> Duplex {
        Duplex {
            read: File::from(read),
            write: File::from(write),
            read_timeout: Cell::new(None),
            write_timeout: Cell::new(None),
        }
    }

    /// Standard input and output, duplicated (the originals stay open).
    pub fn stdio() -> io::Result<Duplex> {
        let r = io::stdin().as_fd().try_clone_to_owned()?;
        let w = io::stdout().as_fd().try_clone_to_owned()?;
        Ok(Duplex::new(r, w))
    }

    /// The descriptor read from (getpeername when it is a socket).
    pub fn read_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.read.as_fd()
    }
}

/// Wait until `fd` is ready for `flags` or `timeout` runs out.
fn wait(
    fd: std::os::fd::BorrowedFd<'_>,
    flags: PollFlags,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let Some(timeout) = timeout else {
        return Ok(());
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up: a 0.4 ms remainder must not become "return at once"
        // for ever.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(fd, flags)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
                }
            }
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        wait(
            self.read.as_fd(),
            PollFlags::POLLIN,
            self.read_timeout.get(),
        )?;
        self.read.read(buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        wait(
            self.write.as_fd(),
            PollFlags::POLLOUT,
            self.write_timeout.get(),
        )?;
        self.write.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.write.flush()
    }
}

impl Socket for Duplex {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.read_timeout.set(t);
        Ok(())
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.write_timeout.set(t);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pace::Paced;

    fn pipes() -> (Duplex, io::PipeWriter, io::PipeReader) {
        let (r_in, w_in) = io::pipe().unwrap();
        let (r_out, w_out) = io::pipe().unwrap();
        (
            Duplex::new(OwnedFd::from(r_in), OwnedFd::from(w_out)),
            w_in,
            r_out,
        )
    }

    #[test]
    fn two_pipes_carry_both_ways() {
        let (mut d, mut client_w, mut client_r) = pipes();
        client_w.write_all(b"EHLO x\r\n").unwrap();
        let mut buf = [0u8; 8];
        d.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"EHLO x\r\n");
        d.write_all(b"250 ok\r\n").unwrap();
        let mut got = [0u8; 8];
        client_r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"250 ok\r\n");
        drop(client_w);
        assert_eq!(d.read(&mut buf).unwrap(), 0, "EOF when the client closes");
    }

    #[test]
    fn a_silent_pipe_times_out_under_the_budget() {
        let (d, _client_w, _client_r) = pipes();
        let mut p = Paced::new(d, Duration::from_millis(200));
        let e = p.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }

    /// A backend that takes every message (the pipe tests' server).
    struct Take(Vec<Vec<u8>>);

    impl crate::proto::smtp::server::Backend for Take {
        fn rcpt(
            &mut self,
            _: &crate::proto::smtp::server::Session,
            _: &crate::proto::smtp::server::Transaction,
            _: &str,
        ) -> Result<(), crate::proto::smtp::Reply> {
            Ok(())
        }
        fn auth(&mut self, _: &str, _: &[u8]) -> crate::proto::smtp::server::AuthVerdict {
            crate::proto::smtp::server::AuthVerdict::Bad
        }
        fn deliver(
            &mut self,
            _: &crate::proto::smtp::server::Session,
            _: &crate::proto::smtp::server::Transaction,
            m: &[u8],
        ) -> Vec<crate::proto::smtp::Reply> {
            self.0.push(m.to_vec());
            vec![crate::proto::smtp::server::reply(250, "2.0.0", "stored")]
        }
    }

    #[test]
    fn a_session_over_two_pipes_delivers_then_times_out_with_421() {
        use crate::proto::smtp::server::{BareLf, Limits, Peer, Settings, serve};
        use crate::proto::tls::ServerStream;
        let (d, mut client_w, mut client_r) = pipes();
        // The client pipelines a whole transaction, then goes silent
        // without QUIT (its write end stays open until serve returns).
        client_w
            .write_all(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            client_r.read_to_end(&mut all).unwrap();
            all
        });
        client_w.write_all(b"hi\r\n.\r\n").unwrap();
        let settings = Settings {
            protocol: crate::proto::smtp::Protocol::Smtp,
            hostname: "mx.example".into(),
            limits: Limits {
                idle: Duration::from_millis(300),
                ..Limits::default()
            },
            bare_lf: BareLf::Normalize,
            starttls: false,
            auth: false,
        };
        let mut b = Take(Vec::new());
        let stream = ServerStream::plain(d, Duration::from_secs(60), None);
        let summary = serve(stream, &settings, Peer::default(), &mut b).unwrap();
        drop(client_w);
        assert_eq!(summary.aborted.as_deref(), Some("timeout"));
        assert_eq!(summary.accepted, 1);
        assert_eq!(b.0.len(), 1);
        let out = String::from_utf8(reader.join().unwrap()).unwrap();
        assert!(
            out.starts_with("220 mx.example ESMTP postline\r\n"),
            "{out}"
        );
        assert!(
            out.contains("354 ") && out.contains("250 2.0.0 stored\r\n"),
            "{out}"
        );
        assert!(out.ends_with("421 4.4.2 timeout, closing\r\n"), "{out}");
    }
}
