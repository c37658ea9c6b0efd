//! mail-recv's face: usage errors (64), `--explain` (the relay decision and
//! its reason, exit 0 accepted / 1 refused) and `[recv]` in the config,
//! where the command line wins. The SMTP sessions themselves are tested
//! end to end in their own module.

use std::fs;
use std::path::Path;

use crate::harness::*;

const TOOL: &str = "mail-recv";

/// mail-recv in a hermetic home, with no preset options (the sibling
/// modules' `recv` adds a domain and a hostname).
fn recv(home: &Path) -> Tool {
    Tool::new(TOOL, home)
}

#[test]
fn impossible_combinations_are_usage_errors() {
    let t = TempDir::new();
    let md = format!("{}/", t.join("md").display());
    let cases: &[(&[&str], &str)] = &[
        (&["--deliver", &md], "--domain"),
        (&["--domain", "example.org"], "--deliver TEMPLATE"),
        (&["--domain", "exa mple.org", "--queue"], "not a domain"),
        (&["--domain", "", "--queue"], "not a domain"),
        (
            &[
                "--domain",
                "example.org",
                "--deliver",
                &md,
                "--",
                "/bin/cat",
            ],
            "not both",
        ),
        (
            &[
                "--domain",
                "example.org",
                "--queue",
                "--listen-tls",
                "127.0.0.1:1465",
            ],
            "--listen-tls",
        ),
        (
            &[
                "--domain",
                "example.org",
                "--queue",
                "--checkpassword",
                "/bin/true",
            ],
            "--checkpassword",
        ),
        (
            &[
                "--domain",
                "example.org",
                "--queue",
                "--tls-cert",
                "/nonexistent.pem",
            ],
            "give both",
        ),
        (
            &["--domain", "example.org", "--deliver", "/srv/{user}/"],
            "{local} and {domain}",
        ),
        (
            &["--domain", "example.org", "--queue", "--bare-lf", "lf"],
            "--bare-lf",
        ),
        (
            &["--domain", "example.org", "--queue", "--max-sessions", "0"],
            "--max-sessions",
        ),
        (
            &["--domain", "example.org", "--queue", "--max-size", "lots"],
            "--max-size",
        ),
        (
            &["--domain", "example.org", "--queue", "--listen", "nowhere"],
            "listen address",
        ),
        (
            &["--domain", "example.org", "--queue", "--no-such-flag"],
            "--no-such-flag",
        ),
    ];
    for (args, says) in cases {
        let out = recv(t.path()).args(*args).run();
        assert_eq!(out.code(), 64, "{args:?}: {}", out.stderr());
        out.stderr_has(says)
            .stderr_has("mail-recv: ")
            .stderr_one_line()
            .stdout_empty();
    }
}

