//! SASL client mechanisms shared by SMTP AUTH, POP3 AUTH and IMAP
//! AUTHENTICATE: PLAIN (RFC 4616), LOGIN, XOAUTH2 (Google/Microsoft), and the
//! [`Secret`] type that keeps passwords and tokens out of logs.
//!
//! Guarantee: a [`Secret`] never prints its value (`Debug` and `Display` say
//! `<redacted>`); the only way to the bytes is [`Secret::expose`], used where
//! they go on the wire.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::exit::{Error, Kind, Result};

/// A password or OAuth2 token. Printing it shows `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The value, for the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A SASL mechanism this client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// PLAIN: `\0user\0password`, one round trip (initial response).
    Plain,
    /// LOGIN: user and password in two challenges.
    Login,
    /// XOAUTH2: `user=..^Aauth=Bearer token^A^A`; the secret is a token.
    XOAuth2,
}

impl Mechanism {
    /// Parse a configured mechanism name (case-insensitive).
    pub fn parse(s: &str) -> Result<Mechanism> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Mechanism::Plain),
            "LOGIN" => Ok(Mechanism::Login),
            "XOAUTH2" | "OAUTH2" | "OAUTHBEARER" => Ok(Mechanism::XOAuth2),
            _ => Err(Error::new(
                Kind::Config,
                format!("auth mechanism {s:?}"),
                "expected plain, login or xoauth2",
            )),
        }
    }

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// Pick a mechanism: the configured one when the server offers it (an
    /// error when it does not: never silently another), else PLAIN, then
    /// LOGIN. XOAUTH2 is never picked unless configured (its secret is a
    /// token, not a password).
    pub fn choose(configured: Option<Mechanism>, offered: &[String]) -> Result<Mechanism> {
        let has = |m: Mechanism| offered.iter().any(|o| o.eq_ignore_ascii_case(m.name()));
        if let Some(m) = configured {
            if has(m) {
                return Ok(m);
            }
            return Err(Error::new(
                Kind::Unavailable,
                "authenticating",
                format!(
                    "the server does not offer {} (it offers: {})",
                    m.name(),
                    if offered.is_empty() {
                        "nothing".to_string()
                    } else {
                        offered.join(" ")
                    }
                ),
            ));
        }
        for m in [Mechanism::Plain, Mechanism::Login] {
            if has(m) {
                return Ok(m);
            }
        }
        Err(Error::new(
            Kind::Unavailable,
            "authenticating",
            format!(
                "no mechanism in common (the server offers: {})",
                if offered.is_empty() {
                    "nothing".to_string()
                } else {
                    offered.join(" ")
                }
            ),
        ))
    }
}

/// Base64 of `bytes` (standard alphabet, padded).
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decode a base64 server challenge; `None` when it is not base64.
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s.trim()).ok()
}

/// The PLAIN initial response, base64: `\0user\0password`.
pub fn plain(user: &str, pass: &Secret) -> String {
    let mut v = Vec::with_capacity(user.len() + pass.0.len() + 2);
    v.push(0);
    v.extend_from_slice(user.as_bytes());
    v.push(0);
    v.extend_from_slice(pass.0.as_bytes());
    b64(&v)
}

/// The XOAUTH2 initial response, base64.
pub fn xoauth2(user: &str, token: &Secret) -> String {
    b64(format!("user={user}\x01auth=Bearer {}\x01\x01", token.0).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_xoauth2_encode_as_the_rfcs_say() {
        // RFC 4616 example: "\0tim\0tanstaaftanstaaf"
        assert_eq!(
            plain("tim", &Secret::new("tanstaaftanstaaf")),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        let x = xoauth2(
            "someuser@example.com",
            &Secret::new("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
        );
        assert_eq!(
            unb64(&x).unwrap(),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn choose_never_substitutes_a_configured_mechanism() {
        let offered = vec!["LOGIN".to_string(), "PLAIN".to_string()];
        assert_eq!(Mechanism::choose(None, &offered).unwrap(), Mechanism::Plain);
        assert_eq!(
            Mechanism::choose(Some(Mechanism::Login), &offered).unwrap(),
            Mechanism::Login
        );
        assert!(Mechanism::choose(Some(Mechanism::XOAuth2), &offered).is_err());
        assert!(Mechanism::choose(None, &[]).is_err());
    }
}
