//! The keys file: any text is an error list or a key store, never a panic.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let vars: HashMap<String, String> = HashMap::from([("K".into(), "some-long-key".into())]);
    if let Ok(store) = switchyard::auth::KeyStore::from_file_text("keys.yaml", text, &vars) {
        let _ = store.lookup(text);
    }
});
