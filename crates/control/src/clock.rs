//! The control plane's clock: the wall clock plus an offset that only code holding the clock can
//! move. Backup retention runs on it, so a test can end a retention period without waiting; the
//! operator sweeps at once when the clock is moved. No listener moves it: there is no door to it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The clock. Cheap to clone: the clones share one offset.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

struct Inner {
    offset_ms: AtomicI64,
    /// Told the offset after each move, so whoever waits on a deadline looks again.
    moved: watch::Sender<i64>,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock {
            inner: Arc::new(Inner {
                offset_ms: AtomicI64::new(0),
                moved: watch::Sender::new(0),
            }),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("offset_ms", &self.inner.offset_ms.load(Ordering::Relaxed))
            .finish()
    }
}

impl Clock {
    /// Milliseconds since the Unix epoch on this clock.
    pub fn now_ms(&self) -> i64 {
        keyward_storage::vocab::now_ms() + self.inner.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves the clock forward by `by`; whatever became due (a retention that ended) is done
    /// soon after.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let offset = self
            .inner
            .offset_ms
            .fetch_add(by, Ordering::Relaxed)
            .saturating_add(by);
        self.inner.moved.send_replace(offset);
    }

    /// A receiver that sees every move of the clock.
    pub(crate) fn moves(&self) -> watch::Receiver<i64> {
        self.inner.moved.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone_and_tells_the_watchers() {
        let clock = Clock::default();
        let clone = clock.clone();
        let mut moves = clock.moves();
        let before = clock.now_ms();
        clone.advance(Duration::from_secs(86_400));
        assert!(clock.now_ms() >= before + 86_400_000);
        assert!(moves.has_changed().unwrap());
        assert_eq!(*moves.borrow_and_update(), 86_400_000);
    }
}
