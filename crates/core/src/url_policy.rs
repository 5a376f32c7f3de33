//! Which URLs the server may fetch on a user's behalf (SSRF). http and https only, no
//! credentials in the URL, and every address the host resolves to must be a public unicast
//! address: loopback, private, link-local (the cloud metadata service), carrier-grade NAT,
//! multicast, unspecified, reserved and documentation ranges are refused, as are IPv6 forms
//! that embed one of them (IPv4-mapped, IPv4-compatible, NAT64, 6to4). Odd spellings of an IPv4
//! address (decimal, octal, hex, short forms) are normalised by the WHATWG URL parser before
//! the check, so they cannot slip past it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a URL was refused. The message is safe to show: it never says what the host resolved to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("The URL is not valid.")]
    Invalid,
    #[error("Only http and https URLs can be downloaded.")]
    Scheme,
    #[error("URLs with a user name or password are not accepted.")]
    Credentials,
    #[error("The URL's host is not a public internet address.")]
    NotPublic,
    #[error("The URL's host could not be found.")]
    Unresolved,
    #[error("The URL's port is not allowed; use the standard http or https port.")]
    Port,
}

/// A URL that passed the checks that need no DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchTarget {
    pub url: Url,
    /// The host as the URL names it (a domain, or a normalised address).
    pub host: String,
    pub port: u16,
    /// The address itself when the URL names one; `None` for a domain to resolve.
    pub literal: Option<IpAddr>,
}

/// Hosts (`host` or `host:port`) exempt from the address check, for tests that fetch from
/// loopback (`URL_FETCH_ALLOW_HOSTS`). Empty in every real deployment.
#[derive(Clone, Debug, Default)]
pub struct FetchAllowList(Vec<String>);

impl FetchAllowList {
    pub fn parse(value: &str) -> Self {
        Self(
            value
                .split(',')
                .map(|entry| entry.trim().to_ascii_lowercase())
                .filter(|entry| !entry.is_empty())
                .collect(),
        )
    }

    pub fn allows(&self, target: &FetchTarget) -> bool {
        let with_port = format!("{}:{}", target.host, target.port);
        self.0
            .iter()
            .any(|entry| *entry == target.host || *entry == with_port)
    }
}

/// Parses `raw` and applies the checks that need no DNS. `base` resolves a relative redirect.
pub fn check_url(raw: &str, base: Option<&Url>) -> Result<FetchTarget, UrlRefusal> {
    let raw = raw.trim();
    let url = match base {
        Some(base) => base.join(raw),
        None => Url::parse(raw),
    }
    .map_err(|_| UrlRefusal::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefusal::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    let port = url.port_or_known_default().ok_or(UrlRefusal::Invalid)?;
    let (host, literal) = match url.host() {
        Some(Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if domain.is_empty() {
                return Err(UrlRefusal::Invalid);
            }
            (domain, None)
        }
        Some(Host::Ipv4(address)) => (address.to_string(), Some(IpAddr::V4(address))),
        Some(Host::Ipv6(address)) => (address.to_string(), Some(IpAddr::V6(address))),
        None => return Err(UrlRefusal::Invalid),
    };
    Ok(FetchTarget {
        url,
        host,
        port,
        literal,
    })
}

/// The ports a manual may be fetched from: the web's own, and the common alternates.
pub fn port_allowed(port: u16) -> bool {
    matches!(port, 80 | 443 | 8080 | 8443)
}

/// Checks every address a host resolved to; one bad address refuses the lot (DNS answers can
/// be chosen by an attacker, and the connection must use an address that was checked).
pub fn check_addresses(addresses: &[IpAddr]) -> Result<(), UrlRefusal> {
    if addresses.is_empty() {
        return Err(UrlRefusal::Unresolved);
    }
    if addresses.iter().all(|address| is_public(*address)) {
        Ok(())
    } else {
        Err(UrlRefusal::NotPublic)
    }
}

/// Whether `address` is a public unicast address.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(address: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(address) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    const REFUSED: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // carrier-grade NAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, cloud metadata
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    !REFUSED
        .iter()
        .any(|&(network, prefix)| in_v4(address, network, prefix))
}

fn in_v6(address: Ipv6Addr, network: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(address) & mask == u128::from(Ipv6Addr::from(network)) & mask
}

