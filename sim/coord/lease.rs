//! Leases: granting, keep-alive loops, revoking, and the lease workload — clients
//! that grant a lease, attach keys to it, and then keep it alive past its TTL and
//! revoke it, let it lapse, or revoke it soon; after a revoke or a lapse they read
//! the keys (linearizably) to see them gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coordlab::client::Connection;
use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::lease_client::LeaseClient;
use coordlab::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
};
use futures::StreamExt;
use madsim::rand::{thread_rng, Rng};
use tonic::{Code, Status};

use super::conn::{connect, connect_within};
use super::now_ms;
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::trace::EventKind;
use crate::sim::workload::WorkloadControl;

/// Prefix of the keys lease clients attach to their leases.
pub const PREFIX: &str = "lease/";

/// The lease id client `client` asks for the `n`-th time: unique in the run, so
/// the trace never confuses two leases.
pub fn lease_id(client: u64, n: u64) -> i64 {
    ((client as i64) << 32) | (n as i64 & 0xffff_ffff)
}

/// Grants a lease (asking for `id`); `Some((lease, ttl_ms))` once granted.
pub async fn grant(
    conn: &Connection,
    recorder: &Recorder,
    client: u64,
    id: i64,
    ttl_secs: i64,
) -> Option<(i64, u64)> {
    let sent_ms = now_ms(recorder);
    let request = LeaseGrantRequest { ttl: ttl_secs, id };
    let answer = conn
        .once(|ch| async move { LeaseClient::new(ch).lease_grant(request).await })
        .await;
    let granted = answer.ok()?.into_inner();
    if !granted.error.is_empty() || granted.id == 0 {
        return None;
    }
    let ttl_ms = granted.ttl.max(0) as u64 * 1000;
    recorder.record(
        client,
        EventKind::LeaseGranted {
            client,
            lease: granted.id,
            ttl_ms,
            sent_ms,
        },
    );
    Some((granted.id, ttl_ms))
}

/// A client's `n`th lease, of `ttl_secs`, granted and kept alive in the background:
/// `Some((lease, ttl_ms, keep))`.
pub async fn grant_kept(
    conn: &Connection,
    recorder: &Arc<Recorder>,
    client: u64,
    n: u64,
    ttl_secs: i64,
    scenario: &Scenario,
) -> Option<(i64, u64, KeepAlive)> {
    let (lease, ttl_ms) = grant(conn, recorder, client, lease_id(client, n), ttl_secs).await?;
    let keep = KeepAlive::spawn(client, lease, ttl_ms, scenario, recorder.clone());
    Some((lease, ttl_ms, keep))
}

/// Revokes a lease once; the outcome as recorded.
pub async fn revoke(conn: &Connection, recorder: &Recorder, client: u64, lease: i64) -> String {
    let sent_ms = now_ms(recorder);
    let answer = conn
        .once(|ch| async move {
            LeaseClient::new(ch)
                .lease_revoke(LeaseRevokeRequest { id: lease })
                .await
        })
        .await;
    let outcome = match answer {
        Ok(_) => "ok",
        Err(e) if e.code() == Code::NotFound => "not_found",
        Err(_) => "unknown",
    };
    recorder.record(
        client,
        EventKind::LeaseRevoke {
            client,
            lease,
            sent_ms,
            outcome: outcome.into(),
        },
    );
    outcome.to_string()
}

/// Reads `key` linearizably and records whether it is there.
pub async fn read_lease_key(
    conn: &Connection,
    recorder: &Recorder,
    client: u64,
    lease: i64,
    key: &str,
    total: Duration,
) {
    let invoked_ms = now_ms(recorder);
    let request = RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    let answer = conn
        .call_until(total, |ch, _| {
            let request = request.clone();
            async move { KvClient::new(ch).range(request).await }
        })
        .await;
    let Ok(answer) = answer.map(|r| r.into_inner()) else {
        return;
    };
    recorder.record(
        client,
        EventKind::LeaseKeyRead {
            client,
            lease,
            key: key.to_string(),
            invoked_ms,
            present: !answer.kvs.is_empty(),
            revision: answer.header.map_or(0, |h| h.revision),
        },
    );
}

/// A running keep-alive loop for one lease: a keep-alive every third of the TTL
/// (sooner after a failure), each on a fresh stream to some member.
pub struct KeepAlive {
    lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    pub fn spawn(
        client: u64,
        lease: i64,
        ttl_ms: u64,
        scenario: &Scenario,
        recorder: Arc<Recorder>,
    ) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let period = Duration::from_millis((ttl_ms / 3).max(100));
        let timeout = Duration::from_millis(scenario.coord.request_timeout_ms).min(period);
        let conn = connect_within(scenario, timeout);
        let task = tokio::spawn(keep_alive_loop(
            client,
            lease,
            period,
            conn,
            recorder,
            lost.clone(),
        ));
        KeepAlive { lost, task }
    }

    /// Whether the cluster said the lease is gone.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn keep_alive_once(conn: &Connection, lease: i64) -> Result<i64, Status> {
    conn.once(|ch| async move {
        let request = LeaseKeepAliveRequest { id: lease };
        // The request stream stays open until the answer is in.
        let requests = futures::stream::iter([request]).chain(futures::stream::pending());
        let mut answers = LeaseClient::new(ch)
            .lease_keep_alive(requests)
            .await?
            .into_inner();
        let answer = answers
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("keep-alive stream ended without an answer"))?;
        Ok(answer.ttl)
    })
    .await
}

