//! OpenAI's Responses API over a chat-only backend: the request as a chat request
//! ([`request`]), the chat answer as a Response ([`response`]), chat chunks as `response.*`
//! events ([`stream`]).

pub mod request;
pub mod response;
pub mod stream;

pub use request::{to_chat, ResponsesFacts};
pub use response::{finish_reason, from_chat, ResponseMeta};
pub use stream::EventStream;
