//! The key-value workload: clients on their own madsim nodes issue etcd puts and
//! linearizable ranges through the client library's connection (numbered writes,
//! retried until the operation's deadline), recording each operation's invoke and
//! completion in the trace. With `late_duplicate_fraction`, some acknowledged puts
//! reach a random member once more after the client's next write completed — a
//! retry the network delayed past the write that followed it — which coordd must
//! refuse without applying (`coord::applied_writes`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coordlab::client::{attach_write_id, ClientError, Connection, ConnectionConfig, WriteId};
use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::{PutRequest, RangeRequest};
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use tonic::Code;

use super::observer::Recorder;
use super::scenario::Scenario;
use super::trace::EventKind;
use super::world::node_addr;
use crate::sim::nodes::BuildForRun as _;

/// Trace node ids of clients start here.
pub const CLIENT_ID_BASE: u64 = 100;

/// Tells the clients to stop issuing operations.
#[derive(Clone, Default)]
pub struct WorkloadControl(Arc<AtomicBool>);

impl WorkloadControl {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn start_clients(
    handle: &Handle,
    scenario: &Scenario,
    recorder: Arc<Recorder>,
    control: WorkloadControl,
) {
    for c in 1..=scenario.workload.clients {
        let node = handle
            .create_node()
            .name(format!("client-{c}"))
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, c as u8)))
            .build_for_run();
        node.spawn(run_client(
            CLIENT_ID_BASE + c,
            scenario.clone(),
            recorder.clone(),
            control.clone(),
        ));
    }
}

async fn run_client(
    client_id: u64,
    scenario: Scenario,
    recorder: Arc<Recorder>,
    control: WorkloadControl,
) {
    let w = &scenario.workload;
    let endpoints = (1..=scenario.cluster.nodes).map(|id| node_addr(id).to_string());
    let op_timeout = Duration::from_millis(w.op_timeout_ms);
    let attempt_timeout = Duration::from_millis(w.attempt_timeout_ms.min(w.op_timeout_ms));
    let config = ConnectionConfig::new(endpoints).until(attempt_timeout, op_timeout);
    let conn = Connection::new(config).expect("simulated addresses are valid endpoints");
    let mut op = 0u64;
    let mut held: Option<(u64, PutRequest, WriteId)> = None;
    while !control.stopped() {
        let pause = thread_rng().gen_range(w.min_interval_ms..=w.max_interval_ms);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        op += 1;
        let key = format!("k{}", thread_rng().gen_range(0..w.keys));
        let read = thread_rng().gen_bool(w.read_fraction);
        let value = (!read).then(|| format!("c{client_id}-{op}"));
        recorder.record(
            client_id,
            EventKind::ClientInvoke {
                client: client_id,
                op,
                kind: if read { "get" } else { "put" }.into(),
                key: key.clone(),
                value: value.clone(),
            },
        );
        let (outcome, got, revision) = if read {
            let range = RangeRequest {
                key: key.clone().into_bytes(),
                ..Default::default()
            };
            match conn.range(range).await {
                Ok(r) => (
                    "ok",
                    r.kvs
                        .first()
                        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                    None,
                ),
                // A read that failed had no effect.
                _ => ("fail", None, None),
            }
        } else {
            let put = PutRequest {
                key: key.clone().into_bytes(),
                value: value.expect("puts carry a value").into_bytes(),
                ..Default::default()
            };
            let id = conn.next_write_id();
            let overtaken = held.take();
            let answer = match conn.put_as(put.clone(), id).await {
                Ok(r) => ("ok", None, r.header.map(|h| h.revision)),
                Err(ClientError::Rejected {
                    code: Code::InvalidArgument,
                    ..
                }) => ("fail", None, None),
                // Timed out or refused after retries: it may still be applied.
                _ => ("unknown", None, None),
            };
            if let Some((late_op, request, id)) = overtaken {
                send_late_duplicate(client_id, late_op, request, id, &scenario, &recorder).await;
            }
            if answer.0 == "ok" && thread_rng().gen_bool(w.late_duplicate_fraction) {
                held = Some((op, put, id));
            }
            answer
        };
        recorder.record(
            client_id,
            EventKind::ClientComplete {
                client: client_id,
                op,
                outcome: outcome.into(),
                value: got,
                revision,
            },
        );
    }
    conn.close();
}

/// Sends `request` (put `op` of `client_id`, numbered `id`, acknowledged before the
/// client's latest write) to a random member once more, and records that it did.
async fn send_late_duplicate(
    client_id: u64,
    op: u64,
    request: PutRequest,
    id: WriteId,
    scenario: &Scenario,
    recorder: &Recorder,
) {
    let member = thread_rng().gen_range(1..=scenario.cluster.nodes);
    recorder.record(
        client_id,
        EventKind::LateDuplicate {
            client: client_id,
            op,
            to: member,
        },
    );
    let Ok(endpoint) =
        tonic::transport::Endpoint::from_shared(format!("http://{}", node_addr(member)))
    else {
        return;
    };
    let mut request = tonic::Request::new(request);
    attach_write_id(id, &mut request);
    let send = async {
        let channel = endpoint.connect().await.ok()?;
        KvClient::new(channel).put(request).await.ok()
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), send).await;
}
