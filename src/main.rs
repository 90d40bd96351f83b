#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use switchyard::auth::Auth;
use switchyard::auth::Exposure;
use switchyard::config::{self, LoadOptions, ProcessEnv, Registry, VarSource};
use switchyard::listen::listen_host;
use switchyard::settings::{LogFormat, Settings};
use switchyard::telemetry::{self, TraceSettings};

/// mimalloc instead of the system allocator: a request allocates a few hundred times (HTTP
/// heads, the body's members, the record, the log row), and glibc's malloc/free were ~15 % of
/// the router's instructions per request (issue 17; figures in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A multi-modal OpenAI/OpenRouter-compatible inference router"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router (the default).
    Serve(ServeArgs),
    /// Check everything `serve` checks before it binds (environment, keys, database URL,
    /// configuration files, where it may listen), without binding or connecting; print a
    /// summary, or every problem with exit code 1.
    CheckConfig(ServeArgs),
    /// Run the router with in-process mock engines for every model type (no set-up needed).
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Create or upgrade the database schema (also done at every start).
    Migrate,
    /// Print request log rows (newest last); `--follow` keeps printing new ones.
    Logs(switchyard::accounting::cli::LogsArgs),
    /// Usage and cost aggregates by model, key and period.
    Usage(switchyard::accounting::cli::UsageArgs),
    /// Browse the self-hosted model catalogue and render its deployment files.
    #[command(subcommand)]
    Catalogue(switchyard::catalogue::Command),
    /// Exit 0 when a running router's /health answers 200 (for container health checks).
    Healthcheck(HealthcheckArgs),
}

#[derive(Args, Clone)]
struct HealthcheckArgs {
    /// The URL to check (default: http://127.0.0.1:$PORT/health, https:// when TLS_CERT_FILE
    /// is set; on loopback the certificate is not verified).
    #[arg(long)]
    url: Option<String>,
    /// The router's port, for the default URL.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
    /// The router's certificate, when it serves HTTPS: only whether it is set matters here.
    #[arg(long, env = "TLS_CERT_FILE", hide = true)]
    tls_cert_file: Option<String>,
}

#[cfg(feature = "demo")]
#[derive(Args, Clone)]
struct DemoArgs {
    #[command(flatten)]
    listen: ListenArgs,
}

/// `--host`/`--port`; each wins over `HOST`/`PORT`, read with the other settings.
#[derive(Args, Clone)]
struct ListenArgs {
    /// Listen address (default: `HOST`). For `serve`, unset means 0.0.0.0 when client keys are
    /// configured (or ALLOW_UNAUTHENTICATED=true), else 127.0.0.1; a non-loopback address with
    /// no client key is refused unless ALLOW_UNAUTHENTICATED=true. For `demo`: 127.0.0.1.
    #[arg(long)]
    host: Option<String>,
    /// Listen port (default: `PORT`, else 8080; 0 = any free port).
    #[arg(long)]
    port: Option<u16>,
}

#[derive(Args, Clone)]
struct ConfigArgs {
    /// The model registry.
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "config/models.yaml")]
    config: PathBuf,
    /// Optional weight overrides; a missing file is fine unless given explicitly.
    #[arg(long, env = "SWITCHYARD_ROUTING")]
    routing: Option<PathBuf>,
    /// Unknown keys in models.yaml and routing.yaml are warnings, not errors (for old files;
    /// the same as CONFIG_LENIENT=true). Reloads keep the mode. The keys file stays strict.
    #[arg(long)]
    lenient: bool,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    listen: ListenArgs,
}

const DEFAULT_ROUTING: &str = "config/routing.yaml";

fn main() -> ExitCode {
    // `.env` first, so it can supply every default below; real env vars win over it.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig(args)) => check_config(&args),
        Some(Command::Serve(args)) => serve(args),
        #[cfg(feature = "demo")]
        Some(Command::Demo(args)) => demo(args),
        Some(Command::Migrate) => migrate(),
        Some(Command::Logs(args)) => switchyard::accounting::cli::logs(args),
        Some(Command::Usage(args)) => switchyard::accounting::cli::usage(args),
        Some(Command::Healthcheck(args)) => {
            let https = args
                .tls_cert_file
                .is_some_and(|file| !file.trim().is_empty());
            let url = args
                .url
                .unwrap_or_else(|| switchyard::healthcheck::default_url(args.port, https));
            let secs = if args.timeout.is_finite() {
                args.timeout.clamp(0.1, 300.0)
            } else {
                3.0
            };
            let timeout = std::time::Duration::from_secs_f64(secs);
            switchyard::healthcheck::run(&url, timeout)
        }
        Some(Command::Catalogue(cmd)) => match switchyard::catalogue::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => serve(cli.serve),
    }
}

