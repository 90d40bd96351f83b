//! Pure translations between the APIs clients speak and the chat completions API every backend
//! serves: no I/O, no routing, no HTTP. A handler uses them when the chosen route does not
//! serve the client's API natively.

pub mod anthropic;
