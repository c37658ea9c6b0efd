//! A second IMAP/POP3 server family beside Dovecot: Courier IMAP and
//! Courier POP3, and mail-fetch's byte-identity, delete and UTF-8 cases run
//! against both.
//!
//! Courier's server packages conflict with Dovecot's, so they are never
//! installed: `tests/deps.sh` unpacks courier-base, courier-imap and
//! courier-pop into [`Courier::root`] and installs the libraries and
//! authdaemond (courier-authlib, courier-authlib-userdb), which do not
//! conflict. authlib reads `/etc/courier/authdaemonrc` and talks over
//! `/run/courier/authdaemon/socket`, paths compiled in: so each [`Courier`]
//! runs in a mount namespace and a PID namespace of its own (`unshare`),
//! with its own directories bound over those two. Nothing global is shared
//! between instances, tests or concurrent test runs, and users are virtual
//! (authlib's userdb, mail processes as `nobody`, a Maildir anywhere), as in
//! the Dovecot harness; the only global state is the two empty mount points.
//! Killing the namespace's first process ends every process in it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

// ---------------------------------------------------------------------------
// The Courier harness
// ---------------------------------------------------------------------------

/// A private Courier IMAP/POP3 (IMAP with STARTTLS, IMAPS, POP3 with STLS,
/// POP3S) on free loopback ports, configured and logging in one directory,
/// with its own self-signed certificate for `localhost` / `127.0.0.1`
/// ([`Courier::cert`], what a client passes as its CA file). Configured as
/// Debian ships it (its `imapd`, `imapd-ssl`, `pop3d`, `pop3d-ssl` files),
/// but for ports, certificate and authentication. Stopped on drop.
///
/// Needs root and the unpacked packages: check [`Courier::unavailable`]
/// with `skip_unless` first. Users get the password [`Courier::PASSWORD`].
pub struct Courier {
    /// Config, certificate, authdaemon socket directory and logs.
    pub dir: PathBuf,
    pub host: &'static str,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub pop3_port: u16,
    pub pop3s_port: u16,
    /// Self-signed server certificate (PEM): trust it to talk TLS to this server.
    pub cert: PathBuf,
    users: Vec<String>,
    child: Child,
}

/// `openssl passwd -6 -salt postlinetest secret`: [`Courier::PASSWORD`] as
/// authlib's userdb keeps it.
const PASSWORD_HASH: &str = "$6$postlinetest$FcojTLwClCkLX0xAQGEayTIZbhnbF8WL6X6FxBuOUqXwXiD5AFFH/WYYaMgT8noNrp..0sZ4p05ANwwvD6glI0";

/// Where authlib's pieces are installed (courier-authlib, -userdb).
const AUTHDAEMOND: &str = "/usr/lib/courier/courier-authlib/authdaemond";
const MAKEUSERDB: &str = "/usr/sbin/makeuserdb";
/// The compiled-in paths each instance binds its own directories over.
const ETC: &str = "/etc/courier";
const AUTHVAR: &str = "/run/courier/authdaemon";

impl Courier {
    /// Every user's password (the same as Dovecot's).
    pub const PASSWORD: &'static str = Dovecot::PASSWORD;

