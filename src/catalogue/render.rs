//! Rendering an entry into deployable files: Dockerfile (+ server.py), Kubernetes manifest and a
//! router models.yaml snippet. Templates live in catalogue/templates/ and are filled with the
//! entry's arguments; nothing per model is written by hand.

use serde_json::{json, Value};

use super::entry::{k8s_name, Engine, Entry, ModelType};
use super::quantity;

const VLLM_TEMPLATE: &str = include_str!("../../catalogue/templates/vllm.Dockerfile");
const TRANSFORMERS_TEMPLATE: &str =
    include_str!("../../catalogue/templates/transformers.Dockerfile");
const WHISPER_TEMPLATE: &str = include_str!("../../catalogue/templates/whisper.Dockerfile");
const TTS_TEMPLATE: &str = include_str!("../../catalogue/templates/tts-engine.Dockerfile");
const VIDEO_TEMPLATE: &str = include_str!("../../catalogue/templates/video-engine.Dockerfile");
const CUSTOM_TEMPLATE: &str = include_str!("../../catalogue/templates/custom.Dockerfile");

const SERVER_COMMON: &str = include_str!("../../catalogue/templates/servers/common.py");
const SERVER_TRANSFORMERS: &str = include_str!("../../catalogue/templates/servers/transformers.py");
const SERVER_WHISPER: &str = include_str!("../../catalogue/templates/servers/whisper.py");
const SERVER_TTS: &str = include_str!("../../catalogue/templates/servers/tts_engine.py");
const SERVER_VIDEO: &str = include_str!("../../catalogue/templates/servers/video_engine.py");
const SERVER_CUSTOM: &str = include_str!("../../catalogue/templates/servers/custom.py");

/// Base images of the Python engines: CUDA + cuDNN with PyTorch for GPU entries, slim Python otherwise.
const GPU_PYTHON_IMAGE: &str = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime";
const CPU_PYTHON_IMAGE: &str = "python:3.11.11-slim-bookworm";
/// CPU-only PyTorch wheels; the default PyPI wheels bundle CUDA (gigabytes unused on CPU nodes).
const CPU_TORCH_INSTALL: &str = "pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \\\n        torch==2.5.1 torchaudio==2.5.1 torchvision==0.20.1 \\\n    && ";
/// Where the images keep the Hugging Face cache (HF_HOME in the templates).
const VLLM_CACHE: &str = "/home/vllm/.cache/huggingface";
const PYTHON_CACHE: &str = "/home/app/.cache/huggingface";

fn template(engine: Engine) -> &'static str {
    match engine {
        Engine::Vllm => VLLM_TEMPLATE,
        Engine::Transformers => TRANSFORMERS_TEMPLATE,
        Engine::Whisper => WHISPER_TEMPLATE,
        Engine::TtsEngine => TTS_TEMPLATE,
        Engine::VideoEngine => VIDEO_TEMPLATE,
        Engine::Custom => CUSTOM_TEMPLATE,
    }
}

/// The server.py an entry's image needs next to its Dockerfile; vLLM brings its own server.
pub fn render_server(e: &Entry) -> Option<String> {
    let engine_part = match e.engine {
        Engine::Vllm => return None,
        Engine::Transformers => SERVER_TRANSFORMERS,
        Engine::Whisper => SERVER_WHISPER,
        Engine::TtsEngine => SERVER_TTS,
        Engine::VideoEngine => SERVER_VIDEO,
        Engine::Custom => SERVER_CUSTOM,
    };
    Some(format!("{SERVER_COMMON}{engine_part}"))
}

