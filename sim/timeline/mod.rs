//! `timeline.html`: one run drawn as a self-contained page (inline CSS and JS,
//! nothing fetched, opens from `file://`), written beside the other artifacts.
//!
//! - `lanes.rs` turns the trace into a [`Timeline`]: one lane per node (role and
//!   term over time, the LogicNode's mode in a lane of its own), one per client
//!   (operations from invoke to complete, coloured by outcome);
//! - `faults.rs` adds the harness's faults: crashes, pauses, partitions, link and
//!   disk faults as shaded spans, clock jumps as marks;
//! - `html.rs` writes the page: the model and the events it draws embedded as
//!   JSON (`<` escaped, so no string can end the script block) and rendered by
//!   `page.js`; clicking anything shows its events' JSON.
//!
//! The violation is marked with the events it names, and a linearizability
//! failure adds its shrunk sub-history (`checkers::linearizability::counterexample`)
//! drawn as Porcupine draws one. Pure: the same trace gives the same page, byte
//! for byte (no wall clock), and reading the trace never changes it.

mod faults;
mod html;
mod lanes;

use std::collections::BTreeSet;

use serde::Serialize;

use super::checkers::linearizability::{self, counterexample::Counterexample};
use super::checkers::Violation;
use super::trace::TraceEvent;

pub use html::{escape_html, escape_json_for_script};

/// A row of the picture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lane {
    /// `net` (the harness), `n<id>` (a node), `m<id>` (its LogicNode's mode),
    /// `c<id>` (a client).
    pub id: String,
    pub label: String,
}

/// Something with a duration on a lane: a role, a mode, a fault, an operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub lane: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// CSS class: `role-leader`, `fault-down`, `op-ok`, …
    pub class: String,
    pub label: String,
    /// The events it stands for (clicking it shows them).
    pub seqs: Vec<u64>,
    /// Still going when the trace ends.
    pub open: bool,
}

/// Something at one moment on a lane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mark {
    pub lane: String,
    pub ms: u64,
    pub class: &'static str,
    pub label: String,
    pub seq: u64,
}

/// The broken invariant, placed in time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViolationView {
    pub invariant: String,
    pub message: String,
    /// The event that broke it, when the trace holds it.
    pub seq: Option<u64>,
    pub ms: Option<u64>,
    /// Earlier events it involves (for a linearizability failure: the
    /// counterexample's invocations and completions).
    pub culprits: Vec<u64>,
}

/// Everything the page draws.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timeline {
    pub title: String,
    pub class: String,
    pub replay: String,
    pub end_ms: u64,
    pub total_events: usize,
    pub lanes: Vec<Lane>,
    pub spans: Vec<Span>,
    pub marks: Vec<Mark>,
    pub violation: Option<ViolationView>,
    pub lincheck: Option<Counterexample>,
}

impl Timeline {
    /// Builds the picture of `events` (a whole trace) for a run that ended as
    /// `class` with `violation` (invariant `none` for a passing run).
    pub fn build(
        title: &str,
        events: &[TraceEvent],
        class: &str,
        violation: &Violation,
        replay: &str,
    ) -> Timeline {
        let mut t = lanes::draw(events);
        faults::draw(events, &mut t);
        t.title = title.to_string();
        t.class = class.to_string();
        t.replay = replay.to_string();
        if violation.invariant != "none" {
            if violation.invariant == linearizability::NAME {
                t.lincheck = linearizability::counterexample::counterexample(events);
            }
            t.violation = Some(view_of(violation, events, t.lincheck.as_ref()));
        }
        t
    }

    /// Every event the picture refers to, in trace order.
    pub fn referenced_seqs(&self) -> BTreeSet<u64> {
        let mut seqs: BTreeSet<u64> = self.spans.iter().flat_map(|s| s.seqs.clone()).collect();
        seqs.extend(self.marks.iter().map(|m| m.seq));
        if let Some(v) = &self.violation {
            seqs.extend(v.seq);
            seqs.extend(v.culprits.iter().copied());
        }
        seqs
    }
}

fn view_of(
    violation: &Violation,
    events: &[TraceEvent],
    lincheck: Option<&Counterexample>,
) -> ViolationView {
    let find = |seq: u64| events.iter().find(|e| e.seq == seq);
    let mut culprits: Vec<u64> = violation.related.clone();
    if let Some(c) = lincheck {
        culprits.extend(
            c.ops
                .iter()
                .flat_map(|op| std::iter::once(op.call_seq).chain(op.ret_seq)),
        );
    }
    culprits.retain(|&s| find(s).is_some());
    ViolationView {
        invariant: violation.invariant.to_string(),
        message: violation.message.clone(),
        seq: find(violation.event_seq).map(|e| e.seq),
        ms: find(violation.event_seq).map(|e| e.time_ms),
        culprits,
    }
}

/// The whole page for a run (see the module doc).
pub fn render(
    title: &str,
    events: &[TraceEvent],
    class: &str,
    violation: &Violation,
    replay: &str,
) -> String {
    let timeline = Timeline::build(title, events, class, violation, replay);
    html::page(&timeline, events)
}

#[cfg(test)]
mod tests;
