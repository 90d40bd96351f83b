//! `switchyard healthcheck`: GET the router's `/health` and exit 0 on a 200, 1 otherwise. The
//! container image's `HEALTHCHECK` runs it, so the runtime image needs no curl.

use std::process::ExitCode;
use std::time::Duration;

/// Check `url` within `timeout`; prints why on failure.
pub fn run(url: &str, timeout: Duration) -> ExitCode {
    let system = actix_rt::System::new();
    let outcome = system.block_on(async {
        let client = awc::Client::builder().timeout(timeout).finish();
        client
            .get(url)
            .send()
            .await
            .map(|resp| resp.status())
            .map_err(|e| e.to_string())
    });
    match outcome {
        Ok(status) if status.as_u16() == 200 => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("unhealthy: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
