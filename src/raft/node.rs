//! The async driver of one Raft node: ticks on the node's clock, inputs from the
//! inbox, and a Ready processed after each batch of them.

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use crate::sync::watch;

use super::config::RaftConfig;
use super::core::{Bootstrap, NodeEnv, RaftCore};
use super::error::RaftError;
use super::router::{Input, RaftHandle, INBOX_CAPACITY};
use super::state_machine::StateMachine;
use super::status::LeaderInfo;
use crate::seams::observer::Event;

/// Inputs drained per loop turn before a Ready is processed (bounds latency).
const INPUTS_PER_TURN: usize = 256;

/// The receiving side of a node's inbox, and where it publishes leadership.
pub struct Inbox {
    inputs: mpsc::Receiver<Input>,
    leader: watch::Sender<LeaderInfo>,
}

/// Creates a node's inbox: the handle goes to the transport and clients, the inbox
/// to [`run_raft_node`].
pub fn inbox() -> (RaftHandle, Inbox) {
    let (tx, inputs) = mpsc::channel(INBOX_CAPACITY);
    let (leader, leader_rx) = watch::channel(LeaderInfo::default());
    (RaftHandle::new(tx, leader_rx), Inbox { inputs, leader })
}

/// Opens the node's storage and runs its Raft loop until shutdown, removal, or a
/// storage failure (returned as `Err`).
pub async fn run_raft_node<S: StateMachine>(
    config: RaftConfig,
    env: NodeEnv,
    state_machine: S,
    bootstrap: Bootstrap,
    initial_members: BTreeMap<u64, String>,
    inbox: Inbox,
) -> Result<(), RaftError> {
    let core = RaftCore::open(config, env, state_machine, bootstrap, initial_members)?;
    drive(core, inbox).await
}

/// Runs an opened core until shutdown, removal or a storage failure.
pub async fn drive<S: StateMachine>(mut core: RaftCore<S>, inbox: Inbox) -> Result<(), RaftError> {
    let Inbox {
        inputs: mut inbox,
        leader,
    } = inbox;
    core.leader_tx = Some(leader);
    core.publish_leader();
    let tick_interval = core.config.tick_interval;
    let clock = core.env.clock.clone();
    let mut tick = clock.sleep(tick_interval);
    let result = loop {
        // Biased: the branch order is fixed, so a seed always picks the same one.
        let turn = tokio::select! {
            biased;
            _ = &mut tick => {
                core.tick();
                tick = clock.sleep(tick_interval);
                Ok(())
            }
            done = core.snapshot_writer.finished(), if core.snapshot_writer.in_flight() => {
                core.finish_snapshot(done)
            }
            input = inbox.recv() => {
                let Some(input) = input else { break Ok(()) };
                core.receive_input(input);
                for _ in 1..INPUTS_PER_TURN {
                    match inbox.try_recv() {
                        Ok(input) => core.receive_input(input),
                        Err(_) => break,
                    }
                }
                Ok(())
            }
        };
        if let Err(e) = turn.and_then(|()| core.process_ready()) {
            tracing::error!(node = core.id, error = %e, "stopping");
            break Err(e);
        }
        if core.stop_reason().is_some() {
            break Ok(());
        }
        let stall = core.env.disk.take_stall();
        if !stall.is_zero() {
            clock.sleep(stall).await;
        }
    };
    let reason = match (&result, core.stop_reason()) {
        (Err(e), _) => e.to_string(),
        (Ok(()), Some(reason)) => reason.to_string(),
        (Ok(()), None) => "inbox closed".to_string(),
    };
    tracing::info!(node = core.id, %reason, "raft loop stopped");
    // No task of this node touches its disk once the loop has returned (a node
    // reopened on the same directory must not race a stale writer). A node that
    // stopped in good order names the finished file in the WAL; after a storage
    // error it does not write again, and recovery ignores the unnamed file.
    if core.snapshot_writer.in_flight() {
        let done = core.snapshot_writer.finished().await;
        if result.is_ok() {
            if let Err(e) = core.finish_snapshot(done) {
                tracing::warn!(node = core.id, error = %e, "snapshot not recorded at stop");
            }
        }
    }
    core.fail_pending(&reason);
    core.env
        .observer
        .observe(core.id, &Event::Stopped { reason: &reason });
    result
}
