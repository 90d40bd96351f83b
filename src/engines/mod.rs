//! Backend kinds (the `kind:` of a route) and what each can do: the API endpoints it serves, the
//! path that tells whether it is healthy, and how it expects credentials.

mod url;

pub use self::url::{normalize_base_url, BaseUrl};

use serde::Serialize;

/// The public API operations a route can be asked to perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiOp {
    ChatCompletions,
    Embeddings,
    Speech,
    Transcriptions,
    Translations,
    Images,
    Video,
}

impl ApiOp {
    /// Path under the backend's `/v1` API base.
    pub fn upstream_path(self) -> &'static str {
        match self {
            ApiOp::ChatCompletions => "/chat/completions",
            ApiOp::Embeddings => "/embeddings",
            ApiOp::Speech => "/audio/speech",
            ApiOp::Transcriptions => "/audio/transcriptions",
            ApiOp::Translations => "/audio/translations",
            ApiOp::Images => "/images/generations",
            ApiOp::Video => "/video/generations",
        }
    }

    /// The router's own route for this operation, as clients call it.
    pub fn public_route(self) -> &'static str {
        match self {
            ApiOp::ChatCompletions => "POST /v1/chat/completions",
            ApiOp::Embeddings => "POST /v1/embeddings",
            ApiOp::Speech => "POST /v1/audio/speech",
            ApiOp::Transcriptions => "POST /v1/audio/transcriptions",
            ApiOp::Translations => "POST /v1/audio/translations",
            ApiOp::Images => "POST /v1/images/generations",
            ApiOp::Video => "POST /v1/video/generations",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiOp::ChatCompletions => "chat_completions",
            ApiOp::Embeddings => "embeddings",
            ApiOp::Speech => "speech",
            ApiOp::Transcriptions => "transcriptions",
            ApiOp::Translations => "translations",
            ApiOp::Images => "images",
            ApiOp::Video => "video",
        }
    }
}

/// How a backend expects its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI and nearly everything compatible with it).
    Bearer,
    /// `api-key: <key>` (Azure OpenAI style).
    ApiKeyHeader,
}

impl AuthStyle {
    /// The header that carries `key` to a backend expecting this style.
    pub fn header(self, key: &str) -> (&'static str, String) {
        match self {
            AuthStyle::Bearer => ("authorization", format!("Bearer {key}")),
            AuthStyle::ApiKeyHeader => ("api-key", key.to_string()),
        }
    }
}

/// Put a route's API key, when it has one, on a request to its backend. The one place the
/// router's credentials are attached: health probes, relayed calls and model discovery all
/// come through here, so a new auth style cannot be honoured by one and missed by another.
pub fn attach_credentials(
    request: awc::ClientRequest,
    credentials: Option<(AuthStyle, &str)>,
) -> awc::ClientRequest {
    match credentials {
        Some((style, key)) => request.insert_header(style.header(key)),
        None => request,
    }
}

/// The runtimes and self-hosted engines the router knows by name, plus `Remote` for any other
/// OpenAI-compatible provider (`featherless`, `deepseek`, …), whose original name is kept on
/// the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    Vllm,
    Sglang,
    Ollama,
    Llamacpp,
    Tgi,
    Localai,
    Lmstudio,
    Openai,
    OpenaiCompat,
    Transformers,
    Custom,
    Whisper,
    TtsEngine,
    VideoEngine,
    Remote,
}

use ApiOp::*;

const ALL_OPS: &[ApiOp] = &[
    ChatCompletions,
    Embeddings,
    Speech,
    Transcriptions,
    Translations,
    Images,
    Video,
];

