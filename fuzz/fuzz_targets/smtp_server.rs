//! The SMTP/LMTP server driven through whole sessions by arbitrary client
//! bytes, in arbitrary pieces, with a backend that accepts everything:
//! `serve` never panics, every reply line it writes is `NNN` plus text
//! with CRLF, and it delivers at most one message per final dot or BDAT
//! LAST it answered. A fake STARTTLS keeps the stream as it is, so the
//! code after the upgrade (AUTH over "TLS") is reached too.
#![no_main]
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use postline::exit::Result;
use postline::proto::smtp::server::{
    self, AuthVerdict, Backend, BareLf, Limits, Peer, Session, Settings, TlsInfo, Transaction,
    Upgrade,
};
use postline::proto::smtp::{Exchange, Protocol, Reply};

/// The client: `data` handed out `chunk` bytes at a time; the server's
/// replies are kept.
struct Client<'a> {
    data: &'a [u8],
    chunk: usize,
    out: Rc<RefCell<Vec<u8>>>,
    tls: bool,
}

impl Read for Client<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.data.len().min(b.len()).min(self.chunk);
        b[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl Write for Client<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.out.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Exchange for Client<'_> {
    fn is_tls(&self) -> bool {
        self.tls
    }
}

impl Upgrade for Client<'_> {
    fn start_tls(mut self) -> Result<Self> {
        self.tls = true;
        Ok(self)
    }
    fn tls_info(&self) -> Option<TlsInfo> {
        self.tls.then(|| TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_128_GCM_SHA256".into(),
        })
    }
}

#[derive(Default)]
struct Accept {
    delivered: usize,
}

impl Backend for Accept {
    fn rcpt(&mut self, _: &Session, _: &Transaction, _: &str) -> std::result::Result<(), Reply> {
        Ok(())
    }
    fn auth(&mut self, _: &str, _: &[u8]) -> AuthVerdict {
        AuthVerdict::Ok
    }
    fn deliver(&mut self, _: &Session, tx: &Transaction, message: &[u8]) -> Vec<Reply> {
        self.delivered += 1;
        assert!(message.starts_with(b"Received: "));
        assert!(!tx.rcpts.is_empty());
        tx.rcpts
            .iter()
            .map(|_| server::reply(250, "2.0.0", "ok"))
            .collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, data)) = data.split_first() else {
        return;
    };
    let settings = Settings {
        protocol: if knobs & 1 == 0 {
            Protocol::Smtp
        } else {
            Protocol::Lmtp
        },
        hostname: "mx.example".into(),
        limits: Limits {
            max_size: 256,
            max_line: 64,
            max_recipients: 4,
            max_received: 2,
            max_errors: 20,
            ..Limits::default()
        },
        bare_lf: if knobs & 2 == 0 {
            BareLf::Normalize
        } else {
            BareLf::Reject
        },
        starttls: true,
        auth: true,
    };
    let chunk = 1 + usize::from(knobs >> 2);
    let out = Rc::new(RefCell::new(Vec::new()));
    let client = Client {
        data,
        chunk,
        out: out.clone(),
        tls: knobs & 0x80 != 0,
    };
    let mut backend = Accept::default();
    let summary = server::serve(client, &settings, Peer::default(), &mut backend).unwrap();
    assert!(summary.accepted as usize <= backend.delivered);
    let out = out.borrow();
    assert!(out.is_empty() || out.ends_with(b"\r\n"));
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(line[3] == b' ' || line[3] == b'-' || line[3] == b'\r', "{line:?}");
        assert!(line.ends_with(b"\r") && !line[..line.len() - 1].contains(&b'\r'));
    }
});
