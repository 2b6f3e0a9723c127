//! The lock workload: each client grants itself a lease and keeps it alive, takes a
//! lock with the Lock service, reads its fencing token (the lock key's create
//! revision, by a linearizable Range), writes the lock's fenced resource on entering
//! and on leaving, holds the lock meanwhile — sometimes longer than the lease TTL,
//! which the keep-alives cover — and unlocks. With `lock_pause_ms` set, a holder is
//! now and then paused that long: past the TTL it loses the lock without knowing,
//! and the fenced resource must refuse its late write once the next holder wrote.

use std::sync::Arc;
use std::time::Duration;

use coordlab::client::Connection;
use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::RangeRequest;
use coordlab::proto::v3lockpb::lock_client::LockClient;
use coordlab::proto::v3lockpb::{LockRequest, UnlockRequest};
use madsim::rand::{thread_rng, Rng};
use madsim::task::NodeId;

use super::conn::connect;
use super::lease::{grant_kept, revoke};
use super::pauser::Pauser;
use super::resource::{Resources, Section};
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::trace::EventKind;
use crate::sim::workload::WorkloadControl;

/// Prefix of lock names.
pub const PREFIX: &str = "locks/";

/// How often a hold is paused, when the scenario pauses holders.
const PAUSE_PROBABILITY: f64 = 0.2;

/// How long a Lock request may wait for the holder to go: long enough for a holder
/// paused past its TTL to lose the lock.
pub fn lock_wait(scenario: &Scenario) -> Duration {
    let spec = &scenario.coord;
    let ttl_ms = spec.lock_ttl_secs as u64 * 1000;
    let longest_pause_ms = spec.ttl_only_pause_ms.max(spec.lock_pause_ms);
    Duration::from_millis((4 * spec.request_timeout_ms).max(longest_pause_ms + 2 * ttl_ms))
}

/// A lock a client holds.
pub struct Held {
    pub name: String,
    pub key: String,
    pub token: i64,
}

/// Takes lock `name` with `lease`, then reads the fencing token; `None` if the
/// lock was not granted or the key vanished before its token could be read.
pub async fn acquire(
    conn: &Connection,
    recorder: &Recorder,
    client: u64,
    name: &str,
    lease: i64,
    wait: Duration,
) -> Option<Held> {
    let request = LockRequest {
        name: name.as_bytes().to_vec(),
        lease,
    };
    let granted = conn
        .once_within(
            wait,
            |ch| async move { LockClient::new(ch).lock(request).await },
        )
        .await
        .ok()?
        .into_inner();
    let key = String::from_utf8_lossy(&granted.key).into_owned();
    let request = RangeRequest {
        key: granted.key,
        ..Default::default()
    };
    let read = conn
        .call_until(conn.timeout() * 2, |ch, _| {
            let request = request.clone();
            async move { KvClient::new(ch).range(request).await }
        })
        .await
        .ok()?
        .into_inner();
    let token = read.kvs.first()?.create_revision;
    recorder.record(
        client,
        EventKind::LockAcquired {
            client,
            name: name.to_string(),
            key: key.clone(),
            token,
            lease,
        },
    );
    Some(Held {
        name: name.to_string(),
        key,
        token,
    })
}

/// Unlocks once and records the outcome.
pub async fn release(conn: &Connection, recorder: &Recorder, client: u64, held: &Held) {
    let request = UnlockRequest {
        key: held.key.as_bytes().to_vec(),
    };
    let outcome = match conn
        .once(|ch| async move { LockClient::new(ch).unlock(request).await })
        .await
    {
        Ok(_) => "ok",
        Err(_) => "unknown",
    };
    recorder.record(
        client,
        EventKind::LockReleased {
            client,
            name: held.name.clone(),
            key: held.key.clone(),
            outcome: outcome.into(),
        },
    );
}

/// A lock client's node and the pauser that may stop it.
pub struct Pausable {
    pub node: NodeId,
    pub pauser: Pauser,
}

pub async fn run(
    client: u64,
    scenario: Scenario,
    recorder: Arc<Recorder>,
    control: WorkloadControl,
    resources: Resources,
    pausable: Option<Pausable>,
) {
    let spec = &scenario.coord;
    let conn = connect(&scenario);
    let mut n = 0;
    while !control.stopped() {
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(50..500))).await;
        n += 1;
        let Some((lease, _, keep)) =
            grant_kept(&conn, &recorder, client, n, spec.lock_ttl_secs, &scenario).await
        else {
            continue;
        };
        let name = format!("{PREFIX}{}", thread_rng().gen_range(0..spec.locks));
        let held = acquire(&conn, &recorder, client, &name, lease, lock_wait(&scenario)).await;
        if let Some(held) = held {
            resources.write(&held.name, client, held.token, Section::Enter);
            match &pausable {
                Some(p) if thread_rng().gen_bool(PAUSE_PROBABILITY) => {
                    p.pauser.pause_me(p.node, client, spec.lock_pause_ms).await;
                }
                _ => {
                    let hold = thread_rng().gen_range(spec.hold_min_ms..=spec.hold_max_ms);
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                }
            }
            resources.write(&held.name, client, held.token, Section::Exit);
            release(&conn, &recorder, client, &held).await;
        }
        keep.stop();
        // Revoking also drops a lock key left behind by a Lock that timed out.
        revoke(&conn, &recorder, client, lease).await;
    }
}
