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

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The instance's PID namespace (`/proc/PID/ns/pid`'s target).
    pid_ns: PathBuf,
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
        crate::harness::retry_port_race(|| Courier::try_start(dir))
    }

    fn try_start(dir: &Path) -> Result<Courier, String> {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let dir = std::path::absolute(dir).expect("absolute");
        let root = std::path::absolute(Courier::root()).expect("absolute");
        for p in [&dir, &root] {
            let text = p.to_string_lossy();
            assert!(
                !text.contains(|c: char| c.is_whitespace() || "'\"\\$`|:;&<>(){}*?#".contains(c)),
                "a path the generated script names must be plain: {text}"
            );
        }
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

        let (cert, key) = self_signed_cert(&dir);
        let combined = dir.join("combined.pem");
        if !combined.exists() {
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
            pid_ns: PathBuf::new(),
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
        // The namespace's first process is unshare's child.
        let unshare = c.child.id().to_string();
        c.pid_ns = proc_pids()
            .into_iter()
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|st| {
                    st.rsplit_once(") ")
                        .and_then(|(_, rest)| rest.split(' ').nth(1))
                        == Some(unshare.as_str())
                })
            })
            .and_then(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok())
            .ok_or_else(|| format!("courier: no process in its namespace\n{}", c.logs()))?;
        Ok(c)
    }

    /// The client sessions running in the instance (their process names):
    /// every process of its PID namespace but the long-lived ones.
    pub fn sessions(&self) -> Vec<String> {
        let mut v = self.processes();
        v.retain(|c| !DAEMONS.contains(&c.as_str()));
        v
    }

    /// The names of the live (not zombie) processes in the instance's PID
    /// namespace.
    fn processes(&self) -> Vec<String> {
        if self.pid_ns.as_os_str().is_empty() {
            return Vec::new();
        }
        proc_pids()
            .into_iter()
            .filter(|p| {
                std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|ns| ns == self.pid_ns)
            })
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .filter_map(|st| {
                // "pid (comm) state ...": comm may hold anything but ") ".
                let (head, rest) = st.rsplit_once(") ")?;
                let comm = head.split_once(" (")?.1;
                (!rest.starts_with('Z')).then(|| comm.to_string())
            })
            .collect()
    }

    /// Wait (up to 10 s) until no client session runs. Courier's POP3
    /// server answers QUIT before it deletes the messages marked deleted
    /// (`+OK Bye-bye.`, then the unlinks), and marks those retrieved as
    /// seen by renaming them at the end of the session too: read the
    /// mailbox only once it is quiet.
    pub fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let busy = self.sessions();
            if busy.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "courier sessions still running after 10 s: {busy:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
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
    /// which takes the rest with it), reap it and wait (up to 5 s) until
    /// they are all gone: the kernel ends the namespace's other processes
    /// after `unshare` has exited.
    pub fn stop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        if let Ok(None) = self.child.try_wait() {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !self.processes().is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The long-lived processes of a Courier instance: the namespace's first
/// process, authdaemond, the listeners and gamin's server (imapd starts
/// it to watch the Maildir; it stays).
const DAEMONS: [&str; 4] = ["sh", "authdaemond", "couriertcpd", "gam_server"];

/// The processes on this machine (as seen from the tests' PID namespace).
fn proc_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
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

// ---------------------------------------------------------------------------
// One test, both server families
// ---------------------------------------------------------------------------

/// A running server of either family with user `alice`, whose INBOX is the
/// Maildir `maildir`.
struct Server {
    name: &'static str,
    dovecot: Option<Dovecot>,
    courier: Option<Courier>,
    maildir: PathBuf,
    t: TempDir,
}

impl Server {
    fn dovecot() -> Option<Server> {
        if skip_unless(is_root(), "Dovecot needs root") {
            return None;
        }
        let t = TempDir::new();
        let maildir = t.join("mail/alice");
        let mut dc = Dovecot::start(&t.join("dovecot"));
        dc.add_user("alice", &maildir);
        Some(Server {
            name: "dovecot",
            dovecot: Some(dc),
            courier: None,
            maildir,
            t,
        })
    }

    fn courier() -> Option<Server> {
        let why = Courier::unavailable();
        if skip_unless(why.is_none(), why.as_deref().unwrap_or_default()) {
            return None;
        }
        let t = TempDir::new();
        let maildir = t.join("mail/alice");
        let mut c = Courier::start(&t.join("courier"));
        c.add_user("alice", &maildir);
        Some(Server {
            name: "courier",
            dovecot: None,
            courier: Some(c),
            maildir,
            t,
        })
    }

    fn port(&self, proto: &str, tls: &str) -> u16 {
        let (imap, imaps, pop3, pop3s) = match (&self.dovecot, &self.courier) {
            (Some(d), _) => (d.imap_port, d.imaps_port, d.pop3_port, d.pop3s_port),
            (_, Some(c)) => (c.imap_port, c.imaps_port, c.pop3_port, c.pop3s_port),
            _ => unreachable!(),
        };
        match (proto, tls) {
            ("imap", "implicit") => imaps,
            ("imap", _) => imap,
            ("pop3", "implicit") => pop3s,
            _ => pop3,
        }
    }

    fn cert(&self) -> &Path {
        match (&self.dovecot, &self.courier) {
            (Some(d), _) => &d.cert,
            (_, Some(c)) => &c.cert,
            _ => unreachable!(),
        }
    }

    /// A fresh HOME (so fresh mail-fetch state) and Maildir target, named `what`.
    fn fresh(&self, what: &str) -> (PathBuf, PathBuf) {
        let home = self.t.join(format!("home-{what}"));
        std::fs::create_dir_all(&home).unwrap();
        (home, self.t.join(format!("out-{what}/Maildir/")))
    }

    /// mail-fetch for alice over `proto` (imap/pop3) with `tls`, trusting
    /// the server's certificate.
    fn tool(&self, proto: &str, tls: &str, home: &Path) -> Tool {
        Tool::new("mail-fetch", home)
            .env("PW", Dovecot::PASSWORD)
            .arg(format!("--{proto}"))
            .arg(format!("127.0.0.1:{}", self.port(proto, tls)))
            .args(["--tls", tls, "--user", "alice", "--password-env", "PW"])
            .arg("--tls-ca-file")
            .arg(self.cert())
    }

    /// Empty alice's INBOX and deliver `msgs` into it (Maildir style: tmp/,
    /// then a rename into new/), as a local delivery agent would.
    fn reset(&self, msgs: &[Vec<u8>]) {
        self.settle();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(self.maildir.join(sub)).unwrap();
        }
        for sub in ["new", "cur"] {
            for n in dir_names(&self.maildir.join(sub)) {
                std::fs::remove_file(self.maildir.join(sub).join(n)).unwrap();
            }
        }
        for m in msgs {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let name = format!(
                "{}.M{n}P{}.postline-test",
                1_700_000_000 + n,
                std::process::id()
            );
            let tmp = self.maildir.join("tmp").join(&name);
            let mut f = std::fs::File::create(&tmp).unwrap();
            f.write_all(m).unwrap();
            f.sync_all().unwrap();
            std::fs::rename(&tmp, self.maildir.join("new").join(&name)).unwrap();
        }
        make_readable(&self.maildir);
    }

    /// Wait until the server has finished what the clients asked for.
    fn settle(&self) {
        if let Some(c) = &self.courier {
            c.wait_idle();
        }
    }

    /// The messages as the server hands them over (IMAP BODY[] read by
    /// imaplib, the wire's CRLF turned back into LF), sorted.
    fn on_server(&self) -> Vec<Vec<u8>> {
        self.settle();
        let got = match (&self.dovecot, &self.courier) {
            (Some(d), _) => d.imap_fetch("alice", "INBOX"),
            (_, Some(c)) => c.imap_fetch("alice"),
            _ => unreachable!(),
        };
        sorted(got.iter().map(|m| crlf_to_lf(m)).collect())
    }

    /// The message files in alice's Maildir (new/ and cur/), sorted.
    fn on_disk(&self) -> Vec<Vec<u8>> {
        self.settle();
        let mut v = Vec::new();
        for sub in ["new", "cur"] {
            for n in dir_names(&self.maildir.join(sub)) {
                v.push(std::fs::read(self.maildir.join(sub).join(n)).unwrap());
            }
        }
        sorted(v)
    }
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// The message files mail-fetch wrote into the Maildir `dest`, sorted.
fn stored(dest: &Path) -> Vec<Vec<u8>> {
    sorted(maildir_new(dest).into_iter().map(|(_, m)| m).collect())
}

#[track_caller]
fn assert_same(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: message count");
    for (g, w) in got.iter().zip(want) {
        assert_bytes_eq(g, w, what);
    }
}

/// Starts a [`Server`] of one family (None: skipped here).
type StartFn = fn() -> Option<Server>;

/// Failures of the cases of one test, collected so that one failing case
/// does not hide the others; [`Cases::finish`] reports them all.
#[derive(Default)]
struct Cases {
    failed: Vec<String>,
    ran: usize,
}

impl Cases {
    /// Run one case; a panic in it is recorded, not propagated.
    fn run(&mut self, what: &str, f: impl FnOnce()) {
        self.ran += 1;
        if let Err(e) = catch_unwind(AssertUnwindSafe(f)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            // Most messages name the case already.
            let msg = msg.strip_prefix(&format!("{what}: ")).unwrap_or(&msg);
            self.failed.push(format!("{what}: {msg}"));
        }
    }

    /// Every case against each server family that can run here.
    fn each_server(&mut self, f: impl Fn(&mut Cases, &Server)) {
        let families: [(&str, StartFn); 2] =
            [("dovecot", Server::dovecot), ("courier", Server::courier)];
        for (name, start) in families {
            let mut server = None;
            self.run(&format!("{name}: starting"), || server = start());
            if let Some(s) = server {
                f(self, &s);
            }
        }
    }

    #[track_caller]
    fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} of {} cases failed:\n- {}",
            self.failed.len(),
            self.ran,
            self.failed.join("\n- ")
        );
    }
}