fn init_logging(format: LogFormat) {
    init_logging_and_traces(format, &TraceSettings::default());
}

/// Logs to stderr, and, when `traces` asks for them, the router's spans over OTLP: two layers
/// with their own filters, so log lines never carry spans and the exporter sees only spans.
fn init_logging_and_traces(format: LogFormat, traces: &TraceSettings) {
    use tracing_subscriber::prelude::*;
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if let Ok(no_spans) = format!("{}=off", telemetry::SPAN_TARGET).parse() {
        filter = filter.add_directive(no_spans);
    }
    let (setup, trace_error) = match telemetry::init(traces) {
        Ok(setup) => (setup, None),
        Err(e) => (None, Some(e)),
    };
    let export = setup.as_ref().map(|setup| setup.layer());
    let colour = log_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR"),
    );
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(export);
    match format {
        LogFormat::Json => registry.with(log.json().with_filter(filter)).init(),
        LogFormat::Text if colour => registry.with(log.with_filter(filter)).init(),
        LogFormat::Text => registry
            .with(log.fmt_fields(plain_fields()).with_filter(filter))
            .init(),
    }
    if let Some(e) = trace_error {
        tracing::error!("traces are not exported: {e}");
    } else if setup.is_some() {
        tracing::info!(
            capture_content = traces.capture_content,
            "exporting traces over OTLP"
        );
    }
}

/// Colour only for a terminal, and not there either when `NO_COLOR` is set (no-color.org):
/// escape codes in a file or a container's log stream are noise to whoever reads it, and
/// styling every field cost more than the rest of a request's finish line (docs/benchmarks.md).
fn log_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Fields as `name=value`, the message bare, as the default formatter writes them without
/// colour, but without its per-field styling calls, which are made (and cost) even when colour
/// is off: ~9.7k of the ~32k instructions a request's finish line took without colour
/// (docs/benchmarks.md).
fn plain_fields() -> impl for<'writer> tracing_subscriber::fmt::FormatFields<'writer> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        if field.name() == "message" {
            write!(writer, "{value:?}")
        } else {
            write!(writer, "{field}={value:?}")
        }
    })
    .delimited(" ")
}

/// `--lenient` becomes `CONFIG_LENIENT=true` in this process's environment before any thread
/// starts (as `.env` does), so the first load, every reload and the keys check read one
/// setting from one place.
fn apply_lenient_flag(args: &ConfigArgs) {
    if args.lenient {
        std::env::set_var("CONFIG_LENIENT", "true");
    }
}

fn load_registry(args: &ConfigArgs) -> Result<Registry, config::ConfigErrors> {
    let routing = args
        .routing
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROUTING));
    config::load(&LoadOptions {
        models_path: &args.config,
        routing_path: Some(&routing),
        routing_required: args.routing.is_some(),
        vars: &ProcessEnv,
    })
}

/// The router's settings, keys and listen address, read and checked together.
struct Runtime {
    settings: Settings,
    auth: Auth,
    host: String,
    port: u16,
    exposure: Exposure,
    /// The demo's generated admin key, printed once in the status page link.
    ui_key: Option<String>,
}

/// Why [`check_runtime`] refused. Keys and the listen decision depend on valid settings (the
/// keys file's path, ALLOW_UNAUTHENTICATED), so each stage is checked once those before pass.
enum Refused {
    Settings(Vec<String>),
    Keys(Vec<String>),
    Listen(String),
}

impl Refused {
    /// The lines printed after `error: `, by `check-config` and `serve` alike.
    fn lines(self) -> Vec<String> {
        match self {
            Refused::Settings(errors) => prefixed("environment", errors),
            Refused::Keys(errors) => prefixed("environment: keys", errors),
            Refused::Listen(refusal) => vec![refusal],
        }
    }
}

fn prefixed(prefix: &str, lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| format!("{prefix}: {l}"))
        .collect()
}

