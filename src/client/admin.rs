//! A client of `coordlab.Admin` on the client core: a node's status, the leader's,
//! and membership changes by id.

use tonic::Response;

use super::connection::{Connection, ConnectionConfig};
use super::error::ClientError;
use crate::proto::admin_client::AdminClient as AdminRpc;
use crate::proto::{
    AddMemberRequest, MembershipResponse, RemoveMemberRequest, StatusRequest, StatusResponse,
};

pub struct AdminClient {
    conn: Connection,
}

impl AdminClient {
    pub fn new(config: ConnectionConfig) -> Result<Self, ClientError> {
        Ok(AdminClient {
            conn: Connection::new(config)?,
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The status of `endpoint`'s node (one attempt, no leader following).
    pub async fn status_of(&self, endpoint: &str) -> Result<StatusResponse, ClientError> {
        self.conn
            .call_once_at(endpoint, |ch| async move {
                AdminRpc::new(ch).status(StatusRequest {}).await
            })
            .await
    }

    /// The status of the leader: asks the members in turn, then the leader one names.
    pub async fn leader_status(&self) -> Result<StatusResponse, ClientError> {
        let mut last = String::new();
        let rounds = 2;
        for round in 0..rounds {
            for endpoint in self.conn.endpoints() {
                match self.status_of(&endpoint).await {
                    Ok(s) if s.leader_id == s.id => {
                        self.conn.prefer(&endpoint)?;
                        return Ok(s);
                    }
                    Ok(s) => {
                        if let Some(m) = s.members.iter().find(|m| m.id == s.leader_id) {
                            if let Ok(leader) = self.status_of(&m.addr).await {
                                if leader.leader_id == leader.id {
                                    self.conn.prefer(&m.addr)?;
                                    return Ok(leader);
                                }
                            }
                        }
                        last = format!("{endpoint}: leader {} not reachable", s.leader_id);
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            if round + 1 < rounds {
                tokio::time::sleep(self.conn.retry().max_delay).await;
            }
        }
        Err(ClientError::Unavailable {
            attempts: rounds * self.conn.endpoints().len() as u32,
            last,
        })
    }

    pub async fn add_member(&self, id: u64, addr: &str) -> Result<MembershipResponse, ClientError> {
        let req = AddMemberRequest {
            id,
            addr: addr.to_string(),
        };
        self.conn
            .call(|ch, _| {
                let req = req.clone();
                async move {
                    AdminRpc::new(ch)
                        .add_member(req)
                        .await
                        .map(Response::into_inner)
                }
            })
            .await
    }

    pub async fn remove_member(&self, id: u64) -> Result<MembershipResponse, ClientError> {
        self.conn
            .call(|ch, _| async move {
                AdminRpc::new(ch)
                    .remove_member(RemoveMemberRequest { id })
                    .await
                    .map(Response::into_inner)
            })
            .await
    }
}
