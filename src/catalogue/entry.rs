//! Catalogue entry types and their validation.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::quantity;

/// What kind of model an entry is: the published self-hosted catalogue's categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Llm,
    Multimodal,
    Embedding,
    Audio,
    Video,
    Image,
    Nlp,
}

/// How the router talks to the model server: vllm/transformers speak OpenAI's chat API, the
/// others (custom, whisper, tts-engine, video-engine) one endpoint each, configured per model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    Vllm,
    Transformers,
    Whisper,
    TtsEngine,
    VideoEngine,
    Custom,
}

/// The API a model serves; decides the router `type:` and the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    Chat,
    Multimodal,
    Embedding,
    TextToSpeech,
    SpeechToText,
    ImageGeneration,
    VideoGeneration,
}

macro_rules! names {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$(<$ty>::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                <$ty>::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let known: Vec<&str> = <$ty>::ALL.iter().map(|v| v.as_str()).collect();
                        format!("unknown {} `{s}` (expected one of: {})", stringify!($ty).to_lowercase(), known.join(", "))
                    })
            }
        }
    };
}

names!(Category { Llm => "llm", Multimodal => "multimodal", Embedding => "embedding", Audio => "audio", Video => "video", Image => "image", Nlp => "nlp" });
names!(Engine { Vllm => "vllm", Transformers => "transformers", Whisper => "whisper", TtsEngine => "tts-engine", VideoEngine => "video-engine", Custom => "custom" });
names!(ModelType { Chat => "chat", Multimodal => "multimodal", Embedding => "embedding", TextToSpeech => "text_to_speech", SpeechToText => "speech_to_text", ImageGeneration => "image_generation", VideoGeneration => "video_generation" });

impl ModelType {
    /// The router's `type:` for this model type (see the models.yaml schema).
    pub fn router_type(self) -> &'static str {
        match self {
            ModelType::Chat => "chat",
            ModelType::Multimodal => "multimodal",
            ModelType::Embedding => "embedding",
            ModelType::TextToSpeech => "speech",
            ModelType::SpeechToText => "transcription",
            ModelType::ImageGeneration => "image",
            ModelType::VideoGeneration => "video",
        }
    }

    /// The OpenAI-style endpoint the model server exposes.
    pub fn endpoint(self) -> &'static str {
        match self {
            ModelType::Chat | ModelType::Multimodal => "/v1/chat/completions",
            ModelType::Embedding => "/v1/embeddings",
            ModelType::TextToSpeech => "/v1/audio/speech",
            ModelType::SpeechToText => "/v1/audio/transcriptions",
            ModelType::ImageGeneration => "/v1/images/generations",
            ModelType::VideoGeneration => "/v1/video/generations",
        }
    }
}

/// Kubernetes-style resource requests for one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU in millicores, e.g. `3000m`.
    pub cpu: String,
    /// Memory as a Kubernetes quantity, e.g. `12Gi`.
    pub memory: String,
    /// Whole GPUs (`nvidia.com/gpu`).
    pub gpu: u32,
    /// Disk for the weight cache, e.g. `50Gi`.
    pub disk: String,
}

/// Per-entry arguments the engine templates render.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EngineArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor_parallel_size: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub trust_remote_code: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_parser: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_reasoning: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_parser: Option<String>,
    /// Modality -> maximum items per request, e.g. `image: 4`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limit_mm_per_prompt: BTreeMap<String, u32>,
    /// vLLM `--runner` (`pooling` for embedding models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// Further engine flags, passed through verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Environment for the Python engine servers (backend selection, dtype, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Extra pinned pip requirements for the Python engine servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pip_packages: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One deployable model: the published catalogue's fields plus what rendering needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub name: String,
    pub description: String,
    pub category: Category,
    /// Always `self_hosted`; the engine decides how it is reached.
    pub provider: String,
    /// Who published the weights.
    pub vendor: String,
    pub model_type: ModelType,
    pub engine: Engine,
    pub hugging_face_id: String,
    pub served_model_name: String,
    pub default_port: u16,
    pub default_resources: Resources,
    pub recommended_instance: String,
    pub tags: Vec<String>,
    /// Approximate size of the weights to download, e.g. `16GB`.
    pub model_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u32>,
    pub quantization: String,
    #[serde(default, skip_serializing_if = "is_default_args")]
    pub engine_args: EngineArgs,
    pub documentation: String,
}

fn is_default_args(a: &EngineArgs) -> bool {
    *a == EngineArgs::default()
}

impl Entry {
    /// The context the server is started with: `maxModelLen` when set, else the model's own.
    pub fn served_context_length(&self) -> Option<u32> {
        self.engine_args.max_model_len.or(self.context_length)
    }
}

