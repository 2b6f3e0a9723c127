//! The coo's replicated metadata: broker registry, topics with their partition →
//! broker assignment, and consumer groups with their partition assignments.
//!
//! Pure: commands in, answers out, no I/O. Every replica applies the same commands
//! in the same order and reaches the same state. The metadata `version` rises with
//! every change a broker's topic view depends on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Message as _;

use crate::proto::{self, command, query};
use crate::proto::{
    coo_answer, coo_command, coo_query, BrokerInfo, BrokerList, ConsumerAssignment, CooAnswer,
    CooCommand, CooQuery, CooSnapshot, DeleteTopicResponse, GroupInfo, GroupList,
    PartitionAssignment, PartitionRef, ReportAck, TopicInfo, TopicInfos,
};
use crate::seams::mutants;
use crate::sync::watch;

/// What observers of the coo metadata (in-process brokers, `Pull` streams) see.
pub type TopicWatch = watch::Receiver<Arc<proto::TopicInfos>>;

/// Encodes a coo read as a node query.
pub fn coo_query(q: proto::coo_query::Q) -> Vec<u8> {
    proto::Query {
        q: Some(query::Q::Coo(proto::CooQuery { q: Some(q) })),
    }
    .encode_to_vec()
}

/// Encodes a coo command for the Raft log.
pub fn coo_command(op: proto::coo_command::Op) -> Vec<u8> {
    proto::Command {
        op: Some(command::Op::Coo(proto::CooCommand { op: Some(op) })),
    }
    .encode_to_vec()
}

/// Limits that keep one request from blowing up the metadata.
pub const MAX_PARTITIONS: u32 = 1024;
pub const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, Clone, Default, PartialEq)]
struct Group {
    topics: BTreeSet<String>,
    members: BTreeSet<String>,
    generation: u64,
}

/// The coo state machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CooState {
    brokers: BTreeMap<u64, BrokerInfo>,
    topics: BTreeMap<String, TopicInfo>,
    groups: BTreeMap<String, Group>,
    version: u64,
}

/// Why a topic request is invalid (checked before proposing, and again on apply).
pub fn validate_topic(name: &str, partitions: u32, replication: u32) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(format!("topic name {name:?} must be 1..={MAX_NAME_BYTES} bytes without '/' or control characters"));
    }
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(format!(
            "partitions must be 1..={MAX_PARTITIONS}, got {partitions}"
        ));
    }
    if replication == 0 {
        return Err("replication must be at least 1".into());
    }
    Ok(())
}

fn answer(a: coo_answer::A) -> Vec<u8> {
    CooAnswer { a: Some(a) }.encode_to_vec()
}

/// One partition's replicas: the live ones of `kept` (live = in `load`), topped up
/// to `target` with the least-loaded live brokers; `load` counts the additions.
fn place_partition(kept: &[u64], target: usize, load: &mut BTreeMap<u64, usize>) -> Vec<u64> {
    let mut replicas: Vec<u64> = kept
        .iter()
        .copied()
        .filter(|b| load.contains_key(b))
        .take(target)
        .collect();
    while replicas.len() < target {
        let Some((&next, _)) = load
            .iter()
            .filter(|(b, _)| !replicas.contains(b))
            .min_by_key(|&(&b, &held)| (held, b))
        else {
            break;
        };
        replicas.push(next);
        *load.entry(next).or_default() += 1;
    }
    replicas
}

