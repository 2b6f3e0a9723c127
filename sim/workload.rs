//! The KV client workload: clients on their own madsim nodes issue puts and
//! linearizable gets through the leader-following client, recording each
//! operation's invoke and completion in the trace. With `late_duplicate_fraction`,
//! some acknowledged puts reach a random member once more after the client's next
//! write completed — a retry the network delayed past the write that followed it —
//! which the write session must answer without applying.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coordlab::client::{ClientConfig, CoordClient};
use coordlab::proto::kv_client::KvClient;
use coordlab::proto::{PutRequest, RequestSession};
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use tonic::Code;

use super::observer::Recorder;
use super::scenario::Scenario;
use super::trace::EventKind;
use super::world::node_addr;

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
            .build();
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
    let endpoints = (1..=scenario.cluster.nodes)
        .map(|id| node_addr(id).to_string())
        .collect();
    let mut config = ClientConfig::new(endpoints);
    config.attempt_timeout = Duration::from_millis(w.attempt_timeout_ms.min(w.op_timeout_ms));
    config.total_timeout = Duration::from_millis(w.op_timeout_ms);
    // The session's requests are numbered from 1 in order: the workload knows the
    // seq of each put it makes, for its late duplicates.
    config.session_id = Some(client_id);
    let mut client = CoordClient::new(config).expect("valid endpoints");
    let mut op = 0u64;
    let mut puts = 0u64;
    let mut held: Option<(u64, PutRequest)> = None;
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
        let (outcome, got, index) = if read {
            match client.get(&key, false).await {
                Ok(r) => (
                    "ok",
                    r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                    None,
                ),
                // A read that failed had no effect.
                Err(_) => ("fail", None, None),
            }
        } else {
            let value = value.expect("puts carry a value");
            puts += 1;
            let overtaken = held.take();
            let answer = match client.put(&key, value.as_bytes()).await {
                Ok(r) => ("ok", None, Some(r.index)),
                Err(e) if e.code() == Some(Code::InvalidArgument) => ("fail", None, None),
                // Timed out or dropped after retries: it may still be applied.
                Err(_) => ("unknown", None, None),
            };
            if let Some((late_op, request)) = overtaken {
                send_late_duplicate(client_id, late_op, request, &scenario, &recorder).await;
            }
            if answer.0 == "ok" && thread_rng().gen_bool(w.late_duplicate_fraction) {
                let session = RequestSession {
                    client_id,
                    request_seq: puts,
                };
                let request = PutRequest {
                    key: key.clone(),
                    value: value.into_bytes(),
                    session: Some(session),
                };
                held = Some((op, request));
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
                index,
            },
        );
    }
}

/// Sends `request` (put `op` of `client_id`, acknowledged before the client's latest
/// write) to a random member once more, and records that it did.
async fn send_late_duplicate(
    client_id: u64,
    op: u64,
    request: PutRequest,
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
    let send = async {
        let channel = endpoint.connect().await.ok()?;
        KvClient::new(channel).put(request).await.ok()
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), send).await;
}
