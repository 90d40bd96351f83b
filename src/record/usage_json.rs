//! A backend's `usage` object read typed, in one pass, with no `serde_json::Value` built: what
//! [`Usage`] needs and what the cache report needs (`prompt_tokens_details.cached_tokens` of
//! `prompt_tokens`), with the semantics each had when read from a `Value`:
//! - for the usage, a count that is no u64 (a string, -1, 1.5, null, an object) reads as
//!   absent, never failing the other counts; a duplicated key counts its last value; text that
//!   `Value` refuses (a lone surrogate, a number out of range, anywhere) is no usage at all;
//! - for the cache report, the strict typed reading it always had: `prompt_tokens` a u64 and
//!   `prompt_tokens_details` an object with a u64 `cached_tokens` (or the arrays serde reads as
//!   such structs), each exactly once; other members are not judged.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::Usage;

/// A count as `Value::as_u64` reads one, and whether its key was there at all.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) enum Count {
    #[default]
    Absent,
    /// Present, but no u64.
    Other,
    Is(u64),
}

impl Count {
    pub(crate) fn get(self) -> Option<u64> {
        match self {
            Count::Is(n) => Some(n),
            Count::Absent | Count::Other => None,
        }
    }

    /// `self` when its key was present (whatever its value), else `other`: the
    /// `obj.get(a).or_else(|| obj.get(b))` of the two spellings.
    fn or_spelling(self, other: Count) -> Count {
        match self {
            Count::Absent => other,
            present => present,
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        d.deserialize_any(CountVisitor)
    }
}

struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = Count;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
        Ok(Count::Is(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
        Ok(u64::try_from(v).map_or(Count::Other, Count::Is))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
        Ok(Count::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
        Ok(Count::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Count, E> {
        Ok(Count::Other)
    }
    fn visit_unit<E>(self) -> Result<Count, E> {
        Ok(Count::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
        AsValue.visit_seq(seq).map(|()| Count::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Count, A::Error> {
        AsValue.visit_map(map).map(|()| Count::Other)
    }
}

/// A number as `Value::as_f64` reads one: anything else (null, a string, an object) is
/// `None`, never an error. For `timings.prompt_ms`, read as a `Value` before.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct MaybeF64(pub(crate) Option<f64>);

impl<'de> Deserialize<'de> for MaybeF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MaybeF64, D::Error> {
        struct F64Visitor;
        impl<'de> Visitor<'de> for F64Visitor {
            type Value = MaybeF64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E>(self, v: u64) -> Result<MaybeF64, E> {
                Ok(MaybeF64(Some(v as f64)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<MaybeF64, E> {
                Ok(MaybeF64(Some(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<MaybeF64, E> {
                Ok(MaybeF64(Some(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<MaybeF64, E> {
                Ok(MaybeF64(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<MaybeF64, E> {
                Ok(MaybeF64(None))
            }
            fn visit_unit<E>(self) -> Result<MaybeF64, E> {
                Ok(MaybeF64(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MaybeF64, A::Error> {
                AsValue.visit_seq(seq).map(|()| MaybeF64(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaybeF64, A::Error> {
                AsValue.visit_map(map).map(|()| MaybeF64(None))
            }
        }
        d.deserialize_any(F64Visitor)
    }
}

/// A visitor's methods for JSON scalars (booleans, numbers, strings, null), each giving
/// `$value`: where this reader expects an object or an array, a scalar carries nothing it keeps
/// (a string is still decoded, and a number still read, before the visitor sees it).
macro_rules! scalars_give {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// How a member that is not read is consumed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Skip {
    /// Checked as building a `Value` of it would check it (strings decoded, numbers in
    /// range): what the usage read from a `Value` refused, it still refuses.
    AsValue,
    /// Only scanned (`IgnoredAny`), as a derived struct skips unknown members: the cache
    /// report's own reading.
    Unchecked,
}

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self {
            Skip::AsValue => d.deserialize_any(AsValue),
            Skip::Unchecked => IgnoredAny::deserialize(d).map(|_| ()),
        }
    }
}

/// Consumes any JSON value, refusing exactly what `serde_json::Value` refuses.
struct AsValue;

impl<'de> Visitor<'de> for AsValue {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalars_give!(());
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip::AsValue)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip::AsValue)?.is_some() {
            map.next_value_seed(Skip::AsValue)?;
        }
        Ok(())
    }
}

/// The members of a usage object this reader knows.
enum UsageKey {
    PromptTokens,
    InputTokens,
    CompletionTokens,
    OutputTokens,
    CacheReadInputTokens,
    CacheCreationInputTokens,
    PromptTokensDetails,
    InputTokensDetails,
    CachedTokens,
    Other,
}

impl<'de> Deserialize<'de> for UsageKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UsageKey, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = UsageKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E>(self, key: &str) -> Result<UsageKey, E> {
                Ok(match key {
                    "prompt_tokens" => UsageKey::PromptTokens,
                    "input_tokens" => UsageKey::InputTokens,
                    "completion_tokens" => UsageKey::CompletionTokens,
                    "output_tokens" => UsageKey::OutputTokens,
                    "cache_read_input_tokens" => UsageKey::CacheReadInputTokens,
                    "cache_creation_input_tokens" => UsageKey::CacheCreationInputTokens,
                    "prompt_tokens_details" => UsageKey::PromptTokensDetails,
                    "input_tokens_details" => UsageKey::InputTokensDetails,
                    "cached_tokens" => UsageKey::CachedTokens,
                    _ => UsageKey::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// A `*_tokens_details` member: its `cached_tokens` when it is an object (the last one
/// written), or its first element when it is an array.
#[derive(Debug, Clone, Copy, Default)]
struct Details {
    is_object: bool,
    cached: Count,
    /// Times `cached_tokens` was written (an object), or the array's length.
    occurrences: u32,
}

impl Details {
    /// `cached_tokens` as read from a `Value` (`d.get("cached_tokens")`).
    fn cached_as_value(&self) -> Option<u64> {
        self.is_object.then_some(self.cached).and_then(Count::get)
    }

    /// `cached_tokens` as the derived struct `{ cached_tokens: u64 }` reads it: exactly once,
    /// a u64 (or an array of exactly that).
    fn cached_strictly(&self) -> Option<u64> {
        (self.occurrences == 1)
            .then_some(self.cached)
            .and_then(Count::get)
    }
}

struct DetailsSeed(Skip);

impl<'de> DeserializeSeed<'de> for DetailsSeed {
    type Value = Details;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Details, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DetailsSeed {
    type Value = Details;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalars_give!(Details::default());
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Details, A::Error> {
        let mut details = Details::default();
        if let Some(first) = seq.next_element::<Count>()? {
            details.cached = first;
            details.occurrences = 1;
            while seq.next_element_seed(self.0)?.is_some() {
                details.occurrences = details.occurrences.saturating_add(1);
            }
        }
        Ok(details)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Details, A::Error> {
        let mut details = Details {
            is_object: true,
            ..Details::default()
        };
        while let Some(key) = map.next_key::<UsageKey>()? {
            match key {
                UsageKey::CachedTokens => {
                    details.cached = map.next_value()?;
                    details.occurrences = details.occurrences.saturating_add(1);
                }
                _ => map.next_value_seed(self.0)?,
            }
        }
        Ok(details)
    }
}

/// Everything a usage object says that the router reads, before it is judged.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UsageFields {
    is_object: bool,
    prompt: Count,
    input: Count,
    completion: Count,
    output: Count,
    cache_reads: Count,
    cache_writes: Count,
    prompt_details: Option<Details>,
    input_details: Option<Details>,
    /// Times `prompt_tokens` / `prompt_tokens_details` were written: the cache report's
    /// strict reading wants each exactly once.
    prompt_occurrences: u32,
    prompt_details_occurrences: u32,
    /// The cache report's reading of a usage written as an array
    /// (`[prompt_tokens, prompt_tokens_details]`, as serde reads a struct from one).
    array_report: Option<(u64, u64)>,
}

impl UsageFields {
    /// Read with `Usage::from_json`'s rules (see the module's documentation).
    pub(crate) fn usage(&self) -> Option<Usage> {
        if !self.is_object {
            return None;
        }
        let prompt = self.prompt.or_spelling(self.input).get();
        let completion = self.completion.or_spelling(self.output).get();
        if prompt.is_none() && completion.is_none() {
            return None;
        }
        let cache_reads = self.cache_reads.get().unwrap_or(0);
        let cache_writes = self.cache_writes.get().unwrap_or(0);
        let cached = self
            .prompt_details
            .or(self.input_details)
            .and_then(|d| d.cached_as_value())
            .unwrap_or(cache_reads);
        Some(Usage {
            prompt_tokens: prompt
                .unwrap_or(0)
                .saturating_add(cache_reads)
                .saturating_add(cache_writes),
            completion_tokens: completion.unwrap_or(0),
            cached_tokens: cached,
            estimated: false,
        })
    }

    /// `(prompt_tokens, prompt_tokens_details.cached_tokens)` when both are there as the
    /// cache report reads them (see the module's documentation).
    pub(crate) fn cached_of_prompt(&self) -> Option<(u64, u64)> {
        if !self.is_object {
            return self.array_report;
        }
        if self.prompt_occurrences != 1 || self.prompt_details_occurrences != 1 {
            return None;
        }
        let prompt = self.prompt.get()?;
        let cached = self.prompt_details?.cached_strictly()?;
        Some((prompt, cached))
    }
}

/// Reads a usage object; members it does not read are consumed as `Skip` says, and with
/// `Skip::Unchecked` only what the cache report needs is read.
#[derive(Clone, Copy)]
pub(crate) struct UsageSeed(Skip);

impl UsageSeed {
    /// For the usage and the cache report: what `Value` refuses is refused.
    pub(crate) const AS_VALUE: UsageSeed = UsageSeed(Skip::AsValue);

    fn cache_only(self) -> bool {
        self.0 == Skip::Unchecked
    }
}

impl<'de> DeserializeSeed<'de> for UsageSeed {
    type Value = UsageFields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<UsageFields, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UsageSeed {
    type Value = UsageFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalars_give!(UsageFields::default());

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UsageFields, A::Error> {
        // No usage (not an object); the cache report's struct read from an array.
        let prompt = seq.next_element::<Count>()?;
        let details = match prompt {
            Some(_) => seq.next_element_seed(DetailsSeed(self.0))?,
            None => None,
        };
        let mut more = false;
        if details.is_some() {
            while seq.next_element_seed(self.0)?.is_some() {
                more = true;
            }
        }
        let array_report = match (prompt, details) {
            (Some(Count::Is(prompt)), Some(details)) if !more => {
                details.cached_strictly().map(|cached| (prompt, cached))
            }
            _ => None,
        };
        Ok(UsageFields {
            array_report,
            ..UsageFields::default()
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UsageFields, A::Error> {
        let mut f = UsageFields {
            is_object: true,
            ..UsageFields::default()
        };
        while let Some(key) = map.next_key::<UsageKey>()? {
            match key {
                UsageKey::PromptTokens => {
                    f.prompt = map.next_value()?;
                    f.prompt_occurrences = f.prompt_occurrences.saturating_add(1);
                }
                UsageKey::PromptTokensDetails => {
                    f.prompt_details = Some(map.next_value_seed(DetailsSeed(self.0))?);
                    f.prompt_details_occurrences = f.prompt_details_occurrences.saturating_add(1);
                }
                _ if self.cache_only() => map.next_value_seed(self.0)?,
                UsageKey::InputTokens => f.input = map.next_value()?,
                UsageKey::CompletionTokens => f.completion = map.next_value()?,
                UsageKey::OutputTokens => f.output = map.next_value()?,
                UsageKey::CacheReadInputTokens => f.cache_reads = map.next_value()?,
                UsageKey::CacheCreationInputTokens => f.cache_writes = map.next_value()?,
                UsageKey::InputTokensDetails => {
                    f.input_details = Some(map.next_value_seed(DetailsSeed(self.0))?);
                }
                UsageKey::CachedTokens | UsageKey::Other => map.next_value_seed(self.0)?,
            }
        }
        Ok(f)
    }
}

/// A usage object's text read once: the usage, and the cache report's
/// `(prompt_tokens, cached_tokens)`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageReading {
    pub usage: Option<Usage>,
    pub cached_of_prompt: Option<(u64, u64)>,
}

/// Read the JSON text of a `usage` member (see the module's documentation).
pub fn read_usage(text: &str) -> UsageReading {
    if let Ok(fields) = read_with(text, UsageSeed::AS_VALUE) {
        return UsageReading {
            usage: fields.usage(),
            cached_of_prompt: fields.cached_of_prompt(),
        };
    }
    // Text a `Value` refuses (rare: a lone surrogate, a number out of range) is no usage, but
    // the cache report never judged the members it does not read: read again as it did.
    UsageReading {
        usage: None,
        cached_of_prompt: read_with(text, UsageSeed(Skip::Unchecked))
            .ok()
            .and_then(|f| f.cached_of_prompt()),
    }
}

fn read_with(text: &str, seed: UsageSeed) -> Result<UsageFields, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(fields)
}
