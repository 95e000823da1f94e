//! [`GuestLimiter`]: the memory, table and instance bounds of one store.

use wasmtime::ResourceLimiter;

// The per-instance limits, in one place: the limiter enforces them, the
// instance pool is sized from them, and the loader checks modules against
// them before compiling, so that a module within them always runs and one
// beyond them is refused as over the memory limit, never as invalid.

/// The most linear memory a wasm32 guest can address: 4 GiB. A
/// `memory_limit` beyond it is refused rather than silently lowered.
pub const MAX_MEMORY_LIMIT: u64 = 4 << 30;
/// Most table elements one table may hold. Real modules (CPython among
/// them) use a few thousand.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Most instances a store may create (a sandbox creates one).
pub(crate) const MAX_INSTANCES: usize = 1;
/// Most tables of one module, imported or defined.
pub(crate) const MAX_TABLES: usize = 16;
/// Most linear memories of one module, imported or defined.
pub(crate) const MAX_MEMORIES: usize = 4;
/// Host bytes a table element takes (a function reference), charged to the
/// memory limit.
pub(crate) const TABLE_ELEMENT_BYTES: usize = 8;

/// Bounds the linear memory and tables of a store together, and remembers
/// whether it had to deny a growth, so that the outcome of a run is
/// classified by what the limiter saw rather than by error text.
#[derive(Debug)]
pub(crate) struct GuestLimiter {
    memory_limit: usize,
    memory_in_use: usize,
    peak: usize,
    memory_denied: bool,
    trap_on_limit: bool,
}

/// The error a denied growth becomes when the sandbox traps on the limit.
#[derive(Debug)]
pub(crate) struct MemoryLimitTrap;

impl std::fmt::Display for MemoryLimitTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the memory limit denied a memory growth")
    }
}

impl std::error::Error for MemoryLimitTrap {}

impl GuestLimiter {
    pub(crate) fn new(memory_limit: u64, trap_on_limit: bool) -> GuestLimiter {
        GuestLimiter {
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            memory_in_use: 0,
            peak: 0,
            memory_denied: false,
            trap_on_limit,
        }
    }

    /// Accounts for one memory or table going from `current` to `desired`
    /// bytes, all of them against the one limit.
    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let after = self.memory_in_use.saturating_sub(current).saturating_add(desired);
        if after > self.memory_limit {
            self.memory_denied = true;
            if self.trap_on_limit {
                return Err(wasmtime::Error::new(MemoryLimitTrap));
            }
            return Ok(false);
        }
        self.memory_in_use = after;
        self.peak = self.peak.max(after);
        Ok(true)
    }

    /// Whether a memory growth (or an initial memory) was refused.
    pub(crate) fn memory_denied(&self) -> bool {
        self.memory_denied
    }

    /// Forgets earlier denials (a session's next turn reports its own).
    pub(crate) fn clear_denied(&mut self) {
        self.memory_denied = false;
    }

    /// The most linear memory the store held at once.
    pub(crate) fn peak(&self) -> u64 {
        self.peak as u64
    }

    /// Bytes of linear memory and tables the guest holds now.
    pub(crate) fn in_use(&self) -> u64 {
        self.memory_in_use as u64
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.memory_denied = true;
            if self.trap_on_limit {
                return Err(wasmtime::Error::new(MemoryLimitTrap));
            }
            return Ok(false);
        }
        self.grow(current.saturating_mul(TABLE_ELEMENT_BYTES), desired.saturating_mul(TABLE_ELEMENT_BYTES))
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
        let mut limiter = GuestLimiter::new(100, false);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(!limiter.memory_growing(0, 60, None).unwrap(), "a second memory counts too");
        assert!(limiter.memory_denied());
        assert!(limiter.memory_growing(60, 100, None).unwrap());
        assert_eq!(limiter.peak(), 100);
    }

    #[test]
    fn tables_count_against_the_memory_limit() {
        let mut limiter = GuestLimiter::new(1 << 20, false);
        assert!(limiter.table_growing(0, 1000, None).unwrap());
        assert!(!limiter.table_growing(1000, 1 << 20, None).unwrap(), "8 MiB of table under 1 MiB");
        assert!(limiter.memory_denied());
    }

    #[test]
    fn trap_on_limit_turns_a_denial_into_an_error() {
        let mut limiter = GuestLimiter::new(100, true);
        let error = limiter.memory_growing(0, 200, None).unwrap_err();
        assert!(error.downcast_ref::<MemoryLimitTrap>().is_some());
        assert!(limiter.memory_denied());
    }
}
