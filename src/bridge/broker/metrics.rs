//! The parts of the seed's `ClusterMetrics` a broker measures itself: how long the
//! current leader has led (as this broker has seen it: it asks the cluster every
//! second), each member's state, and the latency of its own requests to the
//! cluster (its sessions' commands and lease renewals, its leader polls).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::Connection;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::{MemberListRequest, StatusRequest, StatusResponse};

/// How often the broker asks who leads.
const LEADER_POLL: Duration = Duration::from_secs(1);
/// Deadline of asking one member for its state.
const MEMBER_DEADLINE: Duration = Duration::from_millis(500);

/// The leader as last seen, and since when this broker has seen it lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leadership {
    leader: u64,
    term: u64,
    since: Instant,
}

#[derive(Debug, Default)]
pub struct BrokerMetrics {
    leadership: Mutex<Option<Leadership>>,
    /// Exponentially weighted mean of request latencies, in µs (0: none yet).
    latency_us: AtomicU64,
}

impl BrokerMetrics {
    /// Notes that `leader` leads in `term`: a new (leader, term) restarts its uptime.
    pub fn observe_leader(&self, leader: u64, term: u64) {
        let mut seen = self.leadership.lock().unwrap_or_else(|e| e.into_inner());
        let same = seen.is_some_and(|l| l.leader == leader && l.term == term);
        if !same {
            *seen = (leader != 0).then(|| Leadership {
                leader,
                term,
                since: Instant::now(),
            });
        }
    }

    /// How long `leader` has led in `term`, as this broker has seen it (0: it
    /// has not seen it lead yet).
    pub fn leader_uptime(&self, leader: u64, term: u64) -> Duration {
        self.observe_leader(leader, term);
        let seen = self.leadership.lock().unwrap_or_else(|e| e.into_inner());
        seen.map_or(Duration::ZERO, |l| l.since.elapsed())
    }

    /// Times one request of this broker to the cluster.
    pub async fn timed<T>(&self, request: impl std::future::Future<Output = T>) -> T {
        let began = Instant::now();
        let answer = request.await;
        let took = began.elapsed().as_micros().min(u64::MAX as u128) as u64;
        // A mean over about the last eight requests.
        let _ = self
            .latency_us
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |mean| {
                Some(if mean == 0 {
                    took
                } else {
                    (mean * 7 + took) / 8
                })
            });
        answer
    }

    /// The mean latency of this broker's recent requests to the cluster.
    pub fn request_latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::SeqCst))
    }
}

/// Asks the cluster who leads every [`LEADER_POLL`], for as long as the broker lives.
pub async fn watch_leader(metrics: Arc<BrokerMetrics>, conn: Arc<Connection>) {
    loop {
        if let Ok(status) = metrics.timed(status(&conn)).await {
            metrics.observe_leader(status.leader, status.raft_term);
        }
        tokio::time::sleep(LEADER_POLL).await;
    }
}

pub async fn status(conn: &Connection) -> Result<StatusResponse, crate::client::ClientError> {
    conn.call(|ch, c| {
        let req = c.request(StatusRequest {});
        async move { MaintenanceClient::new(ch).status(req).await }
    })
    .await
    .map(tonic::Response::into_inner)
}

/// Each member's state by name (`leader`, `follower`, `learner`, `unreachable`),
/// asking each member directly.
pub async fn member_states(conn: &Connection) -> BTreeMap<String, String> {
    let Ok(members) = conn
        .call(|ch, c| {
            let req = c.request(MemberListRequest {
                linearizable: false,
            });
            async move { ClusterClient::new(ch).member_list(req).await }
        })
        .await
    else {
        return BTreeMap::new();
    };
    let mut states = BTreeMap::new();
    for member in members.into_inner().members {
        let name = if member.name.is_empty() {
            format!("{:x}", member.id)
        } else {
            member.name.clone()
        };
        let state = match member.client_ur_ls.first() {
            _ if member.is_learner => "learner".to_string(),
            Some(url) => member_state(url, member.id).await,
            None => "not started".to_string(),
        };
        states.insert(name, state);
    }
    states
}

async fn member_state(url: &str, id: u64) -> String {
    let asked = async {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .ok()?
            .connect()
            .await
            .ok()?;
        let status = MaintenanceClient::new(channel)
            .status(StatusRequest {})
            .await
            .ok()?
            .into_inner();
        Some(if status.leader == id {
            "leader"
        } else {
            "follower"
        })
    };
    match tokio::time::timeout(MEMBER_DEADLINE, asked).await {
        Ok(Some(state)) => state.to_string(),
        _ => "unreachable".to_string(),
    }
}
