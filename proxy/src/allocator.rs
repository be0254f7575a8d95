//! mimalloc settings: freed memory goes back to the system within a fraction of a second, idle
//! or busy, without taxing every request.
//!
//! mimalloc (the binary's global allocator) purges freed pages after a delay (1 s in v3), and
//! only when a later allocation or free gets round to it: after a purge or an eviction wave an
//! idle proxy kept its peak RSS. Until 2026-12-01 the delay was set to 0 (purge at once), which
//! fixed that (`scripts/reliability.sh`, memory rows) but made busy workers hand pages back and
//! fault them in again moments later: 0.40 minor page faults per pass-through request and 0.45
//! per miss, about 1 µs of system time per request (`scripts/request-cpu.sh`, its `faults`
//! column). Now the delay is [`PURGE_DELAY_MS`]: a busy worker mostly takes its freed pages again
//! before they are purged (0.05 faults per pass-through request), and a background thread asks
//! mimalloc every [`COLLECT_EVERY`] to purge what waited longer (mimalloc's arenas are
//! process-wide: any thread's collection purges every thread's expired pages), so an idle proxy
//! still returns memory within about [`PURGE_DELAY_MS`] + [`COLLECT_EVERY`]. The delay is short
//! because memory freed under churn waits that long: the RSS peak of the large-object churn of
//! `scripts/reliability.sh` (bound about 100 MiB) was 79 MiB at 0 ms, 81–86 at 5 ms, 89–91 at
//! 10 ms, 88–119 at 25 ms (over its bound once, in a full run) and 109 at 100 ms; faults per
//! pass-through request 0.40 at 0 ms, 0.09 at 5, 0.05 at 10, 0.02 at 25.

use std::sync::Once;
use std::time::Duration;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (the binding names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed pages stay mapped before mimalloc may return them.
pub const PURGE_DELAY_MS: i64 = 10;

/// How often the background thread has mimalloc purge what waited long enough.
pub const COLLECT_EVERY: Duration = Duration::from_millis(250);

/// Sets the purge delay (unless `MIMALLOC_PURGE_DELAY` says otherwise) and starts the thread that
/// purges for an idle process (once per process).
pub fn return_freed_memory_soon() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: sets one process-wide integer option; mimalloc reads options atomically
            // from any thread and accepts them being changed at run time.
            unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) }
        }
        let collector = std::thread::Builder::new()
            .name("mimalloc-purge".into())
            .spawn(|| loop {
                std::thread::sleep(COLLECT_EVERY);
                // SAFETY: a normal (not forced) collection of this thread's heap, which also
                // purges the arenas' expired ranges; callable from any thread at any time.
                unsafe { libmimalloc_sys::mi_collect(false) }
            });
        if let Err(e) = collector {
            tracing::warn!(error = %e, "cannot start the memory-return thread: freed memory goes back to the system only as later allocations get round to it");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads one option.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        // v3's default purge delay (so the option is the one meant), or ours when another test
        // of this process got here first
        assert!(
            before == 1000 || before == PURGE_DELAY_MS as std::ffi::c_long,
            "{before}"
        );
        return_freed_memory_soon();
        // SAFETY: reads one option.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            PURGE_DELAY_MS as std::ffi::c_long
        );
    }
}
