//! Where and how the router listens: whether an open `/v1` may face the network (the
//! exposure decision), the listening sockets, and the file-descriptor budget they need. Kept
//! apart from `server`, which only wires the parts together.

use crate::auth::Exposure;

/// Every held client connection costs a descriptor, and another while it waits on a backend:
/// say so at start when the process limit cannot cover `MAX_CONNECTIONS` (the router then
/// answers 503 `router_overloaded` when it runs out, but a warning now saves the guesswork).
pub fn warn_if_descriptors_short(max_connections: usize) {
    let Some(limit) = descriptor_limit() else {
        return;
    };
    let wanted = (max_connections as u64).saturating_mul(2);
    if limit < wanted {
        tracing::warn!(
            descriptor_limit = limit,
            max_connections,
            "the open-file limit (ulimit -n) is below 2 x MAX_CONNECTIONS; raise it or lower MAX_CONNECTIONS"
        );
    }
}

/// The soft RLIMIT_NOFILE of this process (`None`: unknown or unlimited).
fn descriptor_limit() -> Option<u64> {
    let (soft, _hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    (soft != rlimit::INFINITY).then_some(soft)
}

/// Where `serve` listens when not told and clients need a key (or the operator allowed an
/// open router): every interface, as a server in a container or VM must.
const DEFAULT_HOST: &str = "0.0.0.0";
/// Where it listens when not told and `/v1` would be open to anyone who can connect.
const LOOPBACK_HOST: &str = "127.0.0.1";

/// The host to listen on and what that exposes. With no client key, an open `/v1` on a
/// reachable address must be a decision (`allow_unauthenticated`): without it the default
/// host becomes loopback, and a non-loopback host asked for explicitly (`--host` / `HOST`)
/// is refused, with a message naming the settings, rather than silently changed.
pub fn listen_host(
    requested: Option<&str>,
    key_required: bool,
    allow_unauthenticated: bool,
) -> Result<(String, Exposure), String> {
    if key_required {
        let host = requested.unwrap_or(DEFAULT_HOST);
        return Ok((host.to_string(), Exposure::KeyRequired));
    }
    let host = match requested {
        Some(host) => host,
        None if allow_unauthenticated => DEFAULT_HOST,
        None => LOOPBACK_HOST,
    };
    if is_loopback_host(host) {
        Ok((host.to_string(), Exposure::OpenOnLoopback))
    } else if allow_unauthenticated {
        Ok((host.to_string(), Exposure::OpenToNetwork))
    } else {
        Err(format!(
            "refusing to listen on {host}: no client key is configured, so /v1 would be open to \
             anyone who can reach this address. Set API_KEYS (or a keys file, KEYS_FILE) to \
             require a key, set ALLOW_UNAUTHENTICATED=true to serve it open on purpose, or \
             leave HOST/--host unset to listen on loopback ({LOOPBACK_HOST}) only."
        ))
    }
}

/// Whether every address `host` names is a loopback address (a name that does not resolve is
/// not: binding it fails anyway).
fn is_loopback_host(host: &str) -> bool {
    use std::net::ToSocketAddrs;
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Listeners on every address `host` resolves to, set up as actix's own `bind` does
/// (SO_REUSEADDR, backlog 1024).
pub fn bind_listeners(host: &str, port: u16) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs;
    let mut listeners = Vec::new();
    let mut last_error = None;
    for addr in (host, port).to_socket_addrs()? {
        let bound = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .and_then(|socket| {
                socket.set_reuse_address(true)?;
                socket.bind(&addr.into())?;
                socket.listen(1024)?;
                Ok(std::net::TcpListener::from(socket))
            });
        match bound {
            Ok(listener) => listeners.push(listener),
            Err(e) => last_error = Some(e),
        }
    }
    if listeners.is_empty() {
        return Err(last_error.unwrap_or_else(|| {
            std::io::Error::other(format!("{host}:{port} resolves to no address"))
        }));
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_router_listens_on_loopback_unless_the_operator_decides_otherwise() {
        use Exposure::*;
        /// The host and exposure chosen, or `None` for a refusal.
        type Verdict = Option<(&'static str, Exposure)>;
        // (requested host, client keys, ALLOW_UNAUTHENTICATED, verdict)
        let cases: &[(Option<&str>, bool, bool, Verdict)] = &[
            (None, false, false, Some(("127.0.0.1", OpenOnLoopback))),
            (None, false, true, Some(("0.0.0.0", OpenToNetwork))),
            (None, true, false, Some(("0.0.0.0", KeyRequired))),
            (Some("0.0.0.0"), false, false, None),
            (Some("::"), false, false, None),
            (Some("192.0.2.7"), false, false, None),
            (
                Some("0.0.0.0"),
                false,
                true,
                Some(("0.0.0.0", OpenToNetwork)),
            ),
            (Some("0.0.0.0"), true, false, Some(("0.0.0.0", KeyRequired))),
            (
                Some("127.0.0.1"),
                false,
                false,
                Some(("127.0.0.1", OpenOnLoopback)),
            ),
            (
                Some("127.0.0.2"),
                false,
                false,
                Some(("127.0.0.2", OpenOnLoopback)),
            ),
            (Some("::1"), false, false, Some(("::1", OpenOnLoopback))),
            (
                Some("localhost"),
                false,
                false,
                Some(("localhost", OpenOnLoopback)),
            ),
            (
                Some("127.0.0.1"),
                false,
                true,
                Some(("127.0.0.1", OpenOnLoopback)),
            ),
            (Some("no-such-host.invalid"), false, false, None),
        ];
        for (requested, keys, allow, expected) in cases {
            let got = listen_host(*requested, *keys, *allow);
            let label = format!("{requested:?} keys={keys} allow={allow}: {got:?}");
            match expected {
                Some((host, exposure)) => {
                    assert_eq!(got, Ok((host.to_string(), *exposure)), "{label}")
                }
                None => {
                    let refusal = got.expect_err(&label);
                    assert!(refusal.contains("ALLOW_UNAUTHENTICATED"), "{refusal}");
                    assert!(refusal.contains("API_KEYS"), "{refusal}");
                }
            }
        }
    }
}
