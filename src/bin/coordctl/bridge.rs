//! `coordctl bridge`: Link Bridge's registry (read from the keyspace) and a
//! broker's metrics.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use coordlab::bridge::view::read;
use coordlab::bridge::Status;
use coordlab::client::Connection;
use coordlab::proto::linkbridge::bridge_client::BridgeClient;
use coordlab::proto::linkbridge::BridgeStatusRequest;

#[derive(Subcommand, Debug)]
pub enum BridgeAction {
    /// A broker's view of the cluster (the seed's ClusterMetrics).
    Status {
        /// The broker's address (its configuration's node.address).
        #[arg(long)]
        broker: String,
    },
    /// Every service's instances: address, status, agent.
    Services,
    /// Every agent: up or down, and the brokers it is connected to.
    Agents,
}

fn failed(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub async fn run(
    conn: &Connection,
    action: BridgeAction,
    out: &mut impl Write,
) -> Result<ExitCode, String> {
    match action {
        BridgeAction::Status { broker } => {
            let mut client = BridgeClient::connect(format!("http://{broker}"))
                .await
                .map_err(|e| failed(format!("broker {broker}: {e}")))?;
            let m = client
                .status(BridgeStatusRequest {})
                .await
                .map_err(|e| failed(format!("broker {broker}: {}", e.message())))?
                .into_inner();
            let lines = [
                ("broker_id", m.broker_id.clone()),
                ("leader_id", m.leader_id.to_string()),
                ("raft_term", m.raft_term.to_string()),
                ("raft_index", m.raft_index.to_string()),
                ("raft_applied_index", m.raft_applied_index.to_string()),
                ("registry_revision", m.registry_revision.to_string()),
                ("registered_services", m.registered_services.to_string()),
                ("registered_instances", m.registered_instances.to_string()),
                ("connected_agents", m.connected_agents.to_string()),
                (
                    "local_connected_clients",
                    m.local_connected_clients.to_string(),
                ),
                (
                    "local_connected_agents",
                    m.local_connected_agents.to_string(),
                ),
                ("leader_uptime", format!("{} ms", m.leader_uptime_ms)),
                (
                    "local_request_latency",
                    format!("{:.3} ms", m.local_request_latency_us as f64 / 1000.0),
                ),
            ];
            for (name, value) in lines {
                writeln!(out, "{name}: {value}").map_err(failed)?;
            }
            for (member, state) in &m.node_states {
                writeln!(out, "node {member}: {state}").map_err(failed)?;
            }
        }
        BridgeAction::Services => {
            let registry = read(conn).await.map_err(failed)?;
            for service in registry.services() {
                for i in registry.instances(service) {
                    let status = match i.status {
                        Status::Serving => "serving".to_string(),
                        Status::Draining { grace_ms } => format!("draining(grace={grace_ms}ms)"),
                        Status::Down => "down".to_string(),
                    };
                    writeln!(
                        out,
                        "{service}/{} {} {status} agent={}",
                        i.record.id, i.record.address, i.record.agent
                    )
                    .map_err(failed)?;
                }
            }
        }
        BridgeAction::Agents => {
            let registry = read(conn).await.map_err(failed)?;
            for (agent, up) in registry.agents() {
                let state = if up { "up" } else { "down" };
                writeln!(
                    out,
                    "{} {state} brokers={}",
                    agent.id,
                    agent.brokers.join(",")
                )
                .map_err(failed)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
