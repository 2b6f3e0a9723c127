//! The bridge's commands run against the real keyspace (`MvccStore`), and a view
//! kept from their watch events is compared with a fresh range read of the store —
//! two independent paths to the same registry.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::coord::convert::{compares, kv_to_proto, txn_ops};
use crate::coord::mvcc::{Change, MvccStore, RangeQuery};
use crate::coord::service::lock::prefix_end;
use crate::library::KeyEvent;

use super::command::Command;
use super::error::BridgeError;
use super::record::{alive_key, AgentRecord, InstanceRecord, InstanceStatus, PREFIX};
use super::state::{ClusterState, Status};

/// Applies `command` to `store`; returns whether its compares held and the events
/// it made.
fn run(store: &mut MvccStore, command: &Command) -> (bool, Vec<KeyEvent>) {
    let txn = command.to_txn().expect("valid command");
    let success = txn_ops(&txn.success).unwrap();
    let failure = txn_ops(&txn.failure).unwrap();
    let result = store
        .txn(&compares(&txn.compare), &success, &failure)
        .expect("the store accepts the txn");
    let events = key_events(&result.changes);
    (result.succeeded, events)
}

/// The lessor's expiry of an agent's lease: its liveness key is deleted.
fn expire(store: &mut MvccStore, agent: &str) -> Vec<KeyEvent> {
    let op = crate::coord::mvcc::TxnOp::DeleteRange {
        key: alive_key(agent),
        range_end: Vec::new(),
        prev_kv: false,
    };
    let result = store.txn(&[], &[op], &[]).unwrap();
    key_events(&result.changes)
}

/// A transaction's changes as a watch delivers them.
fn key_events(changes: &[Change]) -> Vec<KeyEvent> {
    changes
        .iter()
        .enumerate()
        .map(|(i, c)| KeyEvent {
            deleted: c.deleted,
            key: c.kv.key.clone(),
            value: c.kv.value.clone(),
            prev_value: c.prev.as_ref().map(|p| p.value.clone()),
            revision: c.revision,
            completes_revision: i + 1 == changes.len(),
        })
        .collect()
}

/// A range read of `/bridge/`: the view and the records it left out.
fn read_all(store: &MvccStore) -> (ClusterState, Vec<BridgeError>) {
    let result = store
        .range(&RangeQuery {
            key: PREFIX.as_bytes().to_vec(),
            range_end: prefix_end(PREFIX.as_bytes()),
            ..Default::default()
        })
        .unwrap();
    let kvs: Vec<_> = result.kvs.into_iter().map(kv_to_proto).collect();
    ClusterState::from_range(&kvs, result.revision)
}

fn read(store: &MvccStore) -> ClusterState {
    let (state, errors) = read_all(store);
    assert!(errors.is_empty(), "{errors:?}");
    state
}

fn agent(id: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        brokers: vec!["b1".into()],
    }
}

/// `agent` connects through broker b1 on lease 7.
fn up(agent_id: &str) -> Command {
    Command::AgentUp {
        agent: agent(agent_id),
        broker: "b1".into(),
        lease: 7,
        replaced: Vec::new(),
    }
}

fn instance(service: &str, id: &str, agent: &str) -> InstanceRecord {
    InstanceRecord {
        id: id.into(),
        service: service.into(),
        address: format!("10.0.0.{}:50051", id.len()),
        agent: agent.into(),
        metadata: BTreeMap::new(),
        status: InstanceStatus::Serving,
    }
}

