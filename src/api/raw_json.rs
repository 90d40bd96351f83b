//! Reading parts of a JSON text without building a tree. Request bodies are parsed into
//! [`RawValue`]s borrowed from the request buffer; these helpers look inside one of them (its
//! kind, a string's length, an object's named members, an array's elements one at a time)
//! allocating nothing per value, so a body costs about its own size however it is shaped.
//!
//! Duplicate object keys resolve as a parsed tree (and most backends) would: the last wins.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
use serde_json::{Error, Number};

/// What a JSON value is, with what validation reads of a scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Null,
    Bool(bool),
    Number(Number),
    /// A string, by its length in bytes once unescaped.
    Str(usize),
    Array,
    Object,
}

impl Shape {
    pub fn is_null(&self) -> bool {
        *self == Shape::Null
    }
}

/// The shape of `raw`. A raw value starts at its first byte (no whitespace), which tells its
/// kind; only strings and numbers are read further.
pub fn shape(raw: &RawValue) -> Result<Shape, Error> {
    let text = raw.get();
    Ok(match text.as_bytes().first() {
        Some(b'{') => Shape::Object,
        Some(b'[') => Shape::Array,
        Some(b'"') => Shape::Str(serde_json::from_str::<StrLen>(text)?.0),
        Some(b'n') => Shape::Null,
        Some(b't') => Shape::Bool(true),
        Some(b'f') => Shape::Bool(false),
        _ => Shape::Number(serde_json::from_str(text)?),
    })
}

pub fn is_string(raw: &RawValue) -> bool {
    raw.get().starts_with('"')
}

/// Which of `names` the string `raw` equals; `None` for another string or a non-string.
pub fn string_among(raw: &RawValue, names: &[&str]) -> Result<Option<usize>, Error> {
    if !is_string(raw) {
        return Ok(None);
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    NameIndex(names).deserialize(&mut de)
}

/// The members `names` of the object `raw` (the last of duplicates), every other member
/// skipped; `None` when `raw` is not an object.
pub fn pick_fields<'a, const N: usize>(
    raw: &'a RawValue,
    names: [&str; N],
) -> Result<Option<[Option<&'a RawValue>; N]>, Error> {
    if !raw.get().starts_with('{') {
        return Ok(None);
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let picked = de.deserialize_map(PickFields {
        names: &names,
        _borrow: PhantomData,
    })?;
    de.end()?;
    Ok(Some(picked))
}

/// Call `each` on every element of the array `raw` in order, holding one at a time; the
/// element count, or `None` when `raw` is not an array. Stops at the first error of `each`.
pub fn for_each_element<'a, E>(
    raw: &'a RawValue,
    mut each: impl FnMut(usize, &'a RawValue) -> Result<(), E>,
) -> Result<Option<usize>, ElementError<E>> {
    if !raw.get().starts_with('[') {
        return Ok(None);
    }
    let mut stopped = None;
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let walked = de
        .deserialize_seq(Elements {
            each: &mut each,
            stopped: &mut stopped,
            _borrow: PhantomData,
        })
        .and_then(|count| de.end().map(|()| count));
    match (walked, stopped) {
        (_, Some(e)) => Err(ElementError::Stopped(e)),
        (Ok(count), None) => Ok(Some(count)),
        (Err(e), None) => Err(ElementError::Json(e)),
    }
}

/// Why [`for_each_element`] did not finish.
#[derive(Debug)]
pub enum ElementError<E> {
    /// The callback refused an element.
    Stopped(E),
    Json(Error),
}

struct StrLen(usize);

impl<'de> serde::Deserialize<'de> for StrLen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StrLen, D::Error> {
        struct LenVisitor;
        impl Visitor<'_> for LenVisitor {
            type Value = StrLen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<StrLen, E> {
                Ok(StrLen(s.len()))
            }
        }
        d.deserialize_str(LenVisitor)
    }
}

