//! A chat request read without building a JSON tree. The body's top-level members are kept
//! as slices of the request buffer; validation looks only at the members it needs, walking
//! `messages` one message at a time; the body sent upstream is spliced from the same buffer,
//! so a 20 MiB message costs the router about 20 MiB, once.

use std::collections::HashMap;

use bytes::Bytes;
use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::error::Category;
use serde_json::value::RawValue;

use super::body::invalid_json;
use super::raw_json::{self, for_each_element, pick_fields, shape, ElementError, Shape};
use crate::error::{ApiError, ErrorCode};
use crate::relay::spliced::SplicedBody;

/// Most distinct top-level members a chat body may have (OpenAI's API has about forty; a
/// test of odd clients sends 5000). Each costs about 150 bytes once parsed.
pub const MAX_TOP_LEVEL_FIELDS: usize = 10_000;
/// Bodies with at most this many members find a duplicate key by scanning them; bigger ones
/// index their keys, so a body of thousands of members is not read in quadratic time.
const SCAN_UP_TO: usize = 32;
/// Values shorter than this are copied into the spliced body; longer ones are shared.
const SHARE_FROM_BYTES: usize = 4096;

/// The body's top-level members in order, each value raw JSON sharing the request buffer.
pub struct ChatBody {
    fields: Vec<(String, Bytes)>,
}

/// What validation ([`parse`]) learned about a chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatFacts {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub prompt_chars: usize,
    pub uses_image: bool,
    pub uses_audio: bool,
}

/// Validate a chat body and keep it for forwarding.
pub fn parse(body: &Bytes) -> Result<(ChatFacts, ChatBody), ApiError> {
    parse_with(body, validate)
}

/// Read `body`'s top-level members, check them with `validate` and keep them for forwarding:
/// the one reader behind every chat-like API (chat, text completions).
pub fn parse_with(
    body: &Bytes,
    validate: impl FnOnce(&Fields<'_>) -> Result<ChatFacts, ApiError>,
) -> Result<(ChatFacts, ChatBody), ApiError> {
    let fields = top_level_fields(body)?;
    let facts = validate(&fields)?;
    let fields = fields
        .into_iter()
        .map(|(key, raw)| (key, shared_slice(body, raw.get().as_bytes())))
        .collect();
    Ok((facts, ChatBody { fields }))
}

/// A body's top-level members, each value raw JSON borrowed from the request.
pub type Fields<'a> = Vec<(String, &'a RawValue)>;

/// The members of the top-level object; a duplicate key keeps its first place and its last
/// value, as `serde_json`'s ordered map does.
fn top_level_fields(body: &[u8]) -> Result<Fields<'_>, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<IgnoredAny>(body) {
            Err(e) => invalid_json(&e),
            Ok(_) => ApiError::bad_request("The request body must be a JSON object.", None),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = de
        .deserialize_map(TopLevel)
        .and_then(|fields| de.end().map(|()| fields));
    fields.map_err(|e| match e.classify() {
        // Keys are strings and values raw, so only the field cap is a data error.
        Category::Data => ApiError::new(
            ErrorCode::JsonTooComplex,
            format!("The request body has more than {MAX_TOP_LEVEL_FIELDS} top-level fields."),
        ),
        _ => invalid_json(&e),
    })
}

struct TopLevel;

impl<'a> Visitor<'a> for TopLevel {
    type Value = Fields<'a>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Fields<'a>, A::Error> {
        let mut fields: Fields<'a> = Vec::new();
        // Where each key sits in `fields`, once there are more than `SCAN_UP_TO` of them; below
        // that a duplicate is found by scanning (no hashing, no copy of each key).
        let mut index: Option<HashMap<String, usize>> = None;
        while let Some((key, value)) = map.next_entry::<String, &'a RawValue>()? {
            let seen = match &index {
                Some(index) => index.get(&key).copied(),
                None => fields.iter().position(|(k, _)| *k == key),
            };
            if let Some(slot) = seen.and_then(|at| fields.get_mut(at)) {
                slot.1 = value;
                continue;
            }
            if fields.len() == MAX_TOP_LEVEL_FIELDS {
                return Err(A::Error::custom("too many top-level fields"));
            }
            if fields.len() == SCAN_UP_TO {
                index = Some(
                    fields
                        .iter()
                        .enumerate()
                        .map(|(at, (k, _))| (k.clone(), at))
                        .collect(),
                );
            }
            if let Some(index) = &mut index {
                index.insert(key.clone(), fields.len());
            }
            fields.push((key, value));
        }
        Ok(fields)
    }
}

