//! A lease kept alive in the background, the thing locks and registrations hang on.
//! The client picks the lease id, so a grant retried after a lost answer cannot
//! create a second lease: the retry finds its own lease ("already exists").

use std::sync::Arc;
use std::time::Duration;

use crate::sync::watch;
use tokio::task::JoinHandle;

use super::error::CoordinatorError;
use crate::client::{ClientError, Connection, RetryConfig};
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
};
use crate::seams::mutants;

/// Who keeps a lease alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// A background task renews it every TTL/3 (locks and registrations that
    /// last as long as their holder).
    Background,
    /// Only [`KeptLease::renew`] does: it ends one TTL after the last renewal
    /// (holds with a deadline, as FlowBuilder's locks are).
    OnRequest,
}

pub struct KeptLease {
    id: i64,
    ttl: Duration,
    alive: watch::Receiver<bool>,
    /// The sender of `alive`, for an `OnRequest` lease (the keeper task holds it
    /// for a `Background` one).
    lost: Option<watch::Sender<bool>>,
    keeper: Option<JoinHandle<()>>,
    conn: Arc<Connection>,
    /// Revoked or abandoned on purpose: nothing left to do when dropped.
    settled: bool,
}

/// The TTL in whole seconds etcd takes (at least 1).
fn ttl_secs(ttl: Duration) -> i64 {
    (ttl.as_millis().div_ceil(1000) as i64).max(1)
}

fn is_lease_exists(e: &CoordinatorError) -> bool {
    matches!(e, CoordinatorError::Client(ClientError::Rejected { message, .. }) if message == "etcdserver: lease already exists")
}

impl KeptLease {
    /// Grants a lease of `ttl` and starts keeping it alive.
    pub async fn grant(
        conn: Arc<Connection>,
        ttl: Duration,
    ) -> Result<KeptLease, CoordinatorError> {
        KeptLease::grant_with(conn, ttl, Renewal::Background).await
    }

