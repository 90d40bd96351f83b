//! How fast an endpoint's engine computes an uncached prompt, learned from what it reports
//! (llama.cpp's `timings.prompt_n` tokens computed in `timings.prompt_ms`): what a cold start
//! of a prompt there costs, and so how long `prefix_cache` may wait for a busy slot keeping
//! the prompt (`slot_wait_ms: auto`). The reports come from the backend and are not trusted:
//! a value that cannot be a prefill is ignored, and one report moves the average only a
//! fraction of the way.

/// Reports of fewer computed tokens measure something else: fixed costs, and above all the
/// batch they were computed in. llama.cpp computes all slots' prompt tokens in one batch, so a
/// cached request's few new tokens computed beside another slot's cold prompt report that whole
/// prompt's time (tens of ms a token, ten times the truth), and would make every bound huge. A
/// cold start, which is what the estimate is for, computes hundreds.
const MIN_COMPUTED_TOKENS: u64 = 64;
/// Faster than this per token is no prefill (a cached prompt reported as computed, a clock
/// in the wrong unit).
const MIN_MS_PER_TOKEN: f64 = 0.001;
/// Slower than this per token is no engine worth waiting for, or a lie.
const MAX_MS_PER_TOKEN: f64 = 1_000.0;
/// The weight of each new report in the moving average.
const ALPHA: f64 = 0.25;

/// An exponentially weighted moving average of milliseconds per computed prompt token.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PrefillRate {
    ms_per_token: Option<f64>,
}

impl PrefillRate {
    /// The engine computed `computed_tokens` prompt tokens (not served from its cache) in
    /// `prompt_ms`. Whether the report was taken.
    pub fn observe(&mut self, computed_tokens: u64, prompt_ms: f64) -> bool {
        if computed_tokens < MIN_COMPUTED_TOKENS || !prompt_ms.is_finite() {
            return false;
        }
        let rate = prompt_ms / computed_tokens as f64;
        if !(MIN_MS_PER_TOKEN..=MAX_MS_PER_TOKEN).contains(&rate) {
            return false;
        }
        self.ms_per_token = Some(match self.ms_per_token {
            Some(old) => old + ALPHA * (rate - old),
            None => rate,
        });
        true
    }

    /// Milliseconds per computed prompt token; `None` until a report was taken.
    pub fn ms_per_token(&self) -> Option<f64> {
        self.ms_per_token
    }
}

/// Prompt tokens in `bytes` of prompt text, as the router estimates them elsewhere (four
/// bytes a token).
pub fn prompt_tokens_of_bytes(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_or_tiny_reports_are_ignored() {
        let cases: &[(u64, f64)] = &[
            (0, 100.0),
            (15, 100.0),
            (63, 100.0),
            (1000, f64::NAN),
            (1000, f64::INFINITY),
            (1000, f64::NEG_INFINITY),
            (1000, -5.0),
            (1000, 0.0),
            (1000, 0.000_5),
            (1000, 1_000_001.0),
            (u64::MAX, 1.0),
        ];
        for &(tokens, ms) in cases {
            let mut rate = PrefillRate::default();
            assert!(!rate.observe(tokens, ms), "{tokens} {ms}");
            assert_eq!(rate.ms_per_token(), None, "{tokens} {ms}");
        }
    }

    #[test]
    fn the_first_report_sets_the_rate_and_later_ones_move_it_a_fraction() {
        let mut rate = PrefillRate::default();
        assert!(rate.observe(1000, 500.0));
        assert_eq!(rate.ms_per_token(), Some(0.5));
        assert!(rate.observe(1000, 1500.0));
        assert_eq!(rate.ms_per_token(), Some(0.75));
        // An ignored report changes nothing.
        assert!(!rate.observe(1000, f64::NAN));
        assert_eq!(rate.ms_per_token(), Some(0.75));
        // One absurd-but-accepted report cannot run away with it.
        assert!(rate.observe(1000, 1_000_000.0));
        let after = rate.ms_per_token().unwrap();
        assert!(after < 0.75 + ALPHA * 1000.0 + 1e-9, "{after}");
        // Steady reports converge.
        for _ in 0..100 {
            assert!(rate.observe(200, 40.0));
        }
        assert!((rate.ms_per_token().unwrap() - 0.2).abs() < 1e-3);
    }

    #[test]
    fn prompt_bytes_count_as_four_a_token() {
        assert_eq!(prompt_tokens_of_bytes(0), 0);
        assert_eq!(prompt_tokens_of_bytes(1), 1);
        assert_eq!(prompt_tokens_of_bytes(4000), 1000);
    }
}
