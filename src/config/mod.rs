//! The operator's model registry: `models.yaml` (the HybridInference gateway's schema, so its
//! files load unchanged), optional `routing.yaml`, `.env`, `${VAR}` substitution and
//! `OFFLOAD`/`LOCAL_BASE_URL`. Loading validates everything and reports every problem at once,
//! each naming the file, the model and the field.

mod env;
mod lenient;
mod load;
mod outbound;
mod policy;
mod providers;
mod raw;
mod route_opts;
mod routing;
mod single_backend;
mod strict;
mod video;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::engines::{ApiOp, AuthStyle, BackendKind, BaseUrl, NativeApi};
use crate::error::ConfigError;

#[cfg(test)]
pub use env::test_vars;
pub use env::{bool_var, number_var, substitute_str, ProcessEnv, VarSource};
pub use lenient::bool_word;
pub use load::{load, load_str, LoadOptions};
pub use outbound::{
    read_ca_bundle, read_client_identity, ClientIdentityFiles, Outbound, ProxyChoice, ProxyUrl,
};
pub use policy::{PolicySettings, RoutingPolicy, SlotWait, POLICY_SETTING_KEYS};
pub use providers::{providers_path, Declared};
pub use raw::{MODEL_KEYS, PRICING_KEYS, ROUTE_KEYS};
pub use route_opts::{Discovery, RouteTimeouts, TIMEOUT_KEYS};
pub use routing::{
    select_route, RoutingFile, WeightOverrides, DEPLOYMENT_KEYS, ROUTING_KEYS,
    ROUTING_PARAMETER_KEYS,
};
pub use single_backend::{SingleBackend, KINDS as BACKEND_KINDS};
pub use strict::{closest_key, place_in, unknown_key_message, Strictness};
pub use video::{VideoMode, VideoRouteOptions, VIDEO_ROUTE_KEYS};

/// What a model does, which decides the endpoint that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    Chat,
    Multimodal,
    Embedding,
    Speech,
    Transcription,
    Image,
    Video,
    /// Scores documents against a query (`POST /v1/rerank`).
    Rerank,
}

impl ModelType {
    /// Accepts the router's names and the self-hosted catalogue's (`text_to_speech`,
    /// `speech_to_text`, …), in any case, with `-` or `_`.
    pub fn parse(s: &str) -> Option<ModelType> {
        Some(
            match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "chat" | "llm" | "text" | "completion" => ModelType::Chat,
                "multimodal" | "vision" | "vlm" => ModelType::Multimodal,
                "embedding" | "embeddings" => ModelType::Embedding,
                "speech" | "tts" | "text_to_speech" => ModelType::Speech,
                "transcription" | "stt" | "speech_to_text" | "asr" => ModelType::Transcription,
                "image" | "image_generation" => ModelType::Image,
                "video" | "video_generation" => ModelType::Video,
                "rerank" | "reranker" | "reranking" => ModelType::Rerank,
                _ => return None,
            },
        )
    }

    /// Inference from modalities when no `type:` is given (issue rules, in this order).
    pub fn infer(input: &[String], output: &[String]) -> ModelType {
        let has = |list: &[String], m: &str| list.iter().any(|x| x.eq_ignore_ascii_case(m));
        if has(output, "embeddings") || has(output, "embedding") {
            ModelType::Embedding
        } else if has(output, "rerank") {
            ModelType::Rerank
        } else if has(output, "video") {
            ModelType::Video
        } else if has(output, "image") {
            ModelType::Image
        } else if has(input, "audio") && !has(output, "audio") && !has(input, "image") {
            ModelType::Transcription
        } else if has(output, "audio") || has(output, "speech") {
            ModelType::Speech
        } else if has(input, "image")
            || has(input, "audio")
            || has(input, "video")
            || has(input, "file")
        {
            ModelType::Multimodal
        } else {
            ModelType::Chat
        }
    }

    /// Whether a request to `op` may use a model of this type.
    pub fn accepts(self, op: ApiOp) -> bool {
        match op {
            ApiOp::ChatCompletions | ApiOp::Completions | ApiOp::Responses => {
                matches!(self, ModelType::Chat | ModelType::Multimodal)
            }
            ApiOp::Embeddings => self == ModelType::Embedding,
            ApiOp::Speech => self == ModelType::Speech,
            ApiOp::Transcriptions | ApiOp::Translations => self == ModelType::Transcription,
            ApiOp::Images => self == ModelType::Image,
            ApiOp::Video => self == ModelType::Video,
            ApiOp::Messages | ApiOp::MessagesCountTokens => {
                matches!(self, ModelType::Chat | ModelType::Multimodal)
            }
            ApiOp::Rerank => self == ModelType::Rerank,
        }
    }

    /// The endpoint a client should call for this type (used in "wrong endpoint" errors).
    pub fn home_op(self) -> ApiOp {
        match self {
            ModelType::Chat | ModelType::Multimodal => ApiOp::ChatCompletions,
            ModelType::Embedding => ApiOp::Embeddings,
            ModelType::Speech => ApiOp::Speech,
            ModelType::Transcription => ApiOp::Transcriptions,
            ModelType::Image => ApiOp::Images,
            ModelType::Video => ApiOp::Video,
            ModelType::Rerank => ApiOp::Rerank,
        }
    }

    pub fn default_modalities(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            ModelType::Chat => (&["text"], &["text"]),
            ModelType::Multimodal => (&["text", "image"], &["text"]),
            ModelType::Embedding => (&["text"], &["embeddings"]),
            ModelType::Speech => (&["text"], &["audio"]),
            ModelType::Transcription => (&["audio"], &["text"]),
            ModelType::Image => (&["text"], &["image"]),
            ModelType::Video => (&["text"], &["video"]),
            ModelType::Rerank => (&["text"], &["rerank"]),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Chat => "chat",
            ModelType::Multimodal => "multimodal",
            ModelType::Embedding => "embedding",
            ModelType::Speech => "speech",
            ModelType::Transcription => "transcription",
            ModelType::Image => "image",
            ModelType::Video => "video",
            ModelType::Rerank => "rerank",
        }
    }
}

