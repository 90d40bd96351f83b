//! Removing the router's backend credentials from text a backend wrote.
//!
//! Some providers repeat the key they received in their error messages ("Incorrect API key
//! provided: sk-…"). Everything the router derives from an upstream error body (client errors,
//! SSE error events, video job errors, webhook payloads, `api_logs.error`, log lines) passes
//! through [`Redactor::redact`] first. Only error paths pay for it: successful bodies are
//! relayed untouched.
//!
//! What counts as the secret appearing:
//! - the secret itself, anywhere in a longer string (so `Bearer <key>` becomes
//!   `Bearer [redacted]`), compared ASCII case-insensitively;
//! - its JSON-escaped forms (`\"`, `\\`, `\/`, `\uXXXX`) and its percent-encoded form, for
//!   bodies relayed as raw text;
//! - for secrets of [`FRAGMENT`] bytes or more, any run of [`FRAGMENT`] consecutive bytes of
//!   it: a backend that prints half of the key leaks half of it.
//!
//! Secrets shorter than [`SHORT_SECRET`] bytes (`abc`, `test`) are redacted only where they
//! stand as a whole token, so `test` is removed from `key test refused` but `attestation`
//! survives: a short key matched anywhere would shred ordinary words, and a short key found
//! inside a longer word tells a reader nothing about where it starts.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// What replaces every occurrence of a secret.
pub const MARKER: &str = "[redacted]";

/// Secrets shorter than this are only redacted as whole tokens.
pub const SHORT_SECRET: usize = 8;

/// Length of the secret fragments that are redacted on their own.
pub const FRAGMENT: usize = 12;

/// The configured secrets in every form they are searched for. Built once per routing table.
#[derive(Default)]
pub struct Redactor {
    /// Lowercased forms shorter than [`FRAGMENT`] bytes, found whole.
    whole: Vec<Needle>,
    /// Every lowercased [`FRAGMENT`]-byte window of the longer forms.
    fragments: HashSet<[u8; FRAGMENT]>,
}

struct Needle {
    bytes: Vec<u8>,
    /// Only where neither neighbour continues a token (short secrets).
    token_only: bool,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets themselves.
        write!(
            f,
            "Redactor({} needles, {} fragments)",
            self.whole.len(),
            self.fragments.len()
        )
    }
}

impl Redactor {
    /// A redactor for `secrets`; empty and blank ones are ignored (there is nothing to leak).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut redactor = Redactor::default();
        let mut seen = HashSet::new();
        for secret in secrets {
            if secret.trim().is_empty() || !seen.insert(secret) {
                continue;
            }
            let token_only = secret.len() < SHORT_SECRET;
            for form in encoded_forms(secret) {
                redactor.add(form.to_ascii_lowercase().into_bytes(), token_only);
            }
        }
        redactor
    }

    fn add(&mut self, form: Vec<u8>, token_only: bool) {
        if form.len() < FRAGMENT || token_only {
            self.whole.push(Needle {
                bytes: form,
                token_only,
            });
            return;
        }
        for window in form.windows(FRAGMENT) {
            let mut key = [0u8; FRAGMENT];
            key.copy_from_slice(window);
            self.fragments.insert(key);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.whole.is_empty() && self.fragments.is_empty()
    }

    /// `text` with every secret (in any of its forms) replaced by [`MARKER`]. Borrows when
    /// nothing was found.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.is_empty() || text.is_empty() {
            return Cow::Borrowed(text);
        }
        // ASCII lowercasing keeps every byte where it was, so positions carry over.
        let lower = text.as_bytes().to_ascii_lowercase();
        let mut hits = self.fragment_hits(&lower);
        for needle in &self.whole {
            hits.extend(needle.hits(&lower));
        }
        if hits.is_empty() {
            return Cow::Borrowed(text);
        }
        Cow::Owned(replace_ranges(text, hits))
    }

    /// [`Redactor::redact`] into an owned string.
    pub fn redact_owned(&self, text: String) -> String {
        match self.redact(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(clean) => clean,
        }
    }

    fn fragment_hits(&self, lower: &[u8]) -> Vec<(usize, usize)> {
        if self.fragments.is_empty() {
            return Vec::new();
        }
        lower
            .windows(FRAGMENT)
            .enumerate()
            .filter(|(_, window)| {
                let mut key = [0u8; FRAGMENT];
                key.copy_from_slice(window);
                self.fragments.contains(&key)
            })
            .map(|(at, _)| (at, at + FRAGMENT))
            .collect()
    }
}

impl Needle {
    fn hits<'a>(&'a self, lower: &'a [u8]) -> impl Iterator<Item = (usize, usize)> + 'a {
        let len = self.bytes.len();
        lower
            .windows(len)
            .enumerate()
            .filter(move |(_, window)| *window == self.bytes.as_slice())
            .map(move |(at, _)| (at, at + len))
            .filter(move |&(start, end)| !self.token_only || stands_alone(lower, start, end))
    }
}

/// Neither the byte before `start` nor the one at `end` continues a token.
fn stands_alone(text: &[u8], start: usize, end: usize) -> bool {
    let continues = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_');
    let before = start.checked_sub(1).and_then(|i| text.get(i));
    !continues(before) && !continues(text.get(end))
}

