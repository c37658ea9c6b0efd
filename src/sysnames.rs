//! This machine's names: the host name, its fully qualified form, and the
//! login name of the user running us.
//!
//! Owns the one answer each tool uses (Maildir file names, EHLO, the
//! default envelope sender, mail-fetch's local recipient), so that two
//! tools never disagree about who and where we are.
//!
//! Guarantees: never fails and never blocks on the network (no DNS: the
//! FQDN comes from the host name or `/etc/hosts`); every answer is read
//! once per process.

use std::sync::OnceLock;

/// The host name (`gethostname`), or `localhost` when it is unset.
pub fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    })
}

/// The fully qualified host name: the host name when it has a dot, else
/// the first dotted alias of it in `/etc/hosts` (Debian writes
/// `127.0.1.1 host.example.org host`), else `None`.
pub fn fqdn() -> Option<&'static str> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        let h = hostname();
        if h.contains('.') {
            return Some(h.to_string());
        }
        let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
        fqdn_from_hosts(h, &hosts)
    })
    .as_deref()
}

/// The dotted name on the first `/etc/hosts` line that lists `host`.
fn fqdn_from_hosts(host: &str, hosts: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        if !names.iter().any(|n| n.eq_ignore_ascii_case(host)) {
            return None;
        }
        names
            .iter()
            .find(|n| {
                let l = n.to_ascii_lowercase();
                l.starts_with(&format!("{}.", host.to_ascii_lowercase()))
                    && !l.ends_with(".localdomain")
            })
            .map(|n| n.to_string())
    })
}

/// The login name of the real user: the password database entry of our
/// uid (which cannot be wrong about who runs us), else `$USER`, else
/// `$LOGNAME`, else `root` for uid 0 and `uid<N>` otherwise.
pub fn login_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let uid = nix::unistd::getuid();
        nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                if uid.is_root() {
                    "root".to_string()
                } else {
                    format!("uid{uid}")
                }
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_never_empty() {
        assert!(!hostname().is_empty());
        assert!(!login_name().is_empty());
        if let Some(f) = fqdn() {
            assert!(f.contains('.'));
        }
    }

    #[test]
    fn the_fqdn_comes_from_the_hosts_line_that_names_the_host() {
        let hosts = "127.0.0.1 localhost\n# 127.0.1.1 box.wrong.example box\n127.0.1.1 box.example.org box # here\n::1 ip6-localhost\n";
        assert_eq!(
            fqdn_from_hosts("box", hosts).as_deref(),
            Some("box.example.org")
        );
        assert_eq!(fqdn_from_hosts("other", hosts), None);
        assert_eq!(
            fqdn_from_hosts("box", "127.0.1.1 box.localdomain box\n"),
            None
        );
    }
}
