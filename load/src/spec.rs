//! What a run asks for: the optional YAML scenario file, its scenario entries, and the small
//! parsers for human durations ("500ms", "2m") and sizes ("20MiB") shared with the flags.

use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Deserializer, Serialize};

/// The request shapes the tool can send: OpenAI's chat, embeddings, speech, transcription and image
/// requests, and the router's video jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Chat,
    ChatStream,
    Embeddings,
    Speech,
    Transcription,
    Images,
    Video,
    /// A plain GET (default `/v1/models`): discovery and health paths.
    Get,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Chat,
        Kind::ChatStream,
        Kind::Embeddings,
        Kind::Speech,
        Kind::Transcription,
        Kind::Images,
        Kind::Video,
        Kind::Get,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::ChatStream => "chat_stream",
            Kind::Embeddings => "embeddings",
            Kind::Speech => "speech",
            Kind::Transcription => "transcription",
            Kind::Images => "images",
            Kind::Video => "video",
            Kind::Get => "get",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Kind> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        let alias = match norm.as_str() {
            "stream" | "chat_sse" => "chat_stream",
            "embedding" | "embed" => "embeddings",
            "tts" => "speech",
            "stt" | "upload" | "transcriptions" => "transcription",
            "image" => "images",
            "videos" => "video",
            "models" | "list_models" => "get",
            other => other,
        };
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == alias)
            .with_context(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown scenario kind {s:?} (one of {})", names.join(", "))
            })
    }

    /// Default request path under the target's root.
    pub fn default_path(self) -> &'static str {
        match self {
            Kind::Chat | Kind::ChatStream => "/v1/chat/completions",
            Kind::Embeddings => "/v1/embeddings",
            Kind::Speech => "/v1/audio/speech",
            Kind::Transcription => "/v1/audio/transcriptions",
            Kind::Images => "/v1/images/generations",
            Kind::Video => "/v1/video/generations",
            Kind::Get => "/v1/models",
        }
    }
}

/// One scenario of a run; every field but `kind` has a default so a file can stay short.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    pub kind: Kind,
    /// Shown in the table and reports; defaults to the kind's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Relative share in a mix.
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default = "default_model")]
    pub model: String,
    /// Spread requests over `model-00000 … model-(N-1)` (as `gen-config` names them) instead
    /// of the one `model`.
    #[serde(default)]
    pub model_pool: Option<u32>,
    /// Words in the chat prompt / speech input / embeddings input.
    #[serde(default = "eight")]
    pub prompt_words: usize,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Chat: each request gets a distinct short question (`prompt_words` words); with N > 0,
    /// after one of N long system prompts shared between requests (chosen per request by a
    /// fixed pseudo-random sequence), as a cache-aware router would see in an app with a few
    /// system prompts. `0`: distinct prompts that share no prefix. Unset: every request alike.
    #[serde(default)]
    pub shared_prefixes: Option<u32>,
    /// Words in each shared system prompt.
    #[serde(default = "default_prefix_words")]
    pub prefix_words: usize,
    /// Embeddings: strings per request.
    #[serde(default = "one")]
    pub inputs: u32,
    /// Transcription: size of the generated upload.
    #[serde(default = "default_file_bytes", deserialize_with = "de_size")]
    pub file_bytes: u64,
    #[serde(default)]
    pub response_format: Option<String>,
    #[serde(default = "default_voice")]
    pub voice: String,
    /// Images per request.
    #[serde(default = "one")]
    pub n: u32,
    #[serde(default)]
    pub size: Option<String>,
    /// Video: gap between status polls.
    #[serde(default = "default_poll", deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    /// Video: clip length asked for.
    #[serde(default = "four")]
    pub seconds: u32,
    /// Video: also download the content once completed.
    #[serde(default)]
    pub fetch_content: bool,
    /// Override the request path (e.g. `/api/v1/chat/completions`).
    #[serde(default)]
    pub path: Option<String>,
}

fn one() -> u32 {
    1
}
fn four() -> u32 {
    4
}
fn eight() -> usize {
    8
}
fn default_prefix_words() -> usize {
    400
}
fn default_model() -> String {
    "mock-model".into()
}
fn default_voice() -> String {
    "alloy".into()
}
fn default_file_bytes() -> u64 {
    1 << 20
}
fn default_poll() -> Duration {
    Duration::from_millis(100)
}

