//! The simulated clock: madsim's virtual time seen through a per-node offset and
//! drift, with jumps on demand.
//!
//! `now_ms` = origin + local time accumulated at the last change + elapsed virtual
//! time × rate + offset, where rate = 1 + drift_ppm / 10⁶. `sleep(d)` lasts d / rate
//! of virtual time, so a fast clock ticks (and times out) early. A backward jump
//! makes `now_ms` go back, which the stack must tolerate. The origin is far above
//! any jump a scenario draws, so a clock set back really reads earlier times; were
//! it at 0, readings would clamp there and the clock would stand still for as long
//! as the jumps added up to (a fault no real clock has).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use coordlab::seams::clock::{Clock, Sleep};
use tokio::time::Instant;

/// Where every node's clock starts: about a year, in ms.
const ORIGIN_MS: f64 = 31_536_000_000.0;

#[derive(Debug)]
struct ClockState {
    /// Virtual instant of the last rate change.
    since: Instant,
    /// Local milliseconds (without offset) at `since`.
    local_at_since: f64,
    drift_ppm: i64,
    offset_ms: i64,
}

#[derive(Debug)]
pub struct SimClock {
    state: Mutex<ClockState>,
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SimClock {
    pub fn new() -> Self {
        SimClock {
            state: Mutex::new(ClockState {
                since: Instant::now(),
                local_at_since: ORIGIN_MS,
                drift_ppm: 0,
                offset_ms: 0,
            }),
        }
    }

    fn rate(drift_ppm: i64) -> f64 {
        (1.0 + drift_ppm as f64 / 1e6).max(0.01)
    }

    /// Sets the drift (parts per million; +100_000 runs 10% fast).
    pub fn set_drift_ppm(&self, drift_ppm: i64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.local_at_since += (now - s.since).as_secs_f64() * 1000.0 * Self::rate(s.drift_ppm);
        s.since = now;
        s.drift_ppm = drift_ppm;
    }

    /// Moves the clock by `delta_ms` (negative: backwards) at once.
    pub fn jump(&self, delta_ms: i64) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .offset_ms += delta_ms;
    }

    pub fn drift_ppm(&self) -> i64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drift_ppm
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let local = s.local_at_since
            + (Instant::now() - s.since).as_secs_f64() * 1000.0 * Self::rate(s.drift_ppm);
        (local as i64 + s.offset_ms).max(0) as u64
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let rate = Self::rate(self.drift_ppm());
        Box::pin(TimerOnce {
            sleep: Box::pin(tokio::time::sleep(duration.div_f64(rate))),
            waker: None,
        })
    }
}

/// A sleep that asks madsim for one timer per waker, not one per poll. madsim's
/// `Sleep` adds a timer to the scheduler's heap each time it is polled while
/// pending, and timers are never cancelled: the Raft loop's tick, polled again
/// whenever a message wakes the loop, left one timer per message for the
/// scheduler to pop later (the top item of a profile). Polled again by the same
/// task before its deadline, this one answers Pending without touching the
/// inner sleep; its timer already holds a waker for that task.
struct TimerOnce {
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// The waker the pending timer will wake.
    waker: Option<Waker>,
}

impl Future for TimerOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let registered = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if registered && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
