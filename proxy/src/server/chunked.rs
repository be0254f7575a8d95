//! Finding the end of a chunked body (RFC 9112 §7.1) while its bytes are relayed unchanged.
//!
//! The front's pass-through ([`super::forward`]) copies a chunked response from the origin to
//! the client byte for byte; it only needs to know where the message ends, so that the origin
//! connection can be reused and nothing of a next response is sent along. This scanner reads
//! chunk sizes and skips chunk data, extensions and trailer fields without copying anything.
//! The front's fill (`super::fill`) decodes with it too: [`ChunkedScanner::scan_data`] reports
//! where the chunk data lies, which is what the store keeps.

/// Where the scanner is within the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size (`digits` read so far).
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: an extension or whitespace up to the line's LF.
    SizeLine {
        size: u64,
    },
    /// Chunk data still to skip.
    Data(u64),
    /// The CRLF after chunk data: `true` once the CR was seen.
    DataEnd(bool),
    /// At the start of a trailer line (after the last chunk).
    TrailerStart,
    /// Within a trailer field line.
    Trailer,
    /// A CR at the start of a trailer line: the body ends at the LF.
    TrailerEnd,
    Done,
}

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: State::Size { size: 0, digits: 0 },
        }
    }
}

/// At most this many hex digits in a chunk size (16: the whole `u64`).
const MAX_SIZE_DIGITS: u8 = 16;

impl ChunkedScanner {
    /// Scans `bytes`, the next bytes of the body. Returns how many of them belong to the body:
    /// all of them while it goes on, fewer when it ended within them (see [`Self::done`]).
    pub fn scan(&mut self, bytes: &[u8]) -> Result<usize, Malformed> {
        self.scan_data(bytes, |_| {})
    }

    /// [`Self::scan`], calling `data` with the range of `bytes` of every run of chunk data (the
    /// decoded body), in order: what a fill stores of a chunked response.
    pub fn scan_data(
        &mut self,
        bytes: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                State::Size { size, digits } => match (b as char).to_digit(16) {
                    Some(d) if digits < MAX_SIZE_DIGITS => State::Size {
                        size: size << 4 | u64::from(d),
                        digits: digits + 1,
                    },
                    Some(_) => return Err(Malformed),
                    None if digits == 0 => return Err(Malformed),
                    None if b == b'\n' => self.after_size(size),
                    None if matches!(b, b';' | b' ' | b'\t' | b'\r') => State::SizeLine { size },
                    None => return Err(Malformed),
                },
                State::SizeLine { size } => match b {
                    b'\n' => self.after_size(size),
                    _ => State::SizeLine { size },
                },
                State::Data(left) => {
                    // skip as much data as this read holds at once
                    let take = left.min((bytes.len() - i) as u64);
                    data(i..i + take as usize);
                    i += take as usize;
                    self.state = if take == left {
                        State::DataEnd(false)
                    } else {
                        State::Data(left - take)
                    };
                    continue;
                }
                State::DataEnd(false) if b == b'\r' => State::DataEnd(true),
                State::DataEnd(_) if b == b'\n' => State::Size { size: 0, digits: 0 },
                State::DataEnd(_) => return Err(Malformed),
                State::TrailerStart => match b {
                    b'\n' => State::Done,
                    b'\r' => State::TrailerEnd,
                    _ => State::Trailer,
                },
                State::Trailer => match b {
                    b'\n' => State::TrailerStart,
                    _ => State::Trailer,
                },
                State::TrailerEnd if b == b'\n' => State::Done,
                State::TrailerEnd => return Err(Malformed),
                State::Done => return Ok(i),
            };
            i += 1;
        }
        Ok(i)
    }

    fn after_size(&self, size: u64) -> State {
        if size == 0 {
            State::TrailerStart
        } else {
            State::Data(size)
        }
    }

    /// The body ended (the last chunk and the trailer section were read).
    pub fn done(&self) -> bool {
        self.state == State::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `body` in pieces of `step` bytes; returns the bytes that belong to it.
    fn scan_in_steps(body: &[u8], step: usize) -> Result<usize, Malformed> {
        let mut s = ChunkedScanner::default();
        let mut used = 0;
        for piece in body.chunks(step) {
            used += s.scan(piece)?;
            if s.done() {
                return Ok(used);
            }
        }
        Ok(used)
    }

    #[test]
    fn the_end_is_found_in_any_split_and_what_follows_is_left() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-t: 1\r\n\r\n";
        let mut with_next = body.to_vec();
        with_next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for step in [1, 2, 3, 7, 64, with_next.len()] {
            assert_eq!(
                scan_in_steps(&with_next, step),
                Ok(body.len()),
                "step {step}"
            );
        }
        // no trailer, bare LF line ends
        let bare = b"3\nabc\n0\n\n";
        assert_eq!(scan_in_steps(bare, 1), Ok(bare.len()));
        let mut s = ChunkedScanner::default();
        assert_eq!(s.scan(b"3\r\nab"), Ok(5));
        assert!(!s.done());
    }

    #[test]
    fn chunk_data_is_reported_in_order_in_any_split() {
        let body =
            b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        for step in [1, 2, 5, 64] {
            let mut s = ChunkedScanner::default();
            let mut decoded = Vec::new();
            let mut used = 0;
            for piece in body.chunks(step) {
                used += s
                    .scan_data(piece, |r| decoded.extend_from_slice(&piece[r]))
                    .unwrap();
                if s.done() {
                    break;
                }
            }
            assert_eq!(decoded, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
            assert_eq!(used, body.len() - 4, "step {step}");
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"\r\n"[..],
            b"zz\r\n",
            b"3\r\nabcX",
            b"11111111111111111\r\n",
            b"0\r\n\rX",
        ] {
            let mut s = ChunkedScanner::default();
            assert_eq!(
                s.scan(bad),
                Err(Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
