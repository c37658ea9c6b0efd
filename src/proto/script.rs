//! A scripted server for the protocol clients' unit tests (built only for
//! tests): what the "server" sends, cut into segments that each arrive
//! whole (as in one TCP segment, so a test decides which replies come
//! together), an I/O error where a test wants one (a timeout, a reset),
//! and a record of everything the client wrote.
//!
//! It replaces loopback servers on threads: the same dialogues, without
//! sockets, ports or timing, and with the bytes the client sent checked
//! after the fact. The record is shared ([`Script::sent`]), so it can be
//! read after the client is gone (POP3's `quit` consumes the session).
//! [`Sink`] catches a `-v` transcript the same way.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crate::proto::Exchange;

enum Segment {
    Bytes(Vec<u8>),
    Fail(io::ErrorKind),
}

/// What the client wrote, shared with the test.
#[derive(Clone, Default)]
pub(crate) struct Sent(Rc<RefCell<(Vec<u8>, usize)>>);

impl Sent {
    /// Every byte written, as text (lossy).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.borrow().0).into_owned()
    }

    /// Every line written, without its line end.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_string).collect()
    }

    /// How many `write` calls the client made.
    pub(crate) fn writes(&self) -> usize {
        self.0.borrow().1
    }
}

/// The scripted server (see the module docs).
pub(crate) struct Script {
    input: VecDeque<Segment>,
    sent: Sent,
    tls: bool,
}

/// Random server streams for the clients' "no panic on any reply"
/// properties: up to `max` segments, each one to three of `frags` glued,
/// chosen by a seeded xorshift (reproducible, no dependency).
pub struct Noise<'a> {
    x: u64,
    frags: &'a [&'a str],
}

impl<'a> Noise<'a> {
    /// A generator seeded with `seed` (not zero) over `frags`.
    pub fn new(seed: u64, frags: &'a [&'a str]) -> Noise<'a> {
        Noise { x: seed, frags }
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.x
    }

    /// The next stream: up to `max` segments.
    pub fn segments(&mut self, max: u64) -> Vec<String> {
        let n = self.next() % max;
        (0..n)
            .map(|_| {
                let k = 1 + self.next() % 3;
                (0..k)
                    .map(|_| self.frags[(self.next() % self.frags.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }
}

impl Script {
    /// A server that sends `segments`, each arriving whole, then EOF.
    pub(crate) fn segments<T: AsRef<[u8]>>(segments: &[T]) -> Script {
        Script {
            input: segments
                .iter()
                .map(|s| Segment::Bytes(s.as_ref().to_vec()))
                .collect(),
            sent: Sent::default(),
            tls: false,
        }
    }

    /// A server that sends each line of `text` on its own.
    pub(crate) fn lines(text: &str) -> Script {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        Script::segments(&lines)
    }

    /// Then these bytes, as one segment.
    pub(crate) fn then(mut self, bytes: impl AsRef<[u8]>) -> Script {
        self.input
            .push_back(Segment::Bytes(bytes.as_ref().to_vec()));
        self
    }

    /// Then a read that fails with `kind` (`WouldBlock` is how Linux
    /// reports a socket timeout).
    pub(crate) fn then_fail(mut self, kind: io::ErrorKind) -> Script {
        self.input.push_back(Segment::Fail(kind));
        self
    }

    /// Report the stream as encrypted (for what a client says about TLS).
    pub(crate) fn encrypted(mut self) -> Script {
        self.tls = true;
        self
    }

    /// The record of what the client writes.
    pub(crate) fn sent(&self) -> Sent {
        self.sent.clone()
    }
}

impl Read for Script {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self.input.front_mut() {
            None => Ok(0),
            Some(Segment::Fail(kind)) => {
                let kind = *kind;
                self.input.pop_front();
                Err(io::Error::new(kind, "scripted failure"))
            }
            Some(Segment::Bytes(seg)) => {
                let n = seg.len().min(b.len());
                b[..n].copy_from_slice(&seg[..n]);
                seg.drain(..n);
                if seg.is_empty() {
                    self.input.pop_front();
                }
                Ok(n)
            }
        }
    }
}

impl Write for Script {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let mut s = self.sent.0.borrow_mut();
        s.0.extend_from_slice(b);
        s.1 += 1;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Exchange for Script {
    fn is_tls(&self) -> bool {
        self.tls
    }
}

/// A transcript sink whose text a test reads after the dialogue.
#[derive(Clone, Default)]
pub(crate) struct Sink(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Sink {
    /// Everything written, as text (lossy).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
