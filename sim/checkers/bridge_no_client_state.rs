//! Link Bridge: no log entry and no snapshot holds client state. Every bridge
//! write that a member's durable log entries carry, or its durable snapshot holds
//! (recovered and decoded by the end-of-run audit with the storage engine's own
//! recovery), is a registry record — an agent, its liveness, an instance — that
//! decodes, and none names a client of the run.

use std::collections::BTreeSet;

use coordlab::bridge::record::{decode_agent, decode_instance, parse_key, BridgeKey};

use super::{violation, RunEnd, Violation};
use crate::sim::trace::{BridgeEvent, EventKind};

pub const NAME: &str = "bridge_no_client_state";

/// Why a durable write is not a registry record, if it is not.
fn not_a_record(key: &str, value: &str) -> Option<String> {
    let decoded = match parse_key(key.as_bytes()) {
        Err(e) => return Some(e.to_string()),
        Ok(BridgeKey::Agent(id)) => decode_agent(&id, value.as_bytes()).map(drop),
        Ok(BridgeKey::Instance { service, id }) => {
            decode_instance(&service, &id, value.as_bytes()).map(drop)
        }
        Ok(BridgeKey::Alive(_)) => Ok(()),
    };
    decoded.err().map(|e| e.to_string())
}

pub fn check(end: &RunEnd<'_>) -> Result<Option<String>, Violation> {
    let clients: BTreeSet<&str> = end
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Bridge(BridgeEvent::ClientStarted { client, .. }) => Some(client.as_str()),
            _ => None,
        })
        .collect();
    if clients.is_empty() {
        return Ok(None);
    }
    let mut sources = 0usize;
    let mut writes = 0usize;
    for e in end.events {
        let EventKind::Bridge(BridgeEvent::DurableWrites {
            member,
            source,
            writes: held,
            ..
        }) = &e.kind
        else {
            continue;
        };
        if source != "log" && source != "snapshot" {
            return Err(violation(
                NAME,
                e,
                format!("member {member}'s disk could not be decoded: {source}"),
            ));
        }
        sources += 1;
        for (key, value) in held {
            writes += 1;
            if let Some(client) = clients
                .iter()
                .find(|c| key.contains(**c) || value.contains(**c))
            {
                return Err(violation(
                    NAME,
                    e,
                    format!(
                        "member {member}'s {source} holds client {client}'s state: {key} = {value}"
                    ),
                ));
            }
            if let Some(why) = not_a_record(key, value) {
                return Err(violation(
                    NAME,
                    e,
                    format!("member {member}'s {source} holds {key}, which is no registry record: {why}"),
                ));
            }
        }
    }
    if sources == 0 {
        let last = end.events.last().expect("a run with clients has events");
        return Err(violation(
            NAME,
            last,
            "the run had bridge clients but no member's disk was decoded",
        ));
    }
    Ok(Some(format!(
        "{NAME}: {writes} bridge writes in {sources} logs and snapshots, all registry records"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::end_of;
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::TraceEvent;

    fn judge(events: &[TraceEvent]) -> Result<Option<String>, Violation> {
        check(&end_of(events))
    }

    fn history(writes: Vec<(&str, &str)>) -> Vec<TraceEvent> {
        let mut h = History::default();
        h.push(
            1141,
            EventKind::Bridge(BridgeEvent::ClientStarted {
                client: "bridge-client-1".into(),
                service: "svc".into(),
                notice_bound_ms: 10,
                failover_bound_ms: 5,
            }),
        );
        h.push(
            0,
            EventKind::Bridge(BridgeEvent::DurableWrites {
                member: 1,
                source: "snapshot".into(),
                entries: 9,
                writes: writes
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
        );
        h.events()
    }

    #[test]
    fn registry_records_pass() {
        assert!(judge(&history(vec![("/bridge/alive/a1", "bridge-broker-1")])).is_ok());
    }

    #[test]
    fn a_client_in_a_snapshot_fails() {
        let v = judge(&history(vec![(
            "/bridge/clients/bridge-broker-1/bridge-client-1",
            "bridge-client-1",
        )]))
        .unwrap_err();
        assert!(
            v.message.contains("client bridge-client-1"),
            "{}",
            v.message
        );
    }

    #[test]
    fn an_unknown_key_or_undecodable_record_fails() {
        let v = judge(&history(vec![("/bridge/sessions/x", "{}")])).unwrap_err();
        assert!(v.message.contains("no registry record"), "{}", v.message);
        let v = judge(&history(vec![("/bridge/agents/a1", "not json")])).unwrap_err();
        assert!(v.message.contains("no registry record"), "{}", v.message);
    }

    #[test]
    fn clients_without_any_decoded_disk_fail() {
        let mut h = History::default();
        h.push(
            1141,
            EventKind::Bridge(BridgeEvent::ClientStarted {
                client: "bridge-client-1".into(),
                service: "svc".into(),
                notice_bound_ms: 10,
                failover_bound_ms: 5,
            }),
        );
        assert!(judge(&h.events()).is_err());
    }
}
