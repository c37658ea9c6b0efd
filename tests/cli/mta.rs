//! A real Postfix for tests: own config, queue and log under a temp dir,
//! SMTP on a free loopback port, mail for the test domain handed over LMTP
//! to the harness's Dovecot, everything else refused. Needs root (Postfix's
//! master runs as root and drops to the `postfix` user).
#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running Postfix instance; stopped on drop.
pub struct Postfix {
    /// Config directory (`postfix -c`).
    pub conf_dir: PathBuf,
    /// Plain SMTP (STARTTLS offered) on 127.0.0.1.
    pub smtp_port: u16,
    /// Submission: STARTTLS required, AUTH (through Dovecot) required.
    pub submission_port: u16,
    /// SMTPS: implicit TLS, AUTH required.
    pub smtps_port: u16,
    /// Plain SMTP that offers no STARTTLS.
    pub plain_port: u16,
    /// The log file.
    pub log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Is Postfix installed?
pub fn available() -> bool {
    Path::new("/usr/sbin/postfix").exists()
}

impl Postfix {
    /// Start Postfix in `dir`, relaying `domain` over LMTP to 127.0.0.1:`lmtp_port`;
    /// `cert`/`key` are used for STARTTLS.
    pub fn start(dir: &Path, domain: &str, lmtp_port: u16, cert: &Path, key: &Path) -> Postfix {
        Postfix::start_with_auth(dir, domain, lmtp_port, cert, key, None)
    }

    /// [`Postfix::start`], with SMTP AUTH on the submission and smtps ports
    /// checked through the Dovecot auth socket `sasl_socket` (when given).
    pub fn start_with_auth(
        dir: &Path,
        domain: &str,
        lmtp_port: u16,
        cert: &Path,
        key: &Path,
        sasl_socket: Option<&Path>,
    ) -> Postfix {
        crate::harness::retry_port_race(|| {
            Postfix::try_start(dir, domain, lmtp_port, cert, key, sasl_socket)
        })
    }

    fn try_start(
        dir: &Path,
        domain: &str,
        lmtp_port: u16,
        cert: &Path,
        key: &Path,
        sasl_socket: Option<&Path>,
    ) -> Result<Postfix, String> {
        let conf = dir.join("etc");
        let queue = dir.join("spool");
        let data = dir.join("data");
        for d in [&conf, &queue, &data] {
            fs::create_dir_all(d).expect("postfix dirs");
        }
        let chown = Command::new("chown")
            .arg("postfix:postfix")
            .arg(&data)
            .status()
            .expect("chown");
        assert!(chown.success(), "chown postfix data dir");
        let smtp_port = free_port();
        let (submission_port, smtps_port, plain_port) = (free_port(), free_port(), free_port());
        let log = dir.join("maillog");
        // A retry must not see the previous attempt's bind errors.
        let _ = fs::remove_file(&log);
        fs::write(conf.join("vdomains"), format!("{domain} OK\n")).unwrap();
        let main_cf = format!(
            "compatibility_level = 3.6
config_directory = {conf}
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {log}
maillog_file_prefixes = {dir}
myhostname = mx.{domain}
mydomain = {domain}
myorigin = {domain}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP postline-test
biff = no
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = static:OK
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
default_transport = error:postline test: no outside network
relay_transport = error:postline test: no outside network
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtp_tls_security_level = none
lmtp_tls_security_level = none
smtpd_error_sleep_time = 0
in_flow_delay = 0
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl}
smtpd_sasl_auth_enable = no
smtpd_sasl_authenticated_header = no
",
            sasl = sasl_socket.map_or(String::new(), |p| p.display().to_string()),
            conf = conf.display(),
            queue = queue.display(),
            data = data.display(),
            log = log.display(),
            dir = dir.display(),
            cert = cert.display(),
            key = key.display(),
        );
        fs::write(conf.join("main.cf"), main_cf).unwrap();
        let mut master = format!("127.0.0.1:{smtp_port} inet n - n - - smtpd\n");
        master.push_str(&format!(
            "127.0.0.1:{plain_port} inet n - n - - smtpd\n  -o smtpd_tls_security_level=none\n"
        ));
        if sasl_socket.is_some() {
            master.push_str(&format!(
                "127.0.0.1:{submission_port} inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:{smtps_port} inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
"
            ));
        }
        for line in [
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ] {
            master.push_str(line);
            master.push('\n');
        }
        fs::write(conf.join("master.cf"), master).unwrap();
        let out = Command::new("postfix")
            .arg("-c")
            .arg(&conf)
            .arg("start")
            .output()
            .expect("run postfix");
        let pf = Postfix {
            conf_dir: conf,
            smtp_port,
            submission_port,
            smtps_port,
            plain_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut ports = vec![smtp_port, plain_port];
        if sasl_socket.is_some() {
            ports.extend([submission_port, smtps_port]);
        }
        while ports
            .iter()
            .any(|&p| TcpStream::connect(("127.0.0.1", p)).is_err())
        {
            let log = fs::read_to_string(&pf.log).unwrap_or_default();
            if Instant::now() > deadline || log.contains("Address already in use") {
                // Dropping pf stops what did start.
                return Err(format!(
                    "postfix did not come up: {}{}\nlog: {log}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(pf)
    }

    /// Wait until the queue is empty (every message delivered or bounced).
    pub fn wait_queue_empty(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = Command::new("postqueue")
                .arg("-c")
                .arg(&self.conf_dir)
                .arg("-j")
                .output()
                .expect("postqueue");
            if out.stdout.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postfix queue not empty: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.conf_dir)
            .arg("stop")
            .output();
        let pid_file = self
            .conf_dir
            .parent()
            .map(|d| d.join("spool/pid/master.pid"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(p) = &pid_file {
            let alive = fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .is_some_and(|pid| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                });
            if !alive || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The usual end-to-end pair: a Dovecot with user `alice` (INBOX a Maildir
/// at `DIR/mail/alice`) behind a Postfix that takes `alice@example.test`
/// and hands it over LMTP. `None` (after a skip note, or a failure under CI)
/// when not root or Postfix is missing.
pub struct Pair {
    /// The mailbox server.
    pub dovecot: crate::harness::Dovecot,
    /// The MTA in front of it.
    pub postfix: Postfix,
    /// alice's Maildir.
    pub maildir: PathBuf,
}

/// The test domain the pair accepts.
pub const DOMAIN: &str = "example.test";

impl Pair {
    /// Start the pair under `dir`.
    pub fn start(dir: &Path) -> Option<Pair> {
        use crate::harness::{is_root, skip_unless};
        if skip_unless(is_root(), "Dovecot and Postfix need root")
            || skip_unless(available(), "Postfix is not installed")
        {
            return None;
        }
        let maildir = dir.join("mail/alice");
        let mut dovecot = crate::harness::Dovecot::start(&dir.join("dovecot"));
        // Dovecot's LMTP looks up the local part (auth_username_format = %Ln).
        dovecot.add_user("alice", &maildir);
        let sasl = dovecot.dir.join("run/auth-postfix");
        let postfix = Postfix::start_with_auth(
            &dir.join("postfix"),
            DOMAIN,
            dovecot.lmtp_port,
            &dovecot.cert,
            &dovecot.key,
            Some(&sasl),
        );
        Some(Pair {
            dovecot,
            postfix,
            maildir,
        })
    }
}
