//! Header tracing: the parsing core of `mail-trace`.
//!
//! This module owns reading the trace a message carries in its header:
//! `Received:` fields ([`received`]), their dates ([`date`]) and the
//! authentication verdicts ([`authres`]). [`collect`] picks those fields out
//! of a header block in order, top (newest) first.
//!
//! Guarantee, shared by every submodule: nothing here prints, exits, panics
//! or fails on any input. What is not understood is kept raw and named in a
//! `warnings` list. Work is linear in the input (no recursion whose depth
//! follows the input), so a 1 MB header block or comments nested 10,000 deep
//! cost no more than reading them.

pub mod authres;
pub mod chain;
pub mod date;
pub mod psl;
pub mod received;
pub mod verify;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod noise_tests;

use serde::Serialize;

pub use authres::{AuthResults, MethodResult, Property, ReceivedSpf, Signature};
pub use date::MailDate;
pub use received::{Auth, Hop};

/// Which trace field a [`Hop`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum HopKind {
    /// `Received:`
    Received,
    /// `X-Received:` (Gmail's internal hops)
    XReceived,
}

/// The trace fields of one header block, each list in header order (top,
/// i.e. newest, first). The hops borrow their text from the unfolded
/// fields (see [`collect_fields_in`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Trace<'a> {
    /// `Received:` and `X-Received:` fields, parsed.
    pub hops: Vec<(HopKind, Hop<'a>)>,
    /// `Authentication-Results:` fields.
    pub auth_results: Vec<AuthResults>,
    /// `ARC-Authentication-Results:` fields.
    pub arc_auth_results: Vec<AuthResults>,
    /// `Received-SPF:` fields.
    pub received_spf: Vec<ReceivedSpf>,
    /// `DKIM-Signature:` fields (`d=`, `s=`, `i=`).
    pub dkim_signatures: Vec<Signature>,
    /// `ARC-Seal:` fields (`i=`, `cv=`, `d=`, `s=`).
    pub arc_seals: Vec<Signature>,
    /// `ARC-Message-Signature:` fields (`i=`, `d=`, `s=`).
    pub arc_message_signatures: Vec<Signature>,
    /// `List-Id:` and `List-Post:` fields, as `Name: value`.
    pub list_headers: Vec<String>,
}

impl Trace<'_> {
    /// The same trace owning all its text.
    pub fn into_owned(self) -> Trace<'static> {
        Trace {
            hops: self
                .hops
                .into_iter()
                .map(|(k, h)| (k, h.into_owned()))
                .collect(),
            auth_results: self.auth_results,
            arc_auth_results: self.arc_auth_results,
            received_spf: self.received_spf,
            dkim_signatures: self.dkim_signatures,
            arc_seals: self.arc_seals,
            arc_message_signatures: self.arc_message_signatures,
            list_headers: self.list_headers,
        }
    }
}

/// Parse the trace fields of a header block (or of a whole message: the
/// block ends at the first empty line). Line endings may be LF or CRLF.
pub fn collect(message: &[u8]) -> Trace<'static> {
    let data = crate::message::normalize(message.to_vec());
    let msg = crate::message::Message::new(data);
    collect_fields(&msg.fields())
}

/// Header bytes as text, invalid UTF-8 replaced: `String::from_utf8_lossy`
/// with the quick check for valid text (nearly every header) first.
pub(crate) fn lossy(v: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(v) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(v),
    }
}