/// Read the environment once and decide where to listen, as `serve` (or, with `demo`, the
/// demo) does before binding.
fn check_runtime(
    listen: &ListenArgs,
    demo: bool,
    vars: &dyn VarSource,
) -> Result<Runtime, Refused> {
    let settings = Settings::from_env(vars).map_err(Refused::Settings)?;
    let auth = Auth::load(
        vars,
        settings.auth.metrics_public,
        settings.auth.keys_file.clone(),
    )
    .map_err(Refused::Keys)?;
    // An empty `--host` (as a script's unset variable leaves it) means "not given".
    let requested = listen
        .host
        .clone()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| settings.listen.host.clone());
    let key_required = auth.store().requires_client_key();
    let decided = if demo {
        // The demo is open by design (mock engines, nothing to protect) and listens on
        // 127.0.0.1 unless told otherwise.
        let host = requested.as_deref().unwrap_or(DEMO_HOST);
        listen_host(Some(host), key_required, true)
    } else {
        listen_host(
            requested.as_deref(),
            key_required,
            settings.allow_unauthenticated,
        )
    };
    let (host, exposure) = decided.map_err(Refused::Listen)?;
    Ok(Runtime {
        port: listen.port.unwrap_or(settings.listen.port),
        settings,
        auth,
        host,
        exposure,
        ui_key: None,
    })
}

const DEMO_HOST: &str = "127.0.0.1";

