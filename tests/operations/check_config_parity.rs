//! `check-config` fails exactly where `serve` fails before binding: the same environment gives
//! the same `error:` lines (check-config on stdout, serve on stderr), from every part of the
//! environment `serve` reads — database, request log, auth switches, listen address and its
//! exposure decision, keys, log format, lenient mode — without check-config binding or
//! connecting anything.

use crate::common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A password that must never be printed back.
const PASSWORD: &str = "hunter2-db-password";

/// `switchyard <args> --config models.yaml` in a fresh directory, with only `env` set (the
/// developer's environment could change the verdict).
fn switchyard(args: &[&str], env: &[(&str, &str)]) -> (Command, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models.yaml");
    std::fs::write(&models, chat_model_yaml("m", &[("vllm", &dead_url(), 1.0)])).expect("write");
    let mut cmd = Command::new(bin("switchyard"));
    cmd.current_dir(dir.path())
        .args(args)
        .arg("--config")
        .arg(&models)
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (cmd, dir)
}

/// The `error:` lines of one output, sorted (the order of independent checks is not promised).
fn error_lines(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = output
        .lines()
        .filter(|l| l.starts_with("error: "))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// check-config's exit code and stdout.
fn check_config(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let (mut cmd, _dir) = switchyard(&[&["check-config"], args].concat(), env);
    let out = cmd.output().expect("run check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// serve's exit code and stderr; `None` as the code when it was still running (it started)
/// after a few seconds.
fn serve(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let (mut cmd, _dir) = switchyard(&[&["serve", "--port", "0"], args].concat(), env);
    let mut child = cmd.spawn().expect("spawn serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (code, stderr)
}

#[test]
fn check_config_fails_exactly_as_serve_does() {
    const PG_OFF: (&str, &str) = ("USE_SQLITE_LOG", "false");
    let bad_port_url = format!("postgres://app:{PASSWORD}@db:notaport/app");
    let bad_sslmode_url = format!("postgres://app:{PASSWORD}@db/app?sslmode=sometimes");
    // (environment, extra args, a piece of each expected error line). Before one
    // `Settings::from_env`, check-config passed every case but the last two: the database and
    // request-log values were read only by serve, HOST's exposure decided only by serve, and
    // METRICS_PUBLIC / LOG_FORMAT / OFFLOAD / PORT not validated at all.
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [&'a str], &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            vec![PG_OFF, ("DATABASE_URL", &bad_port_url)],
            &[],
            &["DATABASE_URL is not a valid URL: invalid port number"],
        ),
        (
            vec![PG_OFF, ("DATABASE_URL", &bad_sslmode_url)],
            &[],
            &["DATABASE_URL: the PostgreSQL driver refuses its options"],
        ),
        (
            vec![PG_OFF],
            &[],
            &["USE_SQLITE_LOG=false needs DATABASE_URL"],
        ),
        (
            vec![("USE_SQLITE_LOG", "nope")],
            &[],
            &["USE_SQLITE_LOG=\"nope\""],
        ),
        (
            vec![("DATABASE_MAX_CONNECTIONS", "0")],
            &[],
            &["DATABASE_MAX_CONNECTIONS=\"0\""],
        ),
        (
            vec![("LOG_BATCH_SIZE", "0")],
            &[],
            &["LOG_BATCH_SIZE=\"0\""],
        ),
        (
            vec![("REQUEST_LOG_ENABLED", "perhaps")],
            &[],
            &["REQUEST_LOG_ENABLED=\"perhaps\""],
        ),
        (
            vec![("SHUTDOWN_GRACE_SECONDS", "soon")],
            &[],
            &["SHUTDOWN_GRACE_SECONDS=\"soon\""],
        ),
        (
            vec![("METRICS_PUBLIC", "ture")],
            &[],
            &["METRICS_PUBLIC=\"ture\""],
        ),
        (vec![("OFFLOAD", "2")], &[], &["OFFLOAD=\"2\""]),
        (vec![("PORT", "http")], &[], &["PORT=\"http\""]),
        (vec![("LOG_FORMAT", "xml")], &[], &["LOG_FORMAT=\"xml\""]),
        (vec![("WORKERS", "many")], &[], &["WORKERS=\"many\""]),
        (
            vec![("HOST", "0.0.0.0")],
            &[],
            &["refusing to listen on 0.0.0.0"],
        ),
        (
            vec![],
            &["--host", "0.0.0.0"],
            &["refusing to listen on 0.0.0.0"],
        ),
        (
            vec![("CONFIG_LENIENT", "perhaps")],
            &[],
            &["CONFIG_LENIENT=\"perhaps\""],
        ),
        // Every part at once: all are listed, none hides another.
        (
            vec![
                PG_OFF,
                ("DATABASE_URL", &bad_port_url),
                ("LOG_BATCH_SIZE", "0"),
                ("METRICS_PUBLIC", "ture"),
                ("PORT", "http"),
                ("LOG_FORMAT", "xml"),
                ("MAX_UPLOAD_MB", "lots"),
                ("ALLOW_UNAUTHENTICATED", "maybe"),
            ],
            &[],
            &[
                "DATABASE_URL is not a valid URL",
                "LOG_BATCH_SIZE",
                "METRICS_PUBLIC",
                "PORT",
                "LOG_FORMAT",
                "MAX_UPLOAD_MB",
                "ALLOW_UNAUTHENTICATED",
            ],
        ),
        // Already checked by both before: keys, and ALLOW_UNAUTHENTICATED.
        (
            vec![("API_KEYS", "abc")],
            &[],
            &["API_KEYS: key #1 must be at least 8 characters"],
        ),
        (
            vec![("ALLOW_UNAUTHENTICATED", "maybe")],
            &[],
            &["ALLOW_UNAUTHENTICATED=\"maybe\""],
        ),
    ];
    for (env, args, expected) in &cases {
        let what = format!("{env:?} {args:?}");
        let (check_code, stdout) = check_config(args, env);
        let (serve_code, stderr) = serve(args, env);
        assert_eq!(check_code, Some(1), "check-config {what}: {stdout}");
        assert_eq!(serve_code, Some(1), "serve {what}: {stderr}");
        let (check_errors, serve_errors) = (error_lines(&stdout), error_lines(&stderr));
        assert_eq!(check_errors, serve_errors, "{what}");
        assert_eq!(
            check_errors.len(),
            expected.len(),
            "{what}: {check_errors:#?}"
        );
        for piece in expected.iter() {
            assert!(
                check_errors.iter().any(|l| l.contains(piece)),
                "{what}: no error with {piece:?}: {check_errors:#?}"
            );
        }
        assert!(
            !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
            "{what}"
        );
    }
}

#[test]
fn a_valid_environment_passes_and_check_config_says_where_serve_would_listen() {
    /// (environment, args, the listen line)
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
        &'static str,
    );
    let cases: &[Case] = &[
        (
            &[],
            &[],
            "listen: 127.0.0.1:8080 (no client key: open on loopback only)",
        ),
        (
            &[("API_KEYS", "client-key-0001"), ("PORT", "9000")],
            &[],
            "listen: 0.0.0.0:9000 (client key required)",
        ),
        (
            &[("ALLOW_UNAUTHENTICATED", "true"), ("HOST", "127.0.0.1")],
            &["--host", "0.0.0.0", "--port", "81"],
            "listen: 0.0.0.0:81 (no client key: OPEN to the network",
        ),
        (
            &[
                ("USE_SQLITE_LOG", "false"),
                ("DATABASE_URL", "postgres://app:pw@db.invalid:5432/app"),
            ],
            &[],
            "listen: 127.0.0.1:8080",
        ),
    ];
    for (env, args, listen) in cases {
        let (code, stdout) = check_config(args, env);
        assert_eq!(code, Some(0), "{env:?} {args:?}: {stdout}");
        assert!(stdout.contains("configuration OK: 1 models"), "{stdout}");
        assert!(stdout.contains(listen), "{env:?} {args:?}: {stdout}");
    }
}