    /// Where `tests/deps.sh` unpacked the server packages.
    pub fn root() -> PathBuf {
        std::env::var_os("POSTLINE_COURIER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/postline-courier"))
            .join("root")
    }

    /// Why Courier cannot run here, if it cannot.
    pub fn unavailable() -> Option<String> {
        if !is_root() {
            return Some("Courier needs root".into());
        }
        let root = Courier::root();
        let mut missing: Vec<String> = [
            "usr/sbin/couriertcpd",
            "usr/bin/couriertls",
            "usr/bin/imapd",
            "usr/lib/courier/courier/imaplogin",
            "usr/lib/courier/courier/courierpop3login",
            "usr/lib/courier/courier/courierpop3d",
            "etc/courier/imapd",
            "etc/courier/pop3d",
        ]
        .iter()
        .map(|p| root.join(p))
        .chain([AUTHDAEMOND, MAKEUSERDB, "/usr/bin/unshare"].map(PathBuf::from))
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
        if missing.is_empty() {
            return None;
        }
        missing.sort();
        Some(format!(
            "Courier is not unpacked/installed (run tests/deps.sh as root); missing: {}",
            missing.join(", ")
        ))
    }

    /// Write a config in `dir` (created), start authdaemond and the four
    /// listeners in namespaces of their own and wait until they accept
    /// connections. Panics with the logs when Courier does not come up.
    pub fn start(dir: &Path) -> Courier {
        if let Some(why) = Courier::unavailable() {
            panic!("Courier::start: {why} (check Courier::unavailable() with skip_unless first)");
        }
        let mut last = String::new();
        // A port picked free may be taken before couriertcpd binds it.
        for _ in 0..3 {
            match Courier::try_start(dir) {
                Ok(c) => return c,
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last}");
    }

    fn try_start(dir: &Path) -> Result<Courier, String> {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let dir = std::path::absolute(dir).expect("absolute");
        let text = dir.to_string_lossy().into_owned();
        assert!(
            !text.contains(|c: char| c.is_whitespace() || "'\"\\$`|:".contains(c)),
            "courier dir path must be plain: {text}"
        );
        let root = Courier::root();
        for d in [ETC, AUTHVAR] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mount point {d}: {e}"));
        }
        for sub in ["etc", "authdaemon", "logs", "home"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create courier dirs");
        }
        for f in dir_names(&dir.join("logs")) {
            let _ = std::fs::remove_file(dir.join("logs").join(f));
        }
        make_traversable(&dir.join("home"));

        let cert = dir.join("cert.pem");
        let combined = dir.join("combined.pem");
        if !combined.exists() {
            let key = dir.join("key.pem");
            let out = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec"])
                .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
                .args(["-days", "3650", "-sha256", "-subj", "/CN=localhost"])
                .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .stdin(Stdio::null())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl req failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // couriertls reads key and certificate from one file, after
            // the login process may have dropped its privileges.
            let mut pem = std::fs::read(&key).expect("key");
            pem.extend(std::fs::read(&cert).expect("cert"));
            std::fs::write(&combined, pem).expect("combined pem");
            for f in [&cert, &combined] {
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644))
                    .expect("chmod pem");
            }
        }
        std::fs::write(
            dir.join("etc/authdaemonrc"),
            format!(
                "authmodulelist=\"authuserdb\"\ndaemons=2\nauthdaemonvar={AUTHVAR}\nDEBUG_LOGIN=0\nDEFAULTOPTIONS=\"\"\nLOGGEROPTS=\"\"\n"
            ),
        )
        .expect("authdaemonrc");

        let ports = free_ports(4);
        let (imap_port, imaps_port, pop3_port, pop3s_port) =
            (ports[0], ports[1], ports[2], ports[3]);
        let host = "127.0.0.1";
        let (d, r) = (dir.display(), root.display());
        let login = format!("{r}/usr/lib/courier/courier");
        let tls = format!("{r}/usr/bin/couriertls -server -tcpd");
        let imap = format!("{login}/imaplogin {r}/usr/bin/imapd Maildir");
        let pop3 = format!("{login}/courierpop3login {login}/courierpop3d Maildir");
        // The namespace's first process: binds the private directories,
        // starts authdaemond and a couriertcpd per listener (in the
        // environment Debian's config files give, plus ours), and waits.
        let script = format!(
            r#"# Generated by the postline test harness; run by unshare.
mount --bind {d}/etc {ETC} || exit 1
mount --bind {d}/authdaemon {AUTHVAR} || exit 1
(set -a; . {ETC}/authdaemonrc; exec {AUTHDAEMOND}) >>{d}/logs/authdaemond.log 2>&1 &
serve() {{ # name config extra-environment port command...
  name=$1 conf=$2 extra=$3 port=$4; shift 4
  (set -a; . {r}/etc/courier/$conf; . {r}/etc/courier/$conf-ssl
   COURIERTLS={r}/usr/bin/couriertls TLS_CERTFILE={d}/combined.pem
   unset TLS_CACHEFILE TLS_DHPARAMS TLS_STARTTLS_PROTOCOL IMAP_SHAREDINDEXFILE
   eval "$extra"; set +a
   exec {r}/usr/sbin/couriertcpd -address={host} -maxprocs=40 -maxperip=40 \
     -nodnslookup -noidentlookup "$port" "$@") >>{d}/logs/$name.log 2>&1 &
}}
serve imap imapd "IMAP_STARTTLS=YES" {imap_port} {imap}
serve imaps imapd "IMAP_TLS=1" {imaps_port} {tls} {imap}
serve pop3 pop3d "POP3_STARTTLS=YES" {pop3_port} {pop3}
serve pop3s pop3d "POP3_TLS=1 POP3_STARTTLS=NO" {pop3s_port} {tls} {pop3}
wait
"#
        );
        let run = dir.join("run.sh");
        std::fs::write(&run, script).expect("run.sh");
        let startup = std::fs::File::create(dir.join("logs/startup.log")).expect("startup log");
        let child = Command::new("unshare")
            .args(["--fork", "--pid", "--kill-child", "--mount"])
            .args(["--propagation", "private", "sh"])
            .arg(&run)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir(&dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(startup.try_clone().expect("dup"))
            .stderr(startup)
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut c = Courier {
            dir: dir.clone(),
            host,
            imap_port,
            imaps_port,
            pop3_port,
            pop3s_port,
            cert,
            users: Vec::new(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let socket = dir.join("authdaemon/socket");
        let mut waiting = vec![imap_port, imaps_port, pop3_port, pop3s_port];
        while !waiting.is_empty() || !socket.exists() {
            waiting.retain(|&port| {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
            });
            if waiting.is_empty() && socket.exists() {
                break;
            }
            if let Ok(Some(st)) = c.child.try_wait() {
                return Err(format!("courier exited ({st})\n{}", c.logs()));
            }
            let logs = c.logs();
            if logs.contains("Address already in use") || Instant::now() > deadline {
                c.stop();
                return Err(format!(
                    "courier did not listen on {waiting:?} (or no authdaemon socket) within 20 s\n{logs}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(c)
    }

    /// Every log of this instance, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for name in dir_names(&self.dir.join("logs")) {
            let p = self.dir.join("logs").join(&name);
            let text = std::fs::read(&p).unwrap_or_default();
            s.push_str(&format!(
                "--- courier {name} ---\n{}",
                String::from_utf8_lossy(&text)
            ));
        }
        s
    }

    /// Add a user whose INBOX is the Maildir `maildir` (created, owned by
    /// the mail user, when missing; [`make_readable`] an existing one after
    /// writing to it as root). Works while Courier runs.
    pub fn add_user(&mut self, name: &str, maildir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
            "user names are lowercase letters, digits and -: {name:?}"
        );
        if !maildir.exists() {
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(maildir.join(sub)).expect("create Maildir");
            }
            make_readable(maildir);
        }
        let md = std::path::absolute(maildir).expect("absolute");
        let md = md.to_string_lossy();
        assert!(
            !md.contains(['|', '\t', '\n']),
            "Maildir path must not contain | or controls: {md}"
        );
        let home = self.dir.join("home").join(name);
        std::fs::create_dir_all(&home).expect("home");
        make_readable(&home);
        self.users.push(format!(
            "{name}\tuid={MAIL_UID}|gid={MAIL_GID}|home={home}|mail={md}|systempw={PASSWORD_HASH}\n",
            home = home.display(),
            md = md.trim_end_matches('/'),
        ));
        let userdb = self.dir.join("etc/userdb");
        std::fs::write(&userdb, self.users.concat()).expect("userdb");
        std::fs::set_permissions(&userdb, std::fs::Permissions::from_mode(0o600))
            .expect("chmod userdb");
        // makeuserdb builds userdb.dat and userdbshadow.dat beside it (new
        // files renamed into place: authdaemond sees the change).
        let out = Command::new(MAKEUSERDB)
            .arg("-f")
            .arg(&userdb)
            .stdin(Stdio::null())
            .output()
            .expect("run makeuserdb");
        assert!(
            out.status.success(),
            "makeuserdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every message of `user`'s INBOX as the server sends BODY[] (CRLF line
    /// ends), in UID order, read over plain IMAP by Python's imaplib.
    pub fn imap_fetch(&self, user: &str) -> Vec<Vec<u8>> {
        imaplib_fetch(self.host, self.imap_port, user, Courier::PASSWORD)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Kill every process of the instance (its namespaces' first process,
    /// which takes the rest with it) and reap it.
    pub fn stop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tests/helpers/imap_fetch.py` against any server: INBOX's messages as
/// sent (CRLF), in UID order.
fn imaplib_fetch(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
) -> Result<Vec<Vec<u8>>, String> {
    let out = Command::new("python3")
        .arg(helper("imap_fetch.py"))
        .args([host, &port.to_string(), user, password, "INBOX"])
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    if !out.status.success() {
        return Err(format!(
            "imap_fetch.py {user} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(parse_length_prefixed(&out.stdout))
}

#[test]
fn courier_serves_imap_pop3_and_tls_with_its_own_certificate() {
    let why = Courier::unavailable();
    if skip_unless(why.is_none(), why.as_deref().unwrap_or_default()) {
        return;
    }
    let t = TempDir::new();
    let md = t.join("mail/bob");
    let mut c = Courier::start(&t.join("courier"));
    c.add_user("bob", &md);
    std::fs::write(md.join("new/1.M1P1.test"), b"Subject: hi\n\nhello\n").unwrap();
    make_readable(&md);
    assert_eq!(
        c.imap_fetch("bob"),
        vec![b"Subject: hi\r\n\r\nhello\r\n".to_vec()]
    );
    // Implicit TLS and STARTTLS verify against the harness certificate.
    for (port, starttls) in [
        (c.imaps_port, None),
        (c.pop3s_port, None),
        (c.imap_port, Some("imap")),
        (c.pop3_port, Some("pop3")),
    ] {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .arg("-CAfile")
            .arg(&c.cert)
            .args(["-verify_return_error", "-verify_ip", "127.0.0.1"]);
        if let Some(p) = starttls {
            cmd.args(["-starttls", p]);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("openssl s_client");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "port {port}: {text}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
    }
    // A wrong password is refused.
    assert!(imaplib_fetch(c.host, c.imap_port, "bob", "wrong").is_err());
    let ports = [c.imap_port, c.imaps_port, c.pop3_port, c.pop3s_port];
    drop(c);
    // Every listener is gone with the namespace.
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open"
        );
    }
}
