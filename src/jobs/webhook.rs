//! Webhooks to a job's `callback_url` when it ends (contract §7.5): a JSON event signed with
//! HMAC-SHA256, retried with exponential back-off until the receiver answers 2xx. Delivery state
//! is in the job's row, so a restart resumes pending deliveries.
//!
//! ```text
//! POST <callback_url>
//! X-Gateway-Signature: t=<unix>,v1=<hex hmac_sha256(secret, "<t>." + body)>
//! Idempotency-Key: <job id>:<event type>
//! {"type": "video.generation.completed", "created_at": <unix>, "data": <job object>}
//! ```

use std::rc::Rc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tracing::{debug, info, warn};

use super::runner::Shared;
use super::{job_object, now_ms};

const RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The `X-Gateway-Signature` value for `body` sent at unix second `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; the error branch cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Deliver the pending webhook of job `id`, if it has one.
pub async fn deliver(shared: Rc<Shared>, id: String) {
    let job = match shared.store.get(&id).await {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(e) => {
            warn!(job = %id, error = %e, "could not load a job for its webhook");
            return;
        }
    };
    let (Some(url), Some("pending")) = (job.callback_url.as_deref(), job.webhook_status.as_deref())
    else {
        return;
    };
    let Some(event) = job.status.webhook_type() else {
        return;
    };
    let body = json!({
        "type": event,
        "created_at": now_ms() / 1000,
        "data": job_object(&job, "/v1", now_ms()),
    })
    .to_string();
    let idempotency_key = format!("{id}:{event}");
    let max = i64::from(shared.settings.webhook_max_attempts);
    let mut attempts = job.webhook_attempts;
    let mut backoff = shared.settings.webhook_backoff;
    while attempts < max {
        attempts += 1;
        let mut req = shared
            .client
            .post(url)
            .timeout(RECEIVER_TIMEOUT)
            .insert_header(("content-type", "application/json"))
            .insert_header(("idempotency-key", idempotency_key.as_str()));
        if let Some(secret) = &shared.settings.webhook_secret {
            let t = now_ms() / 1000;
            req = req.insert_header((
                "x-gateway-signature",
                signature(secret.expose().as_bytes(), t, body.as_bytes()),
            ));
        }
        let delivered = match req.send_body(body.clone()).await {
            Ok(resp) if resp.status().is_success() => true,
            Ok(resp) => {
                debug!(job = %id, status = resp.status().as_u16(), attempts, "webhook refused");
                false
            }
            Err(e) => {
                debug!(job = %id, error = %e, attempts, "webhook not delivered");
                false
            }
        };
        let verdict = if delivered {
            Some("delivered")
        } else if attempts >= max {
            Some("failed")
        } else {
            None
        };
        if let Err(e) = shared.store.webhook_attempted(&id, attempts, verdict).await {
            warn!(job = %id, error = %e, "could not record a webhook attempt");
        }
        match verdict {
            Some("delivered") => {
                info!(job = %id, event, attempts, "webhook delivered");
                return;
            }
            Some(_) => {
                warn!(job = %id, event, attempts, "webhook given up after its last attempt");
                return;
            }
            None => {
                actix_rt::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    // Resumed with no attempts left.
    let _ = shared
        .store
        .webhook_attempted(&id, attempts, Some("failed"))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        // Here the signed text is "<t>." + body, so split the data accordingly.
        let sig = signature(b"Jefe", 0, b"what do ya want for nothing?");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"0.what do ya want for nothing?");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=0,v1={expected}"));
        let mut plain = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        plain.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(plain.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
