//! The egress proxy the environment names, read as curl and Python's clients read it:
//! `https_proxy` for https backends, `http_proxy` for http ones, `all_proxy` for either when the
//! specific one is unset, and `no_proxy` for hosts that go direct. Each name is honoured in
//! lower and upper case; when both are set the lower-case one wins (curl and Python agree on
//! that; curl ignores upper-case `HTTP_PROXY` altogether, we do not, since containers are often
//! configured with upper-case names only). As in curl, no host is exempt unless `NO_PROXY`
//! says so, `localhost` included: list `localhost,127.0.0.1,::1` there for local engines.

use crate::config::{ProxyChoice, ProxyUrl};

use super::no_proxy::NoProxy;

/// The environment's proxies.
#[derive(Debug, Clone, Default)]
pub struct EnvProxies {
    pub https: Option<ProxyUrl>,
    pub http: Option<ProxyUrl>,
    pub no_proxy: NoProxy,
}

impl EnvProxies {
    /// Read through `var` (the process environment in production). The error names the
    /// variable, never its value (it may hold a password).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<EnvProxies, String> {
        let pick = |name: &str| {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name.to_string(), v))
                .or_else(|| {
                    let upper = name.to_ascii_uppercase();
                    var(&upper)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (upper, v))
                })
        };
        let proxy = |name: &str| -> Result<Option<ProxyUrl>, String> {
            match pick(name).or_else(|| pick("all_proxy")) {
                None => Ok(None),
                Some((name, value)) => match ProxyUrl::parse(&value) {
                    Ok(url) => Ok(Some(url)),
                    Err(e) => Err(format!("{name}: {e}")),
                },
            }
        };
        Ok(EnvProxies {
            https: proxy("https_proxy")?,
            http: proxy("http_proxy")?,
            no_proxy: pick("no_proxy")
                .map(|(_, v)| NoProxy::parse(&v))
                .unwrap_or_default(),
        })
    }

    /// The proxy a call to `host:port` takes under `choice`; `None` = direct.
    pub fn proxy_for<'a>(
        &'a self,
        choice: &'a ProxyChoice,
        host: &str,
        port: u16,
        https: bool,
    ) -> Option<&'a ProxyUrl> {
        match choice {
            ProxyChoice::Direct => None,
            ProxyChoice::Via(url) => Some(url),
            ProxyChoice::Environment if self.no_proxy.matches(host, port) => None,
            ProxyChoice::Environment if https => self.https.as_ref(),
            ProxyChoice::Environment => self.http.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<EnvProxies, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvProxies::from_vars(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    fn shown(p: Option<&ProxyUrl>) -> String {
        p.map(ToString::to_string)
            .unwrap_or_else(|| "direct".into())
    }

    #[test]
    fn which_variable_wins() {
        // (environment, https target's proxy, http target's proxy)
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Vars, &str, &str)] = &[
            (&[], "direct", "direct"),
            (&[("HTTPS_PROXY", "http://up:1")], "http://up:1", "direct"),
            (&[("https_proxy", "http://low:1")], "http://low:1", "direct"),
            (
                &[
                    ("HTTPS_PROXY", "http://up:1"),
                    ("https_proxy", "http://low:1"),
                ],
                "http://low:1",
                "direct",
            ),
            (&[("HTTP_PROXY", "http://up:2")], "direct", "http://up:2"),
            (
                &[("ALL_PROXY", "http://all:3")],
                "http://all:3",
                "http://all:3",
            ),
            (
                &[("all_proxy", "http://all:3"), ("http_proxy", "http://h:2")],
                "http://all:3",
                "http://h:2",
            ),
            // an empty lower-case value does not hide the upper-case one
            (
                &[("https_proxy", ""), ("HTTPS_PROXY", "http://up:1")],
                "http://up:1",
                "direct",
            ),
        ];
        for (vars, https, http) in cases {
            let e = env(vars).unwrap();
            let choice = ProxyChoice::Environment;
            assert_eq!(
                shown(e.proxy_for(&choice, "api.example", 443, true)),
                *https,
                "{vars:?}"
            );
            assert_eq!(
                shown(e.proxy_for(&choice, "api.example", 80, false)),
                *http,
                "{vars:?}"
            );
        }
    }

    #[test]
    fn route_choice_and_no_proxy() {
        let e = env(&[
            ("HTTPS_PROXY", "http://envproxy:1"),
            ("NO_PROXY", "internal.corp,10.0.0.0/8"),
        ])
        .unwrap();
        let Ok(via) = ProxyChoice::parse("http://routeproxy:2") else {
            panic!("a proxy URL")
        };
        let cases: &[(&ProxyChoice, &str, &str)] = &[
            (
                &ProxyChoice::Environment,
                "api.example",
                "http://envproxy:1",
            ),
            (&ProxyChoice::Environment, "vllm.internal.corp", "direct"),
            (&ProxyChoice::Environment, "10.1.2.3", "direct"),
            // like curl, no host is exempt unless NO_PROXY says so, this machine included
            (&ProxyChoice::Environment, "localhost", "http://envproxy:1"),
            (&ProxyChoice::Environment, "127.0.0.1", "http://envproxy:1"),
            (&ProxyChoice::Direct, "api.example", "direct"),
            // a route's own proxy is its decision: NO_PROXY is for the environment's
            (&via, "vllm.internal.corp", "http://routeproxy:2"),
        ];
        for (choice, host, want) in cases {
            assert_eq!(
                shown(e.proxy_for(choice, host, 443, true)),
                *want,
                "{choice:?} {host}"
            );
        }
    }

    #[test]
    fn a_bad_value_names_the_variable_not_the_secret() {
        let err = env(&[("HTTPS_PROXY", "socks5://u:hunter2@p:1")]).unwrap_err();
        assert!(err.starts_with("HTTPS_PROXY"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
