//! The stored form of a fill's `CacheMeta`, without pingora's header compression.
//!
//! `CacheMeta::serialize` compresses the response header with zstd (level 3) on every fill: a
//! quarter of a front fill's instructions (about 40 k of 156 k, callgrind) for a header of a few
//! hundred bytes that compression barely shrinks. pingora reads the header back with any zstd
//! decoder's rules (`HeaderSerde::deserialize`: decompress, then parse the HTTP/1 head), so a
//! zstd frame whose blocks are stored raw (RFC 8878 §3.1.1.2, `Raw_Block`) is read exactly like a
//! compressed one. This module writes that frame around the same bytes pingora's serializer
//! compresses (`resp_header_to_buf` of pingora-header-serde 0.9.1: the status line with the
//! canonical reason, the fields as `header_to_h1_wire` writes them, a blank line), and takes the
//! internal part (msgpack) from pingora's own serializer run on the meta with a one-line header
//! swapped in, so the internal bytes are pingora's by construction.

use pingora_cache::CacheMeta;
use pingora_error::Result;
use pingora_http::ResponseHeader;

/// zstd frame magic number, little-endian (RFC 8878 §3.1.1).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Frame header descriptor: `Frame_Content_Size_Flag` 2 (a 4-byte content size),
/// `Single_Segment_Flag` set (no window descriptor), no checksum, no dictionary.
const FRAME_DESCRIPTOR: u8 = 0b1010_0000;
/// The largest block (`Block_Maximum_Size`, RFC 8878 §3.1.1.2.4).
const MAX_BLOCK: usize = 128 * 1024;

/// `meta` serialized as `CacheMeta::serialize` does, its header stored uncompressed (see the
/// module documentation). `meta` is unchanged when this returns.
pub fn serialize(meta: &mut CacheMeta) -> Result<(Vec<u8>, Vec<u8>)> {
    let stand_in = ResponseHeader::build(200, Some(0))?;
    let header = std::mem::replace(meta.response_header_mut(), stand_in);
    let internal = meta.serialize().map(|(internal, _)| internal);
    *meta.response_header_mut() = header;
    let internal = internal?;
    let mut head = Vec::with_capacity(512);
    head_bytes(meta.response_header(), &mut head);
    Ok((internal, raw_frame(&head)))
}

/// The HTTP/1 head pingora's header serializer writes for `header`.
fn head_bytes(header: &ResponseHeader, out: &mut Vec<u8>) {
    out.extend_from_slice(match header.version {
        http::Version::HTTP_10 => b"HTTP/1.0 ",
        _ => b"HTTP/1.1 ",
    });
    out.extend_from_slice(header.status.as_str().as_bytes());
    out.push(b' ');
    if let Some(reason) = header.status.canonical_reason() {
        out.extend_from_slice(reason.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    header.header_to_h1_wire(out);
    out.extend_from_slice(b"\r\n");
}

/// A zstd frame holding `content` in raw blocks.
fn raw_frame(content: &[u8]) -> Vec<u8> {
    let blocks = content.len().div_ceil(MAX_BLOCK).max(1);
    let mut out = Vec::with_capacity(content.len() + 9 + 3 * blocks);
    out.extend_from_slice(&ZSTD_MAGIC);
    out.push(FRAME_DESCRIPTOR);
    out.extend_from_slice(&(content.len() as u32).to_le_bytes());
    let mut pieces = content.chunks(MAX_BLOCK).peekable();
    if pieces.peek().is_none() {
        // an empty content is one empty last block
        out.extend_from_slice(&[1, 0, 0]);
    }
    while let Some(piece) = pieces.next() {
        let last = u32::from(pieces.peek().is_none());
        // Block_Header: Last_Block (bit 0), Block_Type 0 = raw (bits 1-2), Block_Size (3-23)
        let block_header = last | ((piece.len() as u32) << 3);
        out.extend_from_slice(&block_header.to_le_bytes()[..3]);
        out.extend_from_slice(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn meta(fields: &[(&str, &str)]) -> CacheMeta {
        let mut header = ResponseHeader::build(200, None).unwrap();
        for (name, value) in fields {
            // `String` names keep their spelling in the case map, as pingora's client keeps them
            header
                .append_header(name.to_string(), value.to_string())
                .unwrap();
        }
        let now = SystemTime::now();
        CacheMeta::new(now + Duration::from_secs(60), now, 30, 90, header)
    }

    /// What pingora reads back from a serialized meta, in a comparable form.
    fn read_back(serialized: &(Vec<u8>, Vec<u8>)) -> (Vec<u8>, SystemTime, SystemTime, u32, u32) {
        let m = CacheMeta::deserialize(&serialized.0, &serialized.1).unwrap();
        let mut wire = Vec::new();
        head_bytes(m.response_header(), &mut wire);
        assert_eq!(m.variance(), None);
        (
            wire,
            m.fresh_until(),
            m.created(),
            m.stale_while_revalidate_sec(),
            m.stale_if_error_sec(),
        )
    }

    #[test]
    fn pingora_reads_back_what_its_own_serializer_would_have_stored() {
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![("Content-Length", "4"), ("Cache-Control", "max-age=60")],
            vec![
                ("X-Mixed-Case", "1"),
                ("set-cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("vary", "Accept-Encoding"),
                ("ETag", "\"v1\""),
            ],
        ];
        for fields in cases {
            let mut ours = meta(&fields);
            let theirs = ours.serialize().unwrap();
            let stored = serialize(&mut ours).unwrap();
            // the internal part is pingora's, and the meta is left as it was
            assert_eq!(stored.0, theirs.0);
            assert_eq!(ours.serialize().unwrap(), theirs);
            assert_eq!(read_back(&stored), read_back(&theirs), "{fields:?}");
        }
        // a variance survives too
        let mut varied = meta(&[("Vary", "Accept-Language")]);
        varied.set_variance_key([7; 16]);
        let stored = serialize(&mut varied).unwrap();
        let back = CacheMeta::deserialize(&stored.0, &stored.1).unwrap();
        assert_eq!(back.variance(), Some([7; 16]));
    }

    #[test]
    fn contents_beyond_one_block_are_split_into_raw_blocks() {
        let content: Vec<u8> = (0..(MAX_BLOCK * 2 + 5)).map(|i| (i % 251) as u8).collect();
        let frame = raw_frame(&content);
        let back = zstd_decode(&frame, content.len());
        assert_eq!(back, content);
        assert_eq!(zstd_decode(&raw_frame(b"abc"), 3), b"abc");
    }

    /// Decodes a frame with the zstd library pingora uses.
    fn zstd_decode(frame: &[u8], capacity: usize) -> Vec<u8> {
        zstd::bulk::decompress(frame, capacity).expect("a valid zstd frame")
    }
}
