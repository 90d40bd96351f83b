//! `POST /v1/images/generations`: validated, then relayed as JSON like embeddings.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::{forwarded, json_bytes_response, new_ctx};
use crate::api::state::AppState;
use crate::engines::ApiOp;
use crate::error::ApiError;

const MAX_IMAGES: u64 = 10;
const MAX_PROMPT_CHARS: usize = 32_000;

/// Checks OpenAI's request shape; returns how many images are asked for.
pub fn validate(obj: &Map<String, Value>) -> Result<u64, ApiError> {
    match obj.get("prompt") {
        Some(Value::String(p)) if p.is_empty() => {
            return Err(ApiError::bad_request(
                "`prompt` must not be empty.",
                Some("prompt"),
            ))
        }
        Some(Value::String(p)) if p.chars().count() > MAX_PROMPT_CHARS => {
            return Err(ApiError::bad_request(
                format!("`prompt` is longer than {MAX_PROMPT_CHARS} characters."),
                Some("prompt"),
            ))
        }
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Missing required parameter: `prompt`.",
                Some("prompt"),
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`prompt` must be a string.",
                Some("prompt"),
            ))
        }
    }
    let n = match obj.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=MAX_IMAGES) => n,
            _ => {
                return Err(ApiError::bad_request(
                    format!("`n` must be an integer from 1 to {MAX_IMAGES}."),
                    Some("n"),
                ))
            }
        },
    };
    match obj.get("size") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "auto" || parse_size(s).is_some() => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "`size` must be `auto` or WIDTHxHEIGHT, e.g. `1024x1024`.",
                Some("size"),
            ))
        }
    }
    match obj.get("response_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "url" || f == "b64_json" => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "`response_format` must be `url` or `b64_json`.",
                Some("response_format"),
            ))
        }
    }
    for key in ["quality", "style", "user", "background", "output_format"] {
        if obj.get(key).is_some_and(|v| !v.is_null() && !v.is_string()) {
            return Err(ApiError::bad_request(
                format!("`{key}` must be a string."),
                Some(key),
            ));
        }
    }
    Ok(n)
}

/// `WIDTHxHEIGHT`, each 1 to 5 digits without a leading zero (the backend judges what it can
/// render; this only rejects what is not a size at all).
fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    let dimension = |d: &str| {
        let well_formed = (1..=5).contains(&d.len())
            && !d.starts_with('0')
            && d.bytes().all(|b| b.is_ascii_digit());
        well_formed.then(|| d.parse::<u32>().ok()).flatten()
    };
    Some((dimension(w)?, dimension(h)?))
}

pub async fn generations(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, ApiOp::Images);
    let result = async {
        // The permit holds the body's share of the JSON budget as long as the map lives.
        let (map, _permit) =
            super::body::read_json_object(&req, payload, state.settings.max_body_bytes).await?;
        let model = super::required_model(&map)?;
        let n = validate(&map)?;
        let fwd = forwarded(&req, ctx.request_id());
        super::relay_json_body(
            &state,
            &client,
            &model,
            ApiOp::Images,
            n,
            map,
            &fwd,
            &mut ctx,
        )
        .await
    }
    .await;
    match result {
        Ok((body, usage)) => {
            ctx.record.usage = usage;
            let produced = body
                .field::<Vec<serde::de::IgnoredAny>>("data")
                .map_or(0, |d| d.len() as u32);
            ctx.record.images = Some(produced);
            ctx.complete(200, "success");
            Ok(json_bytes_response(body.to_bytes()))
        }
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn validates_openai_shapes() {
        assert_eq!(validate(&obj(json!({"prompt": "a cat"}))).unwrap(), 1);
        assert_eq!(
            validate(&obj(
                json!({"prompt": "a", "n": 3, "size": "512x512", "response_format": "b64_json"})
            ))
            .unwrap(),
            3
        );
        for bad in [
            json!({}),
            json!({"prompt": ""}),
            json!({"prompt": "a", "n": 0}),
            json!({"prompt": "a", "n": 11}),
            json!({"prompt": "a", "size": "big"}),
            json!({"prompt": "a", "size": "0x5"}),
            json!({"prompt": "a", "size": "0512x512"}),
            json!({"prompt": "a", "size": "100000x5"}),
            json!({"prompt": "a", "response_format": "png"}),
            json!({"prompt": "a", "quality": 3}),
        ] {
            let e = validate(&obj(bad.clone())).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{bad}");
        }
    }
}
