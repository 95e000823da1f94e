//! [`Slots`]: a counting semaphore over the pooled instance slots.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};

/// Bounds the executions that run at once to the number of pooled slots;
/// the rest wait rather than fail for want of a slot. Taking and returning
/// a free slot is one atomic operation; the lock and condition variable are
/// used only when all slots are taken.
pub(crate) struct Slots {
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

    fn try_take(&self) -> bool {
        self.available.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let slots = self.0;
        if !slots.bounded {
            return;
        }
        slots.available.fetch_add(1, Ordering::SeqCst);
        // A waiter registers under the lock before it looks at `available`,
        // so taking the lock here orders this wake-up after its look.
        if slots.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = slots.lock.lock().unwrap_or_else(|p| p.into_inner());
            slots.freed.notify_one();
        }
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
