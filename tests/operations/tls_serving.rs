//! The router serving HTTPS itself (`TLS_CERT_FILE`/`TLS_KEY_FILE`): HTTP/2 through ALPN with
//! chat, SSE streams, uploads and large bodies over it; the certificate replaced on SIGHUP and
//! `POST /admin/reload` while open streams go on; bad pairs refused at start and at reload; the
//! health check over HTTPS; an HTTP/2 client that stops reading (answers no PING) mid-body keeps
//! its request. Every CA and certificate is made here, at run time.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::http::Version;
use common::*;
use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "tls-admin-key-0123456789abcdef";

/// A test CA that signs server certificates for `localhost` and 127.0.0.1.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its private key, both PEM.
struct ServerPair {
    cert: String,
    key: String,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        TestCa { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn server_pair(&self) -> ServerPair {
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        ServerPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Where the router reads its pair; [`TlsFiles::put`] replaces the files' contents.
struct TlsFiles {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsFiles {
    fn new(pair: &ServerPair) -> TlsFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TlsFiles {
            cert: dir.path().join("server.crt"),
            key: dir.path().join("server.key"),
            _dir: dir,
        };
        files.put(&pair.cert, &pair.key);
        files
    }

    fn put(&self, cert: &str, key: &str) {
        std::fs::write(&self.cert, cert).expect("write cert");
        std::fs::write(&self.key, key).expect("write key");
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TLS_CERT_FILE", self.cert.display().to_string()),
            ("TLS_KEY_FILE", self.key.display().to_string()),
        ]
    }
}

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

/// A client TLS configuration trusting only `ca_pem`, offering `alpn`.
fn client_tls_config(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM"))
        .expect("CA into the root store");
    let mut config = rustls::ClientConfig::builder_with_provider(switchyard::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A client trusting only `ca_pem`, offering `alpn`. Each call has its own connection pool,
/// so its first request is a new handshake.
fn tls_client(ca_pem: &str, alpn: &[&[u8]]) -> awc::Client {
    let config = client_tls_config(ca_pem, alpn);
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(config)))
        .timeout(Duration::from_secs(60))
        .finish()
}

/// `GET url` with a fresh client trusting `ca_pem`: the status, or the connection error.
async fn fresh_get(ca_pem: &str, url: &str) -> Result<u16, String> {
    tls_client(ca_pem, H2_AND_H1)
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn chat_yaml(mock: &Proc) -> String {
    chat_model_yaml("m", &[("vllm", &mock.url, 1.0)])
}

fn whisper_and_chat_yaml(mock: &Proc) -> String {
    format!(
        "{}  - id: stt\n    type: transcription\n    route:\n      - kind: whisper\n        base_url: \"{}\"\n",
        chat_yaml(mock),
        mock.url
    )
}

/// A streamed chat whose length the mock's `chunks` decides (`max_tokens` cuts it otherwise).
fn long_stream_body() -> Value {
    let mut body = chat_body("m", true);
    body["max_tokens"] = json!(1000);
    body
}

/// Until no endpoint is `starting` (its route would answer 503 `model_loading`): every mock
/// here is up, and a router may have several endpoints (one per kind on the same mock).
async fn wait_ready_over_tls(client: &awc::Client, router: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut resp) = client.get(format!("{router}/health")).send().await {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if body["endpoints"]["starting"].as_u64() == Some(0) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{router} never became ready");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

const BOUNDARY: &str = "----tlsboundary";

/// A transcription form with a `len`-byte file.
fn transcription_form(len: usize) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nstt\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    body.extend((0..len).map(|i| (i % 251) as u8));
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

#[actix_rt::test]
async fn https_serves_every_kind_of_request_over_http2_and_http1() {
    let mock =
        start_mock(json!({"chunks": 6, "chunk_interval_ms": 80, "max_body_bytes": 64 << 20}));
    let ca = TestCa::new("switchyard test CA");
    let files = TlsFiles::new(&ca.server_pair());
    let router = start_router(router_opts(&whisper_and_chat_yaml(&mock), files.env()));
    assert!(
        router.url.starts_with("https://127.0.0.1:"),
        "{}",
        router.url
    );
    let ca_pem = ca.pem();
    wait_ready_over_tls(&tls_client(&ca_pem, H2_AND_H1), &router.url).await;

    // (ALPN offered, HTTP version expected): h2 when the client offers it, else HTTP/1.1.
    for (alpn, version) in [(H2_AND_H1, Version::HTTP_2), (H1_ONLY, Version::HTTP_11)] {
        let client = tls_client(&ca_pem, alpn);
        let label = format!("{version:?}");

        // A plain chat completion.
        let mut resp = client
            .post(format!("{}/v1/chat/completions", router.url))
            .send_json(&chat_body("m", false))
            .await
            .expect("chat");
        assert_eq!(resp.version(), version, "{label}");
        let v: Value = resp.json().await.expect("chat JSON");
        assert_eq!(resp.status(), 200, "{label}: {v}");
        assert_eq!(v["object"], "chat.completion", "{label}: {v}");

        // SSE: every event, as it is produced (80 ms apart), not all at once at the end.
        let mut resp = client
            .post(format!("{}/v1/chat/completions", router.url))
            .send_json(&chat_body("m", true))
            .await
            .expect("stream");
        assert_eq!(resp.version(), version, "{label}");
        assert_eq!(resp.status(), 200, "{label}");
        let events = read_sse(&mut resp).await;
        assert_eq!(
            events.last().map(|e| e.1.as_str()),
            Some("[DONE]"),
            "{label}"
        );
        let content: Vec<_> = events
            .iter()
            .filter(|(_, data)| data.contains("\"content\""))
            .collect();
        assert!(content.len() >= 6, "{label}: {events:?}");
        let spread = content[content.len() - 1].0 - content[0].0;
        assert!(
            spread >= Duration::from_millis(300),
            "{label}: events arrived together ({spread:?})"
        );

        // A multipart upload of 3 MiB, every byte reaching the engine.
        let size = 3 << 20;
        let mut resp = client
            .post(format!("{}/v1/audio/transcriptions", router.url))
            .insert_header((
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            ))
            .send_body(transcription_form(size))
            .await
            .expect("upload");
        assert_eq!(resp.version(), version, "{label}");
        let v: Value = resp.json().await.expect("transcription JSON");
        assert_eq!(resp.status(), 200, "{label}: {v}");
        assert_eq!(v["mock"]["file_bytes"], size as u64, "{label}: {v}");

        // A large JSON body (8 MiB of prompt), beyond h2's flow-control windows.
        let mut big = chat_body("m", false);
        big["messages"][0]["content"] = json!("x".repeat(8 << 20));
        let mut resp = client
            .post(format!("{}/v1/chat/completions", router.url))
            .send_json(&big)
            .await
            .expect("large body");
        let v: Value = resp.json().await.expect("large body JSON");
        assert_eq!(resp.status(), 200, "{label}: {v}");
    }

    // A client that does not trust the serving CA is refused: the certificate is checked.
    let other = TestCa::new("another CA");
    let refused = fresh_get(&other.pem(), &format!("{}/health", router.url)).await;
    assert!(refused.is_err(), "{refused:?}");
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let plain_url = router.url.replacen("https://", "http://", 1);
    let plain = client().get(format!("{plain_url}/health")).send().await;
    assert!(!matches!(plain.map(|r| r.status().as_u16()), Ok(200)));
}

/// What curl (HTTP/2 through ALPN, the test CA as its only trust) sees, as an operator's check
/// would: the HTTP version and the streamed body. Skipped without curl.
#[actix_rt::test]
async fn curl_negotiates_http2_and_reads_a_stream() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl is not installed: skipped");
        return;
    }
    let mock = start_mock(json!({"chunks": 4, "chunk_interval_ms": 20}));
    let ca = TestCa::new("curl test CA");
    let files = TlsFiles::new(&ca.server_pair());
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let router = start_router(router_opts(&chat_yaml(&mock), files.env()));
    wait_ready_over_tls(&tls_client(&ca.pem(), H2_AND_H1), &router.url).await;
    // Both names in the certificate, each verified by curl.
    let localhost_url = router.url.replacen("127.0.0.1", "localhost", 1);
    for base in [&router.url, &localhost_url] {
        let out = Command::new("curl")
            .args(["-sS", "-N", "--http2", "--max-time", "30"])
            .arg("--cacert")
            .arg(&ca_file)
            .args(["-H", "content-type: application/json", "-d"])
            .arg(chat_body("m", true).to_string())
            .args(["-w", "\nhttp_version=%{http_version}\n"])
            .arg(format!("{base}/v1/chat/completions"))
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{base}: {stderr}");
        assert!(stdout.contains("http_version=2\n"), "{base}: {stdout}");
        assert!(stdout.contains("data: [DONE]"), "{base}: {stdout}");
        // The role chunk has an empty content; the 4 chunks after it carry the text.
        assert_eq!(stdout.matches("\"content\":\"").count(), 5, "{stdout}");
    }
}

#[actix_rt::test]
async fn a_replaced_certificate_is_served_after_reload_while_open_streams_go_on() {
    // A long stream (60 events, 100 ms apart) stays open across both reloads.
    let mock = start_mock(json!({"chunks": 60, "chunk_interval_ms": 100}));
    let (first, second) = (TestCa::new("first CA"), TestCa::new("second CA"));
    let files = TlsFiles::new(&first.server_pair());
    let mut env = files.env();
    env.push(("ADMIN_API_KEY", ADMIN_KEY.to_string()));
    let router = start_router(router_opts(&chat_yaml(&mock), env));
    let health = format!("{}/health", router.url);
    let open_client = tls_client(&first.pem(), H2_AND_H1);
    wait_ready_over_tls(&open_client, &router.url).await;

    let mut stream = open_client
        .post(format!("{}/v1/chat/completions", router.url))
        .send_json(&long_stream_body())
        .await
        .expect("stream");
    assert_eq!(stream.version(), Version::HTTP_2);
    let first_chunk = stream.next().await.expect("a first event").expect("bytes");
    assert!(first_chunk.starts_with(b"data: "), "{first_chunk:?}");

    // SIGHUP with the second CA's pair in the files: new handshakes get it.
    let pair = second.server_pair();
    files.put(&pair.cert, &pair.key);
    signal(&router, "HUP");
    eventually(
        Duration::from_secs(10),
        "the new certificate served",
        || async { fresh_get(&second.pem(), &health).await == Ok(200) },
    )
    .await;
    assert!(fresh_get(&first.pem(), &health).await.is_err());

    // POST /admin/reload brings the first CA's certificate back, and says so.
    let pair = first.server_pair();
    files.put(&pair.cert, &pair.key);
    let (status, body) = admin_reload(&second.pem(), &router.url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["tls_certificate_reloaded"], true, "{body}");
    assert_eq!(fresh_get(&first.pem(), &health).await, Ok(200));
    assert!(fresh_get(&second.pem(), &health).await.is_err());

    // A bad pair (the second CA's certificate with another key, then no PEM at all) is
    // refused with the reason, and the served certificate stays.
    let refusals = [
        (
            second.server_pair().cert,
            pair.key.clone(),
            "do not make a pair",
        ),
        ("garbage".to_string(), pair.key.clone(), "TLS_CERT_FILE"),
        (pair.cert.clone(), "garbage".to_string(), "TLS_KEY_FILE"),
    ];
    for (cert, key, reason) in refusals {
        files.put(&cert, &key);
        let (status, body) = admin_reload(&first.pem(), &router.url).await;
        assert_eq!(status, 422, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{reason}: {body}");
        assert!(!message.contains("PRIVATE KEY"), "{body}");
        assert_eq!(fresh_get(&first.pem(), &health).await, Ok(200), "{reason}");
    }

    // The stream opened before both reloads was still being written after them, and ends as
    // it should.
    let rest = read_sse(&mut stream).await;
    let done = rest.last().expect("events after the reloads");
    assert_eq!(done.1, "[DONE]", "{rest:?}");
    assert!(
        done.0 >= Duration::from_millis(500),
        "the stream ended before the reloads did: {:?}",
        done.0
    );
    let chunks = rest
        .iter()
        .filter(|(_, d)| d.contains("\"content\":\""))
        .count();
    assert!(chunks >= 55, "events after the reloads: {chunks}");
}

async fn admin_reload(ca_pem: &str, router: &str) -> (u16, Value) {
    let mut resp = tls_client(ca_pem, H2_AND_H1)
        .post(format!("{router}/admin/reload"))
        .insert_header(("authorization", format!("Bearer {ADMIN_KEY}")))
        .send()
        .await
        .expect("admin reload");
    let body = resp.json().await.unwrap_or(Value::Null);
    (resp.status().as_u16(), body)
}

/// `switchyard <args>` with `env`, in `dir`, killed after 30 s: exit code, stdout, stderr.
fn run_to_exit(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(bin("switchyard"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("TLS_CERT_FILE")
        .env_remove("TLS_KEY_FILE")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn switchyard");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn half_or_mismatched_tls_settings_stop_the_start_with_the_reason() {
    let ca = TestCa::new("start CA");
    let (pair, other) = (ca.server_pair(), ca.server_pair());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let (cert, key, other_key) = (
        path("a.crt", &pair.cert),
        path("a.key", &pair.key),
        path("b.key", &other.key),
    );
    let missing = dir.path().join("missing.pem").display().to_string();
    std::fs::write(
        dir.path().join("models.yaml"),
        chat_model_yaml("m", &[("vllm", &dead_url(), 1.0)]),
    )
    .expect("models.yaml");
    /// Environment variables set for one case.
    type Env = Vec<(&'static str, String)>;
    // (case, environment, what the error must say)
    let cases: Vec<(&str, Env, &str)> = vec![
        (
            "certificate without key",
            vec![("TLS_CERT_FILE", cert.clone())],
            "TLS_CERT_FILE is set but TLS_KEY_FILE is not",
        ),
        (
            "key without certificate",
            vec![("TLS_KEY_FILE", key.clone())],
            "TLS_KEY_FILE is set but TLS_CERT_FILE is not",
        ),
        (
            "another certificate's key",
            vec![("TLS_CERT_FILE", cert.clone()), ("TLS_KEY_FILE", other_key)],
            "do not make a pair",
        ),
        (
            "missing certificate file",
            vec![
                ("TLS_CERT_FILE", missing.clone()),
                ("TLS_KEY_FILE", key.clone()),
            ],
            &missing,
        ),
        (
            "key file holding a certificate",
            vec![
                ("TLS_CERT_FILE", cert.clone()),
                ("TLS_KEY_FILE", cert.clone()),
            ],
            "TLS_KEY_FILE",
        ),
    ];
    for (case, env, reason) in &cases {
        // check-config refuses what serve refuses, with the same line.
        for args in [
            &["serve", "--config", "models.yaml", "--port", "0"][..],
            &["check-config", "--config", "models.yaml"][..],
        ] {
            let (code, output) = run_to_exit(dir.path(), args, env);
            assert_eq!(code, Some(1), "{case} ({args:?}): {output}");
            assert!(
                output.contains("error: environment: ") && output.contains(reason),
                "{case} ({args:?}): {output}"
            );
            assert!(!output.contains("PRIVATE KEY"), "{case}: {output}");
        }
    }
    // The good pair passes check-config, which says the router will serve HTTPS.
    let good = [("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)];
    let (code, output) = run_to_exit(
        dir.path(),
        &["check-config", "--config", "models.yaml"],
        &good,
    );
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("HTTPS and HTTP/2 with "), "{output}");
}

#[actix_rt::test]
async fn plain_http_stays_the_default() {
    let mock = start_mock(json!({}));
    // Blank values, as a .env template leaves them, are unset.
    let env = vec![
        ("TLS_CERT_FILE", String::new()),
        ("TLS_KEY_FILE", " ".to_string()),
    ];
    let router = start_router(router_opts(&chat_yaml(&mock), env));
    assert!(
        router.url.starts_with("http://127.0.0.1:"),
        "{}",
        router.url
    );
    wait_ready(&router.url, 1).await;
    let (status, _, body) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[actix_rt::test]
async fn the_health_check_probes_https_when_the_router_serves_it() {
    let mock = start_mock(json!({}));
    let ca = TestCa::new("healthcheck CA");
    let files = TlsFiles::new(&ca.server_pair());
    let router = start_router(router_opts(&chat_yaml(&mock), files.env()));
    wait_ready_over_tls(&tls_client(&ca.pem(), H2_AND_H1), &router.url).await;
    let port = router.url.rsplit(':').next().expect("port").to_string();
    let https_localhost = format!("https://localhost:{port}/health");
    let plain = format!("http://127.0.0.1:{port}/health");
    let cert = files.cert.display().to_string();
    // (args, TLS_CERT_FILE, healthy): the default URL follows TLS_CERT_FILE; loopback HTTPS
    // needs no trust anchor; plain HTTP to the HTTPS port is unhealthy.
    let cases: &[(&[&str], Option<&str>, bool)] = &[
        (&[], Some(&cert), true),
        (&["--url", &https_localhost], None, true),
        (&[], None, false),
        (&["--url", &plain, "--timeout", "2"], Some(&cert), false),
    ];
    for (args, tls_cert, healthy) in cases {
        let mut cmd = Command::new(bin("switchyard"));
        cmd.arg("healthcheck")
            .args(*args)
            .env("PORT", &port)
            .env_remove("TLS_CERT_FILE");
        if let Some(cert) = tls_cert {
            cmd.env("TLS_CERT_FILE", cert);
        }
        let out = cmd.output().expect("run healthcheck");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.success(),
            *healthy,
            "{args:?} TLS_CERT_FILE={tls_cert:?}: {stderr}"
        );
    }
}

/// A client that cancels an HTTP/2 stream (RST_STREAM, the connection staying open) must end
/// the request and its backend call, as closing an HTTP/1.1 connection does.
#[actix_rt::test]
async fn a_canceled_http2_stream_releases_its_backend_at_once() {
    // 60 events 100 ms apart: 6 s if nobody cancels.
    let mock = start_mock(json!({"chunks": 60, "chunk_interval_ms": 100}));
    let ca = TestCa::new("cancel CA");
    let files = TlsFiles::new(&ca.server_pair());
    let router = start_router(router_opts(&chat_yaml(&mock), files.env()));
    let client = tls_client(&ca.pem(), H2_AND_H1);
    wait_ready_over_tls(&client, &router.url).await;
    let in_flight = || async {
        let resp = client.get(format!("{}/health", router.url)).send().await;
        let body: Value = match resp {
            Ok(mut r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        body["endpoints"]["in_flight"].as_u64()
    };
    let mut stream = client
        .post(format!("{}/v1/chat/completions", router.url))
        .send_json(&long_stream_body())
        .await
        .expect("stream");
    assert_eq!(stream.version(), Version::HTTP_2);
    stream.next().await.expect("a first event").expect("bytes");
    assert_eq!(in_flight().await, Some(1));
    drop(stream);
    // The same client (and so the same HTTP/2 connection) asks: the lease is gone, and the
    // backend's stream was cut rather than run to its end (a wall-clock bound here would
    // measure the machine's load, not whether the cancel reached the backend call).
    eventually(Duration::from_secs(20), "the lease released", || async {
        in_flight().await == Some(0)
    })
    .await;
    let stats = mock_stats(&mock).await;
    assert_eq!(stats["streams_completed"], 0, "{stats}");
    assert!(stats["chunks_sent"].as_u64().unwrap_or(0) < 60, "{stats}");
}

/// Whether a spawned HTTP/2 connection driver runs; see [`PausableDriver`].
#[derive(Default)]
struct DriverGate {
    paused: std::cell::Cell<bool>,
    waker: std::cell::RefCell<Option<std::task::Waker>>,
}

impl DriverGate {
    fn pause(&self) {
        self.paused.set(true);
    }

    fn resume(&self) {
        self.paused.set(false);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// An h2 client's connection future, not polled while its gate is paused: the client then
/// reads and writes nothing, so it answers no PING, as a client starved of CPU or on a
/// stalled link does.
struct PausableDriver<F> {
    connection: std::pin::Pin<Box<F>>,
    gate: std::rc::Rc<DriverGate>,
}

impl<F: std::future::Future> std::future::Future for PausableDriver<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if self.gate.paused.get() {
            *self.gate.waker.borrow_mut() = Some(cx.waker().clone());
            return std::task::Poll::Pending;
        }
        self.connection.as_mut().poll(cx)
    }
}

/// An HTTP/2 connection (TLS, ALPN `h2` only) to `router`, its driver spawned behind a gate.
async fn pausable_h2_connection(
    ca_pem: &str,
    router: &str,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    std::rc::Rc<DriverGate>,
) {
    use rustls::pki_types::ServerName;
    let config = client_tls_config(ca_pem, &[b"h2"]);
    let addr = router.trim_start_matches("https://");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let server_name = ServerName::try_from("127.0.0.1").expect("server name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send_request, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    let gate = std::rc::Rc::new(DriverGate::default());
    actix_rt::spawn(PausableDriver {
        connection: Box::pin(connection),
        gate: gate.clone(),
    });
    (send_request, gate)
}

/// A client that stops reading its HTTP/2 connection for a while (starved of CPU, a stalled
/// mobile link) in the middle of its request body must still get its answer: the router's
/// keep-alive is also actix's h2 PING interval and PING timeout, and an unanswered PING drops
/// the connection with every request on it. Pausing 12 s covers a whole PING interval plus
/// its timeout at actix's default 5 s keep-alive, however the pause falls against the PINGs,
/// while staying well inside the client body idle timeout (60 s by default).
#[actix_rt::test]
async fn an_http2_client_that_stops_reading_for_a_while_still_gets_its_answer() {
    let pause = Duration::from_secs(12);
    let mock = start_mock(json!({}));
    let ca = TestCa::new("pause CA");
    let files = TlsFiles::new(&ca.server_pair());
    let router = start_router(router_opts(&chat_yaml(&mock), files.env()));
    let ca_pem = ca.pem();
    wait_ready_over_tls(&tls_client(&ca_pem, H2_AND_H1), &router.url).await;

    let (send_request, gate) = pausable_h2_connection(&ca_pem, &router.url).await;
    let mut send_request = send_request.ready().await.expect("h2 ready for a request");
    let body = serde_json::to_vec(&chat_body("m", false)).expect("chat JSON");
    let (first, rest) = body.split_at(body.len() / 2);
    let request = http::Request::post(format!("{}/v1/chat/completions", router.url))
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(())
        .expect("request");
    let (response, mut upload) = send_request
        .send_request(request, false)
        .expect("open the stream");
    upload
        .send_data(bytes::Bytes::copy_from_slice(first), false)
        .expect("first half of the body");
    // The head and half the body reach the router while the connection is driven.
    actix_rt::time::sleep(Duration::from_millis(500)).await;

    gate.pause();
    actix_rt::time::sleep(pause).await;
    gate.resume();

    upload
        .send_data(bytes::Bytes::copy_from_slice(rest), true)
        .expect("the rest of the body after the pause");
    let response = response
        .await
        .expect("the answer after the pause (was the connection dropped?)");
    assert_eq!(response.status(), 200);
    let mut received = response.into_body();
    let mut answer = Vec::new();
    while let Some(chunk) = received.data().await {
        let chunk = chunk.expect("answer body");
        received
            .flow_control()
            .release_capacity(chunk.len())
            .expect("release capacity");
        answer.extend_from_slice(&chunk);
    }
    let v: Value = serde_json::from_slice(&answer).expect("answer JSON");
    assert_eq!(v["object"], "chat.completion", "{v}");
}
