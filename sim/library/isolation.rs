//! Cutting a library client's host off from every other host (a client-side
//! network fault: the cluster itself stays healthy). madsim's connections are
//! reliable, so a clogged link neither drops nor resets a stream: its messages wait
//! until the link clears, and only the client's own deadlines notice.

use madsim::net::NetSim;
use madsim::task::NodeId;

/// The host cut off from every other host while this lives.
pub struct Isolation(NodeId);

impl Isolation {
    pub fn start(host: NodeId) -> Isolation {
        NetSim::current().clog_node(host);
        Isolation(host)
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        NetSim::current().unclog_node(self.0);
    }
}
