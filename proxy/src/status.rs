//! The cache status of a response (the `X-Cache` values): the bottom of the crate, shared by the
//! proxy hooks that set it and the stats and metrics that count it.

/// The `X-Cache` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XCache {
    Hit,
    Miss,
    Stale,
    Revalidated,
    Pass,
    Bypass,
    Error,
}

impl XCache {
    /// Every status, in declaration order (`x as usize` indexes it).
    pub const ALL: [XCache; 7] = [
        XCache::Hit,
        XCache::Miss,
        XCache::Stale,
        XCache::Revalidated,
        XCache::Pass,
        XCache::Bypass,
        XCache::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            XCache::Hit => "HIT",
            XCache::Miss => "MISS",
            XCache::Stale => "STALE",
            XCache::Revalidated => "REVALIDATED",
            XCache::Pass => "PASS",
            XCache::Bypass => "BYPASS",
            XCache::Error => "ERROR",
        }
    }
}
