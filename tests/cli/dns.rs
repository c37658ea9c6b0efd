//! A real DNS server for tests: dnsmasq on a free 127.0.0.1 port, answering
//! only from the records a test gives (names under `.test` never leave it:
//! unknown ones are NXDOMAIN). Stopped on drop.
#![allow(dead_code)]

use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Is dnsmasq installed?
pub fn available() -> bool {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .iter()
        .any(|p| Path::new(p).exists())
}

/// A running dnsmasq.
pub struct Dnsmasq {
    /// `127.0.0.1:PORT`, for `--resolver`.
    pub addr: String,
    /// Its query log.
    pub log: PathBuf,
    child: Child,
}

fn free_udp_port() -> u16 {
    // A port free for both UDP and TCP.
    loop {
        let port = crate::harness::free_ports(1)[0];
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Dnsmasq {
    /// Start dnsmasq in `dir` with `records` (dnsmasq config lines such as
    /// `mx-host=example.test,mx.example.test,10`).
    pub fn start(dir: &Path, records: &str) -> Dnsmasq {
        fs::create_dir_all(dir).expect("dns dir");
        let port = free_udp_port();
        let log = dir.join("dnsmasq.log");
        let conf = dir.join("dnsmasq.conf");
        fs::write(
            &conf,
            format!(
                "port={port}
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
no-poll
no-negcache
user=root
log-facility={log}
log-queries
local=/test/
{records}
",
                log = log.display()
            ),
        )
        .expect("write dnsmasq.conf");
        let child = Command::new("dnsmasq")
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run dnsmasq");
        let d = Dnsmasq {
            addr: format!("127.0.0.1:{port}"),
            log,
            child,
        };
        // Up when its TCP port accepts (it serves UDP and TCP alike).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "dnsmasq did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
