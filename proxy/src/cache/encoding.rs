//! Response compression, done once when a response is stored.
//!
//! A compressible response (a configured type, not `text/event-stream`, a `Content-Length` of at
//! least `min_bytes` or none, no `Content-Encoding`, no `no-transform`, status 200) that the cache is
//! about to store gets `Vary: Accept-Encoding`; when the request accepts one of the configured
//! codings it is compressed on its way into the store ([`Encoder`], in
//! `upstream_response_body_filter`), so the stored variant *is* the encoded representation and
//! every hit, on either hit path, serves those bytes as they are: nothing is compressed per hit.
//!
//! Variants are keyed by [`accept_encoding_key`]: the set of codings a request accepts, without
//! case, order, spaces or quality values, so the many spellings of `Accept-Encoding` fall into a
//! few buckets (in practice: browsers, `curl --compressed`, and clients that accept nothing,
//! which get the identity form from its own variant). Each bucket is filled once from the
//! origin.
//!
//! An encoded variant's `ETag` carries a suffix (`"v1"` → `"v1-br"`, RFC 9110 §8.8.3), so a
//! validator names one representation. A revalidation sends the origin its own tag back
//! ([`origin_if_none_match`]) and keeps the suffix on the origin's 304 ([`suffix_304_etag`]).
//!
//! pingora-core's own compression module compresses per response (per hit), and its brotli
//! encoder only flushes at the end without closing the stream; the encoders here close theirs.

use crate::config::CompressionConfig;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use std::io::Write;

/// A content coding the proxy can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Br,
    Gzip,
    Zstd,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        }
    }

    pub fn parse(token: &str) -> Option<Coding> {
        match token.trim().to_ascii_lowercase().as_str() {
            "br" => Some(Coding::Br),
            "gzip" => Some(Coding::Gzip),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }
}

/// Brotli quality: a store-time cost paid once per fill, not per hit.
const BROTLI_QUALITY: u32 = 5;
/// Brotli window (log2): 512 KiB, the encoder state of a fill stays small.
const BROTLI_LGWIN: u32 = 19;
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// Compression settings (see `[compression]` in the configuration).
#[derive(Debug, Clone)]
pub struct CompressionOptions {
    pub enabled: bool,
    /// Smallest `Content-Length` that is compressed (a response without one is).
    pub min_bytes: u64,
    /// Media types (`type/subtype`, or `type/*`), lower-case.
    pub types: Vec<String>,
    /// Codings the proxy produces, most preferred first.
    pub algorithms: Vec<Coding>,
}

impl CompressionOptions {
    /// The options of a validated configuration (unknown codings are reported by its
    /// validation and left out here).
    pub fn from_config(c: &CompressionConfig) -> CompressionOptions {
        let mut algorithms: Vec<Coding> = c
            .algorithms
            .iter()
            .filter_map(|a| Coding::parse(a))
            .collect();
        algorithms.dedup();
        CompressionOptions {
            enabled: c.enabled && !algorithms.is_empty(),
            min_bytes: c.min_bytes,
            types: c
                .types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
            algorithms,
        }
    }

    #[cfg(test)]
    pub fn disabled() -> CompressionOptions {
        CompressionOptions {
            enabled: false,
            min_bytes: 0,
            types: Vec::new(),
            algorithms: Vec::new(),
        }
    }

    fn compressible_type(&self, resp: &HeaderMap) -> bool {
        let Some(ct) = resp.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        // compared without case, not lower-cased into a copy: asked of every response a fill
        // stores
        let media = ct.split(';').next().unwrap_or("").trim();
        // Events must reach the client as they are written: never through an encoder.
        if media.eq_ignore_ascii_case("text/event-stream") {
            return false;
        }
        self.types.iter().any(|t| match t.strip_suffix("/*") {
            Some(main) => media
                .split_once('/')
                .is_some_and(|(m, sub)| m.eq_ignore_ascii_case(main) && !sub.is_empty()),
            None => t.eq_ignore_ascii_case(media),
        })
    }
}

/// What the proxy does to a response it is about to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Not compressible (or compression off): untouched.
    Untouched,
    /// Compressible, but this request accepts none of the codings: stored as is, with
    /// `Vary: Accept-Encoding`.
    Identity,
    /// Compressed with this coding on its way into the store.
    Encode(Coding),
}

