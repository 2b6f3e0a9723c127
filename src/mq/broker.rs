//! The broker: holds its topic view, produces state reports, keeps consumer
//! assignments. Reports go to whoever registered a state receiver (the LogicNode's
//! current loop); the LogicNode releases it on every switch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::proto::{BrokerReport, ConsumerAssignment, PartitionRef, TopicInfos};
use crate::seams::clock::Clock;
use crate::seams::observer::{Event, Observer};

/// Reports queued per receiver before the oldest are skipped.
const RECEIVER_CAPACITY: usize = 16;

/// A registered receiver of this broker's reports.
pub struct StateReceiver {
    pub registration: u64,
    pub reports: mpsc::Receiver<BrokerReport>,
}

struct Inner {
    view: Arc<TopicInfos>,
    receivers: BTreeMap<u64, (String, mpsc::Sender<BrokerReport>)>,
    next_registration: u64,
    seq: u64,
    assignments: BTreeMap<String, ConsumerAssignment>,
}

pub struct Broker {
    id: u64,
    addr: String,
    observer: Arc<dyn Observer>,
    inner: Mutex<Inner>,
}

impl Broker {
    pub fn new(id: u64, addr: String, observer: Arc<dyn Observer>) -> Arc<Self> {
        Arc::new(Broker {
            id,
            addr,
            observer,
            inner: Mutex::new(Inner {
                view: Arc::new(TopicInfos::default()),
                receivers: BTreeMap::new(),
                next_registration: 1,
                seq: 0,
                assignments: BTreeMap::new(),
            }),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a receiver of this broker's reports for `owner`.
    pub fn get_state_receiver(&self, owner: &str) -> StateReceiver {
        let (tx, reports) = mpsc::channel(RECEIVER_CAPACITY);
        let registration = {
            let mut inner = self.lock();
            let registration = inner.next_registration;
            inner.next_registration += 1;
            inner
                .receivers
                .insert(registration, (owner.to_string(), tx));
            registration
        };
        self.observer
            .observe(self.id, &Event::ReceiverRegistered { registration });
        StateReceiver {
            registration,
            reports,
        }
    }

    /// Releases a receiver registered by [`Broker::get_state_receiver`].
    pub fn unleash_state_receiver(&self, registration: u64) {
        if self.lock().receivers.remove(&registration).is_some() {
            self.observer
                .observe(self.id, &Event::ReceiverReleased { registration });
        }
    }

    /// Number of registered receivers.
    pub fn receiver_count(&self) -> usize {
        self.lock().receivers.len()
    }

    /// Applies topic metadata pushed by the coo, if newer than the current view.
    pub fn apply_topic_infos(&self, infos: Arc<TopicInfos>) {
        let version = infos.version;
        {
            let mut inner = self.lock();
            if version <= inner.view.version && !inner.view.topics.is_empty() {
                return;
            }
            inner.view = infos;
        }
        self.observer
            .observe(self.id, &Event::TopicViewApplied { version });
    }

    pub fn topic_view(&self) -> Arc<TopicInfos> {
        self.lock().view.clone()
    }

    pub fn apply_consumer_assignment(&self, assignment: ConsumerAssignment) {
        self.lock()
            .assignments
            .insert(assignment.group.clone(), assignment);
    }

    /// The next state report: hosted partitions from the current view.
    pub fn make_report(&self) -> BrokerReport {
        let mut inner = self.lock();
        inner.seq += 1;
        let hosted: Vec<PartitionRef> = inner
            .view
            .topics
            .iter()
            .flat_map(|t| {
                t.assignment
                    .iter()
                    .filter(|a| a.replicas.contains(&self.id))
                    .map(|a| PartitionRef {
                        topic: t.name.clone(),
                        partition: a.partition,
                    })
            })
            .collect();
        BrokerReport {
            broker_id: self.id,
            addr: self.addr.clone(),
            load: hosted.len() as u64,
            hosted,
            seq: inner.seq,
            view_version: inner.view.version,
        }
    }

    /// Produces a report every `interval` and hands it to every registered receiver.
    pub async fn run_reporter(self: Arc<Self>, clock: Arc<dyn Clock>, interval: Duration) {
        loop {
            clock.sleep(interval).await;
            let report = self.make_report();
            let receivers: Vec<mpsc::Sender<BrokerReport>> = self
                .lock()
                .receivers
                .values()
                .map(|(_, tx)| tx.clone())
                .collect();
            for tx in receivers {
                let _ = tx.try_send(report.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{PartitionAssignment, TopicInfo};
    use crate::seams::observer::NoopObserver;

    #[test]
    fn reports_follow_the_view_and_receivers_register_and_release() {
        let broker = Broker::new(2, "b2".into(), Arc::new(NoopObserver));
        let r1 = broker.get_state_receiver("local");
        assert_eq!(broker.receiver_count(), 1);
        broker.unleash_state_receiver(r1.registration);
        assert_eq!(broker.receiver_count(), 0);
        broker.apply_topic_infos(Arc::new(TopicInfos {
            version: 3,
            topics: vec![TopicInfo {
                name: "t".into(),
                partitions: 2,
                replication: 1,
                assignment: vec![
                    PartitionAssignment {
                        partition: 0,
                        replicas: vec![1],
                    },
                    PartitionAssignment {
                        partition: 1,
                        replicas: vec![2],
                    },
                ],
            }],
        }));
        let report = broker.make_report();
        assert_eq!(report.hosted.len(), 1);
        assert_eq!(report.view_version, 3);
        assert_eq!(broker.make_report().seq, 2);
        // An older view does not replace a newer one.
        broker.apply_topic_infos(Arc::new(TopicInfos {
            version: 1,
            topics: vec![],
        }));
        assert_eq!(broker.topic_view().version, 3);
    }
}