impl fmt::Display for ModelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A price in USD per unit, kept as the decimal string the operator wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub text: String,
    pub value: f64,
}

impl Price {
    pub fn parse(s: &str) -> Result<Price, String> {
        let t = s.trim();
        let value: f64 = t
            .parse()
            .map_err(|_| format!("expected a decimal price, found {s:?}"))?;
        if !value.is_finite() || value < 0.0 {
            return Err(format!("price must be a non-negative number, found {s:?}"));
        }
        Ok(Price {
            text: t.to_string(),
            value,
        })
    }

    pub fn from_f64(v: f64) -> Result<Price, String> {
        if !v.is_finite() || v < 0.0 {
            return Err(format!("price must be a non-negative number, found {v}"));
        }
        Ok(Price {
            text: format!("{v}"),
            value: v,
        })
    }
}

impl Serialize for Price {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// USD prices per token (prompt, completion, cache), per image, per request, per second of
/// audio or video. Missing means "not priced" (treated as zero in cost arithmetic).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pricing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Price>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<Price>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Price>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Price>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_cache_reads: Option<Price>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_cache_writes: Option<Price>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<Price>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<Price>,
}

impl Pricing {
    /// Route pricing overrides the model's field by field.
    pub fn overlaid_by(&self, route: &Pricing) -> Pricing {
        Pricing {
            prompt: route.prompt.clone().or_else(|| self.prompt.clone()),
            completion: route.completion.clone().or_else(|| self.completion.clone()),
            image: route.image.clone().or_else(|| self.image.clone()),
            request: route.request.clone().or_else(|| self.request.clone()),
            input_cache_reads: route
                .input_cache_reads
                .clone()
                .or_else(|| self.input_cache_reads.clone()),
            input_cache_writes: route
                .input_cache_writes
                .clone()
                .or_else(|| self.input_cache_writes.clone()),
            audio: route.audio.clone().or_else(|| self.audio.clone()),
            video: route.video.clone().or_else(|| self.video.clone()),
        }
    }
}

/// A credential that must never be printed: `Debug`/`Display` show only that it is set.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Rate and concurrency limits of one route's endpoint (per router replica).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_in_flight: Option<u64>,
}

