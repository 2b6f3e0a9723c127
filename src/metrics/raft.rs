//! The series the Raft core's events feed (see [`super::MetricsObserver`]).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use protobuf::ProtobufEnum;
use raft::eraftpb::MessageType;

type TypeLabel = Vec<(&'static str, String)>;

pub(super) struct RaftSeries {
    /// By `MessageType as usize`: each type's counter, created up front so a
    /// message costs one atomic add.
    pub sent: Vec<Counter>,
    pub received: Vec<Counter>,
    pub persist_seconds: Histogram,
    pub wal_fsync_seconds: Histogram,
    pub apply_seconds: Histogram,
    pub has_leader: Gauge,
    pub is_leader: Gauge,
    pub leader_changes: Counter,
}

impl RaftSeries {
    pub fn register(registry: &mut Registry) -> Self {
        let sent = Family::<TypeLabel, Counter>::default();
        let received = Family::<TypeLabel, Counter>::default();
        let by_type = |family: &Family<TypeLabel, Counter>| -> Vec<Counter> {
            MessageType::values()
                .iter()
                .map(|t| {
                    family
                        .get_or_create(&vec![("type", format!("{t:?}"))])
                        .clone()
                })
                .collect()
        };
        let series = RaftSeries {
            sent: by_type(&sent),
            received: by_type(&received),
            // 100 µs .. ~3.3 s, as etcd's disk histograms reach.
            persist_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            // etcd's buckets for etcd_disk_wal_fsync_duration_seconds: 1 ms .. ~8 s.
            wal_fsync_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            // etcd's for etcd_server_apply_duration_seconds: 100 µs .. ~52 s.
            apply_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 20)),
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            leader_changes: Counter::default(),
        };
        registry.register(
            "coordlab_raft_messages_sent",
            "Raft messages this node handed to its transport, by message type",
            sent,
        );
        registry.register(
            "coordlab_raft_messages_received",
            "Raft messages stepped into this node's Raft, by message type",
            received,
        );
        registry.register_with_unit(
            "coordlab_raft_persist_duration",
            "Time to write one batch of log entries and HardState (synced or not)",
            Unit::Seconds,
            series.persist_seconds.clone(),
        );
        registry.register_with_unit(
            "etcd_disk_wal_fsync_duration",
            "Time to write and fsync one synced WAL batch (etcd times the fsync alone)",
            Unit::Seconds,
            series.wal_fsync_seconds.clone(),
        );
        registry.register_with_unit(
            "coordlab_raft_apply_duration",
            "Time to apply one committed entry to the state machine",
            Unit::Seconds,
            series.apply_seconds.clone(),
        );
        registry.register(
            "etcd_server_has_leader",
            "Whether a leader exists: 1 is existence, 0 is not",
            series.has_leader.clone(),
        );
        registry.register(
            "etcd_server_is_leader",
            "Whether this member is the leader: 1 if it is, 0 otherwise",
            series.is_leader.clone(),
        );
        registry.register(
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen",
            series.leader_changes.clone(),
        );
        series
    }

    /// The counter of `message_type` in `counters` (a type raft-rs added later
    /// than this list is not counted).
    pub fn of(counters: &[Counter], message_type: MessageType) -> Option<&Counter> {
        counters.get(message_type as usize)
    }
}
