//! Graceful shutdown. On SIGTERM or SIGINT the server stops accepting connections and gives
//! in-flight requests and streams `SHUTDOWN_GRACE_SECONDS` to finish (actix's
//! `shutdown_timeout`), then cuts them; a second signal cuts them at once. Once the server has
//! stopped, we wait for every request context to drop (cut streams drop theirs as worker
//! threads wind down) and drain the request logger, so every record is written or spilled
//! before the process exits 0.

use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use tokio::signal::unix::{signal, SignalKind};

use crate::accounting::LogQueue;

/// Stop `server` gracefully on the first SIGTERM/SIGINT, forcefully on the second.
pub fn listen_for_signals(server: ServerHandle, grace: Duration) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    actix_rt::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            grace_seconds = grace.as_secs_f64(),
            in_flight = crate::record::live_requests(),
            "stopping: no new connections; in-flight requests may finish"
        );
        let graceful = server.stop(true);
        tokio::select! {
            _ = graceful => {}
            _ = term.recv() => {
                tracing::warn!("second signal: cutting in-flight requests now");
                server.stop(false).await;
            }
            _ = int.recv() => {
                tracing::warn!("second signal: cutting in-flight requests now");
                server.stop(false).await;
            }
        }
    });
    Ok(())
}

/// After the server stopped: wait (bounded) for request contexts to hand over their records,
/// then flush the logger.
pub async fn finish(log: Option<&LogQueue>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::record::live_requests() > 0 && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let left = crate::record::live_requests();
    if left > 0 {
        tracing::warn!(requests = left, "request contexts still alive at shutdown");
    }
    if let Some(log) = log {
        match log.drain().await {
            Some(report) => tracing::info!(
                written = report.written,
                spilled = report.spilled,
                "request log flushed"
            ),
            None => tracing::error!("request logger was not running at shutdown"),
        }
    }
    // Every request context is gone, so every server span has ended: export what is queued.
    // The exporter blocks (its own HTTP client), so off this async thread.
    if crate::telemetry::enabled() {
        let _ = actix_rt::task::spawn_blocking(crate::telemetry::shutdown).await;
    }
}
