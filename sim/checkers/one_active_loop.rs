//! One active loop: a LogicNode runs exactly one communication loop at any instant;
//! a switch stops the old loop before the new one starts (seed 000, "模式切换":
//! 停止当前通信模式 → 清理资源 → 启动新的通信模式).

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "one_active_loop";

#[derive(Default)]
pub struct OneActiveLoop {
    active: BTreeMap<u64, Vec<String>>,
}

impl Checker for OneActiveLoop {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[
            EventTag::LoopStarted,
            EventTag::LoopStopped,
            EventTag::Recovered,
            EventTag::Process,
        ])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let loops = self.active.entry(event.node).or_default();
        match &event.kind {
            EventKind::LoopStarted { mode } => {
                loops.push(mode.clone());
                if loops.len() > 1 {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "logic node {} runs {} loops at once: {loops:?}",
                            event.node,
                            loops.len()
                        ),
                    ));
                }
            }
            EventKind::LoopStopped { mode } => {
                if let Some(at) = loops.iter().position(|m| m == mode) {
                    loops.remove(at);
                }
            }
            // A killed process takes its loops with it (a broker-only host has no
            // Raft to recover: its kill is the harness's record).
            EventKind::Recovered { .. } => loops.clear(),
            EventKind::Process { change } if change == "killed" => loops.clear(),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    fn started(h: &mut History, node: u64, mode: &str) -> TraceEvent {
        h.push(node, EventKind::LoopStarted { mode: mode.into() })
    }

    #[test]
    fn fires_when_the_new_loop_starts_before_the_old_stops() {
        let mut h = History::default();
        let mut c = OneActiveLoop::default();
        c.observe_read(&started(&mut h, 1, "external")).unwrap();
        let bad = started(&mut h, 1, "local");
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn stop_then_start_passes() {
        let mut h = History::default();
        let mut c = OneActiveLoop::default();
        c.observe_read(&started(&mut h, 1, "external")).unwrap();
        c.observe_read(&h.push(
            1,
            EventKind::LoopStopped {
                mode: "external".into(),
            },
        ))
        .unwrap();
        c.observe_read(&started(&mut h, 1, "local")).unwrap();
        c.observe_read(&started(&mut h, 2, "external")).unwrap();
    }

    #[test]
    fn a_killed_process_takes_its_loop_with_it() {
        let mut h = History::default();
        let mut c = OneActiveLoop::default();
        c.observe_read(&started(&mut h, 52, "external")).unwrap();
        let killed = EventKind::Process {
            change: "killed".into(),
        };
        c.observe_read(&h.push(52, killed)).unwrap();
        c.observe_read(&started(&mut h, 52, "external")).unwrap();
    }
}
