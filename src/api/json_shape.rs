//! One linear pass over a request body, before any parser sees it, that refuses JSON nested
//! too deep or holding too many values. A parsed tree costs tens of bytes per value
//! (`[1,1,…]` is two bytes a value in the body and about a hundred in a `serde_json::Value`),
//! so the value count, not the byte count, is what bounds a parse.

use crate::error::{ApiError, ErrorCode};

/// Deepest nesting accepted. JSON schemas in `tools` and `response_format` stay far below;
/// kept under serde_json's own recursion limit (128) so every endpoint refuses the same way.
pub const MAX_JSON_DEPTH: usize = 64;
/// Most values accepted in one body (array elements and object members, counted roughly:
/// every `,`, `[` and `{` outside strings, plus one). OpenAI caps embeddings at 300,000 tokens
/// a request, the largest legitimate count of values a body carries.
pub const MAX_JSON_VALUES: usize = 500_000;

/// How deep and how large a JSON text is, without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonShape {
    pub max_depth: usize,
    pub values: usize,
}

/// Measure `bytes`, stopping as soon as a cap is passed. Bytes that are not JSON are measured
/// all the same; the parser reports them afterwards.
pub fn measure(bytes: &[u8], max_depth: usize, max_values: usize) -> Result<JsonShape, ApiError> {
    let mut shape = JsonShape {
        max_depth: 0,
        values: 1,
    };
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                shape.values += 1;
                shape.max_depth = shape.max_depth.max(depth);
                if depth > max_depth {
                    return Err(too_complex(format!(
                        "The request body nests JSON deeper than {max_depth} levels."
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' => shape.values += 1,
            _ => continue,
        }
        if shape.values > max_values {
            return Err(too_complex(format!(
                "The request body holds more than {max_values} JSON values."
            )));
        }
    }
    Ok(shape)
}

fn too_complex(message: String) -> ApiError {
    ApiError::new(ErrorCode::JsonTooComplex, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_depth_and_values_outside_strings_only() {
        for (text, depth, values) in [
            ("{}", 1, 2),
            ("1", 0, 1),
            (r#"{"a":[1,2,{"b":null}]}"#, 3, 6),
            (r#"{"a":"[[[{{,,,\"]]"}"#, 1, 2),
            (r#"["\\",[1]]"#, 2, 4),
            ("not json ]]]", 0, 1),
        ] {
            let shape = measure(text.as_bytes(), 64, 100).unwrap();
            assert_eq!(
                shape,
                JsonShape {
                    max_depth: depth,
                    values
                },
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_past_either_cap_with_a_400() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        let err = measure(deep.as_bytes(), MAX_JSON_DEPTH, MAX_JSON_VALUES).unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        assert_eq!(err.code, ErrorCode::JsonTooComplex);
        let at_cap = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(measure(at_cap.as_bytes(), MAX_JSON_DEPTH, MAX_JSON_VALUES).is_ok());
        let wide = format!("[{}1]", "1,".repeat(10));
        assert!(measure(wide.as_bytes(), 64, 12).is_ok());
        let err = measure(wide.as_bytes(), 64, 11).unwrap_err();
        assert!(err.message.contains("more than 11"), "{}", err.message);
    }
}
