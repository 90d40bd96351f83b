//! Forwarding to backends: the outbound client, one upstream call, retry/fallback, and the
//! streaming relays.

pub mod admission;
pub mod budget;
pub mod bytes_stream;
pub mod chat_stream;
pub mod client;
pub mod error_body;
pub mod fallback;
pub mod json;
pub mod multipart;
pub mod pace;
pub mod probe;
pub mod shallow;
pub mod spliced;
pub mod sse;
pub mod upload;
pub mod upstream;

pub use fallback::{with_fallback, Attempt, RetryPolicy};
pub use upstream::{Forwarded, Timeouts};
