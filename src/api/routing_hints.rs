//! The routing hints of a request (`mesh::RoutingHints`): the prompt's head as the engine will
//! see it, for `prefix_cache`, and the session key, for session affinity. Read from the body
//! already parsed by the handler; bounded (at most `MAX_PROMPT_BYTES` of text is rendered,
//! the walk stops there) and never an error: a body the handler accepted whose hints cannot be
//! read just routes without them.

use actix_web::http::header::HeaderName;
use actix_web::HttpRequest;
use bytes::Bytes;
use serde_json::value::RawValue;

use super::raw_json::{for_each_element, is_string, pick_fields};
use crate::mesh::policy::MAX_PROMPT_BYTES;
use crate::mesh::RoutingHints;

/// Header naming the session (sticky routing); the body's `prompt_cache_key`, then `user`,
/// stand in when it is absent.
pub static SESSION_HEADER: HeaderName = HeaderName::from_static("x-session-id");
/// Session keys longer than this are cut before hashing (they only need to tell sessions apart).
const MAX_SESSION_KEY_BYTES: usize = 1024;

/// What a request's input member holds, and so how it renders as the engine's prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptShape {
    /// Chat `messages`: role, then text content, message by message.
    Messages,
    /// A completions `prompt`: a string, or the strings of a list (token ids are skipped).
    Prompt,
}

/// The hints of a chat or completions request: its input rendered in order, when given (the
/// model's policy looks at prompts), and its session key.
pub fn chat_hints(
    req: &HttpRequest,
    input: Option<(&Bytes, PromptShape)>,
    body_field: impl Fn(&str) -> Option<Bytes>,
) -> RoutingHints {
    let mut text = String::new();
    if let Some((bytes, shape)) = input {
        if let Ok(raw) = serde_json::from_slice::<&RawValue>(bytes) {
            match shape {
                PromptShape::Messages => render_messages(raw, &mut text),
                PromptShape::Prompt => render_prompt(raw, &mut text),
            }
        }
    }
    let session = session_key(req, body_field);
    let hints = RoutingHints::default().with_prompt(&text);
    match session {
        Some(key) => hints.with_session_key(&key),
        None => hints,
    }
}

