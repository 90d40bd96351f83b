//! The usage tap: whatever JSON a backend sends as `usage`, reading it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Some(u) = switchyard::record::Usage::from_json(&v) {
            let _ = u.total();
        }
        if let Some(u) = v
            .get("usage")
            .and_then(switchyard::record::Usage::from_json)
        {
            let _ = u.total();
        }
    }
});
