//! The Clock seam: every timeout, tick and time-based decision reads a node's clock.
//!
//! The real clock is tokio's monotonic clock (madsim's virtual clock inside a
//! simulation). The harness wraps it to add per-node offset, drift and jumps.

use std::future::Future;
use std::pin::Pin;
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
