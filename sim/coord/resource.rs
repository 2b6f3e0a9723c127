//! The resources lock holders write to, one per lock name, kept by the harness: a
//! fenced one accepts a write only if its token is at least the highest it has
//! accepted (so a holder that lost its lock without knowing cannot write after its
//! successor did); an unfenced one accepts everything (the TTL-only demo). Every
//! write and its verdict goes into the trace.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::sim::checkers::fenced_resource_order::FENCED_PREFIX;
use crate::sim::checkers::ttl_only_demo::UNFENCED_PREFIX;
use crate::sim::observer::Recorder;
use crate::sim::trace::EventKind;

/// What a holder writes.
#[derive(Debug, Clone, Copy)]
pub enum Section {
    Enter,
    Exit,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Enter => "enter",
            Section::Exit => "exit",
        }
    }
}

#[derive(Clone)]
pub struct Resources {
    fenced: bool,
    /// Lock name → highest token accepted.
    highest: Arc<Mutex<BTreeMap<String, i64>>>,
    recorder: Arc<Recorder>,
}

impl Resources {
    pub fn fenced(recorder: Arc<Recorder>) -> Self {
        Resources {
            fenced: true,
            highest: Arc::default(),
            recorder,
        }
    }

    pub fn unfenced(recorder: Arc<Recorder>) -> Self {
        Resources {
            fenced: false,
            ..Resources::fenced(recorder)
        }
    }

    /// `client` writes lock `name`'s resource with `token`; whether it was accepted.
    pub fn write(&self, name: &str, client: u64, token: i64, section: Section) -> bool {
        let mut highest = self.highest.lock().unwrap_or_else(|e| e.into_inner());
        let top = highest.entry(name.to_string()).or_insert(i64::MIN);
        let accepted = !self.fenced || token >= *top;
        if accepted {
            *top = (*top).max(token);
        }
        let prefix = if self.fenced {
            FENCED_PREFIX
        } else {
            UNFENCED_PREFIX
        };
        self.recorder.record(
            client,
            EventKind::ResourceWrite {
                resource: format!("{prefix}{name}"),
                client,
                token,
                action: section.name().into(),
                accepted,
            },
        );
        accepted
    }
}
