//! Incremental Server-Sent Events parsing, robust to frames split anywhere across chunks.

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Feeds bytes in, gets complete events out. Lines end in LF, CRLF or CR; a CRLF split across two
/// chunks is handled. Comments (`:`) and unknown fields are ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended in CR, so a leading LF belongs to that line end.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    ready: Vec<SseEvent>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns the events they completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        for &byte in chunk {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' => self.end_line(),
                b'\r' => {
                    self.end_line();
                    self.after_cr = true;
                }
                _ => self.line.push(byte),
            }
        }
        std::mem::take(&mut self.ready)
    }

    /// Ends the input: the last event is dispatched even without a trailing blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.line.is_empty() {
            self.end_line();
        }
        self.dispatch();
        // `feed` handed out everything before, so this is the one event `dispatch` just made.
        self.ready.pop()
    }

    fn end_line(&mut self) {
        // Borrowed out and given back cleared, so the buffer's capacity serves every line.
        let mut line = std::mem::take(&mut self.line);
        self.apply_line(&line);
        line.clear();
        self.line = line;
    }

    /// Applies one complete line (without its line end).
    fn apply_line(&mut self, line: &[u8]) {
        // Lines are decoded whole, so a UTF-8 sequence split across chunks stays intact.
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = self.event.take();
        if let Some(data) = self.data.take() {
            self.ready.push(SseEvent { event, data });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "event: message_start\ndata: {\"a\":1}\n\n: keep-alive\n\n\
                          data: {\"t\":\"h\u{e9}llo \u{1f600}\"}\r\n\r\n\
                          data: line1\ndata: line2\n\nevent: ping\n\n\
                          data:nospace\r\rdata: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        let ev = |event: Option<&str>, data: &str| SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        };
        vec![
            ev(Some("message_start"), "{\"a\":1}"),
            ev(None, "{\"t\":\"h\u{e9}llo \u{1f600}\"}"),
            ev(None, "line1\nline2"),
            ev(None, "nospace"),
            ev(None, "[DONE]"),
        ]
    }

    fn parse_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            events.extend(parser.feed(&bytes[start..cut]));
            start = cut;
        }
        events.extend(parser.finish());
        events
    }

    #[test]
    fn whole_input() {
        assert_eq!(parse_in_pieces(STREAM.as_bytes(), &[]), expected());
    }

    #[test]
    fn every_single_split_point() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(parse_in_pieces(bytes, &[cut]), expected(), "split at {cut}");
        }
    }

    #[test]
    fn byte_by_byte_and_pseudo_random_splits() {
        let bytes = STREAM.as_bytes();
        let all: Vec<usize> = (0..bytes.len()).collect();
        assert_eq!(parse_in_pieces(bytes, &all), expected());
        // A deterministic pseudo-random sequence of split points (LCG).
        let mut seed: u64 = 42;
        for _ in 0..200 {
            let mut cuts = Vec::new();
            let mut at = 0usize;
            while at < bytes.len() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                at += 1 + (seed >> 33) as usize % 7;
                cuts.push(at);
            }
            assert_eq!(parse_in_pieces(bytes, &cuts), expected(), "cuts {cuts:?}");
        }
    }

    #[test]
    fn last_event_without_blank_line_is_flushed() {
        assert_eq!(
            parse_in_pieces(b"data: {\"x\":1}", &[]),
            vec![SseEvent {
                event: None,
                data: "{\"x\":1}".to_owned()
            }]
        );
    }
}
