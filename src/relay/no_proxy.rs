//! `NO_PROXY`: which hosts bypass the environment's proxy, read as curl reads it. Entries are
//! separated by commas (spaces trimmed, case ignored): `*` alone matches every host; a name
//! matches itself and its subdomains, a leading dot or `*.` changing nothing (`.corp.example`
//! and `corp.example` both match `corp.example` and `api.corp.example`, never `xcorp.example`);
//! an IP address matches itself, a CIDR block (`10.0.0.0/8`, `fd00::/8`) every address in it;
//! `host:port` (or `[v6]:port`) matches that port only. Names are never resolved: a CIDR entry
//! only matches a backend addressed by IP, as in curl.

use std::net::IpAddr;

use ipnet::IpNet;

/// A parsed `NO_PROXY` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    everything: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    target: Target,
    /// `None` = any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Lower case, without leading dots.
    Domain(String),
    Net(IpNet),
}

impl NoProxy {
    pub fn parse(list: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for raw in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if raw == "*" {
                out.everything = true;
                continue;
            }
            if let Some(entry) = Entry::parse(raw) {
                out.entries.push(entry);
            }
        }
        out
    }

    /// Whether a call to `host:port` goes direct. `host` as in a URL (IPv6 in brackets or not).
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.everything {
            return true;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| {
            e.port.is_none_or(|p| p == port)
                && match (&e.target, ip) {
                    (Target::Net(net), Some(ip)) => net.contains(&ip),
                    (Target::Domain(d), None) => {
                        host == *d
                            || host
                                .strip_suffix(d.as_str())
                                .is_some_and(|head| head.ends_with('.'))
                    }
                    _ => false,
                }
        })
    }
}

impl Entry {
    fn parse(raw: &str) -> Option<Entry> {
        let raw = raw.to_ascii_lowercase();
        if let Ok(net) = raw.parse::<IpNet>() {
            return Some(Entry::net(net, None));
        }
        if let Ok(ip) = raw
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Some(Entry::net(IpNet::from(ip), None));
        }
        // `[v6]:port`, `v4:port`, `name:port`; a bare v6 address was taken above.
        let (host, port) = match raw.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                (host, Some(port.parse::<u16>().ok()?))
            }
            _ => (raw.as_str(), None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(Entry::net(IpNet::from(ip), port));
        }
        if let Ok(net) = host.parse::<IpNet>() {
            return Some(Entry::net(net, port));
        }
        let domain = host
            .trim_start_matches('*')
            .trim_start_matches('.')
            .trim_end_matches('.');
        (!domain.is_empty()).then(|| Entry {
            target: Target::Domain(domain.to_string()),
            port,
        })
    }

    fn net(net: IpNet, port: Option<u16>) -> Entry {
        Entry {
            target: Target::Net(net),
            port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_table() {
        // (NO_PROXY, host, port, goes direct)
        let cases: &[(&str, &str, u16, bool)] = &[
            ("", "example.com", 443, false),
            ("*", "anything.example", 443, true),
            (" * ", "10.1.2.3", 80, true),
            ("*.example.com", "example.com", 443, true),
            // names: the name itself and its subdomains, on a label boundary
            ("example.com", "example.com", 443, true),
            ("example.com", "api.example.com", 443, true),
            ("example.com", "notexample.com", 443, false),
            ("example.com", "example.com.evil", 443, false),
            (".example.com", "example.com", 443, true),
            (".example.com", "a.b.example.com", 443, true),
            ("*.example.com", "api.example.com", 443, true),
            ("EXAMPLE.com", "Api.Example.COM", 443, true),
            ("example.com.", "api.example.com", 443, true),
            ("example.com", "api.example.com.", 443, true),
            ("a.com, b.com ,c.com", "x.b.com", 443, true),
            ("a.com,,", "b.com", 443, false),
            // ports
            ("example.com:8443", "example.com", 8443, true),
            ("example.com:8443", "example.com", 443, false),
            ("10.0.0.1:80", "10.0.0.1", 80, true),
            ("10.0.0.1:80", "10.0.0.1", 81, false),
            ("[::1]:8080", "[::1]", 8080, true),
            ("[::1]:8080", "::1", 9090, false),
            // IPv4 addresses and CIDR
            ("127.0.0.1", "127.0.0.1", 443, true),
            ("127.0.0.1", "127.0.0.2", 443, false),
            ("10.0.0.0/8", "10.200.3.4", 443, true),
            ("10.0.0.0/8", "11.0.0.1", 443, false),
            ("192.168.1.0/24", "192.168.1.255", 80, true),
            ("192.168.1.0/24", "192.168.2.1", 80, false),
            // a CIDR entry never matches a name: names are not resolved
            ("10.0.0.0/8", "internal.corp", 443, false),
            // IPv6, bracketed or not, and CIDR
            ("::1", "[::1]", 443, true),
            ("[::1]", "::1", 443, true),
            ("fd00::/8", "[fd12:3456::1]", 443, true),
            ("fd00::/8", "[fe80::1]", 443, false),
            ("2001:db8::/32", "2001:db8:ffff::1", 443, true),
            // an address is not a name suffix
            ("0.0.1", "10.0.0.1", 443, false),
            // a name entry does not match an IP host
            ("localhost", "127.0.0.1", 443, false),
        ];
        for (list, host, port, direct) in cases {
            assert_eq!(
                NoProxy::parse(list).matches(host, *port),
                *direct,
                "NO_PROXY={list:?} host={host} port={port}"
            );
        }
    }
}
