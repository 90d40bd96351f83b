//! The monitoring files in `deploy/`: every PromQL expression of the Grafana dashboard and of the
//! Prometheus rules names only metrics the router exports (or recording rules defined next to
//! them), and `promtool` accepts the rules and passes their unit tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const RULES: &str = "deploy/prometheus/switchyard-rules.yml";
const ALERTS: &str = "deploy/prometheus/switchyard-alerts.yml";
const ALERT_TESTS: &str = "deploy/prometheus/switchyard-alerts.test.yml";
const DASHBOARD: &str = "deploy/grafana/switchyard-dashboard.json";

/// Series Prometheus itself makes for every scrape target.
const SCRAPE_SERIES: &[&str] = &["up"];

/// Metric names as they appear on the wire: every `switchyard_*` name the metrics module
/// defines, and a histogram's `_bucket`, `_sum` and `_count` series. The names are read from
/// the module's source because a labelled metric nothing has observed yet is absent from a
/// scrape (video jobs, costs): the source is the complete list.
fn exported() -> BTreeSet<String> {
    let source = read("src/metrics/mod.rs");
    let mut names = BTreeSet::new();
    // A definition is `helper(&r, "switchyard_…", …)` or `Type::new("switchyard_…", …)`: the
    // name is the first string literal after the call opens. Histograms are made by `histogram(`.
    for (call, is_histogram) in [
        ("counter(", false),
        ("fcounter(", false),
        ("gauge(", false),
        ("histogram(", true),
        ("int_gauge(", false),
        ("float_gauge(", false),
        ("IntGauge::new(", false),
        ("IntCounter::new(", false),
        ("c(", false),
        ("g(", false),
    ] {
        for (at, _) in source.match_indices(call) {
            let rest = &source[at + call.len()..];
            let Some(open) = rest.find('"') else { continue };
            if rest[..open].contains(')') {
                continue; // not a definition (the literal belongs to a later call)
            }
            let name: String = rest[open + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.starts_with("switchyard_") {
                continue;
            }
            if is_histogram {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            names.insert(name);
        }
    }
    names
}

#[test]
fn the_exported_set_is_read_from_the_source() {
    let names = exported();
    // A sample of each kind of definition: if the parsing breaks, this says so before the
    // other checks pass vacuously.
    for name in [
        "switchyard_requests_total",
        "switchyard_time_to_first_token_seconds_bucket",
        "switchyard_cost_usd_total",
        "switchyard_video_jobs",
        "switchyard_in_flight_requests",
        "switchyard_backend_up",
        "switchyard_route_weight",
        "switchyard_request_log_write_errors_total",
        "switchyard_request_log_spill_bytes",
    ] {
        assert!(names.contains(name), "{name} not found in {names:?}");
    }
    assert!(!names.contains("switchyard_requests_total_bucket"));
}

/// Metric-like identifiers in a PromQL expression, outside string literals (label values).
fn metric_names(expr: &str) -> Vec<String> {
    let mut unquoted = String::new();
    let mut quote = None;
    for c in expr.chars() {
        match (quote, c) {
            (None, '"' | '\'' | '`') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, _) => unquoted.push(c),
            _ => {}
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("switchyard") || SCRAPE_SERIES.contains(w))
        .map(str::to_string)
        .collect()
}

#[test]
fn metric_names_are_found_outside_label_values() {
    let cases: &[(&str, &[&str])] = &[
        (
            r#"sum by (model) (rate(switchyard_requests_total{job="switchyard_x"}[5m]))"#,
            &["switchyard_requests_total"],
        ),
        (
            "switchyard:requests:rate5m > 0 and up == 1",
            &["switchyard:requests:rate5m", "up"],
        ),
        ("histogram_quantile(0.9, rate(x[1m]))", &[]),
    ];
    for (expr, want) in cases {
        assert_eq!(metric_names(expr), *want, "{expr}");
    }
}

fn yaml(path: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (name or alert, expr) of every rule in a rules file; and the recording rules' names.
fn rules(path: &str) -> Vec<(String, String, bool)> {
    let doc = yaml(path);
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr").to_string();
            match (rule["record"].as_str(), rule["alert"].as_str()) {
                (Some(record), _) => out.push((record.to_string(), expr, true)),
                (None, Some(alert)) => out.push((alert.to_string(), expr, false)),
                _ => panic!("{path}: a rule with neither record nor alert"),
            }
        }
    }
    out
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    let mut out = Vec::new();
    for panel in doc["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("target expr");
            out.push((title.to_string(), expr.to_string()));
        }
    }
    for var in doc["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(query) = var["query"]["query"].as_str() {
            out.push((format!("variable {}", var["name"]), query.to_string()));
        }
    }
    out
}

