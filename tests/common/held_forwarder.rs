//! A TCP forwarder that is listening but *held*: connections to it complete in the
//! kernel's backlog and then wait, so a gRPC client sees that endpoint as still
//! connecting, until the test opens it and everything is forwarded to the target.
//! It lets a test decide which endpoint a multi-endpoint client (etcdctl) uses
//! first, while the others stay available for failover.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

pub struct HeldForwarder {
    /// Where clients connect (`127.0.0.1:port`).
    pub addr: String,
    target: String,
    listener: Option<TcpListener>,
}

impl HeldForwarder {
    /// Listens on a fresh port; forwards nothing until [`HeldForwarder::open`].
    pub fn bind(target: &str) -> HeldForwarder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        HeldForwarder {
            addr: listener.local_addr().unwrap().to_string(),
            target: target.to_string(),
            listener: Some(listener),
        }
    }

    /// Accepts the queued connections and every later one, each forwarded to the
    /// target for as long as both sides keep it open.
    pub fn open(&mut self) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let target = self.target.clone();
        // The accept loop lives as long as the test process; nothing waits for it.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                // A dead target closes the client's connection: it fails over.
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
    }
}

/// Copies `from` into `to` until either side ends, then shuts both down.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
