//! glibc malloc settings for the API server's allocation pattern.
//!
//! A LIST reads its pages on `spawn_blocking` threads and encodes them on
//! the runtime's workers. glibc gives every thread that allocates an arena
//! of its own (up to 8 per core), and memory freed into an arena stays
//! there: after a few 10k-pod LISTs the master held 122 MiB instead of
//! 49 MiB before them (bench-api --http, 10000 pods). With two arenas it
//! held 78 MiB (of which the store's 32 MiB page cache, now full), at the
//! same LIST time. After a streamed LIST, `malloc_trim` hands the pages it
//! freed back to the kernel.

use std::sync::Once;

/// At most two malloc arenas; called once, before the server starts.
pub fn limit_arenas() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's allocator parameters; it is
        // thread-safe and M_ARENA_MAX takes any positive count.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    });
}

/// Returns freed heap pages to the kernel (after a big response).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes the arenas'
    // locks itself and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
