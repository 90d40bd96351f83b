//! A minimal SSE scanner for timing chat streams: it only classifies events (content, done,
//! error) and never parses JSON, so the generator stays cheap per chunk.

/// What one network read completed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadEvents {
    pub content: u32,
    pub done: bool,
    pub error: bool,
}

#[derive(Debug, Default)]
pub struct SseScanner {
    buf: Vec<u8>,
    /// Largest event kept while waiting for its end; a bigger one is an error, not a leak.
    limit: usize,
    pub overflow: bool,
}

impl SseScanner {
    pub fn new(limit: usize) -> SseScanner {
        SseScanner {
            buf: Vec::new(),
            limit,
            overflow: false,
        }
    }

    /// Feed one read; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> ReadEvents {
        let mut out = ReadEvents::default();
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some((end, next)) = find_event_end(&self.buf[start..]) {
            classify(&self.buf[start..start + end], &mut out);
            start += next;
        }
        self.buf.drain(..start);
        if self.buf.len() > self.limit {
            self.overflow = true;
            self.buf.clear();
        }
        out
    }
}

/// End of the first event (`\n\n` or `\r\n\r\n`): (length of the event, offset after it).
fn find_event_end(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\n' {
            if b[i + 1] == b'\n' {
                return Some((i, i + 2));
            }
            if b[i + 1] == b'\r' && b.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

fn classify(event: &[u8], out: &mut ReadEvents) {
    for line in event.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            continue;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data == b"[DONE]" {
            out.done = true;
        } else if data.starts_with(b"{\"error\"") {
            out.error = true;
        } else if has_content(data) {
            out.content += 1;
        }
    }
}

/// True when the event carries a non-empty `"content"` string (the role chunk has `""`).
fn has_content(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\"";
    let mut rest = data;
    while let Some(pos) = find(rest, KEY) {
        let mut after = &rest[pos + KEY.len()..];
        after = trim_start(after);
        if let Some(a) = after.strip_prefix(b":") {
            let a = trim_start(a);
            if let Some(s) = a.strip_prefix(b"\"") {
                return !s.starts_with(b"\"");
            }
        }
        rest = &rest[pos + KEY.len()..];
    }
    false
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str =
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
    const WORD: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"word0 \"}}]}\n\n";

    #[test]
    fn classifies_role_content_done() {
        let mut s = SseScanner::new(1 << 20);
        assert_eq!(s.feed(ROLE.as_bytes()), ReadEvents::default());
        let two = format!("{WORD}{WORD}");
        assert_eq!(s.feed(two.as_bytes()).content, 2);
        let end = s.feed(
            b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
        );
        assert_eq!(
            end,
            ReadEvents {
                content: 0,
                done: true,
                error: false
            }
        );
    }

    #[test]
    fn events_split_across_reads_count_once_when_complete() {
        let mut s = SseScanner::new(1 << 20);
        let (a, b) = WORD.split_at(20);
        assert_eq!(s.feed(a.as_bytes()).content, 0);
        assert_eq!(s.feed(b.as_bytes()).content, 1);
        // CRLF framing and spaced JSON.
        let crlf = "data: {\"choices\": [{\"delta\": {\"content\" : \"x\"}}]}\r\n\r\n";
        assert_eq!(s.feed(crlf.as_bytes()).content, 1);
    }

    #[test]
    fn error_events_and_overflow() {
        let mut s = SseScanner::new(64);
        assert!(
            s.feed(b"data: {\"error\":{\"message\":\"boom\"}}\n\n")
                .error
        );
        s.feed(&[b'x'; 100]);
        assert!(s.overflow);
    }
}
