#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use switchyard::config::{self, LoadOptions, ProcessEnv, Registry};
use switchyard::settings::Settings;

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
    /// Validate the configuration and print a summary; exit code 1 lists every problem.
    CheckConfig(ConfigArgs),
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
    /// The URL to check (default: http://127.0.0.1:$PORT/health).
    #[arg(long)]
    url: Option<String>,
    /// The router's port, for the default URL.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
}

#[cfg(feature = "demo")]
#[derive(Args, Clone)]
struct DemoArgs {
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
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
    /// Listen address. Default: 0.0.0.0 when client keys are configured (or
    /// ALLOW_UNAUTHENTICATED=true), else 127.0.0.1; a non-loopback address with no client key
    /// is refused unless ALLOW_UNAUTHENTICATED=true.
    #[arg(long, env = "HOST")]
    host: Option<String>,
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
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
            let url = args
                .url
                .unwrap_or_else(|| format!("http://127.0.0.1:{}/health", args.port));
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
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

fn check_config(args: &ConfigArgs) -> ExitCode {
    apply_lenient_flag(args);
    // Keys problems are reported as environment errors next to the settings' own.
    let settings = Settings::from_vars(&ProcessEnv).and_then(|s| {
        switchyard::auth::Auth::from_vars(&ProcessEnv)
            .map(|_| s)
            .map_err(|errs| errs.into_iter().map(|e| format!("keys: {e}")).collect())
    });
    match (load_registry(args), settings) {
        (Ok(registry), Ok(_)) => {
            for w in &registry.warnings {
                println!("warning: {w}");
            }
            print_summary(&registry);
            ExitCode::SUCCESS
        }
        (registry, settings) => {
            if let Err(errs) = &registry {
                for w in &errs.warnings {
                    println!("warning: {w}");
                }
                for e in &errs.errors {
                    println!("error: {e}");
                }
            }
            if let Err(errs) = &settings {
                for e in errs {
                    println!("error: environment: {e}");
                }
            }
            ExitCode::FAILURE
        }
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
    apply_lenient_flag(&args.config);
    init_logging();
    let registry = match load_registry(&args.config) {
        Ok(r) => r,
        Err(errs) => {
            for e in &errs.errors {
                tracing::error!("{e}");
            }
            eprintln!("{errs}");
            return ExitCode::FAILURE;
        }
    };
    for w in &registry.warnings {
        tracing::warn!("{w}");
    }
    let Some(settings) = env_settings() else {
        return ExitCode::FAILURE;
    };
    let opts = switchyard::server::ServeOptions {
        // An empty HOST (as a .env template leaves it) means "not given".
        host: args.host.filter(|h| !h.trim().is_empty()),
        port: args.port,
        allow_unauthenticated: settings.allow_unauthenticated,
        reload: Some(switchyard::reload::ConfigSource {
            models: args.config.config.clone(),
            routing: Some(
                args.config
                    .routing
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_ROUTING)),
            ),
            routing_required: args.config.routing.is_some(),
        }),
    };
    let system = actix_rt::System::new();
    match system.block_on(switchyard::server::serve(registry, settings, opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The router's settings from the environment; every problem is printed, then `None`.
fn env_settings() -> Option<Settings> {
    match Settings::from_vars(&ProcessEnv) {
        Ok(s) => Some(s),
        Err(errs) => {
            for e in errs {
                eprintln!("error: environment: {e}");
            }
            None
        }
    }
}

#[cfg(feature = "demo")]
fn demo(args: DemoArgs) -> ExitCode {
    init_logging();
    let Some(settings) = env_settings() else {
        return ExitCode::FAILURE;
    };
    let opts = switchyard::server::ServeOptions {
        host: Some(args.host),
        port: args.port,
        // The demo is open by design (mock engines, nothing to protect) and listens on
        // 127.0.0.1 unless told otherwise.
        allow_unauthenticated: true,
        reload: None,
    };
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let (engines, registry, yaml) = switchyard::demo::start_engines().await?;
        for (name, engine) in &engines {
            tracing::info!(engine = name, url = %engine.url(), "mock engine started");
        }
        tracing::info!("demo configuration:\n{yaml}");
        switchyard::server::serve(registry, settings, opts).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn migrate() -> ExitCode {
    init_logging();
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
