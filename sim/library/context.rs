//! What every library client shares: the run's spec and endpoints, the recorder, and
//! the stop flag; and a config watcher's progress, which the end of the run waits on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use coordlab::library::{Coordinator, CoordinatorConfig};

use crate::sim::observer::Recorder;
use crate::sim::scenario::library::LibrarySpec;
use crate::sim::trace::{EventKind, LibraryEvent};

/// Tells the library clients to stop after their current call.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What every library client needs.
#[derive(Clone)]
pub struct Ctx {
    pub spec: LibrarySpec,
    /// Every initial member's address.
    pub endpoints: Vec<String>,
    pub safety_ms: u64,
    pub recorder: Arc<Recorder>,
    pub stop: Stop,
}

impl Ctx {
    pub fn record(&self, client: u64, event: LibraryEvent) {
        self.recorder.record(client, EventKind::Library(event));
    }

    pub fn config(&self, endpoints: Vec<String>) -> CoordinatorConfig {
        self.spec.coordinator_config(endpoints)
    }

    /// A coordinator on `endpoints` (connecting is lazy; only credentials could
    /// make it fail, and the harness uses none).
    pub async fn coordinator(&self, endpoints: Vec<String>) -> Coordinator {
        Coordinator::new(self.config(endpoints))
            .await
            .expect("a coordinator without credentials connects lazily")
    }
}

/// A config watcher's progress, for the end-of-run wait.
#[derive(Default)]
pub struct WatcherProgress {
    /// (store revision read right after opening, latest revision delivered).
    pub state: Mutex<Option<(i64, i64)>>,
}
