//! A text completions request (`POST /v1/completions`) read the way chat requests are
//! ([`chat_request`](super::chat_request)): top-level members kept as slices of the request
//! buffer, `prompt` walked element by element, nothing else parsed. Token-id prompts are
//! checked for shape only and relayed as the client wrote them.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::body::invalid_json;
use super::chat_request::{
    self, check_generation_params, facts_with_model, field, field_shape, reread, ChatBody,
    ChatFacts, Fields,
};
use super::raw_json::{for_each_element, shape, ElementError, Shape};
use crate::error::ApiError;

/// Characters one prompt token id stands for in the router's estimates (a token is about
/// four characters of text).
const CHARS_PER_TOKEN_ID: usize = 4;

const PROMPT_SHAPES: &str =
    "`prompt` must be a string, an array of strings, an array of token ids, or an array of token id arrays.";

/// Validate a completions body and keep it for forwarding.
pub fn parse(body: &Bytes) -> Result<(ChatFacts, ChatBody), ApiError> {
    chat_request::parse_with(body, validate)
}

fn validate(fields: &Fields<'_>) -> Result<ChatFacts, ApiError> {
    let mut facts = facts_with_model(fields)?;
    facts.prompt_chars = prompt_chars(field(fields, "prompt"))?;
    check_generation_params(fields, &mut facts)?;
    for (key, accepts, expected) in OTHER_PARAMS {
        if let Some(found) = field_shape(fields, key)? {
            if !found.is_null() && !accepts(&found) {
                return Err(ApiError::bad_request(
                    format!("`{key}` must be {expected}."),
                    Some(key),
                ));
            }
        }
    }
    Ok(facts)
}

type ShapeCheck = fn(&Shape) -> bool;

/// The other members of OpenAI's completions API the router can judge by shape alone.
const OTHER_PARAMS: &[(&str, ShapeCheck, &str)] = &[
    ("echo", |s| matches!(s, Shape::Bool(_)), "a boolean"),
    ("suffix", |s| matches!(s, Shape::Str(_)), "a string"),
    ("n", is_positive_integer, "a positive integer"),
    ("best_of", is_positive_integer, "a positive integer"),
    ("logprobs", is_token_id, "a non-negative integer"),
    ("seed", |s| matches!(s, Shape::Number(_)), "an integer"),
    (
        "stop",
        |s| matches!(s, Shape::Str(_) | Shape::Array),
        "a string or an array of strings",
    ),
];

fn is_positive_integer(s: &Shape) -> bool {
    matches!(s, Shape::Number(n) if n.as_u64().is_some_and(|n| n >= 1))
}

fn is_token_id(s: &Shape) -> bool {
    matches!(s, Shape::Number(n) if n.is_u64())
}

/// What kind of list a `prompt` array is, decided by its first element.
#[derive(Clone, Copy, PartialEq)]
enum PromptList {
    Texts,
    TokenIds,
    TokenIdLists,
}

/// The prompt's size in characters (token ids count as [`CHARS_PER_TOKEN_ID`] each), or a
/// 400 naming what is wrong with its shape.
fn prompt_chars(prompt: Option<&RawValue>) -> Result<usize, ApiError> {
    let bad = |message: &str| ApiError::bad_request(message, Some("prompt"));
    let Some(prompt) = prompt else {
        return Err(bad("Missing required parameter: `prompt`."));
    };
    match reread(shape(prompt))? {
        Shape::Null => Err(bad("Missing required parameter: `prompt`.")),
        Shape::Str(len) => Ok(len),
        Shape::Array => {
            let mut kind = None;
            let mut chars = 0usize;
            let walked = for_each_element(prompt, |_, item| {
                let (this, size) = prompt_item(item)?;
                if *kind.get_or_insert(this) != this {
                    return Err(bad(PROMPT_SHAPES));
                }
                chars = chars.saturating_add(size);
                Ok(())
            });
            match walked {
                Ok(Some(0)) => Err(bad("`prompt` must not be empty.")),
                Ok(_) => Ok(chars),
                Err(ElementError::Stopped(e)) => Err(e),
                Err(ElementError::Json(e)) => Err(invalid_json(&e)),
            }
        }
        _ => Err(bad(PROMPT_SHAPES)),
    }
}

