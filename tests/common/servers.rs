//! The servers a real-mode test runs against: three coordd nodes, or three real
//! etcd 3.4 members when an environment variable says `etcd` (to check that the
//! test's expectations are etcd's own).

use super::etcd::EtcdCluster;
use super::TestCluster;

pub enum Servers {
    Coordd(TestCluster),
    Etcd(EtcdCluster),
}

impl Servers {
    /// Three members of what `$var` names (`coordd`, the default, or `etcd`).
    pub fn start(var: &str) -> Servers {
        match std::env::var(var).as_deref() {
            Ok("etcd") => Servers::Etcd(EtcdCluster::start(3)),
            Ok("coordd") | Err(_) => Servers::Coordd(TestCluster::start(3)),
            Ok(other) => panic!("{var}={other}: expected coordd or etcd"),
        }
    }

    pub fn is_coordd(&self) -> bool {
        matches!(self, Servers::Coordd(_))
    }

    /// The members' client endpoints.
    pub fn endpoints(&self) -> Vec<String> {
        match self {
            Servers::Coordd(cluster) => cluster.endpoints(&[1, 2, 3]),
            Servers::Etcd(cluster) => cluster.endpoints(),
        }
    }

    /// SIGKILLs the member serving `endpoint`.
    pub fn kill(&mut self, endpoint: &str) {
        match self {
            Servers::Coordd(cluster) => cluster.kill_at(endpoint),
            Servers::Etcd(cluster) => cluster.kill(endpoint),
        }
    }
}
