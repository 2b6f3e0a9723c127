//! A real etcd cluster on 127.0.0.1 (Debian's `etcd-server`), to check that a test's
//! expectations of etcdctl output are etcd's own and not just coordd's.

use std::process::{Child, Command, Stdio};

use super::free_port;

/// How to get `etcd`; printed whenever it is missing.
pub const ETCD_INSTALL_HINT: &str =
    "etcd not found on PATH: install it with `apt-get install etcd-server`";

struct EtcdMember {
    client_url: String,
    child: Option<Child>,
}

/// `n` etcd members with fresh client and peer ports, data under a temp dir.
pub struct EtcdCluster {
    root: tempfile::TempDir,
    members: Vec<EtcdMember>,
}

impl EtcdCluster {
    pub fn start(n: usize) -> EtcdCluster {
        let root = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
            .collect();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &(client, peer))| {
                let name = format!("e{}", i + 1);
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let log = std::fs::File::create(root.path().join(format!("{name}.log"))).unwrap();
                let child = Command::new("etcd")
                    .args(["--name", &name, "--data-dir"])
                    .arg(root.path().join(&name))
                    .args(["--listen-client-urls", &client_url])
                    .args(["--advertise-client-urls", &client_url])
                    .args(["--listen-peer-urls", &peer_url])
                    .args(["--initial-advertise-peer-urls", &peer_url])
                    .args(["--initial-cluster", &initial_cluster.join(",")])
                    .args(["--initial-cluster-state", "new"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start etcd: {e}; {ETCD_INSTALL_HINT}"));
                EtcdMember {
                    client_url,
                    child: Some(child),
                }
            })
            .collect();
        EtcdCluster { root, members }
    }

    /// Starts member `name`, already added with `member add` at `peer_url`, into the
    /// running cluster (`--initial-cluster-state existing` with the
    /// `ETCD_INITIAL_CLUSTER` that `etcdctl member add` printed); its client endpoint.
    pub fn start_added(&mut self, name: &str, peer_url: &str, initial_cluster: &str) -> String {
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(self.root.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", name, "--data-dir"])
            .arg(self.root.path().join(name))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", peer_url])
            .args(["--initial-advertise-peer-urls", peer_url])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", "existing"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}; {ETCD_INSTALL_HINT}"));
        self.members.push(EtcdMember {
            client_url: client_url.clone(),
            child: Some(child),
        });
        client_url.trim_start_matches("http://").to_string()
    }

    /// Client endpoints as etcdctl takes them (`127.0.0.1:port`).
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.client_url.trim_start_matches("http://").to_string())
            .collect()
    }

    /// SIGKILL the member serving `endpoint`.
    pub fn kill(&mut self, endpoint: &str) {
        let member = self
            .members
            .iter_mut()
            .find(|m| m.client_url.ends_with(endpoint))
            .unwrap_or_else(|| panic!("no etcd member at {endpoint}"));
        if let Some(mut child) = member.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Each member's name and log.
    pub fn logs(&self) -> Vec<(String, String)> {
        let mut logs: Vec<(String, String)> = std::fs::read_dir(self.root.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .map(|path| {
                let name = path.file_stem().unwrap().to_string_lossy();
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                (format!("etcd {name}"), log)
            })
            .collect();
        logs.sort();
        logs
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
