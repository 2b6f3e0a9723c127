//! Starting the flow hosts, and ending them: stop every host, let each check
//! the members' consistency, give the subscribers time to catch up, then audit
//! the members' copies.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use coordlab::client::{Connection, ConnectionConfig};
use coordlab::flow::ServiceContainer;
use madsim::runtime::{Handle, NodeHandle};

use super::audit;
use super::context::{host_name, host_node, Ctx, HARNESS_NET};
use super::host::{self, Host, Stopped};
use crate::sim::library::fenced::FencedResources;
use crate::sim::library::Stop;
use crate::sim::nodes::BuildForRun as _;
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::trace::flow_events::ReportedMember;
use crate::sim::trace::FlowEvent;
use crate::sim::world::node_addr;

/// How long the end of the run waits for one host to finish its operation.
const HOST_EXIT_PATIENCE: Duration = Duration::from_secs(20);
/// How long subscribers get to receive what was published before the end.
const CATCH_UP: Duration = Duration::from_secs(3);

pub struct FlowRun {
    ctx: Ctx,
    hosts: Vec<Host>,
    members: Vec<(u64, String)>,
    handle: Handle,
}

/// Starts the scenario's flow hosts (None if it has none).
pub fn start(handle: &Handle, scenario: &Scenario, recorder: Arc<Recorder>) -> Option<FlowRun> {
    let spec = scenario.flow.clone();
    if !spec.any() {
        return None;
    }
    let members: Vec<(u64, String)> = (1..=scenario.cluster.nodes)
        .map(|id| (id, node_addr(id).to_string()))
        .collect();
    let ctx = Ctx {
        endpoints: members.iter().map(|(_, a)| a.clone()).collect(),
        spec: spec.clone(),
        recorder,
        stop: Stop::default(),
        resources: FencedResources::default(),
    };
    let hosts = (1..=spec.hosts)
        .map(|k| host::start(handle, &ctx, k))
        .collect();
    Some(FlowRun {
        ctx,
        hosts,
        members,
        handle: handle.clone(),
    })
}

impl FlowRun {
    /// Ends the workload (once the cluster has healed): stops the hosts, has each
    /// check consistency, lets subscribers catch up, audits, records `Ended`.
    pub async fn finish(self) {
        self.ctx.stop.stop();
        let mut stopped: Vec<(u64, NodeHandle, Stopped)> = Vec::new();
        for host in self.hosts {
            if let Ok(Ok(Some(s))) = tokio::time::timeout(HOST_EXIT_PATIENCE, host.task).await {
                stopped.push((host.k, host.node, s));
            }
        }
        for (k, node, s) in &stopped {
            let (ctx, k, container) = (self.ctx.clone(), *k, s.container.clone());
            let _ = node.spawn(end_check(ctx, k, container)).await;
        }
        tokio::time::sleep(CATCH_UP).await;
        for (k, _, s) in stopped {
            for r in s.receivers {
                r.task.abort();
                self.ctx.record(
                    host_node(k),
                    FlowEvent::SubscriberEnded {
                        host: host_name(k),
                        topic: r.topic.into(),
                        scope: r.scope.into(),
                        received: r.received.load(Ordering::SeqCst),
                    },
                );
            }
        }
        let auditor = self
            .handle
            .create_node()
            .name("flow-audit")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, HARNESS_NET, 1)))
            .build_for_run();
        let (ctx, members) = (self.ctx.clone(), self.members.clone());
        let _ = auditor
            .spawn(async move {
                let config = ConnectionConfig::new(ctx.endpoints.clone())
                    .until(Duration::from_secs(2), Duration::from_secs(10));
                let conn = Connection::new(config).expect("no credentials to check");
                audit::member_copies(&ctx, &conn, &members).await;
            })
            .await;
        self.ctx.record(0, FlowEvent::Ended);
    }
}

/// `force_sync`, then `check_consistency`, recorded.
async fn end_check(ctx: Ctx, k: u64, container: ServiceContainer) {
    let sync = &container.state_sync;
    let checked = match sync.force_sync().await {
        Ok(()) => sync.check_consistency().await,
        Err(e) => Err(e),
    };
    let event = match checked {
        Ok(report) => FlowEvent::ConsistencyChecked {
            host: host_name(k),
            consistent: report.consistent,
            members: report
                .members
                .into_iter()
                .map(|m| ReportedMember {
                    member: m.node_id.to_string(),
                    revision: m.revision,
                    state_hash: m.state_hash,
                })
                .collect(),
            error: None,
        },
        Err(e) => FlowEvent::ConsistencyChecked {
            host: host_name(k),
            consistent: false,
            members: Vec::new(),
            error: Some(e.to_string()),
        },
    };
    ctx.record(host_node(k), event);
}