/// One way to serve a model: a backend endpoint and the name the model has there.
#[derive(Debug, Clone)]
pub struct RouteDef {
    /// Unique within the model; used by routing.yaml and admin views.
    pub name: String,
    /// The `kind:` as written (e.g. `featherless`), for display and env limit names.
    pub kind_name: String,
    pub kind: BackendKind,
    /// Effective weight after routing.yaml and OFFLOAD; 0 = configured but never chosen.
    pub weight: f64,
    /// Weight as written in models.yaml.
    pub configured_weight: f64,
    /// `None` only when the route is disabled (e.g. its `${VAR}` is unset and weight is 0).
    pub base_url: Option<BaseUrl>,
    pub provider_model_id: String,
    pub api_key: Option<Secret>,
    pub auth: AuthStyle,
    pub pricing: Pricing,
    pub limits: Limits,
    pub health_path: Option<String>,
    /// `metrics_path:` as written (`none` = no load reading; unset = the kind's default).
    pub metrics_path: Option<String>,
    /// Why this route can never be chosen, when it can't (missing env var, OFFLOAD).
    pub disabled_reason: Option<String>,
    /// Overrides of the router-wide upstream time limits.
    pub timeouts: RouteTimeouts,
    /// Discovery may reach this endpoint even on a loopback/private/link-local address.
    pub allow_private_network: bool,
    /// `Some` when the endpoint's own `/v1/models` list is registered (`discover: true`).
    pub discover: Option<Discovery>,
    /// How a video backend answers and where its job paths are.
    pub video: VideoRouteOptions,
    /// `native_apis:` as written: the newer APIs this endpoint serves itself, replacing its
    /// kind's list; `None` = the kind's list ([`BackendKind::native_apis`]).
    pub native_apis: Option<Vec<NativeApi>>,
    /// The route's tier: higher first; a lower tier only takes what no higher route admits.
    pub priority: i32,
    /// Trust, client certificate and proxy of the route's calls (probes and discovery too).
    pub outbound: Outbound,
}

impl RouteDef {
    pub fn is_enabled(&self) -> bool {
        self.disabled_reason.is_none() && self.base_url.is_some()
    }

    /// Whether this route can answer `op`, natively or translated.
    pub fn serves(&self, op: ApiOp) -> bool {
        self.kind.serves(op) || self.serves_natively(op)
    }

    /// Whether this route answers `op` at its own endpoint: its `native_apis:` list when it
    /// has one, else its kind's profile.
    pub fn serves_natively(&self, op: ApiOp) -> bool {
        match (&self.native_apis, NativeApi::of(op)) {
            (Some(list), Some(api)) => list.contains(&api),
            _ => self.kind.serves_natively(op),
        }
    }

    /// The route's API key in its auth style, for [`crate::engines::attach_credentials`].
    pub fn credentials(&self) -> Option<(AuthStyle, &str)> {
        self.api_key.as_ref().map(|key| (self.auth, key.expose()))
    }
}

/// A public model: its metadata for `/v1/models` and the routes that serve it.
#[derive(Debug, Clone)]
pub struct ModelDef {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub provider: Option<String>,
    pub model_type: ModelType,
    pub quantization: Option<String>,
    pub input_modalities: Vec<String>,
    pub output_modalities: Vec<String>,
    pub context_length: Option<u64>,
    pub max_output_length: Option<u64>,
    pub supports_tools: bool,
    pub supports_structured_output: bool,
    /// `None` = every parameter is passed through.
    pub supported_params: Option<Vec<String>>,
    pub aliases: Vec<String>,
    pub pricing: Pricing,
    pub supported_voices: Option<Vec<String>>,
    pub routes: Vec<RouteDef>,
    /// Built from the environment only to discover with (the single backend with no
    /// `MODEL_NAME`, the implicit vLLM provider): its routes' endpoints are probed and
    /// queried, but it is neither listed nor routed; the models it discovers are.
    pub discovery_template: bool,
    /// `Some` for provider models (seed 004), whose tools and reasoning are refused unless
    /// declared (vision follows `input_modalities`, as for every model); `None` = not checked.
    pub declared: Option<Declared>,
    /// Whether `/v1/embeddings` is also served besides the type's own operations: the single
    /// backend's models (seed 003), whose `MODEL_NAME` says nothing of what the model is, so
    /// the engine, not the router, decides (vLLM, Ollama, llama.cpp with an embedding head,
    /// SGLang embed; TGI has no embeddings endpoint and gets a 501).
    pub also_embeds: bool,
    /// The policy models.yaml (or a run-time change) names; `None` follows routing.yaml's
    /// `default_policy`.
    pub policy: Option<RoutingPolicy>,
}