fn fill(template: &str, values: &[(&str, String)]) -> String {
    values
        .iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

fn quoted(s: &str) -> String {
    // A JSON string is also a valid string in a Dockerfile's exec-form array.
    Value::String(s.to_string()).to_string()
}

/// vLLM server flags for the entry, one flag (with its value) per group.
pub fn vllm_args(e: &Entry) -> Vec<Vec<String>> {
    let a = &e.engine_args;
    let mut groups = vec![
        vec!["--model".to_string(), e.hugging_face_id.clone()],
        vec![
            "--host".into(),
            "0.0.0.0".into(),
            "--port".into(),
            e.default_port.to_string(),
        ],
        vec!["--served-model-name".into(), e.served_model_name.clone()],
        vec!["--gpu-memory-utilization".into(), "0.9".into()],
    ];
    if let Some(len) = a.max_model_len {
        groups.push(vec!["--max-model-len".into(), len.to_string()]);
    }
    if let Some(tp) = a.tensor_parallel_size.filter(|tp| *tp > 1) {
        groups.push(vec!["--tensor-parallel-size".into(), tp.to_string()]);
    }
    if a.trust_remote_code {
        groups.push(vec!["--trust-remote-code".into()]);
    }
    if let Some(parser) = &a.tool_call_parser {
        groups.push(vec![
            "--enable-auto-tool-choice".into(),
            "--tool-call-parser".into(),
            parser.clone(),
        ]);
    }
    // vLLM 0.10 removed --enable-reasoning; from then on the parser alone turns reasoning output on.
    if let (true, Some(parser)) = (a.enable_reasoning, &a.reasoning_parser) {
        groups.push(vec!["--reasoning-parser".into(), parser.clone()]);
    }
    if !a.limit_mm_per_prompt.is_empty() {
        // Current vLLM takes JSON here; the older `image=4` form is deprecated.
        let limits = serde_json::to_string(&a.limit_mm_per_prompt).unwrap_or_default();
        groups.push(vec!["--limit-mm-per-prompt".into(), limits]);
    }
    if let Some(runner) = &a.runner {
        groups.push(vec!["--runner".into(), runner.clone()]);
    }
    if !a.extra_args.is_empty() {
        groups.push(a.extra_args.clone());
    }
    groups
}

/// The entry's Dockerfile: its engine's template filled with the entry's arguments.
pub fn render_dockerfile(e: &Entry) -> String {
    let mut values = vec![
        ("id", e.id.clone()),
        ("name", e.name.clone()),
        ("hf_id", e.hugging_face_id.clone()),
        ("served_model_name", e.served_model_name.clone()),
        ("port", e.default_port.to_string()),
    ];
    if e.engine == Engine::Vllm {
        let cmd = vllm_args(e)
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|s| quoted(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect::<Vec<_>>()
            .join(", \\\n     ");
        values.push(("cmd_args", cmd));
    } else {
        let gpu = e.default_resources.gpu > 0;
        let base = if gpu {
            GPU_PYTHON_IMAGE
        } else {
            CPU_PYTHON_IMAGE
        };
        // faster-whisper runs on CTranslate2 and needs no PyTorch; the GPU image already has it.
        let torch = if gpu || e.engine == Engine::Whisper {
            ""
        } else {
            CPU_TORCH_INSTALL
        };
        let mut env = e.engine_args.env.clone();
        if e.engine_args.trust_remote_code {
            env.insert("TRUST_REMOTE_CODE".into(), "1".into());
        }
        let env_lines: String = env
            .iter()
            .map(|(k, v)| format!(" \\\n    {k}={}", quoted(v)))
            .collect();
        let pip_lines: String = e
            .engine_args
            .pip_packages
            .iter()
            .map(|p| format!(" \\\n        {p}"))
            .collect();
        values.extend([
            ("base_image", base.to_string()),
            ("torch_install", torch.to_string()),
            ("env", env_lines),
            ("pip_packages", pip_lines),
        ]);
    }
    fill(template(e.engine), &values)
}

fn labels(e: &Entry) -> Value {
    json!({
        "app.kubernetes.io/name": k8s_name(&e.id),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "switchyard",
        "app.kubernetes.io/managed-by": "switchyard-catalogue",
        "switchyard.dev/model": e.id,
        "switchyard.dev/category": e.category.as_str(),
        "switchyard.dev/engine": e.engine.as_str(),
    })
}

/// Kubernetes Deployment + Service (two YAML documents) for one entry.
pub fn render_manifest(e: &Entry) -> String {
    let name = k8s_name(&e.id);
    let r = &e.default_resources;
    let mut requests = json!({"cpu": r.cpu, "memory": r.memory});
    let mut limits = json!({"cpu": r.cpu, "memory": r.memory});
    if r.gpu > 0 {
        requests["nvidia.com/gpu"] = json!(r.gpu);
        limits["nvidia.com/gpu"] = json!(r.gpu);
    }
    let cache = if e.engine == Engine::Vllm {
        VLLM_CACHE
    } else {
        PYTHON_CACHE
    };
    // The first start downloads the weights: allow 10 minutes plus 10 s per GB before liveness applies.
    let size_gb = quantity::parse_model_size(&e.model_size)
        .map(|b| b / 1_000_000_000)
        .unwrap_or(0);
    let startup_failures = (60 + size_gb).min(360);
    let probe = |period: u32, failures: u64| json!({"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures});
    let mut pod_spec = json!({
        "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": {"node.kubernetes.io/instance-type": e.recommended_instance},
        "containers": [{
            "name": "model",
            "image": format!("switchyard-models/{}:{}", name, env!("CARGO_PKG_VERSION")),
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "http", "containerPort": e.default_port, "protocol": "TCP"}],
            // Gated repositories (Llama, Gemma, ...) need a token; the Secret is optional for the rest.
            "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "huggingface-token", "key": "HF_TOKEN", "optional": true}}}],
            "resources": {"requests": requests, "limits": limits},
            "startupProbe": probe(10, startup_failures),
            "readinessProbe": probe(10, 3),
            "livenessProbe": probe(20, 3),
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "model-cache", "mountPath": cache}, {"name": "dshm", "mountPath": "/dev/shm"}],
        }],
        "volumes": [
            {"name": "model-cache", "emptyDir": {"sizeLimit": r.disk}},
            // PyTorch and NCCL exchange tensors through /dev/shm; the container default is 64 MiB.
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
        ],
    });
    if r.gpu > 0 {
        pod_spec["tolerations"] =
            json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    }
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels(e)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            // Recreate: a rolling update would need a second set of GPUs while both pods run.
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": labels(e)}, "spec": pod_spec},
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(e)},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": e.default_port, "targetPort": "http", "protocol": "TCP"}],
        },
    });
    format!("{}---\n{}", to_yaml(&deployment), to_yaml(&service))
}

