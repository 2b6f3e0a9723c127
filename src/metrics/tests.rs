use std::collections::BTreeMap;
use std::sync::Arc;

use raft::eraftpb::{Entry, Message, MessageType};
use raft::StateRole;

use super::{MetricsObserver, NodeMetrics};
use crate::proto::linkbridge::ClusterMetrics;
use crate::raft::{NodeStatus, ProposalCounts};
use crate::seams::observer::{Event, Observer};
use crate::server::{KeyspaceSample, NodeSample};

/// The value of the sample line `series` (name and labels, as printed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
}

fn sample() -> NodeSample {
    NodeSample {
        raft: NodeStatus {
            id: 1,
            role: StateRole::Leader,
            leader_id: 1,
            term: 3,
            commit_index: 12,
            applied_index: 11,
            first_log_index: 1,
            last_log_index: 12,
            snapshot_index: 0,
            members: BTreeMap::new(),
            learners: Default::default(),
            proposals: ProposalCounts {
                appended: 9,
                forwarded: 5,
                pending: 1,
                failed: 2,
            },
        },
        keyspace: KeyspaceSample {
            live_keys: 4,
            size_bytes: 100,
            revision: 7,
            watchers: 2,
            leases: 1,
        },
        logic_node: Some((Some("external"), 3)),
    }
}

#[test]
fn events_feed_leadership_messages_and_durations() {
    let metrics = Arc::new(NodeMetrics::new(false));
    let observer = MetricsObserver::new(metrics.clone());
    let role = |role, leader_id| Event::RoleChanged {
        role,
        term: 1,
        leader_id,
    };
    // etcd counts a change to a known leader other than the last one: 2, none, 2, 1.
    for (r, leader) in [
        (StateRole::Follower, 2),
        (StateRole::Candidate, 0),
        (StateRole::Follower, 2),
        (StateRole::Leader, 1),
    ] {
        observer.observe(1, &role(r, leader));
    }
    let mut append = Message::default();
    append.set_msg_type(MessageType::MsgAppend);
    observer.observe(1, &Event::Sent { message: &append });
    observer.observe(1, &Event::Sent { message: &append });
    observer.observe(1, &Event::Received { message: &append });
    observer.observe(1, &Event::PersistStarted);
    let persisted = |synced| Event::Persisted {
        hard_state: None,
        entries: &[],
        synced,
    };
    observer.observe(1, &persisted(true));
    observer.observe(1, &Event::PersistStarted);
    observer.observe(1, &persisted(false));
    // A Persisted without its mark (none is open) times nothing.
    observer.observe(1, &persisted(true));
    observer.observe(1, &Event::ApplyStarted { index: 1 });
    observer.observe(
        1,
        &Event::Applied {
            entry: &Entry::default(),
        },
    );

    let text = metrics.encode();
    assert_eq!(value(&text, "etcd_server_has_leader"), Some(1.0));
    assert_eq!(value(&text, "etcd_server_is_leader"), Some(1.0));
    assert_eq!(
        value(&text, "etcd_server_leader_changes_seen_total"),
        Some(3.0)
    );
    let sent = r#"coordlab_raft_messages_sent_total{type="MsgAppend"}"#;
    assert_eq!(value(&text, sent), Some(2.0));
    let received = r#"coordlab_raft_messages_received_total{type="MsgAppend"}"#;
    assert_eq!(value(&text, received), Some(1.0));
    let heartbeats = r#"coordlab_raft_messages_sent_total{type="MsgHeartbeat"}"#;
    assert_eq!(value(&text, heartbeats), Some(0.0), "every type is listed");
    assert_eq!(
        value(&text, "etcd_disk_wal_fsync_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "coordlab_raft_persist_duration_seconds_count"),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "coordlab_raft_apply_duration_seconds_count"),
        Some(1.0)
    );
    assert!(text.contains("# TYPE etcd_disk_wal_fsync_duration_seconds histogram"));
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn a_sample_sets_raft_indexes_keyspace_and_logic_node() {
    let metrics = NodeMetrics::new(false);
    metrics.record_node(&sample());
    let text = metrics.encode();
    for (series, expected) in [
        ("etcd_server_proposals_committed_total", 12.0),
        ("etcd_server_proposals_applied_total", 11.0),
        ("etcd_server_proposals_pending", 1.0),
        ("etcd_server_proposals_failed_total", 2.0),
        ("coordlab_raft_proposals_total", 9.0),
        ("coordlab_raft_proposals_forwarded_total", 5.0),
        ("coordlab_mvcc_keys", 4.0),
        ("coordlab_mvcc_keyspace_size_bytes", 100.0),
        ("coordlab_mvcc_revision", 7.0),
        ("coordlab_watchers", 2.0),
        ("coordlab_leases", 1.0),
        (r#"coordlab_logic_node_mode{mode="external"}"#, 1.0),
        (r#"coordlab_logic_node_mode{mode="local"}"#, 0.0),
        ("coordlab_logic_node_mode_switches_total", 3.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
    assert!(text.contains("# TYPE etcd_server_proposals_committed_total gauge"));
    assert!(text.contains("# TYPE etcd_server_proposals_failed counter"));
    assert!(
        !text.contains("coordlab_bridge_"),
        "no bridge series without the bridge"
    );
}

#[test]
fn bridge_series_follow_the_brokers_cluster_metrics() {
    let metrics = NodeMetrics::new(true);
    let mut cluster = ClusterMetrics {
        leader_id: 2,
        registered_instances: 5,
        leader_uptime_ms: 1_500,
        local_request_latency_us: 250,
        node_states: [("node-1", "follower"), ("node-2", "leader")]
            .into_iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect(),
        ..Default::default()
    };
    metrics.record_bridge(&cluster);
    cluster
        .node_states
        .insert("node-1".into(), "unreachable".into());
    metrics.record_bridge(&cluster);
    let text = metrics.encode();
    assert_eq!(value(&text, "coordlab_bridge_leader_id"), Some(2.0));
    assert_eq!(
        value(&text, "coordlab_bridge_registered_instances"),
        Some(5.0)
    );
    assert_eq!(
        value(&text, "coordlab_bridge_leader_uptime_seconds"),
        Some(1.5)
    );
    assert_eq!(
        value(&text, "coordlab_bridge_request_latency_seconds"),
        Some(0.00025)
    );
    let state =
        |m: &str, s: &str| format!(r#"coordlab_bridge_member_state{{member="{m}",state="{s}"}}"#);
    assert_eq!(value(&text, &state("node-1", "unreachable")), Some(1.0));
    assert_eq!(
        value(&text, &state("node-1", "follower")),
        None,
        "old state gone"
    );
    assert_eq!(value(&text, &state("node-2", "leader")), Some(1.0));
}
