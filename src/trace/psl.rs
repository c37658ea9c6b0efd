//! The organisational domain of a name (RFC 7489 3.2), from the Public
//! Suffix List compiled into the `psl` crate: the one place postline decides
//! which names belong to one owner. DMARC policy discovery and relaxed
//! alignment in `--verify` and the offline alignment of the chain use it.
//!
//! The whole list is used, its private section too (`github.io`,
//! `blogspot.com`, ...): RFC 7489 3.2 names the Public Suffix List without
//! excluding a section, and the private entries are exactly the registries
//! whose children belong to different people; taking only the ICANN section
//! would make `alice.github.io` align with `bob.github.io`.
//!
//! Guarantee: total and pure; any input gives a lower-case name (an empty
//! string for an empty one), never a panic. An IP address, a name that is
//! itself a public suffix, and a single label are their own organisational
//! domain. Names are compared as the list holds them: A-labels
//! (`xn--...`) and U-labels are both in it; a trailing dot is ignored.

/// The organisational domain of `domain`: the public suffix plus one label,
/// lower case, without a trailing dot.
pub fn org_domain(domain: &str) -> String {
    let name = domain.trim().trim_end_matches('.').to_lowercase();
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    let bare = bare.strip_prefix("ipv6:").unwrap_or(bare);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return bare.to_string();
    }
    match psl::domain_str(&name) {
        Some(org) => org.to_string(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::org_domain;

    #[test]
    fn icann_suffixes_of_one_and_two_labels() {
        assert_eq!(org_domain("mail.example.co.uk"), "example.co.uk");
        assert_eq!(org_domain("a.b.example.com"), "example.com");
        assert_eq!(org_domain("example.com"), "example.com");
        assert_eq!(org_domain("Mail.Example.CO.UK"), "example.co.uk");
        // A public suffix alone is its own organisation (nothing above it).
        assert_eq!(org_domain("co.uk"), "co.uk");
        assert_eq!(org_domain("localhost"), "localhost");
        assert_eq!(org_domain(""), "");
    }

    #[test]
    fn private_section_suffixes_count() {
        assert_eq!(org_domain("x.github.io"), "x.github.io");
        assert_eq!(org_domain("www.x.github.io"), "x.github.io");
        assert_ne!(org_domain("alice.github.io"), org_domain("bob.github.io"));
    }

    #[test]
    fn punycode_and_trailing_dot() {
        // xn--fiqs8s is .中国; xn--p1ai is .рф.
        assert_eq!(org_domain("mail.example.xn--fiqs8s"), "example.xn--fiqs8s");
        assert_eq!(
            org_domain("a.xn--e1afmkfd.xn--p1ai"),
            "xn--e1afmkfd.xn--p1ai"
        );
        assert_eq!(org_domain("mail.example.co.uk."), "example.co.uk");
        assert_eq!(org_domain("example.com."), "example.com");
    }

    #[test]
    fn ip_literals_are_their_own_organisation() {
        assert_eq!(org_domain("192.0.2.1"), "192.0.2.1");
        assert_eq!(org_domain("[192.0.2.1]"), "192.0.2.1");
        assert_eq!(org_domain("2001:db8::1"), "2001:db8::1");
        assert_eq!(org_domain("[IPv6:2001:db8::1]"), "2001:db8::1");
    }
}