/// A raw value reread by a helper: it was parsed once already, so this cannot fail, but a
/// failure is still a client error rather than a panic.
pub(super) fn reread<T>(result: Result<T, serde_json::Error>) -> Result<T, ApiError> {
    result.map_err(|e| invalid_json(&e))
}

pub(super) fn field<'a>(fields: &Fields<'a>, key: &str) -> Option<&'a RawValue> {
    fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// The member's shape; absent is `None`.
pub(super) fn field_shape(fields: &Fields<'_>, key: &str) -> Result<Option<Shape>, ApiError> {
    field(fields, key).map(|raw| reread(shape(raw))).transpose()
}

/// The checks (and messages, in the same order) of OpenAI's chat API as the router applies
/// them.
fn validate(fields: &Fields<'_>) -> Result<ChatFacts, ApiError> {
    let mut facts = facts_with_model(fields)?;
    check_messages(field(fields, "messages"), &mut facts)?;
    check_generation_params(fields, &mut facts)?;
    if let Some(s) = field_shape(fields, "tools")? {
        if !matches!(s, Shape::Null | Shape::Array) {
            return Err(ApiError::bad_request(
                "`tools` must be an array.",
                Some("tools"),
            ));
        }
    }
    Ok(facts)
}

/// The facts of a body whose `model` is valid, nothing else known yet.
pub(super) fn facts_with_model(fields: &Fields<'_>) -> Result<ChatFacts, ApiError> {
    let model = match field(fields, "model") {
        Some(raw) if raw_json::is_string(raw) => {
            super::model_name(Some(&reread(serde_json::from_str::<String>(raw.get()))?))?
        }
        Some(raw) if !raw.get().starts_with('n') => return Err(super::model_not_a_string()),
        _ => super::model_name(None)?,
    };
    Ok(ChatFacts {
        model,
        stream: false,
        include_usage: false,
        max_tokens: None,
        prompt_chars: 0,
        uses_image: false,
        uses_audio: false,
    })
}

/// What chat and text completions share: `stream`, `stream_options`, token limits and the
/// sampling numbers.
pub(super) fn check_generation_params(
    fields: &Fields<'_>,
    facts: &mut ChatFacts,
) -> Result<(), ApiError> {
    facts.stream = match field_shape(fields, "stream")? {
        None | Some(Shape::Null) => false,
        Some(Shape::Bool(b)) => b,
        Some(_) => return Err(super::not_a_boolean("stream")),
    };
    match field(fields, "stream_options") {
        Some(raw) if !reread(shape(raw))?.is_null() => {
            let [include_usage] =
                reread(pick_fields(raw, ["include_usage"]))?.ok_or_else(|| {
                    ApiError::bad_request(
                        "`stream_options` must be an object.",
                        Some("stream_options"),
                    )
                })?;
            facts.include_usage = match include_usage {
                Some(raw) => reread(shape(raw))? == Shape::Bool(true),
                None => false,
            };
        }
        _ => {}
    }
    for key in ["max_tokens", "max_completion_tokens"] {
        match field_shape(fields, key)? {
            None | Some(Shape::Null) => {}
            Some(Shape::Number(n))
                if n.as_u64().is_some_and(|n| n >= 1 && n <= u32::MAX as u64) =>
            {
                facts.max_tokens = n.as_u64()
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    format!("`{key}` must be a positive integer."),
                    Some(key),
                ))
            }
        }
    }
    for key in [
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
    ] {
        if let Some(s) = field_shape(fields, key)? {
            if !matches!(s, Shape::Null | Shape::Number(_)) {
                return Err(ApiError::bad_request(
                    format!("`{key}` must be a number."),
                    Some(key),
                ));
            }
        }
    }
    Ok(())
}

fn check_messages(messages: Option<&RawValue>, facts: &mut ChatFacts) -> Result<(), ApiError> {
    let messages = messages.ok_or_else(|| {
        ApiError::bad_request("Missing required parameter: `messages`.", Some("messages"))
    })?;
    match for_each_element(messages, |i, message| check_message(i, message, facts)) {
        Ok(Some(0)) => Err(ApiError::bad_request(
            "`messages` must contain at least one message.",
            Some("messages"),
        )),
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ApiError::bad_request(
            "`messages` must be an array.",
            Some("messages"),
        )),
        Err(ElementError::Stopped(e)) => Err(e),
        Err(ElementError::Json(e)) => Err(invalid_json(&e)),
    }
}

