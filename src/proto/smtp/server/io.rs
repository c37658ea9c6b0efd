//! The server's input and output: a fixed-size input buffer the commands
//! and the message are read from (so pipelined commands are taken in
//! order, and whatever was buffered can be dropped at STARTTLS), and the
//! replies queued until a read would wait.
//!
//! Guarantees: the input buffer never grows (a command line longer than
//! the limit is read to its LF and dropped, never held); pending replies
//! are written before every read from the stream, so a client waiting for
//! them is never deadlocked against us; the queued replies are bounded
//! (written out past 16 KiB).

use std::io;

use super::Upgrade;

/// The input buffer's size: reads are this big; a command line must fit.
const BUF: usize = 64 * 1024;
/// Replies held before they are written even though no read waits.
const OUT_HIGH: usize = 16 * 1024;

/// What reading a line gave.
pub(super) enum Line {
    Text(Vec<u8>),
    TooLong,
    Eof,
}

/// The stream with its input buffer and pending replies.
pub(super) struct Io<S> {
    pub(super) stream: Option<S>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
}

impl<S: Upgrade> Io<S> {
    pub(super) fn new(stream: S, max_line: usize) -> Io<S> {
        Io {
            stream: Some(stream),
            buf: vec![0; BUF.max(max_line.saturating_add(2))],
            start: 0,
            end: 0,
            out: Vec::new(),
        }
    }

    fn s(&mut self) -> io::Result<&mut S> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the stream is gone"))
    }

    /// Write the pending replies.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let s = self.s()?;
        s.write_all(&out)?;
        s.flush()
    }

    pub(super) fn queue(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(bytes);
        if self.out.len() > OUT_HIGH {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Read more input (after writing every pending reply: the client may
    /// be waiting for them). `Ok(0)` is EOF.
    pub(super) fn fill(&mut self) -> io::Result<usize> {
        self.flush()?;
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(usize::MAX); // full: the caller consumes first
        }
        let end = self.end;
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the stream is gone"))?;
        let n = loop {
            match stream.read(&mut self.buf[end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.end += n;
        Ok(n)
    }

    /// One line of at most `max` octets, LF included; a longer one is read
    /// to its LF and dropped.
    pub(super) fn line(&mut self, max: usize) -> io::Result<Line> {
        let mut dropping = false;
        loop {
            if let Some(i) = memchr::memchr(b'\n', self.buffered()) {
                if dropping || i + 1 > max {
                    self.consume(i + 1);
                    return Ok(Line::TooLong);
                }
                let mut l = self.buffered()[..i].to_vec();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                self.consume(i + 1);
                return Ok(Line::Text(l));
            }
            if self.buffered().len() >= max {
                dropping = true;
                self.start = 0;
                self.end = 0;
            }
            if self.fill()? == 0 {
                return Ok(Line::Eof);
            }
        }
    }

    /// Drop everything buffered (before the TLS handshake).
    pub(super) fn discard(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}
