//! Mode matches leadership: once a node's own view of leadership has been stable for
//! a bound, its LogicNode is in Local mode iff its own coo leads (seed 000: 是
//! leader → 本地通信; 不是 leader → 外部通信).

use std::collections::BTreeMap;

use super::{violation, Checker, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "mode_matches_leadership";

/// How long leadership and mode must both have been stable before a mismatch counts:
/// one watcher period, one report interval and an RPC deadline, with slack.
pub const STABLE_MS: u64 = 5_000;

#[derive(Default, Clone, Copy)]
struct NodeView {
    leads: bool,
    leadership_since: u64,
    /// Some(is_local) while a loop runs.
    local: Option<bool>,
    mode_since: u64,
}

#[derive(Default)]
pub struct ModeMatchesLeadership {
    nodes: BTreeMap<u64, NodeView>,
}

impl Checker for ModeMatchesLeadership {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let t = event.time_ms;
        let view = self.nodes.entry(event.node).or_default();
        match &event.kind {
            EventKind::Role { role, .. } => {
                let leads = role == "leader";
                if leads != view.leads {
                    view.leads = leads;
                    view.leadership_since = t;
                }
            }
            EventKind::LoopStarted { mode } => {
                view.local = Some(mode == "local");
                view.mode_since = t;
            }
            EventKind::Recovered { .. }
            | EventKind::LogicNodeStopped
            | EventKind::Stopped { .. } => {
                *view = NodeView {
                    leadership_since: t,
                    mode_since: t,
                    ..Default::default()
                };
            }
            _ => {}
        }
        for (&node, v) in &self.nodes {
            let Some(local) = v.local else { continue };
            let stable = t.saturating_sub(v.leadership_since) >= STABLE_MS
                && t.saturating_sub(v.mode_since) >= STABLE_MS;
            if stable && local != v.leads {
                let (mode, should) = if local {
                    ("local", "external")
                } else {
                    ("external", "local")
                };
                return Err(violation(
                    NAME,
                    event,
                    format!(
                        "logic node {node} is {mode} although its coo {} leads for {} ms; should be {should}",
                        if v.leads { "" } else { "no longer" },
                        t - v.leadership_since
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_when_a_deposed_leader_stays_local() {
        let mut h = History::default();
        let mut c = ModeMatchesLeadership::default();
        c.observe(&h.role(1, "leader", 2, 1)).unwrap();
        c.observe(&h.push(
            1,
            EventKind::LoopStarted {
                mode: "local".into(),
            },
        ))
        .unwrap();
        c.observe(&h.role(1, "follower", 3, 2)).unwrap();
        let mut late = h.push(
            2,
            EventKind::Fault {
                action: "tick".into(),
            },
        );
        late.time_ms += STABLE_MS + 10;
        assert!(c.observe(&late).is_err());
    }

    #[test]
    fn a_switch_within_the_bound_passes() {
        let mut h = History::default();
        let mut c = ModeMatchesLeadership::default();
        c.observe(&h.role(1, "leader", 2, 1)).unwrap();
        c.observe(&h.push(
            1,
            EventKind::LoopStarted {
                mode: "local".into(),
            },
        ))
        .unwrap();
        c.observe(&h.role(1, "follower", 3, 2)).unwrap();
        c.observe(&h.push(
            1,
            EventKind::LoopStarted {
                mode: "external".into(),
            },
        ))
        .unwrap();
        let mut late = h.push(
            2,
            EventKind::Fault {
                action: "tick".into(),
            },
        );
        late.time_ms += STABLE_MS + 10;
        c.observe(&late).unwrap();
    }
}
