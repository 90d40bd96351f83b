//! Network hygiene: traffic the router starts on its own — model discovery, and any
//! admin change that introduces an endpoint, and webhooks to URLs clients chose — must not reach
//! loopback, private, link-local or otherwise non-public addresses unless allowed. Endpoints
//! written by the operator in the config files are trusted as written and not checked here.
//!
//! "Not public" follows the IANA IPv4 and IPv6 Special-Purpose Address Registries (every entry
//! that is not globally reachable), plus multicast and the documentation ranges. IPv6 forms that
//! carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) get the verdict of
//! the IPv4 address inside: `::ffff:127.0.0.1` is loopback however it is written.
//!
//! Host names are resolved once and every address is checked; a name that resolves to one
//! non-public address is refused like the address itself. Callers that then connect should
//! connect to the addresses returned ([`public_addrs`]), not resolve the name again: a second
//! lookup may answer differently (DNS rebinding).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use futures_util::future::LocalBoxFuture;

/// A block of addresses, `prefix` bits of `network`.
struct Block<A> {
    network: A,
    prefix: u32,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u32) -> Block<Ipv4Addr> {
    Block {
        network: Ipv4Addr::new(a, b, c, d),
        prefix,
    }
}

const fn v6(segments: [u16; 8], prefix: u32) -> Block<Ipv6Addr> {
    let [a, b, c, d, e, f, g, h] = segments;
    Block {
        network: Ipv6Addr::new(a, b, c, d, e, f, g, h),
        prefix,
    }
}

impl Block<Ipv4Addr> {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - self.prefix).unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.network) & mask
    }
}

impl Block<Ipv6Addr> {
    fn contains(&self, ip: Ipv6Addr) -> bool {
        let mask = u128::MAX.checked_shl(128 - self.prefix).unwrap_or(0);
        u128::from(ip) & mask == u128::from(self.network) & mask
    }
}

/// IPv4 blocks that are not globally reachable (IANA registry), plus multicast.
const V4_NOT_PUBLIC: &[Block<Ipv4Addr>] = &[
    v4(0, 0, 0, 0, 8),      // "this network" (and 0.0.0.0 "this host")
    v4(10, 0, 0, 0, 8),     // private (RFC 1918)
    v4(100, 64, 0, 0, 10),  // shared address space, carrier-grade NAT
    v4(127, 0, 0, 0, 8),    // loopback
    v4(169, 254, 0, 0, 16), // link-local (cloud metadata services live here)
    v4(172, 16, 0, 0, 12),  // private (RFC 1918)
    // IETF protocol assignments. Two /32s inside (PCP and TURN anycast) are globally
    // reachable, but no webhook or model server lives there: the whole /24 is refused.
    v4(192, 0, 0, 0, 24),
    v4(192, 0, 2, 0, 24),    // documentation (TEST-NET-1)
    v4(192, 88, 99, 0, 24),  // deprecated 6to4 relay anycast
    v4(192, 168, 0, 0, 16),  // private (RFC 1918)
    v4(198, 18, 0, 0, 15),   // benchmarking
    v4(198, 51, 100, 0, 24), // documentation (TEST-NET-2)
    v4(203, 0, 113, 0, 24),  // documentation (TEST-NET-3)
    v4(224, 0, 0, 0, 4),     // multicast
    v4(240, 0, 0, 0, 4),     // reserved, and 255.255.255.255 limited broadcast
];

/// IPv6 blocks that are not globally reachable (IANA registry), plus multicast. The forms that
/// embed an IPv4 address are judged by [`embedded_ipv4`] instead; `::` and `::1` are among
/// them (IPv4-compatible 0.0.0.0 and 0.0.0.1).
const V6_NOT_PUBLIC: &[Block<Ipv6Addr>] = &[
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), // local-use IPv4/IPv6 translation
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),     // discard-only
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64),     // dummy prefix
    // IETF protocol assignments (benchmarking, ORCHID, anycast services, …); Teredo inside
    // it is judged by its embedded addresses first.
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),     // documentation
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),     // segment routing SIDs
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // unique local
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),      // multicast
];

/// Whether traffic the router starts must not go to `ip`: loopback, private, link-local,
/// shared, documentation, benchmarking, reserved, multicast, … in any IPv4 or IPv6 spelling.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(inside) => inside.into_iter().any(is_private_v4),
            None => V6_NOT_PUBLIC.iter().any(|block| block.contains(v6)),
        },
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    V4_NOT_PUBLIC.iter().any(|block| block.contains(ip))
}