#[test]
fn explain_says_what_rcpt_would_get_and_why() {
    let t = TempDir::new();
    fs::create_dir_all(t.join("mail/example.org/bob/new")).unwrap();
    let tpl = format!("{}/mail/{{domain}}/{{local}}/", t.path().display());
    let explain = |addr: &str| {
        recv(t.path())
            .args(["--domain", "example.org", "Example.NET", "--deliver", &tpl])
            .args(["--explain", addr])
            .run()
    };
    let out = explain("Bob@EXAMPLE.org.").success();
    let text = out.stdout();
    assert!(
        text.contains(&format!(
            "unauthenticated: 250 2.1.5 accepted: stored in {}/mail/example.org/bob/",
            t.path().display()
        )),
        "{text}"
    );
    assert!(text.contains("example.org is one of our domains"), "{text}");

    let out = explain("nobody@example.org").code_is(1);
    assert!(out.stdout().contains("550 5.1.1"), "{}", out.stdout());
    assert!(
        out.stdout().contains("has no destination"),
        "{}",
        out.stdout()
    );

    for probe in [
        "bob%other.example@example.org",
        "other.example!bob@example.org",
        "@example.org:bob@other.example",
        "\"bob@other.example\"@example.org",
    ] {
        let out = explain(probe).code_is(1);
        assert!(
            out.stdout().contains("550 5.7.1"),
            "{probe}: {}",
            out.stdout()
        );
    }
    let out = explain("bob@other.example").code_is(1);
    assert!(
        out.stdout().contains("550 5.7.1 relaying denied"),
        "{}",
        out.stdout()
    );
    assert!(
        out.stdout().contains("did not authenticate"),
        "{}",
        out.stdout()
    );
    // A second value after one --domain counts, in any case.
    let out = explain("x@example.net").code_is(1);
    assert!(out.stdout().contains("550 5.1.1"), "{}", out.stdout());
    // Nothing was stored or created by explaining.
    assert!(!t.join("mail/example.net").exists());
    assert!(
        fs::read_dir(t.join("mail/example.org/bob/new"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn explain_shows_relaying_only_for_authenticated_clients_with_a_queue() {
    let t = TempDir::new();
    let run = |queue: bool| {
        let mut tool = recv(t.path()).args([
            "--domain",
            "example.org",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
            "--checkpassword",
            "/bin/false",
            "--deliver",
            "/nonexistent/all/",
            "--explain",
            "far@other.example",
        ]);
        if queue {
            tool = tool.arg("--queue");
        }
        tool.run().code_is(1)
    };
    let out = run(true).stdout();
    let authed = out
        .lines()
        .find(|l| l.starts_with("authenticated:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(authed.contains("250 2.1.5 accepted: queued"), "{out}");
    let out = run(false).stdout();
    let authed = out
        .lines()
        .find(|l| l.starts_with("authenticated:"))
        .unwrap();
    assert!(authed.contains("550 5.7.1"), "{out}");
    assert!(out.contains("relaying needs --queue"), "{out}");
}

#[test]
fn recv_section_of_the_config_gives_defaults_the_command_line_overrides() {
    let t = TempDir::new();
    fs::create_dir_all(t.join("all")).unwrap();
    let cfg = t.join("config.toml");
    fs::write(
        &cfg,
        format!(
            "[recv]\ndomains = [\"example.org\"]\ndeliver = \"{}/all/\"\nmax_size = 1000\nbare_lf = \"reject\"\nlog_json = true\n",
            t.path().display()
        ),
    )
    .unwrap();
    let cfg_arg = cfg.to_str().unwrap();
    let out = recv(t.path())
        .args(["--config", cfg_arg, "--explain", "anyone@example.org"])
        .run()
        .success();
    assert!(
        out.stdout()
            .contains(&format!("stored in {}/all/", t.path().display())),
        "{}",
        out.stdout()
    );
    // --domain replaces the configured domains.
    let out = recv(t.path())
        .args([
            "--config",
            cfg_arg,
            "--domain",
            "example.net",
            "--explain",
            "anyone@example.org",
        ])
        .run()
        .code_is(1);
    assert!(out.stdout().contains("5.7.1"), "{}", out.stdout());
    // A command on the command line replaces the configured delivery.
    let out = recv(t.path())
        .args([
            "--config",
            cfg_arg,
            "--explain",
            "anyone@example.org",
            "--",
            "/bin/cat",
        ])
        .run()
        .success();
    assert!(
        out.stdout().contains("delivery command"),
        "{}",
        out.stdout()
    );
    // Mistakes in [recv] are config errors with a line number.
    fs::write(
        &cfg,
        "[recv]\ndomains = [\"example.org\"]\nqueue = true\ndelivr = \"x\"\n",
    )
    .unwrap();
    recv(t.path())
        .args(["--config", cfg_arg, "--explain", "a@example.org"])
        .run()
        .code_is(78)
        .stderr_has("line 4");
    fs::write(
        &cfg,
        "[recv]\ndomains = \"example.org\"\nqueue = true\nbare_lf = \"lf\"\n",
    )
    .unwrap();
    recv(t.path())
        .args(["--config", cfg_arg, "--explain", "a@example.org"])
        .run()
        .code_is(78)
        .stderr_has("bare_lf");
    // ... and a flag on the command line fixes what the file got wrong.
    recv(t.path())
        .args([
            "--config",
            cfg_arg,
            "--bare-lf",
            "normalize",
            "--explain",
            "a@example.org",
        ])
        .run()
        .success();
}

/// Connect to 127.0.0.1:`port` until the listener is up (the child may
/// still be starting); panics when it never comes up.
fn wait_listening(port: u16, child: &mut std::process::Child) {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("mail-recv exited before listening: {st}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("mail-recv never listened on {port}");
}

#[test]
fn a_listener_stops_on_sigterm_and_exits_0() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let t = TempDir::new();
    let (mut child, port) = retry_port_race(|| {
        let port = free_ports(1)[0];
        let (mut cmd, _) = recv(t.path())
            .args(["--domain", "example.org", "--queue", "--max-sessions", "2"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .command();
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn mail-recv");
        // A bind race shows as an early exit 69.
        std::thread::sleep(std::time::Duration::from_millis(50));
        if let Ok(Some(_)) = child.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            return Err(err);
        }
        Ok((child, port))
    });
    wait_listening(port, &mut child);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0), "{st}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_listen_address_in_use_is_unavailable() {
    let t = TempDir::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    recv(t.path())
        .args(["--domain", "example.org", "--queue", "--listen", &addr])
        .run()
        .code_is(69)
        .stderr_has(&addr)
        .stderr_one_line();
}
