//! What every bridge host shares: the spec, the addresses, the recorder and the
//! stop flag; and the hosts' names, addresses and trace ids.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use coordlab::bridge::Broker;

use crate::sim::library::Stop;
use crate::sim::observer::Recorder;
use crate::sim::scenario::bridge::BridgeSpec;
use crate::sim::trace::{BridgeEvent, EventKind};

/// The one service the agents front.
pub const SERVICE: &str = "svc";
const BROKER_PORT: u16 = 7000;

#[derive(Clone)]
pub struct Ctx {
    pub spec: BridgeSpec,
    /// Every initial member's address.
    pub endpoints: Vec<String>,
    pub recorder: Arc<Recorder>,
    pub stop: Stop,
    /// Each broker's latest incarnation, for the graceful stops.
    pub serving: Arc<Mutex<BTreeMap<u64, Broker>>>,
}

impl Ctx {
    pub fn record(&self, node: u64, event: BridgeEvent) {
        self.recorder.record(node, EventKind::Bridge(event));
    }

    /// Every broker's address, starting from the `k`-th (1-based, wrapping): hosts
    /// spread over the brokers.
    pub fn brokers_from(&self, k: u64) -> Vec<String> {
        let n = self.spec.brokers;
        (0..n)
            .map(|i| broker_addr((k - 1 + i) % n + 1).to_string())
            .collect()
    }
}

/// Trace ids and addresses of the bridge's hosts: `base + k` on `10.0.<net>.k`.
pub struct Kind {
    pub base: u64,
    pub net: u8,
    pub name: &'static str,
}

pub const BROKERS: Kind = Kind {
    base: 1100,
    net: 80,
    name: "bridge-broker",
};
pub const AGENTS: Kind = Kind {
    base: 1120,
    net: 81,
    name: "bridge-agent",
};
pub const CLIENTS: Kind = Kind {
    base: 1140,
    net: 82,
    name: "bridge-client",
};
/// The harness's own hosts (fault control, audit): trace node 0.
pub const HARNESS_NET: u8 = 83;

impl Kind {
    pub fn ip(&self, k: u64) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, self.net, k as u8))
    }

    /// The host's name, which is also the broker's, agent's or client's id.
    pub fn id(&self, k: u64) -> String {
        format!("{}-{k}", self.name)
    }

    pub fn node(&self, k: u64) -> u64 {
        self.base + k
    }
}

pub fn broker_addr(k: u64) -> SocketAddr {
    SocketAddr::new(BROKERS.ip(k), BROKER_PORT)
}

/// The id of the broker at `addr` (a client's view names its broker's address).
pub fn broker_at(spec: &BridgeSpec, addr: &str) -> Option<String> {
    (1..=spec.brokers)
        .find(|&k| broker_addr(k).to_string() == addr)
        .map(|k| BROKERS.id(k))
}