/// Every problem that stops `serve`, and the configuration's warnings.
struct Problems {
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Problems {
    /// `check-config` prints these to stdout, `serve` to stderr: the same lines.
    fn write(&self, out: &mut dyn std::io::Write) {
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        for e in &self.errors {
            let _ = writeln!(out, "error: {e}");
        }
    }
}

/// Everything `serve` checks before it binds: the configuration files and [`check_runtime`].
/// `check-config` runs exactly this, so the two cannot disagree.
fn check_serve(args: &ServeArgs) -> Result<(Registry, Runtime), Problems> {
    apply_lenient_flag(&args.config);
    let (registry, runtime) = (
        load_registry(&args.config),
        check_runtime(&args.listen, false, &ProcessEnv),
    );
    let (mut problems, refused) = match (registry, runtime) {
        (Ok(registry), Ok(runtime)) => return Ok((registry, runtime)),
        (Ok(registry), Err(refused)) => (
            Problems {
                errors: vec![],
                warnings: registry.warnings,
            },
            Some(refused),
        ),
        (Err(config), runtime) => (
            Problems {
                errors: config.messages(),
                warnings: config.warnings,
            },
            runtime.err(),
        ),
    };
    if let Some(refused) = refused {
        // CONFIG_LENIENT is read by the settings and by the loader (which re-reads it on
        // every reload): a bad value is said once, as the environment's.
        if let Refused::Settings(env_errors) = &refused {
            problems.errors.retain(|e| !env_errors.contains(e));
        }
        problems.errors.extend(refused.lines());
    }
    Err(problems)
}

fn check_config(args: &ServeArgs) -> ExitCode {
    match check_serve(args) {
        Ok((registry, runtime)) => {
            for w in &registry.warnings {
                println!("warning: {w}");
            }
            print_summary(&registry);
            let scheme = match &runtime.settings.tls {
                Some(cert) => format!(", HTTPS and HTTP/2 with {}", cert.files().cert.display()),
                None => String::new(),
            };
            println!(
                "listen: {}:{} ({}){scheme}",
                runtime.host,
                runtime.port,
                exposure_summary(runtime.exposure)
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            problems.write(&mut std::io::stdout());
            ExitCode::FAILURE
        }
    }
}

fn exposure_summary(exposure: Exposure) -> &'static str {
    match exposure {
        Exposure::KeyRequired => "client key required",
        Exposure::OpenOnLoopback => "no client key: open on loopback only",
        Exposure::OpenToNetwork => "no client key: OPEN to the network (ALLOW_UNAUTHENTICATED)",
    }
}

fn print_summary(registry: &Registry) {
    let mut endpoints = std::collections::BTreeSet::new();
    let mut routes = 0;
    let mut aliases = 0;
    for m in &registry.models {
        aliases += m.aliases.len();
        routes += m.routes.len();
        for r in &m.routes {
            if let Some(b) = &r.base_url {
                endpoints.insert(b.api_base().to_string());
            }
        }
    }
    println!(
        "configuration OK: {} models, {} aliases, {} routes, {} endpoints",
        registry.models.len(),
        aliases,
        routes,
        endpoints.len()
    );
    for m in &registry.models {
        let alias = if m.aliases.is_empty() {
            String::new()
        } else {
            format!(" (aliases: {})", m.aliases.join(", "))
        };
        println!("  {} [{}]{}", m.id, m.model_type, alias);
        for r in &m.routes {
            let url = r
                .base_url
                .as_ref()
                .map_or("-".to_string(), |b| b.api_base().to_string());
            let state = match &r.disabled_reason {
                Some(why) => format!("disabled: {why}"),
                None if r.weight == 0.0 => "disabled: weight 0".to_string(),
                None => format!("weight {}", r.weight),
            };
            println!(
                "    - {} ({}) {} -> {} [{}]",
                r.name, r.kind_name, url, r.provider_model_id, state
            );
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let (registry, runtime) = match check_serve(&args) {
        Ok(checked) => checked,
        Err(problems) => {
            problems.write(&mut std::io::stderr());
            return ExitCode::FAILURE;
        }
    };
    init_logging_and_traces(runtime.settings.log_format, &runtime.settings.traces);
    for w in &registry.warnings {
        tracing::warn!("{w}");
    }
    let reload = switchyard::reload::ConfigSource {
        models: args.config.config.clone(),
        routing: Some(
            args.config
                .routing
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ROUTING)),
        ),
        routing_required: args.config.routing.is_some(),
    };
    run_server(runtime, Some(reload), |settings, auth, opts| {
        switchyard::server::serve(registry, settings, auth, opts)
    })
}

#[cfg(feature = "demo")]
fn demo(args: DemoArgs) -> ExitCode {
    let env = switchyard::demo::DemoEnv::new(ProcessEnv);
    let runtime = match check_runtime(&args.listen, true, &env) {
        Ok(runtime) => Runtime {
            ui_key: env.generated_admin_key().map(str::to_string),
            ..runtime
        },
        Err(refused) => {
            let problems = Problems {
                errors: refused.lines(),
                warnings: vec![],
            };
            problems.write(&mut std::io::stderr());
            return ExitCode::FAILURE;
        }
    };
    init_logging_and_traces(runtime.settings.log_format, &runtime.settings.traces);
    if runtime.ui_key.is_some() {
        // stdout, not the log: the key must not end up in log files or collectors.
        println!(
            "switchyard demo: an admin key was generated for this run and is printed once, in the status page link below; set ADMIN_API_KEY to use a fixed one."
        );
    }
    run_server(runtime, None, |settings, auth, opts| async move {
        // The engines run as long as the router does: they are dropped with this future.
        let (engines, registry, yaml) = switchyard::demo::start_engines().await?;
        for (name, engine) in &engines {
            tracing::info!(engine = name, url = %engine.url(), "mock engine started");
        }
        tracing::info!("demo configuration:\n{yaml}");
        switchyard::server::serve(registry, settings, auth, opts).await
    })
}

/// Run `server` (given the checked runtime as `serve` takes it) on a System of this thread,
/// until it stops.
fn run_server<F, Fut>(
    runtime: Runtime,
    reload: Option<switchyard::reload::ConfigSource>,
    server: F,
) -> ExitCode
where
    F: FnOnce(Settings, Auth, switchyard::server::ServeOptions) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    let Runtime {
        settings,
        auth,
        host,
        port,
        exposure,
        ui_key,
    } = runtime;
    let opts = switchyard::server::ServeOptions {
        host,
        port,
        exposure,
        reload,
        ui_key,
    };
    let system = actix_rt::System::new();
    match system.block_on(server(settings, auth, opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn migrate() -> ExitCode {
    match switchyard::settings::log_format(&ProcessEnv) {
        Ok(format) => init_logging(format),
        Err(e) => {
            eprintln!("error: environment: {e}");
            return ExitCode::FAILURE;
        }
    }
    let db = match switchyard::store::DbSettings::from_vars(&ProcessEnv) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let system = actix_rt::System::new();
    let result = system.block_on(async {
        let store = switchyard::store::Store::connect(&db)
            .await
            .map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => {
            println!("database {} is up to date", db.describe());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: database {}: {e}", db.describe());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_colour;

    #[test]
    fn log_lines_are_coloured_only_on_a_terminal_without_no_color() {
        let cases: [(bool, Option<&str>, bool); 6] = [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (true, Some("false"), false),
            (false, None, false),
            (false, Some("1"), false),
        ];
        for (terminal, no_color, coloured) in cases {
            assert_eq!(
                log_colour(terminal, no_color.map(Into::into)),
                coloured,
                "terminal {terminal}, NO_COLOR {no_color:?}"
            );
        }
    }
}
