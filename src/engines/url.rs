//! Joining a route's `base_url` with API paths. Operators write `http://host:8000`,
//! `http://host:8000/`, `http://host:8000/v1` or a provider's own prefix such as
//! `https://api.example.com/openai/v1`; all must reach the same `/v1/...` paths.

use std::fmt;

/// A validated base URL split into the server root (for health paths) and the API base
/// (for `/chat/completions` and friends).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl {
    /// Scheme, host, port and any path prefix before the API version segment, no trailing slash.
    root: String,
    /// Where OpenAI paths hang: `root` + `/v1` unless the operator wrote another version segment.
    api: String,
}

impl BaseUrl {
    pub fn parse(raw: &str) -> Result<BaseUrl, String> {
        let trimmed = raw.trim();
        let parsed =
            url::Url::parse(trimmed).map_err(|e| format!("invalid URL {trimmed:?}: {e}"))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(format!("URL {trimmed:?} must use http or https"));
        }
        if parsed.host_str().is_none() {
            return Err(format!("URL {trimmed:?} has no host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("credentials in base_url are not allowed; use api_key".into());
        }
        let path = parsed.path().trim_end_matches('/');
        let origin = parsed.origin().ascii_serialization();
        // The last segment such as `v1`, `v1beta` or `v2` that the path has is the API
        // version: the whole path is the API base (a provider may hang its OpenAI API below
        // it, as Google's `/v1beta/openai` does), and the server root is what precedes that
        // segment. A path with no version segment gets `/v1` appended.
        let version_at = path
            .rmatch_indices('/')
            .map(|(at, _)| at)
            .find(|&at| is_version_segment(path[at + 1..].split('/').next().unwrap_or("")));
        let (root, api) = match version_at {
            Some(at) => (
                format!("{origin}{}", &path[..at]),
                format!("{origin}{path}"),
            ),
            None => (format!("{origin}{path}"), format!("{origin}{path}/v1")),
        };
        Ok(BaseUrl { root, api })
    }

    /// `api` + an operation path such as `/chat/completions`.
    pub fn api_url(&self, path: &str) -> String {
        format!("{}{}", self.api, path)
    }

    /// `root` + a server path such as `/health`.
    pub fn root_url(&self, path: &str) -> String {
        format!("{}{}", self.root, path)
    }

    /// The URL paths that are served under `/v1` on the root (health paths like `/v1/models`)
    /// must use the API base instead when the operator's prefix is not `/v1`.
    pub fn probe_url(&self, health_path: &str) -> String {
        match health_path.strip_prefix("/v1") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => self.api_url(rest),
            _ => self.root_url(health_path),
        }
    }

    pub fn api_base(&self) -> &str {
        &self.api
    }

    /// `host:port` of the server (the scheme's port when none is written), never credentials:
    /// what error messages name the backend by.
    pub fn host_for_display(&self) -> String {
        match url::Url::parse(&self.root) {
            Ok(url) => match (url.host_str(), url.port_or_known_default()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_string(),
                _ => "the backend".into(),
            },
            Err(_) => "the backend".into(),
        }
    }

    /// Whether the server runs on this machine: a loopback address or `localhost`. Everything
    /// else (the internet, but also another host on the LAN) is "outside".
    pub fn is_on_this_machine(&self) -> bool {
        let Some(url) = url::Url::parse(&self.root).ok() else {
            return false;
        };
        match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Some(url::Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
            None => false,
        }
    }

    /// `host:port` for labels and logs.
    pub fn authority(&self) -> String {
        url::Url::parse(&self.root)
            .ok()
            .map(|u| match (u.host_str(), u.port_or_known_default()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => self.root.clone(),
            })
            .unwrap_or_else(|| self.root.clone())
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.api)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.api)
    }
}

/// `v` and a digit, then anything: `v1`, `v2`, `v1beta`.
fn is_version_segment(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_digit())
}

/// Canonical form used to compare URLs (OFFLOAD matching `LOCAL_BASE_URL`): the API base with
/// a lower-case scheme and host and no trailing slash.
pub fn normalize_base_url(raw: &str) -> Option<String> {
    BaseUrl::parse(raw).ok().map(|b| b.api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_and_without_v1_reach_the_same_paths() {
        for raw in [
            "http://h:8007",
            "http://h:8007/",
            "http://h:8007/v1",
            "http://h:8007/v1/",
            "HTTP://H:8007/v1",
        ] {
            let b = BaseUrl::parse(raw).unwrap();
            assert_eq!(
                b.api_url("/chat/completions"),
                "http://h:8007/v1/chat/completions"
            );
            assert_eq!(b.root_url("/health"), "http://h:8007/health");
        }
    }

    #[test]
    fn provider_prefixes_are_kept() {
        let b = BaseUrl::parse("https://api.example.com/openai/v1beta").unwrap();
        assert_eq!(
            b.api_url("/chat/completions"),
            "https://api.example.com/openai/v1beta/chat/completions"
        );
        assert_eq!(
            b.probe_url("/v1/models"),
            "https://api.example.com/openai/v1beta/models"
        );
        // Google's OpenAI-compatible API hangs below its version segment.
        let b = BaseUrl::parse("https://generativelanguage.googleapis.com/v1beta/openai/").unwrap();
        assert_eq!(
            b.api_url("/chat/completions"),
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
        );
        assert_eq!(
            b.probe_url("/v1/models"),
            "https://generativelanguage.googleapis.com/v1beta/openai/models"
        );
        assert_eq!(
            b.root_url("/health"),
            "https://generativelanguage.googleapis.com/health"
        );
        // The seed platform's proxy prefix, likewise.
        let b = BaseUrl::parse("http://gateway:8080/api/v1/ai").unwrap();
        assert_eq!(
            b.api_url("/embeddings"),
            "http://gateway:8080/api/v1/ai/embeddings"
        );
        assert_eq!(b.root_url("/health"), "http://gateway:8080/api/health");
        let b = BaseUrl::parse("https://api.example.com/inference").unwrap();
        assert_eq!(
            b.api_url("/embeddings"),
            "https://api.example.com/inference/v1/embeddings"
        );
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("not a url").is_err());
        assert!(BaseUrl::parse("http://user:pw@h/v1").is_err());
    }

    #[test]
    fn normalizes_for_comparison() {
        assert_eq!(
            normalize_base_url("https://FreeInference.org/v1/"),
            normalize_base_url("https://freeinference.org")
        );
    }
}
