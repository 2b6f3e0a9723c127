//! One connection to a cluster speaking the etcd v3 API (coordd, or etcd itself):
//! a channel per endpoint, the endpoint in use, the auth token. Every member serves
//! every request, so a call stays on the member that last answered and moves to the
//! next one on a retryable failure ("not leader", unavailable, timed out), with
//! exponential backoff and jitter, for at most `retry.max_attempts` attempts.
//!
//! Writes are numbered (`coordlab-write-id`: this connection's client id and a
//! sequence number, the same on every attempt of one call): coordd applies a retried
//! write once; etcd ignores the number.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::error::CoordinatorError;
use super::options::{CoordinatorConfig, RetryConfig};
use crate::proto::etcdserverpb::auth_client::AuthClient;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::{
    AuthenticateRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

pub use crate::proto::metadata::{TOKEN_KEY, WRITE_ID_KEY};

pub struct Connection {
    endpoints: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
    token: Mutex<Option<MetadataValue<Ascii>>>,
    credentials: Option<(String, String)>,
    timeout: Duration,
    retry: RetryConfig,
    closed: AtomicBool,
    /// This connection's client id for numbered writes (never 0).
    client_id: u64,
    /// The number of the last write this connection made.
    last_seq: AtomicU64,
}

pub use crate::proto::WriteId;

/// Adds a write's number to a request's metadata (`CLIENT-SEQ`).
pub fn attach_write_id<T>(id: WriteId, request: &mut Request<T>) {
    let value = crate::proto::metadata::write_id_text(&id)
        .parse()
        .expect("digits and a dash are ASCII");
    request.metadata_mut().insert(WRITE_ID_KEY, value);
}

/// Whether another attempt (on this or another member) may succeed.
pub fn is_retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    ) || s.message() == "etcdserver: not leader"
}

fn is_stale_token(s: &Status) -> bool {
    s.code() == Code::Unauthenticated && s.message() == "etcdserver: invalid auth token"
}

