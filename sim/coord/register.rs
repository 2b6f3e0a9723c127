//! The etcd KV workload: clients read (linearizable Range), write (Put) and
//! compare-and-set (a Txn comparing the value) a few integer registers,
//! recording each operation's invoke and completion for the linearizability
//! checker. Values are unique in the run, so a read names the write it saw.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coordlab::client::{ClientError, Connection};
use coordlab::coord::errors::CoordError;
use coordlab::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::request_op::Request;
use coordlab::proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use madsim::rand::{thread_rng, Rng};
use tonic::Status;

use super::conn::connect;
use super::now_ms;
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::trace::EventKind;
use crate::sim::workload::WorkloadControl;

/// Prefix of the registers' keys.
pub const PREFIX: &str = "reg/";

/// Clients move to fresh registers (`reg/<epoch>/<i>`) this often. A write whose
/// outcome is unknown may take effect at any later time, so the linearizability
/// search must consider it concurrent with everything after it on its key; keeping
/// each key's history short keeps that search small (Jepsen's "independent" keys).
const KEY_EPOCH_MS: u64 = 3_000;

enum Op {
    Read,
    Write(i64),
    Cas { from: i64, to: i64 },
}

/// What an operation ended with.
struct Outcome {
    outcome: &'static str,
    value: Option<i64>,
    swapped: Option<bool>,
    revision: Option<i64>,
    error: Option<String>,
}

impl Outcome {
    fn ok(value: Option<i64>, swapped: Option<bool>, revision: Option<i64>) -> Self {
        Outcome {
            outcome: "ok",
            value,
            swapped,
            revision,
            error: None,
        }
    }

    /// A failed write: certainly without effect when the member refused it before
    /// proposing (etcd's "no leader" / "not leader"), else it may still apply.
    fn failed_write(status: Status) -> Self {
        let refused = [CoordError::NoLeader, CoordError::NotLeader]
            .iter()
            .any(|e| status.message() == e.to_string());
        Outcome {
            outcome: if refused { "fail" } else { "unknown" },
            value: None,
            swapped: None,
            revision: None,
            error: Some(status.to_string()),
        }
    }

    /// A read that failed had no effect.
    fn failed_read(error: ClientError) -> Self {
        Outcome {
            outcome: "fail",
            value: None,
            swapped: None,
            revision: None,
            error: Some(error.to_string()),
        }
    }
}

pub async fn run(
    client: u64,
    scenario: Scenario,
    recorder: Arc<Recorder>,
    control: WorkloadControl,
) {
    let spec = &scenario.coord;
    let conn = connect(&scenario);
    // The last value this client saw in each register: what a cas expects.
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut op_no = 0u64;
    while !control.stopped() {
        let pause = thread_rng().gen_range(spec.interval_min_ms..=spec.interval_max_ms);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        op_no += 1;
        let epoch = now_ms(&recorder) / KEY_EPOCH_MS;
        let key = format!(
            "{PREFIX}{epoch}/{}",
            thread_rng().gen_range(0..spec.registers)
        );
        let value = (client as i64) * 1_000_000 + op_no as i64;
        let roll: f64 = thread_rng().gen_range(0.0..1.0);
        let op = match seen.get(&key) {
            _ if roll < spec.register_read_fraction => Op::Read,
            Some(&from) if roll < spec.register_read_fraction + spec.register_cas_fraction => {
                Op::Cas { from, to: value }
            }
            _ => Op::Write(value),
        };
        let (kind, value, expect) = match op {
            Op::Read => ("read", None, None),
            Op::Write(v) => ("write", Some(v), None),
            Op::Cas { from, to } => ("cas", Some(to), Some(from)),
        };
        recorder.record(
            client,
            EventKind::RegisterInvoke {
                client,
                op: op_no,
                key: key.clone(),
                kind: kind.into(),
                value,
                expect,
            },
        );
        let done = match op {
            Op::Read => read(&conn, &key, conn.timeout() * 2).await,
            Op::Write(v) => write(&conn, &key, v).await,
            Op::Cas { from, to } => cas(&conn, &key, from, to).await,
        };
        if done.outcome == "ok" {
            match (done.value, value) {
                (Some(read), _) => {
                    seen.insert(key.clone(), read);
                }
                (None, Some(written)) if done.swapped != Some(false) => {
                    seen.insert(key.clone(), written);
                }
                _ => {}
            }
        }
        recorder.record(
            client,
            EventKind::RegisterComplete {
                client,
                op: op_no,
                outcome: done.outcome.into(),
                value: done.value,
                swapped: done.swapped,
                revision: done.revision,
                error: done.error,
            },
        );
    }
}

/// A linearizable read, retried on other members (it has no effect).
async fn read(conn: &Connection, key: &str, total: Duration) -> Outcome {
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
    match answer.map(|r| r.into_inner()) {
        Ok(r) => {
            // A value no client wrote reads as i64::MIN: the checker finds it impossible.
            let value = r
                .kvs
                .first()
                .map(|kv| parse_value(&kv.value).unwrap_or(i64::MIN));
            Outcome::ok(value, None, r.header.map(|h| h.revision))
        }
        Err(error) => Outcome::failed_read(error),
    }
}

fn parse_value(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

async fn write(conn: &Connection, key: &str, value: i64) -> Outcome {
    let request = PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.to_string().into_bytes(),
        ..Default::default()
    };
    match conn
        .once(|ch| async move { KvClient::new(ch).put(request).await })
        .await
    {
        Ok(r) => Outcome::ok(None, None, r.into_inner().header.map(|h| h.revision)),
        Err(status) => Outcome::failed_write(status),
    }
}

async fn cas(conn: &Connection, key: &str, from: i64, to: i64) -> Outcome {
    let request = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(TargetUnion::Value(from.to_string().into_bytes())),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                value: to.to_string().into_bytes(),
                ..Default::default()
            })),
        }],
        failure: Vec::new(),
    };
    match conn
        .once(|ch| async move { KvClient::new(ch).txn(request).await })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            Outcome::ok(None, Some(r.succeeded), r.header.map(|h| h.revision))
        }
        Err(status) => Outcome::failed_write(status),
    }
}
