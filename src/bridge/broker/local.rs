//! The seed's `LocalBrokerState`: who is connected to this broker. Kept in memory
//! only — never written to the keyspace, so never in the Raft log or a snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    pub services: Vec<String>,
}

#[derive(Debug, Default)]
struct Connected {
    next: u64,
    clients: BTreeMap<u64, ClientInfo>,
    agents: BTreeMap<u64, String>,
}

/// Shared by the broker's sessions; each session holds a [`Seat`] while open.
#[derive(Debug, Clone, Default)]
pub struct LocalBrokerState(Arc<Mutex<Connected>>);

/// One connected client or agent; leaving frees its seat.
pub struct Seat {
    state: LocalBrokerState,
    id: u64,
}

impl LocalBrokerState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Connected> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seats a client unless `max_clients` are connected.
    pub fn seat_client(&self, client: ClientInfo, max_clients: usize) -> Option<Seat> {
        let mut c = self.lock();
        if c.clients.len() >= max_clients {
            return None;
        }
        c.next += 1;
        let id = c.next;
        c.clients.insert(id, client);
        Some(Seat {
            state: self.clone(),
            id,
        })
    }

    pub fn seat_agent(&self, agent_id: String) -> Seat {
        let mut c = self.lock();
        c.next += 1;
        let id = c.next;
        c.agents.insert(id, agent_id);
        Seat {
            state: self.clone(),
            id,
        }
    }

    pub fn clients(&self) -> Vec<ClientInfo> {
        self.lock().clients.values().cloned().collect()
    }

    pub fn agents(&self) -> Vec<String> {
        self.lock().agents.values().cloned().collect()
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut c = self.state.lock();
        c.clients.remove(&self.id);
        c.agents.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str) -> ClientInfo {
        ClientInfo {
            client_id: id.into(),
            services: vec!["echo".into()],
        }
    }

    #[test]
    fn seats_are_limited_and_freed_when_their_holders_leave() {
        let local = LocalBrokerState::default();
        let a = local.seat_client(client("a"), 2).unwrap();
        let _b = local.seat_client(client("b"), 2).unwrap();
        assert!(local.seat_client(client("c"), 2).is_none(), "third of two");
        drop(a);
        assert!(local.seat_client(client("c"), 2).is_some());
        let agent = local.seat_agent("agent-1".into());
        assert_eq!(local.agents(), vec!["agent-1".to_string()]);
        drop(agent);
        assert!(local.agents().is_empty());
    }
}
