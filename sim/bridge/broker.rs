//! Brokers: each on its own host (restarted by madsim with the same `init`), with
//! a connection to every member, serving the Bridge API; its registry view is
//! recorded whenever it publishes a registry that differs from the last.

use std::sync::Arc;
use std::time::Duration;

use coordlab::bridge::{Broker, BrokerOptions, ClusterState};
use coordlab::client::{Connection, ConnectionConfig};
use coordlab::proto::linkbridge::bridge_server::BridgeServer;
use coordlab::sync::watch;
use madsim::runtime::{Handle, NodeHandle};

use super::context::{broker_addr, Ctx, BROKERS};
use crate::sim::nodes::BuildForRun as _;
use crate::sim::trace::{BridgeEvent, RegistrySummary};

/// A broker host, serving from its start and again after every restart.
pub fn start(handle: &Handle, ctx: &Ctx, k: u64) -> NodeHandle {
    let ctx = ctx.clone();
    handle
        .create_node()
        .name(BROKERS.id(k))
        .ip(BROKERS.ip(k))
        .init(move || serve(ctx.clone(), k))
        .build_for_run()
}

async fn serve(ctx: Ctx, k: u64) {
    let id = BROKERS.id(k);
    let config = ConnectionConfig::new(ctx.endpoints.clone())
        .until(Duration::from_secs(1), Duration::from_secs(5));
    let conn = Arc::new(Connection::new(config).expect("no credentials to check"));
    let ttl = ctx.spec.agent_ttl();
    let options = BrokerOptions {
        id: id.clone(),
        agent_ttl: ttl,
        ping_interval: ttl / 3,
        max_clients: 1_000,
    };
    let broker = loop {
        match Broker::start(options.clone(), conn.clone()).await {
            Ok(broker) => break broker,
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    tokio::spawn(record_views(ctx.clone(), k, broker.view().subscribe()));
    ctx.serving
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(k, broker.clone());
    ctx.record(BROKERS.node(k), BridgeEvent::BrokerStarted { broker: id });
    let served = tonic::transport::Server::builder()
        .add_service(BridgeServer::new(broker))
        .serve(broker_addr(k))
        .await;
    if let Err(e) = served {
        panic!("bridge broker {k} stopped serving: {e}");
    }
}

async fn record_views(ctx: Ctx, k: u64, mut views: watch::Receiver<Arc<ClusterState>>) {
    let mut last: Option<RegistrySummary> = None;
    loop {
        let state = views.borrow_and_update().clone();
        let registry = RegistrySummary::of(&state);
        if last.as_ref() != Some(&registry) {
            ctx.record(
                BROKERS.node(k),
                BridgeEvent::BrokerViewed {
                    broker: BROKERS.id(k),
                    revision: state.revision(),
                    registry: registry.clone(),
                },
            );
            last = Some(registry);
        }
        if views.changed().await.is_err() {
            return;
        }
    }
}
