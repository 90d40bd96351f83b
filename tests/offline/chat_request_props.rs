//! The typed chat parse (`api::chat_request`) against the `serde_json::Value` validation it
//! replaced: for generated bodies within the JSON caps, both accept and refuse the same bodies
//! with the same error, learn the same facts, and forward the same JSON upstream.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use switchyard::api::chat::upstream_body;
use switchyard::api::chat_request::{self, ChatFacts};
use switchyard::error::{ApiError, ErrorCode};

/// The validation as it was before the typed parse (src/api/chat.rs at 42a9d6d), the oracle.
fn legacy_validate(body: &Value) -> Result<ChatFacts, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("The request body must be a JSON object.", None))?;
    let model = switchyard::api::required_model(obj)?;
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(ApiError::bad_request(
                "`messages` must contain at least one message.",
                Some("messages"),
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`messages` must be an array.",
                Some("messages"),
            ))
        }
        None => {
            return Err(ApiError::bad_request(
                "Missing required parameter: `messages`.",
                Some("messages"),
            ))
        }
    };
    let mut facts = ChatFacts {
        model,
        stream: false,
        include_usage: false,
        max_tokens: None,
        prompt_chars: 0,
        uses_image: false,
        uses_audio: false,
    };
    for (i, message) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let m = message.as_object().ok_or_else(|| {
            ApiError::bad_request(format!("`{param}` must be an object."), Some(&param))
        })?;
        match m.get("role") {
            Some(Value::String(r)) if !r.is_empty() => {}
            _ => {
                return Err(ApiError::bad_request(
                    format!("`{param}.role` is required and must be a string."),
                    Some(&format!("{param}.role")),
                ))
            }
        }
        match m.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => facts.prompt_chars += s.len(),
            Some(Value::Array(parts)) => {
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            facts.prompt_chars +=
                                part.get("text").and_then(Value::as_str).map_or(0, str::len)
                        }
                        Some("image_url") => facts.uses_image = true,
                        Some("input_audio") => facts.uses_audio = true,
                        Some(_) => {}
                        None => {
                            return Err(ApiError::bad_request(
                                format!("Every part of `{param}.content` needs a `type`."),
                                Some(&format!("{param}.content")),
                            ))
                        }
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    format!("`{param}.content` must be a string, an array of parts, or null."),
                    Some(&format!("{param}.content")),
                ))
            }
        }
    }
    facts.stream = switchyard::api::optional_bool(obj, "stream")?.unwrap_or(false);
    match obj.get("stream_options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => {
            facts.include_usage = matches!(o.get("include_usage"), Some(Value::Bool(true)));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`stream_options` must be an object.",
                Some("stream_options"),
            ))
        }
    }
    for key in ["max_tokens", "max_completion_tokens"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 && n <= u32::MAX as u64 => facts.max_tokens = Some(n),
                _ => {
                    return Err(ApiError::bad_request(
                        format!("`{key}` must be a positive integer."),
                        Some(key),
                    ))
                }
            },
        }
    }
    for key in [
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
    ] {
        if let Some(v) = obj.get(key) {
            if !v.is_null() && !v.is_number() {
                return Err(ApiError::bad_request(
                    format!("`{key}` must be a number."),
                    Some(key),
                ));
            }
        }
    }
    if let Some(v) = obj.get("tools") {
        if !v.is_null() && !v.is_array() {
            return Err(ApiError::bad_request(
                "`tools` must be an array.",
                Some("tools"),
            ));
        }
    }
    Ok(facts)
}

