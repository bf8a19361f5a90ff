//! Image garbage collection as the kubelet does it (kubernetes
//! `pkg/kubelet/images/image_gc_manager.go`, `GarbageCollect` and `freeSpace`): when the
//! filesystem holding the images is used at or above `imageGCHighThresholdPercent`, images no
//! container uses are removed — least recently used first, then the earliest imported — until
//! the space their sizes add up to brings usage down to `imageGCLowThresholdPercent`. Images
//! imported less than `imageMinimumGCAge` ago are kept. Freeing less than needed is an error
//! that says how much could be freed, as the kubelet's is.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The kubelet's image GC settings (`KubeletConfiguration`), with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcPolicy {
    /// `imageGCHighThresholdPercent` (default 85): at or above it, GC runs.
    pub high_threshold_percent: u8,
    /// `imageGCLowThresholdPercent` (default 80): GC frees down to it.
    pub low_threshold_percent: u8,
    /// `imageMinimumGCAge` (default 2 minutes): younger images are kept.
    pub min_age: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

impl GcPolicy {
    /// The kubelet's validation: both in 0..=100, low below high.
    pub fn check(&self) -> Result<()> {
        if self.high_threshold_percent > 100 || self.low_threshold_percent > 100 {
            bail!(
                "imageGCHighThresholdPercent ({}) and imageGCLowThresholdPercent ({}) must be \
                 between 0 and 100",
                self.high_threshold_percent,
                self.low_threshold_percent
            );
        }
        if self.low_threshold_percent >= self.high_threshold_percent {
            bail!(
                "imageGCLowThresholdPercent ({}) must be less than imageGCHighThresholdPercent ({})",
                self.low_threshold_percent,
                self.high_threshold_percent
            );
        }
        Ok(())
    }
}

/// The image filesystem's size and free space, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub capacity: u64,
    pub available: u64,
}

impl DiskUsage {
    /// The filesystem holding `path` (`statvfs`: blocks available to unprivileged users, as
    /// cAdvisor reports them to the kubelet).
    pub fn of(path: &Path) -> Result<DiskUsage> {
        let st = nix::sys::statvfs::statvfs(path)
            .with_context(|| format!("statvfs {}", path.display()))?;
        let frag = st.fragment_size() as u64;
        Ok(DiskUsage {
            capacity: st.blocks() as u64 * frag,
            available: st.blocks_available() as u64 * frag,
        })
    }

    /// Used percent, rounded down (the kubelet's `100 - available*100/capacity`).
    pub fn used_percent(&self) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        100 - self.available.saturating_mul(100) / self.capacity
    }
}

/// What one GC pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub used_percent: u64,
    /// Bytes to free to reach the low threshold (0: below the high one, nothing to do).
    pub to_free: u64,
    /// The removed images' sizes, added up.
    pub freed: u64,
    /// IDs of the removed images.
    pub removed: Vec<String>,
}

/// The bytes to free: none below the high threshold, else down to the low one.
pub fn bytes_to_free(policy: &GcPolicy, usage: DiskUsage) -> u64 {
    if usage.used_percent() < u64::from(policy.high_threshold_percent) {
        return 0;
    }
    let keep_free = usage.capacity / 100 * (100 - u64::from(policy.low_threshold_percent));
    keep_free.saturating_sub(usage.available)
}
