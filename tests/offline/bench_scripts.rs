//! The load/bench scripts stay valid shell: every one parses (`bash -n`) and passes shellcheck
//! at warning level where it is installed, and the peers bench (08) answers its options that
//! install and measure nothing: help, pinned versions, and "not run: reason" for each peer that
//! the cache lacks or SKIP names. Running the benches themselves is too long for a test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("load/bench")
}

/// Every script a person runs (lib.sh is sourced by them, and checked through them).
fn runnable_scripts() -> Vec<PathBuf> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(bench_dir())
        .expect("load/bench")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh") && !p.ends_with("lib.sh"))
        .collect();
    scripts.sort();
    scripts
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn every_bench_script_parses() {
    let scripts = runnable_scripts();
    assert!(
        scripts.iter().any(|s| s.ends_with("08-peers.sh")),
        "08-peers.sh missing from {scripts:?}"
    );
    for script in scripts.iter().chain([&bench_dir().join("lib.sh")]) {
        let out = Command::new("bash")
            .arg("-n")
            .arg(script)
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{}:\n{}",
            script.display(),
            text(&out)
        );
    }
}

#[test]
fn bench_scripts_pass_shellcheck_when_installed() {
    if !on_path("shellcheck") {
        println!("SKIPPED shellcheck: not on PATH (apt-get install shellcheck)");
        return;
    }
    for script in runnable_scripts() {
        let out = Command::new("shellcheck")
            .args(["-x", "-S", "warning", "-P"])
            .arg(bench_dir())
            .arg(&script)
            .output()
            .expect("shellcheck");
        assert!(
            out.status.success(),
            "{}:\n{}",
            script.display(),
            text(&out)
        );
    }
}

/// Runs 08-peers.sh with a fresh, empty install cache and no permission to install.
fn peers(args: &[&str], env: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let cache = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg(bench_dir().join("08-peers.sh"))
        .args(args)
        .env("SWITCHYARD_PEERS_DIR", cache.path().join("peers"))
        .env("NO_INSTALL", "1")
        .env("RESULTS", cache.path().join("results.md"))
        .envs(env.iter().copied())
        .output()
        .expect("08-peers.sh");
    (out, cache)
}

#[test]
fn peers_bench_options_that_measure_nothing() {
    let pins = [
        "vllm-router==0.1.",
        "@portkey-ai/gateway@1.",
        "litellm[proxy]==1.",
    ];
    // (arguments, SKIP, exit code, lines the output must hold)
    let cases: &[(&[&str], &str, i32, &[&str])] = &[
        (
            &["--help"],
            "",
            0,
            &["Usage: load/bench/08-peers.sh", "SKIP", "ROUNDS", "RATE"],
        ),
        (&["-h"], "", 0, &["Usage: load/bench/08-peers.sh"]),
        (
            &["--versions"],
            "",
            0,
            &[
                "vllm-router: not installed in",
                "portkey: not installed in",
                "litellm: not installed in",
            ],
        ),
        (
            &["--install-only"],
            "",
            0,
            &[
                "vllm-router: not installed in",
                "(NO_INSTALL=1)",
                "litellm: not installed in",
            ],
        ),
        (
            &["--install-only"],
            "litellm,portkey",
            0,
            &[
                "litellm: skipped (SKIP)",
                "portkey: skipped (SKIP)",
                "vllm-router: not installed in",
            ],
        ),
        (&["--bogus"], "", 2, &["unknown option --bogus"]),
    ];
    for (args, skip, code, wanted) in cases {
        let (out, cache) = peers(args, &[("SKIP", skip)]);
        let report = text(&out);
        assert_eq!(out.status.code(), Some(*code), "{args:?}:\n{report}");
        for line in *wanted {
            assert!(report.contains(line), "{args:?} lacks {line:?}:\n{report}");
        }
        if args
            .iter()
            .any(|a| a.starts_with("--versions") || a.starts_with("--install"))
        {
            for pin in pins {
                assert!(
                    report.contains(pin),
                    "{args:?} lacks the pin {pin:?}:\n{report}"
                );
            }
        }
        // Nothing installed, nothing written: these options only report.
        assert!(
            !cache.path().join("peers").exists() && !cache.path().join("results.md").exists(),
            "{args:?} wrote into the cache or the results file"
        );
    }
}

/// The script rewrites the table between the markers; the README's first screen links to it.
#[test]
fn peers_table_has_its_place_in_the_docs_and_a_link_from_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/benchmarks.md")).expect("benchmarks.md");
    let section = docs
        .split("## Peers side by side (bench 8)")
        .nth(1)
        .expect("section 'Peers side by side (bench 8)' in docs/benchmarks.md");
    let start = section.find("<!-- bench8:start -->").expect("start marker");
    let end = section.find("<!-- bench8:end -->").expect("end marker");
    assert!(start < end, "markers out of order");
    let table = &section[start..end];
    for row in [
        "switchyard",
        "vLLM's router",
        "Portkey",
        "LiteLLM",
        "Bifrost",
    ] {
        assert!(table.contains(row), "the bench 8 table has no {row} row");
    }
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let first_screen: String = readme.lines().take(40).collect::<Vec<_>>().join("\n");
    assert!(
        first_screen.contains("docs/benchmarks.md#peers-side-by-side-bench-8"),
        "README's first 40 lines do not link the peers table"
    );
}