/// The body sent upstream before the typed parse: the tree with `model` and `stream_options`
/// rewritten.
fn legacy_upstream(body: &Value, stream: bool) -> Value {
    let mut map = body.as_object().cloned().unwrap_or_default();
    map.insert("model".into(), json!("upstream-id"));
    if stream {
        let options = map
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Some(o) = options.as_object_mut() {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    Value::Object(map)
}

type Verdict = Result<(ChatFacts, Value), (u16, String, Option<String>, ErrorCode)>;

fn error_parts(e: ApiError) -> (u16, String, Option<String>, ErrorCode) {
    (e.status().as_u16(), e.message, e.param, e.code)
}

fn legacy(text: &[u8]) -> Verdict {
    let body: Value = serde_json::from_slice(text).expect("generated bodies are JSON");
    let facts = legacy_validate(&body).map_err(error_parts)?;
    let upstream = legacy_upstream(&body, facts.stream);
    Ok((facts, upstream))
}

fn typed(text: &[u8]) -> Verdict {
    let (facts, mut body) =
        chat_request::parse(&Bytes::copy_from_slice(text)).map_err(error_parts)?;
    let sent = upstream_body(&mut body, "upstream-id", facts.stream).to_vec();
    let upstream = serde_json::from_slice(&sent).expect("the spliced body is JSON");
    Ok((facts, upstream))
}

/// A value of any kind, including the right one for some fields.
fn any_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(16)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(4294967295u64)),
        Just(json!(4294967296u64)),
        "[a-z \"\\\\é]{0,6}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
    ]
}

fn part() -> impl Strategy<Value = Value> {
    prop_oneof![
        any_scalar().prop_map(|t| json!({"type": "text", "text": t})),
        Just(json!({"type": "image_url", "image_url": {"url": "data:,"}})),
        Just(json!({"type": "input_audio"})),
        Just(json!({"type": "other"})),
        Just(json!({"text": "no type"})),
        any_scalar().prop_map(|t| json!({"type": t})),
        any_scalar(),
    ]
}

fn content() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        any_scalar().prop_map(Some),
        prop::collection::vec(part(), 0..4).prop_map(|p| Some(Value::Array(p))),
    ]
}

fn message() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        Just(None),
        Just(Some(json!("user"))),
        Just(Some(json!(""))),
        any_scalar().prop_map(Some),
    ];
    prop_oneof![
        4 => (role, content()).prop_map(|(role, content)| {
            let mut m = Map::new();
            if let Some(r) = role {
                m.insert("role".into(), r);
            }
            if let Some(c) = content {
                m.insert("content".into(), c);
            }
            m.insert("name".into(), json!("n"));
            Value::Object(m)
        }),
        1 => any_scalar(),
    ]
}

/// An optional member: absent, or any scalar, or (for some keys) a right-shaped value.
fn member(right: Value) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(right)),
        1 => any_scalar().prop_map(Some),
    ]
}

