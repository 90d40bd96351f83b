//! Test harness of the load tool: a mock engine inside the test process (the `switchyard-mock`
//! library on a thread of its own), so the tests need no other crate's binary.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use switchyard_mock::MockSettings;
use tokio::sync::oneshot;

/// A running mock engine, stopped when dropped.
pub struct Mock {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Start one mock engine with the given settings (JSON object of `MockSettings` fields).
pub fn start_mock(settings: Value) -> Mock {
    let settings = MockSettings::default()
        .patched(settings)
        .unwrap_or_else(|e| panic!("mock settings: {e}"));
    let (url_tx, url_rx) = mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = switchyard_mock::start("127.0.0.1", 0, settings)
                .await
                .expect("start the mock engine");
            let _ = url_tx.send(server.url());
            let _ = stopped.await;
            server.stop().await;
        });
    });
    let url = url_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the mock engine did not start within 60 s");
    Mock {
        url,
        stop: Some(stop),
        thread: Some(thread),
    }
}

pub async fn get_json(url: &str) -> Result<(u16, Value), String> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let mut resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    let body = resp
        .body()
        .limit(64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((resp.status().as_u16(), v))
}
