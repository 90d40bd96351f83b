//! A JSON object parsed one level deep: top-level keys in their order, each value kept as raw
//! JSON text. Backend answers are relayed with one field rewritten (`model`) and one or two read
//! (`usage`, `error`); building a full `serde_json::Value` tree of every answer (every nested
//! object an ordered map, every string an allocation) was the router's largest CPU cost.
//!
//! The object keeps the text it was parsed from and holds each member as spans of it: parsing
//! allocates one vector, not a key and a boxed value per member, and writing the object back
//! copies the spans. Only what is replaced or added is owned.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use bytestring::ByteString;
use serde::de::{DeserializeOwned, Deserializer as _, Error as _, MapAccess, Visitor};
use serde_json::value::RawValue;

pub struct JsonObject {
    /// The text parsed (valid UTF-8, checked once); every `Span` is a range of it.
    source: ByteString,
    members: Vec<Member>,
}

struct Member {
    key: Key,
    value: Text,
}

enum Key {
    /// Written without escapes: the text between the quotes is the key itself.
    Plain(Range<usize>),
    /// Written with escapes: copied out as written (quotes included), compared as it reads.
    Escaped {
        written: Range<usize>,
        key: Box<str>,
    },
    /// Added by [`JsonObject::set_raw`]; written with serde_json's escaping.
    Added(Box<str>),
}

enum Text {
    Span(Range<usize>),
    Owned(Box<RawValue>),
}

/// Members a backend's answer usually has (id, object, created, model, choices, usage, …),
/// so that the vector is allocated once.
const USUAL_MEMBERS: usize = 16;

impl JsonObject {
    /// Parse `bytes`, which must hold a JSON object (copied: see [`JsonObject::parse_bytes`]).
    pub fn parse(bytes: &[u8]) -> Result<JsonObject, serde_json::Error> {
        JsonObject::parse_bytes(Bytes::copy_from_slice(bytes))
    }

    /// Parse `bytes`, which must hold a JSON object, keeping them (no copy) for the members'
    /// text. Invalid JSON, invalid UTF-8 or another JSON value than an object is an error.
    pub fn parse_bytes(bytes: Bytes) -> Result<JsonObject, serde_json::Error> {
        let source = ByteString::try_from(bytes)
            .map_err(|_| serde_json::Error::custom("the JSON text is not valid UTF-8"))?;
        let mut de = serde_json::Deserializer::from_str(&source);
        let members = de.deserialize_map(MembersVisitor {
            base: source.as_ptr() as usize,
            len: source.len(),
        })?;
        de.end()?;
        Ok(JsonObject { source, members })
    }

    pub fn empty() -> JsonObject {
        JsonObject {
            source: ByteString::new(),
            members: Vec::new(),
        }
    }

    fn span(&self, range: &Range<usize>) -> &str {
        // Spans come from parsing `source`: always in bounds and on character boundaries.
        self.source.get(range.clone()).unwrap_or_default()
    }

    fn key<'a>(&'a self, member: &'a Member) -> &'a str {
        match &member.key {
            Key::Plain(range) => self.span(range),
            Key::Escaped { key, .. } | Key::Added(key) => key,
        }
    }

    fn text<'a>(&'a self, value: &'a Text) -> &'a str {
        match value {
            Text::Span(range) => self.span(range),
            Text::Owned(raw) => raw.get(),
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.members.iter().position(|m| self.key(m) == key)
    }

    /// The raw JSON text of the (first) member named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        let member = self.members.iter().find(|m| self.key(m) == key)?;
        Some(self.text(&member.value))
    }