/// The secret as written, and as JSON and URL encoders would write it.
fn encoded_forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(secret)
        .to_string();
    let mut forms = vec![
        secret.to_string(),
        json.replace('/', "\\/"),
        ascii_json(&json),
        percent_encoded(secret),
        json,
    ];
    forms.sort();
    forms.dedup();
    forms
}

/// JSON with every non-ASCII character as `\uXXXX` (Python's `json.dumps` default).
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            out.push_str(&format!("\\u{unit:04x}"));
        }
    }
    out
}

/// Every byte outside RFC 3986's unreserved set as `%XX`.
fn percent_encoded(secret: &str) -> String {
    let mut out = String::with_capacity(secret.len());
    for b in secret.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` with the (possibly overlapping) byte ranges `hits` each merged run replaced by one
/// [`MARKER`]. Ranges are widened to character boundaries.
fn replace_ranges(text: &str, mut hits: Vec<(usize, usize)>) -> String {
    hits.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < hits.len() {
        let (start, mut end) = hits[i];
        i += 1;
        while i < hits.len() && hits[i].0 <= end {
            end = end.max(hits[i].1);
            i += 1;
        }
        let start = floor_char_boundary(text, start.max(copied));
        let end = ceil_char_boundary(text, end);
        out.push_str(&text[copied..start]);
        out.push_str(MARKER);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "sk-BACKEND-0123456789abcdefXYZ";

    fn redactor(secrets: &[&str]) -> Redactor {
        Redactor::new(secrets.iter().copied())
    }

    #[test]
    fn every_form_of_a_key_is_redacted() {
        let r = redactor(&[KEY, "k/ey\"with\\odd-chars-é"]);
        let cases = [
            (
                format!("Incorrect API key provided: {KEY}."),
                "Incorrect API key provided: [redacted].",
            ),
            (format!("auth=Bearer {KEY}"), "auth=Bearer [redacted]"),
            (format!("prefix{KEY}suffix"), "prefix[redacted]suffix"),
            (KEY.to_ascii_lowercase(), "[redacted]"),
            (format!("{KEY}{KEY}"), "[redacted]"),
            (
                "partial sk-BACKEND-0123456 tail".to_string(),
                "partial [redacted] tail",
            ),
            (
                r#"{"key":"k\/ey\"with\\odd-chars-\u00e9"}"#.to_string(),
                r#"{"key":"[redacted]"}"#,
            ),
            (r#"k/ey\"with\\odd-chars-é"#.to_string(), "[redacted]"),
            ("k%2Fey%22with%5Codd-chars-%C3%A9".to_string(), "[redacted]"),
            ("nothing to see".to_string(), "nothing to see"),
        ];
        for (input, expected) in cases {
            assert_eq!(r.redact(&input), expected, "input: {input}");
        }
    }

    #[test]
    fn short_secrets_only_go_as_whole_tokens() {
        let r = redactor(&["test", "ab1"]);
        let cases = [
            ("key test refused", "key [redacted] refused"),
            ("Bearer test", "Bearer [redacted]"),
            (r#"{"api-key":"TEST"}"#, r#"{"api-key":"[redacted]"}"#),
            ("attestation tested", "attestation tested"),
            ("ab1 and cab12", "[redacted] and cab12"),
            ("key=ab1&x", "key=[redacted]&x"),
        ];
        for (input, expected) in cases {
            assert_eq!(r.redact(input), expected, "input: {input}");
        }
    }

    #[test]
    fn blank_secrets_and_no_secrets_change_nothing() {
        let r = redactor(&["", "   "]);
        assert!(r.is_empty());
        assert!(matches!(r.redact("a   b"), Cow::Borrowed(_)));
        assert!(matches!(redactor(&[KEY]).redact("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn debug_never_shows_a_secret() {
        assert!(!format!("{:?}", redactor(&[KEY])).contains("BACKEND"));
    }

    fn secret() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_\\-/+=.\"\\\\é]{8,48}"
    }

    proptest! {
        #[test]
        fn a_secret_anywhere_never_survives(
            key in secret(),
            before in "\\PC{0,40}",
            after in "\\PC{0,40}",
            escaped in any::<bool>(),
        ) {
            let r = Redactor::new([key.as_str()]);
            let shown = if escaped {
                serde_json::to_string(&key).unwrap()
            } else {
                key.clone()
            };
            let text = format!("{before}{shown}{after}");
            let clean = r.redact(&text);
            prop_assert!(!clean.contains(&key), "{clean}");
            prop_assert!(!clean.contains(shown.trim_matches('"')), "{clean}");
            prop_assert!(clean.contains(MARKER));
        }

        #[test]
        fn redaction_takes_any_text(text in "\\PC{0,200}", key in "\\PC{0,20}") {
            let r = Redactor::new([key.as_str(), "short"]);
            let _ = r.redact(&text);
        }

        #[test]
        fn text_without_the_secret_is_unchanged(text in "[a-z ]{0,200}") {
            // The key holds characters the text cannot, so no window of it can match.
            let r = Redactor::new([KEY]);
            prop_assert_eq!(r.redact(&text), text.as_str());
        }
    }
}
