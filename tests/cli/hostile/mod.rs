//! Hostile peers: scripted servers and planted files that lie about sizes,
//! reuse ids, send what was not asked, stall or flood, and the promises
//! they must not break (ARCHITECTURE.md, invariants 10-14): never delete
//! unstored mail, never advance state past what was stored, never write
//! through a symlink, never hold memory in proportion to what a peer sends,
//! never run past a deadline.
//!
//! Each test here failed before the fix it guards.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;

use crate::harness::{Tool, project_dir};

mod imap;
mod pop3;
mod smtp;
mod store;

/// A scripted server on a free loopback port: `script` runs once per
/// accepted connection, in order, for `conns` connections.
pub struct Scripted {
    pub port: u16,
    handle: Option<JoinHandle<()>>,
}

impl Scripted {
    pub fn start<F>(conns: usize, mut script: F) -> Scripted
    where
        F: FnMut(usize, TcpStream) + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = l.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            for i in 0..conns {
                match l.accept() {
                    Ok((s, _)) => script(i, s),
                    Err(_) => return,
                }
            }
        });
        Scripted {
            port,
            handle: Some(handle),
        }
    }

    /// Wait for the script to finish (panics in the script fail the test).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            h.join().expect("the scripted server panicked");
        }
    }
}

/// A line-oriented view of a scripted connection.
pub struct Wire {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Wire {
    pub fn new(s: TcpStream) -> Wire {
        let w = s.try_clone().expect("clone socket");
        Wire {
            r: BufReader::new(s),
            w,
        }
    }
    /// Send raw bytes (ignoring a peer that went away).
    pub fn send(&mut self, b: impl AsRef<[u8]>) {
        let _ = self.w.write_all(b.as_ref());
    }
    /// Drop the connection in both directions (a server that dies).
    pub fn close(&mut self) {
        let _ = self.w.shutdown(std::net::Shutdown::Both);
    }
    /// Read one line without its CRLF; `None` at end of stream.
    pub fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim_end_matches(['\r', '\n']).to_string()),
        }
    }
}

/// `tool` run under `tests/helpers/peak_rss.py`, which writes its peak RSS
/// (KiB) to `out`; read it back with [`peak_rss_kib`]. An RSS bound, not a
/// timing: the cap a test asserts is what the tool promises to hold.
pub fn measured(name: &str, home: &Path, out: &Path) -> Tool {
    let script = project_dir().join("tests/helpers/peak_rss.py");
    let script = script.to_str().expect("utf-8 path").to_string();
    let out = out.to_str().expect("utf-8 path").to_string();
    Tool::wrapped(&["python3", &script, &out], name, home)
}

/// The peak RSS in KiB that [`measured`] recorded.
pub fn peak_rss_kib(out: &Path) -> u64 {
    std::fs::read_to_string(out)
        .expect("peak_rss.py wrote its file")
        .trim()
        .parse()
        .expect("a number")
}