/// Decides what to do with a response the cache will store, from its header alone (before any
/// of the body is read).
pub fn plan(opts: &CompressionOptions, req: &HeaderMap, resp: &ResponseHeader) -> Plan {
    if !opts.enabled || resp.status != http::StatusCode::OK {
        return Plan::Untouched;
    }
    let h = &resp.headers;
    // the type first: most responses a cache stores are not of a compressible type
    if !opts.compressible_type(h) {
        return Plan::Untouched;
    }
    let encoded = h
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded || h.contains_key(header::CONTENT_RANGE) || no_transform(h) {
        return Plan::Untouched;
    }
    let length = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // A response of unknown length (chunked) is compressed: its end reaches the encoder as the
    // last body chunk (a 200 to a GET always has a body phase).
    if length.is_some_and(|n| n < opts.min_bytes) {
        return Plan::Untouched;
    }
    match choose(opts, req) {
        Some(c) => Plan::Encode(c),
        None => Plan::Identity,
    }
}

fn no_transform(h: &HeaderMap) -> bool {
    h.get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// The first configured coding the request accepts.
pub fn choose(opts: &CompressionOptions, req: &HeaderMap) -> Option<Coding> {
    let accepted = accepted_codings(req);
    let any = accepted.iter().any(|t| t == "*");
    opts.algorithms
        .iter()
        .copied()
        .find(|c| any || accepted.iter().any(|t| t == c.token()))
}

/// The codings a request accepts (`q` > 0), lower-case, sorted, unique. `identity` is left out
/// (always acceptable unless refused, and never what the proxy stores differently).
fn accepted_codings(req: &HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = req
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let mut parts = item.split(';');
            let token = parts.next()?.trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim()
                    .split_once('=')
                    .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("q") && q_is_zero(v))
            });
            (!token.is_empty() && token != "identity" && !refused).then_some(token)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn q_is_zero(v: &str) -> bool {
    v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
}

/// The value that keys a variant on `Accept-Encoding`: the accepted codings, normalised (see
/// the module documentation).
pub fn accept_encoding_key(req: &HeaderMap) -> Vec<u8> {
    accepted_codings(req).join(",").into_bytes()
}

/// Plans and applies compression to the header of a fetched response (`resp`, the origin's
/// response to `req`) on a path that may store it, as both fill paths do (pingora's
/// `upstream_response_filter`, the front's `server::fill`): only a response the policy would
/// store is touched. Returns whether the header changed, and the encoder of its body.
pub fn prepare(
    opts: &CompressionOptions,
    req: &pingora_http::RequestHeader,
    resp: &mut ResponseHeader,
    policy: &super::policy::PolicyOptions,
) -> pingora_error::Result<(bool, Option<Encoder>)> {
    if !opts.enabled {
        return Ok((false, None));
    }
    let plan = plan(opts, &req.headers, resp);
    // whether the response would be stored, without building its stored form (a header copy)
    if plan == Plan::Untouched
        || super::policy::assess(req, resp, std::time::SystemTime::now(), policy).is_err()
    {
        return Ok((false, None));
    }
    let encoder = match plan {
        Plan::Encode(coding) => Some(Encoder::new(coding).map_err(|e| {
            pingora_error::Error::because(pingora_error::ErrorType::InternalError, "compression", e)
        })?),
        _ => None,
    };
    apply(resp, plan)?;
    Ok((true, encoder))
}

/// Rewrites the header of a response being stored according to `plan`.
pub fn apply(resp: &mut ResponseHeader, plan: Plan) -> pingora_error::Result<()> {
    if plan == Plan::Untouched {
        return Ok(());
    }
    add_vary_accept_encoding(resp)?;
    let Plan::Encode(coding) = plan else {
        return Ok(());
    };
    resp.insert_header(header::CONTENT_ENCODING, coding.token())?;
    // The stored entry gets the encoded length when the fill completes (`stored_length`).
    resp.remove_header(&header::CONTENT_LENGTH);
    resp.remove_header(&header::ACCEPT_RANGES);
    if let Some(tag) = resp.headers.get(header::ETAG) {
        if let Some(tagged) = suffixed(tag.as_bytes(), coding) {
            resp.insert_header(header::ETAG, tagged)?;
        }
    }
    Ok(())
}

