//! [`GuestLimiter`]: the memory, table and instance bounds of one store.

use wasmtime::ResourceLimiter;

/// Most table elements one table may hold. Real modules (CPython among
/// them) use a few thousand.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Most instances, tables and memories a store may create.
pub(crate) const MAX_INSTANCES: usize = 4;
pub(crate) const MAX_TABLES: usize = 16;
pub(crate) const MAX_MEMORIES: usize = 4;

/// Bounds the linear memory of all memories of a store together, and
/// remembers whether it had to deny a growth, so that the outcome of a run
/// is classified by what the limiter saw rather than by error text.
#[derive(Debug)]
pub(crate) struct GuestLimiter {
    memory_limit: usize,
    memory_in_use: usize,
    peak: usize,
    memory_denied: bool,
}

impl GuestLimiter {
    pub(crate) fn new(memory_limit: u64) -> GuestLimiter {
        GuestLimiter {
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            memory_in_use: 0,
            peak: 0,
            memory_denied: false,
        }
    }

    /// Whether a memory growth (or an initial memory) was refused.
    pub(crate) fn memory_denied(&self) -> bool {
        self.memory_denied
    }

    /// The most linear memory the store held at once.
    pub(crate) fn peak(&self) -> u64 {
        self.peak as u64
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.memory_in_use.saturating_sub(current).saturating_add(desired);
        if after > self.memory_limit {
            self.memory_denied = true;
            return Ok(false);
        }
        self.memory_in_use = after;
        self.peak = self.peak.max(after);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_covers_all_memories_together() {
        let mut limiter = GuestLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(!limiter.memory_growing(0, 60, None).unwrap(), "a second memory counts too");
        assert!(limiter.memory_denied());
        assert!(limiter.memory_growing(60, 100, None).unwrap());
        assert_eq!(limiter.peak(), 100);
    }
}
