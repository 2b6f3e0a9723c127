//! The client core against fake members over real gRPC on 127.0.0.1: where each
//! attempt goes, what is retried, what the deadlines cut, what each write carries.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::oneshot;
use tonic::transport::server::Router;
use tonic::{Code, Request, Response, Status};

use super::{ClientError, Connection, ConnectionConfig, RetryConfig, WRITE_ID_KEY};
use crate::proto::etcdserverpb::kv_server::{Kv, KvServer};
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::raft::rpc_status::status_from_raft_error;
use crate::raft::RaftError;

/// How a fake member answers a put.
#[derive(Clone)]
enum Answer {
    Ok,
    /// coordlab's "not leader", naming the leader at this address.
    NotLeader(String),
    /// A refusal no retry can fix.
    Refuse,
    Unavailable,
    /// Never answers.
    Hang,
}

/// Every put a member received: (member, its `coordlab-write-id`).
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct FakeMember {
    name: String,
    answer: Answer,
    log: Log,
}

#[tonic::async_trait]
impl Kv for FakeMember {
    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let id = request
            .metadata()
            .get(WRITE_ID_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.log.lock().unwrap().push((self.name.clone(), id));
        match &self.answer {
            Answer::Ok => Ok(Response::new(PutResponse {
                header: Some(ResponseHeader {
                    revision: 7,
                    ..Default::default()
                }),
                prev_kv: None,
            })),
            Answer::NotLeader(addr) => Err(status_from_raft_error(RaftError::NotLeader {
                leader_id: 2,
                leader_addr: Some(addr.clone()),
            })),
            Answer::Refuse => Err(Status::invalid_argument("etcdserver: key is not provided")),
            Answer::Unavailable => Err(Status::unavailable("etcdserver: no leader")),
            Answer::Hang => std::future::pending().await,
        }
    }

    async fn range(&self, _: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        Err(Status::unimplemented("fake member"))
    }

    async fn delete_range(
        &self,
        _: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("fake member"))
    }

    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Err(Status::unimplemented("fake member"))
    }

    async fn compact(
        &self,
        _: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Err(Status::unimplemented("fake member"))
    }
}

/// A fake member serving until dropped.
pub(crate) struct Member {
    pub addr: String,
    _stop: oneshot::Sender<()>,
}

/// Serves `router` on a free port of 127.0.0.1 until the member is dropped; returns
/// once it listens (a refused connection would be an extra attempt).
pub(crate) async fn serve(router: Router) -> Member {
    let addr: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(router.serve_with_shutdown(addr, async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "fake member at {addr} never listened"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Member {
        addr: addr.to_string(),
        _stop: stop,
    }
}

async fn start(name: &str, answer: Answer, log: &Log) -> Member {
    let service = FakeMember {
        name: name.to_string(),
        answer,
        log: log.clone(),
    };
    serve(tonic::transport::Server::builder().add_service(KvServer::new(service))).await
}

fn quick_retries(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        multiplier: 2.0,
    }
}

fn put() -> PutRequest {
    PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

fn members(log: &Log) -> Vec<String> {
    log.lock().unwrap().iter().map(|(m, _)| m.clone()).collect()
}

#[tokio::test]
async fn a_not_leader_answer_sends_the_next_attempt_to_the_leader_it_names() {
    let log = Log::default();
    let leader = start("leader", Answer::Ok, &log).await;
    let follower = start("follower", Answer::NotLeader(leader.addr.clone()), &log).await;
    // Only the follower is given: the leader is learned from its answer.
    let mut config = ConnectionConfig::new([follower.addr.clone()]);
    config.retry = quick_retries(2);
    let conn = Connection::new(config).unwrap();

    let answer = conn.put(put()).await.unwrap();

    assert_eq!(answer.header.unwrap().revision, 7);
    assert_eq!(members(&log), ["follower", "leader"]);
    assert_eq!(conn.endpoint(), leader.addr);
    assert_eq!(
        conn.endpoints(),
        [follower.addr.clone(), leader.addr.clone()]
    );
}

#[tokio::test]
async fn every_attempt_of_one_write_carries_its_number_and_the_next_write_the_next() {
    let log = Log::default();
    let a = start("a", Answer::Unavailable, &log).await;
    let b = start("b", Answer::Unavailable, &log).await;
    let mut config = ConnectionConfig::new([a.addr.clone(), b.addr.clone()]);
    config.retry = quick_retries(3);
    let conn = Connection::new(config).unwrap();

    let first = conn.put(put()).await.unwrap_err();
    assert!(
        matches!(first, ClientError::Unavailable { attempts: 3, .. }),
        "{first:?}"
    );
    conn.put(put()).await.unwrap_err();

    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 6);
    let ids: Vec<String> = log.iter().map(|(_, id)| id.clone().unwrap()).collect();
    let (client, seq) = ids[0].split_once('-').unwrap();
    assert_ne!(client, "0");
    assert_eq!(seq, "1");
    assert!(ids[..3].iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(ids[3], format!("{client}-2"));
    // Each failure moved the connection on: the members alternate.
    for pair in log.windows(2) {
        assert_ne!(pair[0].0, pair[1].0, "{log:?}");
    }
}

#[tokio::test]
async fn a_refusal_no_retry_can_fix_is_returned_after_one_attempt() {
    let log = Log::default();
    let a = start("a", Answer::Refuse, &log).await;
    let mut config = ConnectionConfig::new([a.addr.clone()]);
    config.retry = quick_retries(5);
    let conn = Connection::new(config).unwrap();

    let error = conn.put(put()).await.unwrap_err();

    assert_eq!(error.code(), Some(Code::InvalidArgument), "{error:?}");
    assert_eq!(members(&log), ["a"]);
}

#[tokio::test]
async fn a_silent_member_is_cut_at_the_attempt_deadline_and_the_call_at_its_deadline() {
    let log = Log::default();
    let a = start("a", Answer::Hang, &log).await;
    let config = ConnectionConfig::new([a.addr.clone()])
        .until(Duration::from_millis(200), Duration::from_millis(700));
    let conn = Connection::new(config).unwrap();

    let began = Instant::now();
    let error = conn.put(put()).await.unwrap_err();
    let took = began.elapsed();

    assert!(
        matches!(error, ClientError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(
        took >= Duration::from_millis(650),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "deadline not kept: {took:?}");
    let attempts = log.lock().unwrap().len();
    assert!((2..=4).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn a_closed_connection_sends_nothing() {
    let log = Log::default();
    let a = start("a", Answer::Ok, &log).await;
    let conn = Connection::new(ConnectionConfig::new([a.addr.clone()])).unwrap();
    conn.close();

    assert_eq!(conn.put(put()).await.unwrap_err(), ClientError::Closed);
    assert!(log.lock().unwrap().is_empty());
}

#[test]
fn bad_endpoints_are_refused_by_name() {
    assert_eq!(
        Connection::new(ConnectionConfig::new(Vec::<String>::new())).err(),
        Some(ClientError::NoEndpoints)
    );
    let error = Connection::new(ConnectionConfig::new(["not a host:port"])).err();
    assert!(
        matches!(&error, Some(ClientError::InvalidEndpoint { endpoint, .. }) if endpoint == "not a host:port"),
        "{error:?}"
    );
}
