//! Keeping the process's resident memory close to what is live. The API server answers lists
//! of many megabytes; with glibc's default dynamic mmap threshold, after the first such buffer
//! is freed the threshold rises and later ones come from the heap, where freed space stays
//! resident (hundreds of MiB after a few 10 000-object lists). A fixed threshold keeps large
//! buffers mmapped (returned on free) and a periodic trim hands freed heap pages back.

use std::time::Duration;

/// Buffers at least this large are mmapped.
const MMAP_THRESHOLD: i32 = 256 * 1024;
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Fixes the mmap threshold (process-wide; harmless for the rest of the agent).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns freed heap memory to the system every few seconds until `cancel`.
pub async fn trim_periodically(cancel: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => trim(),
        }
    }
}

pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