    /// Grants a lease of `ttl`, renewed as `renewal` says.
    pub async fn grant_with(
        conn: Arc<Connection>,
        ttl: Duration,
        renewal: Renewal,
    ) -> Result<KeptLease, CoordinatorError> {
        let id = (madsim::rand::random::<u64>() >> 1).max(1) as i64;
        let secs = ttl_secs(ttl);
        let mut attempts = 0;
        let granted = conn
            .call(|ch, c| {
                attempts += 1;
                let req = c.request(LeaseGrantRequest { ttl: secs, id });
                async move { LeaseClient::new(ch).lease_grant(req).await }
            })
            .await
            .map_err(CoordinatorError::from);
        let granted_ttl = match granted {
            Ok(r) => r.into_inner().ttl,
            // A retry found the lease its lost first attempt created.
            Err(e) if attempts > 1 && is_lease_exists(&e) => secs,
            Err(e) => return Err(e),
        };
        let ttl = Duration::from_secs(granted_ttl.max(1) as u64);
        let (tx, alive) = watch::channel(true);
        let (keeper, lost) = match renewal {
            Renewal::Background => (
                Some(tokio::spawn(keep_alive(conn.clone(), id, ttl, tx))),
                None,
            ),
            Renewal::OnRequest => (None, Some(tx)),
        };
        Ok(KeptLease {
            id,
            ttl,
            alive,
            lost,
            keeper,
            conn,
            settled: false,
        })
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// The granted TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// False once a keep-alive found the lease gone, or none succeeded within a TTL.
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Completes when the lease is lost.
    pub async fn lost(&self) {
        let mut alive = self.alive.clone();
        let _ = alive.wait_for(|a| !a).await;
    }

    /// The remaining TTL as the leader sees it.
    pub async fn remaining(&self) -> Result<Duration, CoordinatorError> {
        let id = self.id;
        let r = self
            .conn
            .call(|ch, c| {
                let req = c.request(LeaseTimeToLiveRequest { id, keys: false });
                async move { LeaseClient::new(ch).lease_time_to_live(req).await }
            })
            .await?
            .into_inner();
        if r.ttl < 0 {
            return Err(CoordinatorError::LeaseLost { lease: id });
        }
        Ok(Duration::from_secs(r.ttl as u64))
    }

    /// One keep-alive now: the lease lasts a whole TTL from here. Fails with
    /// `LeaseLost` (and the lease counts as lost) if it had already ended.
    pub async fn renew(&self) -> Result<(), CoordinatorError> {
        let ttl = renew_once(&self.conn, self.id).await?;
        if ttl <= 0 {
            if let Some(lost) = &self.lost {
                let _ = lost.send(false);
            }
            return Err(CoordinatorError::LeaseLost { lease: self.id });
        }
        Ok(())
    }

    fn stop_keeper(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
    }

    /// Stops the keep-alives and revokes the lease (its keys vanish).
    pub async fn revoke(mut self) -> Result<(), CoordinatorError> {
        self.stop_keeper();
        self.settled = true;
        revoke(&self.conn, self.id).await
    }

    /// Stops keeping the lease alive without revoking it (it expires on its own).
    pub fn abandon(mut self) {
        self.stop_keeper();
        self.settled = true;
    }
}

/// Revokes lease `id`; a lease already gone counts as revoked.
async fn revoke(conn: &Connection, id: i64) -> Result<(), CoordinatorError> {
    {
        match conn
            .call(|ch, c| {
                let req = c.request(LeaseRevokeRequest { id });
                async move { LeaseClient::new(ch).lease_revoke(req).await }
            })
            .await
            .map_err(CoordinatorError::from)
        {
            Ok(_) => Ok(()),
            // Already gone: what revoking wanted.
            Err(CoordinatorError::Client(ClientError::Rejected { message, .. }))
                if message == "etcdserver: requested lease not found" =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for KeptLease {
    /// A lease dropped without `revoke` or `abandon` (e.g. an `acquire` cancelled
    /// while queued) is revoked in the background, so its keys do not block others
    /// until the TTL runs out.
    fn drop(&mut self) {
        self.stop_keeper();
        if self.settled || self.conn.is_closed() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (conn, id) = (self.conn.clone(), self.id);
            rt.spawn(async move {
                if let Err(e) = revoke(&conn, id).await {
                    tracing::debug!(lease = id, error = %e, "revoking a dropped lease failed; it will expire");
                }
            });
        }
    }
}

/// One keep-alive round trip: the TTL the leader granted, 0 if the lease is gone.
pub async fn renew_once(conn: &Connection, id: i64) -> Result<i64, CoordinatorError> {
    let deadline = conn.config().deadline;
    renew_within(conn, id, conn.retry(), conn.timeout(), deadline).await
}

/// A keep-alive whose retries and deadlines are the caller's.
async fn renew_within(
    conn: &Connection,
    id: i64,
    retry: &RetryConfig,
    attempt_timeout: Duration,
    deadline: Option<Duration>,
) -> Result<i64, CoordinatorError> {
    conn.call_with(retry, attempt_timeout, deadline, |ch, c| {
        let req = c.request(futures::stream::iter([LeaseKeepAliveRequest { id }]));
        async move {
            let mut stream = LeaseClient::new(ch)
                .lease_keep_alive(req)
                .await?
                .into_inner();
            match stream.message().await? {
                Some(r) => Ok(r.ttl),
                None => Err(tonic::Status::unavailable("keep-alive stream closed")),
            }
        }
    })
    .await
    .map_err(CoordinatorError::from)
}

/// Retries that fit a TTL: an election in the middle of a renewal must not push the
/// next attempt past the new leader's deadline (which restarts at a full TTL).
fn renewal_policy(ttl: Duration) -> (RetryConfig, Duration) {
    let retry = RetryConfig {
        max_attempts: 6,
        initial_delay: Duration::from_millis(50),
        max_delay: ttl / 8,
        multiplier: 2.0,
    };
    (retry, ttl / 3)
}

/// Renews every TTL/3; gives up (and reports the loss) when the lease is gone or no
/// renewal succeeded for a whole TTL. A renewal's retries end when the TTL since the
/// last success does: an answer after that is too late for a guard that must have
/// let go by then.
async fn keep_alive(conn: Arc<Connection>, id: i64, ttl: Duration, alive: watch::Sender<bool>) {
    let mut last_ok = tokio::time::Instant::now();
    let (retry, attempt_timeout) = renewal_policy(ttl);
    loop {
        tokio::time::sleep(ttl / 3).await;
        if mutants::active("lock_no_keepalive") {
            continue;
        }
        let left = ttl.saturating_sub(last_ok.elapsed());
        if left.is_zero() {
            break;
        }
        match renew_within(&conn, id, &retry, attempt_timeout, Some(left)).await {
            Ok(t) if t > 0 => last_ok = tokio::time::Instant::now(),
            Ok(_) => break,
            Err(CoordinatorError::Closed) => break,
            Err(e) => {
                tracing::debug!(lease = id, error = %e, "keep-alive failed");
                if last_ok.elapsed() >= ttl {
                    break;
                }
            }
        }
    }
    let _ = alive.send(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_secs(Duration::from_secs(30)), 30);
    }
}

/// The keeper against a member whose keep-alives never answer, over real gRPC.
#[cfg(all(test, not(madsim)))]
mod silent_member {
    use tonic::{Request, Response, Status, Streaming};

    use super::*;
    use crate::client::tests::serve;
    use crate::client::ConnectionConfig;
    use crate::proto::etcdserverpb::lease_server::{Lease, LeaseServer};
    use crate::proto::etcdserverpb::{
        LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse,
        LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveResponse,
    };

    /// Grants every lease; never answers a keep-alive.
    struct SilentKeepAlives;

    #[tonic::async_trait]
    impl Lease for SilentKeepAlives {
        async fn lease_grant(
            &self,
            request: Request<LeaseGrantRequest>,
        ) -> Result<Response<LeaseGrantResponse>, Status> {
            let r = request.into_inner();
            Ok(Response::new(LeaseGrantResponse {
                id: r.id,
                ttl: r.ttl,
                ..Default::default()
            }))
        }

        type LeaseKeepAliveStream =
            futures::stream::Pending<Result<LeaseKeepAliveResponse, Status>>;

        async fn lease_keep_alive(
            &self,
            _: Request<Streaming<LeaseKeepAliveRequest>>,
        ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
            Ok(Response::new(futures::stream::pending()))
        }

        async fn lease_revoke(
            &self,
            _: Request<LeaseRevokeRequest>,
        ) -> Result<Response<LeaseRevokeResponse>, Status> {
            Err(Status::unimplemented("silent member"))
        }

        async fn lease_time_to_live(
            &self,
            _: Request<LeaseTimeToLiveRequest>,
        ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
            Err(Status::unimplemented("silent member"))
        }

        async fn lease_leases(
            &self,
            _: Request<LeaseLeasesRequest>,
        ) -> Result<Response<LeaseLeasesResponse>, Status> {
            Err(Status::unimplemented("silent member"))
        }
    }

    /// Found by a fresh-seed sweep (`library_faults::seed_47000041`): a renewal
    /// retried past the TTL kept `is_alive()` true for 2.9 s after the cluster
    /// removed a 2 s lease.
    #[tokio::test]
    async fn the_lease_is_given_up_one_ttl_after_the_last_renewal_even_if_a_renewal_hangs() {
        let member = serve(
            tonic::transport::Server::builder().add_service(LeaseServer::new(SilentKeepAlives)),
        )
        .await;
        let conn = Arc::new(Connection::new(ConnectionConfig::new([member.addr.clone()])).unwrap());
        let granted = KeptLease::grant(conn, Duration::from_secs(2))
            .await
            .unwrap();
        let began = tokio::time::Instant::now();

        granted.lost().await;
        let held = began.elapsed();

        // One TTL since the grant, plus scheduling; retries alone ran past 4 s.
        assert!(
            held >= Duration::from_millis(1_900),
            "let go early: {held:?}"
        );
        assert!(
            held < Duration::from_millis(2_500),
            "held too long: {held:?}"
        );
    }
}
