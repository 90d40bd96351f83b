//! The models.yaml/routing.yaml loader: any text is an error list or a registry, never a panic.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (models, routing) = text.split_once("\n---routing---\n").unwrap_or((text, ""));
    let vars: HashMap<String, String> = HashMap::from([("SET".into(), "http://h:1".into())]);
    let _ = switchyard::config::load_str(
        "models.yaml",
        models,
        Some(("routing.yaml", routing)),
        &vars,
    );
});
