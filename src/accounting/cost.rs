//! What a request cost, from the model's `pricing` overlaid field by field by its route's.
//! Prices are USD per unit: per token (prompt, completion, cache reads/writes), per image,
//! per request, per second of audio or video.

use crate::config::{Price, Pricing};
use crate::record::RequestRecord;

/// The measured quantities a price applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quantities {
    pub prompt_tokens: u64,
    /// Part of `prompt_tokens` read from the backend's cache.
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    pub images: u64,
    pub audio_seconds: f64,
    pub video_seconds: f64,
    /// Whether the per-request fee applies (the request was answered successfully).
    pub charge_request: bool,
}

impl Quantities {
    pub fn of(record: &RequestRecord) -> Quantities {
        let usage = record.usage.unwrap_or_default();
        Quantities {
            prompt_tokens: usage.prompt_tokens,
            cached_tokens: usage.cached_tokens.min(usage.prompt_tokens),
            completion_tokens: usage.completion_tokens,
            images: record.images.map_or(0, u64::from),
            audio_seconds: record
                .audio_seconds
                .filter(|s| s.is_finite())
                .unwrap_or(0.0)
                .max(0.0),
            video_seconds: record
                .video_seconds
                .filter(|s| s.is_finite())
                .unwrap_or(0.0)
                .max(0.0),
            charge_request: record.outcome == "success",
        }
    }

    fn is_empty(&self) -> bool {
        self.prompt_tokens == 0
            && self.completion_tokens == 0
            && self.images == 0
            && self.audio_seconds == 0.0
            && self.video_seconds == 0.0
            && !self.charge_request
    }
}

/// The price of one field: the route's when it sets one, else the model's.
fn pick<'a>(
    model: &'a Pricing,
    route: Option<&'a Pricing>,
    field: fn(&Pricing) -> &Option<Price>,
) -> Option<f64> {
    route
        .and_then(|r| field(r).as_ref())
        .or_else(|| field(model).as_ref())
        .map(|p| p.value)
}

/// Cost in USD, or `None` when nothing is priced for this model and route (so "free" and
/// "unpriced" stay distinguishable in the logs).
pub fn cost_usd(model: &Pricing, route: Option<&Pricing>, q: &Quantities) -> Option<f64> {
    let prompt = pick(model, route, |p| &p.prompt);
    let completion = pick(model, route, |p| &p.completion);
    let cache_read = pick(model, route, |p| &p.input_cache_reads);
    let image = pick(model, route, |p| &p.image);
    let request = pick(model, route, |p| &p.request);
    let audio = pick(model, route, |p| &p.audio);
    let video = pick(model, route, |p| &p.video);
    let priced = [prompt, completion, cache_read, image, request, audio, video]
        .iter()
        .any(Option::is_some);
    if !priced {
        return None;
    }
    if q.is_empty() {
        return Some(0.0);
    }
    // Cached prompt tokens are billed at the cache-read price when one is set, else as
    // ordinary prompt tokens.
    let (uncached, cached) = match cache_read {
        Some(_) => (q.prompt_tokens - q.cached_tokens, q.cached_tokens),
        None => (q.prompt_tokens, 0),
    };
    let mut total = 0.0;
    total += uncached as f64 * prompt.unwrap_or(0.0);
    total += cached as f64 * cache_read.unwrap_or(0.0);
    total += q.completion_tokens as f64 * completion.unwrap_or(0.0);
    total += q.images as f64 * image.unwrap_or(0.0);
    total += q.audio_seconds * audio.unwrap_or(0.0);
    total += q.video_seconds * video.unwrap_or(0.0);
    if q.charge_request {
        total += request.unwrap_or(0.0);
    }
    Some(total)
}

/// The cost of a finished request, priced by the model and route that served it.
pub fn of_record(record: &RequestRecord) -> Option<f64> {
    let served = record.served_by.as_ref()?;
    let route = served.route().map(|r| &r.pricing);
    cost_usd(&served.model.pricing, route, &Quantities::of(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(s: &str) -> Option<Price> {
        Some(Price::parse(s).unwrap())
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn tokens_are_priced_per_token() {
        let model = Pricing {
            prompt: price("0.000001"),
            completion: price("0.000002"),
            ..Pricing::default()
        };
        let q = Quantities {
            prompt_tokens: 1000,
            completion_tokens: 500,
            ..Quantities::default()
        };
        // 1000 × 1e-6 + 500 × 2e-6 = 0.002
        assert!(close(cost_usd(&model, None, &q).unwrap(), 0.002));
    }

    #[test]
    fn route_prices_override_the_model_field_by_field() {
        let model = Pricing {
            prompt: price("0.000001"),
            completion: price("0.000002"),
            ..Pricing::default()
        };
        let route = Pricing {
            completion: price("0.00001"),
            ..Pricing::default()
        };
        let q = Quantities {
            prompt_tokens: 100,
            completion_tokens: 10,
            ..Quantities::default()
        };
        // prompt from the model (100 × 1e-6), completion from the route (10 × 1e-5)
        assert!(close(cost_usd(&model, Some(&route), &q).unwrap(), 0.0002));
    }

    #[test]
    fn cached_tokens_use_the_cache_read_price_when_set() {
        let mut model = Pricing {
            prompt: price("0.000004"),
            input_cache_reads: price("0.000001"),
            ..Pricing::default()
        };
        let q = Quantities {
            prompt_tokens: 1000,
            cached_tokens: 800,
            ..Quantities::default()
        };
        // 200 × 4e-6 + 800 × 1e-6 = 0.0016
        assert!(close(cost_usd(&model, None, &q).unwrap(), 0.0016));
        model.input_cache_reads = None;
        // Without a cache price every prompt token is an ordinary one: 1000 × 4e-6.
        assert!(close(cost_usd(&model, None, &q).unwrap(), 0.004));
    }

    #[test]
    fn media_and_request_fees() {
        let model = Pricing {
            image: price("0.04"),
            audio: price("0.0001"),
            video: price("0.05"),
            request: price("0.001"),
            ..Pricing::default()
        };
        let images = Quantities {
            images: 3,
            charge_request: true,
            ..Quantities::default()
        };
        assert!(close(cost_usd(&model, None, &images).unwrap(), 0.121));
        let audio = Quantities {
            audio_seconds: 90.5,
            ..Quantities::default()
        };
        assert!(close(cost_usd(&model, None, &audio).unwrap(), 0.00905));
        let video = Quantities {
            video_seconds: 8.0,
            charge_request: true,
            ..Quantities::default()
        };
        assert!(close(cost_usd(&model, None, &video).unwrap(), 0.401));
    }

    #[test]
    fn unpriced_is_none_and_free_is_zero() {
        let q = Quantities {
            prompt_tokens: 10,
            ..Quantities::default()
        };
        assert_eq!(cost_usd(&Pricing::default(), None, &q), None);
        let free = Pricing {
            prompt: price("0"),
            ..Pricing::default()
        };
        assert_eq!(cost_usd(&free, None, &q), Some(0.0));
        assert_eq!(cost_usd(&free, None, &Quantities::default()), Some(0.0));
    }

    #[test]
    fn failed_requests_pay_no_request_fee_but_pay_for_tokens_used() {
        let model = Pricing {
            completion: price("0.00001"),
            request: price("0.5"),
            ..Pricing::default()
        };
        let q = Quantities {
            completion_tokens: 100,
            charge_request: false,
            ..Quantities::default()
        };
        assert!(close(cost_usd(&model, None, &q).unwrap(), 0.001));
    }
}