/// One element of a `prompt` array: its kind and its size in characters.
fn prompt_item(item: &RawValue) -> Result<(PromptList, usize), ApiError> {
    let bad = || ApiError::bad_request(PROMPT_SHAPES, Some("prompt"));
    match reread(shape(item))? {
        Shape::Str(len) => Ok((PromptList::Texts, len)),
        s if is_token_id(&s) => Ok((PromptList::TokenIds, CHARS_PER_TOKEN_ID)),
        Shape::Array => {
            let walked = for_each_element(item, |_, id| {
                if reread(shape(id)).is_ok_and(|s| is_token_id(&s)) {
                    Ok(())
                } else {
                    Err(bad())
                }
            });
            match walked {
                Ok(Some(n)) if n > 0 => Ok((
                    PromptList::TokenIdLists,
                    n.saturating_mul(CHARS_PER_TOKEN_ID),
                )),
                Ok(_) => Err(bad()),
                Err(ElementError::Stopped(e)) => Err(e),
                Err(ElementError::Json(e)) => Err(invalid_json(&e)),
            }
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(body: &str) -> Result<ChatFacts, ApiError> {
        parse(&Bytes::copy_from_slice(body.as_bytes())).map(|(facts, _)| facts)
    }

    #[test]
    fn prompt_shapes_and_their_sizes() {
        let cases = [
            (r#""hello""#, 5),
            (r#""""#, 0),
            (r#"["ab","cde"]"#, 5),
            ("[1,2,3]", 12),
            ("[[1,2],[3]]", 12),
        ];
        for (prompt, chars) in cases {
            let facts = check(&format!(r#"{{"model":"m","prompt":{prompt}}}"#))
                .unwrap_or_else(|e| panic!("{prompt}: {}", e.message));
            assert_eq!(facts.prompt_chars, chars, "{prompt}");
            assert_eq!(facts.model, "m");
        }
    }

    #[test]
    fn bad_input_is_a_400_naming_the_parameter() {
        let cases = [
            (r#"{"model":"m"}"#, Some("prompt")),
            (r#"{"model":"m","prompt":null}"#, Some("prompt")),
            (r#"{"model":"m","prompt":[]}"#, Some("prompt")),
            (r#"{"model":"m","prompt":7}"#, Some("prompt")),
            (r#"{"model":"m","prompt":{"text":"x"}}"#, Some("prompt")),
            (r#"{"model":"m","prompt":["a",1]}"#, Some("prompt")),
            (r#"{"model":"m","prompt":[1,"a"]}"#, Some("prompt")),
            (r#"{"model":"m","prompt":[[1],[]]}"#, Some("prompt")),
            (r#"{"model":"m","prompt":[[1,-2]]}"#, Some("prompt")),
            (r#"{"model":"m","prompt":[1.5]}"#, Some("prompt")),
            (r#"{"model":"m","prompt":[null]}"#, Some("prompt")),
            (r#"{"prompt":"x"}"#, Some("model")),
            (r#"{"model":3,"prompt":"x"}"#, Some("model")),
            (
                r#"{"model":"m","prompt":"x","stream":"yes"}"#,
                Some("stream"),
            ),
            (
                r#"{"model":"m","prompt":"x","max_tokens":0}"#,
                Some("max_tokens"),
            ),
            (r#"{"model":"m","prompt":"x","echo":1}"#, Some("echo")),
            (r#"{"model":"m","prompt":"x","n":0}"#, Some("n")),
            (
                r#"{"model":"m","prompt":"x","logprobs":-1}"#,
                Some("logprobs"),
            ),
            (r#"{"model":"m","prompt":"x","stop":5}"#, Some("stop")),
            (
                r#"{"model":"m","prompt":"x","temperature":"hot"}"#,
                Some("temperature"),
            ),
            (r#"{"model":"m","prompt":"x""#, None),
            (r#"["model"]"#, None),
        ];
        for (body, param) in cases {
            let e = check(body)
                .err()
                .unwrap_or_else(|| panic!("accepted {body}"));
            assert_eq!(e.status().as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), param, "{body}: {}", e.message);
        }
    }

    #[test]
    fn optional_members_may_be_null_or_well_shaped() {
        let body = r#"{"model":"m","prompt":"x","echo":true,"suffix":null,"n":2,"best_of":3,
            "logprobs":0,"stop":["\n"],"seed":7,"stream":true,"stream_options":{"include_usage":true}}"#;
        let facts = check(body).expect("valid");
        assert!(facts.stream && facts.include_usage);
    }

    proptest! {
        #[test]
        fn never_panics_and_only_says_400(body in "\\PC{0,80}") {
            if let Err(e) = check(&body) {
                prop_assert_eq!(e.status().as_u16(), 400);
            }
        }

        #[test]
        fn any_list_of_one_kind_is_accepted(
            texts in proptest::collection::vec("[a-z ]{0,8}", 1..6),
            ids in proptest::collection::vec(0u32..100_000, 1..6),
        ) {
            let as_texts = serde_json::to_string(&texts).unwrap_or_default();
            let as_ids = serde_json::to_string(&ids).unwrap_or_default();
            for prompt in [as_texts.clone(), as_ids.clone(), format!("[{as_ids},{as_ids}]")] {
                let body = format!(r#"{{"model":"m","prompt":{prompt}}}"#);
                prop_assert!(check(&body).is_ok(), "{}", body);
            }
            let mixed = format!(r#"{{"model":"m","prompt":[{},{}]}}"#, ids[0], as_texts);
            prop_assert!(check(&mixed).is_err());
        }
    }
}