/// A message like those in fetch.rs: `From ` lines in the body, random text.
fn generated(i: usize, rng: &mut Rng) -> Vec<u8> {
    let mut m = format!(
        "Return-Path: <sender{i}@example.test>\nFrom: Sender <sender{i}@example.test>\nTo: alice@example.test\nSubject: message {i}\nMessage-ID: <m{i}.{}@example.test>\n\nHello {i}.\nFrom the start of a line\n>From quoted already\n",
        rng.next_u64()
    )
    .into_bytes();
    for _ in 0..rng.range(1, 30) {
        let len = rng.range(0, 120);
        m.extend((0..len).map(|_| b'a' + rng.below(26) as u8));
        m.push(b'\n');
    }
    m
}

fn generated_set(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n).map(|i| generated(i, &mut rng)).collect()
}

/// The shapes a fetcher can get wrong: CRLF on the server's disk, an 8-bit
/// body, a line far longer than 998 bytes, dot lines (POP3's terminator and
/// its stuffing, one of them last), `From ` lines (mbox quoting).
fn tricky_messages() -> Vec<Vec<u8>> {
    let head = |subject: &str, eol: &str| {
        format!(
            "From: Sender <sender@example.test>{eol}To: alice@example.test{eol}Subject: {subject}{eol}Message-ID: <{subject}@example.test>{eol}"
        )
    };
    let mut v = Vec::new();
    v.push(
        format!(
            "{}\r\nline one\r\nline two\r\n\r\nlast\r\n",
            head("crlf", "\r\n")
        )
        .into_bytes(),
    );
    let mut m = format!(
        "{}MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n",
        head("eight-bit", "\n")
    )
    .into_bytes();
    m.extend("Grüße aus Köln, naïve café — ✓ 日本語\n".as_bytes());
    m.extend(b"Latin-1 bytes: \xe9\xe8\xff\x80 and a NUL-free tail\n");
    v.push(m);
    let mut m = format!("{}\n", head("long-line", "\n")).into_bytes();
    m.extend((0..12_000).map(|i| b'a' + (i % 26) as u8));
    m.extend(b"\nafter the long line\n");
    m.extend([b'x'; 999]);
    m.push(b'\n');
    v.push(m);
    v.push(
        format!(
            "{}\nbefore\n.\n..\n...\n.x\n. \nafter\n.\n",
            head("dots", "\n")
        )
        .into_bytes(),
    );
    v.push(
        format!(
            "{}\nFrom the start of a line\n>From quoted once\n>>From quoted twice\nFrom \n\nFrom me, at the end\n",
            head("from-lines", "\n")
        )
        .into_bytes(),
    );
    v
}