impl CooState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Applies one command; returns the encoded [`CooAnswer`].
    pub fn apply(&mut self, command: CooCommand) -> Vec<u8> {
        match command.op {
            Some(coo_command::Op::Report(at)) => {
                let Some(report) = at.report else {
                    return answer(coo_answer::A::Error("report without a body".into()));
                };
                let is_new = !self.brokers.contains_key(&report.broker_id);
                let entry = self.brokers.entry(report.broker_id).or_default();
                // Reports may arrive out of order through retries: keep the newest.
                if !is_new && report.seq <= entry.last_seq {
                    return answer(coo_answer::A::Report(ReportAck::default()));
                }
                *entry = BrokerInfo {
                    id: report.broker_id,
                    addr: report.addr,
                    load: report.load,
                    last_report_ms: at.at_ms,
                    last_seq: report.seq,
                    hosted: report.hosted,
                };
                if is_new {
                    self.reassign();
                }
                answer(coo_answer::A::Report(ReportAck::default()))
            }
            Some(coo_command::Op::CreateTopic(req)) => {
                if let Err(e) = validate_topic(&req.name, req.partitions, req.replication) {
                    return answer(coo_answer::A::Error(e));
                }
                if let Some(existing) = self.topics.get(&req.name) {
                    return answer(coo_answer::A::Error(format!(
                        "topic {:?} already exists",
                        existing.name
                    )));
                }
                self.topics.insert(
                    req.name.clone(),
                    TopicInfo {
                        name: req.name.clone(),
                        partitions: req.partitions,
                        replication: req.replication,
                        assignment: Vec::new(),
                    },
                );
                self.reassign();
                self.reassign_groups_with(&req.name);
                answer(coo_answer::A::Topic(self.topics[&req.name].clone()))
            }
            Some(coo_command::Op::DeleteTopic(req)) => {
                let existed = self.topics.remove(&req.name).is_some();
                if existed {
                    self.version += 1;
                    self.reassign_groups_with(&req.name);
                }
                answer(coo_answer::A::Deleted(DeleteTopicResponse { existed }))
            }
            Some(coo_command::Op::ExpireBroker(req)) => {
                // Only the report the decision saw: a broker that was expired and
                // registered again counts its sequence numbers anew.
                let stale = self.brokers.get(&req.broker_id).is_some_and(|b| {
                    b.last_seq == req.last_seq
                        && (req.last_report_ms == 0 || b.last_report_ms == req.last_report_ms)
                });
                if stale {
                    self.brokers.remove(&req.broker_id);
                    self.reassign();
                }
                answer(coo_answer::A::Report(ReportAck::default()))
            }
            Some(coo_command::Op::SyncGroup(req)) => {
                if req.group.is_empty() || req.member.is_empty() {
                    return answer(coo_answer::A::Error(
                        "group and member must not be empty".into(),
                    ));
                }
                let group = self.groups.entry(req.group.clone()).or_default();
                let changed = if req.leave {
                    group.members.remove(&req.member)
                } else {
                    let topics: BTreeSet<String> = req.topics.iter().cloned().collect();
                    let joined = group.members.insert(req.member.clone());
                    let retopic = !topics.is_empty() && topics != group.topics;
                    if retopic {
                        group.topics = topics;
                    }
                    joined || retopic
                };
                if changed {
                    group.generation += 1;
                }
                // A group that had members stays when they all left, with its
                // generation, so generations never repeat; a leave from a group that
                // never was leaves nothing behind.
                if group.members.is_empty() && group.generation == 0 {
                    self.groups.remove(&req.group);
                }
                answer(coo_answer::A::Assignment(
                    self.assignment_of(&req.group, &req.member),
                ))
            }
            None => answer(coo_answer::A::Error("empty coo command".into())),
        }
    }

    /// Recomputes every topic's partition → broker assignment from the live brokers.
    ///
    /// The promise (checked by the simulation's `placement_churn`): every partition
    /// has exactly `min(replication, live brokers)` distinct live replicas, and a
    /// change moves only what must move — a partition keeps every replica that is
    /// still live, loses only those that left, and gains replicas only while it has
    /// fewer than that target (a new topic, a broker that left, too few brokers
    /// before). A gained replica is the live broker holding the fewest replicas
    /// (the lowest id on a tie). So a broker joining moves nothing that was fully
    /// placed, and a broker leaving moves only the partitions it held. Bumps the
    /// version when anything changed.
    fn reassign(&mut self) {
        let brokers: Vec<u64> = self.brokers.keys().copied().collect();
        let ignore_replication = mutants::active("placement_ignores_replication");
        let from_scratch = mutants::active("placement_from_scratch");
        // Replicas each live broker keeps, over every topic.
        let mut load: BTreeMap<u64, usize> = brokers.iter().map(|&b| (b, 0)).collect();
        for topic in self.topics.values() {
            for replica in topic.assignment.iter().flat_map(|a| &a.replicas) {
                if let Some(held) = load.get_mut(replica) {
                    *held += 1;
                }
            }
        }
        let mut changed = false;
        for topic in self.topics.values_mut() {
            let target = if ignore_replication {
                brokers.len()
            } else {
                (topic.replication as usize).min(brokers.len())
            };
            let assignment: Vec<PartitionAssignment> = (0..topic.partitions)
                .map(|p| PartitionAssignment {
                    partition: p,
                    replicas: if from_scratch {
                        // The mutant: positions in the sorted broker list, so one
                        // broker more or less shifts nearly every partition.
                        (0..target)
                            .map(|i| brokers[(p as usize + i) % brokers.len()])
                            .collect()
                    } else {
                        let kept = topic
                            .assignment
                            .get(p as usize)
                            .map(|a| a.replicas.as_slice())
                            .unwrap_or_default();
                        place_partition(kept, target, &mut load)
                    },
                })
                .collect();
            if assignment != topic.assignment {
                topic.assignment = assignment;
                changed = true;
            }
        }
        if changed || self.topics.is_empty() {
            self.version += 1;
        }
    }

    fn reassign_groups_with(&mut self, topic: &str) {
        for group in self.groups.values_mut() {
            if group.topics.contains(topic) {
                group.generation += 1;
            }
        }
    }

    /// A member's partitions: the group's topics' partitions, in (topic, partition)
    /// order, dealt round-robin to the members in name order.
    pub fn assignment_of(&self, group_name: &str, member: &str) -> ConsumerAssignment {
        let mut out = ConsumerAssignment {
            group: group_name.to_string(),
            member: member.to_string(),
            ..Default::default()
        };
        let Some(group) = self.groups.get(group_name) else {
            return out;
        };
        out.generation = group.generation;
        let Some(slot) = group.members.iter().position(|m| m == member) else {
            return out;
        };
        let all: Vec<PartitionRef> = group
            .topics
            .iter()
            .filter_map(|t| self.topics.get(t))
            .flat_map(|t| {
                (0..t.partitions).map(|p| PartitionRef {
                    topic: t.name.clone(),
                    partition: p,
                })
            })
            .collect();
        out.partitions = all
            .into_iter()
            .enumerate()
            // The mutant hands the group's first partition to every member.
            .filter(|(i, _)| {
                i % group.members.len() == slot
                    || (*i == 0 && mutants::active("group_partition_twice"))
            })
            .map(|(_, p)| p)
            .collect();
        out
    }

    /// The committed topic metadata a broker's view must converge to.
    pub fn topic_infos(&self) -> TopicInfos {
        TopicInfos {
            version: self.version,
            topics: self.topics.values().cloned().collect(),
        }
    }

    /// The registered brokers, by id.
    pub fn broker_ids(&self) -> Vec<u64> {
        self.brokers.keys().copied().collect()
    }

    /// Every group's generation.
    pub fn group_generations(&self) -> BTreeMap<String, u64> {
        self.groups
            .iter()
            .map(|(name, g)| (name.clone(), g.generation))
            .collect()
    }

    /// A group's topics with their partition counts (0: no such topic).
    pub fn group_topics(&self, group: &str) -> Vec<(String, u32)> {
        self.groups.get(group).map_or_else(Vec::new, |g| {
            g.topics
                .iter()
                .map(|t| (t.clone(), self.topics.get(t).map_or(0, |t| t.partitions)))
                .collect()
        })
    }

    pub fn broker_list(&self) -> BrokerList {
        BrokerList {
            brokers: self.brokers.values().cloned().collect(),
            version: self.version,
        }
    }

    pub fn group_list(&self) -> GroupList {
        GroupList {
            groups: self
                .groups
                .iter()
                .map(|(name, g)| GroupInfo {
                    name: name.clone(),
                    topics: g.topics.iter().cloned().collect(),
                    members: g
                        .members
                        .iter()
                        .map(|m| self.assignment_of(name, m))
                        .collect(),
                    generation: g.generation,
                })
                .collect(),
        }
    }

    /// Answers a read-only query (encoded per query kind).
    pub fn query(&self, query: &CooQuery) -> Vec<u8> {
        match &query.q {
            Some(coo_query::Q::Topics(_)) => self.topic_infos().encode_to_vec(),
            Some(coo_query::Q::Brokers(_)) => self.broker_list().encode_to_vec(),
            Some(coo_query::Q::Groups(_)) => self.group_list().encode_to_vec(),
            None => Vec::new(),
        }
    }

    pub fn snapshot(&self) -> Vec<u8> {
        CooSnapshot {
            brokers: self.brokers.values().cloned().collect(),
            topics: self.topics.values().cloned().collect(),
            // Assignments are derived; restore reads only the member names.
            groups: self.group_list().groups,
            version: self.version,
        }
        .encode_to_vec()
    }

    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snap = CooSnapshot::decode(bytes).map_err(|e| format!("coo snapshot: {e}"))?;
        *self = CooState {
            brokers: snap.brokers.into_iter().map(|b| (b.id, b)).collect(),
            topics: snap
                .topics
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            groups: snap
                .groups
                .into_iter()
                .map(|g| {
                    let group = Group {
                        topics: g.topics.into_iter().collect(),
                        members: g.members.into_iter().map(|m| m.member).collect(),
                        generation: g.generation,
                    };
                    (g.name, group)
                })
                .collect(),
            version: snap.version,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        BrokerReport, BrokerReportAt, CreateTopicRequest, DeleteTopicRequest, ExpireBroker,
        SyncConsumerAssignmentsRequest,
    };

    fn report(id: u64, seq: u64) -> CooCommand {
        CooCommand {
            op: Some(coo_command::Op::Report(BrokerReportAt {
                report: Some(BrokerReport {
                    broker_id: id,
                    addr: format!("b{id}"),
                    seq,
                    ..Default::default()
                }),
                at_ms: seq * 1000,
            })),
        }
    }

    fn create(name: &str, partitions: u32, replication: u32) -> CooCommand {
        CooCommand {
            op: Some(coo_command::Op::CreateTopic(CreateTopicRequest {
                name: name.into(),
                partitions,
                replication,
            })),
        }
    }

    fn decode(a: Vec<u8>) -> coo_answer::A {
        CooAnswer::decode(&a[..]).unwrap().a.unwrap()
    }

    #[test]
    fn assignment_follows_brokers_appearing_and_disappearing() {
        let mut s = CooState::new();
        s.apply(report(1, 1));
        s.apply(report(2, 1));
        let coo_answer::A::Topic(t) = decode(s.apply(create("orders", 3, 2))) else {
            panic!()
        };
        let replicas: Vec<Vec<u64>> = t.assignment.iter().map(|a| a.replicas.clone()).collect();
        assert_eq!(replicas, vec![vec![1, 2], vec![1, 2], vec![1, 2]]);
        let v = s.version();
        s.apply(report(3, 1));
        assert_eq!(
            s.version(),
            v,
            "a new broker moves no fully placed partition"
        );
        let coo_answer::A::Topic(t) = decode(s.apply(create("more", 2, 2))) else {
            panic!()
        };
        assert_eq!(
            t.assignment[0].replicas,
            vec![3, 1],
            "the least loaded first"
        );
        // Broker 2 stops reporting and expires; a stale expiry (old seq) does nothing.
        s.apply(report(2, 2));
        s.apply(CooCommand {
            op: Some(coo_command::Op::ExpireBroker(ExpireBroker {
                broker_id: 2,
                last_seq: 1,
                last_report_ms: 0,
            })),
        });
        assert_eq!(s.broker_list().brokers.len(), 3);
        s.apply(CooCommand {
            op: Some(coo_command::Op::ExpireBroker(ExpireBroker {
                broker_id: 2,
                last_seq: 2,
                last_report_ms: 2000,
            })),
        });
        assert_eq!(s.broker_list().brokers.len(), 2);
        let orders = &s.topic_infos().topics[1];
        assert_eq!(orders.name, "orders");
        // Broker 2's place goes to broker 3; broker 1 keeps every replica it had.
        let replicas: Vec<Vec<u64>> = orders
            .assignment
            .iter()
            .map(|a| a.replicas.clone())
            .collect();
        assert_eq!(replicas, vec![vec![1, 3], vec![1, 3], vec![1, 3]]);
    }

    #[test]
    fn bad_and_duplicate_topics_are_refused() {
        let mut s = CooState::new();
        assert!(matches!(
            decode(s.apply(create("", 1, 1))),
            coo_answer::A::Error(_)
        ));
        assert!(matches!(
            decode(s.apply(create("t", 0, 1))),
            coo_answer::A::Error(_)
        ));
        assert!(matches!(
            decode(s.apply(create("t", 1, 1))),
            coo_answer::A::Topic(_)
        ));
        assert!(matches!(
            decode(s.apply(create("t", 1, 1))),
            coo_answer::A::Error(_)
        ));
        let deleted = s.apply(CooCommand {
            op: Some(coo_command::Op::DeleteTopic(DeleteTopicRequest {
                name: "t".into(),
            })),
        });
        assert!(matches!(
            decode(deleted),
            coo_answer::A::Deleted(DeleteTopicResponse { existed: true })
        ));
    }

    #[test]
    fn consumer_groups_split_partitions_round_robin() {
        let mut s = CooState::new();
        s.apply(create("t", 4, 1));
        let join = |member: &str| CooCommand {
            op: Some(coo_command::Op::SyncGroup(SyncConsumerAssignmentsRequest {
                group: "g".into(),
                member: member.into(),
                topics: vec!["t".into()],
                leave: false,
            })),
        };
        s.apply(join("a"));
        let coo_answer::A::Assignment(b) = decode(s.apply(join("b"))) else {
            panic!()
        };
        assert_eq!(
            b.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(s.assignment_of("g", "a").partitions.len(), 2);
        assert_eq!(b.generation, 2);
    }

    #[test]
    fn snapshot_round_trips() {
        let mut s = CooState::new();
        s.apply(report(1, 1));
        s.apply(create("t", 2, 1));
        let mut copy = CooState::new();
        copy.restore(&s.snapshot()).unwrap();
        assert_eq!(copy.topic_infos(), s.topic_infos());
        assert_eq!(copy.broker_list(), s.broker_list());
        assert!(copy.restore(b"\xff\xff").is_err());
    }
}