/// `messages[i]`: the parameter an error about message `i` names. Made only for an error, as
/// valid messages (nearly all of them) need no text.
fn message_param(i: usize) -> String {
    format!("messages[{i}]")
}

fn check_message(i: usize, message: &RawValue, facts: &mut ChatFacts) -> Result<(), ApiError> {
    let [role, content] = reread(pick_fields(message, ["role", "content"]))?.ok_or_else(|| {
        let param = message_param(i);
        ApiError::bad_request(format!("`{param}` must be an object."), Some(&param))
    })?;
    if !matches!(role.map(shape).transpose(), Ok(Some(Shape::Str(len))) if len > 0) {
        let param = message_param(i);
        return Err(ApiError::bad_request(
            format!("`{param}.role` is required and must be a string."),
            Some(&format!("{param}.role")),
        ));
    }
    let Some(content) = content else {
        return Ok(());
    };
    match reread(shape(content))? {
        Shape::Null => Ok(()),
        Shape::Str(len) => {
            facts.prompt_chars += len;
            Ok(())
        }
        Shape::Array => {
            let walked = for_each_element(content, |_, part| check_part(i, part, facts));
            match walked {
                Err(ElementError::Stopped(e)) => Err(e),
                Err(ElementError::Json(e)) => Err(invalid_json(&e)),
                Ok(_) => Ok(()),
            }
        }
        _ => {
            let param = message_param(i);
            Err(ApiError::bad_request(
                format!("`{param}.content` must be a string, an array of parts, or null."),
                Some(&format!("{param}.content")),
            ))
        }
    }
}

const PART_TYPES: [&str; 3] = ["text", "image_url", "input_audio"];

/// Part of message `message`'s content array.
fn check_part(message: usize, part: &RawValue, facts: &mut ChatFacts) -> Result<(), ApiError> {
    let picked = reread(pick_fields(part, ["type", "text"]))?;
    let (kind, text) = match picked {
        Some([Some(kind), text]) if raw_json::is_string(kind) => (kind, text),
        _ => {
            let param = message_param(message);
            return Err(ApiError::bad_request(
                format!("Every part of `{param}.content` needs a `type`."),
                Some(&format!("{param}.content")),
            ));
        }
    };
    match reread(raw_json::string_among(kind, &PART_TYPES))? {
        Some(0) => {
            if let Some(Shape::Str(len)) = text.map(|t| reread(shape(t))).transpose()? {
                facts.prompt_chars += len;
            }
        }
        Some(1) => facts.uses_image = true,
        Some(2) => facts.uses_audio = true,
        _ => {}
    }
    Ok(())
}

/// `part` as a slice of `buf` sharing its memory, or a copy if it does not lie inside it.
fn shared_slice(buf: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    if start <= buf.len() && part.len() <= buf.len() - start {
        buf.slice(start..start + part.len())
    } else {
        Bytes::copy_from_slice(part)
    }
}

impl ChatBody {
    pub fn get(&self, key: &str) -> Option<&Bytes> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.fields.retain(|(k, _)| keep(k));
    }

    pub fn remove(&mut self, key: &str) -> Option<Bytes> {
        let at = self.fields.iter().position(|(k, _)| k == key)?;
        Some(self.fields.remove(at).1)
    }

    /// Set `key` to raw JSON: replaced in place if present, appended if not.
    pub fn insert(&mut self, key: &str, raw: Bytes) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = raw,
            None => self.fields.push((key.to_string(), raw)),
        }
    }

    /// The body as JSON text: small pieces copied, large values shared with the request.
    pub fn to_spliced(&self) -> SplicedBody {
        let mut parts = Vec::new();
        let mut small = Vec::from(&b"{"[..]);
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                small.push(b',');
            }
            // Writing a `&str` as JSON cannot fail.
            let _ = serde_json::to_writer(&mut small, key);
            small.push(b':');
            if value.len() < SHARE_FROM_BYTES {
                small.extend_from_slice(value);
            } else {
                parts.push(Bytes::from(std::mem::take(&mut small)));
                parts.push(value.clone());
            }
        }
        small.push(b'}');
        parts.push(Bytes::from(small));
        SplicedBody::new(parts)
    }
}
