//! The bridge broker's `ClusterMetrics` (`coordctl bridge status`), as series.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::proto::linkbridge::ClusterMetrics;

type MemberLabel = Vec<(&'static str, String)>;

pub(super) struct BridgeSeries {
    /// One gauge per entry of [`NUMBERS`], in its order.
    gauges: Vec<Gauge>,
    leader_uptime_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    request_latency_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    member_state: Family<MemberLabel, Gauge>,
}

/// The plain numbers of `ClusterMetrics`: (name, help, read).
type Number = (&'static str, &'static str, fn(&ClusterMetrics) -> i64);

const NUMBERS: &[Number] = &[
    (
        "leader_id",
        "The leader's id as the broker last saw it (0: none)",
        |m| m.leader_id as i64,
    ),
    (
        "raft_term",
        "The Raft term as the broker last saw it",
        |m| m.raft_term as i64,
    ),
    (
        "raft_index",
        "The cluster's commit index as the broker last saw it",
        |m| m.raft_index as i64,
    ),
    (
        "raft_applied_index",
        "The applied index as the broker last saw it",
        |m| m.raft_applied_index as i64,
    ),
    (
        "registry_revision",
        "The revision of the broker's view of the registry",
        |m| m.registry_revision,
    ),
    ("registered_services", "Services in the registry", |m| {
        m.registered_services.into()
    }),
    (
        "registered_instances",
        "Service instances in the registry",
        |m| m.registered_instances.into(),
    ),
    (
        "connected_agents",
        "Agents the registry shows connected, to any broker",
        |m| m.connected_agents.into(),
    ),
    (
        "local_connected_clients",
        "Clients connected to this broker",
        |m| m.local_connected_clients.into(),
    ),
    (
        "local_connected_agents",
        "Agents connected to this broker",
        |m| m.local_connected_agents.into(),
    ),
];

impl BridgeSeries {
    pub fn register(registry: &mut Registry) -> Self {
        let series = BridgeSeries {
            gauges: NUMBERS.iter().map(|_| Gauge::default()).collect(),
            leader_uptime_seconds: Gauge::default(),
            request_latency_seconds: Gauge::default(),
            member_state: Family::default(),
        };
        for ((name, help, _), gauge) in NUMBERS.iter().zip(&series.gauges) {
            registry.register(format!("coordlab_bridge_{name}"), *help, gauge.clone());
        }
        registry.register_with_unit(
            "coordlab_bridge_leader_uptime",
            "How long the leader has led in this term, as the broker has seen it",
            Unit::Seconds,
            series.leader_uptime_seconds.clone(),
        );
        registry.register_with_unit(
            "coordlab_bridge_request_latency",
            "Mean latency of the broker's recent requests to the cluster",
            Unit::Seconds,
            series.request_latency_seconds.clone(),
        );
        registry.register(
            "coordlab_bridge_member_state",
            "1 for each member's state as the broker asked it (leader, follower, \
             learner, unreachable, not started)",
            series.member_state.clone(),
        );
        series
    }

    pub fn record(&self, m: &ClusterMetrics) {
        for ((_, _, read), gauge) in NUMBERS.iter().zip(&self.gauges) {
            gauge.set(read(m));
        }
        self.leader_uptime_seconds
            .set(m.leader_uptime_ms as f64 / 1_000.0);
        self.request_latency_seconds
            .set(m.local_request_latency_us as f64 / 1_000_000.0);
        // A member's old state must not linger beside its new one.
        self.member_state.clear();
        for (member, state) in &m.node_states {
            self.member_state
                .get_or_create(&vec![("member", member.clone()), ("state", state.clone())])
                .set(1);
        }
    }
}