impl Connection {
    /// Validates the endpoints and, with credentials, authenticates.
    pub async fn connect(config: &CoordinatorConfig) -> Result<Connection, CoordinatorError> {
        if config.endpoints.is_empty() {
            return Err(CoordinatorError::NoEndpoints);
        }
        let channels = config
            .endpoints
            .iter()
            .map(|e| {
                Endpoint::from_shared(format!("http://{e}"))
                    .map(|ep| ep.connect_timeout(config.timeout).connect_lazy())
                    .map_err(|err| CoordinatorError::InvalidEndpoint {
                        endpoint: e.clone(),
                        reason: err.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let conn = Connection {
            endpoints: config.endpoints.clone(),
            // Clients spread over the members, as etcd's round-robin balancer does.
            current: AtomicUsize::new(madsim::rand::random::<usize>() % channels.len()),
            token: Mutex::new(None),
            credentials: config.credentials(),
            timeout: config.timeout,
            retry: config.retry.clone(),
            closed: AtomicBool::new(false),
            channels,
            client_id: madsim::rand::random::<u64>().max(1),
            last_seq: AtomicU64::new(0),
        };
        conn.authenticate().await?;
        Ok(conn)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn retry(&self) -> &RetryConfig {
        &self.retry
    }

    /// The channel to the member in use.
    pub fn channel(&self) -> Channel {
        self.channels[self.current.load(Ordering::Relaxed) % self.channels.len()].clone()
    }

    /// Moves off the member in use (after a failure or a broken stream).
    pub fn rotate(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    fn endpoint(&self) -> &str {
        &self.endpoints[self.current.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    /// A request carrying the auth token, if any.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        if let Some(t) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            r.metadata_mut().insert(TOKEN_KEY, t);
        }
        r
    }

    /// The number for this connection's next write.
    pub fn next_write_id(&self) -> WriteId {
        WriteId {
            client: self.client_id,
            seq: self.last_seq.fetch_add(1, Ordering::Relaxed) + 1,
        }
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

    async fn authenticate(&self) -> Result<(), CoordinatorError> {
        let Some((name, password)) = self.credentials.clone() else {
            return Ok(());
        };
        let token = self
            .call_inner(false, &self.retry, self.timeout, |ch, _| {
                let req = AuthenticateRequest {
                    name: name.clone(),
                    password: password.clone(),
                };
                async move { AuthClient::new(ch).authenticate(req).await }
            })
            .await?
            .into_inner()
            .token;
        let token = token.parse().map_err(|_| CoordinatorError::Rejected {
            endpoint: self.endpoint().to_string(),
            code: Code::Internal,
            message: "the server's token is not ASCII".into(),
        })?;
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
        Ok(())
    }

    /// Runs one unary call with retries, failover and re-authentication.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, CoordinatorError>
    where
        F: FnMut(Channel, &Self) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_inner(true, &self.retry, self.timeout, f).await
    }

    /// Like [`Connection::call`] with its own retry policy and attempt deadline (a
    /// keep-alive must fit its retries inside the lease's TTL).
    pub async fn call_with<T, F, Fut>(
        &self,
        retry: &RetryConfig,
        attempt_timeout: Duration,
        f: F,
    ) -> Result<T, CoordinatorError>
    where
        F: FnMut(Channel, &Self) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_inner(true, retry, attempt_timeout, f).await
    }

    async fn call_inner<T, F, Fut>(
        &self,
        may_reauth: bool,
        retry: &RetryConfig,
        attempt_timeout: Duration,
        mut f: F,
    ) -> Result<T, CoordinatorError>
    where
        F: FnMut(Channel, &Self) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let max = retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            if self.is_closed() {
                return Err(CoordinatorError::Closed);
            }
            attempt += 1;
            let endpoint = self.endpoint().to_string();
            let outcome = tokio::time::timeout(attempt_timeout, f(self.channel(), self)).await;
            let last = match outcome {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(s)) if may_reauth && is_stale_token(&s) => {
                    // Tokens die with password changes and restarts: get a new one.
                    Box::pin(self.authenticate()).await?;
                    format!("{endpoint}: {}", s.message())
                }
                Ok(Err(s)) if !is_retryable(&s) => {
                    return Err(CoordinatorError::Rejected {
                        endpoint,
                        code: s.code(),
                        message: s.message().to_string(),
                    })
                }
                Ok(Err(s)) => {
                    self.rotate();
                    format!("{endpoint}: {}", s.message())
                }
                Err(_) => {
                    self.rotate();
                    format!("{endpoint}: attempt timed out after {attempt_timeout:?}")
                }
            };
            if attempt >= max {
                return Err(CoordinatorError::Unavailable {
                    attempts: attempt,
                    last,
                });
            }
            tracing::debug!(attempt, error = %last, "retrying");
            tokio::time::sleep(retry.delay(attempt)).await;
        }
    }

    // The etcd KV calls, each one `call` (retries, failover, token).

    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, CoordinatorError> {
        self.call(|ch, c| {
            let req = c.request(req.clone());
            async move { KvClient::new(ch).range(req).await }
        })
        .await
        .map(|r| r.into_inner())
    }

    pub async fn put(&self, req: PutRequest) -> Result<PutResponse, CoordinatorError> {
        self.put_as(req, self.next_write_id()).await
    }

    /// A put numbered `id` (see [`Connection::next_write_id`]).
    pub async fn put_as(
        &self,
        req: PutRequest,
        id: WriteId,
    ) -> Result<PutResponse, CoordinatorError> {
        self.call(|ch, c| {
            let req = c.numbered(req.clone(), id);
            async move { KvClient::new(ch).put(req).await }
        })
        .await
        .map(|r| r.into_inner())
    }

    pub async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, CoordinatorError> {
        let id = self.next_write_id();
        self.call(|ch, c| {
            let req = c.numbered(req.clone(), id);
            async move { KvClient::new(ch).delete_range(req).await }
        })
        .await
        .map(|r| r.into_inner())
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, CoordinatorError> {
        let id = self.next_write_id();
        self.call(|ch, c| {
            let req = c.numbered(req.clone(), id);
            async move { KvClient::new(ch).txn(req).await }
        })
        .await
        .map(|r| r.into_inner())
    }
}
