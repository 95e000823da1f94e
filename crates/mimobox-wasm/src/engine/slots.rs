//! [`Slots`]: a counting semaphore over the pooled instance slots.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::engine::EngineCore;

/// Bounds the executions that run at once to the number of pooled slots;
/// the rest wait rather than fail for want of a slot. Taking and returning
/// a free slot is one atomic operation; the lock and condition variable are
/// used only when all slots are taken.
pub(crate) struct Slots {
    size: u32,
    bounded: bool,
    available: AtomicU32,
    waiters: AtomicU32,
    lock: Mutex<()>,
    freed: Condvar,
}

/// A slot held until drop.
pub(crate) struct SlotGuard<'a>(&'a Slots);

impl Slots {
    /// `size` slots; 0 means unbounded (no pool).
    pub(crate) fn new(size: u32) -> Slots {
        Slots {
            size,
            bounded: size > 0,
            available: AtomicU32::new(size),
            waiters: AtomicU32::new(0),
            lock: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn acquire(&self) -> SlotGuard<'_> {
        if self.bounded && !self.try_take() {
            let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.waiters.fetch_add(1, Ordering::SeqCst);
            while !self.try_take() {
                guard = self.freed.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
        SlotGuard(self)
    }

    /// Takes a slot for as long as a session lives, waiting at most `wait`.
    pub(crate) fn acquire_owned(core: &Arc<EngineCore>, wait: Duration) -> Option<OwnedSlot> {
        let slots = &core.slots;
        if slots.bounded && !slots.try_take() {
            let deadline = Instant::now() + wait;
            let mut guard = slots.lock.lock().unwrap_or_else(|p| p.into_inner());
            slots.waiters.fetch_add(1, Ordering::SeqCst);
            let taken = loop {
                if slots.try_take() {
                    break true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break false;
                }
                guard = slots.freed.wait_timeout(guard, left).unwrap_or_else(|p| p.into_inner()).0;
            };
            slots.waiters.fetch_sub(1, Ordering::SeqCst);
            if !taken {
                return None;
            }
        }
        Some(OwnedSlot(core.clone()))
    }

    /// The number of slots (0: unbounded).
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    fn release(&self) {
        if !self.bounded {
            return;
        }
        self.available.fetch_add(1, Ordering::SeqCst);
        // A waiter registers under the lock before it looks at `available`,
        // so taking the lock here orders this wake-up after its look.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.freed.notify_one();
        }
    }

    fn try_take(&self) -> bool {
        self.available.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A slot held by a session, for as long as it lives.
pub(crate) struct OwnedSlot(Arc<EngineCore>);

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        self.0.slots.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_holders_than_slots() {
        let slots = Slots::new(2);
        let holders = AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..6 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        let _slot = slots.acquire();
                        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 2, "{now} holders of 2 slots");
                        std::thread::yield_now();
                        holders.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(slots.available.load(Ordering::SeqCst), 2);
    }
}
