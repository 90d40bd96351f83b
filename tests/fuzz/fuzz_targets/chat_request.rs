//! Chat request parsing: any bytes are accepted or refused with a 4xx, never a panic; JSON
//! bodies are also checked by the embeddings validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    if let Err(e) = switchyard::api::chat_request::parse(&body) {
        assert!(e.status().is_client_error());
    }
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice(data) {
        if let Err(e) = switchyard::api::embeddings::validate_input(&obj) {
            assert!(e.status().is_client_error());
        }
    }
});
