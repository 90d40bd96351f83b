//! Network hygiene (seed 004): traffic the router starts on its own — model discovery, and any
//! admin change that introduces an endpoint — must not reach loopback, private or link-local
//! addresses unless the route says `allow_private_network: true`. Endpoints written by the
//! operator in the config files are trusted as written and not checked here.
//!
//! Host names are resolved and every address is checked; a name that resolves to a private
//! address is refused like the address itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Loopback, private (RFC 1918, unique local), link-local, CGNAT, unspecified and broadcast.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private_v4(v4),
            None => is_private_v6(v6),
        },
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT: shared, not public.
        || (a == 100 && (64..128).contains(&b))
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 (deprecated) site-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
}

/// Check the host of `url` (an `http(s)://host[:port]/…` URL). `Ok` when it is public or
/// private addresses are allowed; otherwise an explanation naming the address.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let refuse = |what: String| {
        Err(format!(
            "{what} is a loopback/private/link-local address; set `allow_private_network: true` on the route to allow it"
        ))
    };
    match parsed.host() {
        None => Err(format!("URL {url:?} has no host")),
        Some(url::Host::Ipv4(ip)) if is_private(IpAddr::V4(ip)) => refuse(ip.to_string()),
        Some(url::Host::Ipv6(ip)) if is_private(IpAddr::V6(ip)) => refuse(ip.to_string()),
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => Ok(()),
        Some(url::Host::Domain(name)) => {
            let lower = name.to_ascii_lowercase();
            if lower == "localhost" || lower.ends_with(".localhost") {
                return refuse(format!("host {name}"));
            }
            let addrs = tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?;
            let mut any = false;
            for addr in addrs {
                any = true;
                if is_private(addr.ip()) {
                    return refuse(format!("host {name} ({})", addr.ip()));
                }
            }
            if any {
                Ok(())
            } else {
                Err(format!("{name} resolves to no address"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "100.128.0.1", "2606:4700::1111"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[actix_rt::test]
    async fn urls_are_checked_without_network_for_literals() {
        assert!(check_url("http://127.0.0.1:8000/v1", false).await.is_err());
        assert!(check_url("http://[::1]:8000", false).await.is_err());
        assert!(check_url("http://localhost:8000", false).await.is_err());
        assert!(check_url("http://api.localhost", false).await.is_err());
        assert!(check_url("http://127.0.0.1:8000/v1", true).await.is_ok());
        assert!(check_url("https://8.8.8.8/v1", false).await.is_ok());
        let msg = check_url("http://169.254.169.254/latest", false)
            .await
            .unwrap_err();
        assert!(msg.contains("allow_private_network"), "{msg}");
    }
}