#[test]
fn every_rule_and_dashboard_expression_names_exported_metrics() {
    let exported = exported();
    let all_rules: Vec<_> = [RULES, ALERTS].iter().flat_map(|p| rules(p)).collect();
    let recorded: BTreeSet<String> = all_rules
        .iter()
        .filter(|(_, _, is_record)| *is_record)
        .map(|(name, _, _)| name.clone())
        .collect();
    let mut exprs: Vec<(String, String)> = all_rules
        .iter()
        .map(|(name, expr, _)| (format!("rule {name}"), expr.clone()))
        .collect();
    let dashboard = dashboard_exprs();
    assert!(dashboard.len() >= 20, "the dashboard lost its panels");
    exprs.extend(
        dashboard
            .iter()
            .map(|(t, e)| (format!("panel {t}"), e.clone())),
    );
    let mut problems = Vec::new();
    for (what, expr) in &exprs {
        let names = metric_names(expr);
        if names.is_empty() {
            problems.push(format!("{what}: names no switchyard metric: {expr}"));
        }
        for name in names {
            let known = exported.contains(&name)
                || recorded.contains(&name)
                || SCRAPE_SERIES.contains(&name.as_str());
            if !known {
                problems.push(format!("{what}: `{name}` is not exported by the router"));
            }
        }
    }
    // The dashboard works without the recording rules loaded: raw metrics only.
    for (title, expr) in &dashboard {
        if metric_names(expr).iter().any(|n| n.contains(':')) {
            problems.push(format!("panel {title}: uses a recording rule: {expr}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_dashboard_covers_what_operators_watch() {
    let dashboard = dashboard_exprs();
    let used: BTreeSet<String> = dashboard
        .iter()
        .flat_map(|(_, e)| metric_names(e))
        .collect();
    for name in [
        "switchyard_requests_total",
        "switchyard_upstream_errors_total",
        "switchyard_request_duration_seconds_bucket",
        "switchyard_time_to_first_token_seconds_bucket",
        "switchyard_tokens_total",
        "switchyard_cost_usd_total",
        "switchyard_backend_up",
        "switchyard_backend_in_flight",
        "switchyard_route_weight",
        "switchyard_video_jobs",
        "switchyard_request_log_spill_bytes",
    ] {
        assert!(used.contains(name), "no panel shows {name}");
    }
}

/// `promtool` from Debian's `prometheus` package; `None` (and a note why the test does not
/// run) when it is not installed.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: promtool not found (apt-get install prometheus)");
    }
    found
}

fn run_promtool(promtool: &Path, args: &[&str]) {
    let out = Command::new(promtool)
        .current_dir(repo("deploy/prometheus"))
        .args(args)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let Some(promtool) = promtool() else { return };
    let file = |p: &str| {
        Path::new(p)
            .file_name()
            .and_then(|f| f.to_str())
            .map(str::to_string)
    };
    let (rules, alerts, tests) = (
        file(RULES).expect("rules file name"),
        file(ALERTS).expect("alerts file name"),
        file(ALERT_TESTS).expect("tests file name"),
    );
    run_promtool(&promtool, &["check", "rules", &rules, &alerts]);
    run_promtool(&promtool, &["test", "rules", &tests]);
}
