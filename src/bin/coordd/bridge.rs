//! `coordd --bridge-config FILE`: Link Bridge's broker on this node, configured by
//! the seed's YAML file. The broker serves agents and clients on the file's
//! `node.address`, and reaches the registry through this cluster's etcd API (every
//! member's address, leader-following).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use coordlab::bridge::{BridgeConfig, Broker, BrokerOptions};
use coordlab::client::{Connection, ConnectionConfig};
use coordlab::proto::linkbridge::bridge_server::BridgeServer;
use coordlab::raft::storage::SnapshotOptions;
use coordlab::raft::RaftConfig;
use coordlab::sync::watch;

/// Reads and checks the file, and that it describes this node of this cluster.
pub fn load(path: &Path, id: u64, peers: usize) -> Result<BridgeConfig, String> {
    let fail = |e: String| format!("{}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let config = BridgeConfig::parse(&text).map_err(|e| fail(e.to_string()))?;
    let b = &config.broker;
    if b.cluster.members.len() != peers {
        return Err(fail(format!(
            "broker.cluster.members: lists {} members, --peers {peers}",
            b.cluster.members.len()
        )));
    }
    if config.raft_id() != id {
        return Err(fail(format!(
            "broker.node.id: `{}` is member {} of broker.cluster.members, but --id is {id}",
            b.node.id,
            config.raft_id()
        )));
    }
    b.node
        .address
        .parse::<SocketAddr>()
        .map_err(|e| fail(format!("broker.node.address: `{}`: {e}", b.node.address)))?;
    let raft = &b.cluster.raft;
    if raft.snapshot_retention == 0 {
        return Err(fail(
            "broker.cluster.raft.snapshotRetention: must keep at least 1 snapshot".into(),
        ));
    }
    tracing::warn!(
        snapshot_interval = ?raft.snapshot_interval,
        "bridge configuration: coordd snapshots every --snapshot-entries applied entries; \
         snapshotInterval is read but not used"
    );
    Ok(config)
}

/// The file's Raft settings: a tick is half a heartbeat interval (a leader beats
/// every two ticks), the election timeout a whole number of ticks; snapshot
/// retention and compression as the file says.
pub fn apply_raft_config(config: &BridgeConfig, raft: &mut RaftConfig) {
    let timing = &config.broker.cluster.raft;
    raft.snapshots = SnapshotOptions {
        retention: timing.snapshot_retention as usize,
        compress: timing.snapshot_compress,
    };
    let tick =
        (timing.heartbeat_interval / raft.heartbeat_ticks as u32).max(Duration::from_millis(1));
    raft.tick_interval = tick;
    raft.election_ticks = ((timing.election_timeout.as_millis() / tick.as_millis()) as usize)
        .max(raft.heartbeat_ticks + 1);
}

/// Where the running broker is handed to the metrics endpoint.
pub type BrokerSlot = Arc<OnceLock<Broker>>;

/// Serves the broker until `stop`; retries its start while the cluster has no
/// leader yet. Once started, the broker is put in `started` (for metrics).
pub async fn run(
    config: BridgeConfig,
    endpoints: Vec<String>,
    started: Option<BrokerSlot>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let options = BrokerOptions::from_config(&config);
    let addr: SocketAddr = config.broker.node.address.parse().expect("checked by load");
    let connection =
        ConnectionConfig::new(endpoints).until(Duration::from_secs(2), Duration::from_secs(10));
    let conn = Arc::new(Connection::new(connection).map_err(|e| e.to_string())?);
    let broker = loop {
        match Broker::start(options.clone(), conn.clone()).await {
            Ok(broker) => break broker,
            Err(e) => {
                tracing::warn!(error = %e, "bridge broker cannot read the registry yet");
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    if let Some(slot) = started {
        let _ = slot.set(broker.clone());
    }
    tracing::info!(broker = %options.id, %addr, "bridge broker serving");
    let shutdown = config.broker.shutdown.clone();
    let leaving = broker.clone();
    let mut stopping = stop.clone();
    let server = tonic::transport::Server::builder()
        .add_service(BridgeServer::new(broker))
        .serve_with_shutdown(addr, async move {
            let _ = stop.wait_for(|s| *s).await;
            if shutdown.notify_clients {
                // Clients and agents move to other brokers now, not when they
                // find this one gone.
                let all_left = leaving.leave(shutdown.grace_period).await;
                tracing::info!(all_left, "bridge broker: clients and agents told to move");
            }
        });
    // A graceful stop waits for every connection to close; one a peer keeps open
    // must not hold the node up past the grace period.
    let give_up = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(shutdown.grace_period + CLOSE_PATIENCE).await;
    };
    tokio::select! {
        biased;
        served = server => served.map_err(|e| format!("bridge broker on {addr}: {e}")),
        _ = give_up => {
            tracing::warn!("bridge broker: connections still open after the grace period; closing them");
            Ok(())
        }
    }
}

/// How long after the grace period a stopping broker waits for its connections.
const CLOSE_PATIENCE: Duration = Duration::from_secs(1);
