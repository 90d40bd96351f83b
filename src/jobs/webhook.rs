//! Webhooks to a job's `callback_url` when it ends (any terminal status): a JSON event signed with
//! HMAC-SHA256, retried with exponential back-off until the receiver answers 2xx. Delivery state
//! is in the job's row, so a restart resumes pending deliveries.
//!
//! ```text
//! POST <callback_url>
//! X-Gateway-Signature: t=<unix>,v1=<hex hmac_sha256(secret, "<t>." + body)>
//! Idempotency-Key: <job id>:<event type>
//! {"type": "video.generation.completed", "created_at": <unix>, "data": <job object>}
//! ```

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use awc::error::SendRequestError;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::shared::Shared;
use super::{job_object, now_ms};
use crate::netguard::{public_addrs, Refusal, Resolve, SystemResolver};

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

/// Network hygiene for webhooks: the router calls URLs its clients chose, so unless
/// `VIDEO_WEBHOOK_ALLOW_PRIVATE` is set they must not lead to a loopback, private or link-local
/// address. Checked at create (a name that does not resolve yet is accepted) and again at every
/// delivery attempt, which then connects to the addresses it checked.
pub async fn check_callback(url: &str, allow_private: bool) -> Result<(), Refusal> {
    let parsed = url::Url::parse(url).map_err(|e| Refusal::Unresolvable(e.to_string()))?;
    public_addrs(&parsed, allow_private, &SystemResolver)
        .await
        .map(|_| ())
}

/// One webhook request, sent again on every attempt.
struct Delivery<'a> {
    url: &'a str,
    body: &'a str,
    idempotency_key: &'a str,
    secret: Option<&'a [u8]>,
}

/// How one delivery attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Delivered,
    /// Not delivered this time (unresolvable, unreachable, not 2xx): retried after back-off.
    Failed,
    /// The URL leads to a non-public address: never retried.
    Refused(String),
}

/// A name with many addresses: this many are tried (on connection errors only) per attempt.
const MAX_ADDRESSES_TRIED: usize = 3;

/// Resolve the callback's host once, check every address, and send to those addresses with the
/// URL's own Host header and TLS server name. The client never resolves the name itself: a
/// second lookup could answer with an address that was never checked (DNS rebinding).
async fn attempt(
    client: &awc::Client,
    resolver: &dyn Resolve,
    allow_private: bool,
    delivery: &Delivery<'_>,
) -> Attempt {
    let url = match url::Url::parse(delivery.url) {
        Ok(url) => url,
        Err(e) => return Attempt::Refused(format!("invalid URL: {e}")),
    };
    let addrs = match public_addrs(&url, allow_private, resolver).await {
        Ok(addrs) => addrs,
        Err(Refusal::NotPublic(target)) => return Attempt::Refused(target),
        Err(unresolvable) => {
            debug!(error = %unresolvable, "webhook not delivered");
            return Attempt::Failed;
        }
    };
    for addr in addrs.into_iter().take(MAX_ADDRESSES_TRIED) {
        match send_to(client, addr, delivery).await {
            Ok(resp) if resp.status().is_success() => return Attempt::Delivered,
            Ok(resp) => {
                debug!(%addr, status = resp.status().as_u16(), "webhook refused");
                return Attempt::Failed;
            }
            // Nothing was sent: the next address may answer.
            Err(SendRequestError::Connect(e)) => {
                debug!(%addr, error = %e, "webhook receiver unreachable");
            }
            Err(e) => {
                debug!(%addr, error = %e, "webhook not delivered");
                return Attempt::Failed;
            }
        }
    }
    Attempt::Failed
}

