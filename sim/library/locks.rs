//! Lock clients: take a short-TTL lock through the library, and while the guard
//! says `is_held()`, write to the lock's fenced resource with the fencing token.
//!
//! Some holders are cut off from the cluster for a while (`isolate_fraction`): the
//! classic case fencing exists for — the holder still reaches the resource but not
//! the lock service, its lease expires, a rival takes the lock.

use std::time::Duration;

use coordlab::library::LockGuard;
use madsim::rand::{thread_rng, Rng};
use madsim::task::NodeId;
use tokio::time::Instant;

use super::context::Ctx;
use super::fenced::FencedResources;
use super::isolation::Isolation;
use crate::sim::trace::LibraryEvent;

/// How long a client waits for a lock before it gives up (drops the call).
const ACQUIRE_PATIENCE: Duration = Duration::from_secs(10);
/// A holder writes to the resource this often.
const WRITE_INTERVAL: Duration = Duration::from_millis(150);
/// How long an isolated holder stays cut off: longer than a 2 s TTL.
const ISOLATION_MS: std::ops::RangeInclusive<u64> = 2_500..=6_000;

/// The lease of a guard, from its owner key `<lock>/<lease hex>`.
fn lease_of(guard: &LockGuard) -> i64 {
    let key = String::from_utf8_lossy(guard.owner_key()).into_owned();
    key.rsplit('/')
        .next()
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        .unwrap_or(0)
}

pub async fn run_lock_client(
    ctx: Ctx,
    client: u64,
    host: NodeId,
    lock: String,
    resources: FencedResources,
) {
    let coordinator = ctx.coordinator(ctx.endpoints.clone()).await;
    let ttl = Duration::from_secs(ctx.spec.lock_ttl_secs);
    while !ctx.stop.stopped() {
        let pause = thread_rng().gen_range(200..1_500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let try_only = thread_rng().gen_bool(ctx.spec.try_acquire_fraction);
        let how = if try_only { "try_acquire" } else { "acquire" };
        ctx.record(
            client,
            LibraryEvent::LockAcquiring {
                lock: lock.clone(),
                how: how.into(),
            },
        );
        let locks = coordinator.lock();
        let attempt = if try_only {
            tokio::time::timeout(ACQUIRE_PATIENCE, locks.try_acquire(&lock, ttl)).await
        } else {
            tokio::time::timeout(ACQUIRE_PATIENCE, locks.acquire(&lock, ttl)).await
        };
        let guard = match attempt {
            Ok(Ok(guard)) => guard,
            Ok(Err(e)) => {
                let error = e.to_string();
                ctx.record(
                    client,
                    LibraryEvent::LockAcquireFailed {
                        lock: lock.clone(),
                        error,
                    },
                );
                continue;
            }
            Err(_) => {
                let error = format!("gave up after {ACQUIRE_PATIENCE:?}");
                ctx.record(
                    client,
                    LibraryEvent::LockAcquireFailed {
                        lock: lock.clone(),
                        error,
                    },
                );
                continue;
            }
        };
        hold(&ctx, client, host, &lock, guard, &resources).await;
    }
}

/// Holds `guard` for a drawn time (part of it cut off from the cluster, sometimes),
/// writing while it says `is_held()`; then unlocks.
async fn hold(
    ctx: &Ctx,
    client: u64,
    host: NodeId,
    lock: &str,
    guard: LockGuard,
    resources: &FencedResources,
) {
    let lease = lease_of(&guard);
    let ttl_ms = guard.ttl().as_millis() as u64;
    let token = guard.fencing_token();
    ctx.record(
        client,
        LibraryEvent::LockAcquired {
            lock: lock.to_string(),
            lease,
            token,
            ttl_ms,
            stale_bound_ms: ctx.spec.stale_bound_ms(ttl_ms),
        },
    );
    let hold_ms = thread_rng().gen_range(ctx.spec.hold_min_ms..=ctx.spec.hold_max_ms);
    let until = Instant::now() + Duration::from_millis(hold_ms);
    // (start, end) of this hold's isolation, if it has one.
    let mut cut_off = thread_rng().gen_bool(ctx.spec.isolate_fraction).then(|| {
        let start = Instant::now() + Duration::from_millis(thread_rng().gen_range(0..=hold_ms / 2));
        (
            start,
            start + Duration::from_millis(thread_rng().gen_range(ISOLATION_MS)),
        )
    });
    let mut isolation: Option<Isolation> = None;
    while Instant::now() < until && !ctx.stop.stopped() {
        match cut_off {
            Some((start, end)) if isolation.is_none() && Instant::now() >= start => {
                let for_ms = (end - start).as_millis() as u64;
                ctx.record(client, LibraryEvent::Isolated { for_ms });
                isolation = Some(Isolation::start(host));
            }
            Some((_, end)) if isolation.is_some() && Instant::now() >= end => {
                isolation = None;
                cut_off = None;
                ctx.record(client, LibraryEvent::Reconnected);
            }
            _ => {}
        }
        if !guard.is_held() {
            ctx.record(
                client,
                LibraryEvent::LockLost {
                    lock: lock.to_string(),
                    lease,
                },
            );
            // Dropping releases in the background (once reconnected); the lease is
            // already gone.
            if isolation.take().is_some() {
                ctx.record(client, LibraryEvent::Reconnected);
            }
            return;
        }
        // No await between the check and the write: the guard's word is current.
        let (accepted, highest) = resources.write(lock, token);
        ctx.record(
            client,
            LibraryEvent::FencedWrite {
                lock: lock.to_string(),
                lease,
                token,
                accepted,
                highest,
            },
        );
        tokio::time::sleep(WRITE_INTERVAL).await;
    }
    if isolation.take().is_some() {
        ctx.record(client, LibraryEvent::Reconnected);
    }
    let outcome = match guard.unlock().await {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    ctx.record(
        client,
        LibraryEvent::LockReleased {
            lock: lock.to_string(),
            lease,
            outcome,
        },
    );
}