/// An instance type the catalogue recommends: what one node offers.
pub struct Instance {
    pub name: &'static str,
    pub vcpus: u32,
    pub memory_gib: u32,
    pub gpus: u32,
    pub gpu_memory_gib: u32,
}

/// AWS instance types used by the catalogue (public spec sheets).
pub const INSTANCES: &[Instance] = &[
    Instance {
        name: "t3.large",
        vcpus: 2,
        memory_gib: 8,
        gpus: 0,
        gpu_memory_gib: 0,
    },
    Instance {
        name: "c5.xlarge",
        vcpus: 4,
        memory_gib: 8,
        gpus: 0,
        gpu_memory_gib: 0,
    },
    Instance {
        name: "c5.2xlarge",
        vcpus: 8,
        memory_gib: 16,
        gpus: 0,
        gpu_memory_gib: 0,
    },
    Instance {
        name: "g4dn.xlarge",
        vcpus: 4,
        memory_gib: 16,
        gpus: 1,
        gpu_memory_gib: 16,
    },
    Instance {
        name: "g5.xlarge",
        vcpus: 4,
        memory_gib: 16,
        gpus: 1,
        gpu_memory_gib: 24,
    },
    Instance {
        name: "g5.2xlarge",
        vcpus: 8,
        memory_gib: 32,
        gpus: 1,
        gpu_memory_gib: 24,
    },
    Instance {
        name: "g5.12xlarge",
        vcpus: 48,
        memory_gib: 192,
        gpus: 4,
        gpu_memory_gib: 24,
    },
    Instance {
        name: "g5.48xlarge",
        vcpus: 192,
        memory_gib: 768,
        gpus: 8,
        gpu_memory_gib: 24,
    },
    Instance {
        name: "g6e.2xlarge",
        vcpus: 8,
        memory_gib: 64,
        gpus: 1,
        gpu_memory_gib: 48,
    },
    Instance {
        name: "p4d.24xlarge",
        vcpus: 96,
        memory_gib: 1152,
        gpus: 8,
        gpu_memory_gib: 40,
    },
    Instance {
        name: "p4de.24xlarge",
        vcpus: 96,
        memory_gib: 1152,
        gpus: 8,
        gpu_memory_gib: 80,
    },
    Instance {
        name: "p5.48xlarge",
        vcpus: 192,
        memory_gib: 2048,
        gpus: 8,
        gpu_memory_gib: 80,
    },
];

/// vLLM tool-call parsers the catalogue uses (a typo would stop the server at start).
const TOOL_CALL_PARSERS: &[&str] = &[
    "hermes",
    "llama3_json",
    "mistral",
    "granite",
    "internlm",
    "pythonic",
    "phi4_mini_json",
];
const REASONING_PARSERS: &[&str] = &["deepseek_r1", "qwen3", "granite"];
/// Share of GPU memory the weights may take; the rest is KV cache and activations.
const WEIGHTS_GPU_SHARE: f64 = 0.9;
/// Share of a node's memory one replica may request (the kubelet and system reserve the rest).
const NODE_MEMORY_SHARE: f64 = 0.9;

fn category_allows(category: Category, model_type: ModelType) -> bool {
    use ModelType::*;
    match category {
        Category::Llm => model_type == Chat,
        Category::Multimodal => model_type == Multimodal,
        Category::Embedding => model_type == Embedding,
        Category::Audio => matches!(model_type, TextToSpeech | SpeechToText),
        Category::Video => model_type == VideoGeneration,
        Category::Image => model_type == ImageGeneration,
        // Specialised NLP models answer through the chat endpoint.
        Category::Nlp => model_type == Chat,
    }
}

fn engine_allows(engine: Engine, model_type: ModelType) -> bool {
    use ModelType::*;
    match engine {
        Engine::Vllm | Engine::Transformers => {
            matches!(model_type, Chat | Multimodal | Embedding | SpeechToText)
        }
        Engine::Whisper => model_type == SpeechToText,
        Engine::TtsEngine => model_type == TextToSpeech,
        Engine::VideoEngine => model_type == VideoGeneration,
        Engine::Custom => true,
    }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// A Kubernetes-safe name: DNS-1035 label (Service names may not contain dots).
pub fn k8s_name(id: &str) -> String {
    let name = id.replace('.', "-");
    if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name
    } else {
        format!("model-{name}")
    }
}

