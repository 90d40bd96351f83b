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
    /// The legacy text completions API (`prompt` in, `choices[].text` out).
    Completions,
    Embeddings,
    Speech,
    Transcriptions,
    Translations,
    Images,
    Video,
    /// Anthropic's Messages API: served natively by some kinds, translated to chat by the rest.
    Messages,
    /// Anthropic's `count_tokens`: counted by kinds that serve Messages natively, estimated by
    /// the router for the rest.
    MessagesCountTokens,
    /// Scoring documents against a query (the Jina/Cohere rerank shape).
    Rerank,
    /// OpenAI's Responses API: served natively by some kinds, translated to chat for the rest.
    Responses,
}

impl ApiOp {
    /// Path under the backend's `/v1` API base.
    pub fn upstream_path(self) -> &'static str {
        match self {
            ApiOp::ChatCompletions => "/chat/completions",
            ApiOp::Completions => "/completions",
            ApiOp::Embeddings => "/embeddings",
            ApiOp::Speech => "/audio/speech",
            ApiOp::Transcriptions => "/audio/transcriptions",
            ApiOp::Translations => "/audio/translations",
            ApiOp::Images => "/images/generations",
            ApiOp::Video => "/video/generations",
            ApiOp::Messages => "/messages",
            ApiOp::MessagesCountTokens => "/messages/count_tokens",
            ApiOp::Rerank => "/rerank",
            ApiOp::Responses => "/responses",
        }
    }

    /// The router's own route for this operation, as clients call it.
    pub fn public_route(self) -> &'static str {
        match self {
            ApiOp::ChatCompletions => "POST /v1/chat/completions",
            ApiOp::Completions => "POST /v1/completions",
            ApiOp::Embeddings => "POST /v1/embeddings",
            ApiOp::Speech => "POST /v1/audio/speech",
            ApiOp::Transcriptions => "POST /v1/audio/transcriptions",
            ApiOp::Translations => "POST /v1/audio/translations",
            ApiOp::Images => "POST /v1/images/generations",
            ApiOp::Video => "POST /v1/video/generations",
            ApiOp::Messages => "POST /v1/messages",
            ApiOp::MessagesCountTokens => "POST /v1/messages/count_tokens",
            ApiOp::Rerank => "POST /v1/rerank",
            ApiOp::Responses => "POST /v1/responses",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiOp::ChatCompletions => "chat_completions",
            ApiOp::Completions => "completions",
            ApiOp::Embeddings => "embeddings",
            ApiOp::Speech => "speech",
            ApiOp::Transcriptions => "transcriptions",
            ApiOp::Translations => "translations",
            ApiOp::Images => "images",
            ApiOp::Video => "video",
            ApiOp::Messages => "messages",
            ApiOp::MessagesCountTokens => "messages_count_tokens",
            ApiOp::Rerank => "rerank",
            ApiOp::Responses => "responses",
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
    /// Hugging Face text-embeddings-inference.
    Tei,
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
    Completions,
    Embeddings,
    Speech,
    Transcriptions,
    Translations,
    Images,
    Video,
    Rerank,
];

/// The newer APIs a backend may serve itself (the rest of the time the router translates them
/// to chat completions or, for `completions` and `rerank`, relays them only to kinds that
/// serve them). A route's `native_apis:` list names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NativeApi {
    Messages,
    Responses,
    Completions,
    Rerank,
}

impl NativeApi {
    pub const ALL: &'static [NativeApi] = &[
        NativeApi::Messages,
        NativeApi::Responses,
        NativeApi::Completions,
        NativeApi::Rerank,
    ];

    /// The name used in `native_apis:`.
    pub fn as_str(self) -> &'static str {
        match self {
            NativeApi::Messages => "messages",
            NativeApi::Responses => "responses",
            NativeApi::Completions => "completions",
            NativeApi::Rerank => "rerank",
        }
    }

    /// A `native_apis:` entry (any case, surrounding blanks ignored).
    pub fn parse(name: &str) -> Option<NativeApi> {
        let name = name.trim();
        NativeApi::ALL
            .iter()
            .copied()
            .find(|api| api.as_str().eq_ignore_ascii_case(name))
    }

    /// The native API an operation is, if it is one of them.
    pub fn of(op: ApiOp) -> Option<NativeApi> {
        match op {
            ApiOp::Messages | ApiOp::MessagesCountTokens => Some(NativeApi::Messages),
            ApiOp::Responses => Some(NativeApi::Responses),
            ApiOp::Completions => Some(NativeApi::Completions),
            ApiOp::Rerank => Some(NativeApi::Rerank),
            _ => None,
        }
    }
}

