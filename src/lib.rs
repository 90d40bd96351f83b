//! switchyard: a multi-modal OpenAI/OpenRouter-compatible inference router.

pub mod catalogue;
