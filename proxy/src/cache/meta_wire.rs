//! The stored form of a fill's `CacheMeta`, without pingora's header compression.
//!
//! `CacheMeta::serialize` compresses the response header with zstd (level 3) on every fill: a
//! quarter of a front fill's instructions (about 40 k of 156 k, callgrind) for a header of a few
//! hundred bytes that compression barely shrinks. pingora reads the header back with any zstd
//! decoder's rules (`HeaderSerde::deserialize`: decompress, then parse the HTTP/1 head), so a
//! zstd frame whose blocks are stored raw (RFC 8878 §3.1.1.2, `Raw_Block`) is read exactly like a
//! compressed one. This module writes that frame around the same bytes pingora's serializer
//! compresses (`resp_header_to_buf` of pingora-header-serde 0.9.1: the status line with the
//! canonical reason, the fields as `header_to_h1_wire` writes them, a blank line).
//!
//! The internal part is pingora's `InternalMetaV2` (pingora-cache 0.9.1 `meta.rs`) as
//! `rmp_serde::to_vec` encodes it: a msgpack array of version 2, `fresh_until`, `created`,
//! `updated` (each time an array of seconds and nanoseconds since the epoch), the two stale
//! windows, the variance (16 integers or nil), the epoch override (a time or nil) and the
//! provenance (a time). It is written here field by field with `rmp` (pingora's serializer,
//! run with a stand-in header so as not to compress the real one, still cost 6 k instructions a
//! fill: serde's machinery and a zstd frame of the stand-in). The unit test below holds the
//! bytes equal to pingora's. One liberty: pingora omits a provenance it never recorded (a meta
//! read back from an older format) and reads that back as `created`; this module always writes
//! `provenance()`, which reads back the same.

use pingora_cache::CacheMeta;
use pingora_error::{ErrorType, OrErr, Result};
use pingora_http::ResponseHeader;
use std::time::{SystemTime, UNIX_EPOCH};

/// zstd frame magic number, little-endian (RFC 8878 §3.1.1).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Frame header descriptor: `Frame_Content_Size_Flag` 2 (a 4-byte content size),
/// `Single_Segment_Flag` set (no window descriptor), no checksum, no dictionary.
const FRAME_DESCRIPTOR: u8 = 0b1010_0000;
/// The largest block (`Block_Maximum_Size`, RFC 8878 §3.1.1.2.4).
const MAX_BLOCK: usize = 128 * 1024;

/// `meta` serialized as `CacheMeta::serialize` does, its header stored uncompressed (see the
/// module documentation).
pub fn serialize(meta: &CacheMeta) -> Result<(Vec<u8>, Vec<u8>)> {
    let internal =
        internal_bytes(meta).or_err(ErrorType::InternalError, "failed to encode cache meta")?;
    let mut head = Vec::with_capacity(512);
    head_bytes(meta.response_header(), &mut head);
    Ok((internal, raw_frame(&head)))
}

/// The version of pingora's internal meta written here (`InternalMetaV2::VERSION`).
const INTERNAL_VERSION: u64 = 2;

/// `meta`'s internal part, encoded as pingora encodes its `InternalMetaV2`.
fn internal_bytes(meta: &CacheMeta) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(96);
    array_len(&mut out, 9)?;
    uint(&mut out, INTERNAL_VERSION)?;
    time(&mut out, meta.fresh_until())?;
    time(&mut out, meta.created())?;
    time(&mut out, meta.updated())?;
    uint(&mut out, meta.stale_while_revalidate_sec().into())?;
    uint(&mut out, meta.stale_if_error_sec().into())?;
    match meta.variance() {
        Some(variance) => {
            array_len(&mut out, variance.len() as u32)?;
            for byte in variance {
                uint(&mut out, byte.into())?;
            }
        }
        None => rmp::encode::write_nil(&mut out)?,
    }
    match meta.epoch_override() {
        Some(epoch) => time(&mut out, epoch)?,
        None => rmp::encode::write_nil(&mut out)?,
    }
    time(&mut out, meta.provenance())?;
    Ok(out)
}

/// A `SystemTime` as serde serializes it: `[secs_since_epoch, nanos_since_epoch]` (an error
/// before the epoch, as serde's).
fn time(out: &mut Vec<u8>, t: SystemTime) -> std::io::Result<()> {
    let since = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| std::io::Error::other("SystemTime must be later than UNIX_EPOCH"))?;
    array_len(out, 2)?;
    uint(out, since.as_secs())?;
    uint(out, since.subsec_nanos().into())
}

fn array_len(out: &mut Vec<u8>, len: u32) -> std::io::Result<()> {
    rmp::encode::write_array_len(out, len)
        .map(drop)
        .map_err(std::io::Error::other)
}

/// An unsigned integer in its shortest msgpack form (as `rmp_serde` writes every unsigned).
fn uint(out: &mut Vec<u8>, n: u64) -> std::io::Result<()> {
    rmp::encode::write_uint(out, n)
        .map(drop)
        .map_err(std::io::Error::other)
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
            let ours = meta(&fields);
            let theirs = ours.serialize().unwrap();
            let stored = serialize(&ours).unwrap();
            // the internal part is byte for byte pingora's
            assert_eq!(stored.0, theirs.0);
            assert_eq!(read_back(&stored), read_back(&theirs), "{fields:?}");
        }
        // a variance (bytes above 127 take two bytes each in msgpack) and an epoch override
        // (pingora's `set_epoch_override`, with nanoseconds) are pingora's bytes too
        let mut varied = meta(&[("Vary", "Accept-Language")]);
        let variance: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
        varied.set_variance_key(variance);
        let epoch = SystemTime::UNIX_EPOCH + Duration::new(1_764_000_000, 123_456_789);
        varied.set_epoch_override(epoch);
        let stored = serialize(&varied).unwrap();
        assert_eq!(stored.0, varied.serialize().unwrap().0);
        let back = CacheMeta::deserialize(&stored.0, &stored.1).unwrap();
        assert_eq!(back.variance(), Some(variance));
        assert_eq!(back.epoch(), epoch);
        assert_eq!(back.provenance(), varied.created());
        // a time before the epoch is refused, as by pingora's serializer
        let now = SystemTime::now();
        let header = ResponseHeader::build(200, None).unwrap();
        let early = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        let old = CacheMeta::new(early, now, 0, 0, header);
        assert!(old.serialize().is_err());
        assert!(serialize(&old).is_err());
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
