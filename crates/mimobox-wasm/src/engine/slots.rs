//! [`Slots`]: a counting semaphore over the pooled instance slots.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bounds the executions that run at once to the number of pooled slots;
/// the rest wait rather than fail for want of a slot. Taking a free slot is
/// one atomic operation; a caller that waits for one is a future, not a
/// blocked thread.
pub(crate) struct Slots {
    size: u32,
    /// `None` when unbounded (no pool).
    semaphore: Option<Arc<Semaphore>>,
}

/// A slot held until drop: by a one-shot run for its duration, or by a
/// session for as long as it lives.
pub(crate) struct SlotGuard {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Slots {
    /// `size` slots; 0 means unbounded (no pool).
    pub(crate) fn new(size: u32) -> Slots {
        let semaphore = (size > 0).then(|| Arc::new(Semaphore::new(size as usize)));
        Slots { size, semaphore }
    }

    /// Takes a slot, waiting as long as it takes.
    pub(crate) async fn acquire(&self) -> SlotGuard {
        let Some(semaphore) = &self.semaphore else { return SlotGuard { _permit: None } };
        match semaphore.clone().try_acquire_owned() {
            Ok(permit) => SlotGuard { _permit: Some(permit) },
            // The semaphore is never closed.
            Err(_) => SlotGuard { _permit: semaphore.clone().acquire_owned().await.ok() },
        }
    }

    /// Takes a slot, waiting at most `wait`.
    pub(crate) async fn acquire_within(&self, wait: Duration) -> Option<SlotGuard> {
        let Some(semaphore) = &self.semaphore else { return Some(SlotGuard { _permit: None }) };
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Some(SlotGuard { _permit: Some(permit) });
        }
        match tokio::time::timeout(wait, semaphore.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(SlotGuard { _permit: Some(permit) }),
            _ => None,
        }
    }

    /// The number of slots (0: unbounded).
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// The slots free now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.semaphore.as_ref().map_or(usize::MAX, |s| s.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn never_more_holders_than_slots() {
        let slots = Slots::new(2);
        let holders = AtomicU32::new(0);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        std::thread::scope(|scope| {
            for _ in 0..6 {
                scope.spawn(|| {
                    let runtime =
                        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
                    for _ in 0..200 {
                        let _slot = runtime.block_on(slots.acquire());
                        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 2, "{now} holders of 2 slots");
                        std::thread::yield_now();
                        holders.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(slots.available(), 2);
        // With both held, a bounded wait gives up.
        let (a, b) = runtime.block_on(async { (slots.acquire().await, slots.acquire().await) });
        assert!(runtime.block_on(slots.acquire_within(Duration::from_millis(20))).is_none());
        drop((a, b));
        assert!(runtime.block_on(slots.acquire_within(Duration::from_millis(20))).is_some());
    }
}
