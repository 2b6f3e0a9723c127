//! The contract between the Raft core and the replicated state machine.

/// The serialisation of a state captured by [`StateMachine::snapshot_later`].
pub type SnapshotEncoder = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// A deterministic state machine driven by committed log entries.
///
/// Contract: `apply` is called once per committed normal entry, in index order, with
/// no gaps since the last `restore`; it must be deterministic (same commands, same
/// answers on every node). `snapshot` captures everything `apply` has built, and
/// `restore` replaces the state with it.
pub trait StateMachine: Send + 'static {
    /// Applies the command of the entry at `index`; returns the answer for its
    /// client. `Err` names why this node cannot apply the command at all (data an
    /// earlier version wrote that this one no longer reads) and changes nothing:
    /// the node stops with that reason instead of skipping the entry, so nothing
    /// is lost.
    fn apply(&mut self, index: u64, command: &[u8]) -> Result<Vec<u8>, String>;
    /// Answers a read-only query against the current state.
    fn query(&self, query: &[u8]) -> Vec<u8>;
    /// Serialises the whole state.
    fn snapshot(&self) -> Vec<u8>;
    /// Captures the whole state now and returns its serialisation to run later,
    /// off the Raft loop; it yields what `snapshot` returns now. The default
    /// serialises at once; a state machine that can capture cheaply (persistent
    /// maps) moves the work out of the loop.
    fn snapshot_later(&self) -> SnapshotEncoder {
        let bytes = self.snapshot();
        Box::new(move || bytes)
    }
    /// Replaces the state with a snapshot; `Err` names what is malformed.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}
