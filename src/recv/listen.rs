//! `mail-recv --listen`: its own TCP listener, a thread per session.
//!
//! Guarantees: at most `max_sessions` sessions run at once; a connection
//! over the cap is accepted, told `421 4.3.2` and closed (the client
//! retries later; nothing waits unanswered in the kernel's backlog).
//! A stop ([`Stopper::stop`], SIGTERM or SIGINT through
//! [`stop_on_signals`]) closes the listening sockets at once and returns
//! only when every session in progress has finished, so a stop never cuts
//! a transaction between "stored" and its 250.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::exit::{Error, Kind, Result};

/// The reply to a connection over the session cap.
pub const TOO_BUSY: &[u8] = b"421 4.3.2 too busy, try again later\r\n";

/// A bound listening socket and whether its sessions start in TLS (465).
#[derive(Debug)]
pub struct Bound {
    /// The socket.
    pub listener: TcpListener,
    /// Implicit TLS.
    pub implicit_tls: bool,
}

/// Bind `addr` (`ADDR:PORT`, `[v6]:PORT`).
pub fn bind(addr: &str, implicit_tls: bool) -> Result<Bound> {
    let sa: SocketAddr = addr.parse().map_err(|_| {
        Error::new(
            Kind::Usage,
            format!("listen address {addr:?}"),
            "expected ADDR:PORT (e.g. 0.0.0.0:25, [::1]:2525)",
        )
    })?;
    let listener = TcpListener::bind(sa)
        .map_err(|e| Error::io(format!("listening on {sa}"), &e).with_kind(Kind::Unavailable))?;
    Ok(Bound {
        listener,
        implicit_tls,
    })
}

/// Ends a [`serve`] loop from another thread or a signal.
#[derive(Debug, Clone)]
pub struct Stopper {
    wake: Arc<UnixStream>,
}

impl Stopper {
    /// Stop accepting; [`serve`] returns once running sessions end.
    pub fn stop(&self) {
        let _ = (&*self.wake).write_all(b"x");
    }
}

/// A stopper and the socket [`serve`] watches.
pub fn stopper() -> Result<(Stopper, UnixStream)> {
    let (a, b) = UnixStream::pair().map_err(|e| Error::io("creating a socket pair", &e))?;
    Ok((Stopper { wake: Arc::new(a) }, b))
}

/// Block SIGTERM and SIGINT in this thread (and so in every thread it
/// starts later) and stop `stopper` when one arrives. Call before starting
/// any other thread.
pub fn stop_on_signals(stopper: Stopper) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()
        .map_err(|e| Error::new(Kind::Temporary, "blocking SIGTERM", e))?;
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            stopper.stop();
        }
    });
    Ok(())
}

/// Counts running sessions; `wait_idle` blocks until there are none.
#[derive(Default)]
struct Running {
    n: Mutex<usize>,
    idle: Condvar,
}

impl Running {
    fn try_enter(&self, max: usize) -> bool {
        let mut n = self.n.lock().unwrap_or_else(|p| p.into_inner());
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self) {
        let mut n = self.n.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.idle.notify_all();
    }

    fn wait_idle(&self) {
        let mut n = self.n.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            n = self.idle.wait(n).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Leaves the count when a session thread ends, however it ends.
struct Leave(Arc<Running>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Accept on every listener until `wake` is written to (see [`stopper`]);
/// run `session(stream, implicit_tls)` on a thread of its own for each
/// connection, at most `max_sessions` at once.
pub fn serve<F>(
    listeners: Vec<Bound>,
    max_sessions: usize,
    mut wake: UnixStream,
    session: F,
) -> Result<()>
where
    F: Fn(TcpStream, bool) + Send + Sync + 'static,
{
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let session = Arc::new(session);
    let running = Arc::new(Running::default());
    for b in &listeners {
        b.listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("listening", &e))?;
    }
    'accepting: loop {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = listeners
                .iter()
                .map(|b| PollFd::new(b.listener.as_fd(), PollFlags::POLLIN))
                .collect();
            fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::new(Kind::Temporary, "waiting for connections", e)),
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        if ready[listeners.len()] {
            let mut b = [0u8; 16];
            let _ = wake.read(&mut b);
            break 'accepting;
        }
        for (b, _) in listeners.iter().zip(&ready).filter(|(_, r)| **r) {
            // Take every connection waiting on this socket.
            loop {
                let tcp = match b.listener.accept() {
                    Ok((tcp, _)) => tcp,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ECONNABORTED, EMFILE...: this one is lost, the
                    // listener goes on; a short pause keeps a socket that
                    // stays readable (out of descriptors) from spinning.
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                };
                let _ = tcp.set_nonblocking(false);
                if !running.try_enter(max_sessions) {
                    refuse_busy(tcp);
                    continue;
                }
                let guard = Leave(running.clone());
                let session = session.clone();
                let tls = b.implicit_tls;
                let spawned = std::thread::Builder::new()
                    .name("mail-recv session".into())
                    .spawn(move || {
                        let _guard = guard;
                        session(tcp, tls);
                    });
                // A thread that cannot start drops its guard and stream:
                // the client sees the connection close and retries.
                drop(spawned);
            }
        }
    }
    drop(listeners);
    running.wait_idle();
    Ok(())
}

/// `421 4.3.2` and close, without waiting on a client that does not read.
fn refuse_busy(mut tcp: TcpStream) {
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = tcp.write_all(TOO_BUSY);
    let _ = tcp.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;

    #[test]
    fn over_the_cap_a_client_gets_421_and_a_stop_waits_for_sessions() {
        let b = bind("127.0.0.1:0", false).unwrap();
        let addr = b.listener.local_addr().unwrap();
        let (stop, wake) = stopper().unwrap();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let started_tx = Mutex::new(started_tx);
        let server = std::thread::spawn(move || {
            serve(vec![b], 1, wake, move |mut tcp, tls| {
                assert!(!tls);
                let _ = started_tx.lock().unwrap().send(());
                let _ = release_rx.lock().unwrap().recv();
                let _ = tcp.write_all(b"220 done\r\n");
            })
        });
        let first = TcpStream::connect(addr).unwrap();
        started_rx.recv().unwrap();
        // The cap is 1: the second connection is told to come back later.
        let second = TcpStream::connect(addr).unwrap();
        let mut line = String::new();
        BufReader::new(second).read_line(&mut line).unwrap();
        assert_eq!(line.as_bytes(), TOO_BUSY);
        // Stopping does not cut the session in progress.
        stop.stop();
        release_tx.send(()).unwrap();
        let mut line = String::new();
        BufReader::new(first).read_line(&mut line).unwrap();
        assert_eq!(line, "220 done\r\n");
        server.join().unwrap().unwrap();
        // The listener is closed once serve returns.
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_bad_listen_address_is_a_usage_error() {
        for bad in ["localhost", "1.2.3.4", ":25", "127.0.0.1:99999"] {
            assert_eq!(bind(bad, false).unwrap_err().kind(), Kind::Usage, "{bad}");
        }
    }
}
