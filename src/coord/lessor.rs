//! Lease expiry, decided by the leader alone. The leader keeps a deadline per lease
//! on its own clock (as elapsed time that a clock set back does not rewind, see
//! [`ForwardOnly`]); a keep-alive (answered only after a ReadIndex round proves the
//! leadership) pushes it to now + TTL; a lease whose deadline passes is proposed as
//! `LeaseExpired`, and only that log entry removes it, on every replica alike. A
//! member that becomes leader starts every lease's full TTL afresh, so a leader
//! change never expires a lease whose holder kept it alive. Every (re)start of a
//! TTL is reported to the Observer (`LeaseRenewed`), so a checker can hold the
//! expiries to it.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::errors::CoordError;
use super::forward::{error_from_status, LeaderRoute, Proposer};
use super::state::SharedCoordState;
use crate::proto::coord_forward_client::CoordForwardClient;
use crate::proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};
use crate::proto::{coord_command::Op, CoordCommand, LeaseExpired};
use crate::seams::clock::ForwardOnly;
use crate::seams::mutants;
use crate::seams::observer::{Event, Observer};

/// How often the leader looks for expired leases.
pub const EXPIRY_CHECK: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Deadlines {
    /// The term in which these deadlines were set as leader.
    term: u64,
    /// Lease → deadline (ms of this member's forward-only elapsed time).
    by_lease: BTreeMap<i64, u64>,
    /// Leases whose expiry is being proposed.
    expiring: BTreeSet<i64>,
}

pub struct Lessor {
    member_id: u64,
    proposer: Arc<Proposer>,
    state: SharedCoordState,
    deadlines: Mutex<Deadlines>,
    elapsed: ForwardOnly,
    observer: Arc<dyn Observer>,
}

/// The deadline of a TTL of `ttl_secs` (re)started at `now_ms`.
fn deadline_ms(now_ms: u64, ttl_secs: i64) -> u64 {
    let ttl_ms = ttl_secs as u64 * 1000;
    // The mutant expires a lease halfway through the TTL it was promised.
    if mutants::active("lessor_half_ttl") {
        now_ms + ttl_ms / 2
    } else {
        now_ms + ttl_ms
    }
}

impl Lessor {
    pub fn new(member_id: u64, proposer: Arc<Proposer>, state: SharedCoordState) -> Self {
        let observer = state.lock().observer();
        Lessor {
            member_id,
            elapsed: ForwardOnly::new(proposer.shared_clock()),
            proposer,
            state,
            deadlines: Mutex::new(Deadlines::default()),
            observer,
        }
    }

    /// Tells the Observer that this member, leading `term`, restarted `lease`'s TTL.
    fn report_renewal(&self, lease: i64, ttl_secs: i64, term: u64, reason: &str) {
        self.observer.observe(
            self.member_id,
            &Event::LeaseRenewed {
                lease,
                ttl_ms: ttl_secs as u64 * 1000,
                term,
                reason,
            },
        );
    }

    pub fn header(&self) -> ResponseHeader {
        let mut h = self.state.lock().header();
        h.raft_term = self.proposer.handle().leader().term;
        h
    }

    fn now(&self) -> u64 {
        self.elapsed.now_ms()
    }