#[test]
fn an_instance_lives_through_register_notice_expiry_and_deregister() {
    let mut store = MvccStore::new();
    let up = up("a1");
    assert!(run(&mut store, &up).0);
    let register = Command::Register {
        instance: instance("echo", "i1", "a1"),
        replaces: None,
    };
    assert!(run(&mut store, &register).0);
    let view = read(&store);
    assert_eq!(view.services(), vec!["echo"]);
    assert_eq!(view.serving("echo").len(), 1);

    let seen = view.instances("echo").remove(0);
    let notice = Command::ShutdownNotice {
        seen: seen.record.clone(),
        mod_revision: seen.mod_revision,
        grace_ms: 3000,
    };
    assert!(run(&mut store, &notice).0);
    let view = read(&store);
    assert_eq!(
        view.instances("echo")[0].status,
        Status::Draining { grace_ms: 3000 }
    );
    assert!(view.serving("echo").is_empty());
    // A notice based on the record before the first one is refused.
    assert!(
        !run(&mut store, &notice).0,
        "a stale notice must fail its compare"
    );

    expire(&mut store, "a1");
    let view = read(&store);
    assert!(!view.agent_up("a1"));
    assert_eq!(view.instances("echo")[0].status, Status::Down);
    assert_eq!(
        view.agents()
            .map(|(a, up)| (a.id.as_str(), up))
            .collect::<Vec<_>>(),
        vec![("a1", false)]
    );

    assert!(
        run(
            &mut store,
            &Command::Deregister {
                service: "echo".into(),
                id: "i1".into()
            }
        )
        .0
    );
    assert!(read(&store).services().is_empty());
}

#[test]
fn an_agent_that_is_not_up_cannot_register() {
    let mut store = MvccStore::new();
    let register = Command::Register {
        instance: instance("echo", "i1", "a1"),
        replaces: None,
    };
    assert!(!run(&mut store, &register).0, "no agent record");
    run(&mut store, &up("a1"));
    expire(&mut store, "a1");
    assert!(!run(&mut store, &register).0, "agent down");
    assert!(read(&store).instances("echo").is_empty());
}

#[test]
fn a_registration_lands_only_on_the_record_it_read() {
    let mut store = MvccStore::new();
    run(&mut store, &up("a1"));
    let fresh = |replaces| Command::Register {
        instance: instance("echo", "i1", "a1"),
        replaces: Some(replaces),
    };
    assert!(run(&mut store, &fresh(0)).0, "nothing there yet");
    let seen = read(&store).instances("echo").remove(0);
    let notice = Command::ShutdownNotice {
        seen: seen.record,
        mod_revision: seen.mod_revision,
        grace_ms: 500,
    };
    assert!(run(&mut store, &notice).0);
    // A registration resent from before the notice does not undo it.
    assert!(!run(&mut store, &fresh(0)).0);
    assert!(!run(&mut store, &fresh(seen.mod_revision)).0);
    let now = read(&store).instances("echo").remove(0);
    assert!(matches!(now.status, super::state::Status::Draining { .. }));
}

#[test]
fn alternatives_are_the_other_serving_instances() {
    let mut store = MvccStore::new();
    run(&mut store, &up("a1"));
    for id in ["i1", "i2", "i3"] {
        run(
            &mut store,
            &Command::Register {
                instance: instance("echo", id, "a1"),
                replaces: None,
            },
        );
    }
    let ids =
        |v: Vec<super::state::Instance>| v.into_iter().map(|i| i.record.id).collect::<Vec<_>>();
    assert_eq!(
        ids(read(&store).alternatives("echo", "i2")),
        vec!["i1", "i3"]
    );
}

#[test]
fn an_event_older_than_the_view_is_refused() {
    let mut store = MvccStore::new();
    let (_, old) = run(&mut store, &up("a1"));
    run(&mut store, &Command::AgentStatus { agent: agent("a1") });
    let mut view = read(&store);
    assert!(view.apply(&old[0]).is_err());
}

#[test]
fn invalid_names_never_reach_the_log() {
    let bad = Command::Register {
        instance: instance("echo/v2", "i1", "a1"),
        replaces: None,
    };
    let err = bad.to_txn().unwrap_err();
    assert!(err.to_string().contains("echo/v2"), "{err}");
}

#[derive(Debug, Clone)]
enum Step {
    Up(u8),
    Status(u8, u8),
    Leave(u8),
    Register(u8, u8, u8),
    Deregister(u8, u8),
    Notice(u8, u8),
    Expire(u8),
}