impl BackendKind {
    /// Parse a route's `kind:`; unknown names are remote OpenAI-compatible providers.
    pub fn parse(kind: &str) -> BackendKind {
        match kind.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "vllm" => BackendKind::Vllm,
            "sglang" => BackendKind::Sglang,
            "ollama" => BackendKind::Ollama,
            "llamacpp" | "llama.cpp" | "llama-cpp" | "llama-server" => BackendKind::Llamacpp,
            "tgi" => BackendKind::Tgi,
            "tei" | "text-embeddings-inference" => BackendKind::Tei,
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
    /// Messages and Responses are served by every chat server: natively or translated to chat.
    pub fn serves(self, op: ApiOp) -> bool {
        match op {
            // Translated to chat wherever it is not native.
            Messages | MessagesCountTokens | Responses => {
                self.serves(ChatCompletions) || self.serves_natively(op)
            }
            _ => self.ops().contains(&op),
        }
    }

    /// Whether this kind answers `op` at its own endpoint (so the router relays the client's
    /// body with only the model id rewritten instead of translating it to chat). Operations
    /// that are not one of the newer APIs ([`NativeApi`]) are native wherever served.
    pub fn serves_natively(self, op: ApiOp) -> bool {
        match NativeApi::of(op) {
            Some(api) => self.native_apis().contains(&api),
            None => self.serves(op),
        }
    }

    /// The newer APIs this kind serves itself, from the engines' own documentation:
    /// llama.cpp's server has `/v1/messages` (with `count_tokens`), `/v1/completions` and
    /// `/v1/rerank` (with `--reranking`). Its `/v1/responses` is left out on purpose: it stores
    /// nothing (`previous_response_id` is refused) and its stream events lack `output_index`,
    /// which the openai SDK needs (both seen against llama-server in `load/engines/e2e.sh`), so
    /// the router's translation serves Responses clients better. vLLM has all four
    /// (`/v1/messages` since 0.11); OpenAI has Responses and Completions; SGLang, Ollama, TGI,
    /// LocalAI and LM Studio have legacy completions, LocalAI reranking too. Unknown remote
    /// providers are assumed to speak OpenAI only. A route's `native_apis:` overrides this.
    pub fn native_apis(self) -> &'static [NativeApi] {
        use NativeApi as N;
        match self {
            BackendKind::Vllm => &[N::Messages, N::Responses, N::Completions, N::Rerank],
            BackendKind::Llamacpp => &[N::Messages, N::Completions, N::Rerank],
            BackendKind::Openai => &[N::Responses, N::Completions, N::Rerank],
            BackendKind::Localai
            | BackendKind::Sglang
            | BackendKind::OpenaiCompat
            | BackendKind::Remote
            // The platform's custom-provider engines accept every endpoint, as `custom` does.
            | BackendKind::Custom
            | BackendKind::Whisper
            | BackendKind::TtsEngine
            | BackendKind::VideoEngine => &[N::Completions, N::Rerank],
            BackendKind::Ollama | BackendKind::Tgi | BackendKind::Lmstudio => &[N::Completions],
            BackendKind::Tei => &[N::Rerank],
            BackendKind::Transformers => &[],
        }
    }

