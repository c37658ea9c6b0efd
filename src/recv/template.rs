//! `--deliver TEMPLATE`: a Maildir or mbox path (as mail-deliver reads
//! one) with `{local}` and `{domain}` filled from the recipient.
//!
//! Guarantees: a filled-in part is lower-cased and is never empty, never
//! holds a `/`, a `..`, a leading `.`, a NUL or another control
//! character, so a recipient can never name a path outside the one the
//! template describes. With `{local}` in the template a recipient whose
//! destination does not exist is refused at RCPT ([`Template::resolve`]),
//! so mail for unknown users is never accepted and then bounced
//! (no backscatter).

use std::path::Path;

use crate::exit::{Error, Kind, Result};

/// A parsed delivery template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
}

/// Why a recipient has no destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// The local part or domain cannot be part of a path.
    Unsafe(String),
    /// The destination does not exist.
    NoSuchMailbox(String),
}

impl Template {
    /// Parse `text`: only `{local}` and `{domain}` may appear in braces.
    pub fn parse(text: &str) -> Result<Template> {
        let bad = |why: &str| Error::new(Kind::Usage, format!("--deliver {text:?}"), why);
        if text.is_empty() {
            return Err(bad("empty template"));
        }
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            let tail = &rest[open..];
            if let Some(after) = tail
                .strip_prefix("{local}")
                .or_else(|| tail.strip_prefix("{domain}"))
            {
                rest = after;
            } else {
                return Err(bad("only {local} and {domain} may appear in braces"));
            }
        }
        Ok(Template {
            text: text.to_string(),
        })
    }

    /// The template as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does the path depend on the local part (then a missing destination
    /// is an unknown user)?
    pub fn uses_local(&self) -> bool {
        self.text.contains("{local}")
    }

    /// Fill in `local` and `domain` (each checked and lower-cased).
    pub fn expand(&self, local: &str, domain: &str) -> std::result::Result<String, Missing> {
        let mut out = self.text.clone();
        if self.text.contains("{local}") {
            out = out.replace("{local}", &safe_part(local)?);
        }
        if self.text.contains("{domain}") {
            out = out.replace("{domain}", &safe_part(domain)?);
        }
        Ok(out)
    }

    /// The destination for a recipient, checked: with `{local}` in the
    /// template it must exist (a Maildir: the directory; an mbox: the
    /// file). `user+ext` falls back to `user` when the whole local part
    /// has no destination.
    pub fn resolve(&self, local: &str, domain: &str) -> std::result::Result<String, Missing> {
        let path = self.expand(local, domain)?;
        if !self.uses_local() || exists(&path) {
            return Ok(path);
        }
        if let Some((user, _ext)) = local.split_once('+')
            && !user.is_empty()
        {
            let base = self.expand(user, domain)?;
            if exists(&base) {
                return Ok(base);
            }
        }
        Err(Missing::NoSuchMailbox(path))
    }
}

/// Does a destination exist as mail-deliver would read it: a path ending
/// in `/` must be a directory, any other must exist.
fn exists(path: &str) -> bool {
    let p = Path::new(path);
    if path.ends_with('/') {
        p.is_dir()
    } else {
        p.exists()
    }
}

/// `s` lower-cased when it is safe as one path component's part.
pub fn safe_part(s: &str) -> std::result::Result<String, Missing> {
    let unsafe_ = |why: &str| Err(Missing::Unsafe(format!("{why}: {s:?}")));
    if s.is_empty() {
        return unsafe_("empty");
    }
    if s.contains('/') {
        return unsafe_("holds a /");
    }
    if s.contains("..") {
        return unsafe_("holds ..");
    }
    if s.starts_with('.') {
        return unsafe_("starts with a dot");
    }
    if s.chars().any(char::is_control) {
        return unsafe_("holds a control character");
    }
    Ok(s.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_and_domain_are_placeholders() {
        assert!(Template::parse("/m/{domain}/{local}/").is_ok());
        assert!(Template::parse("/var/mail/all").is_ok());
        for bad in ["", "/m/{user}/", "/m/{local", "/m/local}/", "/m/{}/"] {
            let e = Template::parse(bad).unwrap_err();
            assert_eq!(e.kind(), Kind::Usage, "{bad}");
        }
    }

    #[test]
    fn parts_are_lower_cased_and_never_leave_the_template() {
        let t = Template::parse("/m/{domain}/{local}/").unwrap();
        assert_eq!(
            t.expand("Bob", "Example.ORG").unwrap(),
            "/m/example.org/bob/"
        );
        for bad in [
            "../etc", "a/b", "..", ".hidden", "a..b", "", "a\0b", "a\nb", "a\u{7f}",
        ] {
            assert!(
                matches!(t.expand(bad, "example.org"), Err(Missing::Unsafe(_))),
                "{bad:?}"
            );
            assert!(
                matches!(t.expand("bob", bad), Err(Missing::Unsafe(_))),
                "{bad:?}"
            );
        }
        // Unicode is lower-cased too (SMTPUTF8 local parts).
        assert_eq!(t.expand("ÉLODIE", "x.org").unwrap(), "/m/x.org/élodie/");
    }

    #[test]
    fn a_missing_destination_is_an_unknown_user_only_with_local() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        std::fs::create_dir_all(dir.path().join("bob")).unwrap();
        std::fs::write(dir.path().join("carol.mbox"), b"").unwrap();
        let md = Template::parse(&format!("{root}/{{local}}/")).unwrap();
        assert_eq!(md.resolve("BOB", "x").unwrap(), format!("{root}/bob/"));
        assert_eq!(
            md.resolve("bob+lists", "x").unwrap(),
            format!("{root}/bob/")
        );
        assert!(matches!(
            md.resolve("alice", "x"),
            Err(Missing::NoSuchMailbox(_))
        ));
        // A file where a Maildir is expected is no Maildir.
        let md2 = Template::parse(&format!("{root}/{{local}}.mbox/")).unwrap();
        assert!(matches!(
            md2.resolve("carol", "x"),
            Err(Missing::NoSuchMailbox(_))
        ));
        let mb = Template::parse(&format!("{root}/{{local}}.mbox")).unwrap();
        assert!(mb.resolve("Carol", "x").is_ok());
        assert!(matches!(
            mb.resolve("dave", "x"),
            Err(Missing::NoSuchMailbox(_))
        ));
        // Without {local}: one shared destination, created on delivery.
        let all = Template::parse(&format!("{root}/{{domain}}/")).unwrap();
        assert_eq!(
            all.resolve("anyone", "X.org").unwrap(),
            format!("{root}/x.org/")
        );
    }
}
