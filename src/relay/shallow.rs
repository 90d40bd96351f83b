//! A JSON object parsed one level deep: top-level keys in their order, each value kept as raw
//! JSON text. Backend answers are relayed with one field rewritten (`model`) and one or two read
//! (`usage`, `error`); building a full `serde_json::Value` tree of every answer (every nested
//! object an ordered map, every string an allocation) was the router's largest CPU cost.

use std::fmt;

use bytes::Bytes;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

pub struct JsonObject {
    fields: Vec<(String, Box<RawValue>)>,
}

impl JsonObject {
    /// Parse `bytes`, which must hold a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<JsonObject, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn empty() -> JsonObject {
        JsonObject { fields: Vec::new() }
    }

    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The field deserialized as `T`; `None` when absent or of another shape.
    pub fn field<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.get(key)
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    }

    /// The field, unless it is absent or `null`.
    pub fn non_null(&self, key: &str) -> Option<&RawValue> {
        self.get(key).filter(|raw| raw.get().trim() != "null")
    }

    /// True when the field is present and not `null`.
    pub fn has_non_null(&self, key: &str) -> bool {
        self.non_null(key).is_some()
    }

    /// Replace the value of `key` with a JSON string, if the key is present.
    pub fn replace_string(&mut self, key: &str, value: &str) {
        if let Some((_, raw)) = self.fields.iter_mut().find(|(k, _)| k == key) {
            if let Ok(v) = serde_json::value::to_raw_value(value) {
                *raw = v;
            }
        }
    }

    /// Set `key` to a raw JSON value: replaced in place if present, appended if not.
    pub fn set_raw(&mut self, key: &str, value: Box<RawValue>) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, raw)) => *raw = value,
            None => self.fields.push((key.to_owned(), value)),
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.fields.retain(|(k, _)| k != key);
    }

    /// Append the object's JSON text to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(
            self.fields
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>()
                + 2,
        );
        out.push(b'{');
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Writing a `&str` as JSON cannot fail.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = JsonObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push((k, v));
                }
                Ok(JsonObject { fields })
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_one_field_and_keeps_the_rest_byte_for_byte() {
        let text = br#"{"id":"x","model":"upstream","choices":[{"message":{"content":"a \"q\""}}],"usage":{"prompt_tokens":3}}"#;
        let mut obj = JsonObject::parse(text).unwrap();
        obj.replace_string("model", "public \"id\"");
        let out = obj.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "public \"id\"");
        assert_eq!(v["choices"][0]["message"]["content"], "a \"q\"");
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"id":"x","model":"public \"id\"","choices":[{"message":{"content":"a \"q\""}}],"usage":{"prompt_tokens":3}}"#
        );
        let usage: serde_json::Value = obj.field("usage").unwrap();
        assert_eq!(usage["prompt_tokens"], 3);
    }

    #[test]
    fn absent_keys_are_not_added_and_non_objects_are_errors() {
        let mut obj = JsonObject::parse(br#"{"a":null}"#).unwrap();
        obj.replace_string("model", "m");
        assert_eq!(&obj.to_bytes()[..], br#"{"a":null}"#);
        assert!(!obj.has_non_null("a"));
        assert!(JsonObject::parse(b"[1]").is_err());
        let mut obj = JsonObject::parse(br#"{"a":1,"usage":{"x":2},"b":[]}"#).unwrap();
        obj.remove("usage");
        obj.set_raw("b", RawValue::from_string("[3]".into()).unwrap());
        obj.set_raw("c", RawValue::from_string("null".into()).unwrap());
        assert_eq!(&obj.to_bytes()[..], br#"{"a":1,"b":[3],"c":null}"#);
        assert!(JsonObject::parse(b"{\"a\":").is_err());
    }
}
