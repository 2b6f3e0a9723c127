//! One connection to a cluster: a channel per member, the member in use, the auth
//! token. Every call goes to the member in use; a retryable failure (see
//! [`is_retryable`]) moves it to the leader the answer names, if it names one, or
//! to the next member, with jittered exponential backoff, until the call's attempts
//! or its deadline run out. Each attempt has its own deadline, on the node's clock
//! (tokio's, madsim's in simulation): a partition can swallow an answer on a
//! connection that stays open.
//!
//! Writes are numbered (`coordlab-write-id`: this connection's client id and a
//! sequence number, the same on every attempt of one call): coordd applies a retried
//! write once; etcd ignores the number.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::error::ClientError;
use super::retry::{is_retryable, RetryConfig};
use crate::proto::etcdserverpb::auth_client::AuthClient;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::{
    AuthenticateRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::raft::rpc_status::leader_hint;

pub use crate::proto::metadata::{TOKEN_KEY, WRITE_ID_KEY};

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    /// Member addresses (`host:port`).
    pub endpoints: Vec<String>,
    /// `(name, password)` for a cluster with auth enabled.
    pub credentials: Option<(String, String)>,
    /// Deadline of one attempt (and of connecting).
    pub attempt_timeout: Duration,
    pub retry: RetryConfig,
    /// Deadline of a whole call, retries included (`None`: attempts alone bound it).
    pub deadline: Option<Duration>,
}

impl ConnectionConfig {
    /// 5 s attempts, seed 001's retry policy, no call deadline.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ConnectionConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            credentials: None,
            attempt_timeout: Duration::from_secs(5),
            retry: RetryConfig::default(),
            deadline: None,
        }
    }

    /// Calls retried until `deadline`, each attempt within `attempt_timeout`.
    pub fn until(mut self, attempt_timeout: Duration, deadline: Duration) -> Self {
        self.attempt_timeout = attempt_timeout;
        self.deadline = Some(deadline);
        self.retry = RetryConfig::until_deadline();
        self
    }
}

struct Member {
    endpoint: String,
    channel: Channel,
}

pub struct Connection {
    /// Members in the order given; a leader named by a "not leader" answer that was
    /// not given is added.
    members: Mutex<Vec<Member>>,
    current: AtomicUsize,
    token: Mutex<Option<MetadataValue<Ascii>>>,
    config: ConnectionConfig,
    closed: AtomicBool,
    /// Idle write sessions: a client id for numbered writes (never 0) and the
    /// number of its last write. The server refuses a client's write overtaken by
    /// a later-numbered one (Raft §6.3), so a session carries one write at a time;
    /// concurrent writes each take their own, and a new one is opened when all
    /// are busy. A connection used by one task at a time only ever uses its first.
    sessions: Mutex<Vec<WriteId>>,
}

pub use crate::proto::WriteId;

/// A write session with a fresh client id (never 0), before its first write.
fn new_session() -> WriteId {
    WriteId {
        client: madsim::rand::random::<u64>().max(1),
        seq: 0,
    }
}

/// Adds a write's number to a request's metadata (`CLIENT-SEQ`).
pub fn attach_write_id<T>(id: WriteId, request: &mut Request<T>) {
    let value = crate::proto::metadata::write_id_text(&id)
        .parse()
        .expect("digits and a dash are ASCII");
    request.metadata_mut().insert(WRITE_ID_KEY, value);
}

fn is_stale_token(s: &Status) -> bool {
    s.code() == Code::Unauthenticated && s.message() == "etcdserver: invalid auth token"
}

fn member(endpoint: &str, connect_timeout: Duration) -> Result<Member, ClientError> {
    let channel = Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|err| ClientError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: err.to_string(),
        })?
        .connect_timeout(connect_timeout)
        .connect_lazy();
    Ok(Member {
        endpoint: endpoint.to_string(),
        channel,
    })
}

impl Connection {
    /// Validates the endpoints; nothing is sent until the first call.
    pub fn new(config: ConnectionConfig) -> Result<Connection, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let members = config
            .endpoints
            .iter()
            .map(|e| member(e, config.attempt_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Connection {
            // Clients spread over the members, as etcd's round-robin balancer does.
            current: AtomicUsize::new(madsim::rand::random::<usize>() % members.len()),
            members: Mutex::new(members),
            token: Mutex::new(None),
            config,
            closed: AtomicBool::new(false),
            sessions: Mutex::new(vec![new_session()]),
        })
    }

    /// [`Connection::new`], then authenticates if the config has credentials.
    pub async fn connect(config: ConnectionConfig) -> Result<Connection, ClientError> {
        let conn = Connection::new(config)?;
        conn.authenticate().await?;
        Ok(conn)
    }

    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    pub fn timeout(&self) -> Duration {
        self.config.attempt_timeout
    }

