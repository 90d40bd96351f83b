//! How a route reaches its backend beyond the URL: extra trusted CAs (`ca_file`), a client
//! certificate for mutual TLS (`client_cert_file`, `client_key_file`), the egress proxy
//! (`proxy:`), and verification skipped (`tls_insecure_skip_verify`, loudly). The files are read
//! and checked at load, so a bad path or a key that does not fit its certificate is a config
//! error naming the route, not a failed request later.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::Secret;

/// A route's outbound profile. Routes with equal profiles share clients and connection pools;
/// the default (no file, proxy from the environment) is what every route had before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Outbound {
    /// Trusted in addition to the bundled roots, the system store and `UPSTREAM_CA_FILE`.
    pub ca_file: Option<PathBuf>,
    /// Presented when the backend asks for a client certificate.
    pub client_identity: Option<ClientIdentityFiles>,
    /// Accept any server certificate (still encrypted, no longer authenticated).
    pub insecure_skip_verify: bool,
    pub proxy: ProxyChoice,
}

impl Outbound {
    pub fn is_default(&self) -> bool {
        *self == Outbound::default()
    }
}

/// A client certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentityFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Which proxy a route's traffic takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum ProxyChoice {
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` decide (the default, as curl does).
    #[default]
    Environment,
    /// `proxy: none`: straight to the backend whatever the environment says.
    Direct,
    /// `proxy: http://…`: this proxy for every call of the route (`NO_PROXY` does not apply).
    Via(ProxyUrl),
}

impl ProxyChoice {
    /// A route's `proxy:` value: `none` or a proxy URL.
    pub fn parse(value: &str) -> Result<ProxyChoice, String> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("none") {
            return Ok(ProxyChoice::Direct);
        }
        ProxyUrl::parse(value).map(ProxyChoice::Via)
    }
}

/// An HTTP proxy: where it is and, when the URL carried `user:pass@`, the `Proxy-Authorization`
/// value. Neither `Debug` nor `Display` shows the credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl {
    host: String,
    port: u16,
    authorization: Option<Secret>,
}

