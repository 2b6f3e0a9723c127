//! [`StreamWindow`]: the sender's bookkeeping for one open Raft message stream.
//!
//! No I/O and no clock: the peer sender feeds it what happened (a batch written, an
//! acknowledgement read, a liveness tick) and does what it answers. The protocol it
//! keeps (proto/coordlab.proto, `RaftTransport`):
//!
//! - batches are numbered 1, 2, 3, … within a stream and written without waiting;
//! - the receiver acknowledges a batch when the batch asks for it, and rejects
//!   (acknowledges with `accepted = false`) every batch it could not hand to its
//!   node, asked or not; acknowledgements come in batch order;
//! - an acknowledgement of batch `n` settles every batch up to `n`: each one is
//!   accepted unless the receiver rejected it (an earlier, explicit rejection).
//!
//! A batch asks for an acknowledgement when it carries a snapshot (a snapshot
//! counts as sent only once the receiver has accepted it), when a liveness tick
//! asked for a probe, and at least every `window / 2` batches (so the window always
//! reopens). At each tick the window looks at the newest request that was waiting
//! at the previous tick: if it is still unanswered, the stream is dead (open but
//! silent: a partition, a paused or overloaded peer).

use std::collections::VecDeque;

/// What the sender should do after a liveness tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Keep the stream and tick again.
    Continue,
    /// Nothing unanswered and no traffic since the last tick: stop ticking until
    /// the next batch.
    Idle,
    /// A requested acknowledgement did not come within a tick period: drop the
    /// stream and reconnect.
    Dead,
}

/// What an acknowledgement settled.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The acknowledged batch was rejected by the receiver.
    pub rejected: bool,
    /// Snapshot messages accepted by the receiver.
    pub snapshots_accepted: usize,
    /// Snapshot messages the receiver rejected.
    pub snapshots_rejected: usize,
}

/// An acknowledgement that the protocol does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("acknowledgement of batch {seq} while batches {acked}..={sent} were settled/sent")]
pub struct UnexpectedAck {
    pub seq: u64,
    pub acked: u64,
    pub sent: u64,
}

/// Unsettled batches of one stream.
#[derive(Debug)]
pub struct StreamWindow {
    /// Most batches written and not yet settled.
    capacity: u64,
    /// Ticks a request covering a snapshot may stay unanswered (a big snapshot takes
    /// a while to arrive and be handed over); other requests get one.
    snapshot_ticks: u32,
    /// The last batch written (0: none).
    sent: u64,
    /// Every batch up to here is settled.
    acked: u64,
    /// The newest batch that asked for an acknowledgement.
    requested: u64,
    /// The request the liveness check waits for, and the ticks it has waited.
    watched: Option<(u64, u32)>,
    /// The next batch asks for an acknowledgement.
    probe_due: bool,
    /// A batch was written since the last tick.
    active: bool,
    /// Unsettled batches that carry snapshots: (batch, snapshot messages).
    snapshots: VecDeque<(u64, usize)>,
}

impl StreamWindow {
    /// A new stream's window; its first batch asks for an acknowledgement, so a
    /// peer that accepts the stream but never answers is found at once.
    pub fn new(capacity: u64, snapshot_ticks: u32) -> Self {
        assert!(
            capacity >= 2,
            "a window needs room for a request and one more"
        );
        StreamWindow {
            capacity,
            snapshot_ticks: snapshot_ticks.max(1),
            sent: 0,
            acked: 0,
            requested: 0,
            watched: None,
            probe_due: true,
            active: false,
            snapshots: VecDeque::new(),
        }
    }

    /// Whether another batch may be written.
    pub fn has_room(&self) -> bool {
        self.sent - self.acked < self.capacity
    }

    /// Whether any batch was acknowledged on this stream (it was alive).
    pub fn any_acked(&self) -> bool {
        self.acked > 0
    }