    /// The field deserialized as `T`; `None` when absent or of another shape.
    pub fn field<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.get(key).and_then(|raw| serde_json::from_str(raw).ok())
    }

    /// The field, unless it is absent or `null`.
    pub fn non_null(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|raw| raw.trim() != "null")
    }

    /// True when the field is present and not `null`.
    pub fn has_non_null(&self, key: &str) -> bool {
        self.non_null(key).is_some()
    }

    /// Replace the value of `key` with a JSON string, if the key is present.
    pub fn replace_string(&mut self, key: &str, value: &str) {
        if let Some(i) = self.position(key) {
            if let Ok(v) = serde_json::value::to_raw_value(value) {
                self.members[i].value = Text::Owned(v);
            }
        }
    }

    /// Set `key` to a raw JSON value: replaced in place if present, appended if not.
    pub fn set_raw(&mut self, key: &str, value: Box<RawValue>) {
        match self.position(key) {
            Some(i) => self.members[i].value = Text::Owned(value),
            None => self.members.push(Member {
                key: Key::Added(key.into()),
                value: Text::Owned(value),
            }),
        }
    }

    /// Remove every member named `key`.
    pub fn remove(&mut self, key: &str) {
        let mut members = std::mem::take(&mut self.members);
        members.retain(|m| self.key(m) != key);
        self.members = members;
    }

    /// Append the object's JSON text to `out`: the members as the backend wrote them (only
    /// the whitespace between them dropped), replaced and added ones as set.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let written_key_len = |key: &Key| match key {
            Key::Plain(range) => range.len() + 2,
            Key::Escaped { written, .. } => written.len(),
            Key::Added(key) => key.len() + 2,
        };
        out.reserve(
            self.members
                .iter()
                .map(|m| written_key_len(&m.key) + self.text(&m.value).len() + 2)
                .sum::<usize>()
                + 2,
        );
        out.push(b'{');
        for (i, member) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match &member.key {
                Key::Plain(range) => {
                    out.push(b'"');
                    out.extend_from_slice(self.span(range).as_bytes());
                    out.push(b'"');
                }
                Key::Escaped { written, .. } => {
                    out.extend_from_slice(self.span(written).as_bytes())
                }
                // Writing a `&str` as JSON cannot fail.
                Key::Added(key) => {
                    let _ = serde_json::to_writer(&mut *out, &**key);
                }
            }
            out.push(b':');
            out.extend_from_slice(self.text(&member.value).as_bytes());
        }
        out.push(b'}');
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

/// Reads an object's members as spans of the text it borrows from (`base`, `len` bytes).
struct MembersVisitor {
    base: usize,
    len: usize,
}