/// What `msgs` become on the server's side (`on_server`) must be them,
/// line ends aside: the reading side of the comparison is sound.
#[track_caller]
fn assert_server_holds(s: &Server, want: &[Vec<u8>], msgs: &[Vec<u8>]) {
    let lf = |v: &[Vec<u8>]| sorted(v.iter().map(|m| crlf_to_lf(m)).collect());
    assert_same(
        &lf(want),
        &lf(msgs),
        "the server's messages (read with imaplib)",
    );
    for m in msgs.iter().filter(|m| !m.contains(&b'\r')) {
        assert!(want.contains(m), "{}: not held as delivered", s.name);
    }
}

/// (a) Byte identity: every message mail-fetch stores, over IMAP and POP3
/// in each TLS mode, is byte for byte what the server holds.
#[test]
fn fetched_messages_are_byte_identical_on_both_servers_over_imap_and_pop3_in_every_tls_mode() {
    let mut msgs = tricky_messages();
    msgs.extend(generated_set(6, 13));
    let mut cases = Cases::default();
    cases.each_server(|cases, s| {
        s.reset(&msgs);
        let want = s.on_server();
        let held = s.on_disk();
        cases.run(&format!("{}: reading back", s.name), || {
            assert_server_holds(s, &want, &msgs)
        });
        for proto in ["imap", "pop3"] {
            for tls in ["none", "starttls", "implicit"] {
                let what = format!("{} {proto} --tls {tls}", s.name);
                cases.run(&what, || {
                    let (home, dest) = s.fresh(&format!("{proto}-{tls}"));
                    s.tool(proto, tls, &home)
                        .args(["--keep", "--maildir"])
                        .arg(&dest)
                        .run()
                        .success()
                        .stderr_has(&format!("{} messages", msgs.len()));
                    assert_same(&stored(&dest), &want, &what);
                });
            }
        }
        cases.run(&format!("{}: nothing deleted with --keep", s.name), || {
            assert_eq!(s.on_disk(), held)
        });
    });
    cases.finish();
}