fn to_yaml(value: &Value) -> String {
    // Serialising a serde_json::Value cannot fail: every key is a string.
    serde_yaml::to_string(value).unwrap_or_default()
}

fn modalities(e: &Entry) -> (Vec<&'static str>, Vec<&'static str>) {
    match e.model_type {
        ModelType::Chat => (vec!["text"], vec!["text"]),
        ModelType::Multimodal => {
            let mut input = vec!["text", "image"];
            if e.engine_args.limit_mm_per_prompt.contains_key("video") {
                input.push("video");
            }
            (input, vec!["text"])
        }
        ModelType::Embedding => (vec!["text"], vec!["embeddings"]),
        ModelType::TextToSpeech => (vec!["text"], vec!["audio"]),
        ModelType::SpeechToText => (vec!["audio"], vec!["text"]),
        ModelType::ImageGeneration => (vec!["text"], vec!["image"]),
        ModelType::VideoGeneration => (vec!["text"], vec!["video"]),
    }
}

/// Request parameters the entry's server actually honours.
fn supported_params(e: &Entry) -> Vec<&'static str> {
    let vllm = e.engine == Engine::Vllm;
    let mut params = match e.model_type {
        ModelType::Chat | ModelType::Multimodal if vllm => vec![
            "temperature",
            "top_p",
            "top_k",
            "max_tokens",
            "stop",
            "stream",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "logprobs",
            "top_logprobs",
            "response_format",
        ],
        ModelType::Chat if e.engine_args.env.get("TASK").is_some_and(|t| t == "ner") => {
            vec!["stream"]
        }
        ModelType::Chat | ModelType::Multimodal => {
            vec!["temperature", "top_p", "max_tokens", "stream"]
        }
        ModelType::Embedding if vllm => vec!["encoding_format"],
        ModelType::Embedding => vec!["encoding_format", "dimensions"],
        ModelType::SpeechToText => match e.engine {
            Engine::Vllm | Engine::Whisper => {
                vec!["language", "prompt", "response_format", "temperature"]
            }
            Engine::Transformers => vec!["language", "response_format"],
            _ => vec!["response_format"],
        },
        ModelType::TextToSpeech => vec!["voice", "response_format", "speed"],
        ModelType::ImageGeneration => vec!["n", "size", "seed", "response_format"],
        ModelType::VideoGeneration => vec!["duration", "aspect_ratio", "seed"],
    };
    if e.engine_args.tool_call_parser.is_some() {
        params.extend(["tools", "tool_choice"]);
    }
    params
}

/// A router models.yaml document (`models:` with this one entry) routing to `base_url`.
pub fn render_models_yaml(e: &Entry, base_url: &str) -> String {
    let (input, output) = modalities(e);
    let text_out = matches!(e.model_type, ModelType::Chat | ModelType::Multimodal);
    let mut model = json!({
        "id": e.id,
        "name": e.name,
        "provider": "self_hosted",
        "type": e.model_type.router_type(),
        "quantization": e.quantization,
        "input_modalities": input,
        "output_modalities": output,
    });
    if let Some(ctx) = e.served_context_length() {
        model["context_length"] = json!(ctx);
        if text_out {
            model["max_output_length"] = json!((ctx / 2).min(8192));
        }
    }
    let structured = e.engine == Engine::Vllm && text_out;
    model["supports_tools"] = json!(e.engine_args.tool_call_parser.is_some());
    model["supports_structured_output"] = json!(structured);
    model["supported_params"] = json!(supported_params(e));
    model["aliases"] = json!([e.hugging_face_id]);
    model["pricing"] = json!({"prompt": "0", "completion": "0", "image": "0", "request": "0",
                              "input_cache_reads": "0", "input_cache_writes": "0"});
    model["route"] = json!([{
        "kind": e.engine.as_str(),
        "weight": 1.0,
        "base_url": base_url,
        "provider_model_id": e.served_model_name,
        "pricing": {"prompt": "0", "completion": "0"},
    }]);
    to_yaml(&json!({ "models": [model] }))
}