fn add_vary_accept_encoding(resp: &mut ResponseHeader) -> pingora_error::Result<()> {
    let present = resp
        .headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| n.trim().eq_ignore_ascii_case("accept-encoding") || n.trim() == "*");
    if !present {
        resp.append_header(header::VARY, "Accept-Encoding")?;
    }
    Ok(())
}

/// `"v1"` → `"v1-br"`, `W/"v1"` → `W/"v1-br"`; `None` for a malformed tag.
fn suffixed(tag: &[u8], coding: Coding) -> Option<HeaderValue> {
    let s = std::str::from_utf8(tag).ok()?.trim();
    let (weak, opaque) = match s.strip_prefix("W/") {
        Some(rest) => ("W/", rest),
        None => ("", s),
    };
    let inner = opaque.strip_prefix('"')?.strip_suffix('"')?;
    HeaderValue::from_str(&format!("{weak}\"{inner}-{}\"", coding.token())).ok()
}

/// The coding this proxy applied to a stored response, when it did: the response carries one of
/// our codings, `Vary: Accept-Encoding` and (if it has an `ETag`) our suffix.
fn own_coding(stored: &ResponseHeader) -> Option<Coding> {
    let coding = stored
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .and_then(Coding::parse)?;
    let tag_ok = match stored.headers.get(header::ETAG) {
        Some(tag) => unsuffixed(tag.as_bytes(), coding).is_some(),
        None => true,
    };
    tag_ok.then_some(coding)
}

/// The origin's tag of a tag this proxy suffixed.
fn unsuffixed(tag: &[u8], coding: Coding) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(tag).ok()?.trim();
    let end = format!("-{}\"", coding.token());
    let stem = s.strip_suffix(&end)?;
    Some(format!("{stem}\"").into_bytes())
}

/// On a revalidation of an entry this proxy encoded, pingora puts the stored (suffixed) `ETag`
/// into `If-None-Match`: the origin knows only its own tag.
pub fn origin_if_none_match(req: &mut RequestHeader, stored: &ResponseHeader) {
    let Some(coding) = own_coding(stored) else {
        return;
    };
    let Some(tag) = stored.headers.get(header::ETAG) else {
        return;
    };
    let sent = req.headers.get(header::IF_NONE_MATCH);
    if sent.is_some_and(|v| v.as_bytes() == tag.as_bytes()) {
        if let Some(origin) = unsuffixed(tag.as_bytes(), coding) {
            if let Ok(v) = HeaderValue::from_bytes(&origin) {
                let _ = req.insert_header(header::IF_NONE_MATCH, v);
            }
        }
    }
}

/// The origin's 304 for an entry this proxy encoded names the origin's tag: give it the suffix
/// again before it is merged into the stored header.
pub fn suffix_304_etag(not_modified: &mut ResponseHeader, stored: &ResponseHeader) {
    let Some(coding) = own_coding(stored) else {
        return;
    };
    let Some(tag) = not_modified.headers.get(header::ETAG) else {
        return;
    };
    if let Some(v) = suffixed(tag.as_bytes(), coding) {
        let _ = not_modified.insert_header(header::ETAG, v);
    }
}

/// When a fill whose header lost its `Content-Length` to [`apply`] completes, its header gets
/// the stored body's length, so hits are framed by length and can serve ranges of the encoded
/// representation. `None` when nothing changes.
pub fn stored_length(meta: &(Vec<u8>, Vec<u8>), body_len: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut m = pingora_cache::CacheMeta::deserialize(&meta.0, &meta.1).ok()?;
    if !lacks_stored_length(m.response_header()) {
        return None;
    }
    let h = m.response_header_mut();
    h.remove_header(&header::TRANSFER_ENCODING);
    h.insert_header(header::CONTENT_LENGTH, body_len).ok()?;
    super::meta_wire::serialize(&m).ok()
}

/// Whether a fill's header (or its decoded view's: the fields looked at are the same) lost its
/// `Content-Length` to [`apply`], so [`stored_length`] has something to do.
pub fn lacks_stored_length(stored: &ResponseHeader) -> bool {
    !stored.headers.contains_key(header::CONTENT_LENGTH) && own_coding(stored).is_some()
}

