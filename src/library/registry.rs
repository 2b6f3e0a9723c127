//! Service registry (seed 001's `ServiceRegistry`): an instance is the key
//! `/services/<name>/<id>` holding its JSON `ServiceInfo`, bound to a lease kept
//! alive while registered — a crashed instance vanishes when its lease expires.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::CoordinatorError;
use super::lease::KeptLease;
use super::watch::{KeyEvent, ResumableWatch, Resumes};
use crate::client::Connection;
use crate::coord::service::lock::prefix_end;
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

/// Where instances of `name` live.
pub fn service_prefix(name: &str) -> String {
    format!("/services/{name}/")
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    pub address: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl ServiceInfo {
    /// `address:port`.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEvent {
    pub kind: EventType,
    pub service: ServiceInfo,
    /// The store revision of the change.
    pub revision: i64,
}

struct Registration {
    key: Vec<u8>,
    lease: KeptLease,
}

#[derive(Clone)]
pub struct ServiceRegistry {
    conn: Arc<Connection>,
    registered: Arc<Mutex<BTreeMap<String, Registration>>>,
}

/// The instances of a service at a revision.
pub(crate) struct Snapshot {
    pub services: Vec<ServiceInfo>,
    pub revision: i64,
}

impl ServiceRegistry {
    pub fn new(conn: Arc<Connection>) -> Self {
        ServiceRegistry {
            conn,
            registered: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn registered(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Registration>> {
        self.registered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `service` for as long as this registry lives (or until
    /// `unregister`); re-registering an id replaces the old registration.
    pub async fn register(
        &self,
        service: ServiceInfo,
        ttl: Duration,
    ) -> Result<(), CoordinatorError> {
        let key = format!("{}{}", service_prefix(&service.name), service.id).into_bytes();
        let value = serde_json::to_vec(&service).map_err(|e| CoordinatorError::Encode {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason: e.to_string(),
        })?;
        let lease = KeptLease::grant(self.conn.clone(), ttl).await?;
        let put = PutRequest {
            key: key.clone(),
            value,
            lease: lease.id(),
            ..Default::default()
        };
        // Idempotent: a retry writes the same value on the same lease.
        if let Err(e) = self.conn.put(put).await {
            let _ = lease.revoke().await;
            return Err(e.into());
        }
        let old = self
            .registered()
            .insert(service.id.clone(), Registration { key, lease });
        if let Some(old) = old {
            let _ = old.lease.revoke().await;
        }
        Ok(())
    }

    /// Removes a registration made through this registry.
    pub async fn unregister(&self, id: &str) -> Result<(), CoordinatorError> {
        let reg = self
            .registered()
            .remove(id)
            .ok_or_else(|| CoordinatorError::NotFound {
                key: id.to_string(),
            })?;
        let key = reg.key.clone();
        self.conn
            .delete_range(DeleteRangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await?;
        reg.lease.revoke().await
    }

    /// Unregisters everything (on close).
    pub async fn unregister_all(&self) {
        let ids: Vec<String> = self.registered().keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.unregister(&id).await {
                tracing::warn!(service = %id, error = %e, "unregister on close failed; its lease will expire");
            }
        }
    }

    pub(crate) async fn snapshot(&self, name: &str) -> Result<Snapshot, CoordinatorError> {
        let prefix = service_prefix(name).into_bytes();
        let r = self
            .conn
            .range(RangeRequest {
                key: prefix.clone(),
                range_end: prefix_end(&prefix),
                ..Default::default()
            })
            .await?;
        let services = r
            .kvs
            .iter()
            .filter_map(|kv| match serde_json::from_slice::<ServiceInfo>(&kv.value) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e, "skipping a malformed registration");
                    None
                }
            })
            .collect();
        Ok(Snapshot {
            services,
            revision: r.header.map_or(0, |h| h.revision),
        })
    }

    /// The registered instances of `name`.
    pub async fn discover(&self, name: &str) -> Result<Vec<ServiceInfo>, CoordinatorError> {
        Ok(self.snapshot(name).await?.services)
    }

    /// Changes to `name`'s instances from now on (resumes across failures).
    pub async fn watch(&self, name: &str) -> Result<ServiceWatch, CoordinatorError> {
        let revision = self.snapshot(name).await?.revision;
        Ok(self.watch_from(name, revision + 1))
    }

    pub(crate) fn watch_from(&self, name: &str, revision: i64) -> ServiceWatch {
        let prefix = service_prefix(name).into_bytes();
        let end = prefix_end(&prefix);
        ServiceWatch {
            name: name.to_string(),
            inner: ResumableWatch::start(self.conn.clone(), prefix, end, revision),
        }
    }
}

pub struct ServiceWatch {
    name: String,
    inner: ResumableWatch,
}

impl ServiceWatch {
    /// Follows how often the watch reopened its stream (see [`ResumableWatch`]).
    pub fn resumes(&self) -> crate::sync::watch::Receiver<Resumes> {
        self.inner.resumes()
    }

    /// The next registration or deregistration.
    pub async fn next(&mut self) -> Option<Result<ServiceEvent, CoordinatorError>> {
        loop {
            let ev = match self.inner.next().await? {
                Ok(ev) => ev,
                Err(e) => return Some(Err(e)),
            };
            if let Some(se) = service_event(&self.name, ev) {
                return Some(Ok(se));
            }
        }
    }
}

/// A watch event as a service event; a deletion's info comes from the value it
/// removed, or just the id from the key.
fn service_event(name: &str, ev: KeyEvent) -> Option<ServiceEvent> {
    let key = String::from_utf8_lossy(&ev.key).into_owned();
    let id = key.strip_prefix(&service_prefix(name))?.to_string();
    let bytes = if ev.deleted {
        ev.prev_value.unwrap_or_default()
    } else {
        ev.value
    };
    let service = serde_json::from_slice::<ServiceInfo>(&bytes).unwrap_or_else(|_| ServiceInfo {
        id: id.clone(),
        name: name.to_string(),
        ..Default::default()
    });
    Some(ServiceEvent {
        kind: if ev.deleted {
            EventType::Delete
        } else {
            EventType::Put
        },
        service,
        revision: ev.revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_carry_the_removed_info_or_at_least_the_id() {
        let info = ServiceInfo {
            id: "a1".into(),
            name: "chat".into(),
            address: "10.0.0.1".into(),
            port: 8080,
            ..Default::default()
        };
        let del = KeyEvent {
            deleted: true,
            key: b"/services/chat/a1".to_vec(),
            value: vec![],
            prev_value: Some(serde_json::to_vec(&info).unwrap()),
            revision: 9,
            completes_revision: true,
        };
        let e = service_event("chat", del.clone()).unwrap();
        assert_eq!((e.kind, e.service.clone()), (EventType::Delete, info));
        let bare = service_event(
            "chat",
            KeyEvent {
                prev_value: None,
                ..del
            },
        )
        .unwrap();
        assert_eq!(bare.service.id, "a1");
        assert!(service_event(
            "chat",
            KeyEvent {
                key: b"/services/other/x".to_vec(),
                deleted: false,
                value: vec![],
                prev_value: None,
                revision: 1,
                completes_revision: true,
            }
        )
        .is_none());
    }
}