/// POST the event to `addr`. The connection is closed afterwards, so no later delivery can
/// reuse it for an address it did not check (awc pools connections by host name).
async fn send_to(
    client: &awc::Client,
    addr: SocketAddr,
    delivery: &Delivery<'_>,
) -> Result<awc::ClientResponse<impl futures_util::Stream>, SendRequestError> {
    let mut req = client
        .post(delivery.url)
        .address(addr)
        .force_close()
        .timeout(RECEIVER_TIMEOUT)
        .insert_header(("content-type", "application/json"))
        .insert_header(("idempotency-key", delivery.idempotency_key));
    if let Some(secret) = delivery.secret {
        let t = now_ms() / 1000;
        req = req.insert_header((
            "x-gateway-signature",
            signature(secret, t, delivery.body.as_bytes()),
        ));
    }
    req.send_body(delivery.body.to_owned()).await
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
    let delivery = Delivery {
        url,
        body: &body,
        idempotency_key: &idempotency_key,
        secret: shared
            .settings
            .webhook_secret
            .as_ref()
            .map(|s| s.expose().as_bytes()),
    };
    let max = i64::from(shared.settings.webhook_max_attempts);
    let mut attempts = job.webhook_attempts;
    let mut backoff = shared.settings.webhook_backoff;
    while attempts < max {
        attempts += 1;
        let outcome = attempt(
            &shared.webhook_client,
            &SystemResolver,
            shared.settings.webhook_allow_private,
            &delivery,
        )
        .await;
        let verdict = match &outcome {
            Attempt::Delivered => Some("delivered"),
            Attempt::Refused(target) => {
                warn!(job = %id, %target, "webhook not sent: its URL leads to a private address");
                Some("failed")
            }
            Attempt::Failed if attempts >= max => Some("failed"),
            Attempt::Failed => None,
        };
        if let Err(e) = shared.store.webhook_attempted(&id, attempts, verdict).await {
            warn!(job = %id, error = %e, "could not record a webhook attempt");
        }
        match outcome {
            Attempt::Delivered => {
                info!(job = %id, event, attempts, "webhook delivered");
                return;
            }
            Attempt::Refused(_) => return,
            Attempt::Failed if verdict.is_some() => {
                warn!(job = %id, event, attempts, "webhook given up after its last attempt");
                return;
            }
            Attempt::Failed => {
                debug!(job = %id, attempts, "webhook attempt failed; retrying");
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
    use crate::netguard::testing::ScriptedResolver;
    use std::sync::{Arc, Mutex};

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
            "http://[::ffff:10.0.0.5]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost/hook",
        ] {
            assert!(
                matches!(check_callback(url, false).await, Err(Refusal::NotPublic(_))),
                "{url}"
            );
            assert_eq!(check_callback(url, true).await, Ok(()));
        }
        assert_eq!(
            check_callback("https://93.184.215.14/hook", false).await,
            Ok(())
        );
    }

    /// A webhook receiver on loopback answering 204; counts requests and keeps Host headers.
    async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let seen = hosts.clone();
        let server = HttpServer::new(move || {
            let seen = seen.clone();
            App::new().default_service(web::to(move |req: HttpRequest| {
                let host = req.headers().get("host").and_then(|h| h.to_str().ok());
                if let Ok(mut hosts) = seen.lock() {
                    hosts.push(host.unwrap_or_default().to_string());
                }
                async { HttpResponse::NoContent().finish() }
            }))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        actix_rt::spawn(server.run());
        (addr, hosts)
    }

    fn delivery(url: &str) -> Delivery<'_> {
        Delivery {
            url,
            body: "{}",
            idempotency_key: "job:event",
            secret: None,
        }
    }

    fn client() -> awc::Client {
        crate::relay::client::build(Duration::from_millis(300), 0)
    }

    /// DNS rebinding: the name is public when checked and loopback a moment later. The request
    /// must go where the check looked (here: nowhere reachable, so the attempt fails), never
    /// to the loopback receiver, and the name is looked up once per attempt.
    #[actix_rt::test]
    async fn a_rebound_name_never_reaches_the_address_it_rebinds_to() {
        let (loopback, hits) = receiver().await;
        let public: SocketAddr = (std::net::Ipv4Addr::new(8, 8, 8, 8), loopback.port()).into();
        let resolver = ScriptedResolver::new(vec![vec![public], vec![loopback]]);
        let url = format!("http://rebind.example:{}/hook", loopback.port());
        let outcome = attempt(&client(), &resolver, false, &delivery(&url)).await;
        assert_ne!(outcome, Attempt::Delivered);
        assert_eq!(resolver.calls.get(), 1, "the name was looked up again");
        assert!(
            hits.lock().unwrap().is_empty(),
            "the rebound address was called"
        );
        // The next attempt looks again, sees loopback and refuses.
        let outcome = attempt(&client(), &resolver, false, &delivery(&url)).await;
        assert!(matches!(outcome, Attempt::Refused(_)), "{outcome:?}");
        assert!(hits.lock().unwrap().is_empty());
    }

    /// With private addresses allowed the address is still pinned: the request goes to the
    /// first answer, with the URL's Host header, though the name resolves elsewhere later.
    #[actix_rt::test]
    async fn delivery_goes_to_the_resolved_address_with_the_urls_host() {
        let (checked, checked_hits) = receiver().await;
        let (other, other_hits) = receiver().await;
        let resolver = ScriptedResolver::new(vec![vec![checked], vec![other]]);
        let url = "http://hooks.example:9/hook";
        let outcome = attempt(&client(), &resolver, true, &delivery(url)).await;
        assert_eq!(outcome, Attempt::Delivered);
        assert_eq!(*checked_hits.lock().unwrap(), vec!["hooks.example:9"]);
        assert!(other_hits.lock().unwrap().is_empty());
        assert_eq!(resolver.calls.get(), 1);
    }

    /// A name that does not resolve is a failed attempt (retried), not a delivery the HTTP
    /// client would attempt by resolving the name itself.
    #[actix_rt::test]
    async fn an_unresolvable_name_is_a_failed_attempt() {
        for allow_private in [false, true] {
            let resolver = ScriptedResolver::new(vec![vec![]]);
            let url = "https://nowhere.example/hook";
            let outcome = attempt(&client(), &resolver, allow_private, &delivery(url)).await;
            assert_eq!(outcome, Attempt::Failed);
        }
    }

    /// Connection errors move on to the name's next address.
    #[actix_rt::test]
    async fn an_unreachable_address_falls_over_to_the_next() {
        let (alive, hits) = receiver().await;
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let resolver = ScriptedResolver::new(vec![vec![dead, alive]]);
        let outcome = attempt(&client(), &resolver, true, &delivery("http://two.example/")).await;
        assert_eq!(outcome, Attempt::Delivered);
        assert_eq!(hits.lock().unwrap().len(), 1);
    }

    #[test]
    fn signature_signs_timestamp_dot_body() {
        let sig = signature(b"Jefe", 17, b"{}");
        let expected = hex::encode(hmac_sha256(b"Jefe", &[b"17.{}"]));
        assert_eq!(sig, format!("t=17,v1={expected}"));
    }
}
