//! Heap statistics from jemalloc.

/// A snapshot of jemalloc's statistics, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct HeapStats {
    /// Bytes in live allocations: the figure a leak makes grow.
    pub allocated: u64,
    /// Bytes in active pages (allocated plus fragmentation within pages).
    pub active: u64,
    /// Bytes physically resident in pages mapped by the allocator.
    pub resident: u64,
    /// Bytes in virtual memory retained for reuse rather than returned to the OS.
    pub retained: u64,
}

impl HeapStats {
    /// Reads the current statistics, or `None` when jemalloc is not the allocator
    /// (the `jemalloc` feature is off) or its statistics cannot be read.
    #[cfg(feature = "jemalloc")]
    pub fn read() -> Option<Self> {
        use tikv_jemalloc_ctl::{epoch, stats};
        // jemalloc caches its statistics; advancing the epoch refreshes them.
        epoch::advance().ok()?;
        let as_u64 = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        Some(Self {
            allocated: as_u64(stats::allocated::read().ok()?),
            active: as_u64(stats::active::read().ok()?),
            resident: as_u64(stats::resident::read().ok()?),
            retained: as_u64(stats::retained::read().ok()?),
        })
    }

    /// Reads the current statistics; always `None` without the `jemalloc` feature.
    #[cfg(not(feature = "jemalloc"))]
    pub fn read() -> Option<Self> {
        None
    }

    /// The four figures with their metric label.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("allocated", self.allocated),
            ("active", self.active),
            ("resident", self.resident),
            ("retained", self.retained),
        ]
    }
}