    /// Numbers the next batch, which carries `snapshots` snapshot messages; returns
    /// its sequence number and whether it asks for an acknowledgement.
    pub fn write_batch(&mut self, snapshots: usize) -> (u64, bool) {
        debug_assert!(self.has_room(), "a batch written into a full window");
        self.sent += 1;
        let seq = self.sent;
        let ask = snapshots > 0 || self.probe_due || seq >= self.requested + self.capacity / 2;
        if ask {
            self.requested = seq;
            self.probe_due = false;
        }
        if snapshots > 0 {
            self.snapshots.push_back((seq, snapshots));
        }
        self.active = true;
        (seq, ask)
    }

    /// An acknowledgement of batch `seq` arrived.
    pub fn receive_ack(&mut self, seq: u64, accepted: bool) -> Result<Settled, UnexpectedAck> {
        if seq <= self.acked || seq > self.sent {
            return Err(UnexpectedAck {
                seq,
                acked: self.acked,
                sent: self.sent,
            });
        }
        self.acked = seq;
        let mut settled = Settled {
            rejected: !accepted,
            ..Settled::default()
        };
        while let Some(&(batch, count)) = self.snapshots.front() {
            if batch > seq {
                break;
            }
            self.snapshots.pop_front();
            if batch == seq && !accepted {
                settled.snapshots_rejected += count;
            } else {
                settled.snapshots_accepted += count;
            }
        }
        Ok(settled)
    }

    /// A tick period passed.
    pub fn tick(&mut self) -> Tick {
        if let Some((request, waited)) = self.watched {
            if self.acked < request {
                let waited = waited + 1;
                let allowed = if self.snapshot_unsettled_up_to(request) {
                    self.snapshot_ticks
                } else {
                    1
                };
                if waited >= allowed {
                    return Tick::Dead;
                }
                self.watched = Some((request, waited));
                return Tick::Continue;
            }
        }
        let was_active = std::mem::take(&mut self.active);
        if self.requested > self.acked {
            self.watched = Some((self.requested, 0));
            Tick::Continue
        } else {
            self.watched = None;
            // Traffic or not, the next batch proves the stream is still alive.
            self.probe_due = true;
            if was_active {
                Tick::Continue
            } else {
                Tick::Idle
            }
        }
    }

    /// The stream failed: how many snapshot messages it leaves undelivered.
    pub fn unsettled_snapshots(&self) -> usize {
        self.snapshots.iter().map(|(_, count)| count).sum()
    }

