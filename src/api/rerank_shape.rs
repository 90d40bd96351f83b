//! The rerank API's shapes, as pure functions: the client's request (the Jina/Cohere shape:
//! `query`, `documents` as strings or `{text}` objects, `top_n`, `return_documents`), the body
//! each backend kind is sent, and the results the client gets back — sorted by relevance, cut
//! to `top_n`, with or without the documents, whatever the backend did (llama.cpp returns
//! results in input order and ignores `top_n`; TEI answers in its own shape).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// A validated rerank request.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankRequest {
    pub model: String,
    pub query: String,
    /// The documents' texts, in the client's order (`{text}` objects unwrapped).
    pub documents: Vec<String>,
    pub top_n: Option<usize>,
    pub return_documents: Option<bool>,
}

impl RerankRequest {
    /// Tokens guessed from the texts' length (about four characters a token), for limits and
    /// for usage when the backend reports none.
    pub fn estimated_tokens(&self) -> u64 {
        let chars = self.documents.iter().map(String::len).sum::<usize>() + self.query.len();
        (chars as u64).div_ceil(4).max(1)
    }
}

/// Validate a rerank body.
pub fn parse(body: &Map<String, Value>) -> Result<RerankRequest, ApiError> {
    let model = super::required_model(body)?;
    let query = match body.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Missing required parameter: `query`.",
                Some("query"),
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`query` must be a non-empty string.",
                Some("query"),
            ))
        }
    };
    let documents = documents(body.get("documents"))?;
    let top_n = match body.get("top_n") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|n| *n >= 1) {
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => {
                return Err(ApiError::bad_request(
                    "`top_n` must be a positive integer.",
                    Some("top_n"),
                ))
            }
        },
    };
    let return_documents = super::optional_bool(body, "return_documents")?;
    Ok(RerankRequest {
        model,
        query,
        documents,
        top_n,
        return_documents,
    })
}

fn documents(given: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = |message: &str| ApiError::bad_request(message, Some("documents"));
    let items = match given {
        None | Some(Value::Null) => return Err(bad("Missing required parameter: `documents`.")),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(bad("`documents` must not be empty."))
        }
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad("`documents` must be an array.")),
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(text) => Ok(text.clone()),
            Value::Object(doc) => match doc.get("text") {
                Some(Value::String(text)) => Ok(text.clone()),
                _ => Err(bad("Every object in `documents` needs a string `text`.")),
            },
            _ => Err(bad(
                "`documents` must hold strings or objects with a string `text`.",
            )),
        })
        .collect()
}

/// The body for a backend that serves rerank natively: the client's members, with the
/// documents as plain strings (the one form every native server accepts).
pub fn native_body(
    client_body: &Map<String, Value>,
    request: &RerankRequest,
) -> Map<String, Value> {
    let mut body = client_body.clone();
    body.insert("documents".into(), json!(request.documents));
    body
}

/// The body for TEI's `POST /rerank`.
pub fn tei_body(request: &RerankRequest) -> Value {
    json!({
        "query": request.query,
        "texts": request.documents,
        "truncate": true,
        "return_text": false,
    })
}

/// One scored document as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub index: usize,
    pub relevance_score: f64,
}

#[derive(Deserialize)]
struct NativeResult {
    index: usize,
    #[serde(alias = "score")]
    relevance_score: f64,
}

#[derive(Deserialize)]
struct TeiResult {
    index: usize,
    score: f64,
}

/// A native answer's `results`; `None` when they are not in the rerank shape.
pub fn native_results(results: &Value) -> Option<Vec<Scored>> {
    let results: Vec<NativeResult> = serde_json::from_value(results.clone()).ok()?;
    Some(
        results
            .into_iter()
            .map(|r| Scored {
                index: r.index,
                relevance_score: r.relevance_score,
            })
            .collect(),
    )
}

/// TEI's answer (an array of `{index, score}`); `None` when it is not that.
pub fn tei_results(body: &[u8]) -> Option<Vec<Scored>> {
    let results: Vec<TeiResult> = serde_json::from_slice(body).ok()?;
    Some(
        results
            .into_iter()
            .map(|r| Scored {
                index: r.index,
                relevance_score: r.score,
            })
            .collect(),
    )
}

