//! The SMTP/LMTP client driven through a whole session by arbitrary server
//! bytes: greeting, EHLO/LHLO, AUTH, a pipelined or plain transaction with
//! several recipients, QUIT. Whatever the server sends, in whatever pieces,
//! the client returns errors and outcomes, never panics, and a recipient
//! counts as accepted only with a 2xx.
#![no_main]
use std::io::{self, Read, Write};

use libfuzzer_sys::fuzz_target;
use postline::proto::sasl::{Mechanism, Secret};
use postline::proto::smtp::{Client, Exchange, Protocol, Status};

/// The server side: `data` handed out `chunk` bytes at a time; whatever
/// the client writes is dropped.
struct Server<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Server<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.data.len().min(b.len()).min(self.chunk);
        b[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl Write for Server<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Exchange for Server<'_> {}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, data)) = data.split_first() else {
        return;
    };
    let protocol = if knobs & 1 == 0 {
        Protocol::Smtp
    } else {
        Protocol::Lmtp
    };
    let chunk = 1 + usize::from(knobs >> 2);
    let mut c = Client::new(Server { data, chunk }, protocol);
    if c.greeting().is_err() || c.hello("client.example").is_err() {
        return;
    }
    if knobs & 2 != 0 {
        let mech = if c.capabilities().auth.iter().any(|m| m == "LOGIN") {
            Mechanism::Login
        } else {
            Mechanism::Plain
        };
        if c.auth(mech, "user", &Secret::new("pw")).is_err() {
            return;
        }
    }
    let rcpts = ["a@example.org", "b@example.org", "c@example.org"];
    if let Ok(o) = c.send("s@example.org", &rcpts, b"Subject: x\n\nbody\n.\n") {
        assert_eq!(o.recipients.len(), rcpts.len());
        for r in &o.recipients {
            if let Status::Accepted(reply) = &r.status {
                assert!((200..300).contains(&reply.code), "{reply:?}");
            }
        }
        let _ = c.send("", &rcpts[..1], b"");
    }
    let _ = c.quit();
});
