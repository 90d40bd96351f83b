//! Unknown keys in the configuration files. A typo such as `max_in_fligth: 4` would otherwise
//! silently mean "no limit", so by default an unknown key is an error that names the closest
//! known key. Old files can opt out with `--lenient` / `CONFIG_LENIENT=true`, which turns the
//! errors back into warnings for `models.yaml` and `routing.yaml` (the keys file stays strict:
//! there a typo such as `modles:` would widen what a key may use).

use super::lenient::bool_word;
use super::{ConfigErrors, VarSource};
use crate::error::ConfigError;

/// What an unknown key in `models.yaml` or `routing.yaml` is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strictness {
    /// An error: the file is refused (at start, by `check-config`, and on reload).
    #[default]
    Strict,
    /// A warning: the key is ignored and the file loads.
    Lenient,
}

impl Strictness {
    /// `CONFIG_LENIENT` (set by `--lenient` too); anything but a boolean is an error, so a
    /// misspelt value cannot quietly pick a mode.
    pub fn from_vars(vars: &dyn VarSource) -> Result<Strictness, ConfigError> {
        let Some(raw) = vars.get("CONFIG_LENIENT") else {
            return Ok(Strictness::Strict);
        };
        match bool_word(&raw) {
            Some(true) => Ok(Strictness::Lenient),
            Some(false) => Ok(Strictness::Strict),
            None => Err(ConfigError::BadSetting {
                name: "CONFIG_LENIENT",
                value: raw,
                expected: "true or false",
            }),
        }
    }

    /// Record the unknown `keys` found at `place` of `file` as errors or warnings.
    pub fn report<'k>(
        self,
        file: &str,
        place: &str,
        keys: impl IntoIterator<Item = &'k String>,
        known: &[&str],
        out: &mut ConfigErrors,
    ) {
        for key in keys {
            let message = unknown_key_message(file, place, key, known);
            match self {
                Strictness::Strict => out.errors.push(ConfigError::UnknownKey(message)),
                Strictness::Lenient => out
                    .warnings
                    .push(format!("{message} (ignored: lenient mode)")),
            }
        }
    }
}

/// Where a key sits, for messages: the top level of a file, or a path inside it.
pub fn place_in(path: &str) -> String {
    if path.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in {path}")
    }
}

/// `file: unknown key `max_in_fligth` in models[2].route[0]; did you mean `max_in_flight`?`
pub fn unknown_key_message(file: &str, place: &str, key: &str, known: &[&str]) -> String {
    let shown = shown_key(key);
    match closest_key(key, known) {
        Some(near) => format!("{file}: unknown key `{shown}` {place}; did you mean `{near}`?"),
        None => format!(
            "{file}: unknown key `{shown}` {place}; known keys here: {}",
            known.join(", ")
        ),
    }
}

/// No known key is longer than this; a longer key is not compared (and is shown cut), so a
/// pasted blob costs neither time nor a screenful of log.
const LONGEST_KEY: usize = 64;

fn shown_key(key: &str) -> String {
    match key.char_indices().nth(LONGEST_KEY) {
        Some((cut, _)) => format!("{}…", &key[..cut]),
        None => key.to_string(),
    }
}

/// The known key nearest to `key`, if it is near enough to be the one meant: at most a third
/// of its letters (and at least two) changed, ignoring case and `-` for `_`.
pub fn closest_key<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    if key.chars().count() > LONGEST_KEY {
        return None;
    }
    let wanted = normalized(key);
    let allowed = (wanted.len() / 3).max(2);
    known
        .iter()
        .map(|k| (edit_distance(&wanted, &normalized(k)), *k))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn normalized(key: &str) -> Vec<char> {
    key.chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`: the
/// optimal-string-alignment distance, so `fligth` is one edit from `flight`.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    // Three rows suffice: the one being filled, the last, and the one before (for swaps).
    let mut before = vec![0; b.len() + 1];
    let mut last: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            row[j] = best;
        }
        std::mem::swap(&mut before, &mut last);
        std::mem::swap(&mut last, &mut row);
    }
    last[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    fn distance(a: &str, b: &str) -> usize {
        edit_distance(&normalized(a), &normalized(b))
    }

    #[test]
    fn edit_distance_counts_each_kind_of_edit_once() {
        for (a, b, d) in [
            ("", "", 0),
            ("", "abc", 3),
            ("abc", "", 3),
            ("rpm", "rpm", 0),
            ("max_in_fligth", "max_in_flight", 1),
            ("rpn", "rpm", 1),
            ("rm", "rpm", 1),
            ("rpmm", "rpm", 1),
            ("Max-In-Flight", "max_in_flight", 0),
            ("kitten", "sitting", 3),
        ] {
            assert_eq!(distance(a, b), d, "{a} -> {b}");
        }
    }

    #[test]
    fn closest_key_suggests_only_near_misses() {
        let known = ["rpm", "tpm", "max_in_flight", "health_path", "weight"];
        assert_eq!(closest_key("max_in_fligth", &known), Some("max_in_flight"));
        assert_eq!(closest_key("wieght", &known), Some("weight"));
        assert_eq!(closest_key("healthpath", &known), Some("health_path"));
        assert_eq!(closest_key("completely_unrelated", &known), None);
        assert_eq!(closest_key(&"x".repeat(10_000), &known), None);
    }

    #[test]
    fn messages_name_the_place_and_cut_long_keys() {
        let m = unknown_key_message("m.yaml", &place_in("models[2].route[0]"), "rpn", &["rpm"]);
        assert_eq!(
            m,
            "m.yaml: unknown key `rpn` in models[2].route[0]; did you mean `rpm`?"
        );
        let m = unknown_key_message("m.yaml", &place_in(""), &"é".repeat(500), &["models"]);
        assert!(m.contains("at the top level") && m.contains("known keys here: models"));
        assert!(m.chars().count() < 150, "{m}");
    }

    #[test]
    fn config_lenient_is_validated() {
        let mode = |v: &str| Strictness::from_vars(&vars(&[("CONFIG_LENIENT", v)]));
        assert_eq!(Strictness::from_vars(&vars(&[])), Ok(Strictness::Strict));
        assert_eq!(mode("true"), Ok(Strictness::Lenient));
        assert_eq!(mode(" Yes "), Ok(Strictness::Lenient));
        assert_eq!(mode("0"), Ok(Strictness::Strict));
        assert!(mode("maybe")
            .unwrap_err()
            .to_string()
            .contains("CONFIG_LENIENT"));
    }
}