/// The IPv4 addresses an IPv6 address carries, when it is one of the forms that lead to them:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d` (deprecated; this includes `::`
/// and `::1`, whose IPv4 readings are non-public too), NAT64 `64:ff9b::a.b.c.d`, 6to4
/// `2002:aabb:ccdd::/48`, and Teredo `2001:0:<server>:…:<client XOR ffffffff>`, which reaches
/// two IPv4 hosts. Single forms repeat their address so callers need not tell them apart.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<[Ipv4Addr; 2]> {
    let s = ip.segments();
    let join = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    let last = join(s[6], s[7]);
    let prefix_96 = [s[0], s[1], s[2], s[3], s[4], s[5]];
    if prefix_96 == [0, 0, 0, 0, 0, 0xffff] || prefix_96 == [0; 6] {
        return Some([last; 2]);
    }
    if prefix_96 == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some([last; 2]);
    }
    if s[0] == 0x2002 {
        return Some([join(s[1], s[2]); 2]);
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some([join(s[2], s[3]), join(!s[6], !s[7])]);
    }
    None
}

/// Why the router will not call a URL.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The host is, or resolves to, a non-public address (named in the text).
    NotPublic(String),
    /// The URL has no host, or the name does not resolve (now).
    Unresolvable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotPublic(what) => {
                write!(f, "{what} is a loopback/private/link-local address")
            }
            Refusal::Unresolvable(why) => write!(f, "cannot resolve {why}"),
        }
    }
}

/// Turns a host name into addresses. A trait so tests can answer differently on each call,
/// as a DNS server rebinding a name would.
pub trait Resolve {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The system's resolver (getaddrinfo on a blocking thread).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The addresses `url` leads to, resolved once with `resolver`; unless `allow_private`, every
/// one must be public. Connect to these (awc's `ClientRequest::address`) rather than to the
/// name, so what was checked is what is called.
pub async fn public_addrs(
    url: &url::Url,
    allow_private: bool,
    resolver: &dyn Resolve,
) -> Result<Vec<SocketAddr>, Refusal> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Refusal::Unresolvable(format!("{url}: no port")))?;
    let addrs = match url.host() {
        None => return Err(Refusal::Unresolvable(format!("{url}: no host"))),
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Domain(name)) => {
            let lower = name.to_ascii_lowercase();
            let lower = lower.trim_end_matches('.');
            if !allow_private && (lower == "localhost" || lower.ends_with(".localhost")) {
                return Err(Refusal::NotPublic(format!("host {name}")));
            }
            let addrs = resolver
                .lookup(name, port)
                .await
                .map_err(|e| Refusal::Unresolvable(format!("{name}: {e}")))?;
            if addrs.is_empty() {
                return Err(Refusal::Unresolvable(format!("{name}: no address")));
            }
            addrs
        }
    };
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| is_private(a.ip())) {
            return Err(Refusal::NotPublic(match url.host() {
                Some(url::Host::Domain(name)) => format!("host {name} ({})", bad.ip()),
                _ => bad.ip().to_string(),
            }));
        }
    }
    Ok(addrs)
}

/// Check the host of `url` (an `http(s)://host[:port]/…` URL). `Ok` when it is public or
/// private addresses are allowed; otherwise an explanation naming the address.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    match public_addrs(&parsed, false, &SystemResolver).await {
        Ok(_) => Ok(()),
        Err(refusal @ Refusal::NotPublic(_)) => Err(format!(
            "{refusal}; set `allow_private_network: true` on the route to allow it"
        )),
        Err(refusal) => Err(refusal.to_string()),
    }
}

/// A resolver double for tests in this crate.
#[cfg(test)]
pub mod testing {
    use super::*;
    use std::cell::{Cell, RefCell};

    /// Answers from a script, one list per call (the last one again once it runs out), and
    /// counts the calls. The port asked for is ignored: the script says where to go.
    pub struct ScriptedResolver {
        answers: RefCell<Vec<Vec<SocketAddr>>>,
        pub calls: Cell<usize>,
    }

    impl ScriptedResolver {
        pub fn new(answers: Vec<Vec<SocketAddr>>) -> ScriptedResolver {
            ScriptedResolver {
                answers: RefCell::new(answers),
                calls: Cell::new(0),
            }
        }
    }

