//! Other APIs spoken over chat completions, as pure code: requests rewritten as chat requests,
//! chat answers and chunk streams rewritten in the other API's shapes. No I/O, no actors: the
//! handlers in `api` feed it and send what it gives.

pub mod responses;