/// `x-session-id`, else the body's `prompt_cache_key`, else its `user` (strings only).
fn session_key(req: &HttpRequest, body_field: impl Fn(&str) -> Option<Bytes>) -> Option<String> {
    let from_header = req
        .headers()
        .get(&SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let key = from_header.or_else(|| {
        ["prompt_cache_key", "user"].into_iter().find_map(|name| {
            let raw = body_field(name)?;
            serde_json::from_slice::<String>(&raw).ok()
        })
    })?;
    Some(truncated(&key, MAX_SESSION_KEY_BYTES).to_string())
}

/// Append each message's role and text to `out` until it holds `MAX_PROMPT_BYTES`.
pub fn render_messages(messages: &RawValue, out: &mut String) {
    // Stopping early is the callback's "error"; a malformed message ends the walk too.
    let _ = for_each_element(messages, |_, message| {
        let Ok(Some([role, content])) = pick_fields(message, ["role", "content"]) else {
            return Err(());
        };
        push_string(role, out);
        out.push('\n');
        match content {
            Some(c) if is_string(c) => push_string(Some(c), out),
            Some(parts) => {
                let _ = for_each_element(parts, |_, part| {
                    if let Ok(Some([Some(_), text])) = pick_fields(part, ["type", "text"]) {
                        push_string(text, out);
                    }
                    room(out)
                });
            }
            None => {}
        }
        out.push('\n');
        room(out)
    });
    let cut = truncated(out, MAX_PROMPT_BYTES).len();
    out.truncate(cut);
}

/// Append a completions prompt's text to `out` until it holds `MAX_PROMPT_BYTES`: the string
/// itself, or each string of a list in order.
pub fn render_prompt(prompt: &RawValue, out: &mut String) {
    if is_string(prompt) {
        push_string(Some(prompt), out);
    } else {
        let _ = for_each_element(prompt, |_, item| {
            push_string(Some(item), out);
            room(out)
        });
    }
}

fn room(out: &str) -> Result<(), ()> {
    if out.len() < MAX_PROMPT_BYTES {
        Ok(())
    } else {
        Err(())
    }
}

/// Append a JSON string's text (decoded) to `out`, at most what is left of the budget.
fn push_string(raw: Option<&RawValue>, out: &mut String) {
    let Some(raw) = raw.filter(|r| is_string(r)) else {
        return;
    };
    let left = MAX_PROMPT_BYTES.saturating_sub(out.len());
    if left == 0 {
        return;
    }
    // The escaped text is at least as long as the decoded one: cutting the decoding short of
    // a huge string is not worth its complexity, but a bounded copy is.
    if let Ok(text) = serde_json::from_str::<std::borrow::Cow<'_, str>>(raw.get()) {
        out.push_str(truncated(&text, left));
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncated(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn rendered(messages: &str) -> String {
        let mut out = String::new();
        let raw: &RawValue = serde_json::from_str(messages).unwrap();
        render_messages(raw, &mut out);
        out
    }

    #[test]
    fn completion_prompts_render_their_strings_only() {
        for (prompt, expected) in [
            (r#""once upon""#, "once upon"),
            (r#"["a ","b"]"#, "a b"),
            (r#"[1,2,3]"#, ""),
            (r#"[[1,2],"c"]"#, "c"),
        ] {
            let mut out = String::new();
            render_prompt(serde_json::from_str(prompt).unwrap(), &mut out);
            assert_eq!(out, expected, "{prompt}");
        }
        let huge = format!("\"{}\"", "x".repeat(MAX_PROMPT_BYTES * 2));
        let mut out = String::new();
        render_prompt(serde_json::from_str(&huge).unwrap(), &mut out);
        assert_eq!(out.len(), MAX_PROMPT_BYTES);
    }

    #[test]
    fn messages_render_in_order_with_text_parts_only() {
        let cases = [
            (
                r#"[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]"#,
                "system\nbe brief\nuser\nhi\n",
            ),
            (
                r#"[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}]"#,
                "user\nab\n",
            ),
            (
                r#"[{"role":"assistant","content":null},{"role":"user","content":"é\n"}]"#,
                "assistant\n\nuser\né\n\n",
            ),
            (r#"[{"role":"user"}]"#, "user\n\n"),
            (r#"[]"#, ""),
        ];
        for (messages, want) in cases {
            assert_eq!(rendered(messages), want, "{messages}");
        }
    }

    #[test]
    fn rendering_stops_at_the_cap_on_a_char_boundary() {
        let long = "é".repeat(MAX_PROMPT_BYTES);
        let messages = format!(
            r#"[{{"role":"user","content":"{long}"}},{{"role":"user","content":"never"}}]"#
        );
        let out = rendered(&messages);
        assert!(out.len() <= MAX_PROMPT_BYTES && out.len() > MAX_PROMPT_BYTES - 4);
        assert!(!out.contains("never"));
    }

    #[test]
    fn the_session_key_comes_from_the_header_then_the_body() {
        let body = |name: &str| match name {
            "prompt_cache_key" => Some(Bytes::from_static(b"\"cache-1\"")),
            "user" => Some(Bytes::from_static(b"\"alice\"")),
            _ => None,
        };
        let only_user = |name: &str| (name == "user").then(|| Bytes::from_static(b"\"alice\""));
        let not_a_string = |name: &str| (name == "user").then(|| Bytes::from_static(b"42"));
        let with_header = TestRequest::default()
            .insert_header((SESSION_HEADER.clone(), "s-9"))
            .to_http_request();
        let plain = TestRequest::default().to_http_request();
        let session =
            |req: &HttpRequest, f: &dyn Fn(&str) -> Option<Bytes>| chat_hints(req, None, f).session;
        let id = |k: &str| RoutingHints::default().with_session_key(k).session;
        assert_eq!(session(&with_header, &body), id("s-9"));
        assert_eq!(session(&plain, &body), id("cache-1"));
        assert_eq!(session(&plain, &only_user), id("alice"));
        assert_eq!(session(&plain, &not_a_string), None);
        assert_eq!(session(&plain, &|_| None), None);
    }
}