/// Every problem in the catalogue, each naming the entry; empty when all is well.
pub fn validate(entries: &[Entry]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    let mut served = HashSet::new();
    let mut k8s_names = HashSet::new();
    if entries.is_empty() {
        problems.push("the catalogue has no entries".to_string());
    }
    for e in entries {
        if !ids.insert(e.id.as_str()) {
            problems.push(format!("{}: duplicate id", e.id));
        }
        if !served.insert(e.served_model_name.as_str()) {
            problems.push(format!(
                "{}: duplicate servedModelName `{}`",
                e.id, e.served_model_name
            ));
        }
        // Kubernetes object names drop the dots, so two ids may collide there.
        let k8s_name = k8s_name(&e.id);
        if k8s_name.len() > 63 || !k8s_names.insert(k8s_name.clone()) {
            problems.push(format!(
                "{}: Kubernetes name `{k8s_name}` is too long or taken by another entry",
                e.id
            ));
        }
        problems.extend(
            validate_entry(e)
                .into_iter()
                .map(|p| format!("{}: {p}", e.id)),
        );
    }
    problems
}

fn validate_entry(e: &Entry) -> Vec<String> {
    let mut p = Vec::new();
    if !is_slug(&e.id) {
        p.push("id must be lowercase letters, digits, `-` and `.`".into());
    }
    if !is_slug(&e.served_model_name) {
        p.push("servedModelName must be lowercase letters, digits, `-` and `.`".into());
    }
    for (field, value) in [
        ("name", &e.name),
        ("description", &e.description),
        ("vendor", &e.vendor),
    ] {
        if value.trim().is_empty() {
            p.push(format!("{field} is empty"));
        }
    }
    if e.provider != "self_hosted" {
        p.push(format!(
            "provider is `{}`, must be `self_hosted`",
            e.provider
        ));
    }
    let repo_parts: Vec<&str> = e.hugging_face_id.split('/').collect();
    if repo_parts.len() != 2
        || repo_parts
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        p.push(format!(
            "huggingFaceId `{}` is not `owner/name`",
            e.hugging_face_id
        ));
    }
    if !category_allows(e.category, e.model_type) {
        p.push(format!(
            "modelType {} does not belong in category {}",
            e.model_type, e.category
        ));
    }
    if !engine_allows(e.engine, e.model_type) {
        p.push(format!(
            "engine {} cannot serve modelType {}",
            e.engine, e.model_type
        ));
    }
    if e.default_port < 1024 {
        p.push(format!(
            "defaultPort {} is privileged; the servers run as non-root",
            e.default_port
        ));
    }
    if e.tags.is_empty() || e.tags.iter().any(|t| !is_slug(t)) {
        p.push("tags must be non-empty lowercase slugs".into());
    }
    if !e.documentation.starts_with("# ") {
        p.push("documentation must start with a `# ` title".into());
    }
    if matches!(
        e.model_type,
        ModelType::Chat | ModelType::Multimodal | ModelType::Embedding
    ) && e.context_length.is_none()
    {
        p.push("contextLength is required for text models".into());
    }
    if let (Some(max), Some(ctx)) = (e.engine_args.max_model_len, e.context_length) {
        if max > ctx {
            p.push(format!("maxModelLen {max} exceeds contextLength {ctx}"));
        }
    }
    p.extend(validate_resources(e));
    p.extend(validate_engine_args(e));
    p
}

fn validate_resources(e: &Entry) -> Vec<String> {
    let mut p = Vec::new();
    let r = &e.default_resources;
    let cpu = quantity::parse_cpu_millis(&r.cpu);
    let memory = quantity::parse_bytes(&r.memory);
    let disk = quantity::parse_bytes(&r.disk);
    let size = quantity::parse_model_size(&e.model_size);
    for (field, value, res) in [
        ("cpu", &r.cpu, cpu.as_ref().map(|_| ())),
        ("memory", &r.memory, memory.as_ref().map(|_| ())),
        ("disk", &r.disk, disk.as_ref().map(|_| ())),
        ("modelSize", &e.model_size, size.as_ref().map(|_| ())),
    ] {
        if let Err(err) = res {
            p.push(format!("{field} `{value}`: {err}"));
        }
    }
    if !r.cpu.ends_with('m') {
        p.push(format!(
            "cpu `{}` must be given in millicores (e.g. 4000m)",
            r.cpu
        ));
    }
    if ![0, 1, 2, 4, 8].contains(&r.gpu) {
        p.push(format!("gpu {} is not 0, 1, 2, 4 or 8", r.gpu));
    }
    let (Ok(cpu), Ok(memory), Ok(disk), Ok(size)) = (cpu, memory, disk, size) else {
        return p;
    };
    if cpu < 500 {
        p.push(format!("cpu {cpu}m is below 500m"));
    }
    if memory < quantity::GIB {
        p.push(format!("memory {} is below 1Gi", r.memory));
    }
    if disk < size {
        p.push(format!(
            "disk {} is smaller than the weights ({})",
            r.disk, e.model_size
        ));
    }
    let Some(node) = INSTANCES.iter().find(|i| i.name == e.recommended_instance) else {
        p.push(format!(
            "recommendedInstance `{}` is not in the instance table",
            e.recommended_instance
        ));
        return p;
    };
    if cpu > u64::from(node.vcpus) * 1000 {
        p.push(format!(
            "cpu {} does not fit {} ({} vCPUs)",
            r.cpu, node.name, node.vcpus
        ));
    }
    if memory as f64 > f64::from(node.memory_gib) * NODE_MEMORY_SHARE * quantity::GIB as f64 {
        p.push(format!(
            "memory {} does not fit {} ({} GiB)",
            r.memory, node.name, node.memory_gib
        ));
    }
    if r.gpu > node.gpus {
        p.push(format!(
            "gpu {} exceeds {} ({} GPUs)",
            r.gpu, node.name, node.gpus
        ));
    }
    if r.gpu == 0 && node.gpus > 0 {
        p.push(format!(
            "CPU-only entry recommends GPU instance {}",
            node.name
        ));
    }
    // vLLM keeps all weights in GPU memory; the Python engines may offload to the CPU.
    if e.engine == Engine::Vllm {
        let vram =
            f64::from(r.gpu * node.gpu_memory_gib) * quantity::GIB as f64 * WEIGHTS_GPU_SHARE;
        if size as f64 > vram {
            p.push(format!(
                "weights ({}) do not fit {} x {} GiB GPUs",
                e.model_size, r.gpu, node.gpu_memory_gib
            ));
        }
    }
    p
}

