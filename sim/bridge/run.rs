//! Starting the bridge's hosts, and ending them: stop the clients, then audit the
//! committed registry history and the members' disks.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use coordlab::client::{Connection, ConnectionConfig};
use madsim::runtime::Handle;
use madsim::task::JoinHandle;

use super::context::{Ctx, HARNESS_NET};
use super::{agent, audit, broker, client, control};
use crate::sim::library::Stop;
use crate::sim::nodes::BuildForRun as _;
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::trace::BridgeEvent;
use crate::sim::world::node_addr;

/// How long the end of the run waits for one client to finish its call.
const CLIENT_EXIT_PATIENCE: Duration = Duration::from_secs(10);

pub struct BridgeRun {
    ctx: Ctx,
    clients: Vec<JoinHandle<()>>,
    handle: Handle,
}

/// Starts the scenario's bridge (None if it has none).
pub fn start(handle: &Handle, scenario: &Scenario, recorder: Arc<Recorder>) -> Option<BridgeRun> {
    let spec = scenario.bridge.clone();
    if !spec.any() {
        return None;
    }
    let ctx = Ctx {
        endpoints: (1..=scenario.cluster.nodes)
            .map(|id| node_addr(id).to_string())
            .collect(),
        spec: spec.clone(),
        recorder,
        stop: Stop::default(),
        serving: Default::default(),
    };
    let brokers = (1..=spec.brokers)
        .map(|k| broker::start(handle, &ctx, k).id())
        .collect();
    let agents = (1..=spec.agents)
        .map(|a| agent::start(handle, &ctx, a).id())
        .collect();
    let clients = (1..=spec.clients)
        .map(|c| client::start(handle, &ctx, c).1)
        .collect();
    let controller = handle
        .create_node()
        .name("bridge-control")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, HARNESS_NET, 1)))
        .build_for_run();
    let window = Duration::from_secs(scenario.duration.safety_secs);
    controller.spawn(control::run(
        ctx.clone(),
        handle.clone(),
        control::Hosts { brokers, agents },
        window,
    ));
    Some(BridgeRun {
        ctx,
        clients,
        handle: handle.clone(),
    })
}

impl BridgeRun {
    /// Ends the workload (once the cluster has healed): stops the clients, waits
    /// for them, then records the audits and `Ended`.
    pub async fn finish(self) {
        self.ctx.stop.stop();
        for client in self.clients {
            let _ = tokio::time::timeout(CLIENT_EXIT_PATIENCE, client).await;
        }
        let auditor = self
            .handle
            .create_node()
            .name("bridge-audit")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, HARNESS_NET, 2)))
            .build_for_run();
        let ctx = self.ctx.clone();
        let _ = auditor
            .spawn(async move {
                let config = ConnectionConfig::new(ctx.endpoints.clone())
                    .until(Duration::from_secs(2), Duration::from_secs(10));
                let conn = Connection::new(config).expect("no credentials to check");
                audit::committed_history(&ctx, &conn).await;
                audit::durable_writes(&ctx, &ctx.recorder.disks());
            })
            .await;
        let spec = &self.ctx.spec;
        self.ctx.record(
            0,
            BridgeEvent::Ended {
                agent_ttl_ms: spec.agent_ttl_ms,
                down_bound_ms: spec.down_bound_ms(),
            },
        );
    }
}
