//! Prometheus metrics of one node (`coordd --metrics-listen`): what the node reports
//! through the Observer seam ([`MetricsObserver`]), what a scrape reads from it
//! ([`NodeSample`](crate::server::NodeSample)), and, with Link Bridge's broker, the
//! broker's `ClusterMetrics`. Names follow etcd's where coordlab has the same
//! concept, and start with `coordlab_` where it differs or etcd has none.
//!
//! The registry knows nothing of HTTP; coordd serves [`NodeMetrics::encode`]. A
//! node without `--metrics-listen` keeps the [`NoopObserver`](crate::seams::observer::NoopObserver)
//! and never builds any of this.

mod bridge;
mod observer;
mod raft;
mod sampled;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use crate::proto::linkbridge::ClusterMetrics;
use crate::server::NodeSample;

pub use observer::MetricsObserver;

use bridge::BridgeSeries;
use raft::RaftSeries;
use sampled::SampledSeries;

/// Every series of one node, registered once.
pub struct NodeMetrics {
    registry: Registry,
    raft: RaftSeries,
    sampled: SampledSeries,
    bridge: Option<BridgeSeries>,
}

impl NodeMetrics {
    /// The node's series; the bridge's too when `bridge` (coordd --bridge-config).
    pub fn new(bridge: bool) -> Self {
        let mut registry = Registry::default();
        let raft = RaftSeries::register(&mut registry);
        let sampled = SampledSeries::register(&mut registry);
        let bridge = bridge.then(|| BridgeSeries::register(&mut registry));
        NodeMetrics {
            registry,
            raft,
            sampled,
            bridge,
        }
    }

    /// Sets the series a scrape reads from the node.
    pub fn record_node(&self, sample: &NodeSample) {
        self.sampled.record(sample);
    }

    /// Sets the bridge broker's series (ignored when the bridge is off).
    pub fn record_bridge(&self, cluster: &ClusterMetrics) {
        if let Some(bridge) = &self.bridge {
            bridge.record(cluster);
        }
    }

    /// The registry in the text exposition format (OpenMetrics, which Prometheus
    /// reads), ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// The content type of [`NodeMetrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests;
