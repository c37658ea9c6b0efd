//! Configuration shared by the tools: for now the XDG paths where postline
//! keeps its state. Owns the rule for where files go, so every tool agrees.

use std::env;
use std::path::PathBuf;

/// `$XDG_STATE_HOME/postline`, else `$HOME/.local/state/postline`, else
/// `./.postline-state` when there is no home at all (cron with a bare env).
pub fn state_dir() -> PathBuf {
    if let Some(x) = env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("postline");
    }
    if let Some(h) = env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/state/postline");
    }
    PathBuf::from(".postline-state")
}

/// The default Maildir: `$MAILDIR`, else `$HOME/Maildir/`.
pub fn default_maildir() -> Option<String> {
    if let Some(m) = env::var_os("MAILDIR").filter(|v| !v.is_empty()) {
        let mut s = m.to_string_lossy().into_owned();
        if !s.ends_with('/') {
            s.push('/');
        }
        return Some(s);
    }
    let h = env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(format!(
        "{}/Maildir/",
        h.to_string_lossy().trim_end_matches('/')
    ))
}