    fn deadlines(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        self.deadlines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the deadlines in step with leadership and the lease table.
    fn refresh(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        let leader = self.proposer.handle().leader();
        // The mutant lets a follower keep deadlines of its own, which no keep-alive
        // (they all go to the leader) ever pushes back.
        let acting = leader.is_self || mutants::active("follower_lease_expiry");
        let mut d = self.deadlines();
        if !acting {
            *d = Deadlines::default();
            return d;
        }
        let new_leadership = leader.is_self && d.term != leader.term;
        if new_leadership {
            // New leadership: every lease starts a full TTL from now.
            d.by_lease.clear();
            d.term = leader.term;
        }
        let now = self.now();
        // (lease, TTL in s) of every deadline set now.
        let mut started = Vec::new();
        let state = self.state.lock();
        d.by_lease.retain(|id, _| state.leases.contains(*id));
        for (id, lease) in state.leases.iter() {
            if let Entry::Vacant(slot) = d.by_lease.entry(id) {
                slot.insert(deadline_ms(now, lease.ttl));
                started.push((id, lease.ttl));
            }
        }
        drop(state);
        if leader.is_self {
            let reason = if new_leadership {
                "new-leader"
            } else {
                "first-seen"
            };
            for (id, ttl) in started {
                self.report_renewal(id, ttl, leader.term, reason);
            }
        }
        d
    }

    /// The leases to propose as expired now; each is marked until its proposal
    /// ends (only the expiry loop calls this, so every marked lease is proposed).
    fn take_expired(&self) -> Vec<i64> {
        let now = self.now();
        let mut d = self.refresh();
        let expired: Vec<i64> = d
            .by_lease
            .iter()
            .filter(|(id, deadline)| **deadline <= now && !d.expiring.contains(id))
            .map(|(id, _)| *id)
            .collect();
        d.expiring.extend(expired.iter().copied());
        expired
    }

    /// Checks for expired leases until the node stops.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.elapsed.sleep(EXPIRY_CHECK).await;
            for id in self.take_expired() {
                let me = self.clone();
                tokio::spawn(async move {
                    let cmd = CoordCommand {
                        op: Some(Op::LeaseExpired(LeaseExpired {
                            id,
                            decided_by: me.member_id,
                        })),
                        ..Default::default()
                    };
                    if let Err(e) = me.proposer.propose(cmd).await {
                        tracing::debug!(lease = id, error = %e, "lease expiry not applied; retried");
                    }
                    me.deadlines().expiring.remove(&id);
                });
            }
        }
    }

    /// A keep-alive from any member: refreshed by the leader. Answers the TTL, or
    /// 0 when the lease does not exist (etcd's keep-alive convention).
    pub async fn renew(&self, id: i64) -> Result<i64, CoordError> {
        match self.proposer.leader_route().await? {
            LeaderRoute::Local => self.renew_here(id).await,
            LeaderRoute::Remote(addr) => {
                let mut client = CoordForwardClient::new(self.proposer.channel(&addr)?);
                let resp = client
                    .keep_alive(LeaseKeepAliveRequest { id })
                    .await
                    .map_err(|s| error_from_status(&s))?;
                Ok(resp.into_inner().ttl)
            }
        }
    }

    /// Refreshes `id` on this member, which must lead.
    pub async fn renew_here(&self, id: i64) -> Result<i64, CoordError> {
        if !self.proposer.handle().leader().is_self {
            return Err(CoordError::NotLeader);
        }
        // A deposed leader must not promise a TTL the new leader does not know of.
        self.proposer.confirm_leadership().await?;
        let Some(ttl) = self.state.lock().leases.get(id).map(|l| l.ttl) else {
            return Ok(0);
        };
        let now = self.now();
        let mut d = self.refresh();
        if d.expiring.contains(&id) || d.by_lease.get(&id).is_some_and(|t| *t <= now) {
            // Too late: its expiry is decided.
            return Ok(0);
        }
        d.by_lease.insert(id, deadline_ms(now, ttl));
        self.report_renewal(id, ttl, d.term, "keep-alive");
        Ok(ttl)
    }

    /// `LeaseTimeToLive` from any member (the leader's clock answers).
    pub async fn time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, CoordError> {
        match self.proposer.leader_route().await? {
            LeaderRoute::Local => self.time_to_live_here(req).await,
            LeaderRoute::Remote(addr) => {
                let mut client = CoordForwardClient::new(self.proposer.channel(&addr)?);
                client
                    .time_to_live(req)
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| error_from_status(&s))
            }
        }
    }

    pub async fn time_to_live_here(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, CoordError> {
        if !self.proposer.handle().leader().is_self {
            return Err(CoordError::NotLeader);
        }
        // Lock order everywhere: deadlines before state.
        let deadline = self.refresh().by_lease.get(&req.id).copied();
        let header = Some(self.header());
        let state = self.state.lock();
        let Some(lease) = state.leases.get(req.id) else {
            return Ok(LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                ..Default::default()
            });
        };
        let now = self.now();
        let remaining_ms = deadline.map_or(lease.ttl as u64 * 1000, |t| t.saturating_sub(now));
        Ok(LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl: remaining_ms.div_ceil(1000) as i64,
            granted_ttl: lease.ttl,
            keys: if req.keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }
}
