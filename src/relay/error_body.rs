//! What the router takes from a backend's error body: a message, type and code in whichever
//! of the runtimes' shapes it came, with the router's credentials removed.

use serde_json::Value;

use crate::redact::Redactor;

/// Longest message taken from a backend's error body that is not JSON.
const MAX_TEXT_MESSAGE_CHARS: usize = 500;

/// Turn a backend's error body (OpenAI's `{"error": {…}}`, TGI's `{"error": "…"}`, FastAPI's
/// `detail`, or plain text) into a message, type and code, with the router's backend
/// credentials taken out of all three.
pub fn upstream_message(
    body: &[u8],
    redactor: &Redactor,
) -> (String, Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (text_message(body, redactor), None, None);
    };
    let (message, kind, code) = json_fields(&v);
    let clean = |s: String| redactor.redact_owned(s);
    (clean(message), kind.map(clean), code.map(clean))
}

/// The start of a body that is not JSON (or was cut at the read limit).
fn text_message(body: &[u8], redactor: &Redactor) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "upstream returned an error without a body".to_string();
    }
    // Cut after redaction, so the cut can never leave part of a key behind.
    shorten(&redactor.redact(text), MAX_TEXT_MESSAGE_CHARS)
}

fn json_fields(v: &Value) -> (String, Option<String>, Option<String>) {
    let err = v.get("error").unwrap_or(v);
    match err {
        // TGI: {"error": "...", "error_type": "..."}
        Value::String(s) => (
            s.clone(),
            v.get("error_type")
                .and_then(Value::as_str)
                .map(str::to_string),
            None,
        ),
        Value::Object(o) => {
            let message = o
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| o.get("detail").and_then(Value::as_str))
                .unwrap_or("upstream error")
                .to_string();
            let kind = o.get("type").and_then(Value::as_str).map(str::to_string);
            // vLLM and llama.cpp send an integer code; OpenAI a string.
            let code = match o.get("code") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            (message, kind, code)
        }
        _ => ("upstream error".to_string(), None, None),
    }
}

/// `text` cut to `max` characters, with an ellipsis when something was cut.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_runtime_error_shapes() {
        let none = Redactor::default();
        assert_eq!(
            upstream_message(br#"{"error":"bad","error_type":"validation"}"#, &none),
            ("bad".into(), Some("validation".into()), None)
        );
        assert_eq!(
            upstream_message(br#"{"error":{"message":"m","type":"t","code":400}}"#, &none),
            ("m".into(), Some("t".into()), None)
        );
        assert_eq!(
            upstream_message(b"  ", &none),
            (
                "upstream returned an error without a body".into(),
                None,
                None
            )
        );
    }

    #[test]
    fn backend_keys_leave_every_field_of_every_shape() {
        const KEY: &str = "sk-BACKEND-test-9f8e7d6c5b4a";
        let redactor = Redactor::new([KEY]);
        let bodies = [
            format!(
                r#"{{"error":{{"message":"Incorrect API key provided: {KEY}","type":"t {KEY}","code":"{KEY}"}}}}"#
            ),
            format!(r#"{{"error":"Bearer {KEY} refused","error_type":"{KEY}"}}"#),
            format!(r#"{{"detail":"api-key {KEY}"}}"#),
            format!("<html>401: Bearer {KEY}</html>"),
            // A key escaped by the backend's JSON encoder and unescaped by ours.
            format!(r#"{{"error":{{"message":"key \u0073{}"}}}}"#, &KEY[1..]),
        ];
        for body in bodies {
            let (message, kind, code) = upstream_message(body.as_bytes(), &redactor);
            let all = format!("{message} {kind:?} {code:?}");
            assert!(!all.contains(KEY), "{body} gave {all}");
            assert!(all.contains("[redacted]"), "{body} gave {all}");
        }
    }

    #[test]
    fn long_text_bodies_are_cut_after_redaction() {
        let key = "sk-BACKEND-straddles-the-cut-0123";
        let body = format!("{}{key} and more", "x".repeat(MAX_TEXT_MESSAGE_CHARS - 10));
        let (message, _, _) = upstream_message(body.as_bytes(), &Redactor::new([key]));
        assert!(!message.contains("sk-BACKEND"), "{message}");
        assert!(message.ends_with('…'), "{message}");
        assert_eq!(message.chars().count(), MAX_TEXT_MESSAGE_CHARS + 1);
    }
}
