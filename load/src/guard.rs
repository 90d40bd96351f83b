//! The loopback guard: a load tool pointed at someone else's server is an attack, so targets
//! must be loopback unless the operator says otherwise explicitly.

use std::net::IpAddr;

use anyhow::{bail, Context};

/// The target as `scheme://host:port[/prefix]`, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub base: String,
    pub host: String,
    pub loopback: bool,
}

pub fn check_target(raw: &str, allow_non_loopback: bool) -> anyhow::Result<Target> {
    let url = url::Url::parse(raw.trim()).with_context(|| format!("invalid target URL {raw:?}"))?;
    if url.scheme() != "http" {
        bail!("target {raw:?}: only plain http is supported (loopback needs no TLS)");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("target {raw:?} must not have a query or fragment");
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => bail!("target {raw:?} has no host"),
    };
    let loopback = is_loopback(&host);
    if !loopback && !allow_non_loopback {
        bail!(
            "target host {host:?} is not loopback; this tool only loads loopback targets \
             (pass --allow-non-loopback if you own that server and mean it)"
        );
    }
    let path = url.path().trim_end_matches('/');
    let port = url.port_or_known_default().unwrap_or(80);
    let host_part = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        _ => host.clone(),
    };
    Ok(Target {
        base: format!("http://{host_part}:{port}{path}"),
        host,
        loopback,
    })
}

/// `localhost`, `*.localhost`, 127.0.0.0/8 and ::1. Other names are not resolved: DNS could
/// point anywhere.
pub fn is_loopback(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_pass() {
        for t in [
            "http://127.0.0.1:8080",
            "http://127.3.4.5:1/",
            "http://localhost:9000/api",
            "http://[::1]:8080",
        ] {
            let target = check_target(t, false).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert!(target.loopback);
            assert!(!target.base.ends_with('/'), "{}", target.base);
        }
        assert_eq!(
            check_target("http://localhost:9000/api/", false)
                .map(|t| t.base)
                .ok(),
            Some("http://localhost:9000/api".to_string())
        );
        assert_eq!(
            check_target("http://127.0.0.1", false).map(|t| t.base).ok(),
            Some("http://127.0.0.1:80".to_string())
        );
    }

    #[test]
    fn other_targets_are_refused_unless_allowed() {
        for t in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://192.168.1.2:80",
            "http://[2001:db8::1]:80",
        ] {
            let err = check_target(t, false).expect_err(t);
            assert!(err.to_string().contains("not loopback"), "{err}");
            assert!(check_target(t, true).is_ok(), "{t}");
        }
        assert!(check_target("https://127.0.0.1", false).is_err());
        assert!(check_target("not a url", false).is_err());
        assert!(check_target("http://127.0.0.1/?x=1", false).is_err());
    }
}