/// A streaming encoder: its output for each chunk, and the end of the stream at the end.
pub struct Encoder {
    inner: Inner,
    coding: Coding,
    bytes_in: u64,
    bytes_out: u64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

enum Inner {
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Finished,
}

impl Encoder {
    pub fn new(coding: Coding) -> std::io::Result<Encoder> {
        let inner = match coding {
            Coding::Br => Inner::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                BROTLI_QUALITY,
                BROTLI_LGWIN,
            ))),
            Coding::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Coding::Zstd => Inner::Zstd(zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?),
        };
        Ok(Encoder {
            inner,
            coding,
            bytes_in: 0,
            bytes_out: 0,
        })
    }

    /// The coding, and the bytes encoded so far: in and out.
    pub fn totals(&self) -> (Coding, u64, u64) {
        (self.coding, self.bytes_in, self.bytes_out)
    }

    /// Encodes `input`; with `end`, closes the stream. Returns what the encoder has produced so
    /// far (possibly nothing).
    pub fn encode(&mut self, input: &[u8], end: bool) -> std::io::Result<Bytes> {
        let out = self.encode_inner(input, end)?;
        self.bytes_in += input.len() as u64;
        self.bytes_out += out.len() as u64;
        Ok(out)
    }

    fn encode_inner(&mut self, input: &[u8], end: bool) -> std::io::Result<Bytes> {
        match &mut self.inner {
            Inner::Br(w) => w.write_all(input)?,
            Inner::Gzip(w) => w.write_all(input)?,
            Inner::Zstd(w) => w.write_all(input)?,
            Inner::Finished => return Ok(Bytes::new()),
        }
        if end {
            let out = match std::mem::replace(&mut self.inner, Inner::Finished) {
                Inner::Br(w) => w.into_inner(),
                Inner::Gzip(w) => w.finish()?,
                Inner::Zstd(w) => w.finish()?,
                Inner::Finished => Vec::new(),
            };
            return Ok(out.into());
        }
        let buf = match &mut self.inner {
            Inner::Br(w) => w.get_mut(),
            Inner::Gzip(w) => w.get_mut(),
            Inner::Zstd(w) => w.get_mut(),
            Inner::Finished => return Ok(Bytes::new()),
        };
        Ok(std::mem::take(buf).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::header_map as h;
    use std::io::Read;

    fn opts() -> CompressionOptions {
        CompressionOptions {
            enabled: true,
            min_bytes: 100,
            types: vec!["application/json".into(), "text/*".into()],
            algorithms: vec![Coding::Br, Coding::Gzip],
        }
    }

    fn resp(fields: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in fields {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn json(len: &str) -> ResponseHeader {
        resp(&[
            ("content-type", "application/json"),
            ("content-length", len),
        ])
    }

    #[test]
    fn accept_encoding_buckets_ignore_case_order_spaces_and_q() {
        let k = |v: &str| accept_encoding_key(&h(&[("accept-encoding", v)]));
        assert_eq!(k("gzip, deflate, br"), k("BR;q=1.0,deflate ,  gzip;q=0.5"));
        assert_eq!(k("gzip, br;q=0"), k("gzip"));
        assert_eq!(k("identity"), accept_encoding_key(&HeaderMap::new()));
        assert_ne!(k("gzip"), k("br"));
    }

    #[test]
    fn plan_follows_type_size_coding_and_no_transform() {
        let o = opts();
        let br = h(&[("accept-encoding", "gzip, br")]);
        let gz = h(&[("accept-encoding", "gzip;q=1, br;q=0")]);
        let none = HeaderMap::new();
        assert_eq!(plan(&o, &br, &json("500")), Plan::Encode(Coding::Br));
        assert_eq!(plan(&o, &gz, &json("500")), Plan::Encode(Coding::Gzip));
        assert_eq!(
            plan(&o, &h(&[("accept-encoding", "*")]), &json("500")),
            Plan::Encode(Coding::Br)
        );
        assert_eq!(plan(&o, &none, &json("500")), Plan::Identity);
        assert_eq!(plan(&o, &br, &json("99")), Plan::Untouched);
        let mut sse = json("500");
        sse.insert_header("content-type", "text/event-stream")
            .unwrap();
        assert_eq!(plan(&o, &br, &sse), Plan::Untouched);
        let mut text = json("500");
        text.insert_header("content-type", "text/html; charset=utf-8")
            .unwrap();
        assert_eq!(plan(&o, &br, &text), Plan::Encode(Coding::Br));
        // media types compare without case (RFC 9110 §8.3.1)
        text.insert_header("content-type", "Text/HTML").unwrap();
        assert_eq!(plan(&o, &br, &text), Plan::Encode(Coding::Br));
        sse.insert_header("content-type", "Text/Event-Stream")
            .unwrap();
        assert_eq!(plan(&o, &br, &sse), Plan::Untouched);
        let mut png = json("500");
        png.insert_header("content-type", "image/png").unwrap();
        assert_eq!(plan(&o, &br, &png), Plan::Untouched);
        let mut nt = json("500");
        nt.insert_header("cache-control", "max-age=5, No-Transform")
            .unwrap();
        assert_eq!(plan(&o, &br, &nt), Plan::Untouched);
        let mut pre = json("500");
        pre.insert_header("content-encoding", "gzip").unwrap();
        assert_eq!(plan(&o, &br, &pre), Plan::Untouched);
        let chunked = resp(&[("content-type", "application/json")]);
        assert_eq!(plan(&o, &br, &chunked), Plan::Encode(Coding::Br));
        assert_eq!(
            plan(&CompressionOptions::disabled(), &br, &json("500")),
            Plan::Untouched
        );
    }

    #[test]
    fn encoded_header_and_etags() {
        let mut r = json("500");
        r.insert_header("etag", "\"v1\"").unwrap();
        r.insert_header("vary", "Authorization").unwrap();
        apply(&mut r, Plan::Encode(Coding::Br)).unwrap();
        assert_eq!(r.headers["content-encoding"], "br");
        assert_eq!(r.headers["etag"], "\"v1-br\"");
        assert!(r.headers.get("content-length").is_none());
        let vary: Vec<_> = r.headers.get_all("vary").iter().collect();
        assert_eq!(vary, ["Authorization", "Accept-Encoding"]);

        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("if-none-match", "\"v1-br\"").unwrap();
        origin_if_none_match(&mut req, &r);
        assert_eq!(req.headers["if-none-match"], "\"v1\"");

        let mut nm = ResponseHeader::build(304, None).unwrap();
        nm.insert_header("etag", "\"v1\"").unwrap();
        suffix_304_etag(&mut nm, &r);
        assert_eq!(nm.headers["etag"], "\"v1-br\"");

        let mut weak = json("500");
        weak.insert_header("etag", "W/\"w\"").unwrap();
        apply(&mut weak, Plan::Encode(Coding::Gzip)).unwrap();
        assert_eq!(weak.headers["etag"], "W/\"w-gzip\"");

        // an origin-encoded response is not ours: its tag goes to the origin untouched
        let origin = resp(&[("content-encoding", "br"), ("etag", "\"x\"")]);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("if-none-match", "\"x\"").unwrap();
        origin_if_none_match(&mut req, &origin);
        assert_eq!(req.headers["if-none-match"], "\"x\"");
    }

    fn roundtrip(coding: Coding, input: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new(coding).unwrap();
        let mut out = Vec::new();
        for chunk in input.chunks(1000) {
            out.extend_from_slice(&e.encode(chunk, false).unwrap());
        }
        out.extend_from_slice(&e.encode(b"", true).unwrap());
        let mut plain = Vec::new();
        match coding {
            Coding::Br => {
                brotli::Decompressor::new(&out[..], 4096)
                    .read_to_end(&mut plain)
                    .unwrap();
            }
            Coding::Gzip => {
                flate2::read::GzDecoder::new(&out[..])
                    .read_to_end(&mut plain)
                    .unwrap();
            }
            Coding::Zstd => plain = zstd::decode_all(&out[..]).unwrap(),
        }
        assert!(
            out.len() < input.len() / 4,
            "{coding:?}: {} bytes",
            out.len()
        );
        plain
    }

    #[test]
    fn encoders_produce_complete_streams() {
        let row = br#"{"id":1,"t":"x"},"#;
        let input: Vec<u8> = row.iter().copied().cycle().take(20_000).collect();
        for c in [Coding::Br, Coding::Gzip, Coding::Zstd] {
            assert_eq!(roundtrip(c, &input), input, "{c:?}");
        }
    }
}
