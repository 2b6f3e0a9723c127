//! The series a scrape reads from the node ([`NodeSample`]): Raft's indexes and
//! proposals, the keyspace, watchers, leases and the LogicNode.

use std::sync::atomic::Ordering;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::server::NodeSample;

type ModeLabel = Vec<(&'static str, &'static str)>;

/// The LogicNode's modes, as `coordctl status` names them.
const LOGIC_NODE_MODES: [&str; 2] = ["local", "external"];

pub(super) struct SampledSeries {
    proposals: Counter,
    proposals_forwarded: Counter,
    proposals_failed: Counter,
    proposals_pending: Gauge,
    committed_index: Gauge,
    applied_index: Gauge,
    keys: Gauge,
    keyspace_bytes: Gauge,
    revision: Gauge,
    watchers: Gauge,
    leases: Gauge,
    logic_node_mode: Family<ModeLabel, Gauge>,
    logic_node_switches: Counter,
}

impl SampledSeries {
    pub fn register(registry: &mut Registry) -> Self {
        let series = SampledSeries {
            proposals: Counter::default(),
            proposals_forwarded: Counter::default(),
            proposals_failed: Counter::default(),
            proposals_pending: Gauge::default(),
            committed_index: Gauge::default(),
            applied_index: Gauge::default(),
            keys: Gauge::default(),
            keyspace_bytes: Gauge::default(),
            revision: Gauge::default(),
            watchers: Gauge::default(),
            leases: Gauge::default(),
            logic_node_mode: Family::default(),
            logic_node_switches: Counter::default(),
        };
        let counters = [
            (
                "coordlab_raft_proposals",
                "Proposals this node appended to its log as leader",
                &series.proposals,
            ),
            (
                "coordlab_raft_proposals_forwarded",
                "Proposals this node handed to the leader through Raft as a follower",
                &series.proposals_forwarded,
            ),
            (
                "etcd_server_proposals_failed",
                "Proposals of this node answered with an error (dropped, overwritten by \
                 another leader's entry, timed out, or refused by Raft)",
                &series.proposals_failed,
            ),
            (
                "coordlab_logic_node_mode_switches",
                "Times the LogicNode switched communication mode (--broker only)",
                &series.logic_node_switches,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let gauges = [
            (
                "etcd_server_proposals_pending",
                "Proposals of this node appended and not yet applied",
                &series.proposals_pending,
            ),
            (
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed (this node's commit index)",
                &series.committed_index,
            ),
            (
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied (this node's applied index)",
                &series.applied_index,
            ),
            (
                "coordlab_mvcc_keys",
                "Keys of the etcd keyspace whose latest version is a value",
                &series.keys,
            ),
            (
                "coordlab_mvcc_revision",
                "The keyspace's current revision",
                &series.revision,
            ),
            (
                "coordlab_watchers",
                "etcd watchers registered with this member",
                &series.watchers,
            ),
            (
                "coordlab_leases",
                "Leases granted and not yet revoked or expired",
                &series.leases,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        registry.register_with_unit(
            "coordlab_mvcc_keyspace_size",
            "Bytes of keys and values held in memory, history included (etcd's \
             Status db_size as coordd reports it; not a file's size)",
            Unit::Bytes,
            series.keyspace_bytes.clone(),
        );
        registry.register(
            "coordlab_logic_node_mode",
            "1 for the mode the LogicNode communicates in (local: in-process with the \
             leader coo, external: over gRPC), 0 for the other (--broker only)",
            series.logic_node_mode.clone(),
        );
        series
    }

    pub fn record(&self, sample: &NodeSample) {
        let raft = &sample.raft;
        let set = |gauge: &Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        // The node's own counts since it started: the counters take them as they are.
        let copy = |counter: &Counter, value: u64| counter.inner().store(value, Ordering::Relaxed);
        copy(&self.proposals, raft.proposals.appended);
        copy(&self.proposals_forwarded, raft.proposals.forwarded);
        copy(&self.proposals_failed, raft.proposals.failed);
        set(&self.proposals_pending, raft.proposals.pending);
        set(&self.committed_index, raft.commit_index);
        set(&self.applied_index, raft.applied_index);
        let keyspace = &sample.keyspace;
        set(&self.keys, keyspace.live_keys);
        set(&self.keyspace_bytes, keyspace.size_bytes);
        self.revision.set(keyspace.revision);
        set(&self.watchers, keyspace.watchers);
        set(&self.leases, keyspace.leases);
        if let Some((mode, switches)) = sample.logic_node {
            for name in LOGIC_NODE_MODES {
                let on = i64::from(mode == Some(name));
                self.logic_node_mode
                    .get_or_create(&vec![("mode", name)])
                    .set(on);
            }
            copy(&self.logic_node_switches, switches);
        }
    }
}
