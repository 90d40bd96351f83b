//! The `models.yaml` schema as operators write it (the HybridInference gateway's fields, plus the
//! optional extras documented in docs/configuration.md). Validation into [`super::ModelDef`]
//! happens in `load`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::lenient;
use super::Price;

#[derive(Debug, Deserialize)]
pub struct RawModel {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub provider: Option<String>,
    #[serde(rename = "type")]
    pub model_type: Option<String>,
    /// The self-hosted platform's registration (seed 002): `engine` is the kind of the route
    /// the model-level `base_url` makes, `modelType` its type when `type` is not given.
    pub engine: Option<String>,
    #[serde(rename = "modelType")]
    pub platform_model_type: Option<String>,
    pub quantization: Option<String>,
    #[serde(default)]
    pub input_modalities: Vec<String>,
    #[serde(default)]
    pub output_modalities: Vec<String>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub context_length: Option<u64>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_output_length: Option<u64>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub supports_tools: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub supports_structured_output: Option<bool>,
    pub supported_params: Option<Vec<String>>,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub pricing: Option<RawPricing>,
    /// TTS voices, listed in /v1/models as OpenRouter's `supported_voices`.
    pub supported_voices: Option<Vec<String>>,
    /// Defaults for routes that leave these out (the original gateway's model-level fields).
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub provider_model_id: Option<String>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    /// Routing policy: `weighted`, `least_load` or `prefix_cache` (docs/routing.md).
    pub policy: Option<String>,
    /// Keys not above: typos, reported (errors unless lenient) instead of silently ignored.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml::Value>,
}

/// The keys of [`RawModel`], for "did you mean" suggestions. Keep in step with the struct:
/// `tests/operations/strict_config.rs` loads every one of them and fails on any that is not accepted.
pub const MODEL_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "provider",
    "type",
    "engine",
    "modelType",
    "quantization",
    "input_modalities",
    "output_modalities",
    "context_length",
    "max_output_length",
    "supports_tools",
    "supports_structured_output",
    "supported_params",
    "aliases",
    "pricing",
    "supported_voices",
    "base_url",
    "api_key",
    "provider_model_id",
    "route",
    "policy",
];

#[derive(Debug, Default, Deserialize)]
pub struct RawPricing {
    #[serde(default, deserialize_with = "lenient::opt_price")]
    pub prompt: Option<Price>,
    #[serde(default, deserialize_with = "lenient::opt_price")]
    pub completion: Option<Price>,
    #[serde(default, deserialize_with = "lenient::opt_price")]
    pub image: Option<Price>,
    #[serde(default, deserialize_with = "lenient::opt_price")]
    pub request: Option<Price>,
    #[serde(default, deserialize_with = "lenient::opt_price")]
    pub input_cache_reads: Option<Price>,
    #[serde(default, deserialize_with = "lenient::opt_price")]
    pub input_cache_writes: Option<Price>,
    /// Per second of audio (speech output, transcription input).
    #[serde(default, deserialize_with = "lenient::opt_price")]
    pub audio: Option<Price>,
    /// Per second of generated video.
    #[serde(default, deserialize_with = "lenient::opt_price")]
    pub video: Option<Price>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml::Value>,
}

/// The keys of [`RawPricing`] (model and route `pricing:`).
pub const PRICING_KEYS: &[&str] = &[
    "prompt",
    "completion",
    "image",
    "request",
    "input_cache_reads",
    "input_cache_writes",
    "audio",
    "video",
];

#[derive(Debug, Deserialize)]
pub struct RawRoute {
    /// Optional stable name for routing.yaml and admin views; defaults to the kind.
    pub name: Option<String>,
    pub kind: String,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub weight: Option<f64>,
    pub base_url: Option<String>,
    pub provider_model_id: Option<String>,
    pub api_key: Option<String>,
    pub pricing: Option<RawPricing>,
    /// Requests per minute this endpoint accepts from this router.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub tpm: Option<u64>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_in_flight: Option<u64>,
    /// Tier: higher first (default 0); a lower tier takes only what no higher route admits.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub priority: Option<f64>,
    /// Override of the kind's health path, e.g. `/health_generate` for SGLang.
    pub health_path: Option<String>,
    /// Where the engine's load is read (Prometheus text); `none` turns the reading off.
    pub metrics_path: Option<String>,
    /// Header to carry the key: `authorization` (Bearer, default) or `api-key`.
    pub auth_header: Option<String>,
    /// Upstream time limits in seconds: `connect`, `headers`, `idle`, `total`.
    pub timeouts: Option<super::route_opts::RawTimeouts>,
    /// Lets discovery reach loopback/private/link-local addresses; off unless the operator says so.
    #[serde(
        default,
        alias = "allowPrivateNetwork",
        deserialize_with = "lenient::opt_bool"
    )]
    pub allow_private_network: Option<bool>,
    /// A route whose `${VAR}`s are unset is kept disabled (a warning) whatever its weight,
    /// instead of failing the load: a provider that turns on once its key is in `.env`.
    /// Read from the YAML before substitution (`load::is_optional`); declared here so the key
    /// is known and its value type-checked.
    #[allow(dead_code)]
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub optional: Option<bool>,
    /// Register the models this endpoint lists at `/v1/models` (off by default).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub discover: Option<bool>,
    /// Public id of a discovered model = prefix + served id.
    pub discover_prefix: Option<String>,
    /// Served id → public id for discovered models.
    pub discover_map: Option<BTreeMap<String, String>>,
    /// The newer APIs the endpoint serves itself (`messages`, `responses`, `completions`,
    /// `rerank`), replacing its kind's list.
    pub native_apis: Option<Vec<String>>,
    /// Extra CA certificates (PEM bundle) this route's backend may be signed by.
    pub ca_file: Option<String>,
    /// Client certificate chain (PEM) for backends that demand mutual TLS; with `client_key_file`.
    pub client_cert_file: Option<String>,
    /// The private key (PEM) of `client_cert_file`.
    pub client_key_file: Option<String>,
    /// Accept any server certificate (a loud warning; refused on routes with an `api_key`).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub tls_insecure_skip_verify: Option<bool>,
    /// `http://[user:pass@]host:port`, or `none` to ignore `HTTPS_PROXY`/`HTTP_PROXY`.
    pub proxy: Option<String>,
    /// Video backends: `video_mode` and `video_*_path` (docs/configuration.md).
    #[serde(flatten)]
    pub video: super::video::RawVideoRoute,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml::Value>,
}

/// The keys of [`RawRoute`] other than the video ones ([`super::video::VIDEO_ROUTE_KEYS`]).
pub const ROUTE_KEYS: &[&str] = &[
    "name",
    "kind",
    "weight",
    "base_url",
    "provider_model_id",
    "api_key",
    "pricing",
    "rpm",
    "tpm",
    "max_in_flight",
    "priority",
    "health_path",
    "metrics_path",
    "auth_header",
    "timeouts",
    "allow_private_network",
    "optional",
    "discover",
    "discover_prefix",
    "discover_map",
    "native_apis",
    "ca_file",
    "client_cert_file",
    "client_key_file",
    "tls_insecure_skip_verify",
    "proxy",
];
