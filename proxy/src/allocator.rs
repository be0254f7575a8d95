//! mimalloc settings. mimalloc (the binary's global allocator) purges freed pages only after a
//! delay (1 s in v3), and only when a later allocation or free gets round to it: after a purge or
//! an eviction wave an idle proxy kept its peak RSS. Purging at once returns freed memory to the
//! system when it is freed (measured by `scripts/reliability.sh`, memory rows).

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (the binding names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Purge freed memory at once, unless `MIMALLOC_PURGE_DELAY` says otherwise.
pub fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one process-wide integer option; mimalloc reads options atomically from any
    // thread and accepts them being changed at run time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
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
        // v3's default, or 0 when another test of this process got here first
        assert!(before == 1000 || before == 0, "{before}");
        return_freed_memory_at_once();
        // SAFETY: reads one option.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            0
        );
    }
}
