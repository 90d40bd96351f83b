//! Samples out of the Prometheus text exposition format (what engines serve at `/metrics`),
//! read defensively: the text comes from a backend, so any line that does not parse is skipped,
//! nothing panics, and the work is linear in the input (which the caller bounds).
//!
//! Only what the load signals need is kept: each sample's metric name and value. Labels are
//! stepped over (quotes and escapes honoured, so a `}` or space inside a label value does not
//! end the label set); the caller folds samples of one name over their label sets.

/// Every well-formed sample line of `text` as `(metric name, value)`. Values may be NaN or
/// infinite (the format allows both); callers decide what such a value means.
pub fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines().filter_map(sample)
}

/// One line: `name[{labels}] value [timestamp]`; `None` for comments, blanks and garbage.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim_start();
    if line.starts_with('#') {
        return None;
    }
    let name_len = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = line.split_at(name_len);
    let rest = rest.trim_start();
    let rest = match rest.strip_prefix('{') {
        Some(labels) => after_labels(labels)?,
        None => rest,
    };
    // The value must be separated from the name or label set, and is one token.
    let value = rest.split_whitespace().next()?;
    let value = parse_value(value)?;
    Some((name, value))
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// The text after the `}` closing a label set whose `{` was already consumed.
fn after_labels(labels: &str) -> Option<&str> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(&labels[i + 1..]),
            _ => {}
        }
    }
    None
}

/// A sample value: a float, `NaN`, `+Inf` or `-Inf` (Go's spellings, as the format defines).
fn parse_value(token: &str) -> Option<f64> {
    match token {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => token.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_of_every_shape() {
        let cases: &[(&str, Option<(&str, f64)>)] = &[
            (
                "vllm:num_requests_running 3",
                Some(("vllm:num_requests_running", 3.0)),
            ),
            (
                "  x_total{a=\"b\"} 1.5e2 1712345678000",
                Some(("x_total", 150.0)),
            ),
            ("x{a=\"} still label\",b=\"q\\\"}\"} 7", Some(("x", 7.0))),
            ("x { a=\"1\" } 2", Some(("x", 2.0))),
            ("x{a=\"1\",} -4", Some(("x", -4.0))),
            ("x +Inf", Some(("x", f64::INFINITY))),
            ("x -Inf", Some(("x", f64::NEG_INFINITY))),
            ("# HELP x the x", None),
            ("# TYPE x gauge", None),
            ("", None),
            ("   ", None),
            ("x", None),
            ("x{a=\"1\"", None),
            ("x{a=\"1\"}", None),
            ("9x 1", None),
            ("x one", None),
            ("{a=\"1\"} 3", None),
        ];
        for (line, expected) in cases {
            assert_eq!(sample(line), *expected, "{line:?}");
        }
        assert!(sample("x NaN").is_some_and(|(_, v)| v.is_nan()));
    }

    /// One label value as an exposition writes it: quotes, backslashes and newlines escaped.
    fn escaped(value: &str) -> String {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,400}") {
            for (name, _) in samples(&text) {
                prop_assert!(!name.is_empty());
            }
        }

        #[test]
        fn every_sample_of_a_written_exposition_is_read_back(
            rows in proptest::collection::vec(
                ("[a-z_:][a-z0-9_:]{0,20}", proptest::collection::vec(("[a-z_]{1,8}", "\\PC{0,12}"), 0..4), -1e9f64..1e9),
                0..20,
            )
        ) {
            let mut text = String::from("# HELP noise a comment line\n");
            for (name, labels, value) in &rows {
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escaped(v)))
                    .collect();
                let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
                text.push_str(&format!("{name}{labels} {value}\n"));
            }
            let read: Vec<(&str, f64)> = samples(&text).collect();
            prop_assert_eq!(read.len(), rows.len());
            for ((name, _, value), (read_name, read_value)) in rows.iter().zip(read) {
                prop_assert_eq!(name.as_str(), read_name);
                prop_assert_eq!(*value, read_value);
            }
        }
    }
}