/// The client's `results`: results naming a document that was not sent are dropped, the rest
/// sorted by relevance (highest first, ties in input order), cut to `top_n`, each with its
/// document when the client asked for documents.
pub fn client_results(mut scored: Vec<Scored>, request: &RerankRequest) -> Vec<Value> {
    scored.retain(|s| s.index < request.documents.len() && s.relevance_score.is_finite());
    scored.sort_by(|a, b| {
        b.relevance_score
            .total_cmp(&a.relevance_score)
            .then(a.index.cmp(&b.index))
    });
    scored.truncate(request.top_n.unwrap_or(usize::MAX));
    let with_documents = request.return_documents == Some(true);
    scored
        .into_iter()
        .map(|s| {
            let mut result = json!({"index": s.index, "relevance_score": s.relevance_score});
            if let (true, Some(text)) = (with_documents, request.documents.get(s.index)) {
                result["document"] = json!({ "text": text });
            }
            result
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(body: Value) -> Result<RerankRequest, ApiError> {
        match body {
            Value::Object(map) => parse(&map),
            _ => unreachable!("test bodies are objects"),
        }
    }

    #[test]
    fn documents_as_strings_or_text_objects() {
        let r = request(json!({
            "model": "r", "query": "q",
            "documents": ["a", {"text": "b", "title": "ignored"}],
            "top_n": 1, "return_documents": true
        }))
        .expect("valid");
        assert_eq!(r.documents, ["a", "b"]);
        assert_eq!((r.top_n, r.return_documents), (Some(1), Some(true)));
    }

    #[test]
    fn bad_input_is_a_400_naming_the_parameter() {
        let cases = [
            (json!({"query": "q", "documents": ["a"]}), "model"),
            (json!({"model": "r", "documents": ["a"]}), "query"),
            (
                json!({"model": "r", "query": "", "documents": ["a"]}),
                "query",
            ),
            (
                json!({"model": "r", "query": 3, "documents": ["a"]}),
                "query",
            ),
            (json!({"model": "r", "query": "q"}), "documents"),
            (
                json!({"model": "r", "query": "q", "documents": []}),
                "documents",
            ),
            (
                json!({"model": "r", "query": "q", "documents": "a"}),
                "documents",
            ),
            (
                json!({"model": "r", "query": "q", "documents": [1]}),
                "documents",
            ),
            (
                json!({"model": "r", "query": "q", "documents": [{"t": "a"}]}),
                "documents",
            ),
            (
                json!({"model": "r", "query": "q", "documents": ["a"], "top_n": 0}),
                "top_n",
            ),
            (
                json!({"model": "r", "query": "q", "documents": ["a"], "top_n": -1}),
                "top_n",
            ),
            (
                json!({"model": "r", "query": "q", "documents": ["a"], "top_n": "2"}),
                "top_n",
            ),
            (
                json!({"model": "r", "query": "q", "documents": ["a"], "return_documents": 1}),
                "return_documents",
            ),
        ];
        for (body, param) in cases {
            let e = request(body.clone()).expect_err(&body.to_string());
            assert_eq!(e.status().as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn results_are_sorted_cut_and_carry_documents_on_request() {
        let mut r = request(json!({
            "model": "r", "query": "q", "documents": ["a", "b", "c"], "top_n": 2
        }))
        .expect("valid");
        let scored = tei_results(
            br#"[{"index":0,"score":0.1},{"index":2,"score":0.9},
            {"index":1,"score":0.5},{"index":7,"score":1.0}]"#,
        )
        .expect("tei shape");
        let plain = client_results(scored.clone(), &r);
        assert_eq!(
            plain,
            [
                json!({"index": 2, "relevance_score": 0.9}),
                json!({"index": 1, "relevance_score": 0.5})
            ]
        );
        r.return_documents = Some(true);
        r.top_n = None;
        let with_docs = client_results(scored, &r);
        assert_eq!(with_docs.len(), 3, "index 7 was never sent");
        assert_eq!(with_docs[2]["document"]["text"], "a");
    }

    #[test]
    fn native_results_accept_either_score_name_and_refuse_other_shapes() {
        let jina = native_results(&json!([{"index": 1, "relevance_score": 0.5}]));
        let other = native_results(&json!([{"index": 1, "score": 0.5}]));
        assert_eq!(jina, other);
        assert!(native_results(&json!({"index": 1})).is_none());
        assert!(tei_results(b"{\"error\":\"x\"}").is_none());
    }

    proptest! {
        #[test]
        fn results_are_ordered_bounded_and_in_range(
            scores in proptest::collection::vec((0usize..12, -5.0f64..5.0), 0..20),
            docs in 1usize..10,
            top_n in proptest::option::of(1usize..8),
        ) {
            let r = RerankRequest {
                model: "r".into(),
                query: "q".into(),
                documents: (0..docs).map(|i| format!("d{i}")).collect(),
                top_n,
                return_documents: None,
            };
            let scored = scores
                .iter()
                .map(|&(index, relevance_score)| Scored { index, relevance_score })
                .collect();
            let out = client_results(scored, &r);
            prop_assert!(out.len() <= top_n.unwrap_or(usize::MAX));
            let got: Vec<f64> = out.iter().filter_map(|v| v["relevance_score"].as_f64()).collect();
            prop_assert!(got.windows(2).all(|w| w[0] >= w[1]));
            prop_assert!(out.iter().all(|v| v["index"].as_u64().is_some_and(|i| (i as usize) < docs)));
        }
    }
}
