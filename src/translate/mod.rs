//! Pure translations between the APIs clients speak and the chat completions API every backend
//! serves: requests rewritten as chat requests, chat answers and chunk streams rewritten in the
//! other API's shapes. No I/O, no routing, no HTTP: a handler uses them when the chosen route
//! does not serve the client's API natively.

pub mod anthropic;
pub mod responses;
