//! The Clock seam: every timeout, tick and time-based decision reads a node's clock.
//!
//! The real clock is tokio's monotonic clock (madsim's virtual clock inside a
//! simulation). The harness wraps it to add per-node offset, drift and jumps.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A future that completes after a sleep on some node's clock.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A node's view of time.
///
/// Contract: `now_ms` never decreases on the real clock; a faulted (simulated) clock
/// may jump backwards, and callers must tolerate that rather than panic.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds elapsed on this node's clock since an arbitrary origin.
    fn now_ms(&self) -> u64;

    /// Completes once `duration` has passed on this node's clock.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// Elapsed time read from a clock that may jump: forward steps count, backward
/// steps do not. What a component measures with it (a lease's remaining TTL) never
/// rewinds or stands still because the clock was set back, as etcd's lessor measures
/// with Go's monotonic clock; a forward jump still counts, as it does there.
pub struct ForwardOnly {
    clock: Arc<dyn Clock>,
    /// (the clock's last reading, elapsed ms counted so far)
    readings: Mutex<(u64, u64)>,
}

impl ForwardOnly {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let start = clock.now_ms();
        ForwardOnly {
            clock,
            readings: Mutex::new((start, 0)),
        }
    }

    /// Milliseconds elapsed since `new`, never decreasing.
    pub fn now_ms(&self) -> u64 {
        let now = self.clock.now_ms();
        let mut readings = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        let (last, elapsed) = &mut *readings;
        *elapsed += now.saturating_sub(*last);
        *last = now;
        *elapsed
    }

    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.clock.sleep(duration)
    }
}

/// The process's monotonic clock.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    origin: tokio::time::Instant,
}

impl MonotonicClock {
    pub fn new() -> Self {
        MonotonicClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct SetClock(AtomicU64);

    impl Clock for SetClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        fn sleep(&self, duration: Duration) -> Sleep {
            Box::pin(tokio::time::sleep(duration))
        }
    }

    #[test]
    fn forward_only_ignores_backward_jumps_and_counts_forward_ones() {
        let clock = Arc::new(SetClock(AtomicU64::new(100_000)));
        let elapsed = ForwardOnly::new(clock.clone());
        clock.0.store(101_000, Ordering::SeqCst);
        assert_eq!(elapsed.now_ms(), 1_000);
        clock.0.store(40_000, Ordering::SeqCst); // set back a minute
        assert_eq!(elapsed.now_ms(), 1_000);
        clock.0.store(40_500, Ordering::SeqCst);
        assert_eq!(elapsed.now_ms(), 1_500);
        clock.0.store(50_500, Ordering::SeqCst); // set forward 10 s
        assert_eq!(elapsed.now_ms(), 11_500);
    }
}
