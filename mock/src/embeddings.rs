//! `POST /v1/embeddings`: deterministic unit vectors seeded by each input.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::errors::bad_request;
use super::errors::Rejection;
use super::faults::deliver;
use super::request::{begin_json, JsonRequest};
use super::state::MockState;
use super::util::{base64_encode, fnv1a, SplitMix};

pub const ROUTE: &str = "/v1/embeddings";
const MAX_DIMENSIONS: u64 = 65_536;

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
) -> HttpResponse {
    let request = match begin_json(&req, payload, &state, ROUTE).await {
        Ok(r) => r,
        Err(rejection) => return *rejection,
    };
    match respond(&request, &state) {
        Ok(response) => response,
        Err(rejection) => *rejection,
    }
}

/// One input: text or a list of token ids.
enum Input {
    Text(String),
    Tokens(Vec<u64>),
}

impl Input {
    fn seed(&self) -> u64 {
        match self {
            Input::Text(t) => fnv1a(t.as_bytes()),
            Input::Tokens(ids) => {
                let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
                fnv1a(&bytes) ^ 0x5555
            }
        }
    }

    fn tokens(&self) -> u64 {
        match self {
            Input::Text(t) => t.split_whitespace().count() as u64,
            Input::Tokens(ids) => ids.len() as u64,
        }
    }
}

fn parse_inputs(input: Option<&Value>) -> Result<Vec<Input>, String> {
    let token_list =
        |v: &Value| -> Option<Vec<u64>> { v.as_array()?.iter().map(Value::as_u64).collect() };
    match input {
        None | Some(Value::Null) => Err("`input` is required".to_owned()),
        Some(Value::String(s)) => Ok(vec![Input::Text(s.clone())]),
        Some(Value::Array(items)) if items.is_empty() => {
            Err("`input` must not be empty".to_owned())
        }
        Some(Value::Array(items)) => {
            if items.iter().all(Value::is_string) {
                Ok(items
                    .iter()
                    .filter_map(|v| v.as_str().map(|s| Input::Text(s.to_owned())))
                    .collect())
            } else if items.iter().all(Value::is_u64) {
                Ok(vec![Input::Tokens(
                    items.iter().filter_map(Value::as_u64).collect(),
                )])
            } else {
                items
                    .iter()
                    .map(|v| match token_list(v) {
                        Some(ids) if !ids.is_empty() => Ok(Input::Tokens(ids)),
                        _ => Err(
                            "`input` must be a string, an array of strings, an array of \
                                  token ids or an array of token-id arrays"
                                .to_owned(),
                        ),
                    })
                    .collect()
            }
        }
        Some(_) => Err("`input` must be a string or an array".to_owned()),
    }
}

/// A unit-length vector determined by `seed`.
fn vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut rng = SplitMix(seed);
    let mut v: Vec<f32> = (0..dims).map(|_| rng.next_signed_unit()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[derive(Serialize)]
#[serde(untagged)]
enum Embedding {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Item {
    object: &'static str,
    index: usize,
    embedding: Embedding,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct Response {
    object: &'static str,
    data: Vec<Item>,
    model: String,
    usage: Usage,
}

fn respond(request: &JsonRequest, state: &web::Data<MockState>) -> Result<HttpResponse, Rejection> {
    let model = request.model()?;
    let inputs =
        parse_inputs(request.body.get("input")).map_err(|m| bad_request(m, Some("input")))?;
    let dims = match request.body.get("dimensions") {
        None | Some(Value::Null) => request.settings.embedding_dim,
        Some(v) => match v.as_u64() {
            Some(d @ 1..=MAX_DIMENSIONS) => d as usize,
            _ => {
                return Err(bad_request(
                    format!("`dimensions` must be an integer within 1..{MAX_DIMENSIONS}"),
                    Some("dimensions"),
                )
                .into())
            }
        },
    };
    let base64 = match request.str_field("encoding_format") {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad_request(
                format!("`encoding_format` must be `float` or `base64`, not `{other}`"),
                Some("encoding_format"),
            )
            .into())
        }
    };
    let tokens: u64 = inputs.iter().map(Input::tokens).sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let v = vector(input.seed(), dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Embedding::Base64(base64_encode(&bytes))
            } else {
                Embedding::Float(v)
            };
            Item {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let response = Response {
        object: "list",
        data,
        model,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    let body = serde_json::to_vec(&response)
        .map_err(|e| super::errors::openai_error(500, e.to_string(), "server_error", None, None))?;
    Ok(deliver(
        state,
        &request.settings,
        "application/json",
        Bytes::from(body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vectors_are_deterministic_and_unit_length() {
        let a = vector(fnv1a(b"hello"), 16);
        assert_eq!(a, vector(fnv1a(b"hello"), 16));
        assert_ne!(a, vector(fnv1a(b"world"), 16));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn all_input_shapes_parse() {
        assert_eq!(parse_inputs(Some(&json!("a b"))).unwrap().len(), 1);
        assert_eq!(parse_inputs(Some(&json!(["a", "b"]))).unwrap().len(), 2);
        assert_eq!(parse_inputs(Some(&json!([1, 2, 3]))).unwrap().len(), 1);
        assert_eq!(parse_inputs(Some(&json!([[1, 2], [3]]))).unwrap().len(), 2);
        assert!(parse_inputs(Some(&json!([]))).is_err());
        assert!(parse_inputs(Some(&json!([[]]))).is_err());
        assert!(parse_inputs(Some(&json!(["a", 1]))).is_err());
        assert!(parse_inputs(Some(&json!(3))).is_err());
        assert!(parse_inputs(None).is_err());
    }
}