fn embedded_v4(address: Ipv6Addr, at_bit: u32) -> Ipv4Addr {
    Ipv4Addr::from(((u128::from(address) >> at_bit) & 0xFFFF_FFFF) as u32)
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    if address.is_unspecified() || address.is_loopback() {
        return false;
    }
    // Forms that carry an IPv4 address: public only if that address is.
    if in_v6(address, [0, 0, 0, 0, 0, 0xFFFF, 0, 0], 96) // IPv4-mapped
        || in_v6(address, [0, 0, 0, 0, 0, 0, 0, 0], 96) // IPv4-compatible (deprecated)
        || in_v6(address, [0x64, 0xFF9B, 0, 0, 0, 0, 0, 0], 96)
    // NAT64
    {
        return is_public_v4(embedded_v4(address, 0));
    }
    if in_v6(address, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return is_public_v4(embedded_v4(address, 80)); // 6to4
    }
    const REFUSED: &[([u16; 8], u32)] = &[
        ([0x0064, 0xFF9B, 0x0001, 0, 0, 0, 0, 0], 48), // local-use NAT64
        ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64),           // discard-only
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),           // Teredo
        ([0x2001, 0x0002, 0, 0, 0, 0, 0, 0], 48),      // benchmarking
        ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32),      // documentation
        ([0x2001, 0x0010, 0, 0, 0, 0, 0, 0], 28),      // ORCHID
        ([0xFC00, 0, 0, 0, 0, 0, 0, 0], 7),            // unique local
        ([0xFE80, 0, 0, 0, 0, 0, 0, 0], 10),           // link-local
        ([0xFEC0, 0, 0, 0, 0, 0, 0, 0], 10),           // site-local (deprecated)
        ([0xFF00, 0, 0, 0, 0, 0, 0, 0], 8),            // multicast
    ];
    !REFUSED
        .iter()
        .any(|&(network, prefix)| in_v6(address, network, prefix))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn literal(raw: &str) -> Option<IpAddr> {
        check_url(raw, None).unwrap().literal
    }

    #[test]
    fn odd_ipv4_spellings_are_normalised_before_the_check() {
        for raw in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://017700000001/",
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.01/",
            "http://127.0.0.1./",
        ] {
            assert_eq!(literal(raw), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), "{raw}");
        }
        assert_eq!(
            literal("http://[::ffff:169.254.169.254]/"),
            Some("::ffff:a9fe:a9fe".parse().unwrap())
        );
    }

    #[test]
    fn only_public_unicast_addresses_pass() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(!is_public(refused.parse().unwrap()), "{refused}");
        }
        for public in [
            "93.184.215.14",
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        assert_eq!(check_addresses(&[]), Err(UrlRefusal::Unresolved));
        assert_eq!(
            check_addresses(&["8.8.8.8".parse().unwrap(), "127.0.0.1".parse().unwrap()]),
            Err(UrlRefusal::NotPublic)
        );
    }

    #[test]
    fn schemes_credentials_and_redirects_are_checked() {
        assert_eq!(
            check_url("file:///etc/passwd", None),
            Err(UrlRefusal::Scheme)
        );
        assert_eq!(
            check_url("ftp://example.com/a.pdf", None),
            Err(UrlRefusal::Scheme)
        );
        assert_eq!(
            check_url("gopher://example.com/", None),
            Err(UrlRefusal::Scheme)
        );
        assert_eq!(
            check_url("http://user:pw@example.com/", None),
            Err(UrlRefusal::Credentials)
        );
        assert_eq!(check_url("not a url", None), Err(UrlRefusal::Invalid));
        let base = Url::parse("https://example.com/docs/a.pdf").unwrap();
        let next = check_url("/b.pdf", Some(&base)).unwrap();
        assert_eq!(next.url.as_str(), "https://example.com/b.pdf");
        assert_eq!((next.host.as_str(), next.port), ("example.com", 443));
        let allow = FetchAllowList::parse("127.0.0.1:8080, Localhost");
        assert!(allow.allows(&check_url("http://127.0.0.1:8080/x", None).unwrap()));
        assert!(!allow.allows(&check_url("http://127.0.0.1:8081/x", None).unwrap()));
        assert!(allow.allows(&check_url("http://localhost:1/x", None).unwrap()));
        assert!(port_allowed(443) && !port_allowed(22) && !port_allowed(6379));
    }
}
