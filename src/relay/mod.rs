//! Forwarding to backends: the outbound client, one upstream call, retry/fallback, and the
//! streaming relays.

pub mod admission;
pub mod budget;
pub mod bytes_stream;
pub mod capabilities;
pub mod chat_stream;
pub mod client;
pub mod egress;
pub mod engine_signals;
pub mod error_body;
pub mod fallback;
pub mod json;
pub mod messages_stream;
pub mod multipart;
pub mod no_proxy;
pub mod pace;
pub mod probe;
pub mod prom_text;
pub mod proxy_env;
pub mod responses_stream;
pub mod shallow;
pub mod spliced;
pub mod sse;
pub mod tls;
pub mod tls_error;
pub mod upload;
pub mod upstream;

pub use capabilities::Uses;
pub use fallback::{
    with_fallback, with_fallback_on, with_fallback_to, Attempt, RetryPolicy, RouteAsk,
};
pub use upstream::{Forwarded, Timeouts};
