//! The cache layer: everything about storing and reusing responses, and nothing about serving
//! them. It imports nothing from the proxy hooks or the admin API above it (only the leaf
//! modules `metrics`, `stats` and `status` beside it).
//!
//! - [`key`]: the URL identity of a resource (scheme, host, raw path, query sorted by decoded
//!   name), shared by requests, mutation invalidations and admin purges.
//! - [`directives`]: the governing cache directives of a response (targeted field or
//!   `Cache-Control`), parsed once for every decision.
//! - [`freshness`]: freshness lifetime (explicit or heuristic) and age of an arriving response.
//! - [`policy`]: RFC 9111 decisions (store or not, for how long, what request directives demand).
//! - [`range`]: `Range` / `If-Range` answered from stored responses.
//! - [`vary`]: which request fields key a variant (`Vary` plus credentials), the variance hash.
//! - [`entry`]: one stored response, its fill record and its decoded view for fast hits.
//! - [`meta_wire`]: a fill's meta serialized in pingora's format without compressing its header.
//! - [`store`]: the bounded quick_cache store, its purge vocabulary ([`Scope`]) and bookkeeping
//!   ([`index`], [`tombstones`]).
//! - [`inflight`]: fills in progress that waiting requests read as they arrive.
//! - [`first_fill`]: cold keys whose first fill is under way (requests wait for it in the front).
//! - [`credential_pass`]: (URL, credential) pairs whose responses the cache refused, forwarded
//!   by the front's pass-through.
//! - [`storage`]: pingora's `Storage` adapter over the store, with its hit and miss handlers.
//! - [`hit`]: the fast path for plain fresh hits.
//! - [`encoding`]: compression of compressible responses, once, when they are stored.
//! - [`invalidate`]: the one entry point for invalidations (mutations, admin, bus).
//! - [`post_reuse`]: a `POST` response stored for later `GET`s of its target (RFC 9111 §4).

pub(crate) mod credential_pass;
pub(crate) mod directives;
pub(crate) mod encoding;
pub(crate) mod entry;
pub(crate) mod explain;
pub(crate) mod first_fill;
pub(crate) mod freshness;
pub(crate) mod hit;
pub(crate) mod index;
pub(crate) mod inflight;
pub(crate) mod invalidate;
pub(crate) mod key;
pub(crate) mod meta_wire;
pub(crate) mod policy;
pub(crate) mod post_reuse;
pub(crate) mod range;
pub(crate) mod storage;
pub(crate) mod store;
pub(crate) mod tombstones;
pub(crate) mod vary;

pub(crate) use invalidate::{Invalidator, Source};

/// The hasher of the cache layer's maps: foldhash (hashbrown's own default), seeded at random
/// per map. Their keys are mostly blake2 digests (primary and variant keys), for which std's
/// SipHash cost about 230 instructions a lookup and a miss makes dozens of lookups (the store,
/// its index, the fill registries, the tombstones): 5 % of a miss (callgrind).
pub(crate) type MapHasher = foldhash::fast::RandomState;
/// A `HashMap` with [`MapHasher`].
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, MapHasher>;
/// A `HashSet` with [`MapHasher`].
pub(crate) type HashSet<K> = std::collections::HashSet<K, MapHasher>;
pub(crate) use key::UrlKey;
pub(crate) use store::{Scope, Store, StoreOptions};