impl MembersVisitor {
    /// Where `part`, borrowed from the parsed text, lies in it.
    fn span_of<E: serde::de::Error>(&self, part: &str) -> Result<Range<usize>, E> {
        let start = (part.as_ptr() as usize).wrapping_sub(self.base);
        if start <= self.len && part.len() <= self.len - start {
            Ok(start..start + part.len())
        } else {
            Err(E::custom("a member outside the parsed text"))
        }
    }
}

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<Member>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Member>, A::Error> {
        let mut members = Vec::with_capacity(USUAL_MEMBERS);
        while let Some(written_key) = map.next_key::<&'de RawValue>()? {
            let written_key = written_key.get();
            let value = map.next_value::<&'de RawValue>()?;
            let key = if written_key.contains('\\') {
                // Decoded as serde_json decodes any key (a lone surrogate is an error).
                let key: String = serde_json::from_str(written_key).map_err(A::Error::custom)?;
                Key::Escaped {
                    written: self.span_of(written_key)?,
                    key: key.into_boxed_str(),
                }
            } else {
                let quoted = self.span_of::<A::Error>(written_key)?;
                Key::Plain(quoted.start + 1..quoted.end.saturating_sub(1))
            };
            members.push(Member {
                key,
                value: Text::Span(self.span_of(value.get())?),
            });
        }
        Ok(members)
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

    /// Objects as backends may write them; each comes out as written, the whitespace between
    /// top-level members aside (`compact`).
    const OBJECTS: &[(&str, &str)] = &[
        ("{}", "{}"),
        (" { } ", "{}"),
        (r#"{"a":1}"#, r#"{"a":1}"#),
        (
            " {\n \"a\" :\t1 ,\r\n\"b\": [ 1 , 2 ] }\n",
            r#"{"a":1,"b":[ 1 , 2 ]}"#,
        ),
        (
            r#"{"k\"q":"v\\","\u00e9t\u00e9":"\ud83d\ude00","a\/b":null}"#,
            r#"{"k\"q":"v\\","\u00e9t\u00e9":"\ud83d\ude00","a\/b":null}"#,
        ),
        (r#"{"été":"日本","😀":"ü"}"#, r#"{"été":"日本","😀":"ü"}"#),
        (
            r#"{"n":{"m":{"o":[{"p":[[]]}]}},"s":"}{\",:"}"#,
            r#"{"n":{"m":{"o":[{"p":[[]]}]}},"s":"}{\",:"}"#,
        ),
        (
            r#"{"a":1,"a":2,"b":3,"a":4}"#,
            r#"{"a":1,"a":2,"b":3,"a":4}"#,
        ),
        (
            r#"{"big":18446744073709551616,"neg":-12345678901234567890123,"f":1.5e-300,"e":1E+400}"#,
            r#"{"big":18446744073709551616,"neg":-12345678901234567890123,"f":1.5e-300,"e":1E+400}"#,
        ),
        (
            r#"{"t":true,"f":false,"z":null,"e":""}"#,
            r#"{"t":true,"f":false,"z":null,"e":""}"#,
        ),
    ];

    #[test]
    fn objects_round_trip_byte_for_byte_and_edit_by_member() {
        for (text, compact) in OBJECTS {
            let obj = JsonObject::parse(text.as_bytes()).expect(text);
            assert_eq!(String::from_utf8_lossy(&obj.to_bytes()), *compact, "{text}");
            // Parsing the same bytes shared (no copy) reads the same.
            let shared = JsonObject::parse_bytes(Bytes::copy_from_slice(text.as_bytes())).unwrap();
            assert_eq!(shared.to_bytes(), obj.to_bytes(), "{text}");
            // What `serde_json` reads of the output is what it reads of the input, when it can
            // read it (1E+400 is out of its range).
            if let Ok(want) = serde_json::from_str::<serde_json::Value>(text) {
                let got: serde_json::Value = serde_json::from_slice(&obj.to_bytes()).unwrap();
                assert_eq!(got, want, "{text}");
            }
        }
    }

    #[test]
    fn members_are_read_replaced_removed_and_added_by_their_unescaped_keys() {
        let text = br#"{ "a\u0062" : 1 , "m":"x", "a\/b":[2], "m":"y", "n": null }"#;
        let mut obj = JsonObject::parse(text).unwrap();
        assert_eq!(obj.get("ab"), Some("1"));
        assert_eq!(obj.get("a/b"), Some("[2]"));
        // The first of duplicates is the one read and replaced.
        assert_eq!(obj.get("m"), Some(r#""x""#));
        assert_eq!(obj.field::<String>("m").as_deref(), Some("x"));
        assert_eq!(obj.field::<u64>("m"), None);
        assert_eq!(obj.get("n"), Some("null"));
        assert!(!obj.has_non_null("n") && obj.has_non_null("ab") && !obj.has_non_null("zz"));
        obj.replace_string("m", "é \"q\"\n");
        obj.replace_string("absent", "never added");
        obj.set_raw("a/b", RawValue::from_string("{}".into()).unwrap());
        obj.set_raw("new \"key\"", RawValue::from_string("7".into()).unwrap());
        obj.remove("n");
        let want = r#"{"a\u0062":1,"m":"é \"q\"\n","a\/b":{},"m":"y","new \"key\"":7}"#;
        assert_eq!(String::from_utf8_lossy(&obj.to_bytes()), want);
        assert_eq!(obj.get("new \"key\""), Some("7"));
        // Removing takes every duplicate.
        obj.remove("m");
        assert_eq!(
            String::from_utf8_lossy(&obj.to_bytes()),
            r#"{"a\u0062":1,"a\/b":{},"new \"key\"":7}"#
        );
        // `write_to` appends.
        let mut out = b"data: ".to_vec();
        obj.write_to(&mut out);
        assert_eq!(out, [&b"data: "[..], &obj.to_bytes()].concat());
        let mut empty = JsonObject::empty();
        assert_eq!(&empty.to_bytes()[..], b"{}");
        empty.set_raw("a", RawValue::from_string("1".into()).unwrap());
        assert_eq!(&empty.to_bytes()[..], br#"{"a":1}"#);
    }

    #[test]
    fn what_is_no_json_object_is_an_error() {
        let refused: &[&[u8]] = &[
            b"",
            b" ",
            b"[1]",
            b"\"s\"",
            b"1",
            b"null",
            b"{",
            b"{\"a\":1",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{a:1}",
            b"{\"a\":1}{}",
            b"{\"a\":1} x",
            b"{\"a\":tru}",
            b"{\"a\":\"\xff\"}",
            b"{\"\xc3\":1}",
            b"{\"\\ud800\":1}",
            b"{\"a\":\"\x01\"}",
            b"{\"a\":[1,]}",
            b"{\"a\":01}",
        ];
        for text in refused {
            assert!(
                JsonObject::parse(text).is_err(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // Nesting deeper than serde_json's recursion limit is only scanned (as ever): it passes.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        let obj = JsonObject::parse(deep.as_bytes()).unwrap();
        assert_eq!(obj.to_bytes(), deep.as_bytes());
    }
}