/// A string matched against names without keeping it.
struct NameIndex<'n>(&'n [&'n str]);

impl<'de> DeserializeSeed<'de> for NameIndex<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NameIndex<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|name| *name == s))
    }
}

struct PickFields<'n, 'a, const N: usize> {
    names: &'n [&'n str; N],
    _borrow: PhantomData<&'a ()>,
}

impl<'a, const N: usize> Visitor<'a> for PickFields<'_, 'a, N> {
    type Value = [Option<&'a RawValue>; N];
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut picked = [None; N];
        while let Some(index) = map.next_key_seed(NameIndex(self.names))? {
            match index.and_then(|i| picked.get_mut(i)) {
                Some(slot) => *slot = Some(map.next_value::<&'a RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(picked)
    }
}

struct Elements<'f, 'a, F, E> {
    each: &'f mut F,
    stopped: &'f mut Option<E>,
    _borrow: PhantomData<&'a ()>,
}

impl<'a, F, E> Visitor<'a> for Elements<'_, 'a, F, E>
where
    F: FnMut(usize, &'a RawValue) -> Result<(), E>,
{
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while let Some(element) = seq.next_element::<&'a RawValue>()? {
            if let Err(e) = (self.each)(count, element) {
                *self.stopped = Some(e);
                return Err(A::Error::custom("stopped by the caller"));
            }
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn shapes_read_lengths_unescaped_and_numbers_like_a_tree() {
        for (text, expected) in [
            ("null", Shape::Null),
            ("true", Shape::Bool(true)),
            ("false", Shape::Bool(false)),
            (r#""a\"b""#, Shape::Str(3)),
            (r#""\u00e9""#, Shape::Str(2)),
            ("[1,[2]]", Shape::Array),
            (r#"{"a":{}}"#, Shape::Object),
        ] {
            assert_eq!(shape(raw(text)).unwrap(), expected, "{text}");
        }
        for text in ["5", "-5", "5.0", "1e3", "18446744073709551616", "-0"] {
            let tree: serde_json::Value = serde_json::from_str(text).unwrap();
            let Shape::Number(n) = shape(raw(text)).unwrap() else {
                panic!("{text} is a number")
            };
            assert_eq!(n.as_u64(), tree.as_u64(), "{text}");
        }
    }

    #[test]
    fn picks_the_last_of_duplicate_members_and_skips_the_rest() {
        let value = raw(r#"{"role":"a","x":[1,{"role":2}],"content":null,"role":"b"}"#);
        let [role, content, missing] = pick_fields(value, ["role", "content", "name"])
            .unwrap()
            .unwrap();
        assert_eq!(role.map(RawValue::get), Some(r#""b""#));
        assert_eq!(content.map(RawValue::get), Some("null"));
        assert!(missing.is_none());
        assert!(pick_fields(raw("[1]"), ["a"]).unwrap().is_none());
        assert!(pick_fields(raw(r#""{""#), ["a"]).unwrap().is_none());
    }

    #[test]
    fn walks_elements_and_stops_at_the_first_refusal() {
        let mut seen = Vec::new();
        let count = for_each_element(raw(r#"[1,"x",{"a":[]}]"#), |i, e| {
            seen.push((i, e.get().to_string()));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(count, Some(3));
        assert_eq!(seen[2], (2, r#"{"a":[]}"#.to_string()));
        let stopped = for_each_element(raw("[1,2,3]"), |i, _| if i == 1 { Err(i) } else { Ok(()) });
        assert!(matches!(stopped, Err(ElementError::Stopped(1))));
        assert!(for_each_element(raw("{}"), |_, _| Ok::<(), ()>(()))
            .unwrap()
            .is_none());
    }

    #[test]
    fn names_match_escaped_strings_too() {
        assert_eq!(
            string_among(raw(r#""te\u0078t""#), &["image_url", "text"]).unwrap(),
            Some(1)
        );
        assert_eq!(string_among(raw(r#""other""#), &["text"]).unwrap(), None);
        assert_eq!(string_among(raw("3"), &["text"]).unwrap(), None);
    }
}