impl ScenarioSpec {
    pub fn new(kind: Kind) -> ScenarioSpec {
        ScenarioSpec {
            kind,
            name: None,
            weight: 1,
            model: default_model(),
            model_pool: None,
            prompt_words: eight(),
            max_tokens: None,
            shared_prefixes: None,
            prefix_words: default_prefix_words(),
            inputs: 1,
            file_bytes: default_file_bytes(),
            response_format: None,
            voice: default_voice(),
            n: 1,
            size: None,
            poll_interval: default_poll(),
            seconds: 4,
            fetch_content: false,
            path: None,
        }
    }

    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.kind.name().to_string())
    }

    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or(self.kind.default_path())
    }
}

/// The YAML file: every run setting is optional (flags win over it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub target: Option<String>,
    pub rate: Option<f64>,
    pub concurrency: Option<u32>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    pub threads: Option<usize>,
    pub label: Option<String>,
    #[serde(default)]
    pub scenarios: Vec<ScenarioSpec>,
}

impl FileSpec {
    pub fn parse(text: &str) -> anyhow::Result<FileSpec> {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// "250ms", "10s", "2m", "1h" or a bare number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let t = s.trim();
    let (num, unit) = split_unit(t);
    let v: f64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?} (e.g. 500ms, 10s, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "" | "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        other => bail!("invalid duration unit {other:?} in {s:?}"),
    };
    if !(0.0..=1.0e7).contains(&secs) {
        bail!("duration {s:?} out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// "20MiB", "512KiB", "1MB", "4k" or a bare number of bytes.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let (num, unit) = split_unit(t);
    let v: f64 = num
        .parse()
        .with_context(|| format!("invalid size {s:?} (e.g. 20MiB)"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1000.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1.0e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1.0e9,
        other => bail!("invalid size unit {other:?} in {s:?}"),
    };
    let bytes = v * mult;
    if !(0.0..=1.0e12).contains(&bytes) {
        bail!("size {s:?} out of range");
    }
    Ok(bytes.round() as u64)
}

fn split_unit(t: &str) -> (&str, &str) {
    let idx = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(t.len());
    (t[..idx].trim(), t[idx..].trim())
}

/// YAML accepts either a number (seconds / bytes) or a string with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(f64),
    Text(String),
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => parse_duration(&n.to_string()),
        NumOrText::Text(t) => parse_duration(&t),
    }
    .map_err(serde::de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => parse_size(&n.to_string()),
        NumOrText::Text(t) => parse_size(&t),
    }
    .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("1.5").ok(),
            Some(Duration::from_millis(1500))
        );
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_size("20MiB").ok(), Some(20 << 20));
        assert_eq!(parse_size("4k").ok(), Some(4096));
        assert_eq!(parse_size("1MB").ok(), Some(1_000_000));
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn kinds_and_aliases() {
        assert_eq!(Kind::parse("chat-stream").ok(), Some(Kind::ChatStream));
        assert_eq!(Kind::parse("stt").ok(), Some(Kind::Transcription));
        assert_eq!(Kind::parse("models").ok(), Some(Kind::Get));
        assert!(Kind::parse("teleport").is_err());
    }

    #[test]
    fn file_with_defaults_and_errors() {
        let f = FileSpec::parse(
            "target: http://127.0.0.1:9\nrate: 50\nduration: 3s\nscenarios:\n  - kind: chat\n    weight: 3\n  - kind: transcription\n    file_bytes: 2MiB\n  - kind: video\n    poll_interval: 50ms\n",
        )
        .expect("parses");
        assert_eq!(f.rate, Some(50.0));
        assert_eq!(f.duration, Some(Duration::from_secs(3)));
        assert_eq!(f.scenarios.len(), 3);
        assert_eq!(f.scenarios[0].weight, 3);
        assert_eq!(f.scenarios[1].file_bytes, 2 << 20);
        assert_eq!(f.scenarios[2].poll_interval, Duration::from_millis(50));
        let bad = FileSpec::parse("scenarios:\n  - kind: chat\n    wieght: 3\n");
        assert!(bad.is_err());
    }
}
