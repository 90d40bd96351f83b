//! Unit tests over the real catalogue: data, validation and every rendering.

use super::*;

#[test]
fn embedded_catalogue_validates() {
    let all = entries().unwrap_or_else(|e| panic!("{e:#}"));
    assert!(all.len() >= 169, "{} entries", all.len());
}

#[test]
fn validate_reports_every_problem_with_the_id() {
    let all = entries().unwrap_or_else(|e| panic!("{e:#}"));
    let mut broken: Vec<Entry> = all[..2].to_vec();
    broken[1].id = broken[0].id.clone();
    broken[0].provider = "openai".into();
    broken[0].default_resources.memory = "12GB".into();
    broken[0].default_resources.gpu = 3;
    broken[0].engine_args.tensor_parallel_size = Some(4);
    let problems = validate(&broken);
    let id = &broken[0].id;
    for expected in [
        "duplicate id",
        "must be `self_hosted`",
        "memory `12GB`",
        "gpu 3 is not",
        "tensorParallelSize 4",
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(id.as_str()) && p.contains(expected)),
            "{expected}: {problems:#?}"
        );
    }
}

#[test]
fn resources_must_fit_the_recommended_instance() {
    let mut e = find("llama-3.1-70b-instruct")
        .unwrap_or_else(|e| panic!("{e:#}"))
        .clone();
    e.recommended_instance = "g5.2xlarge".into();
    let problems = validate(std::slice::from_ref(&e));
    assert!(
        problems.iter().any(|p| p.contains("exceeds g5.2xlarge")),
        "{problems:#?}"
    );
    e.recommended_instance = "m7.huge".into();
    assert!(validate(std::slice::from_ref(&e))
        .iter()
        .any(|p| p.contains("not in the instance table")));
}

#[test]
fn vllm_weights_must_fit_gpu_memory() {
    let mut e = find("qwen2.5-72b-instruct")
        .unwrap_or_else(|e| panic!("{e:#}"))
        .clone();
    e.default_resources.gpu = 4;
    e.engine_args.tensor_parallel_size = Some(4);
    let problems = validate(std::slice::from_ref(&e));
    assert!(
        problems.iter().any(|p| p.contains("do not fit 4 x 24 GiB")),
        "{problems:#?}"
    );
}

#[test]
fn unknown_fields_are_rejected() {
    let yaml = CATALOGUE_YAML.replacen("    modelSize:", "    modelSise: 1GB\n    modelSize:", 1);
    let err = parse(&yaml).map(|_| ()).unwrap_err();
    assert!(format!("{err:#}").contains("modelSise"), "{err:#}");
}

#[test]
fn find_names_the_unknown_id() {
    let err = find("llama-9").map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("unknown catalogue id `llama-9`"), "{err}");
}

/// The vLLM Dockerfile pattern of the published Self-Hosted Models catalogue, flag by flag.
#[test]
fn vllm_dockerfile_follows_the_published_pattern() {
    let e = find("llama-3.1-8b-instruct").unwrap_or_else(|e| panic!("{e:#}"));
    let d = render_dockerfile(e);
    for expected in [
        "FROM vllm/vllm-openai:v0.16.0",
        "ENV MODEL_NAME=\"meta-llama/Llama-3.1-8B-Instruct\"",
        "ENTRYPOINT [\"python3\", \"-m\", \"vllm.entrypoints.openai.api_server\"]",
        "CMD [\"--model\", \"meta-llama/Llama-3.1-8B-Instruct\"",
        "\"--served-model-name\", \"llama-3.1-8b\"",
        "\"--gpu-memory-utilization\", \"0.9\"",
        "\"--max-model-len\", \"32768\"",
        "\"--tool-call-parser\", \"llama3_json\"",
        "USER 10001:10001",
        "HEALTHCHECK",
        "EXPOSE 8000",
    ] {
        assert!(d.contains(expected), "missing {expected:?} in\n{d}");
    }
}

#[test]
fn vllm_flags_follow_the_entry() {
    let args = |id: &str| {
        vllm_args(find(id).unwrap_or_else(|e| panic!("{e:#}")))
            .concat()
            .join(" ")
    };
    let r1 = args("deepseek-r1-distill-llama-70b");
    assert!(
        r1.contains("--tensor-parallel-size 8") && r1.contains("--reasoning-parser deepseek_r1"),
        "{r1}"
    );
    assert!(
        !r1.contains("--enable-reasoning"),
        "removed in vLLM 0.10: {r1}"
    );
    let vl = args("internvl2.5-8b");
    assert!(
        vl.contains("--trust-remote-code") && vl.contains("--limit-mm-per-prompt {\"image\":4}"),
        "{vl}"
    );
    assert!(!args("qwen2.5-7b-instruct").contains("--tensor-parallel-size"));
    assert!(args("bge-m3").contains("--runner pooling"));
}

#[test]
fn python_dockerfiles_pick_base_image_by_gpu() {
    let cpu = render_dockerfile(find("kokoro-82m").unwrap_or_else(|e| panic!("{e:#}")));
    assert!(
        cpu.contains("FROM python:3.11.11-slim-bookworm") && cpu.contains("whl/cpu"),
        "{cpu}"
    );
    assert!(
        cpu.contains("TTS_BACKEND=\"kokoro\"") && cpu.contains("kokoro==0.9.4"),
        "{cpu}"
    );
    let gpu = render_dockerfile(find("xtts-v2").unwrap_or_else(|e| panic!("{e:#}")));
    assert!(
        gpu.contains("FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime")
            && !gpu.contains("whl/cpu"),
        "{gpu}"
    );
    let whisper =
        render_dockerfile(find("faster-whisper-base").unwrap_or_else(|e| panic!("{e:#}")));
    assert!(
        !whisper.contains("torch=="),
        "faster-whisper needs no PyTorch:\n{whisper}"
    );
}

#[test]
fn every_entry_renders_everything() {
    for e in entries().unwrap_or_else(|e| panic!("{e:#}")) {
        let dockerfile = render_dockerfile(e);
        assert!(
            !dockerfile.contains("{{"),
            "{}: unfilled placeholder\n{dockerfile}",
            e.id
        );
        assert!(
            dockerfile.contains(&format!("EXPOSE {}", e.default_port)),
            "{}",
            e.id
        );
        assert!(!dockerfile.contains(":latest"), "{}", e.id);
        assert_eq!(
            render_server(e).is_some(),
            e.engine != Engine::Vllm,
            "{}",
            e.id
        );
        assert!(!render_manifest(e).is_empty());
        let snippet: serde_yaml::Value =
            serde_yaml::from_str(&render_models_yaml(e, "http://model:8000/v1"))
                .unwrap_or_else(|err| panic!("{}: {err}", e.id));
        assert_eq!(snippet["models"][0]["id"].as_str(), Some(e.id.as_str()));
    }
}

#[test]
fn kubernetes_names_are_unique_dns_labels() {
    let all = entries().unwrap_or_else(|e| panic!("{e:#}"));
    let mut seen = std::collections::HashSet::new();
    for e in all {
        let name = k8s_name(&e.id);
        assert!(
            name.len() <= 63 && name.starts_with(|c: char| c.is_ascii_lowercase()),
            "{name}"
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert!(seen.insert(name.clone()), "two entries map to {name}");
    }
}