    fn snapshot_unsettled_up_to(&self, seq: u64) -> bool {
        self.snapshots
            .front()
            .is_some_and(|&(batch, _)| batch <= seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_batch_asks_and_later_ones_ask_again_at_half_the_window() {
        let mut w = StreamWindow::new(8, 3);
        assert_eq!(w.write_batch(0), (1, true));
        for seq in 2..5 {
            assert_eq!(w.write_batch(0), (seq, false));
        }
        assert_eq!(w.write_batch(0), (5, true), "1 + 8/2");
        assert!(w.has_room());
        for _ in 6..=8 {
            w.write_batch(0);
        }
        assert!(!w.has_room(), "8 unsettled batches fill a window of 8");
        assert_eq!(w.receive_ack(5, true), Ok(Settled::default()));
        assert!(w.has_room());
    }

    /// The receiver answers only batches that ask, as late as it may: whenever the
    /// window is full, an asked batch is among the unsettled ones, so its answer
    /// reopens the window. Without the periodic request a stream that runs without
    /// ticks would fill its window and never settle.
    #[test]
    fn a_full_window_always_holds_a_request_whose_answer_reopens_it() {
        for capacity in 2..=10 {
            let mut w = StreamWindow::new(capacity, 3);
            let mut asked = VecDeque::new();
            let mut written = 0;
            while written < 500 {
                if w.has_room() {
                    let (seq, ask) = w.write_batch(0);
                    if ask {
                        asked.push_back(seq);
                    }
                    written += 1;
                    continue;
                }
                let seq = asked.pop_front().unwrap_or_else(|| {
                    panic!("a window of {capacity} is full and no batch in it asked")
                });
                assert_eq!(w.receive_ack(seq, true), Ok(Settled::default()));
            }
        }
    }

    #[test]
    fn a_snapshot_asks_for_an_acknowledgement_and_is_settled_by_it() {
        let mut w = StreamWindow::new(64, 3);
        w.write_batch(0);
        assert_eq!(w.write_batch(1), (2, true));
        assert_eq!(w.write_batch(0), (3, false));
        let settled = w.receive_ack(2, true).unwrap();
        assert_eq!(settled.snapshots_accepted, 1);
        assert_eq!(w.unsettled_snapshots(), 0);
    }

    #[test]
    fn a_rejected_snapshot_batch_is_reported_as_not_accepted() {
        let mut w = StreamWindow::new(64, 3);
        w.write_batch(2);
        let settled = w.receive_ack(1, false).unwrap();
        assert!(settled.rejected);
        assert_eq!(settled.snapshots_rejected, 2);
        assert_eq!(settled.snapshots_accepted, 0);
    }

    #[test]
    fn an_acknowledgement_vouches_for_earlier_batches_it_did_not_reject() {
        let mut w = StreamWindow::new(64, 3);
        w.write_batch(1); // 1 asks
        w.write_batch(0);
        let settled = w.receive_ack(2, false).unwrap();
        assert!(settled.rejected, "batch 2 itself was rejected");
        assert_eq!(settled.snapshots_accepted, 1, "batch 1 was not rejected");
    }

    #[test]
    fn acknowledgements_out_of_order_or_of_unsent_batches_are_refused() {
        let mut w = StreamWindow::new(64, 3);
        w.write_batch(0);
        w.write_batch(0);
        assert!(w.receive_ack(3, true).is_err(), "never sent");
        w.receive_ack(2, true).unwrap();
        assert!(w.receive_ack(1, true).is_err(), "already settled");
        assert!(w.receive_ack(2, true).is_err(), "twice");
    }

    #[test]
    fn a_request_unanswered_for_a_whole_tick_means_the_stream_is_dead() {
        let mut w = StreamWindow::new(64, 3);
        w.write_batch(0); // asks
        assert_eq!(w.tick(), Tick::Continue, "the request starts being watched");
        w.write_batch(0);
        assert_eq!(w.tick(), Tick::Dead);
    }

    #[test]
    fn an_answered_stream_stays_alive_and_probes_once_per_tick() {
        let mut w = StreamWindow::new(64, 3);
        assert!(w.write_batch(0).1);
        assert_eq!(w.tick(), Tick::Continue);
        w.receive_ack(1, true).unwrap();
        assert!(!w.write_batch(0).1, "a probe is due only after a tick");
        assert_eq!(w.tick(), Tick::Continue, "batch 1's answer came in time");
        assert!(w.write_batch(0).1, "the tick asked for a probe");
        assert!(!w.write_batch(0).1);
        assert_eq!(w.tick(), Tick::Continue, "batch 3 is now watched");
        w.receive_ack(3, true).unwrap();
        assert_eq!(w.tick(), Tick::Idle, "batch 3 answered, nothing sent since");
        assert!(w.write_batch(0).1, "the first batch after a pause probes");
    }

    #[test]
    fn a_snapshot_may_take_several_ticks_to_be_acknowledged() {
        let mut w = StreamWindow::new(64, 3);
        w.write_batch(1);
        assert_eq!(w.tick(), Tick::Continue);
        assert_eq!(w.tick(), Tick::Continue, "1 of 3 ticks");
        assert_eq!(w.tick(), Tick::Continue, "2 of 3 ticks");
        assert_eq!(w.tick(), Tick::Dead);
        assert_eq!(w.unsettled_snapshots(), 1);
    }
}
