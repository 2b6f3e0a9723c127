//! The coordination workloads' connection to the cluster's etcd API: the client
//! core's [`Connection`] over every simulated member, starting on a random one
//! (any member serves any request). Writes are sent once (`Connection::once`) so a
//! workload knows what it sent; reads are retried (`Connection::call_until`).

use std::time::Duration;

use coordlab::client::{Connection, ConnectionConfig};

use crate::sim::scenario::Scenario;
use crate::sim::world::node_addr;

/// A connection to the scenario's nodes, each attempt within its request timeout.
pub fn connect(scenario: &Scenario) -> Connection {
    connect_within(
        scenario,
        Duration::from_millis(scenario.coord.request_timeout_ms),
    )
}

/// A connection to the scenario's nodes, each attempt within `request_timeout`.
pub fn connect_within(scenario: &Scenario, request_timeout: Duration) -> Connection {
    let endpoints = (1..=scenario.cluster.nodes).map(|id| node_addr(id).to_string());
    let mut config = ConnectionConfig::new(endpoints);
    config.attempt_timeout = request_timeout;
    Connection::new(config).expect("simulated node addresses are valid endpoints")
}

/// The end of a prefix range (etcd's `range_end` for "every key starting with").
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