impl ModelDef {
    /// Whether a request to `op` may use this model: what its type accepts, and embeddings
    /// when it [`also_embeds`](Self::also_embeds).
    pub fn accepts(&self, op: ApiOp) -> bool {
        self.model_type.accepts(op) || (self.also_embeds && op == ApiOp::Embeddings)
    }

    /// The policy in force: the model's own, else the registry's default.
    pub fn policy_or(&self, default: RoutingPolicy) -> RoutingPolicy {
        self.policy.unwrap_or(default)
    }
}

/// Settings that come from routing.yaml rather than from a model.
#[derive(Debug, Clone, Default)]
pub struct MeshSettings {
    /// Interval between active health probes (routing.yaml `health_check`, env override).
    pub health_interval: Option<Duration>,
    /// `default_policy` and the policies' tunables (routing.yaml `policies:`).
    pub policy: PolicySettings,
}

/// A validated registry, ready for the Router.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub models: Vec<ModelDef>,
    pub mesh: MeshSettings,
    pub warnings: Vec<String>,
    /// `BACKEND_API_KEY`, kept even when every route names its own key: it is still a secret
    /// the router holds, so it is redacted from backend answers too.
    pub backend_api_key: Option<Secret>,
}

impl Registry {
    /// Every backend credential the router may send: each route's key and `BACKEND_API_KEY`.
    pub fn backend_secrets(&self) -> impl Iterator<Item = &str> {
        self.models
            .iter()
            .flat_map(|m| m.routes.iter())
            .filter_map(|r| r.api_key.as_ref())
            .chain(self.backend_api_key.as_ref())
            .map(Secret::expose)
    }

    pub fn find(&self, name: &str) -> Option<&ModelDef> {
        self.models
            .iter()
            .find(|m| m.id == name || m.aliases.iter().any(|a| a == name))
    }
}

/// Every problem found while loading, so an operator fixes them in one pass.
#[derive(Debug, Default)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

impl ConfigErrors {
    /// One error, no warnings.
    pub fn one(error: ConfigError) -> ConfigErrors {
        ConfigErrors {
            errors: vec![error],
            warnings: vec![],
        }
    }

    /// Each error as the line the operator reads.
    pub fn messages(&self) -> Vec<String> {
        self.errors.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.errors.len())?;
        for e in &self.errors {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_and_the_endpoints_each_type_may_use() {
        let names = [
            ("rerank", Some(ModelType::Rerank)),
            ("Reranker", Some(ModelType::Rerank)),
            ("completion", Some(ModelType::Chat)),
            ("text_to_speech", Some(ModelType::Speech)),
            ("cross-encoder", None),
        ];
        for (name, parsed) in names {
            assert_eq!(ModelType::parse(name), parsed, "{name}");
        }
        // Text completions are for the models chat is for; rerank only for rerank models.
        let accepts = [
            (ModelType::Chat, ApiOp::Completions, true),
            (ModelType::Multimodal, ApiOp::Completions, true),
            (ModelType::Embedding, ApiOp::Completions, false),
            (ModelType::Rerank, ApiOp::Rerank, true),
            (ModelType::Rerank, ApiOp::ChatCompletions, false),
            (ModelType::Embedding, ApiOp::Rerank, false),
        ];
        for (model_type, op, expected) in accepts {
            assert_eq!(model_type.accepts(op), expected, "{model_type} on {op:?}");
        }
        assert_eq!(ModelType::Rerank.home_op(), ApiOp::Rerank);
        let output = ["rerank".to_string()];
        assert_eq!(ModelType::infer(&[], &output), ModelType::Rerank);
    }
}
