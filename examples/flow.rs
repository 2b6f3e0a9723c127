//! Seed 002's integration test as a program: one workflow change proposed through
//! consensus, applied by state synchronisation and announced on the event bus,
//! a lock taken with its fencing token — against whichever implementation the
//! configuration picks.
//!
//! ```text
//! cargo run --example flow                          # single node (NoOp, in memory)
//! cargo run --example flow -- --config flow.toml    # what the file says (TOML or YAML)
//! cargo run --example flow -- --cluster 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
//! ```
//!
//! `--cluster` is the Raft implementation on a running coordd cluster (`coordd
//! --dev` starts one on those addresses) or any etcd v3 cluster.

use std::time::Duration;

use clap::Parser;
use coordlab::flow::{
    ConsensusAlgorithm, DeploymentConfig, Event, FlowError, ProposalStatus, ServiceContainer,
    StateChange, SystemConfig, WorkflowDef,
};
use coordlab::seams::disk::FileDisk;

#[derive(Parser)]
struct Args {
    /// A SystemConfig file (.toml, .yaml or .yml).
    #[arg(long, conflicts_with = "cluster")]
    config: Option<std::path::PathBuf>,
    /// Cluster mode on these members' client addresses.
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<String>,
    /// This node's name in cluster mode.
    #[arg(long, default_value = "example-node")]
    node: String,
}

fn config(args: &Args) -> Result<SystemConfig, FlowError> {
    if let Some(path) = &args.config {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let disk = FileDisk::open(dir.unwrap_or(std::path::Path::new("."))).map_err(|e| {
            FlowError::ConfigRead {
                file: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        return SystemConfig::load(&disk, name);
    }
    let mut config = SystemConfig::single_node();
    if !args.cluster.is_empty() {
        config.deployment = DeploymentConfig::Cluster {
            node_id: args.node.as_str().into(),
            nodes: args.cluster.clone(),
            bootstrap_timeout: Duration::from_secs(10),
        };
        config.consensus.algorithm = ConsensusAlgorithm::Raft;
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<(), FlowError> {
    let args = Args::parse();
    let config = config(&args)?;
    let mode = format!("{:?}", config.consensus.algorithm);
    let services = ServiceContainer::from_config(config).await?;
    let workflow = format!("invoice-run-{}", std::process::id());
    let change = StateChange::WorkflowCreated {
        workflow_id: workflow.as_str().into(),
        definition: WorkflowDef {
            name: "invoices".into(),
            tasks: vec!["extract".into(), "load".into()],
        },
    };
    let mut announcements = services.event_bus.subscribe_local("workflow").await?;

    let proposal = services.consensus.propose(change.clone()).await?;
    services.consensus.commit(proposal.clone()).await?;
    let status = services.consensus.status(proposal.clone()).await?;
    println!("[{mode}] proposal {proposal}: {status:?}");
    if status != ProposalStatus::Committed {
        eprintln!("the proposal was not committed");
        std::process::exit(1);
    }

    services.state_sync.broadcast_change(change.clone()).await?;
    let state = services
        .state_sync
        .sync_workflow(workflow.as_str().into())
        .await?;
    println!(
        "[{mode}] workflow {}: {:?}",
        state.workflow_id, state.status
    );

    let payload = serde_json::to_value(&change).expect("a change serializes");
    services
        .event_bus
        .publish_local("workflow", Event::new("workflow.created", payload))
        .await?;
    let heard = announcements.recv().await?;
    println!(
        "[{mode}] event {} #{} from {}",
        heard.event.kind, heard.sequence, heard.origin
    );

    let guard = services
        .distributed_lock
        .acquire(&workflow, Duration::from_secs(10))
        .await?;
    println!(
        "[{mode}] lock {} held with fencing token {}",
        guard.resource(),
        guard.fencing_token()
    );
    services.distributed_lock.release(guard).await?;

    let report = services.state_sync.check_consistency().await?;
    for m in &report.members {
        println!(
            "[{mode}] member {} at revision {}: {}",
            m.node_id,
            m.revision,
            &m.state_hash[..16.min(m.state_hash.len())]
        );
    }
    println!("[{mode}] consistent: {}", report.consistent);
    Ok(())
}
