//! `${VAR}` / `${VAR:-default}` substitution inside parsed YAML values.
//!
//! Substitution runs on the parsed tree rather than on the raw text so that an error can name the
//! model and the field a missing variable was used in, and so that a value containing YAML syntax
//! cannot change the document's structure.

use serde_yaml::Value;

/// A variable that was referenced but is not set (and had no `:-default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingVar {
    pub var: String,
    /// Dotted path of the field inside the value being substituted, e.g. `route[1].base_url`.
    pub field: String,
}

/// Looks variables up; the process environment in production, a map in tests.
pub trait VarSource {
    fn get(&self, name: &str) -> Option<String>;
}

/// A numeric setting: `None` when unset; when set but not a finite number `>= min`, the
/// problem is added to `errors` (settings report every bad variable at once) and `None`.
pub fn number_var(
    vars: &dyn VarSource,
    name: &str,
    min: f64,
    errors: &mut Vec<String>,
) -> Option<f64> {
    let raw = vars.get(name)?;
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= min => Some(v),
        _ => {
            errors.push(format!("{name}={raw:?}: expected a number >= {min}"));
            None
        }
    }
}

/// Read a yes/no variable (`true/false`, `1/0`, `yes/no`, `on/off`, any case); a malformed
/// value is reported in `errors` rather than read as either.
pub fn bool_var(vars: &dyn VarSource, name: &str, errors: &mut Vec<String>) -> Option<bool> {
    let raw = vars.get(name)?;
    let value = super::lenient::bool_word(&raw);
    if value.is_none() {
        errors.push(format!("{name}={raw:?}: expected true or false"));
    }
    value
}

/// The process environment (after `.env` has been loaded into it).
pub struct ProcessEnv;

impl VarSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl VarSource for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Substitute every string in `value` in place; returns the variables that were missing.
pub fn substitute_tree(value: &mut Value, vars: &dyn VarSource, path: &str) -> Vec<MissingVar> {
    let mut missing = Vec::new();
    walk(value, vars, path, &mut missing);
    missing
}

fn walk(value: &mut Value, vars: &dyn VarSource, path: &str, missing: &mut Vec<MissingVar>) {
    match value {
        Value::String(s) if s.contains("${") => {
            let (out, vars_missing) = substitute_str(s, vars);
            for var in vars_missing {
                missing.push(MissingVar {
                    var,
                    field: path.to_string(),
                });
            }
            *s = out;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, vars, &format!("{path}[{i}]"), missing);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let key = key
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| "?".into());
                let child = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                walk(item, vars, &child, missing);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, vars, path, missing),
        _ => {}
    }
}

/// Replace `${VAR}` and `${VAR:-default}` in one string. Unterminated `${` is left as written.
pub fn substitute_str(input: &str, vars: &dyn VarSource) -> (String, Vec<String>) {
    let mut out = String::with_capacity(input.len());
    let mut missing = Vec::new();
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return (out, missing);
        };
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name.trim(), Some(default)),
            None => (expr.trim(), None),
        };
        match (vars.get(name), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => missing.push(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    (out, missing)
}

/// A variable source from literal pairs, for unit tests of settings read from the environment.
#[cfg(test)]
pub fn test_vars(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::test_vars as vars;
    use super::*;

    #[test]
    fn substitutes_plain_and_default_forms() {
        let v = vars(&[("A", "x"), ("EMPTY", "")]);
        assert_eq!(substitute_str("${A}/v1", &v), ("x/v1".into(), vec![]));
        assert_eq!(substitute_str("${B:-d}", &v), ("d".into(), vec![]));
        assert_eq!(substitute_str("${EMPTY:-d}", &v), ("d".into(), vec![]));
        assert_eq!(substitute_str("${A:-d}", &v), ("x".into(), vec![]));
        assert_eq!(
            substitute_str("a${B}c${C}", &v),
            ("ac".into(), vec!["B".into(), "C".into()])
        );
        assert_eq!(
            substitute_str("cost $5 ${", &v),
            ("cost $5 ${".into(), vec![])
        );
    }

    #[test]
    fn tree_reports_field_paths() {
        let mut value: Value =
            serde_yaml::from_str("route:\n  - base_url: ${NOPE}\n    kind: vllm\n").unwrap();
        let missing = substitute_tree(&mut value, &vars(&[]), "");
        assert_eq!(
            missing,
            vec![MissingVar {
                var: "NOPE".into(),
                field: "route[0].base_url".into()
            }]
        );
    }
}