/// [`collect`] over the fields of a header block that is already
/// normalised (see [`crate::message::normalize`]).
pub fn collect_fields(fields: &[crate::message::Field<'_>]) -> Trace<'static> {
    collect_fields_in(fields, &mut Buffers::default()).into_owned()
}

/// Work space for reading trace fields, kept by a caller from message to
/// message so that reading a message's hops allocates (nearly) nothing
/// but the hop list: the unfolded trace fields, which the hops borrow,
/// and the parser's vectors. Everything in it is cleared before use.
#[derive(Default)]
pub struct Buffers {
    /// The trace fields of the message being read, unfolded.
    unfolded: String,
    /// Where each trace field's text is in `unfolded`.
    spans: Vec<(HopKind, usize, usize)>,
    /// The Received parser's vectors.
    scratch: received::Scratch,
}

/// [`collect_fields`] with the trace fields unfolded into `bufs`, which
/// the hops then borrow from.
pub fn collect_fields_in<'a>(
    fields: &[crate::message::Field<'_>],
    bufs: &'a mut Buffers,
) -> Trace<'a> {
    let Buffers {
        unfolded,
        spans,
        scratch,
    } = bufs;
    unfolded.clear();
    // The hops are parsed once every trace field is in `unfolded`.
    spans.clear();
    let mut t = Trace::default();
    for f in fields {
        if f.is("Received") || f.is("X-Received") {
            let kind = if f.is("Received") {
                HopKind::Received
            } else {
                HopKind::XReceived
            };
            let (a, b) = received::unfold_into(&lossy(f.value), unfolded);
            spans.push((kind, a, b));
        } else if f.is("Authentication-Results") {
            t.auth_results.push(authres::parse(&lossy(f.value)));
        } else if f.is("ARC-Authentication-Results") {
            t.arc_auth_results.push(authres::parse_arc(&lossy(f.value)));
        } else if f.is("Received-SPF") {
            t.received_spf
                .push(authres::parse_received_spf(&lossy(f.value)));
        } else if f.is("DKIM-Signature") {
            t.dkim_signatures
                .push(authres::parse_signature(&lossy(f.value), false));
        } else if f.is("ARC-Seal") {
            t.arc_seals
                .push(authres::parse_signature(&lossy(f.value), true));
        } else if f.is("List-Id") || f.is("List-Post") {
            let name = if f.is("List-Id") {
                "List-Id"
            } else {
                "List-Post"
            };
            t.list_headers.push(format!(
                "{name}: {}",
                received::unfold(&lossy(f.value)).trim()
            ));
        } else if f.is("ARC-Message-Signature") {
            t.arc_message_signatures
                .push(authres::parse_signature(&lossy(f.value), true));
        }
    }
    let unfolded: &'a str = unfolded;
    t.hops = spans
        .iter()
        .map(|&(kind, a, b)| {
            let raw = unfolded.get(a..b).unwrap_or("");
            (kind, received::parse_with(raw, scratch))
        })
        .collect();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mail-trace")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn a_full_header_block() {
        let t = collect(&fixture("gmail-to-postfix.eml"));
        assert_eq!(t.hops.len(), 5);
        let kinds: Vec<HopKind> = t.hops.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            vec![
                HopKind::Received,
                HopKind::Received,
                HopKind::XReceived,
                HopKind::Received,
                HopKind::Received
            ]
        );
        let (_, top) = &t.hops[0];
        assert_eq!(top.from.as_deref(), Some("mx.example.com"));
        assert_eq!(top.by.as_deref(), Some("imap.example.com"));
        assert_eq!(top.protocol.as_deref(), Some("LMTP"));
        let (_, mx) = &t.hops[1];
        assert_eq!(mx.rdns.as_deref(), Some("mail-wr1-f41.google.com"));
        assert_eq!(mx.ip.as_deref(), Some("209.85.221.41"));
        assert_eq!(mx.tls_version.as_deref(), Some("TLSv1.3"));
        assert_eq!(
            mx.date.map(|d| d.to_rfc3339_utc()).as_deref(),
            Some("2024-03-04T09:15:03Z")
        );
        let (_, origin) = &t.hops[4];
        assert_eq!(origin.protocol.as_deref(), Some("ESMTPSA"));
        assert_eq!(origin.auth, Some(Auth::Authenticated));
        for (_, h) in &t.hops {
            assert!(h.date.is_some(), "{}", h.raw);
            assert!(h.warnings.is_empty(), "{}: {:?}", h.raw, h.warnings);
        }
        assert_eq!(t.auth_results.len(), 1);
        assert_eq!(t.auth_results[0].results.len(), 3);
        assert_eq!(t.arc_auth_results.len(), 1);
        assert_eq!(t.arc_auth_results[0].instance, Some(1));
        assert_eq!(t.received_spf.len(), 1);
        assert_eq!(
            t.received_spf[0].client_ip.as_deref(),
            Some("209.85.221.41")
        );
    }

    #[test]
    fn office365_header_block() {
        let t = collect(&fixture("office365.eml"));
        assert_eq!(t.hops.len(), 4);
        let protos: Vec<Option<&str>> = t.hops.iter().map(|(_, h)| h.protocol.as_deref()).collect();
        assert_eq!(
            protos,
            vec![Some("ESMTPS"), Some("ESMTPS"), Some("HTTPS"), Some("MAPI")]
        );
        assert_eq!(t.hops[0].1.via.as_deref(), Some("Frontend Transport"));
        assert_eq!(t.auth_results.len(), 1);
        assert_eq!(t.auth_results[0].authserv_id, None);
        assert_eq!(t.auth_results[0].results.len(), 4);
        for (_, h) in &t.hops {
            assert!(h.warnings.is_empty(), "{}: {:?}", h.raw, h.warnings);
        }
    }

    #[test]
    fn a_megabyte_of_headers_is_fine() {
        let mut block = Vec::new();
        for i in 0..8000 {
            block.extend_from_slice(
                format!(
                    "Received: from h{i}.example (h{i}.example [192.0.2.{}]) by mx{i}.example with ESMTP id X{i}; Mon, 1 Jan 2024 10:00:00 +0000\n",
                    i % 250
                )
                .as_bytes(),
            );
        }
        block.extend_from_slice(format!("Received: {}\n", "(".repeat(10_000)).as_bytes());
        block.extend_from_slice(b"\nbody\n");
        assert!(block.len() > 1_000_000);
        let t = collect(&block);
        assert_eq!(t.hops.len(), 8001);
    }
}