    pub fn ops(self) -> &'static [ApiOp] {
        match self {
            // vLLM serves chat, text completions, embeddings, rerank (cross-encoders, at
            // /v1/rerank) and images; it also serves ASR models on the audio routes.
            BackendKind::Vllm => &[
                ChatCompletions,
                Completions,
                Embeddings,
                Rerank,
                Images,
                Transcriptions,
                Translations,
            ],
            BackendKind::Transformers => &[ChatCompletions, Embeddings, Images],
            // llama-server answers /v1/rerank when started with `--reranking`; SGLang serves
            // /v1/rerank for cross-encoder models.
            BackendKind::Sglang | BackendKind::Llamacpp => {
                &[ChatCompletions, Completions, Embeddings, Rerank]
            }
            BackendKind::Lmstudio => &[ChatCompletions, Completions, Embeddings],
            BackendKind::Ollama => &[ChatCompletions, Completions, Embeddings, Images],
            // TGI has no /v1/embeddings: such requests get a structured 501.
            BackendKind::Tgi => &[ChatCompletions, Completions],
            // TEI serves embeddings (OpenAI shape) and rerank in its own shape at `/rerank`,
            // which the rerank handler translates.
            BackendKind::Tei => &[Embeddings, Rerank],
            BackendKind::Localai => &[
                ChatCompletions,
                Completions,
                Embeddings,
                Rerank,
                Speech,
                Transcriptions,
                Translations,
                Images,
            ],
            // The self-hosted platform routes these four engines through one CustomProvider,
            // which offers every endpoint (seed 002's capability table): the model's type
            // decides what a request may ask, the engine answers for itself. Remote providers
            // are likewise assumed to offer the whole OpenAI surface.
            BackendKind::Custom
            | BackendKind::Whisper
            | BackendKind::TtsEngine
            | BackendKind::VideoEngine
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
            BackendKind::Tei => "tei",
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
    fn messages_are_native_on_llamacpp_and_vllm_and_translated_on_chat_kinds() {
        for kind in [BackendKind::Llamacpp, BackendKind::Vllm] {
            assert!(kind.serves(ApiOp::Messages) && kind.serves_natively(ApiOp::Messages));
        }
        for kind in [BackendKind::Tgi, BackendKind::Ollama, BackendKind::Remote] {
            assert!(kind.serves(ApiOp::Messages), "{kind:?} translates");
            assert!(!kind.serves_natively(ApiOp::Messages), "{kind:?}");
        }
        assert!(
            !BackendKind::Tei.serves(ApiOp::Messages),
            "TEI has no chat to translate to"
        );
        assert!(BackendKind::Tgi.serves_natively(ApiOp::ChatCompletions));
        for api in NativeApi::ALL {
            assert_eq!(
                NativeApi::parse(&format!(" {} ", api.as_str().to_uppercase())),
                Some(*api)
            );
        }
        assert_eq!(NativeApi::parse("chat"), None);
    }

    #[test]
    fn completions_and_rerank_go_to_the_kinds_that_serve_them_natively() {
        use BackendKind::*;
        let completions = [
            Vllm, Sglang, Ollama, Llamacpp, Tgi, Localai, Lmstudio, Openai, Remote, Custom,
        ];
        let rerank = [Vllm, Sglang, Llamacpp, Tei, Localai, Openai, Remote, Custom];
        for kind in [
            Vllm,
            Sglang,
            Ollama,
            Llamacpp,
            Tgi,
            Tei,
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
        ] {
            let all = matches!(kind, OpenaiCompat | Whisper | TtsEngine | VideoEngine);
            assert_eq!(
                kind.serves(ApiOp::Completions),
                all || completions.contains(&kind),
                "{kind:?} completions"
            );
            assert_eq!(
                kind.serves(ApiOp::Rerank),
                all || rerank.contains(&kind),
                "{kind:?} rerank"
            );
        }
        // The native-API table and the operations table tell the same story for the two APIs
        // that are never translated.
        for kind in [
            Vllm, Sglang, Ollama, Llamacpp, Tgi, Tei, Localai, Lmstudio, Openai,
        ] {
            for (op, api) in [
                (ApiOp::Completions, NativeApi::Completions),
                (ApiOp::Rerank, NativeApi::Rerank),
            ] {
                assert_eq!(
                    kind.serves(op),
                    kind.native_apis().contains(&api),
                    "{kind:?} {op:?}"
                );
            }
        }
        assert_eq!(BackendKind::parse("text-embeddings-inference"), Tei);
        assert_eq!(Tei.health_path(), "/health");
    }

    #[test]
    fn the_custom_provider_engines_serve_every_endpoint() {
        for kind in ["custom", "whisper", "tts-engine", "video-engine"] {
            let kind = BackendKind::parse(kind);
            for op in ALL_OPS {
                assert!(kind.serves(*op), "{kind:?} refuses {op:?}");
            }
        }
    }

    #[test]
    fn tgi_has_no_embeddings() {
        assert!(!BackendKind::Tgi.serves(ApiOp::Embeddings));
        assert!(BackendKind::Tgi.serves(ApiOp::ChatCompletions));
        assert!(BackendKind::Remote.serves(ApiOp::Embeddings));
    }

    #[test]
    fn every_chat_kind_serves_responses_and_only_some_natively() {
        for kind in [
            BackendKind::Vllm,
            BackendKind::Llamacpp,
            BackendKind::Tgi,
            BackendKind::Ollama,
            BackendKind::Remote,
        ] {
            assert!(kind.serves(ApiOp::Responses), "{kind:?}");
        }
        assert!(
            !BackendKind::Tei.serves(ApiOp::Responses),
            "TEI has no chat to translate to"
        );
        let native: Vec<BackendKind> = [
            BackendKind::Vllm,
            BackendKind::Llamacpp,
            BackendKind::Openai,
            BackendKind::Tgi,
            BackendKind::Ollama,
            BackendKind::OpenaiCompat,
        ]
        .into_iter()
        .filter(|k| k.serves_natively(ApiOp::Responses))
        .collect();
        assert_eq!(native, [BackendKind::Vllm, BackendKind::Openai]);
        assert_eq!(NativeApi::of(ApiOp::Responses), Some(NativeApi::Responses));
    }
}
