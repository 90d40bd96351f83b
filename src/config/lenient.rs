//! Field deserializers that accept what operators actually write in YAML: numbers as strings
//! (`"0.5"`, which is also what `${VAR}` substitution produces), booleans as strings.

use serde::{de, Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(f64),
    Str(String),
}

fn parse_f64<E: de::Error>(v: NumOrString) -> Result<f64, E> {
    match v {
        NumOrString::Num(n) => Ok(n),
        NumOrString::Str(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| E::custom(format!("expected a number, found {s:?}"))),
    }
}

pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<NumOrString>::deserialize(d)?
        .map(parse_f64)
        .transpose()
}

pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<NumOrString>::deserialize(d)? {
        None => Ok(None),
        Some(v) => {
            let f = parse_f64::<D::Error>(v)?;
            if f < 0.0 || f.fract() != 0.0 || f > u64::MAX as f64 {
                return Err(de::Error::custom(format!(
                    "expected a whole non-negative number, found {f}"
                )));
            }
            Ok(Some(f as u64))
        }
    }
}

pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrString {
        Bool(bool),
        Str(String),
    }
    match Option::<BoolOrString>::deserialize(d)? {
        None => Ok(None),
        Some(BoolOrString::Bool(b)) => Ok(Some(b)),
        Some(BoolOrString::Str(s)) => bool_word(&s)
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("expected true or false, found {s:?}"))),
    }
}

/// A boolean as operators write it: `true`/`yes`/`on`/`1`, `false`/`no`/`off`/`0`/empty.
pub fn bool_word(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" | "" => Some(false),
        _ => None,
    }
}

/// A price: YAML number or decimal string, kept as the operator's string (OpenRouter
/// publishes prices as decimal strings) next to its value for arithmetic.
pub fn opt_price<'de, D: Deserializer<'de>>(d: D) -> Result<Option<super::Price>, D::Error> {
    match Option::<NumOrString>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrString::Num(n)) => super::Price::from_f64(n)
            .map(Some)
            .map_err(de::Error::custom),
        Some(NumOrString::Str(s)) => super::Price::parse(&s).map(Some).map_err(de::Error::custom),
    }
}
