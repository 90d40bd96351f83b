//! What a handler tells the Router about a request beyond its model: the prompt's leading text
//! (for `prefix_cache`) and a session key (for session affinity). Both optional; operations
//! that have neither send `RoutingHints::default()`.

use std::sync::Arc;

use super::affinity::stable_id;
use super::prefix_tree::PromptPrefix;

/// Hints for one routing decision. Cheap to clone (retries reuse it).
#[derive(Debug, Clone, Default)]
pub struct RoutingHints {
    /// The prompt as the engine will see it, in order, hashed into chunks.
    pub prompt: Option<Arc<PromptPrefix>>,
    /// The session key's stable hash (the key itself is not kept).
    pub session: Option<u64>,
}

impl RoutingHints {
    /// With the prompt's text: chat messages rendered in order (role, then content), or a
    /// completions prompt. Only the first `MAX_PROMPT_BYTES` count.
    pub fn with_prompt(mut self, text: &str) -> RoutingHints {
        if !text.is_empty() {
            self.prompt = Some(Arc::new(PromptPrefix::from_text(text)));
        }
        self
    }

    /// With a session key (`x-session-id`, `prompt_cache_key`, `user`); blank keys are none.
    pub fn with_session_key(mut self, key: &str) -> RoutingHints {
        let key = key.trim();
        if !key.is_empty() {
            self.session = Some(stable_id(key));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::prefix_tree::{CHUNK_BYTES, MAX_PROMPT_BYTES};
    use super::*;

    #[test]
    fn equal_heads_share_chunks_and_the_cap_holds() {
        // Three whole chunks in common, then a fourth that differs in its last byte.
        let head = "s".repeat(CHUNK_BYTES * 3 + CHUNK_BYTES / 2);
        let a = PromptPrefix::from_text(&format!("{head}x"));
        let b = PromptPrefix::from_text(&format!("{head}y"));
        assert_eq!(a.chunks().len(), 4);
        assert_eq!(a.chunks()[..3], b.chunks()[..3]);
        assert_ne!(a.chunks()[3], b.chunks()[3]);
        let huge = PromptPrefix::from_text(&"z".repeat(MAX_PROMPT_BYTES * 3));
        assert_eq!(huge.bytes(), MAX_PROMPT_BYTES);
        assert_eq!(huge.chunks().len(), MAX_PROMPT_BYTES / CHUNK_BYTES);
        assert!(RoutingHints::default().with_prompt("").prompt.is_none());
        assert!(RoutingHints::default()
            .with_session_key("  ")
            .session
            .is_none());
        assert_eq!(
            RoutingHints::default().with_session_key("abc").session,
            RoutingHints::default().with_session_key(" abc ").session
        );
    }
}
