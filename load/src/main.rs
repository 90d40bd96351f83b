//! `switchyard-load`: the load generator and benchmark helper for switchyard.
//!
//! `run` sends scenarios (chat, streams, embeddings, speech, uploads, images, video jobs or a
//! weighted mix) at an open-loop rate or a closed-loop concurrency, for a bounded time or count,
//! against loopback targets, and writes a table, a JSON report and an HTML report. `fleet`
//! starts mock engines; `gen-config` writes a models.yaml for many models and endpoints.
//! See docs/benchmarks.md.

#![forbid(unsafe_code)]

mod engine;
mod fleet;
mod floor;
mod guard;
mod hist;
mod plan;
mod report;
mod scenario;
mod spec;
mod sse;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::plan::{Mode, Plan, DEFAULT_DURATION, MAX_DURATION};
use crate::spec::{parse_duration, parse_size, FileSpec, Kind, ScenarioSpec};

/// The router's allocator (see its src/main.rs), so `floor-proxy` allocates as the router does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchyard-load",
    version,
    about = "Load generator for switchyard and OpenAI-compatible servers on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send load and report latency, throughput and errors.
    Run(Box<RunArgs>),
    /// Start N mock engines on loopback ports (and optionally write a models.yaml for them).
    Fleet(Box<fleet::FleetArgs>),
    /// Write a models.yaml routing many models over many endpoints.
    GenConfig(fleet::GenConfigArgs),
    /// A bare actix-web + awc relay to one upstream: the floor of the crates switchyard is
    /// built on, for side-by-side benches (no JSON, routing, log or metrics).
    FloorProxy(floor::FloorArgs),
    /// Redraw the HTML report from a JSON report.
    Html {
        json: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Scenario file (YAML); flags given as well override its settings.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Server root, e.g. http://127.0.0.1:8080 (paths such as /v1/chat/completions are added).
    /// Repeat it (or use --targets-file) to spread requests over several servers in turn.
    #[arg(long = "target", short = 't')]
    targets: Vec<String>,
    /// A file of targets, one a line (e.g. the URLs `fleet --urls-out` wrote).
    #[arg(long)]
    targets_file: Option<PathBuf>,
    /// Scenario kind, optionally weighted: chat, chat_stream, embeddings, speech,
    /// transcription, images, video, get (GET /v1/models); e.g. `--scenario chat:3 --scenario chat_stream:1`.
    #[arg(long = "scenario", short = 's')]
    scenarios: Vec<String>,
    /// Open loop: requests per second (coordinated-omission-safe timing).
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop: concurrent connections, each sending as soon as its previous answer ends.
    #[arg(long, short = 'c')]
    concurrency: Option<u32>,
    /// Closed loop: start the connections evenly over this long (e.g. 500ms) instead of all at
    /// once; equal-length streams started together stay in step and arrive in bursts.
    #[arg(long)]
    spread: Option<String>,
    /// Open loop: cap on requests in flight (arrivals wait, latency still counts).
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: u32,
    /// How long to send, e.g. 30s, 2m (default 10s unless --requests is given).
    #[arg(long, short = 'd')]
    duration: Option<String>,
    /// Stop after this many requests.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Per-request timeout (whole exchange, including video polling).
    #[arg(long)]
    timeout: Option<String>,
    /// How long in-flight requests may finish after sending stops.
    #[arg(long, default_value = "30s")]
    drain: String,
    /// Generator threads (each with its own runtime and connection pool).
    #[arg(long)]
    threads: Option<usize>,
    /// Model for flag-given scenarios.
    #[arg(long, short = 'm')]
    model: Option<String>,
    /// Spread requests over MODEL-00000 … MODEL-(N-1), as `gen-config` names them.
    #[arg(long)]
    model_pool: Option<u32>,
    #[arg(long)]
    max_tokens: Option<u32>,
    #[arg(long)]
    prompt_words: Option<usize>,
    /// Chat: distinct questions after one of N shared system prompts (0: no shared prefix).
    #[arg(long)]
    shared_prefixes: Option<u32>,
    /// Words per shared system prompt (default 400).
    #[arg(long)]
    prefix_words: Option<usize>,
    /// Upload size for transcription, e.g. 20MiB.
    #[arg(long)]
    file_size: Option<String>,
    /// Video status poll interval.
    #[arg(long)]
    poll_interval: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the HTML report (inline SVG charts) here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// A name for this run in the reports.
    #[arg(long)]
    label: Option<String>,
    /// Seed of the scenario mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress bar and no table (reports are still written).
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Allow targets that are not loopback. Load a server only if you own it.
    #[arg(long)]
    allow_non_loopback: bool,
    /// Client key sent as `Authorization: Bearer <KEY>` (a router with client keys).
    #[arg(long)]
    api_key: Option<String>,
    /// An extra request header, `NAME: VALUE`; repeat it. For gateways that route on headers
    /// (Portkey's `x-portkey-provider`, bench 8).
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    headers: Vec<(String, String)>,
}

