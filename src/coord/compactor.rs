//! Auto-compaction of the MVCC history, as etcd's `--auto-compaction-mode` and
//! `--auto-compaction-retention` do it. Only the leader proposes a `Compaction`
//! (every member applies it from the log); a member that does not lead forgets
//! what it sampled, as etcd pauses its compactor on followers.
//!
//! - `revision` N: every 5 minutes, compact to the current revision minus N.
//! - `periodic` D: sample the revision every tenth of D (of an hour when D is
//!   longer), and every ten samples compact to the revision sampled D ago, so the
//!   last D of history stays readable.
//!
//! Without it the history, every snapshot and the memory grow with every write
//! until a client compacts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::forward::Proposer;
use super::state::SharedCoordState;
use crate::proto::coord_command::Op;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::proto::CoordCommand;

/// How often revision mode looks (etcd's `revInterval`).
const REVISION_MODE_CHECK: Duration = Duration::from_secs(5 * 60);
/// Periodic mode samples this many times per compaction.
const SAMPLES_PER_COMPACTION: u32 = 10;

/// How much history auto-compaction keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// The last `n` revisions.
    Revision(i64),
    /// The history of the last `period`.
    Periodic(Duration),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AutoCompactionError {
    #[error("--auto-compaction-mode: expected `periodic` or `revision`, got {0:?}")]
    Mode(String),
    #[error("--auto-compaction-retention: {0:?} is not a number of revisions")]
    Revisions(String),
    #[error(
        "--auto-compaction-retention: {0:?} is neither hours nor a duration of 1s or more (`1h`, `30m`, `90s`)"
    )]
    Period(String),
}

impl AutoCompaction {
    /// Reads etcd's two flags: `None` when the retention is zero (off, etcd's
    /// default). A periodic retention is a whole number of hours or a duration.
    pub fn parse(mode: &str, retention: &str) -> Result<Option<Self>, AutoCompactionError> {
        let retention = retention.trim();
        match mode {
            "revision" => {
                let n: i64 = retention
                    .parse()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| AutoCompactionError::Revisions(retention.to_string()))?;
                Ok((n > 0).then_some(AutoCompaction::Revision(n)))
            }
            "periodic" => {
                let period = match retention.parse::<u64>() {
                    Ok(hours) => Duration::from_secs(hours * 3600),
                    Err(_) => humantime::parse_duration(retention)
                        .map_err(|_| AutoCompactionError::Period(retention.to_string()))?,
                };
                if !period.is_zero() && period < Duration::from_secs(1) {
                    return Err(AutoCompactionError::Period(retention.to_string()));
                }
                Ok((!period.is_zero()).then_some(AutoCompaction::Periodic(period)))
            }
            other => Err(AutoCompactionError::Mode(other.to_string())),
        }
    }
}

/// When to compact and to which revision, step by step (no clock, no I/O).
#[derive(Debug)]
pub struct Schedule {
    policy: AutoCompaction,
    /// Periodic mode: the revisions sampled, oldest first, one step apart.
    samples: VecDeque<i64>,
    /// Periodic mode: steps since the last compaction.
    steps: u32,
}

impl Schedule {
    pub fn new(policy: AutoCompaction) -> Self {
        Schedule {
            policy,
            samples: VecDeque::new(),
            steps: 0,
        }
    }

    /// How long to wait between steps.
    pub fn step_interval(&self) -> Duration {
        match self.policy {
            AutoCompaction::Revision(_) => REVISION_MODE_CHECK,
            AutoCompaction::Periodic(period) => {
                period.min(Duration::from_secs(3600)) / SAMPLES_PER_COMPACTION
            }
        }
    }

    /// Forgets what was sampled (this member stopped leading).
    pub fn pause(&mut self) {
        self.samples.clear();
        self.steps = 0;
    }

    /// One step, with the store's current and compacted revisions: the revision to
    /// compact to, if one is due and newer than the compacted one.
    pub fn step(&mut self, revision: i64, compacted: i64) -> Option<i64> {
        let target = match self.policy {
            AutoCompaction::Revision(keep) => revision - keep,
            AutoCompaction::Periodic(period) => {
                // D ago is this many steps back: D / interval + 1 samples in all.
                let window =
                    (period.as_millis() / self.step_interval().as_millis().max(1)) as usize + 1;
                self.samples.push_back(revision);
                if self.samples.len() > window {
                    self.samples.pop_front();
                }
                self.steps += 1;
                if self.steps < SAMPLES_PER_COMPACTION || self.samples.len() < window {
                    return None;
                }
                self.steps = 0;
                if crate::seams::mutants::active("compactor_keeps_nothing") {
                    revision
                } else {
                    *self.samples.front().expect("a full window")
                }
            }
        };
        (target > compacted && target > 0).then_some(target)
    }
}

