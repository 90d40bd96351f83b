//! Request paths must arrive in canonical form; anything else is refused with 400 before
//! routing sees it (by [`super::front_door`]).
//!
//! Access is decided by the scope a request routes to (see `crate::auth`), so a strange
//! spelling cannot change which key a handler demands. This check is the second wall: it keeps
//! every path the router serves spelled one way only, so what the logs, metrics and records
//! show is what was routed, and no later code that reads the raw path (`req.path()`) can be
//! fooled by a form that routing decodes differently. Refused:
//! - a percent-encoded unreserved character (`%61` for `a`, `%2e` for `.`, any hex case): RFC
//!   3986 says these are the same path as the plain character, so they only ever serve to hide
//!   a path (`/%61dmin/backends`);
//! - an encoded `%` (`%25`, double encoding) and malformed escapes (`%4`, `%zz`);
//! - dot segments (`.`, `..`), empty segments (`//`) other than one trailing slash, and
//!   backslashes (raw or `%5c`), which some proxies and clients treat as `/`;
//! - anything that does not start with `/` (`OPTIONS *`).
//!
//! Still allowed: escapes of reserved or non-ASCII characters (`%2F` inside a model id,
//! `%20`, UTF-8 bytes), which have no other spelling.

/// Why `path` (the raw path of the request target, without the query) is not canonical.
pub fn non_canonical_reason(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("the path must start with `/`");
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let decoded = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&hi), Some(&lo)) => hex_value(hi).zip(hex_value(lo)),
                    _ => None,
                };
                let Some((hi, lo)) = decoded else {
                    return Some("malformed percent-encoding");
                };
                match hi << 4 | lo {
                    b'%' => return Some("double percent-encoding"),
                    b'\\' => return Some("an encoded backslash"),
                    c if is_unreserved(c) => {
                        return Some("a percent-encoded letter, digit or `-._~`")
                    }
                    _ => {}
                }
                i += 3;
            }
            b'\\' => return Some("a backslash"),
            _ => i += 1,
        }
    }
    // Walked without collecting: this runs on every request.
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        match segment {
            "." | ".." => return Some("a dot segment"),
            // `/` itself and one trailing slash (`/ui/`) are fine; `//` anywhere else is not.
            "" if !is_last => return Some("an empty segment (repeated `/`)"),
            _ => {}
        }
    }
    None
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|v| v as u8)
}

/// RFC 3986 §2.3: characters whose percent-encoded form is equivalent to the plain one.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass() {
        for path in [
            "/",
            "/v1/chat/completions",
            "/api/v1/models",
            "/v1/models/meta-llama%2FLlama-3.1-8B",
            "/v1/models/org/model:q4_k_m",
            "/v1/models/caf%C3%A9",
            "/v1/models/with%20space",
            "/ui/",
            "/admin/backends",
            "/v1/video/generations/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/content",
        ] {
            assert_eq!(non_canonical_reason(path), None, "{path}");
        }
    }

    #[test]
    fn other_spellings_are_refused() {
        for path in [
            "/%61dmin/backends",
            "/%41dmin/backends",
            "/%6detrics",
            "/%6Detrics",
            "/v%31/chat/completions",
            "/v1%2fchat/completions%2",
            "/%2561dmin/backends",
            "/%25%36%31dmin",
            "/v1/../admin/backends",
            "/v1/./models",
            "/v1/%2e%2e/admin/backends",
            "/v1/%2E/models",
            "//admin/backends",
            "/admin//backends",
            "/admin/backends//",
            "/admin\\backends",
            "/admin%5cbackends",
            "/admin%5Cbackends",
            "/v1/models/%zz",
            "/v1/models/%4",
            "/v1/models/%",
            "*",
            "",
            "admin/backends",
        ] {
            assert!(non_canonical_reason(path).is_some(), "{path} passed");
        }
    }

    proptest::proptest! {
        /// Encoding any one unreserved character of a protected path, in either hex case, is
        /// refused; the plain path passes.
        #[test]
        fn any_encoded_unreserved_character_is_refused(
            path in proptest::sample::select(vec![
                "/admin/backends", "/metrics", "/v1/chat/completions", "/api/v1/models",
                "/admin/routing", "/v1/video/generations",
            ]),
            position in 0usize..64,
            upper in proptest::bool::ANY,
        ) {
            proptest::prop_assert_eq!(non_canonical_reason(path), None);
            let chars: Vec<char> = path.chars().collect();
            let candidates: Vec<usize> = (0..chars.len()).filter(|&i| chars[i] != '/').collect();
            let at = candidates[position % candidates.len()];
            let escape = if upper { format!("%{:02X}", chars[at] as u32) } else { format!("%{:02x}", chars[at] as u32) };
            let spelled: String = chars[..at].iter().collect::<String>() + &escape
                + &chars[at + 1..].iter().collect::<String>();
            proptest::prop_assert!(non_canonical_reason(&spelled).is_some(), "{} passed", spelled);
        }

        /// No input makes the check panic.
        #[test]
        fn never_panics(path in "\\PC{0,40}") {
            let _ = non_canonical_reason(&path);
        }
    }
}
