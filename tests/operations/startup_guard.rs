//! What `serve` refuses at start: an open `/v1` on a reachable address nobody decided on,
//! and keys too short to be secret. Each case starts the real binary (port 0) and either reads
//! the address it listens on or its exit status and message.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// Everything from the developer's environment that would change the verdict.
const CLEARED: &[&str] = &[
    "HOST",
    "API_KEYS",
    "ADMIN_API_KEY",
    "ADMIN_API_KEYS",
    "KEYS_FILE",
    "ALLOW_UNAUTHENTICATED",
];

/// How a start ended: the address it listens on, or its exit code and stderr.
#[derive(Debug)]
enum Started {
    Listening(String),
    Refused(Option<i32>, String),
}

/// `switchyard <args>` in a fresh directory holding `models.yaml` (one chat model), with
/// `env` set over an environment cleared of [`CLEARED`]. `--config` is added for the
/// subcommands that read one (the demo brings its own models).
fn switchyard(args: &[&str], env: &[(&str, &str)]) -> (Command, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models.yaml");
    std::fs::write(&models, chat_model_yaml("m", &[("vllm", &dead_url(), 1.0)])).expect("write");
    let mut cmd = Command::new(bin("switchyard"));
    cmd.current_dir(dir.path()).args(args);
    if matches!(args.first(), Some(&"serve" | &"check-config")) {
        cmd.arg("--config").arg(&models);
    }
    for name in CLEARED {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd, dir)
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Started {
    let (mut cmd, _dir) = switchyard(args, env);
    cmd.args(["--port", "0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("switchyard listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let started = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => Started::Listening(url),
        Err(_) => {
            // The sender is dropped when stdout closes: the process has ended.
            let code = child.wait().ok().and_then(|s| s.code());
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            Started::Refused(code, stderr)
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    started
}

/// The IP part of `http://IP:PORT`.
fn listen_ip(url: &str) -> &str {
    let authority = url.trim_start_matches("http://");
    authority
        .rsplit_once(':')
        .map_or(authority, |(ip, _)| ip)
        .trim_matches(['[', ']'])
}

#[test]
fn an_open_router_listens_where_the_operator_decided() {
    const KEYS: (&str, &str) = ("API_KEYS", "client-key-0001");
    const ALLOW: (&str, &str) = ("ALLOW_UNAUTHENTICATED", "true");
    const EXPLICIT_ANY: &[&str] = &["serve", "--host", "0.0.0.0"];
    /// Environment variables set for one case.
    type Env = &'static [(&'static str, &'static str)];
    // (what, args, env, the address it listens on or None for a refusal naming the setting)
    let cases: &[(&str, &[&str], Env, Option<&str>)] = &[
        ("no keys, default host", &["serve"], &[], Some("127.0.0.1")),
        ("no keys, --host 0.0.0.0", EXPLICIT_ANY, &[], None),
        (
            "no keys, HOST=0.0.0.0",
            &["serve"],
            &[("HOST", "0.0.0.0")],
            None,
        ),
        (
            "no keys, 0.0.0.0, allowed",
            EXPLICIT_ANY,
            &[ALLOW],
            Some("0.0.0.0"),
        ),
        (
            "no keys, default host, allowed",
            &["serve"],
            &[ALLOW],
            Some("0.0.0.0"),
        ),
        (
            "no keys, --host localhost",
            &["serve", "--host", "localhost"],
            &[],
            Some("loopback"),
        ),
        (
            "no keys, HOST=127.0.0.1",
            &["serve"],
            &[("HOST", "127.0.0.1")],
            Some("127.0.0.1"),
        ),
        (
            "keys, --host 0.0.0.0",
            EXPLICIT_ANY,
            &[KEYS],
            Some("0.0.0.0"),
        ),
        ("keys, default host", &["serve"], &[KEYS], Some("0.0.0.0")),
        (
            "demo, --host 0.0.0.0",
            &["demo", "--host", "0.0.0.0"],
            &[],
            Some("0.0.0.0"),
        ),
    ];
    for (what, args, env, expected) in cases {
        let started = run(args, env);
        match (expected, &started) {
            (Some("loopback"), Started::Listening(url)) => {
                let ip: std::net::IpAddr = listen_ip(url).parse().expect("an IP");
                assert!(ip.is_loopback(), "{what}: {url}");
            }
            (Some(ip), Started::Listening(url)) => assert_eq!(listen_ip(url), *ip, "{what}"),
            (None, Started::Refused(code, stderr)) => {
                assert_eq!(*code, Some(1), "{what}: {stderr}");
                assert!(stderr.contains("ALLOW_UNAUTHENTICATED"), "{what}: {stderr}");
                assert!(stderr.contains("API_KEYS"), "{what}: {stderr}");
            }
            _ => panic!("{what}: expected {expected:?}, got {started:?}"),
        }
    }
}

/// Keys shorter than 8 characters are refused from every variable (as in the keys file), and
/// a malformed ALLOW_UNAUTHENTICATED is not read as either answer: `serve` exits 1 and
/// `check-config` lists the problem, without printing the key.
#[test]
fn short_keys_and_a_malformed_switch_stop_serve_and_check_config() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "ADMIN_API_KEY",
            "x",
            "ADMIN_API_KEY: key #1 must be at least 8 characters",
        ),
        (
            "ADMIN_API_KEYS",
            "admin-key-01,adm",
            "ADMIN_API_KEYS: key #2 must be at least 8",
        ),
        (
            "API_KEYS",
            "client-key-01,abc",
            "API_KEYS: key #2 must be at least 8 characters",
        ),
        (
            "ALLOW_UNAUTHENTICATED",
            "maybe",
            "ALLOW_UNAUTHENTICATED=\"maybe\"",
        ),
    ];
    for (var, value, message) in cases {
        match run(&["serve"], &[(var, value)]) {
            Started::Refused(code, stderr) => {
                assert_eq!(code, Some(1), "{var}={value}: {stderr}");
                assert!(stderr.contains(message), "{var}={value}: {stderr}");
            }
            started => panic!("{var}={value} started: {started:?}"),
        }
        let (mut cmd, _dir) = switchyard(&["check-config"], &[(var, value)]);
        let out = cmd.output().expect("check-config");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{var}={value}: {stdout}");
        assert!(stdout.contains(message), "{var}={value}: {stdout}");
    }
}