    impl Resolve for ScriptedResolver {
        fn lookup<'a>(
            &'a self,
            _host: &'a str,
            _port: u16,
        ) -> LocalBoxFuture<'a, io::Result<Vec<SocketAddr>>> {
            self.calls.set(self.calls.get() + 1);
            let mut answers = self.answers.borrow_mut();
            let answer = if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers.first().cloned().unwrap_or_default()
            };
            Box::pin(std::future::ready(Ok(answer)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every block of the IANA special-purpose registries (and multicast) that must be refused:
    /// (first address, last address, public neighbours just outside it).
    const NOT_PUBLIC: &[(&str, &str, &[&str])] = &[
        ("0.0.0.0", "0.255.255.255", &["1.0.0.0"]),
        ("10.0.0.0", "10.255.255.255", &["9.255.255.255", "11.0.0.0"]),
        (
            "100.64.0.0",
            "100.127.255.255",
            &["100.63.255.255", "100.128.0.0"],
        ),
        (
            "127.0.0.0",
            "127.255.255.255",
            &["126.255.255.255", "128.0.0.0"],
        ),
        (
            "169.254.0.0",
            "169.254.255.255",
            &["169.253.255.255", "169.255.0.0"],
        ),
        (
            "172.16.0.0",
            "172.31.255.255",
            &["172.15.255.255", "172.32.0.0"],
        ),
        (
            "192.0.0.0",
            "192.0.0.255",
            &["191.255.255.255", "192.0.1.0"],
        ),
        ("192.0.0.8", "192.0.0.8", &[]),
        ("192.0.0.170", "192.0.0.171", &[]),
        ("192.0.2.0", "192.0.2.255", &["192.0.1.255", "192.0.3.0"]),
        (
            "192.88.99.0",
            "192.88.99.255",
            &["192.88.98.255", "192.88.100.0"],
        ),
        (
            "192.168.0.0",
            "192.168.255.255",
            &["192.167.255.255", "192.169.0.0"],
        ),
        (
            "198.18.0.0",
            "198.19.255.255",
            &["198.17.255.255", "198.20.0.0"],
        ),
        (
            "198.51.100.0",
            "198.51.100.255",
            &["198.51.99.255", "198.51.101.0"],
        ),
        (
            "203.0.113.0",
            "203.0.113.255",
            &["203.0.112.255", "203.0.114.0"],
        ),
        ("224.0.0.0", "239.255.255.255", &["223.255.255.255"]),
        ("240.0.0.0", "255.255.255.254", &[]),
        ("255.255.255.255", "255.255.255.255", &[]),
        ("::", "::", &[]),
        ("::1", "::1", &[]),
        (
            "::ffff:0.0.0.0",
            "::ffff:0.255.255.255",
            &["::ffff:1.0.0.0"],
        ),
        (
            "::ffff:127.0.0.0",
            "::ffff:127.255.255.255",
            &["::ffff:128.0.0.0"],
        ),
        ("::10.0.0.0", "::10.255.255.255", &["::11.0.0.0"]),
        (
            "64:ff9b::a9fe:0",
            "64:ff9b::a9fe:ffff",
            &["64:ff9b::a9ff:0"],
        ),
        (
            "64:ff9b::c0a8:0",
            "64:ff9b::c0a8:ffff",
            &["64:ff9b::c0a9:0"],
        ),
        (
            "64:ff9b:1::",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            &["64:ff9b::808:808"],
        ),
        ("100::", "100::ffff:ffff:ffff:ffff", &["ff::"]),
        ("100:0:0:1::", "100::1:ffff:ffff:ffff:ffff", &[]),
        (
            // 2001::/23 after Teredo's 2001::/32, which is judged by what it embeds.
            "2001:1::",
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            &["2001:200::", "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
        ),
        ("2001:2::", "2001:2:0:ffff:ffff:ffff:ffff:ffff", &[]),
        (
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            &["2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::"],
        ),
        (
            "2002:7f00::",
            "2002:7fff:ffff:ffff:ffff:ffff:ffff:ffff",
            &["2002:8000::"],
        ),
        ("2002:a00::", "2002:aff:ffff::", &["2002:b00::"]),
        (
            "3fff::",
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            &["3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "3fff:1000::"],
        ),
        (
            "5f00::",
            "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            &["5eff::", "5f01::"],
        ),
        (
            "fc00::",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            &["fbff::"],
        ),
        ("fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &[]),
        ("fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &[]),
        ("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &[]),
        // Teredo: a private server or client (stored XOR ffff:ffff) is enough.
        ("2001:0:a00:1::f5ff:fffe", "2001:0:a00:1::f5ff:fffe", &[]),
        (
            "2001:0:808:808::80ff:fffe",
            "2001:0:808:808::80ff:fffe",
            &[],
        ),
    ];

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|e| panic!("bad address {text}: {e}"))
    }

    #[test]
    fn every_special_purpose_block_is_refused_and_its_neighbours_are_not() {
        for (first, last, neighbours) in NOT_PUBLIC {
            assert!(is_private(ip(first)), "{first} (first of its block)");
            assert!(is_private(ip(last)), "{last} (last of its block)");
            for outside in *neighbours {
                assert!(!is_private(ip(outside)), "{outside} (next to {first})");
            }
        }
    }

    #[test]
    fn globally_reachable_addresses_pass() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "192.31.196.1",
            "192.175.48.1",
            "2606:4700::1111",
            "2620:4f:8000::1",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "2001:0:808:808::f7f7:f7f7",
        ] {
            assert!(!is_private(ip(public)), "{public}");
        }
    }

    /// The IPv6 forms that carry `v4` and lead to it.
    fn embeddings(v4: Ipv4Addr) -> Vec<Ipv6Addr> {
        let [a, b, c, d] = v4.octets();
        let high = u16::from_be_bytes([a, b]);
        let low = u16::from_be_bytes([c, d]);
        vec![
            v4.to_ipv6_mapped(),
            v4.to_ipv6_compatible(),
            Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, high, low),
            Ipv6Addr::new(0x2002, high, low, 0, 0, 0, 0, 1),
            // Teredo with a public server (8.8.8.8) and `v4` as the client.
            Ipv6Addr::new(0x2001, 0, 0x808, 0x808, 0, 0, !high, !low),
        ]
    }

    proptest! {
        #[test]
        fn an_ipv4_address_and_its_ipv6_forms_get_the_same_verdict(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            let verdict = is_private(IpAddr::V4(v4));
            for v6 in embeddings(v4) {
                prop_assert_eq!(is_private(IpAddr::V6(v6)), verdict, "{} as {}", v4, v6);
            }
        }

        #[test]
        fn private_ipv4_addresses_are_private_in_every_form(
            block in 0..V4_NOT_PUBLIC.len(),
            host in any::<u32>(),
        ) {
            let Block { network, prefix } = &V4_NOT_PUBLIC[block];
            let host_mask = u32::MAX.checked_shr(*prefix).unwrap_or(0);
            let v4 = Ipv4Addr::from(u32::from(*network) | (host & host_mask));
            prop_assert!(is_private(IpAddr::V4(v4)), "{}", v4);
            for v6 in embeddings(v4) {
                prop_assert!(is_private(IpAddr::V6(v6)), "{} as {}", v4, v6);
            }
        }
    }

    fn scripted(answers: &[&[&str]]) -> testing::ScriptedResolver {
        testing::ScriptedResolver::new(
            answers
                .iter()
                .map(|list| list.iter().map(|a| SocketAddr::new(ip(a), 443)).collect())
                .collect(),
        )
    }

    #[actix_rt::test]
    async fn names_are_refused_when_any_address_is_not_public() {
        let url = url::Url::parse("https://hooks.example.com/x").unwrap();
        let mixed = scripted(&[&["8.8.8.8", "10.0.0.1"]]);
        let refused = public_addrs(&url, false, &mixed).await.unwrap_err();
        assert_eq!(
            refused,
            Refusal::NotPublic("host hooks.example.com (10.0.0.1)".into())
        );
        let public = scripted(&[&["8.8.8.8", "2606:4700::1111"]]);
        let addrs = public_addrs(&url, false, &public).await.unwrap();
        assert_eq!(addrs.len(), 2);
        let nothing = scripted(&[&[]]);
        assert!(matches!(
            public_addrs(&url, false, &nothing).await,
            Err(Refusal::Unresolvable(_))
        ));
        let private_allowed = scripted(&[&["127.0.0.1"]]);
        assert!(public_addrs(&url, true, &private_allowed).await.is_ok());
    }

    #[actix_rt::test]
    async fn urls_are_checked_without_network_for_literals() {
        assert!(check_url("http://127.0.0.1:8000/v1", false).await.is_err());
        assert!(check_url("http://[::1]:8000", false).await.is_err());
        assert!(check_url("http://[::ffff:7f00:1]:8000", false)
            .await
            .is_err());
        assert!(check_url("http://[64:ff9b::a9fe:a9fe]/", false)
            .await
            .is_err());
        assert!(check_url("http://localhost:8000", false).await.is_err());
        assert!(check_url("http://localhost.:8000", false).await.is_err());
        assert!(check_url("http://api.localhost", false).await.is_err());
        assert!(check_url("http://127.0.0.1:8000/v1", true).await.is_ok());
        assert!(check_url("https://8.8.8.8/v1", false).await.is_ok());
        let msg = check_url("http://169.254.169.254/latest", false)
            .await
            .unwrap_err();
        assert!(msg.contains("allow_private_network"), "{msg}");
    }
}
