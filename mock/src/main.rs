//! `switchyard-mock`: runs one or more mock inference engines until SIGINT/SIGTERM.
//!
//! Prints one line per server, `switchyard-mock listening on http://127.0.0.1:PORT`, which tests
//! parse to learn the port. Logs go to stderr and are off unless `RUST_LOG` is set.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::Parser;
use serde_json::{Map, Value};
use switchyard_mock::{self as mock, MockSettings};

#[derive(Parser, Debug)]
#[command(
    name = "switchyard-mock",
    about = "Mock OpenAI-compatible inference engines (chat, embeddings, audio, images, video) for tests and benchmarks",
    after_help = "Every setting can be given in --settings-json; the flags override it. \
                  Settings can be changed at run time with PATCH /_mock/config."
)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// 0 picks a free port; with --count N a non-zero port P gives P, P+1, …
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Number of independent servers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    count: u16,
    /// A JSON object of settings (see docs/mock-engine.md).
    #[arg(long)]
    settings_json: Option<String>,

    #[arg(long)]
    workers: Option<usize>,
    /// Model id for /v1/models (repeatable).
    #[arg(long = "model")]
    models: Vec<String>,
    #[arg(long)]
    latency_ms: Option<u64>,
    #[arg(long)]
    ttft_ms: Option<u64>,
    #[arg(long)]
    chunks: Option<u32>,
    #[arg(long)]
    chunk_interval_ms: Option<u64>,
    /// auto | never | always | on_finish | choices_null
    #[arg(long)]
    usage_mode: Option<String>,
    #[arg(long)]
    embedding_dim: Option<usize>,
    #[arg(long)]
    tts_chunks: Option<u32>,
    #[arg(long)]
    tts_chunk_interval_ms: Option<u64>,
    #[arg(long)]
    fail_rate: Option<f64>,
    #[arg(long)]
    fail_status: Option<u16>,
    #[arg(long)]
    retry_after: Option<u64>,
    /// openai | vllm | tgi | llamacpp | openrouter
    #[arg(long)]
    error_style: Option<String>,
    /// ok | loading | down
    #[arg(long)]
    health: Option<String>,
    #[arg(long)]
    refuse_when_unhealthy: bool,
    #[arg(long)]
    die_after_chunks: Option<u32>,
    #[arg(long)]
    error_event_first: bool,
    #[arg(long)]
    invalid_json: bool,
    /// none | before_headers | mid_stream
    #[arg(long)]
    hang: Option<String>,
    #[arg(long)]
    hang_ms: Option<u64>,
    #[arg(long)]
    slow_drip_ms: Option<u64>,
    #[arg(long)]
    reset_before_headers: bool,
    #[arg(long)]
    require_api_key: Option<String>,
    #[arg(long)]
    echo_auth_in_errors: bool,
    /// async | sync
    #[arg(long)]
    video_mode: Option<String>,
    /// openai | openrouter | replicate | fal
    #[arg(long)]
    video_status_style: Option<String>,
    #[arg(long)]
    video_steps: Option<u32>,
    #[arg(long)]
    video_step_ms: Option<u64>,
    #[arg(long)]
    video_fail: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Demand a client certificate signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<std::path::PathBuf>,
}

impl Cli {
    /// The flags that were given, as a settings patch.
    fn patch(&self) -> Map<String, Value> {
        let mut p = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                p.insert(key.to_owned(), v);
            }
        };
        let num = |v: Option<u64>| v.map(Value::from);
        let text = |v: &Option<String>| v.clone().map(Value::from);
        let flag = |on: bool| on.then_some(Value::Bool(true));
        put("workers", self.workers.map(Value::from));
        put(
            "model_ids",
            (!self.models.is_empty()).then(|| Value::from(self.models.clone())),
        );
        put("latency_ms", num(self.latency_ms));
        put("ttft_ms", num(self.ttft_ms));
        put("chunks", self.chunks.map(Value::from));
        put("chunk_interval_ms", num(self.chunk_interval_ms));
        put("usage_mode", text(&self.usage_mode));
        put("embedding_dim", self.embedding_dim.map(Value::from));
        put("tts_chunks", self.tts_chunks.map(Value::from));
        put("tts_chunk_interval_ms", num(self.tts_chunk_interval_ms));
        put("fail_rate", self.fail_rate.map(Value::from));
        put("fail_status", self.fail_status.map(Value::from));
        put("retry_after", num(self.retry_after));
        put("error_style", text(&self.error_style));
        put("health", text(&self.health));
        put("refuse_when_unhealthy", flag(self.refuse_when_unhealthy));
        put("die_after_chunks", self.die_after_chunks.map(Value::from));
        put("error_event_first", flag(self.error_event_first));
        put("invalid_json", flag(self.invalid_json));
        put("hang", text(&self.hang));
        put("hang_ms", num(self.hang_ms));
        put("slow_drip_ms", num(self.slow_drip_ms));
        put("reset_before_headers", flag(self.reset_before_headers));
        put("require_api_key", text(&self.require_api_key));
        put("echo_auth_in_errors", flag(self.echo_auth_in_errors));
        put("video_mode", text(&self.video_mode));
        put("video_status_style", text(&self.video_status_style));
        put("video_steps", self.video_steps.map(Value::from));
        put("video_step_ms", num(self.video_step_ms));
        put("video_fail", flag(self.video_fail));
        p
    }

    fn settings(&self) -> anyhow::Result<MockSettings> {
        let base = match &self.settings_json {
            Some(json) => {
                let value: Value =
                    serde_json::from_str(json).context("--settings-json is not valid JSON")?;
                MockSettings::default()
                    .patched(value)
                    .map_err(|e| anyhow!("--settings-json: {e}"))?
            }
            None => MockSettings::default(),
        };
        base.patched(Value::Object(self.patch()))
            .map_err(|e| anyhow!("invalid flag value: {e}"))
    }
}

#[actix_web::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-mock: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let cli = Cli::parse();
    let settings = cli.settings()?;
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(
            mock::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: cli.tls_client_ca.clone(),
            }
            .server_config()
            .context("TLS mode")?,
        ),
        _ => None,
    };
    let mut servers = Vec::with_capacity(usize::from(cli.count));
    for i in 0..cli.count {
        let port = if cli.port == 0 {
            0
        } else {
            cli.port
                .checked_add(i)
                .ok_or_else(|| anyhow!("port {} + {i} overflows", cli.port))?
        };
        let server = mock::start_with(&cli.host, port, settings.clone(), tls.clone())
            .await
            .with_context(|| format!("could not start a mock on {}:{port}", cli.host))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "switchyard-mock listening on {}", server.url())?;
        out.flush()?;
        servers.push(server);
    }

    wait_for_shutdown().await?;
    for server in servers {
        server.stop().await;
    }
    Ok(())
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
