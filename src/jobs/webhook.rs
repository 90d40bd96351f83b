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

use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::runner::Shared;
use super::{job_object, now_ms};

const RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The `X-Gateway-Signature` value for `body` sent at unix second `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let stamp = t.to_string();
    let mac = hmac_sha256(secret, &[stamp.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex::encode(mac))
}

/// Why a callback URL may not be called.
#[derive(Debug, PartialEq, Eq)]
pub enum CallbackRefusal {
    /// Loopback, private, link-local, … (the router must not be a way into its own network).
    Private(String),
    /// The name does not resolve now (retried at delivery).
    Unresolvable(String),
}

/// Network hygiene for webhooks (seed 004): the router calls URLs its clients chose, so unless
/// `VIDEO_WEBHOOK_ALLOW_PRIVATE` is set they must not lead to a loopback, private or link-local
/// address. Checked at create and again before every delivery (names can change address).
pub async fn check_callback(url: &str, allow_private: bool) -> Result<(), CallbackRefusal> {
    use crate::netguard::is_private;
    if allow_private {
        return Ok(());
    }
    let parsed = url::Url::parse(url).map_err(|e| CallbackRefusal::Unresolvable(e.to_string()))?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    match parsed.host() {
        None => Err(CallbackRefusal::Unresolvable("no host".into())),
        Some(url::Host::Ipv4(ip)) if is_private(ip.into()) => {
            Err(CallbackRefusal::Private(ip.to_string()))
        }
        Some(url::Host::Ipv6(ip)) if is_private(ip.into()) => {
            Err(CallbackRefusal::Private(ip.to_string()))
        }
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => Ok(()),
        Some(url::Host::Domain(name)) => {
            let lower = name.to_ascii_lowercase();
            if lower == "localhost" || lower.ends_with(".localhost") {
                return Err(CallbackRefusal::Private(name.to_string()));
            }
            let addrs = tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| CallbackRefusal::Unresolvable(format!("{name}: {e}")))?;
            for addr in addrs {
                if is_private(addr.ip()) {
                    return Err(CallbackRefusal::Private(format!("{name} ({})", addr.ip())));
                }
            }
            Ok(())
        }
    }
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
        if let Err(CallbackRefusal::Private(target)) =
            check_callback(url, shared.settings.webhook_allow_private).await
        {
            warn!(job = %id, %target, "webhook not sent: its URL leads to a private address");
            let _ = shared
                .store
                .webhook_attempted(&id, attempts, Some("failed"))
                .await;
            return;
        }
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
    fn hmac_matches_rfc_4231() {
        // Test case 2: a short key.
        assert_eq!(
            hex::encode(hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[actix_rt::test]
    async fn private_callbacks_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://10.0.0.5/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost/hook",
        ] {
            assert!(
                matches!(
                    check_callback(url, false).await,
                    Err(CallbackRefusal::Private(_))
                ),
                "{url}"
            );
            assert_eq!(check_callback(url, true).await, Ok(()));
        }
        assert_eq!(
            check_callback("https://93.184.215.14/hook", false).await,
            Ok(())
        );
    }

    #[test]
    fn signature_signs_timestamp_dot_body() {
        let sig = signature(b"Jefe", 17, b"{}");
        let expected = hex::encode(hmac_sha256(b"Jefe", &[b"17.{}"]));
        assert_eq!(sig, format!("t=17,v1={expected}"));
    }
}