    pub fn retry(&self) -> &RetryConfig {
        &self.config.retry
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The endpoints, given and learned.
    pub fn endpoints(&self) -> Vec<String> {
        self.members().iter().map(|m| m.endpoint.clone()).collect()
    }

    /// The member in use (one lock: `members` is not reentrant).
    fn current(&self) -> (String, Channel) {
        let members = self.members();
        let m = &members[self.current.load(Ordering::Relaxed) % members.len()];
        (m.endpoint.clone(), m.channel.clone())
    }

    /// The member in use.
    pub fn endpoint(&self) -> String {
        self.current().0
    }

    /// The channel to the member in use.
    pub fn channel(&self) -> Channel {
        self.current().1
    }

    /// Moves off the member in use (after a failure or a broken stream).
    pub fn rotate(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves to `endpoint`, adding it if it is not one of the members yet.
    pub fn prefer(&self, endpoint: &str) -> Result<(), ClientError> {
        let mut members = self.members();
        let at = match members.iter().position(|m| m.endpoint == endpoint) {
            Some(at) => at,
            None => {
                members.push(member(endpoint, self.config.attempt_timeout)?);
                members.len() - 1
            }
        };
        self.current.store(at, Ordering::Relaxed);
        Ok(())
    }

    /// A request carrying the auth token, if any.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        if let Some(t) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            r.metadata_mut().insert(TOKEN_KEY, t);
        }
        r
    }

    /// The number for this connection's next write, for a caller that writes
    /// from one task at a time (and retries with the same number itself).
    pub fn next_write_id(&self) -> WriteId {
        let id = self.checkout();
        self.checkin(id);
        id
    }

    /// An idle session's next number (a new session if none is idle).
    fn checkout(&self) -> WriteId {
        let session = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(new_session);
        WriteId {
            client: session.client,
            seq: session.seq + 1,
        }
    }

