//! Per-route options added for trust and resilience: upstream time limits, the private-network
//! opt-in (`allow_private_network`, which discovery needs to reach loopback, LAN or private
//! hosts), and model discovery.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::lenient;

/// Time limits of one route, each overriding the router-wide default when set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RouteTimeouts {
    /// TCP (and TLS) connection set-up.
    pub connect: Option<Duration>,
    /// Until the response headers arrive (for non-streamed calls: the whole generation).
    pub headers: Option<Duration>,
    /// Longest silence between two chunks of a streamed body.
    pub idle: Option<Duration>,
    /// The whole attempt, first byte to last.
    pub total: Option<Duration>,
}

/// `timeouts:` as written: seconds, numbers or numeric strings.
#[derive(Debug, Default, Deserialize)]
pub struct RawTimeouts {
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub connect: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub headers: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub idle: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub total: Option<f64>,
    /// Reported with the route's other unknown keys (all at once, with a suggestion).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml::Value>,
}

/// The keys of [`RawTimeouts`].
pub const TIMEOUT_KEYS: &[&str] = &["connect", "headers", "idle", "total"];

impl RawTimeouts {
    /// Every value must be a positive, finite number of seconds (at most a day).
    pub fn validate(&self) -> Result<RouteTimeouts, Vec<String>> {
        let mut errors = Vec::new();
        let mut secs = |name: &str, v: Option<f64>| -> Option<Duration> {
            let v = v?;
            if v.is_finite() && v > 0.0 && v <= 86_400.0 {
                Some(Duration::from_secs_f64(v))
            } else {
                errors.push(format!(
                    "timeouts.{name}: must be a number of seconds between 0 and 86400, found {v}"
                ));
                None
            }
        };
        let t = RouteTimeouts {
            connect: secs("connect", self.connect),
            headers: secs("headers", self.headers),
            idle: secs("idle", self.idle),
            total: secs("total", self.total),
        };
        if errors.is_empty() {
            Ok(t)
        } else {
            Err(errors)
        }
    }
}

/// `discover: true`: the models the endpoint lists at `/v1/models` become public models.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Public id = `prefix` + the served id, unless `map` names it.
    pub prefix: String,
    /// Served id → public id.
    pub map: BTreeMap<String, String>,
}

impl Discovery {
    pub fn public_id(&self, served: &str) -> String {
        match self.map.get(served) {
            Some(id) => id.clone(),
            None => format!("{}{served}", self.prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engines::{ApiOp, NativeApi};

    fn load(route_extra: &str) -> Result<crate::config::Registry, crate::config::ConfigErrors> {
        let yaml = format!(
            "models:\n  - id: m\n    route:\n      - kind: tgi\n        base_url: http://127.0.0.1:9\n{route_extra}"
        );
        let vars = std::collections::HashMap::<String, String>::new();
        crate::config::load_str("t", &yaml, None, &vars)
    }

    /// `native_apis:` replaces the kind's profile: a TGI route said to serve Messages is
    /// native for it, and an empty list turns llama.cpp's native Messages off.
    #[test]
    fn native_apis_override_the_kind() {
        let route = &load("        native_apis: [Messages, responses]\n")
            .unwrap()
            .models[0]
            .routes[0];
        assert_eq!(
            route.native_apis.as_deref(),
            Some(&[NativeApi::Messages, NativeApi::Responses][..])
        );
        assert!(route.serves_natively(ApiOp::Messages));
        let plain = &load("").unwrap().models[0].routes[0];
        assert!(plain.serves(ApiOp::Messages) && !plain.serves_natively(ApiOp::Messages));
        let mut off = load("        native_apis: []\n").unwrap().models[0].routes[0].clone();
        off.kind = crate::engines::BackendKind::Llamacpp;
        assert!(!off.serves_natively(ApiOp::Messages) && off.serves(ApiOp::Messages));
        let errors = load("        native_apis: [messages, chat]\n").unwrap_err();
        assert!(errors.messages()[0].contains("native_apis"), "{errors}");
    }
}
