//! The registry's types as the bridge's wire types.

use crate::proto::linkbridge as pb;

use super::super::state::{Instance, Status};

pub fn instance(i: &Instance) -> pb::Instance {
    let (status, grace_ms) = match i.status {
        Status::Serving => (pb::InstanceStatus::Serving, 0),
        Status::Draining { grace_ms } => (pb::InstanceStatus::Draining, grace_ms),
        Status::Down => (pb::InstanceStatus::Down, 0),
    };
    pb::Instance {
        service: i.record.service.clone(),
        instance_id: i.record.id.clone(),
        address: i.record.address.clone(),
        agent_id: i.record.agent.clone(),
        metadata: i.record.metadata.clone(),
        status: status as i32,
        grace_ms,
    }
}

pub fn instances(all: &[Instance]) -> Vec<pb::Instance> {
    all.iter().map(instance).collect()
}
