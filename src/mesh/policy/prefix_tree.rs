//! The approximate prefix tree of one model: which of its routes have recently been sent which
//! prompt prefixes, so `prefix_cache` can send a prompt where its prefix is likely still in the
//! engine's KV cache.
//!
//! The tree is kept as a chain of chunk hashes (as vLLM's block hashes and llm-d's prefix
//! scorer do) rather than as a character radix tree: a prompt is cut into [`CHUNK_BYTES`]
//! chunks and chunk `k` is identified by the hash of chunk `k` seeded with the hash of chunk
//! `k-1`, so one map lookup per chunk walks the tree, every node costs the same fixed memory,
//! and the prompt text itself is never stored. Each node holds a bit per route that was sent
//! this prefix. Nodes live in one LRU map with a node cap derived from the byte cap; a prompt
//! is inserted deepest chunk first, so a node is always fresher than its descendants and
//! eviction takes leaves before the prefixes they hang from.

use hashlink::LruCache;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bytes of prompt text per tree node (about 64 tokens). Coarse enough that an 8 KiB prompt is
/// 32 lookups and 32 LRU touches (at 64 bytes it was 128, and a decision's p99 was the cache
/// misses of those touches: docs/routing.md, "Decision cost").
pub const CHUNK_BYTES: usize = 256;
/// Routes past this index are not tracked (a model with more routes than this is balanced
/// by load alone on its later routes).
pub const MAX_TRACKED_ROUTES: usize = 64;
/// What one node costs, counted generously: the key and route mask (16 bytes), the LRU
/// list's two links (16), the boxed node's allocator overhead (16) and the hash table's slot
/// and control byte at its worst load factor (about 20), rounded up.
pub const NODE_BYTES: u64 = 96;

/// Prompt text past this is not looked at: a shared prefix longer than this decides nothing
/// more, and the hashing cost stays bounded.
pub const MAX_PROMPT_BYTES: usize = 32 * 1024;

/// A prompt's leading text as a chain of chunk hashes: chunk `k`'s hash is seeded with chunk
/// `k-1`'s, so equal hashes at depth `k` mean equal text up to the end of chunk `k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPrefix {
    chunks: Vec<u64>,
    bytes: usize,
}

impl PromptPrefix {
    pub fn from_text(text: &str) -> PromptPrefix {
        let bytes = &text.as_bytes()[..text.len().min(MAX_PROMPT_BYTES)];
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let chunks = bytes
            .chunks(CHUNK_BYTES)
            .map(|chunk| {
                seed = xxh3_64_with_seed(chunk, seed);
                seed
            })
            .collect();
        PromptPrefix {
            chunks,
            bytes: bytes.len(),
        }
    }

    pub fn chunks(&self) -> &[u64] {
        &self.chunks
    }