impl ProxyUrl {
    /// `http://[user:pass@]host[:port]`, or `host:port` without a scheme (curl's reading). The
    /// error never quotes the value: it may hold a password.
    pub fn parse(value: &str) -> Result<ProxyUrl, String> {
        let value = value.trim();
        let with_scheme = if value.contains("://") {
            value.to_string()
        } else {
            format!("http://{value}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| {
            format!("is not a proxy URL ({e}); expected http://[user:pass@]host:port")
        })?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(
                    "https:// proxies (TLS to the proxy itself) are not supported; use http:// \
                     (traffic to https backends is still end-to-end TLS through the tunnel)"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "proxy scheme `{other}` is not supported; use http://"
                ))
            }
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(host) => host.to_string(),
            None => return Err("proxy URL has no host".into()),
        };
        if url.path() != "/" || url.query().is_some() {
            return Err("proxy URL must not have a path or query".into());
        }
        let authorization = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| percent_decode(s);
            let pair = format!(
                "{}:{}",
                decode(url.username()),
                decode(url.password().unwrap_or(""))
            );
            Secret::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        });
        Ok(ProxyUrl {
            host,
            port: url.port().unwrap_or(80),
            authorization,
        })
    }

    /// `host:port`, what a TCP connection to the proxy is opened to.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The host without IPv6 brackets, for name resolution.
    pub fn host_for_connect(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Proxy-Authorization` header value (`Basic …`), when the URL had credentials.
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_ref().map(|s| s.expose())
    }
}

/// `user:pass@` in a URL is percent-encoded; the Basic credentials are the decoded text.
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let creds = if self.authorization.is_some() {
            "***@"
        } else {
            ""
        };
        write!(f, "http://{creds}{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// Every certificate of a PEM bundle (a CA file); at least one.
pub fn read_ca_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A client certificate chain and its key, checked to belong together.
pub fn read_client_identity(
    files: &ClientIdentityFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs = read_ca_bundle(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "{} is not a readable PEM private key: {e}",
            files.key.display()
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs.clone(), key.clone_key(), &provider).map_err(
        |e| {
            format!(
                "the key {} does not fit the certificate {}: {e}",
                files.key.display(),
                files.cert.display()
            )
        },
    )?;
    Ok((certs, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_values() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("none", Ok("direct")),
            (" NONE ", Ok("direct")),
            ("http://proxy:3128", Ok("http://proxy:3128")),
            ("proxy.corp:8080", Ok("http://proxy.corp:8080")),
            ("http://proxy", Ok("http://proxy:80")),
            ("http://[::1]:3128", Ok("http://[::1]:3128")),
            ("http://u:p%40ss@proxy:3128", Ok("http://***@proxy:3128")),
            ("https://proxy:443", Err("not supported")),
            ("socks5://proxy:1080", Err("not supported")),
            ("http://proxy:3128/path", Err("path")),
            ("http://", Err("not a proxy URL")),
        ];
        for (value, want) in cases {
            let got = ProxyChoice::parse(value);
            match (want, got) {
                (Ok("direct"), Ok(ProxyChoice::Direct)) => {}
                (Ok(shown), Ok(ProxyChoice::Via(url))) => {
                    assert_eq!(url.to_string(), *shown, "{value}")
                }
                (Err(part), Err(message)) => {
                    assert!(message.contains(part), "{value}: {message}");
                    assert!(!message.contains("p%40ss"), "{value}: {message}");
                }
                (want, got) => panic!("{value}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn proxy_credentials_become_basic_and_stay_hidden() {
        let Ok(ProxyChoice::Via(url)) = ProxyChoice::parse("http://alice:s%3Acret@proxy:3128")
        else {
            panic!("a proxy URL");
        };
        // base64("alice:s:cret")
        assert_eq!(url.authorization(), Some("Basic YWxpY2U6czpjcmV0"));
        assert!(!format!("{url:?} {url}").contains("cret"));
    }

    /// Files for the validation table: a CA bundle, a client certificate with its key, and a
    /// key of another pair.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            let dir = tempfile::tempdir().unwrap();
            let pair = |name: &str| {
                let key = rcgen::KeyPair::generate().unwrap();
                let cert = rcgen::CertificateParams::new(vec![format!("{name}.test")])
                    .unwrap()
                    .self_signed(&key)
                    .unwrap();
                std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
                std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem())
                    .unwrap();
            };
            pair("client");
            pair("other");
            std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
            Files { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }
    }

    /// Each route setting, right and wrong: what loads, what is refused and with which words,
    /// what only warns. Every refusal names the route.
    #[test]
    fn route_settings_table() {
        let f = Files::new();
        let (client_pem, client_key, other_key) = (
            f.path("client.pem"),
            f.path("client.key"),
            f.path("other.key"),
        );
        let missing = f.path("missing.pem");
        let junk = f.path("junk.pem");
        // (route keys, Ok(warning substring or "") | Err(error substrings))
        let cases: Vec<(String, Result<&str, Vec<&str>>)> = vec![
            (format!("ca_file: {client_pem}"), Ok("")),
            (
                format!("ca_file: {missing}"),
                Err(vec!["ca_file", "route `r`", "cannot read"]),
            ),
            (
                format!("ca_file: {junk}"),
                Err(vec!["ca_file", "no PEM certificate"]),
            ),
            (
                format!("client_cert_file: {client_pem}, client_key_file: {client_key}"),
                Ok(""),
            ),
            (
                format!("client_cert_file: {client_pem}"),
                Err(vec!["client_key_file", "needs client_key_file"]),
            ),
            (
                format!("client_key_file: {client_key}"),
                Err(vec!["client_cert_file", "needs client_cert_file"]),
            ),
            (
                format!("client_cert_file: {client_pem}, client_key_file: {other_key}"),
                Err(vec!["client_cert_file", "route `r`", "does not fit"]),
            ),
            (
                format!("client_cert_file: {client_pem}, client_key_file: {missing}"),
                Err(vec!["client_cert_file", "private key"]),
            ),
            (
                "tls_insecure_skip_verify: true".into(),
                Ok("TLS VERIFICATION IS OFF"),
            ),
            ("tls_insecure_skip_verify: false".into(), Ok("")),
            (
                "tls_insecure_skip_verify: true, api_key: sk-live".into(),
                Err(vec!["tls_insecure_skip_verify", "route `r`", "api_key"]),
            ),
            ("proxy: none".into(), Ok("")),
            ("proxy: \"http://u:pw@proxy:3128\"".into(), Ok("")),
            (
                "proxy: \"socks5://u:hunter2@proxy:1080\"".into(),
                Err(vec!["proxy", "route `r`", "not supported"]),
            ),
        ];
        for (keys, want) in cases {
            let yaml = format!(
                "models:\n  - id: m\n    route:\n      - {{name: r, kind: vllm, base_url: \"https://b:1\", {keys}}}\n"
            );
            let got =
                crate::config::load_str("models.yaml", &yaml, None, &crate::config::test_vars(&[]));
            match (want, got) {
                (Ok(warning), Ok(registry)) => {
                    if warning.is_empty() {
                        assert!(
                            registry.warnings.is_empty(),
                            "{keys}: {:?}",
                            registry.warnings
                        );
                    } else {
                        assert!(
                            registry
                                .warnings
                                .iter()
                                .any(|w| w.contains(warning) && w.contains("route `r`")),
                            "{keys}: {:?}",
                            registry.warnings
                        );
                    }
                }
                (Err(parts), Err(errors)) => {
                    let text = errors
                        .errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n");
                    for part in parts {
                        assert!(text.contains(part), "{keys}: want {part:?} in {text}");
                    }
                    assert!(
                        !text.contains("hunter2") && !text.contains("sk-live"),
                        "{keys}: {text}"
                    );
                }
                (want, got) => panic!("{keys}: want {want:?}, got {:?}", got.map(|r| r.warnings)),
            }
        }
    }

    #[test]
    fn loaded_profile_reaches_the_route() {
        let f = Files::new();
        let yaml = format!(
            "models:\n  - id: m\n    route:\n      - {{name: r, kind: vllm, base_url: \"https://b:1\", ca_file: {}, client_cert_file: {}, client_key_file: {}, proxy: none}}\n",
            f.path("client.pem"),
            f.path("client.pem"),
            f.path("client.key")
        );
        let registry =
            crate::config::load_str("models.yaml", &yaml, None, &crate::config::test_vars(&[]))
                .unwrap();
        let outbound = &registry.models[0].routes[0].outbound;
        assert_eq!(
            outbound.ca_file.as_deref(),
            Some(Path::new(&f.path("client.pem")))
        );
        assert!(outbound.client_identity.is_some());
        assert_eq!(outbound.proxy, ProxyChoice::Direct);
        assert!(!outbound.is_default());
    }
}