    fn checkin(&self, last: WriteId) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.push(last);
    }

    /// Runs `write` with a number from a session no other write is using, and
    /// frees the session when done (or cancelled).
    async fn numbered_write<T, Fut>(&self, write: impl FnOnce(WriteId) -> Fut) -> T
    where
        Fut: Future<Output = T>,
    {
        struct Session<'a>(&'a Connection, WriteId);
        impl Drop for Session<'_> {
            fn drop(&mut self) {
                self.0.checkin(self.1);
            }
        }
        let session = Session(self, self.checkout());
        write(session.1).await
    }

    /// A request carrying the auth token and the write's number.
    pub fn numbered<T>(&self, message: T, id: WriteId) -> Request<T> {
        let mut r = self.request(message);
        attach_write_id(id, &mut r);
        r
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    async fn authenticate(&self) -> Result<(), ClientError> {
        let Some((name, password)) = self.config.credentials.clone() else {
            return Ok(());
        };
        let token = self
            .call_inner(
                false,
                &self.config.retry,
                self.config.attempt_timeout,
                self.config.deadline,
                |ch, _| {
                    let req = AuthenticateRequest {
                        name: name.clone(),
                        password: password.clone(),
                    };
                    async move { AuthClient::new(ch).authenticate(req).await }
                },
            )
            .await?
            .into_inner()
            .token;
        let token = token.parse().map_err(|_| ClientError::Rejected {
            endpoint: self.endpoint(),
            code: Code::Internal,
            message: "the server's token is not ASCII".into(),
        })?;
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
        Ok(())
    }

    /// Runs one unary call with retries, failover and re-authentication.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel, &Self) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = self.config.deadline;
        self.call_inner(
            true,
            &self.config.retry,
            self.config.attempt_timeout,
            deadline,
            f,
        )
        .await
    }

    /// Like [`Connection::call`], retried until `total` has passed whatever the
    /// config's attempts and deadline (a read the caller can wait for).
    pub async fn call_until<T, F, Fut>(&self, total: Duration, f: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel, &Self) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let retry = RetryConfig::until_deadline();
        self.call_with(&retry, self.config.attempt_timeout, Some(total), f)
            .await
    }

    /// Like [`Connection::call`] with its own retry policy, attempt deadline and
    /// call deadline (a keep-alive must fit its retries inside the lease's TTL).
    pub async fn call_with<T, F, Fut>(
        &self,
        retry: &RetryConfig,
        attempt_timeout: Duration,
        deadline: Option<Duration>,
        f: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Channel, &Self) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_inner(true, retry, attempt_timeout, deadline, f)
            .await
    }

    /// One attempt at `endpoint` (not necessarily a member in use), within the
    /// attempt deadline; no retry, no failover.
    pub async fn call_once_at<T, F, Fut>(&self, endpoint: &str, f: F) -> Result<T, ClientError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let channel = {
            let members = self.members();
            match members.iter().find(|m| m.endpoint == endpoint) {
                Some(m) => m.channel.clone(),
                None => member(endpoint, self.config.attempt_timeout)?.channel,
            }
        };
        let rejected = |code: Code, message: String| ClientError::Rejected {
            endpoint: endpoint.to_string(),
            code,
            message,
        };
        match tokio::time::timeout(self.config.attempt_timeout, f(channel)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(rejected(s.code(), s.message().to_string())),
            Err(_) => Err(rejected(
                Code::DeadlineExceeded,
                format!("attempt timed out after {:?}", self.config.attempt_timeout),
            )),
        }
    }

    /// One attempt at the member in use within `deadline`, as a gRPC status; any
    /// failure moves the connection to another member. For callers that must know
    /// that a write was sent exactly once (the simulation's workloads) and for
    /// streams (the answer is whatever `f` makes of the channel).
    pub async fn once_within<T, F, Fut>(&self, deadline: Duration, f: F) -> Result<T, Status>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let result = match tokio::time::timeout(deadline, f(self.channel())).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded("attempt deadline passed")),
        };
        if result.is_err() {
            self.rotate();
        }
        result
    }

    /// [`Connection::once_within`] the attempt deadline.
    pub async fn once<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.once_within(self.config.attempt_timeout, f).await
    }

    async fn call_inner<T, F, Fut>(
        &self,
        may_reauth: bool,
        retry: &RetryConfig,
        attempt_timeout: Duration,
        deadline: Option<Duration>,
        mut f: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Channel, &Self) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let give_up = deadline.map(|d| tokio::time::Instant::now() + d);
        let max = retry.max_attempts.max(1);
        let mut attempt = 0;
        let mut followed_hint = false;
        loop {
            if self.is_closed() {
                return Err(ClientError::Closed);
            }
            attempt += 1;
            let (endpoint, channel) = self.current();
            let this_attempt = match give_up {
                Some(at) => attempt_timeout
                    .min(at.saturating_duration_since(tokio::time::Instant::now()))
                    .max(Duration::from_millis(1)),
                None => attempt_timeout,
            };
            let outcome = tokio::time::timeout(this_attempt, f(channel, self)).await;
            let mut hinted = false;
            let last = match outcome {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(s)) if may_reauth && is_stale_token(&s) => {
                    // Tokens die with password changes and restarts: get a new one.
                    Box::pin(self.authenticate()).await?;
                    format!("{endpoint}: {}", s.message())
                }
                Ok(Err(s)) if !is_retryable(&s) => {
                    return Err(ClientError::Rejected {
                        endpoint,
                        code: s.code(),
                        message: s.message().to_string(),
                    })
                }
                Ok(Err(s)) => {
                    match leader_hint(&s) {
                        // Straight to the leader it names, once; then back off.
                        Some((_, Some(leader))) if !followed_hint && leader != endpoint => {
                            hinted = self.prefer(&leader).is_ok();
                        }
                        _ => self.rotate(),
                    }
                    format!("{endpoint}: {:?}: {}", s.code(), s.message())
                }
                Err(_) => {
                    self.rotate();
                    format!("{endpoint}: attempt timed out after {this_attempt:?}")
                }
            };
            let out_of_time = give_up.is_some_and(|at| tokio::time::Instant::now() >= at);
            if attempt >= max || out_of_time {
                return Err(ClientError::Unavailable {
                    attempts: attempt,
                    last,
                });
            }
            followed_hint = hinted;
            if hinted {
                continue;
            }
            tracing::debug!(attempt, error = %last, "retrying");
            let mut pause = retry.delay(attempt);
            if let Some(at) = give_up {
                pause = pause.min(at.saturating_duration_since(tokio::time::Instant::now()));
            }
            tokio::time::sleep(pause).await;
        }
    }

    // The etcd KV calls, each one `call` (retries, failover, token).

    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, ClientError> {
        self.call(|ch, c| {
            let req = c.request(req.clone());
            async move { KvClient::new(ch).range(req).await }
        })
        .await
        .map(tonic::Response::into_inner)
    }

    pub async fn put(&self, req: PutRequest) -> Result<PutResponse, ClientError> {
        self.numbered_write(|id| self.put_as(req, id)).await
    }

    /// A put numbered `id` (see [`Connection::next_write_id`]).
    pub async fn put_as(&self, req: PutRequest, id: WriteId) -> Result<PutResponse, ClientError> {
        self.call(|ch, c| {
            let req = c.numbered(req.clone(), id);
            async move { KvClient::new(ch).put(req).await }
        })
        .await
        .map(tonic::Response::into_inner)
    }

    pub async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ClientError> {
        self.numbered_write(|id| {
            self.call(move |ch, c| {
                let req = c.numbered(req.clone(), id);
                async move { KvClient::new(ch).delete_range(req).await }
            })
        })
        .await
        .map(tonic::Response::into_inner)
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, ClientError> {
        self.numbered_write(|id| {
            self.call(move |ch, c| {
                let req = c.numbered(req.clone(), id);
                async move { KvClient::new(ch).txn(req).await }
            })
        })
        .await
        .map(tonic::Response::into_inner)
    }
}