fn step() -> impl Strategy<Value = Step> {
    let a = 0u8..3;
    prop_oneof![
        a.clone().prop_map(Step::Up),
        (a.clone(), 1u8..4).prop_map(|(a, n)| Step::Status(a, n)),
        a.clone().prop_map(Step::Leave),
        (0u8..2, 0u8..4, a.clone()).prop_map(|(s, i, a)| Step::Register(s, i, a)),
        (0u8..2, 0u8..4).prop_map(|(s, i)| Step::Deregister(s, i)),
        (0u8..2, 0u8..4).prop_map(|(s, i)| Step::Notice(s, i)),
        a.prop_map(Step::Expire),
    ]
}

proptest! {
    /// For any sequence of commands and lease expiries, the view kept from watch
    /// events equals a fresh range read after every step.
    #[test]
    fn the_view_kept_from_events_is_the_view_read_from_the_store(steps in prop::collection::vec(step(), 1..40)) {
        let mut store = MvccStore::new();
        let mut kept = read(&store);
        for s in steps {
            let name = |p: &str, n: u8| format!("{p}{n}");
            let events = match s {
                Step::Up(a) => run(&mut store, &Command::AgentUp { agent: agent(&name("a", a)), broker: "b1".into(), lease: 1 + a as i64, replaced: Vec::new() }).1,
                Step::Status(a, n) => {
                    let brokers = (1..=n).map(|b| name("b", b)).collect();
                    run(&mut store, &Command::AgentStatus { agent: AgentRecord { id: name("a", a), brokers } }).1
                }
                Step::Leave(a) => {
                    let instances = kept.services().iter().flat_map(|s| kept.instances(s)).filter(|i| i.record.agent == name("a", a)).map(|i| (i.record.service, i.record.id)).collect();
                    run(&mut store, &Command::AgentLeave { agent: name("a", a), instances }).1
                }
                Step::Register(s, i, a) => run(&mut store, &Command::Register { instance: instance(&name("svc", s), &name("i", i), &name("a", a)), replaces: None }).1,
                Step::Deregister(s, i) => run(&mut store, &Command::Deregister { service: name("svc", s), id: name("i", i) }).1,
                Step::Notice(s, i) => {
                    let Some(seen) = kept.instances(&name("svc", s)).into_iter().find(|x| x.record.id == name("i", i)) else { continue };
                    run(&mut store, &Command::ShutdownNotice { seen: seen.record, mod_revision: seen.mod_revision, grace_ms: 500 }).1
                }
                Step::Expire(a) => expire(&mut store, &name("a", a)),
            };
            for e in &events {
                kept.apply(e).unwrap();
            }
            kept.advance_to(store.revision());
            prop_assert_eq!(&kept, &read(&store));
        }
    }
}

#[test]
fn a_record_that_does_not_decode_is_reported_by_key_and_left_out() {
    let mut store = MvccStore::new();
    run(&mut store, &up("a1"));
    run(
        &mut store,
        &Command::Register {
            instance: instance("echo", "i1", "a1"),
            replaces: None,
        },
    );
    let mut kept = read(&store);
    let (revision, _) = store
        .put(b"/bridge/instances/echo/i1", b"{corrupt", 0)
        .unwrap();
    let corrupt = KeyEvent {
        deleted: false,
        key: b"/bridge/instances/echo/i1".to_vec(),
        value: b"{corrupt".to_vec(),
        prev_value: None,
        revision,
        completes_revision: true,
    };
    let err = kept.apply(&corrupt).unwrap_err();
    assert!(
        err.to_string().contains("/bridge/instances/echo/i1"),
        "{err}"
    );
    assert!(
        kept.instances("echo").is_empty(),
        "the old record must not linger"
    );

    let (state, errors) = read_all(&store);
    assert_eq!(errors.len(), 1);
    assert!(state.instances("echo").is_empty());
    assert!(state.agent_up("a1"), "the readable records are kept");
}
