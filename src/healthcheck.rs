//! `switchyard healthcheck`: GET the router's `/health` and exit 0 on a 200, 1 otherwise. The
//! container image's `HEALTHCHECK` runs it, so the runtime image needs no curl.
//!
//! HTTPS: with `TLS_CERT_FILE` set the default URL is `https://127.0.0.1:$PORT/health`. On a
//! loopback host the server's certificate is not verified (it names the public host, never
//! 127.0.0.1; the probe sends nothing secret and only asks whether this host's router answers),
//! though the handshake's signatures still are. Any other host is verified against the bundled
//! roots, as a client would.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The URL probed when none is given: this host's router on `port`, over HTTPS when it serves
/// it.
pub fn default_url(port: u16, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{port}/health")
}

/// Check `url` within `timeout`; prints why on failure.
pub fn run(url: &str, timeout: Duration) -> ExitCode {
    let system = actix_rt::System::new();
    let outcome = system.block_on(async {
        client(url, timeout)?
            .get(url)
            .send()
            .await
            .map(|resp| resp.status())
            .map_err(|e| e.to_string())
    });
    match outcome {
        Ok(status) if status.as_u16() == 200 => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("unhealthy: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn client(url: &str, timeout: Duration) -> Result<awc::Client, String> {
    let builder = awc::Client::builder().timeout(timeout);
    if !is_https_to_loopback(url) {
        return Ok(builder.finish());
    }
    let provider = crate::tls::provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(
            crate::tls::SkipCertificateChecks::for_loopback(provider),
        ))
        .with_no_client_auth();
    let connector = awc::Connector::new().rustls_0_23(Arc::new(config));
    Ok(builder.connector(connector).finish())
}

/// `https://` to 127.0.0.0/8, `[::1]` or `localhost`.
fn is_https_to_loopback(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    url.scheme() == "https"
        && match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_checks_are_skipped_only_for_https_to_loopback() {
        let cases = [
            ("https://127.0.0.1:8080/health", true),
            ("https://127.9.0.1/health", true),
            ("https://[::1]:8443/health", true),
            ("https://LOCALHOST:8443/health", true),
            ("http://127.0.0.1:8080/health", false),
            ("https://10.0.0.1/health", false),
            ("https://router.example.com/health", false),
            ("https://localhost.example.com/health", false),
            ("not a url", false),
        ];
        for (url, skipped) in cases {
            assert_eq!(is_https_to_loopback(url), skipped, "{url}");
        }
    }
}
