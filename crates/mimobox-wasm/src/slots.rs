//! [`Slots`]: a counting semaphore over the pooled instance slots.

use std::sync::{Condvar, Mutex};

/// Bounds the executions that run at once to the number of pooled slots;
/// the rest wait rather than fail for want of a slot.
pub(crate) struct Slots {
    free: Option<(Mutex<u32>, Condvar)>,
}

pub(crate) struct SlotGuard<'a>(&'a Slots);

impl Slots {
    pub(crate) fn new(size: u32) -> Slots {
        Slots { free: (size > 0).then(|| (Mutex::new(size), Condvar::new())) }
    }

    pub(crate) fn acquire(&self) -> SlotGuard<'_> {
        if let Some((free, available)) = &self.free {
            let mut free = free.lock().unwrap_or_else(|p| p.into_inner());
            while *free == 0 {
                free = available.wait(free).unwrap_or_else(|p| p.into_inner());
            }
            *free -= 1;
        }
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if let Some((free, available)) = &self.0.free {
            *free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            available.notify_one();
        }
    }
}
