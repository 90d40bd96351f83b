//! `POST /v1/rerank` (also `/rerank`, `/v2/rerank` and under `/api/v1`): scores documents
//! against a query on a `type: rerank` model. Backends that serve rerank in the Jina/Cohere
//! shape (vLLM, llama.cpp with `--reranking`, SGLang, LocalAI, remote providers) get the
//! client's body; TEI gets its own (`/rerank` at its root, `{query, texts}`). Either way the
//! client gets results sorted by relevance and cut to `top_n` ([`rerank_shape`](super::rerank_shape)).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::rerank_shape::{self, RerankRequest, Scored};
use super::{forwarded, json_bytes_response, new_ctx};
use crate::api::state::AppState;
use crate::engines::{ApiOp, BackendKind};
use crate::error::{ApiError, ErrorCode};
use crate::mesh::{Lease, Outcome};
use crate::record::{RequestCtx, Usage};
use crate::relay::json::{call_for_bytes, call_json};
use crate::relay::shallow::JsonObject;
use crate::relay::upstream::{Forwarded, UpstreamPath};
use crate::relay::{with_fallback, Attempt};

/// What one backend answered, before the results are put in the client's order.
struct Answer {
    /// The model's public id (the request may have named an alias).
    model: String,
    /// The native answer's other members (id, model, meta …); `None` for TEI.
    body: Option<JsonObject>,
    scored: Vec<Scored>,
    usage: Option<Usage>,
}

pub async fn rerank(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, ApiOp::Rerank);
    let result = async {
        // The permit holds the body's share of the JSON budget as long as the map lives.
        let (map, _permit) =
            super::body::read_json_object(&req, payload, state.settings.max_body_bytes).await?;
        let request = rerank_shape::parse(&map)?;
        let fwd = forwarded(&req, ctx.request_id());
        let answer = relay(&state, &client, &request, &map, &fwd, &mut ctx).await?;
        Ok::<_, ApiError>(client_reply(answer, &request, ctx.request_id()))
    }
    .await;
    match result {
        Ok((body, usage)) => {
            ctx.record.usage = Some(usage);
            ctx.complete(200, "success");
            Ok(json_bytes_response(body.to_bytes()))
        }
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

async fn relay(
    state: &AppState,
    client: &awc::Client,
    request: &RerankRequest,
    client_body: &Map<String, Value>,
    fwd: &Forwarded,
    ctx: &mut RequestCtx,
) -> Result<Answer, ApiError> {
    let settings = &state.settings;
    let native = rerank_shape::native_body(client_body, request);
    let tei = bytes::Bytes::from(rerank_shape::tei_body(request).to_string());
    with_fallback(
        &state.mesh.local_router(),
        &request.model,
        ApiOp::Rerank,
        request.estimated_tokens(),
        &settings.retry,
        ctx,
        |lease| {
            let is_tei = lease.route().kind == BackendKind::Tei;
            let native_bytes = (!is_tei).then(|| {
                let mut body = native.clone();
                body.insert(
                    "model".into(),
                    Value::String(lease.route().provider_model_id.clone()),
                );
                bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
            });
            let tei = tei.clone();
            async move {
                let (timeouts, max) = (&settings.timeouts, settings.max_response_bytes);
                let Some(body) = native_bytes else {
                    let path = UpstreamPath::Root("/rerank");
                    return match call_for_bytes(client, lease, path, tei, fwd, timeouts, max).await
                    {
                        Attempt::Done((lease, bytes)) => {
                            judged(lease, rerank_shape::tei_results(&bytes), None, None)
                        }
                        Attempt::Retry(e) => Attempt::Retry(e),
                        Attempt::Fail(e) => Attempt::Fail(e),
                    };
                };
                let path = ApiOp::Rerank.upstream_path();
                match call_json(client, lease, path, body, fwd, timeouts, max).await {
                    Attempt::Done(reply) => {
                        let scored = reply
                            .body
                            .field::<Value>("results")
                            .as_ref()
                            .and_then(rerank_shape::native_results);
                        let usage = reply.usage.or_else(|| total_only_usage(&reply.body));
                        judged(reply.lease, scored, Some(reply.body), usage)
                    }
                    Attempt::Retry(e) => Attempt::Retry(e),
                    Attempt::Fail(e) => Attempt::Fail(e),
                }
            }
        },
    )
    .await
}

/// An answer without results in the rerank shape is the backend's failure, tried elsewhere.
fn judged(
    mut lease: Lease,
    scored: Option<Vec<Scored>>,
    body: Option<JsonObject>,
    usage: Option<Usage>,
) -> Attempt<Answer> {
    match scored {
        Some(scored) => {
            lease.finish(Outcome::Success);
            Attempt::Done(Answer {
                model: lease.model().id.clone(),
                body,
                scored,
                usage,
            })
        }
        None => {
            lease.finish(Outcome::Failure);
            let model = &lease.model().id;
            Attempt::Retry(ApiError::new(
                ErrorCode::UpstreamInvalidResponse,
                format!("The backend for model `{model}` did not answer with rerank results."),
            ))
        }
    }
}

/// Jina's and vLLM's usage is `{total_tokens}` alone: all of it is input.
fn total_only_usage(body: &JsonObject) -> Option<Usage> {
    let total = body
        .field::<Value>("usage")?
        .get("total_tokens")?
        .as_u64()?;
    Some(Usage {
        prompt_tokens: total,
        completion_tokens: 0,
        cached_tokens: 0,
        estimated: false,
    })
}

/// The client's answer: the backend's own members (or, from TEI, an id and the model) with
/// the results in order and the usage (estimated when the backend reported none).
fn client_reply(answer: Answer, request: &RerankRequest, request_id: &str) -> (JsonObject, Usage) {
    let usage = answer.usage.unwrap_or(Usage {
        prompt_tokens: request.estimated_tokens(),
        completion_tokens: 0,
        cached_tokens: 0,
        estimated: true,
    });
    let mut body = answer.body.unwrap_or_else(JsonObject::empty);
    let fields = [
        ("id", json!(format!("rerank-{request_id}"))),
        ("model", json!(answer.model)),
        (
            "results",
            json!(rerank_shape::client_results(answer.scored, request)),
        ),
        (
            "usage",
            json!({"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total()}),
        ),
    ];
    for (key, value) in fields {
        let keep_backend_s = matches!(key, "id" | "model") && body.get(key).is_some();
        if keep_backend_s {
            continue;
        }
        if let Ok(raw) = serde_json::value::to_raw_value(&value) {
            body.set_raw(key, raw);
        }
    }
    (body, usage)
}