fn body() -> impl Strategy<Value = Value> {
    let messages = prop_oneof![
        6 => prop::collection::vec(message(), 0..4).prop_map(|m| Some(Value::Array(m))),
        1 => any_scalar().prop_map(Some),
        1 => Just(None),
    ];
    let members = (
        member(json!("m")),
        messages,
        member(json!(true)),
        member(json!({"include_usage": false, "other": 1})),
        member(json!(32)),
        member(json!(8)),
        member(json!(0.7)),
        member(json!([{"type": "function"}])),
        member(json!({"deep": [1, {"x": null}]})),
    );
    let object = members.prop_map(
        |(model, messages, stream, options, max, max_completion, temperature, tools, junk)| {
            let mut m = Map::new();
            for (key, value) in [
                ("model", model),
                ("messages", messages),
                ("stream", stream),
                ("stream_options", options),
                ("max_tokens", max),
                ("max_completion_tokens", max_completion),
                ("temperature", temperature),
                ("tools", tools),
                ("my_extension", junk),
            ] {
                if let Some(v) = value {
                    m.insert(key.into(), v);
                }
            }
            Value::Object(m)
        },
    );
    prop_oneof![9 => object, 1 => any_scalar()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn typed_parse_agrees_with_the_tree_validation(body in body()) {
        let text = serde_json::to_vec(&body).expect("serialize");
        prop_assert_eq!(typed(&text), legacy(&text), "body: {}", body);
    }
}

#[test]
fn duplicate_keys_resolve_as_the_tree_did_last_one_wins() {
    for text in [
        r#"{"model":"a","model":"b","messages":[{"role":"user"}]}"#,
        r#"{"model":"m","messages":"x","messages":[{"role":"user"}]}"#,
        r#"{"model":"m","messages":[{"role":"user"}],"stream":"no","stream":true}"#,
        r#"{"model":"m","messages":[{"role":"user"}],"stream":true,"stream":"no"}"#,
        r#"{"model":"m","messages":[{"role":"","role":"user","content":5,"content":"ab"}]}"#,
        r#"{"model":"m","messages":[{"role":"user"}],"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}"#,
    ] {
        assert_eq!(typed(text.as_bytes()), legacy(text.as_bytes()), "{text}");
    }
}

/// Small bodies find a repeated key by scanning their members, bodies of more than 32 members
/// through an index built when the 33rd arrives: a repeat must resolve the same either side of
/// that switch, whichever side its first appearance was on.
#[test]
fn duplicate_keys_resolve_alike_in_small_and_large_bodies() {
    for members in [0usize, 1, 29, 30, 31, 32, 33, 34, 40, 100] {
        for repeat_at in [0, members / 2, members.saturating_sub(1)] {
            let mut parts = vec![r#""model":"a""#.to_string()];
            parts.extend((0..members).map(|i| format!(r#""p{i}":{i}"#)));
            parts.push(r#""messages":[{"role":"user"}]"#.to_string());
            // A padding member again (first seen early or late), then `model` again, last.
            parts.push(format!(r#""p{repeat_at}":"again""#));
            parts.push(r#""model":"b""#.to_string());
            let text = format!("{{{}}}", parts.join(","));
            assert_eq!(typed(text.as_bytes()), legacy(text.as_bytes()), "{text}");
            // And the body sent on names each member once, where it first appeared.
            let (facts, mut body) = chat_request::parse(&Bytes::from(text.clone())).unwrap();
            let sent = upstream_body(&mut body, "upstream-id", facts.stream).to_vec();
            let keys = top_level_keys(&sent);
            let mut expected = vec!["model".to_string()];
            expected.extend((0..members).map(|i| format!("p{i}")));
            expected.push("messages".into());
            if repeat_at >= members {
                expected.push(format!("p{repeat_at}"));
            }
            assert_eq!(keys, expected, "{text}");
        }
    }
}

/// The top-level keys of a JSON object, in order, repeats included.
fn top_level_keys(json: &[u8]) -> Vec<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                keys.push(key);
            }
            Ok(keys)
        }
    }
    use serde::Deserializer as _;
    serde_json::Deserializer::from_slice(json)
        .deserialize_map(Keys)
        .expect("the spliced body is a JSON object")
}

#[test]
fn whitespace_escapes_and_non_objects_agree() {
    for text in [
        " \n{\"model\" : \"m\" , \"messages\" : [ { \"role\" : \"u\\u0073er\" , \"content\" : \"\\\"q\\\"\\u00e9\" } ] }\n",
        "[]",
        "\"text\"",
        "null",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"te\\u0078t\",\"text\":\"abc\"}]}]}",
    ] {
        assert_eq!(typed(text.as_bytes()), legacy(text.as_bytes()), "{text}");
    }
}

#[test]
fn malformed_json_is_invalid_json_and_too_many_fields_is_refused() {
    for text in [
        &b"{\"model\": \"m\", "[..],
        b"{\"a\":1} x",
        b"[1,",
        b"{\"a\":\"\xff\"}",
    ] {
        let (status, _, _, code) = typed(text).unwrap_err();
        assert_eq!(
            (status, code.wire().code),
            (400, Some("invalid_json")),
            "{text:?}"
        );
    }
    let mut wide = String::from("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]");
    for i in 0..chat_request::MAX_TOP_LEVEL_FIELDS {
        wide.push_str(&format!(",\"k{i}\":0"));
    }
    wide.push('}');
    let (status, _, _, code) = typed(wide.as_bytes()).unwrap_err();
    assert_eq!((status, code.wire().code), (400, Some("json_too_complex")));
}