/// Compacts while this member leads, until the task is aborted.
pub async fn run_auto_compactor(
    policy: AutoCompaction,
    proposer: Arc<Proposer>,
    state: SharedCoordState,
) {
    let mut schedule = Schedule::new(policy);
    let clock = proposer.shared_clock();
    tracing::info!(?policy, "auto-compaction on");
    loop {
        clock.sleep(schedule.step_interval()).await;
        if !proposer.handle().leader().is_self {
            if crate::seams::mutants::active("compactor_quits_on_followers") {
                return;
            }
            schedule.pause();
            continue;
        }
        let (revision, compacted) = {
            let state = state.lock();
            (state.mvcc.revision(), state.mvcc.compact_revision())
        };
        let Some(target) = schedule.step(revision, compacted) else {
            continue;
        };
        let cmd = CoordCommand {
            op: Some(Op::Compaction(CompactionRequest {
                revision: target,
                physical: false,
            })),
            ..Default::default()
        };
        match proposer.propose(cmd).await {
            Ok(_) => tracing::info!(revision = target, "auto-compacted"),
            Err(e) => tracing::warn!(revision = target, error = %e, "auto-compaction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_flags_parse_and_zero_is_off() {
        let parse = AutoCompaction::parse;
        assert_eq!(parse("periodic", "0"), Ok(None));
        assert_eq!(parse("periodic", "0s"), Ok(None));
        assert_eq!(parse("revision", "0"), Ok(None));
        assert_eq!(
            parse("periodic", "2"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(7200))))
        );
        assert_eq!(
            parse("periodic", "30m"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(1800))))
        );
        assert_eq!(
            parse("revision", "1000"),
            Ok(Some(AutoCompaction::Revision(1000)))
        );
        assert_eq!(
            parse("hourly", "1"),
            Err(AutoCompactionError::Mode("hourly".into()))
        );
        assert_eq!(
            parse("revision", "1h"),
            Err(AutoCompactionError::Revisions("1h".into()))
        );
        assert_eq!(
            parse("revision", "-5"),
            Err(AutoCompactionError::Revisions("-5".into()))
        );
        assert_eq!(
            parse("periodic", "10ms"),
            Err(AutoCompactionError::Period("10ms".into()))
        );
        assert_eq!(
            parse("periodic", "soon"),
            Err(AutoCompactionError::Period("soon".into()))
        );
    }

    #[test]
    fn revision_mode_keeps_the_last_n_revisions() {
        let mut s = Schedule::new(AutoCompaction::Revision(100));
        assert_eq!(s.step_interval(), Duration::from_secs(300));
        assert_eq!(s.step(50, 0), None, "not 100 revisions yet");
        assert_eq!(s.step(250, 0), Some(150));
        assert_eq!(s.step(250, 150), None, "already compacted there");
        assert_eq!(s.step(400, 150), Some(300));
    }

    #[test]
    fn periodic_mode_compacts_to_the_revision_of_one_period_ago() {
        let period = Duration::from_secs(600);
        let mut s = Schedule::new(AutoCompaction::Periodic(period));
        assert_eq!(s.step_interval(), Duration::from_secs(60));
        // A write every second: the revision at step k (a minute each) is 60k + 1.
        let revision_at = |k: i64| 60 * k + 1;
        let mut compactions = Vec::new();
        let mut compacted = 0;
        for k in 0..=30 {
            if let Some(target) = s.step(revision_at(k), compacted) {
                compactions.push((k, target));
                compacted = target;
            }
        }
        // First once a whole period was seen, then every ten steps, each time
        // to the revision sampled ten steps (the period) before.
        assert_eq!(
            compactions,
            vec![
                (10, revision_at(0)),
                (20, revision_at(10)),
                (30, revision_at(20))
            ]
        );
    }

    #[test]
    fn a_long_period_compacts_hourly_and_keeps_the_whole_period() {
        let mut s = Schedule::new(AutoCompaction::Periodic(Duration::from_secs(3 * 3600)));
        assert_eq!(s.step_interval(), Duration::from_secs(360));
        let mut compactions = Vec::new();
        for k in 0..=40 {
            if let Some(target) = s.step(k + 1, 0) {
                compactions.push((k, target));
            }
        }
        // 3 h is 30 steps: the first compaction comes at step 30, to step 0's
        // revision, then hourly (every 10 steps), each keeping 3 h.
        assert_eq!(compactions, vec![(30, 1), (40, 11)]);
    }

    #[test]
    fn a_member_that_stops_leading_starts_sampling_afresh() {
        let mut s = Schedule::new(AutoCompaction::Periodic(Duration::from_secs(10)));
        for k in 0..10 {
            assert_eq!(s.step(k + 1, 0), None);
        }
        s.pause();
        for k in 0..10 {
            assert_eq!(s.step(100 + k, 0), None, "step {k} after the pause");
        }
        assert_eq!(s.step(200, 0), Some(100));
    }
}
