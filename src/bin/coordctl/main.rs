//! coordctl: talks to a coordlab cluster. Any endpoint works; it follows the leader.
//! `put`, `get`, `del`, `watch`, `lease` and `lock` speak the etcd v3 API (see
//! `etcd.rs`): one keyspace, the one etcdctl sees; `member` uses etcd's Cluster
//! API (`member.rs`), as `etcdctl member` does.

mod bridge;
mod etcd;
mod member;
mod mq;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use coordlab::client::{AdminClient, ClientError, Connection, ConnectionConfig};
use coordlab::library::CoordinatorError;
use coordlab::mq::client::CooClient;
use coordlab::proto::StatusResponse;
use mq::{GroupAction, TopicAction};

#[derive(Parser, Debug)]
#[command(name = "coordctl", about = "Talk to a coordlab cluster")]
struct Args {
    /// Comma-separated node addresses (host:port).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
    )]
    endpoints: Vec<String>,
    /// Seconds before a request gives up, retries included.
    #[arg(long, default_value_t = 20)]
    timeout_secs: u64,
    /// `name:password` for a cluster with auth enabled (put, get, del, watch, lease, lock).
    #[arg(long)]
    user: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The leader's view: id, term, commit and applied index, members.
    Status {
        /// One block per endpoint instead of the leader's only.
        #[arg(long)]
        all: bool,
    },
    /// Membership through etcd's Cluster API: add, remove, promote, list.
    Member {
        #[command(subcommand)]
        action: member::MemberAction,
    },
    /// Move leadership to node ID (etcd's Maintenance MoveLeader; answers once ID leads).
    TransferLeader { id: u64 },
    /// MQ topics.
    Topic {
        #[command(subcommand)]
        action: TopicAction,
    },
    /// MQ brokers known to the coo.
    Brokers,
    /// MQ consumer groups.
    Group {
        #[command(subcommand)]
        action: GroupAction,
    },
    /// Link Bridge: a broker's status, the registry's services and agents.
    Bridge {
        #[command(subcommand)]
        action: bridge::BridgeAction,
    },
    /// etcd v3 API commands: put, get, del, watch, lease, lock.
    #[command(flatten)]
    Etcd(etcd::EtcdCommand),
}

fn print_status(out: &mut impl Write, s: &StatusResponse) -> std::io::Result<()> {
    let members: Vec<String> = s
        .members
        .iter()
        .map(|m| format!("{}={}", m.id, m.addr))
        .collect();
    writeln!(out, "id: {}", s.id)?;
    writeln!(out, "role: {}", s.role)?;
    writeln!(out, "leader: {}", s.leader_id)?;
    writeln!(out, "term: {}", s.term)?;
    writeln!(out, "commit_index: {}", s.commit_index)?;
    writeln!(out, "applied_index: {}", s.applied_index)?;
    writeln!(out, "first_log_index: {}", s.first_log_index)?;
    writeln!(out, "last_log_index: {}", s.last_log_index)?;
    writeln!(out, "snapshot_index: {}", s.snapshot_index)?;
    writeln!(out, "members: {}", members.join(","))?;
    if !s.logic_node_mode.is_empty() {
        writeln!(out, "logic_node_mode: {}", s.logic_node_mode)?;
        writeln!(out, "mode_switches: {}", s.mode_switches)?;
    }
    Ok(())
}

/// Every command's connection settings: any endpoint, retried (rotating members,
/// following leader hints) until the overall timeout.
fn connection_config(args: &Args) -> ConnectionConfig {
    let mut config = ConnectionConfig::new(args.endpoints.iter().cloned()).until(
        Duration::from_secs(args.timeout_secs.clamp(1, 5)),
        Duration::from_secs(args.timeout_secs),
    );
    if let Some(u) = &args.user {
        let (name, password) = u.split_once(':').unwrap_or((u.as_str(), ""));
        config.credentials = Some((name.to_string(), password.to_string()));
    }
    config
}

async fn etcd_connection(config: ConnectionConfig) -> Result<Arc<Connection>, CoordinatorError> {
    Ok(Arc::new(Connection::connect(config).await?))
}

async fn run(args: Args) -> Result<ExitCode, ClientError> {
    let config = connection_config(&args);
    let coo_config = config.clone();
    let client = AdminClient::new(config.clone())?;
    let mut out = std::io::stdout().lock();
    match args.command {
        Command::Etcd(command) => {
            let run = async {
                let conn = etcd_connection(config).await?;
                etcd::run(&conn, command).await
            };
            return Ok(exit_code(run.await));
        }
        Command::Status { all: false } => {
            let s = client.leader_status().await?;
            print_status(&mut out, &s).expect("stdout");
        }
        Command::Status { all: true } => {
            for (i, endpoint) in args.endpoints.iter().enumerate() {
                if i > 0 {
                    writeln!(out).expect("stdout");
                }
                writeln!(out, "endpoint: {endpoint}").expect("stdout");
                match client.status_of(endpoint).await {
                    Ok(s) => print_status(&mut out, &s).expect("stdout"),
                    Err(e) => writeln!(out, "error: {e}").expect("stdout"),
                }
            }
        }
        Command::Bridge { action } => {
            let run = async {
                let conn = etcd_connection(config).await.map_err(|e| e.to_string())?;
                bridge::run(&conn, action, &mut out).await
            };
            return Ok(run.await.unwrap_or_else(|e| {
                eprintln!("coordctl: {e}");
                ExitCode::from(2)
            }));
        }
        Command::Member { action } => {
            let run = async {
                let conn = etcd_connection(config).await?;
                member::run(&conn, action).await
            };
            return Ok(exit_code(run.await));
        }
        Command::TransferLeader { id } => {
            let run = async {
                let conn = etcd_connection(config).await?;
                member::move_leader(&conn, id).await
            };
            return Ok(exit_code(run.await));
        }
        Command::Topic { action } => {
            mq::run_topic(CooClient::new(coo_config)?, action, &mut out).await?
        }
        Command::Brokers => mq::print_brokers(CooClient::new(coo_config)?, &mut out).await?,
        Command::Group { action } => {
            mq::run_group(CooClient::new(coo_config)?, action, &mut out).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit code of an etcd-API command: its own, or 2 after printing its error.
fn exit_code(result: Result<ExitCode, CoordinatorError>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("coordctl: {e}");
        ExitCode::from(2)
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coordctl: {e}");
            ExitCode::from(2)
        }
    }
}