    /// Bytes of text the chunks cover.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

pub struct PrefixTree {
    nodes: LruCache<u64, u64>,
    max_nodes: usize,
}

impl PrefixTree {
    /// A tree whose nodes never take more than `max_bytes` (at [`NODE_BYTES`] each).
    pub fn new(max_bytes: u64) -> PrefixTree {
        let max_nodes = (max_bytes / NODE_BYTES).clamp(1, usize::MAX as u64) as usize;
        PrefixTree {
            nodes: LruCache::new(max_nodes),
            max_nodes,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Memory the nodes take, by [`NODE_BYTES`]; never more than the cap given to `new`.
    pub fn approx_bytes(&self) -> u64 {
        self.nodes.len() as u64 * NODE_BYTES
    }

    pub fn max_nodes(&self) -> usize {
        self.max_nodes
    }

    /// For each route (by index), how many leading chunks of `prompt` it was sent; routes
    /// past [`MAX_TRACKED_ROUTES`] stay 0. Looking does not refresh anything: only the
    /// route that gets the request does, in [`PrefixTree::insert`].
    pub fn matched_chunks(&self, prompt: &PromptPrefix) -> [u16; MAX_TRACKED_ROUTES] {
        let mut matched = [0u16; MAX_TRACKED_ROUTES];
        // Routes that held every chunk so far: a match is a prefix, never a gap.
        let mut alive = u64::MAX;
        for (depth, hash) in prompt.chunks().iter().enumerate() {
            alive &= self.nodes.peek(hash).copied().unwrap_or(0);
            if alive == 0 {
                break;
            }
            let mut bits = alive;
            while bits != 0 {
                let route = bits.trailing_zeros() as usize;
                matched[route] = (depth + 1).min(u16::MAX as usize) as u16;
                bits &= bits - 1;
            }
        }
        matched
    }

    /// Record that `route` was sent `prompt`.
    pub fn insert(&mut self, prompt: &PromptPrefix, route: usize) {
        let Some(bit) = route_bit(route) else {
            return;
        };
        // Deepest first: each prefix ends up fresher than its extensions.
        for hash in prompt.chunks().iter().rev() {
            match self.nodes.get_mut(hash) {
                Some(mask) => *mask |= bit,
                None => {
                    self.nodes.insert(*hash, bit);
                }
            }
        }
    }

    /// The backend said it held only the first `keep` chunks of `prompt`: `route` no longer
    /// claims anything deeper (a node no route claims is dropped).
    pub fn forget_beyond(&mut self, prompt: &PromptPrefix, route: usize, keep: usize) {
        let Some(bit) = route_bit(route) else {
            return;
        };
        for hash in prompt.chunks().iter().skip(keep) {
            let emptied = match self.nodes.peek_mut(hash) {
                Some(mask) => {
                    *mask &= !bit;
                    *mask == 0
                }
                None => break,
            };
            if emptied {
                self.nodes.remove(hash);
            }
        }
    }
}

fn route_bit(route: usize) -> Option<u64> {
    (route < MAX_TRACKED_ROUTES).then(|| 1u64 << route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prompt(text: &str) -> PromptPrefix {
        PromptPrefix::from_text(text)
    }

    #[test]
    fn the_longest_shared_prefix_is_matched_per_route() {
        let mut tree = PrefixTree::new(1 << 20);
        let system = "s".repeat(CHUNK_BYTES * 4);
        tree.insert(&prompt(&format!("{system}question one")), 0);
        tree.insert(&prompt(&system[..CHUNK_BYTES * 2]), 1);
        let asked = prompt(&format!("{system}another question"));
        let m = tree.matched_chunks(&asked);
        assert_eq!((m[0], m[1], m[2]), (4, 2, 0));
        tree.forget_beyond(&asked, 0, 1);
        assert_eq!(tree.matched_chunks(&asked)[0], 1);
        tree.forget_beyond(&asked, 0, 0);
        assert_eq!(tree.matched_chunks(&asked)[0], 0);
        assert_eq!(tree.matched_chunks(&asked)[1], 2, "route 1 untouched");
        // Nothing shared: nothing matched.
        assert_eq!(tree.matched_chunks(&prompt("t"))[1], 0);
    }

    #[test]
    fn eviction_takes_leaves_first() {
        // Room for 10 nodes: an old 8-chunk prompt, then 4 fresh single-chunk ones.
        let mut tree = PrefixTree::new(NODE_BYTES * 10);
        let old = prompt(&"o".repeat(CHUNK_BYTES * 8));
        tree.insert(&old, 0);
        for i in 0..4 {
            tree.insert(&prompt(&format!("fresh {i}")), 1);
        }
        assert_eq!(tree.len(), 10);
        // The old prompt lost its deepest chunks, not its first ones.
        assert_eq!(tree.matched_chunks(&old)[0], 6);
    }

    proptest! {
        /// Whatever is inserted, the tree stays within its cap, and the last prompt inserted
        /// is matched in full (when it fits).
        #[test]
        fn memory_never_exceeds_the_cap(
            cap_nodes in 1u64..300,
            prompts in proptest::collection::vec(("[ab]{0,600}", 0usize..70), 1..60),
        ) {
            let cap = cap_nodes * NODE_BYTES;
            let mut tree = PrefixTree::new(cap);
            for (text, route) in &prompts {
                let p = prompt(text);
                tree.insert(&p, *route);
                prop_assert!(tree.approx_bytes() <= cap);
                prop_assert!(tree.len() <= tree.max_nodes());
                if *route < MAX_TRACKED_ROUTES && p.chunks().len() as u64 <= cap_nodes {
                    prop_assert_eq!(tree.matched_chunks(&p)[*route] as usize, p.chunks().len());
                }
            }
        }
    }
}
