//! The SSE parser: any bytes, cut anywhere, never panic; cutting never changes the events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::relay::sse::SseParser;

fn events(data: &[u8], step: usize) -> Vec<(Option<String>, Option<String>)> {
    let mut parser = SseParser::new(64 * 1024);
    let mut out = Vec::new();
    for piece in data.chunks(step.max(1)) {
        parser.push(piece);
        loop {
            match parser.next_event() {
                Ok(Some(e)) if !e.is_empty() => out.push((e.event, e.data)),
                Ok(Some(_)) => {}
                Ok(None) => break,
                // Oversized events depend on buffering, not on the bytes: stop comparing.
                Err(_) => return out,
            }
        }
    }
    if let Some(e) = parser.finish() {
        out.push((e.event, e.data));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let whole = events(rest, rest.len().max(1));
    let cut = events(rest, step as usize % 17 + 1);
    assert_eq!(whole, cut);
});