/// (b) Delete: without --keep every message is stored and the server's
/// mailbox is empty afterwards; with --keep nothing is deleted and a second
/// run finds nothing new.
#[test]
fn delete_mode_empties_the_server_and_keep_deletes_nothing_on_both_servers() {
    let msgs = generated_set(8, 21);
    let want = sorted(msgs.clone());
    let mut cases = Cases::default();
    cases.each_server(|cases, s| {
        s.reset(&msgs);
        cases.run(&format!("{}: reading back", s.name), || {
            assert_eq!(s.on_server(), want, "the server's messages")
        });
        for proto in ["imap", "pop3"] {
            let what = format!("{} {proto} delete mode", s.name);
            cases.run(&what, || {
                s.reset(&msgs);
                let (home, dest) = s.fresh(&format!("{proto}-delete"));
                s.tool(proto, "starttls", &home)
                    .arg("--maildir")
                    .arg(&dest)
                    .run()
                    .success()
                    .stderr_has("8 messages");
                assert_same(&stored(&dest), &want, &what);
                assert!(s.on_disk().is_empty(), "{what}: left on the server");
                // Nothing left: nothing new.
                s.tool(proto, "starttls", &home)
                    .arg("--maildir")
                    .arg(&dest)
                    .run()
                    .code_is(1);
                assert_eq!(stored(&dest).len(), 8, "{what}: stored again");
            });
            let what = format!("{} {proto} --keep", s.name);
            cases.run(&what, || {
                s.reset(&msgs);
                let held = s.on_disk();
                let (home, dest) = s.fresh(&format!("{proto}-keep"));
                for code in [0, 1] {
                    s.tool(proto, "implicit", &home)
                        .args(["--keep", "--maildir"])
                        .arg(&dest)
                        .run()
                        .code_is(code);
                    assert_same(&stored(&dest), &want, &what);
                    assert_eq!(s.on_disk(), held, "{what}: the server's messages changed");
                }
            });
        }
    });
    cases.finish();
}

