//! Micro-benchmark of a routing decision's cost (docs/routing.md, "Decision cost"): 8 KiB
//! prompts, 10,000 distinct prefixes already in a model's prefix tree, four routes. One
//! decision is what `RouteTable::acquire` adds for `prefix_cache` beyond taking capacity: the
//! tree walk, the policy's choice and the insertion of the prompt for the chosen route. The
//! prompt's hashing (done once per request, in the handler) is timed on its own.
//!
//! A second pass repeats the decisions in front of llama.cpp-like engines whose slots the router
//! models (env `SLOTS` per route, default 16, each keeping one of the prompts): the slot views the policy reads
//! then cost their share, and each chosen slot is taken and released as a lease would.
//!
//! `cargo run --release --no-default-features --example policy_cost [decisions]`
//! (bounded: 100,000 decisions by default, at most 1,000,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::config::{PolicySettings, RoutingPolicy};
use switchyard::mesh::policy::{self, Candidate, PrefixTree, PromptPrefix, SlotModel};

/// The router's allocator (src/main.rs), so node allocations cost what they cost there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PREFIXES: usize = 10_000;
const PROMPT_BYTES: usize = 8 * 1024;
const QUESTION_BYTES: usize = 256;
const ROUTES: usize = 4;
/// Slots per engine in the second pass (env `SLOTS`, default 16): llama-server's `--parallel`
/// is a few to a few dozen; the model caps it at `MAX_MODELLED_SLOTS` (64). `SLOTS=0` repeats
/// the first pass on the tree as it then stands: the control for the second pass.
fn slots_per_engine() -> usize {
    std::env::var("SLOTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(16)
        .min(policy::MAX_MODELLED_SLOTS)
}

fn main() {
    let decisions: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
        .min(1_000_000);
    let settings = PolicySettings {
        // 10,000 prefixes of 8 KiB are 320 k nodes (30 MiB); the default cap holds them all.
        // `TREE_MIB` sets another: the router's default (8) keeps the tree evicting throughout.
        prefix_tree_max_bytes: std::env::var("TREE_MIB")
            .ok()
            .and_then(|m| m.parse::<u64>().ok())
            .unwrap_or(128)
            .clamp(1, 4096)
            * 1024
            * 1024,
        ..PolicySettings::default()
    };
    let mut rng = fastrand::Rng::with_seed(42);
    let prefix_text = |i: usize| {
        let head = format!("system prompt {i}: ");
        let mut text = head.repeat(PROMPT_BYTES / head.len() + 1);
        text.truncate(PROMPT_BYTES - QUESTION_BYTES);
        text
    };
    let rss_before = rss_bytes();
    let mut tree = PrefixTree::new(settings.prefix_tree_max_bytes);
    for i in 0..PREFIXES {
        tree.insert(&PromptPrefix::from_text(&prefix_text(i)), i % ROUTES);
    }
    let filled = Instant::now();
    let slots = slots_per_engine();
    // Slot models for the second pass: every slot starts keeping one of the prompts.
    let mut engines: Vec<SlotModel> = (0..ROUTES)
        .map(|route| {
            let mut model = SlotModel::default();
            model.resize(slots);
            for k in 0..slots {
                let kept = PromptPrefix::from_text(&prefix_text((route * slots + k) % PREFIXES));
                if let Some(ticket) = model.take(Some(Arc::new(kept))) {
                    model.release(ticket, k as u64);
                }
            }
            model
        })
        .collect();
    for with_slots in [false, true] {
        let mut hashing = Vec::with_capacity(decisions);
        let mut deciding = Vec::with_capacity(decisions);
        let mut hits = 0usize;
        for n in 0..decisions {
            let prefix = rng.usize(..PREFIXES);
            // At least QUESTION_BYTES whatever the width of `n` (the text is ASCII, so any cut is a char boundary).
            let question = format!("question {n}? ").repeat(QUESTION_BYTES / 8);
            let text = format!("{}{}", prefix_text(prefix), &question[..QUESTION_BYTES]);

            let started = Instant::now();
            let prompt = PromptPrefix::from_text(&text);
            hashing.push(started.elapsed());

            let started = Instant::now();
            let matched = tree.matched_chunks(&prompt);
            let views: Vec<_> = (0..ROUTES)
                .map(|route| {
                    with_slots
                        .then(|| {
                            engines[route].view(&prompt, |kept| {
                                (0..ROUTES)
                                    .filter(|&other| other != route)
                                    .map(|other| engines[other].holders_of(kept))
                                    .sum()
                            })
                        })
                        .flatten()
                })
                .collect();
            let candidates: Vec<Candidate> = (0..ROUTES)
                .map(|route| Candidate {
                    route,
                    weight: 1.0,
                    in_flight: (n + route) as u64 % 3,
                    engine_waiting: None,
                    identity: route as u64,
                    matched_chunks: usize::from(matched[route]),
                    capacity: Some(2),
                    slots: views[route],
                })
                .collect();
            let ctx = policy::Context {
                policy: RoutingPolicy::PrefixCache,
                settings: &settings,
                session: None,
                prompt_chunks: prompt.chunks().len(),
            };
            let choice = policy::choose(&candidates, &ctx, &mut rng);
            if let Some(choice) = choice {
                hits += usize::from(choice.reason == policy::Reason::CacheHit);
                let route = candidates[choice.index].route;
                tree.insert(&prompt, route);
                if with_slots {
                    // The lease takes the slot and, the request over, gives it back.
                    let model = &mut engines[route];
                    if let Some(ticket) = model.take(Some(Arc::new(prompt.clone()))) {
                        model.release(ticket, (n + slots) as u64);
                    }
                }
            }
            deciding.push(started.elapsed());
        }
        let rss_after = rss_bytes();
        println!(
        "policy_cost: {decisions} prefix_cache decisions, {PREFIXES} prefixes of {PROMPT_BYTES} B, {ROUTES} routes ({:.1} s)",
        filled.elapsed().as_secs_f64()
    );
        if with_slots {
            report(
            &format!("decision with {slots} modelled slots per route (views + choice + insert + take/release)"),
            &mut deciding,
        );
            continue;
        }
        report("decision (tree walk + choice + insert)", &mut deciding);
        report("prompt hashing (8 KiB, in the handler)", &mut hashing);
        println!(
        "cache hits: {:.1} %; tree: {} nodes, {:.1} MiB by NODE_BYTES, cap {:.1} MiB; process RSS grew {:.1} MiB",
        100.0 * hits as f64 / decisions.max(1) as f64,
        tree.len(),
        tree.approx_bytes() as f64 / 1048576.0,
        settings.prefix_tree_max_bytes as f64 / 1048576.0,
        rss_after.saturating_sub(rss_before) as f64 / 1048576.0,
    );
    }
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{what}: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs",
        at(0.50),
        at(0.99),
        at(0.999),
        at(1.0)
    );
}

/// Resident memory of this process (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}