/// `NAME: VALUE`, spaces around the colon trimmed. Checked here as HTTP would, because awc
/// panics on an invalid default header instead of returning an error.
fn parse_header(s: &str) -> Result<(String, String), String> {
    use awc::http::header::{HeaderName, HeaderValue};
    let (name, value) = s
        .split_once(':')
        .map(|(n, v)| (n.trim(), v.trim()))
        .ok_or_else(|| format!("expected NAME: VALUE, got {s:?}"))?;
    HeaderName::try_from(name).map_err(|e| format!("header name {name:?}: {e}"))?;
    HeaderValue::try_from(value).map_err(|e| format!("header value of {name}: {e}"))?;
    Ok((name.to_string(), value.to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Fleet(args) => fleet::run_fleet(*args),
        Command::GenConfig(args) => fleet::gen_config(&args),
        Command::FloorProxy(args) => floor::run_floor(args),
        Command::Html { json, out } => html_from_json(&json, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn html_from_json(json: &PathBuf, out: &PathBuf) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let r: report::Report = serde_json::from_str(&text).context("not a switchyard-load report")?;
    std::fs::write(out, report::html::render(&r))
        .with_context(|| format!("writing {}", out.display()))
}

/// Flags win over the file; the file wins over defaults.
fn build_plan(args: &RunArgs) -> anyhow::Result<Plan> {
    let file = match &args.file {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            FileSpec::parse(&text).with_context(|| format!("in {}", p.display()))?
        }
        None => FileSpec::default(),
    };
    let mut raw_targets = args.targets.clone();
    if let Some(f) = &args.targets_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        raw_targets.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    if raw_targets.is_empty() {
        raw_targets.extend(file.target.clone());
    }
    if raw_targets.is_empty() {
        bail!("no target: give --target http://127.0.0.1:PORT");
    }
    let targets = raw_targets
        .iter()
        .map(|t| guard::check_target(t, args.allow_non_loopback).map(|t| t.base))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut scenarios = if args.scenarios.is_empty() {
        file.scenarios.clone()
    } else {
        args.scenarios
            .iter()
            .map(|s| flag_scenario(s))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    for s in &mut scenarios {
        apply_overrides(s, args)?;
    }

    let mode = match (
        args.rate.or(file.rate),
        args.concurrency.or(file.concurrency),
    ) {
        (Some(rate), None) => Mode::Open {
            rate,
            max_in_flight: args.max_in_flight,
        },
        (Some(rate), Some(_)) if args.rate.is_some() => Mode::Open {
            rate,
            max_in_flight: args.max_in_flight,
        },
        (_, Some(c)) => Mode::Closed { concurrency: c },
        (None, None) => Mode::Closed { concurrency: 1 },
    };
    let requests = args.requests.or(file.requests);
    let duration = match &args.duration {
        Some(d) => Some(parse_duration(d)?),
        None => file.duration,
    };
    let duration = match (duration, requests) {
        (Some(d), _) => d,
        (None, Some(_)) => MAX_DURATION,
        (None, None) => DEFAULT_DURATION,
    };
    let timeout = match &args.timeout {
        Some(t) => parse_duration(t)?,
        None => file.timeout.unwrap_or(Duration::from_secs(60)),
    };
    let plan = Plan {
        target: targets[0].clone(),
        targets,
        mode,
        duration,
        requests,
        timeout,
        drain: parse_duration(&args.drain)?,
        threads: args.threads.or(file.threads).unwrap_or(1),
        scenarios,
        label: args.label.clone().or(file.label),
        seed: args.seed,
        api_key: args.api_key.clone(),
        headers: args.headers.clone(),
        spread: match &args.spread {
            Some(d) => parse_duration(d)?,
            None => Duration::ZERO,
        },
    };
    plan.validate()?;
    Ok(plan)
}

/// `KIND` or `KIND:WEIGHT`.
fn flag_scenario(s: &str) -> anyhow::Result<ScenarioSpec> {
    let (kind, weight) = match s.split_once(':') {
        Some((k, w)) => (
            k,
            w.trim()
                .parse::<u32>()
                .with_context(|| format!("bad weight in --scenario {s:?}"))?,
        ),
        None => (s, 1),
    };
    let mut spec = ScenarioSpec::new(Kind::parse(kind)?);
    spec.weight = weight;
    Ok(spec)
}

fn apply_overrides(s: &mut ScenarioSpec, a: &RunArgs) -> anyhow::Result<()> {
    if let Some(m) = &a.model {
        s.model = m.clone();
    }
    if let Some(n) = a.model_pool {
        s.model_pool = Some(n);
    }
    if let Some(t) = a.max_tokens {
        s.max_tokens = Some(t);
    }
    if let Some(w) = a.prompt_words {
        s.prompt_words = w;
    }
    if let Some(n) = a.shared_prefixes {
        s.shared_prefixes = Some(n);
    }
    if let Some(w) = a.prefix_words {
        s.prefix_words = w;
    }
    if let Some(f) = &a.file_size {
        s.file_bytes = parse_size(f)?;
    }
    if let Some(p) = &a.poll_interval {
        s.poll_interval = parse_duration(p)?;
    }
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let plan = build_plan(&args)?;
    if !args.quiet {
        for s in &plan.scenarios {
            let p = scenario::Prepared::new(s, &plan.targets);
            eprintln!("scenario {}", scenario::describe(&p));
        }
    }
    let result = engine::run(&plan, args.quiet)?;
    let rep = report::Report::build(&plan, &result);
    if !args.quiet {
        print!("{}", rep.table());
    }
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&rep)?;
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.html {
        std::fs::write(p, report::html::render(&rep))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> RunArgs {
        let mut v = vec!["switchyard-load", "run"];
        v.extend_from_slice(list);
        match Cli::try_parse_from(v).map(|c| c.command) {
            Ok(Command::Run(a)) => *a,
            _ => panic!("run args did not parse: {list:?}"),
        }
    }

    #[test]
    fn flags_make_a_bounded_open_loop_plan() {
        let p = build_plan(&args(&[
            "-t",
            "http://127.0.0.1:9",
            "-s",
            "chat:3",
            "-s",
            "transcription",
            "--rate",
            "200",
            "-d",
            "2s",
            "--file-size",
            "2MiB",
        ]))
        .expect("plan");
        assert!(matches!(p.mode, Mode::Open { rate, .. } if rate == 200.0));
        assert_eq!(p.duration, Duration::from_secs(2));
        assert_eq!(p.scenarios[0].weight, 3);
        assert_eq!(p.scenarios[1].file_bytes, 2 << 20);
    }

    #[test]
    fn several_targets_each_pass_the_guard() {
        let p = build_plan(&args(&[
            "-t",
            "http://127.0.0.1:9",
            "-t",
            "http://localhost:10/",
            "-s",
            "chat",
        ]))
        .expect("plan");
        assert_eq!(p.targets, ["http://127.0.0.1:9", "http://localhost:10"]);
        assert!(build_plan(&args(&[
            "-t",
            "http://127.0.0.1:9",
            "-t",
            "http://10.0.0.1:9",
            "-s",
            "chat"
        ]))
        .is_err());
    }

    #[test]
    fn count_only_runs_are_still_capped_in_time() {
        let p = build_plan(&args(&[
            "-t",
            "http://localhost:9",
            "-s",
            "chat",
            "-n",
            "10",
        ]))
        .expect("plan");
        assert_eq!(p.requests, Some(10));
        assert_eq!(p.duration, MAX_DURATION);
        assert!(matches!(p.mode, Mode::Closed { concurrency: 1 }));
    }

    #[test]
    fn refuses_remote_targets_and_missing_scenarios() {
        let e = build_plan(&args(&["-t", "http://10.1.2.3:80", "-s", "chat"]))
            .expect_err("remote target");
        assert!(e.to_string().contains("not loopback"), "{e}");
        assert!(build_plan(&args(&["-t", "http://127.0.0.1:9"])).is_err());
        assert!(build_plan(&args(&["-t", "http://127.0.0.1:9", "-s", "warp"])).is_err());
        assert!(build_plan(&args(&["-t", "http://127.0.0.1:9", "-s", "chat:x"])).is_err());
    }

    #[test]
    fn extra_headers_are_name_colon_value_and_checked_before_the_run() {
        let good = [
            (
                "x-portkey-provider: openai",
                ("x-portkey-provider", "openai"),
            ),
            ("X-A:b", ("X-A", "b")),
            (
                "x-portkey-custom-host: http://127.0.0.1:9/v1",
                ("x-portkey-custom-host", "http://127.0.0.1:9/v1"),
            ),
            ("x-empty:", ("x-empty", "")),
        ];
        for (input, (name, value)) in good {
            assert_eq!(
                parse_header(input),
                Ok((name.to_string(), value.to_string())),
                "{input}"
            );
        }
        for bad in ["no-colon", ": value", "bad name: v", "x-a: line\nbreak"] {
            assert!(parse_header(bad).is_err(), "{bad:?} accepted");
        }
        let p = build_plan(&args(&[
            "-t",
            "http://127.0.0.1:9",
            "-s",
            "chat",
            "-H",
            "x-a: 1",
            "--header",
            "x-b: 2",
        ]))
        .expect("plan");
        assert_eq!(
            p.headers,
            vec![("x-a".into(), "1".into()), ("x-b".into(), "2".into())]
        );
    }
}