/// (b) Delete after --keep: mail-fetch(1) says stored messages are deleted
/// on the server unless --keep is given, and that a message stored and
/// recorded is "deleted at the start of the next run without being stored
/// again". So a run without --keep after a --keep run deletes the messages
/// that run stored, stores none of them again, and leaves nothing behind.
#[test]
fn a_run_without_keep_deletes_what_a_keep_run_stored_on_both_servers() {
    let msgs = generated_set(5, 34);
    let want = sorted(msgs.clone());
    let mut cases = Cases::default();
    cases.each_server(|cases, s| {
        s.reset(&msgs);
        cases.run(&format!("{}: reading back", s.name), || {
            assert_eq!(s.on_server(), want, "the server's messages")
        });
        for proto in ["imap", "pop3"] {
            let what = format!("{} {proto}", s.name);
            cases.run(&what, || {
                s.reset(&msgs);
                let (home, dest) = s.fresh(&format!("{proto}-keep-then-delete"));
                s.tool(proto, "none", &home)
                    .args(["--keep", "--maildir"])
                    .arg(&dest)
                    .run()
                    .success();
                assert_same(&stored(&dest), &want, &what);
                let out = s.tool(proto, "none", &home).arg("--maildir").arg(&dest).run();
                assert!(
                    matches!(out.code(), 0 | 1),
                    "{what}: exit {}: {}",
                    out.code(),
                    out.stderr()
                );
                assert_same(&stored(&dest), &want, &format!("{what}: stored once"));
                assert_eq!(
                    s.on_disk().len(),
                    0,
                    "{what}: the already stored messages are still on the server (exit {}, stderr {:?})",
                    out.code(),
                    out.stderr()
                );
            });
        }
    });
    cases.finish();
}

/// (c) UTF-8: a message with a raw UTF-8 Subject (RFC 6532) is stored byte
/// for byte as the server holds it, over POP3 and IMAP, kept or deleted.
/// Courier offers POP3 `UTF8` (RFC 6856) and IMAP `UTF8=ACCEPT` (RFC 6855)
/// and hands a client that did not enable UTF-8 a substitute notice
/// instead of such a message: the fetcher must enable it.
#[test]
fn a_raw_utf8_header_is_stored_byte_for_byte_from_both_servers() {
    let utf8 = "From: Jürgen Groß <juergen@example.test>\nTo: alice@example.test\nSubject: Grüße aus Köln ✓\nMessage-ID: <utf8.1@example.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße ✓\n".as_bytes().to_vec();
    let ascii = b"From: Sender <sender@example.test>\nTo: alice@example.test\nSubject: plain\nMessage-ID: <ascii.1@example.test>\n\nhello\n".to_vec();
    let msgs = vec![utf8.clone(), ascii];
    let want = sorted(msgs.clone());
    let mut cases = Cases::default();
    cases.each_server(|cases, s| {
        s.reset(&msgs);
        cases.run(&format!("{}: reading back", s.name), || {
            assert_eq!(s.on_server(), want, "the server's messages")
        });
        for proto in ["pop3", "imap"] {
            for keep in [true, false] {
                let mode = if keep { "--keep" } else { "delete mode" };
                let what = format!("{} {proto} {mode}", s.name);
                cases.run(&what, || {
                    s.reset(&msgs);
                    let (home, dest) = s.fresh(&format!("{proto}-utf8-{keep}"));
                    let mut tool = s.tool(proto, "starttls", &home);
                    if keep {
                        tool = tool.arg("--keep");
                    }
                    tool.arg("--maildir").arg(&dest).run().success();
                    let got = stored(&dest);
                    assert_eq!(got.len(), 2, "{what}: message count");
                    if !got.contains(&utf8) {
                        let other = got.iter().find(|m| !want.contains(m)).unwrap();
                        let left = if s.on_disk().contains(&utf8) {
                            "still on the server"
                        } else {
                            "deleted on the server"
                        };
                        panic!(
                            "the UTF-8 message was not stored as the server holds it (the original is {left}); stored instead ({} bytes):\n{}",
                            other.len(),
                            String::from_utf8_lossy(&other[..other.len().min(400)])
                        );
                    }
                    assert_same(&got, &want, &what);
                    if !keep {
                        assert!(s.on_disk().is_empty(), "{what}: left on the server");
                    }
                });
            }
        }
    });
    cases.finish();
}