fn validate_engine_args(e: &Entry) -> Vec<String> {
    let mut p = Vec::new();
    let a = &e.engine_args;
    let gpu = e.default_resources.gpu;
    if e.engine == Engine::Vllm {
        if gpu == 0 {
            p.push("vllm entries need at least one GPU".into());
        }
        match a.tensor_parallel_size {
            Some(tp) if tp != gpu => {
                p.push(format!("tensorParallelSize {tp} differs from gpu {gpu}"))
            }
            None if gpu > 1 => p.push(format!("{gpu} GPUs but no tensorParallelSize")),
            _ => {}
        }
        if let Some(parser) = &a.tool_call_parser {
            if !TOOL_CALL_PARSERS.contains(&parser.as_str()) {
                p.push(format!("unknown toolCallParser `{parser}`"));
            }
        }
        match (&a.reasoning_parser, a.enable_reasoning) {
            (Some(parser), true) if !REASONING_PARSERS.contains(&parser.as_str()) => {
                p.push(format!("unknown reasoningParser `{parser}`"))
            }
            (None, true) => p.push("enableReasoning needs a reasoningParser".into()),
            (Some(_), false) => p.push("reasoningParser set without enableReasoning".into()),
            _ => {}
        }
        if a.max_model_len.is_none() {
            p.push("vllm entries need maxModelLen (vLLM otherwise sizes the KV cache for the full context)".into());
        }
        if !a.env.is_empty() || !a.pip_packages.is_empty() {
            p.push("env and pipPackages apply to the Python engines, not vllm".into());
        }
    } else {
        let vllm_only = a.max_model_len.is_some()
            || a.tensor_parallel_size.is_some()
            || a.trust_remote_code
            || a.tool_call_parser.is_some()
            || a.enable_reasoning
            || a.reasoning_parser.is_some()
            || !a.limit_mm_per_prompt.is_empty()
            || a.runner.is_some()
            || !a.extra_args.is_empty();
        if vllm_only {
            p.push(format!(
                "vLLM flags set on a {} entry (use env for the Python engines)",
                e.engine
            ));
        }
    }
    for (key, value) in &a.env {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            p.push(format!("env key `{key}` must be UPPER_SNAKE_CASE"));
        }
        if value.contains(['"', '\\', '\n', '$']) {
            p.push(format!(
                "env {key} contains a character that would need Dockerfile escaping"
            ));
        }
    }
    for package in &a.pip_packages {
        let pinned = package.split_once("==").is_some_and(|(name, version)| {
            !name.is_empty() && !version.is_empty() && !package.contains(char::is_whitespace)
        });
        if !pinned {
            p.push(format!(
                "pip package `{package}` must be pinned as name==version"
            ));
        }
    }
    for (modality, limit) in &a.limit_mm_per_prompt {
        if !["image", "video", "audio"].contains(&modality.as_str()) || *limit == 0 {
            p.push(format!(
                "limitMmPerPrompt {modality}={limit} is not a positive image/video/audio limit"
            ));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_unknown() {
        for engine in Engine::ALL {
            assert_eq!(engine.as_str().parse::<Engine>(), Ok(*engine));
        }
        let err = "gpu".parse::<Category>().unwrap_err();
        assert!(
            err.contains("unknown category `gpu`") && err.contains("llm"),
            "{err}"
        );
    }

    #[test]
    fn slug_rules() {
        assert!(is_slug("qwen2.5-7b-instruct"));
        assert!(!is_slug("Qwen2.5"));
        assert!(!is_slug("-x"));
        assert!(!is_slug(""));
    }
}
