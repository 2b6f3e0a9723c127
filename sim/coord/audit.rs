//! The end-of-run audit, against the healed cluster: for every lock grant, a
//! historical read of the lock's prefix at the grant's revision (`LockAudit`, for
//! `lock_safety`); for every removed lease, a linearizable read of each key put with
//! it (`LeaseKeyRead`, for `lease_keys_removed`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::RangeRequest;

use super::conn::{connect, prefix_end};
use super::lease::read_lease_key;
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::trace::EventKind;

/// How long the audit keeps trying one read.
const READ_PATIENCE: Duration = Duration::from_secs(10);

/// What the audit must read.
struct Work {
    /// (lock name, grant revision).
    grants: BTreeSet<(String, i64)>,
    /// Removed lease → the keys put with it.
    lease_keys: BTreeMap<i64, Vec<String>>,
}

/// What the audit must read, from the trace so far.
fn work(recorder: &Recorder) -> Work {
    let state = recorder.lock();
    let mut grants = BTreeSet::new();
    let mut lease_keys: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut removed = BTreeSet::new();
    for e in &state.trace.events {
        match &e.kind {
            EventKind::LockGranted { name, revision, .. } => {
                grants.insert((name.clone(), *revision));
            }
            EventKind::LeaseKeyPut {
                lease,
                key,
                outcome,
                ..
            } if outcome != "fail" => lease_keys.entry(*lease).or_default().push(key.clone()),
            EventKind::LeaseRemoved { lease, .. } => {
                removed.insert(*lease);
            }
            _ => {}
        }
    }
    lease_keys.retain(|lease, _| removed.contains(lease));
    Work { grants, lease_keys }
}

pub async fn run(auditor: u64, scenario: Scenario, recorder: Arc<Recorder>) {
    // No await in between: nothing is recorded between the snapshot and the marker.
    let Work { grants, lease_keys } = work(&recorder);
    recorder.record(auditor, EventKind::AuditStarted);
    let conn = connect(&scenario);
    for (name, revision) in grants {
        let prefix = format!("{name}/");
        let request = RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(&prefix),
            revision,
            ..Default::default()
        };
        let answer = conn
            .call_until(READ_PATIENCE, |ch, _| {
                let request = request.clone();
                async move { KvClient::new(ch).range(request).await }
            })
            .await;
        let (keys, error) = match answer {
            Ok(r) => (
                r.into_inner()
                    .kvs
                    .iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(&kv.key).into_owned(),
                            kv.create_revision,
                        )
                    })
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        recorder.record(
            auditor,
            EventKind::LockAudit {
                name,
                revision,
                keys,
                error,
            },
        );
    }
    for (lease, keys) in lease_keys {
        for key in keys {
            read_lease_key(&conn, &recorder, auditor, lease, &key, READ_PATIENCE).await;
        }
    }
}
