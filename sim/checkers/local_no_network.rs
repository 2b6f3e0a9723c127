//! Local mode puts no broker↔coo bytes on the network: while a LogicNode is in Local
//! mode its broker sends no RPC to any coo (seed 000: 本地通信避免网络开销).

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "local_no_network";

#[derive(Default)]
pub struct LocalNoNetwork {
    local: BTreeMap<u64, bool>,
}

impl Checker for LocalNoNetwork {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[
            EventTag::LoopStarted,
            EventTag::LoopStopped,
            EventTag::Recovered,
            EventTag::CooRpcSent,
        ])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        match &event.kind {
            EventKind::LoopStarted { mode } => {
                self.local.insert(event.node, mode == "local");
            }
            EventKind::LoopStopped { mode } if mode == "local" => {
                self.local.insert(event.node, false);
            }
            EventKind::Recovered { .. } => {
                self.local.insert(event.node, false);
            }
            EventKind::CooRpcSent { rpc } if self.local.get(&event.node) == Some(&true) => {
                return Err(violation(
                    NAME,
                    event,
                    format!(
                        "broker {} sent `{rpc}` over the network while in Local mode",
                        event.node
                    ),
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_on_an_rpc_in_local_mode() {
        let mut h = History::default();
        let mut c = LocalNoNetwork::default();
        c.observe_read(&h.push(
            1,
            EventKind::CooRpcSent {
                rpc: "report".into(),
            },
        ))
        .unwrap();
        c.observe_read(&h.push(
            1,
            EventKind::LoopStarted {
                mode: "local".into(),
            },
        ))
        .unwrap();
        let bad = h.push(
            1,
            EventKind::CooRpcSent {
                rpc: "report".into(),
            },
        );
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }
}