async fn keep_alive_loop(
    client: u64,
    lease: i64,
    period: Duration,
    conn: Connection,
    recorder: Arc<Recorder>,
    lost: Arc<AtomicBool>,
) {
    let mut wait = period;
    loop {
        tokio::time::sleep(wait).await;
        let sent_ms = now_ms(&recorder);
        let (outcome, ttl_ms) = match keep_alive_once(&conn, lease).await {
            Ok(ttl) if ttl > 0 => ("ok", ttl as u64 * 1000),
            Ok(_) => ("not_found", 0),
            Err(e) if e.code() == Code::NotFound => ("not_found", 0),
            Err(_) => ("error", 0),
        };
        recorder.record(
            client,
            EventKind::KeepAlive {
                client,
                lease,
                sent_ms,
                outcome: outcome.into(),
                ttl_ms,
            },
        );
        match outcome {
            "ok" => wait = period,
            "not_found" => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            _ => wait = Duration::from_millis(thread_rng().gen_range(50..200)),
        }
    }
}

/// What a lease client does with a lease after attaching its keys.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// Keep it alive for 1–3 TTLs, then revoke it.
    KeepThenRevoke,
    /// Keep it alive for up to one TTL, then stop and let it expire.
    Lapse,
    /// Revoke it within half a TTL.
    RevokeSoon,
}

/// One lease client's loop.
pub async fn run(
    client: u64,
    scenario: Scenario,
    recorder: Arc<Recorder>,
    control: WorkloadControl,
) {
    let spec = &scenario.coord;
    let conn = connect(&scenario);
    let mut n = 0;
    while !control.stopped() {
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(50..300))).await;
        n += 1;
        let Some((lease, ttl_ms, keep)) =
            grant_kept(&conn, &recorder, client, n, spec.lease_ttl_secs, &scenario).await
        else {
            continue;
        };
        let mut keys = Vec::new();
        for i in 0..thread_rng().gen_range(1..=3) {
            let key = format!("{PREFIX}{client}/{lease:x}/{i}");
            put_with_lease(
                &conn,
                &recorder,
                client,
                lease,
                &key,
                format!("{client}-{n}-{i}"),
            )
            .await;
            keys.push(key);
        }
        let fate = match thread_rng().gen_range(0..3) {
            0 => Fate::KeepThenRevoke,
            1 => Fate::Lapse,
            _ => Fate::RevokeSoon,
        };
        let ttl = ttl_ms as f64;
        let revoked = match fate {
            Fate::KeepThenRevoke => {
                sleep_ms(ttl * thread_rng().gen_range(1.0..3.0)).await;
                keep.stop();
                revoke(&conn, &recorder, client, lease).await == "ok"
            }
            Fate::Lapse => {
                sleep_ms(ttl * thread_rng().gen_range(0.0..1.0)).await;
                keep.stop();
                // Past the TTL plus the leader's expiry check and a commit.
                sleep_ms(ttl + 2_000.0).await;
                true
            }
            Fate::RevokeSoon => {
                sleep_ms(ttl * thread_rng().gen_range(0.0..0.5)).await;
                keep.stop();
                revoke(&conn, &recorder, client, lease).await == "ok"
            }
        };
        if revoked {
            for key in &keys {
                read_lease_key(&conn, &recorder, client, lease, key, conn.timeout() * 2).await;
            }
        }
    }
}

async fn sleep_ms(ms: f64) {
    tokio::time::sleep(Duration::from_millis(ms as u64)).await;
}

async fn put_with_lease(
    conn: &Connection,
    recorder: &Recorder,
    client: u64,
    lease: i64,
    key: &str,
    value: String,
) {
    let request = PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.clone().into_bytes(),
        lease,
        ..Default::default()
    };
    let answer = conn
        .once(|ch| async move { KvClient::new(ch).put(request).await })
        .await;
    let (outcome, revision) = match answer {
        Ok(r) => ("ok", r.into_inner().header.map(|h| h.revision)),
        // The lease is gone: the put was refused.
        Err(e) if e.code() == Code::NotFound => ("fail", None),
        Err(_) => ("unknown", None),
    };
    recorder.record(
        client,
        EventKind::LeaseKeyPut {
            client,
            lease,
            key: key.to_string(),
            value,
            outcome: outcome.into(),
            revision,
        },
    );
}