impl BackendKind {
    /// Parse a route's `kind:`; unknown names are remote OpenAI-compatible providers.
    pub fn parse(kind: &str) -> BackendKind {
        match kind.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "vllm" => BackendKind::Vllm,
            "sglang" => BackendKind::Sglang,
            "ollama" => BackendKind::Ollama,
            "llamacpp" | "llama.cpp" | "llama-cpp" | "llama-server" => BackendKind::Llamacpp,
            "tgi" => BackendKind::Tgi,
            "localai" => BackendKind::Localai,
            "lmstudio" | "lm-studio" => BackendKind::Lmstudio,
            "openai" => BackendKind::Openai,
            "openai-compat" | "openai-compatible" => BackendKind::OpenaiCompat,
            "transformers" => BackendKind::Transformers,
            "custom" => BackendKind::Custom,
            "whisper" => BackendKind::Whisper,
            "tts-engine" | "tts" => BackendKind::TtsEngine,
            "video-engine" | "video" => BackendKind::VideoEngine,
            _ => BackendKind::Remote,
        }
    }

    /// The operations this kind of server answers. A route whose kind lacks the operation a
    /// request needs is skipped; if no route can serve it the client gets a structured 501.
    pub fn serves(self, op: ApiOp) -> bool {
        self.ops().contains(&op)
    }

    pub fn ops(self) -> &'static [ApiOp] {
        match self {
            // vLLM and transformers servers serve chat, embeddings and images; vLLM also
            // serves ASR models on the audio routes.
            BackendKind::Vllm => &[
                ChatCompletions,
                Embeddings,
                Images,
                Transcriptions,
                Translations,
            ],
            BackendKind::Transformers => &[ChatCompletions, Embeddings, Images],
            BackendKind::Sglang | BackendKind::Llamacpp | BackendKind::Lmstudio => {
                &[ChatCompletions, Embeddings]
            }
            BackendKind::Ollama => &[ChatCompletions, Embeddings, Images],
            // TGI has no /v1/embeddings: such requests get a structured 501.
            BackendKind::Tgi => &[ChatCompletions],
            BackendKind::Localai => &[
                ChatCompletions,
                Embeddings,
                Speech,
                Transcriptions,
                Translations,
                Images,
            ],
            BackendKind::Whisper => &[Transcriptions, Translations],
            BackendKind::TtsEngine => &[Speech],
            BackendKind::VideoEngine => &[Video],
            // A custom server may serve any endpoint; remote providers are assumed to
            // offer the whole OpenAI surface and answer for themselves.
            BackendKind::Custom
            | BackendKind::Openai
            | BackendKind::OpenaiCompat
            | BackendKind::Remote => ALL_OPS,
        }
    }

    /// Path (relative to the server root, not the `/v1` base) probed for health: most
    /// runtimes answer `/health` (llama.cpp with 503 while loading), Ollama has `/api/version`,
    /// LocalAI `/readyz`, LM Studio and remote providers only the model list.
    pub fn health_path(self) -> &'static str {
        match self {
            BackendKind::Ollama => "/api/version",
            BackendKind::Localai => "/readyz",
            BackendKind::Lmstudio
            | BackendKind::Openai
            | BackendKind::OpenaiCompat
            | BackendKind::Remote => "/v1/models",
            _ => "/health",
        }
    }

    /// Path (relative to the server root) where the engine reports its own load in the
    /// Prometheus text format, for the kinds that have one: vLLM, SGLang, llama.cpp (started
    /// with `--metrics`; without it the router falls back to `/slots`) and TGI. Hosted APIs
    /// and the other runtimes report nothing, so nothing is asked of them.
    pub fn metrics_path(self) -> Option<&'static str> {
        match self {
            BackendKind::Vllm | BackendKind::Sglang | BackendKind::Llamacpp | BackendKind::Tgi => {
                Some("/metrics")
            }
            _ => None,
        }
    }

    pub fn auth_style(self) -> AuthStyle {
        AuthStyle::Bearer
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Vllm => "vllm",
            BackendKind::Sglang => "sglang",
            BackendKind::Ollama => "ollama",
            BackendKind::Llamacpp => "llamacpp",
            BackendKind::Tgi => "tgi",
            BackendKind::Localai => "localai",
            BackendKind::Lmstudio => "lmstudio",
            BackendKind::Openai => "openai",
            BackendKind::OpenaiCompat => "openai_compat",
            BackendKind::Transformers => "transformers",
            BackendKind::Custom => "custom",
            BackendKind::Whisper => "whisper",
            BackendKind::TtsEngine => "tts-engine",
            BackendKind::VideoEngine => "video-engine",
            BackendKind::Remote => "remote",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_unknown_is_remote() {
        assert_eq!(
            BackendKind::parse("openai_compat"),
            BackendKind::OpenaiCompat
        );
        assert_eq!(BackendKind::parse("tts-engine"), BackendKind::TtsEngine);
        assert_eq!(BackendKind::parse("featherless"), BackendKind::Remote);
        assert_eq!(BackendKind::parse("LlamaCpp"), BackendKind::Llamacpp);
    }

    #[actix_rt::test]
    async fn credentials_are_attached_in_the_route_s_style() {
        let client = awc::Client::default();
        let cases = [
            (
                Some((AuthStyle::Bearer, "sk-1")),
                Some(("authorization", "Bearer sk-1")),
            ),
            (
                Some((AuthStyle::ApiKeyHeader, "az-2")),
                Some(("api-key", "az-2")),
            ),
            (None, None),
        ];
        for (credentials, expected) in cases {
            let request = attach_credentials(client.get("http://127.0.0.1:1/v1"), credentials);
            let headers = request.headers();
            let sent: Vec<(&str, &str)> = ["authorization", "api-key"]
                .into_iter()
                .filter_map(|name| Some((name, headers.get(name)?.to_str().ok()?)))
                .collect();
            assert_eq!(
                sent,
                expected.into_iter().collect::<Vec<_>>(),
                "{credentials:?}"
            );
        }
    }

    #[test]
    fn tgi_has_no_embeddings() {
        assert!(!BackendKind::Tgi.serves(ApiOp::Embeddings));
        assert!(BackendKind::Tgi.serves(ApiOp::ChatCompletions));
        assert!(BackendKind::Remote.serves(ApiOp::Embeddings));
    }
}
