//! Clients: each on its own host, subscribed to the service through a first
//! broker of its own (failing over to the others), calling the service every
//! `call_interval_ms` through the subscription's balanced channel, and recording
//! what its view shows whenever that changes.

use std::time::Duration;

use coordlab::bridge::{ClientConfig, ClientView, DiscoveryClient, FailoverConfig};
use coordlab::proto::admin_client::AdminClient;
use coordlab::proto::linkbridge::InstanceStatus;
use coordlab::proto::StatusRequest;
use coordlab::sync::watch;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::JoinHandle;

use super::context::{broker_at, Ctx, CLIENTS, SERVICE};
use super::instance::CLIENT_HEADER;
use crate::sim::nodes::BuildForRun as _;
use crate::sim::trace::BridgeEvent;

pub fn start(handle: &Handle, ctx: &Ctx, c: u64) -> (NodeHandle, JoinHandle<()>) {
    let node = handle
        .create_node()
        .name(CLIENTS.id(c))
        .ip(CLIENTS.ip(c))
        .build_for_run();
    let task = node.spawn(run(ctx.clone(), c));
    (node, task)
}

async fn run(ctx: Ctx, c: u64) {
    let node = CLIENTS.node(c);
    let id = CLIENTS.id(c);
    let spec = &ctx.spec;
    let timeout = Duration::from_millis(spec.client_timeout_ms);
    let client = DiscoveryClient::new(ClientConfig {
        client_id: id.clone(),
        broker_addresses: ctx.brokers_from(c),
        failover: FailoverConfig {
            retry_interval: Duration::from_millis(spec.retry_interval_ms),
            max_retries: spec.max_retries,
            enable_auto_failover: true,
            continuous_retry: true,
        },
        timeout,
    })
    .expect("a valid client configuration");
    ctx.record(
        node,
        BridgeEvent::ClientStarted {
            client: id.clone(),
            service: SERVICE.into(),
            notice_bound_ms: spec.notice_bound_ms(),
            failover_bound_ms: spec.failover_bound_ms(),
        },
    );
    let subscription = client.subscribe(vec![SERVICE.into()]);
    let recorder = tokio::spawn(record_views(
        ctx.clone(),
        node,
        id.clone(),
        subscription.view(),
    ));
    let service = subscription.channel(SERVICE);
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut next = tokio::time::Instant::now();
    while !ctx.stop.stopped() {
        next += Duration::from_millis(spec.call_interval_ms);
        tokio::time::sleep_until(next).await;
        let mut request = tonic::Request::new(StatusRequest {});
        request
            .metadata_mut()
            .insert(CLIENT_HEADER, id.parse().expect("an ASCII client id"));
        let mut admin = AdminClient::new(service.channel());
        match tokio::time::timeout(timeout, admin.status(request)).await {
            Ok(Ok(_)) => ok += 1,
            _ => failed += 1,
        }
    }
    recorder.abort();
    ctx.record(
        node,
        BridgeEvent::ClientEnded {
            client: id,
            ok,
            failed,
        },
    );
}

fn status_name(status: i32) -> &'static str {
    match InstanceStatus::try_from(status) {
        Ok(InstanceStatus::Serving) => "serving",
        Ok(InstanceStatus::Draining) => "draining",
        Ok(InstanceStatus::Down) => "down",
        _ => "unknown",
    }
}

async fn record_views(ctx: Ctx, node: u64, client: String, mut view: watch::Receiver<ClientView>) {
    let mut last = None;
    loop {
        let seen = {
            let v = view.borrow_and_update();
            let revision = v.revisions.get(SERVICE).copied().unwrap_or(0);
            let mut instances: Vec<(String, String)> = v
                .services
                .get(SERVICE)
                .map(|all| {
                    all.iter()
                        .map(|i| (i.instance_id.clone(), status_name(i.status).to_string()))
                        .collect()
                })
                .unwrap_or_default();
            instances.sort();
            (
                v.broker.as_deref().and_then(|a| broker_at(&ctx.spec, a)),
                revision,
                instances,
            )
        };
        if last.as_ref() != Some(&seen) {
            let (broker, revision, instances) = seen.clone();
            ctx.record(
                node,
                BridgeEvent::ClientViewed {
                    client: client.clone(),
                    broker,
                    service: SERVICE.into(),
                    revision,
                    instances,
                },
            );
            last = Some(seen);
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}
