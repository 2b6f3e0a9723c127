//! Where the Raft services keep things in the cluster's keyspace (all under
//! `/flow/`, so an etcd user sees them with `etcdctl get --prefix /flow/`).
//! Numbers are zero-padded to 20 digits so key order is numeric order.

use crate::flow::types::NodeId;

pub const ROOT: &str = "/flow/";

/// `/flow/proposals/<origin>/<sequence>`: one decided proposal.
pub fn proposals_of(origin: &NodeId) -> String {
    format!("{ROOT}proposals/{origin}/")
}

pub fn proposal(origin: &NodeId, sequence: u64) -> String {
    format!("{}{sequence:020}", proposals_of(origin))
}

/// `/flow/changes/<n>`: the n-th state change, from 1.
pub const CHANGES: &str = "/flow/changes/";

pub fn change(n: u64) -> String {
    format!("{CHANGES}{n:020}")
}

/// `/flow/nodes/live/<id>`: a registration, on its registrar's lease.
pub const LIVE_NODES: &str = "/flow/nodes/live/";
/// `/flow/nodes/known/<id>`: every node ever registered (no lease), so a node
/// whose registration ended is `Offline`, not unknown.
pub const KNOWN_NODES: &str = "/flow/nodes/known/";

pub fn live_node(id: &NodeId) -> String {
    format!("{LIVE_NODES}{id}")
}

pub fn known_node(id: &NodeId) -> String {
    format!("{KNOWN_NODES}{id}")
}

/// Every broadcast is a put of this one key: a watch sees each put, in order.
pub const MESSAGES: &str = "/flow/messages";

/// `/flow/events/<topic>`: each cluster event is a put of its topic's key.
pub fn event_topic(topic: &str) -> String {
    format!("{ROOT}events/{topic}")
}

/// `/flow/locks/<resource>`: the lock's name in etcd's lock protocol.
pub const LOCKS: &str = "/flow/locks/";

pub fn lock(resource: &str) -> String {
    format!("{LOCKS}{resource}")
}

/// `/flow/lock-holders/<lease hex>`: the node holding (or waiting for) a lock on
/// that lease, on the lease itself.
pub fn lock_holder(lease: i64) -> String {
    format!("{ROOT}lock-holders/{lease:x}")
}

/// The sequence number ending a zero-padded key.
pub fn number_at_end(key: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(key).ok()?;
    text.rsplit('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_keys_sort_numerically_and_parse_back() {
        assert!(change(9) < change(10));
        assert_eq!(number_at_end(change(42).as_bytes()), Some(42));
        let origin = NodeId::from("rack/a");
        assert_eq!(
            number_at_end(proposal(&origin, 7).as_bytes()),
            Some(7),
            "an origin with a slash still parses"
        );
        assert_eq!(number_at_end(b"/flow/changes/x"), None);
    }
}
