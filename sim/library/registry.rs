//! Providers and consumers of one service through the library's registry.
//!
//! A provider re-registers its id with a new port each time, so every registration
//! is a distinct instance (id, port); between registrations it either unregisters
//! or "crashes" (closes its connection and drops its coordinator: the lease stops
//! being renewed, nothing revokes it, it expires).
//! A consumer holds `get_connection` and a `registry().watch`, both through one
//! member (a single endpoint), so both are fed by the same watch hub — which is what
//! makes a time bound between them meaningful.

use std::collections::BTreeSet;
use std::time::Duration;

use coordlab::library::{service_prefix, Coordinator, EventType, ServiceConnection, ServiceInfo};
use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::RangeRequest;
use madsim::rand::{thread_rng, Rng};
use tokio::time::Instant;

use super::context::Ctx;
use crate::sim::trace::LibraryEvent;
use crate::sim::world::node_addr;

pub const SERVICE: &str = "lib-svc";
/// Share of deregistrations done by crashing rather than unregistering.
const CRASH_FRACTION: f64 = 0.3;
/// A consumer samples `next_channel()` this often.
const ROUTE_INTERVAL: Duration = Duration::from_millis(100);

fn millis(range: std::ops::RangeInclusive<u64>) -> Duration {
    Duration::from_millis(thread_rng().gen_range(range))
}

/// The lease a registration's key is bound to, read back (None if the read fails).
async fn registration_lease(c: &Coordinator, id: &str) -> Option<i64> {
    let key = format!("{}{id}", service_prefix(SERVICE)).into_bytes();
    let r = c
        .connection()
        .call(|ch, conn| {
            let req = conn.request(RangeRequest {
                key: key.clone(),
                ..Default::default()
            });
            async move { KvClient::new(ch).range(req).await }
        })
        .await
        .ok()?;
    r.into_inner().kvs.first().map(|kv| kv.lease)
}

pub async fn run_provider(ctx: Ctx, client: u64, k: u64) {
    let id = format!("p{k}");
    let ttl = Duration::from_secs(ctx.spec.registration_ttl_secs);
    let mut coordinator: Option<Coordinator> = None;
    let mut port: u16 = 0;
    while !ctx.stop.stopped() {
        port += 1;
        let c = match coordinator.take() {
            Some(c) => c,
            None => ctx.coordinator(ctx.endpoints.clone()).await,
        };
        let info = ServiceInfo {
            id: id.clone(),
            name: SERVICE.into(),
            address: format!("10.0.71.{k}"),
            port,
            ..Default::default()
        };
        ctx.record(
            client,
            LibraryEvent::Registering {
                id: id.clone(),
                port,
            },
        );
        let registered = c.registry().register(info, ttl).await;
        let (outcome, lease) = match &registered {
            Ok(()) => ("ok".to_string(), registration_lease(&c, &id).await),
            Err(e) => (e.to_string(), None),
        };
        ctx.record(
            client,
            LibraryEvent::Registered {
                id: id.clone(),
                port,
                outcome,
                lease,
            },
        );
        if registered.is_err() {
            coordinator = Some(c);
            tokio::time::sleep(millis(300..=1_000)).await;
            continue;
        }
        tokio::time::sleep(millis(1_000..=4_000)).await;
        if ctx.stop.stopped() {
            coordinator = Some(c);
            break;
        }
        if thread_rng().gen_bool(CRASH_FRACTION) {
            // A crash: with its connection gone the library can neither renew nor
            // revoke, so the registration stays until its lease expires.
            c.connection().close();
            drop(c);
            ctx.record(
                client,
                LibraryEvent::Deregistered {
                    id: id.clone(),
                    port,
                    how: "crash".into(),
                    outcome: "lease left to expire".into(),
                },
            );
        } else {
            let outcome = match c.registry().unregister(&id).await {
                Ok(()) => "ok".to_string(),
                Err(e) => e.to_string(),
            };
            coordinator = Some(c);
            ctx.record(
                client,
                LibraryEvent::Deregistered {
                    id: id.clone(),
                    port,
                    how: "unregister".into(),
                    outcome,
                },
            );
        }
        tokio::time::sleep(millis(1_500..=4_000)).await;
    }
    if let Some(c) = coordinator {
        c.close().await;
    }
}

/// One round of the round-robin: `next_channel()` until it repeats itself.
fn sample_routing(conn: &ServiceConnection) -> Vec<(String, u16)> {
    let mut seen = BTreeSet::new();
    for _ in 0..32 {
        let Ok((info, _channel)) = conn.next_channel() else {
            break;
        };
        if !seen.insert((info.id, info.port)) {
            break;
        }
    }
    seen.into_iter().collect()
}

pub async fn run_consumer(ctx: Ctx, client: u64, member: u64) {
    let c = ctx.coordinator(vec![node_addr(member).to_string()]).await;
    let conn = loop {
        if ctx.stop.stopped() {
            return;
        }
        match c.registry().get_connection(SERVICE).await {
            Ok(conn) => break conn,
            Err(_) => tokio::time::sleep(millis(200..=500)).await,
        }
    };
    let mut watch = loop {
        if ctx.stop.stopped() {
            return;
        }
        match c.registry().watch(SERVICE).await {
            Ok(w) => break w,
            Err(_) => tokio::time::sleep(millis(200..=500)).await,
        }
    };
    ctx.record(
        client,
        LibraryEvent::RoutingOpened {
            service: SERVICE.into(),
            member,
            bound_ms: ctx.spec.routing_bound_ms(),
        },
    );
    let mut next_sample = Instant::now();
    loop {
        tokio::select! {
            biased;
            event = watch.next() => {
                let event = match event {
                    Some(Ok(e)) => e,
                    Some(Err(e)) => {
                        ctx.record(client, LibraryEvent::ServiceWatchEnded { error: e.to_string() });
                        return;
                    }
                    None => {
                        ctx.record(client, LibraryEvent::ServiceWatchEnded { error: "ended".into() });
                        return;
                    }
                };
                let kind = match event.kind {
                    EventType::Put => "put",
                    EventType::Delete => "delete",
                };
                ctx.record(
                    client,
                    LibraryEvent::ServiceWatched {
                        kind: kind.into(),
                        id: event.service.id,
                        port: event.service.port,
                        revision: event.revision,
                    },
                );
            }
            _ = tokio::time::sleep_until(next_sample) => {
                if ctx.stop.stopped() {
                    return;
                }
                ctx.record(client, LibraryEvent::Routed { instances: sample_routing(&conn) });
                next_sample += ROUTE_INTERVAL;
            }
        }
    }
}
