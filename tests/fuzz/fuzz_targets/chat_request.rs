//! Chat request validation: any JSON body is accepted or refused with a 4xx, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Err(e) = switchyard::api::chat::validate(&v) {
            assert!(e.status().is_client_error());
        }
        if let Some(obj) = v.as_object() {
            if let Err(e) = switchyard::api::embeddings::validate_input(obj) {
                assert!(e.status().is_client_error());
            }
        }
    }
});
