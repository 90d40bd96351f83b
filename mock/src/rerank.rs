//! Rerank in two engines' shapes: `POST /v1/rerank` (Jina/Cohere, as vLLM and llama.cpp's
//! `--reranking` serve it: `documents` in, `results[{index, relevance_score}]` out, in input
//! order and without honouring `top_n`, as llama.cpp does) and TEI's `POST /rerank`
//! (`{query, texts}` in, `[{index, score}]` out). The score is deterministic: the share of the
//! query's distinct words that the document contains.

use std::collections::HashSet;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::errors::{bad_request, Rejection};
use super::faults::deliver;
use super::request::{begin_json, JsonRequest};
use super::state::MockState;

pub const ROUTE: &str = "/v1/rerank";
pub const TEI_ROUTE: &str = "/rerank";

pub async fn native(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
) -> HttpResponse {
    serve(req, payload, state, ROUTE, "documents").await
}

pub async fn tei(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
) -> HttpResponse {
    serve(req, payload, state, TEI_ROUTE, "texts").await
}

/// One rerank request whose documents come in `documents_key` (which also picks the shape
/// of the answer).
async fn serve(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
    route: &str,
    documents_key: &str,
) -> HttpResponse {
    let request = match begin_json(&req, payload, &state, route).await {
        Ok(r) => r,
        Err(rejection) => return *rejection,
    };
    match respond(&request, &state, documents_key) {
        Ok(response) => response,
        Err(rejection) => *rejection,
    }
}

fn respond(
    request: &JsonRequest,
    state: &web::Data<MockState>,
    documents_key: &str,
) -> Result<HttpResponse, Rejection> {
    let query = request
        .str_field("query")
        .ok_or_else(|| bad_request("`query` must be a string", Some("query")))?;
    let documents: Vec<&str> = request
        .body
        .get(documents_key)
        .and_then(Value::as_array)
        .and_then(|docs| docs.iter().map(Value::as_str).collect())
        .ok_or_else(|| {
            bad_request(
                format!("`{documents_key}` must be an array of strings"),
                Some(documents_key),
            )
        })?;
    let scores: Vec<f64> = documents.iter().map(|d| overlap(query, d)).collect();
    let body = if documents_key == "texts" {
        json!(scores
            .iter()
            .enumerate()
            .map(|(index, score)| json!({"index": index, "score": score}))
            .collect::<Vec<_>>())
    } else {
        let tokens: usize = documents
            .iter()
            .map(|d| d.split_whitespace().count())
            .sum::<usize>()
            + query.split_whitespace().count() * documents.len();
        json!({
            "id": format!("rerank-mock{:016x}", fastrand::u64(..)),
            "model": request.model()?,
            "results": scores
                .iter()
                .enumerate()
                .map(|(index, score)| json!({"index": index, "relevance_score": score}))
                .collect::<Vec<_>>(),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })
    };
    Ok(deliver(
        state,
        &request.settings,
        "application/json",
        Bytes::from(body.to_string()),
    ))
}

/// The share of the query's distinct (lower-cased) words found in `document`, in 0..=1.
pub fn overlap(query: &str, document: &str) -> f64 {
    let words = |text: &str| -> HashSet<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let (query, document) = (words(query), words(document));
    if query.is_empty() {
        return 0.0;
    }
    query.intersection(&document).count() as f64 / query.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_the_share_of_query_words_found() {
        let cases = [
            ("red apple", "An apple, red and ripe.", 1.0),
            ("red apple", "a green apple", 0.5),
            ("red apple", "bananas", 0.0),
            ("", "anything", 0.0),
            ("Paris capital", "paris is the CAPITAL of France", 1.0),
        ];
        for (query, document, score) in cases {
            assert_eq!(overlap(query, document), score, "{query} / {document}");
        }
    }
}
