//! Allocator tuning for processes that run the gRPC data plane. h2 allocates a fresh ~1 MiB buffer
//! for every frame it reads and the ring driver one for every piece it sends (before the links
//! were framed by hand, tonic also copied each message into fresh buffers). With mimalloc's default
//! purging, freed buffers go back to the OS and the next one page-faults on zeroed (often huge)
//! pages: measured here, 30 % of an all-reduce's CPU time was the kernel clearing pages
//! (`clear_page_erms`), 54,000 faults for 13 all-reduces of 64 MiB over 4 ranks; with purging off,
//! 1,400 faults, all at start-up. BURN.md's "gRPC and NCCL facts" records the same effect.

/// mimalloc's `mi_option_purge_delay` (index in `mi_option_e`, mimalloc 2 and 3; the Rust binding
/// does not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps memory freed to mimalloc mapped for reuse instead of purging it back to the OS, which
/// removes the page-fault cost of the data plane's short-lived message buffers. Call once at start
/// in a process whose `#[global_allocator]` is `mimalloc::MiMalloc` (the `ringtrain` binary); in a
/// process that uses another allocator it only tunes an unused mimalloc heap. The cost is that the
/// process's resident memory stays at its high-water mark.
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only stores an integer option; any value is valid for this option
    // (-1 means "never purge") and mimalloc options may be changed at any time from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn purging_is_turned_off() {
        super::keep_freed_memory();
        // SAFETY: reading an option has no preconditions.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, -1);
    }
}
