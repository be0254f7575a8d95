//! The open-file limit: raised to the hard limit at start, and the connection cap kept under it.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept for listeners, upstream pools, the admin port and logs.
const RESERVED_FDS: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        tracing::info!(from = soft, to = hard, "raised the open-file limit");
        return Ok(hard);
    }
    Ok(soft)
}

/// The client connection cap: `configured`, but never more than the open-file limit allows with
/// two descriptors per client (its own and one upstream connection).
pub fn connection_cap(configured: usize, nofile: u64) -> usize {
    let fits = (nofile.saturating_sub(RESERVED_FDS) / 2).max(1);
    configured.min(usize::try_from(fits).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_limit() {
        assert_eq!(connection_cap(10_000, 1024), 480);
        assert_eq!(connection_cap(100, 1024), 100);
        assert_eq!(connection_cap(100, 10), 1);
    }
}
