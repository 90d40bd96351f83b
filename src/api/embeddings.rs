//! `POST /v1/embeddings`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::{forwarded, json_bytes_response, new_ctx};
use crate::api::state::AppState;
use crate::engines::ApiOp;
use crate::error::ApiError;
use crate::record::Usage;

/// Checks the OpenAI input shapes: a string, strings, token ids, or arrays of token ids.
/// Returns a rough token count for rate limiting.
pub fn validate_input(obj: &Map<String, Value>) -> Result<u64, ApiError> {
    let bad = |msg: &str| ApiError::bad_request(msg, Some("input"));
    let tokens = match obj.get("input") {
        None | Some(Value::Null) => return Err(bad("Missing required parameter: `input`.")),
        Some(Value::String(s)) if s.is_empty() => return Err(bad("`input` must not be empty.")),
        Some(Value::String(s)) => (s.len() as u64).div_ceil(4),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(bad("`input` must not be empty."))
        }
        Some(Value::Array(items)) => {
            let mut total = 0u64;
            for item in items {
                total += match item {
                    Value::String(s) if !s.is_empty() => (s.len() as u64).div_ceil(4),
                    Value::Number(n) if n.is_u64() => 1,
                    Value::Array(ids) if !ids.is_empty() && ids.iter().all(Value::is_u64) => ids.len() as u64,
                    _ => {
                        return Err(bad(
                            "`input` must be a string, an array of non-empty strings, an array of token ids, or an array of token id arrays.",
                        ))
                    }
                };
            }
            total
        }
        Some(_) => return Err(bad("`input` must be a string or an array.")),
    };
    match obj.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" || f == "base64" => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "`encoding_format` must be `float` or `base64`.",
                Some("encoding_format"),
            ))
        }
    }
    if let Some(d) = obj.get("dimensions").filter(|d| !d.is_null()) {
        if d.as_u64().is_none_or(|d| d == 0) {
            return Err(ApiError::bad_request(
                "`dimensions` must be a positive integer.",
                Some("dimensions"),
            ));
        }
    }
    Ok(tokens.max(1))
}

pub async fn embeddings(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, ApiOp::Embeddings);
    let result = async {
        // The permit holds the body's share of the JSON budget as long as the map lives.
        let (map, _permit) =
            super::body::read_json_object(&req, payload, state.settings.max_body_bytes).await?;
        let model = super::required_model(&map)?;
        let est = validate_input(&map)?;
        let fwd = forwarded(&req, ctx.request_id());
        super::relay_json_body(
            &state,
            &client,
            &model,
            ApiOp::Embeddings,
            est,
            map,
            &fwd,
            &mut ctx,
        )
        .await
        .map(|(value, usage)| {
            let usage = usage.unwrap_or(Usage {
                prompt_tokens: est,
                completion_tokens: 0,
                cached_tokens: 0,
                estimated: true,
            });
            (value, usage)
        })
    }
    .await;
    match result {
        Ok((value, usage)) => {
            ctx.record.usage = Some(usage);
            ctx.complete(200, "success");
            Ok(json_bytes_response(value.to_bytes()))
        }
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}
