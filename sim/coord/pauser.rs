//! Client pauses: a lock holder's whole client node stops (a stop-the-world GC
//! pause, a VM migration) — its keep-alives with it — and resumes later. A paused
//! node cannot resume itself, so a task on a harness node does.

use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;
use tokio::sync::mpsc;

use crate::sim::observer::Recorder;
use crate::sim::trace::EventKind;

/// Pauses a client's node and resumes it later, from a harness node (a paused node
/// cannot resume itself).
#[derive(Clone)]
pub struct Pauser {
    handle: Handle,
    resume: mpsc::UnboundedSender<(NodeId, u64, u64)>,
    recorder: Arc<Recorder>,
}

impl Pauser {
    /// Starts the resuming task on `resumer`.
    pub fn start(handle: Handle, resumer: &NodeHandle, recorder: Arc<Recorder>) -> Self {
        let (resume, mut requests) = mpsc::unbounded_channel::<(NodeId, u64, u64)>();
        let (h, r) = (handle.clone(), recorder.clone());
        resumer.spawn(async move {
            while let Some((node, client, pause_ms)) = requests.recv().await {
                let (h, r) = (h.clone(), r.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    r.record(
                        0,
                        EventKind::Fault {
                            action: format!("resume client {client}"),
                        },
                    );
                    h.resume(node);
                });
            }
        });
        Pauser {
            handle,
            resume,
            recorder,
        }
    }

    /// Pauses the calling client's own node for `pause_ms`; returns once resumed.
    pub async fn pause_me(&self, node: NodeId, client: u64, pause_ms: u64) {
        self.recorder.record(
            0,
            EventKind::Fault {
                action: format!("pause client {client} for {pause_ms} ms"),
            },
        );
        self.handle.pause(node);
        let _ = self.resume.send((node, client, pause_ms));
        // The node stops at this await and continues once resumed.
        tokio::task::yield_now().await;
    }
}
