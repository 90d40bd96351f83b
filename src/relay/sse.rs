//! Incremental Server-Sent Events framing: bytes in, complete events out. Only complete events
//! are emitted, so a relay forwards each event as soon as its terminating blank line arrives.

use bytes::{Buf, BytesMut};

/// One SSE event. `data` joins multiple `data:` lines with `\n`, as the spec says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: Option<String>,
}

impl SseEvent {
    /// True for events made only of comments (`: keep-alive`) and unknown fields.
    pub fn is_empty(&self) -> bool {
        self.data.is_none() && self.event.is_none()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum SseError {
    /// One event grew past the limit without a terminating blank line.
    EventTooLarge,
}

pub struct SseParser {
    buf: BytesMut,
    /// How far `buf` has been scanned for an event boundary (avoids rescanning).
    scanned: usize,
    max_event: usize,
}

impl SseParser {
    pub fn new(max_event: usize) -> SseParser {
        SseParser {
            buf: BytesMut::new(),
            scanned: 0,
            max_event,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        match find_boundary(&self.buf, self.scanned) {
            Some((end, skip)) => {
                let raw = self.buf.split_to(end);
                self.buf.advance(skip);
                self.scanned = 0;
                Ok(Some(parse_event(&raw)))
            }
            None => {
                // Keep a few bytes unscanned: a boundary may straddle two chunks.
                self.scanned = self.buf.len().saturating_sub(3);
                if self.buf.len() > self.max_event {
                    Err(SseError::EventTooLarge)
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// At end of stream: a final event that lacked its blank line, if any.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
            self.buf.clear();
            return None;
        }
        let raw = self.buf.split();
        self.scanned = 0;
        let event = parse_event(&raw);
        (!event.is_empty()).then_some(event)
    }
}

/// Find a blank line (`\n\n`, `\r\n\r\n`, `\r\r`, or mixed) at or after `from`.
/// Returns (end of the event's content, bytes of the boundary to skip).
fn find_boundary(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < buf.len() {
        let b = buf[i];
        if b == b'\n' || b == b'\r' {
            // Length of this line ending.
            let first = if b == b'\r' && buf.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            if b == b'\r' && i + 1 == buf.len() {
                return None; // could be the start of \r\n; wait for more
            }
            let next = i + first;
            match buf.get(next) {
                Some(b'\n') => return Some((i, first + 1)),
                Some(b'\r') => {
                    return match buf.get(next + 1) {
                        Some(b'\n') => Some((i, first + 2)),
                        // `\r\r` at the end: a boundary either way; a `\n` arriving later just
                        // starts the next event with an empty line, which parsing skips.
                        _ => Some((i, first + 1)),
                    };
                }
                Some(_) => i = next,
                None => return None,
            }
        } else {
            i += 1;
        }
    }
    None
}

fn parse_event(raw: &[u8]) -> SseEvent {
    single_data_line(raw).unwrap_or_else(|| parse_lines(raw))
}

/// The event nearly every chunk is: one `data:` line. Read without splitting into lines or
/// matching field names (per event, the line split cost more than the rest of the parse), with
/// the same result as [`parse_lines`]: the prefix is ASCII, so cutting it off before the UTF-8
/// repair changes nothing.
fn single_data_line(raw: &[u8]) -> Option<SseEvent> {
    let value = raw.strip_prefix(b"data:")?;
    if value.iter().any(|&b| b == b'\n' || b == b'\r') {
        return None;
    }
    let value = value.strip_prefix(b" ").unwrap_or(value);
    Some(SseEvent {
        event: None,
        data: Some(String::from_utf8_lossy(value).into_owned()),
    })
}

/// Any event: its lines, field by field, as the SSE spec reads them.
fn parse_lines(raw: &[u8]) -> SseEvent {
    let text = String::from_utf8_lossy(raw);
    let mut event = SseEvent::default();
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut event.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => event.data = Some(value.to_string()),
            },
            "event" => event.event = Some(value.to_string()),
            _ => {}
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut SseParser) -> Vec<SseEvent> {
        let mut out = vec![];
        while let Some(e) = p.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    #[test]
    fn splits_events_across_chunks_and_line_endings() {
        let mut p = SseParser::new(1 << 20);
        p.push(b"data: {\"a\":1}\n");
        assert!(drain(&mut p).is_empty());
        p.push(b"\ndata: two\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n\ndata: [DONE]\r");
        let events = drain(&mut p);
        assert_eq!(events.len(), 4);
        assert_eq!(events[0].data.as_deref(), Some("{\"a\":1}"));
        assert_eq!(events[1].data.as_deref(), Some("two"));
        assert!(events[2].is_empty());
        assert_eq!(events[3].data.as_deref(), Some("x\ny"));
        p.push(b"\r");
        assert_eq!(drain(&mut p)[0].data.as_deref(), Some("[DONE]"));
    }

    #[test]
    fn boundary_split_between_chunks() {
        let mut p = SseParser::new(1 << 20);
        p.push(b"data: a\r\n");
        assert!(drain(&mut p).is_empty());
        p.push(b"\r");
        // `\r\n\r` is already a blank line; a trailing `\n` must not produce an event.
        assert_eq!(drain(&mut p).len(), 1);
        p.push(b"\ndata: b\n\n");
        let next = drain(&mut p);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].data.as_deref(), Some("b"));
    }

    #[test]
    fn unterminated_tail_is_returned_at_finish() {
        let mut p = SseParser::new(1 << 20);
        p.push(b"data: last");
        assert!(drain(&mut p).is_empty());
        assert_eq!(p.finish().and_then(|e| e.data).as_deref(), Some("last"));
        assert_eq!(p.finish(), None);
    }

    proptest::proptest! {
        /// The one-line reading gives what the line-by-line reading gives, for events made of
        /// SSE's own pieces (field names, colons, spaces, line ends, multibyte and invalid UTF-8).
        #[test]
        fn a_single_data_line_reads_as_the_general_parse_does(
            lead in proptest::sample::select(vec![&b"data:"[..], b"data: ", b""]),
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    &b"data"[..], b"data:", b"data: ", b"event:", b":", b" ", b"\n", b"\r",
                    b"x", b"{\"a\":1}", "é".as_bytes(), b"\xff", b"\xe2\x82", b"id:", b"",
                ]),
                0..8,
            )
        ) {
            let raw: Vec<u8> = [lead, &pieces.concat()].concat();
            if let Some(fast) = single_data_line(&raw) {
                proptest::prop_assert_eq!(fast, parse_lines(&raw), "{:?}", raw);
            }
        }
    }

    #[test]
    fn single_data_lines_take_the_short_reading() {
        for (raw, data) in [
            (&b"data: {\"a\":1}"[..], Some("{\"a\":1}")),
            (b"data:x", Some("x")),
            (b"data:  two spaces", Some(" two spaces")),
            (b"data:", Some("")),
            (b"data: \xff", Some("\u{fffd}")),
        ] {
            let event = single_data_line(raw).expect("one data line");
            assert_eq!(event.data.as_deref(), data, "{raw:?}");
            assert_eq!(event, parse_lines(raw), "{raw:?}");
        }
        // Anything else goes the general way.
        for raw in [
            &b"data: a\ndata: b"[..],
            b"event: x",
            b": ping",
            b"data: a\r",
            b"id: 1",
        ] {
            assert_eq!(single_data_line(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut p = SseParser::new(16);
        p.push(&[b'x'; 64]);
        assert_eq!(p.next_event(), Err(SseError::EventTooLarge));
    }
}
