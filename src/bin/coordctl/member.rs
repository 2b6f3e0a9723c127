//! `coordctl member` and `transfer-leader`: membership through etcd's Cluster API,
//! the calls etcdctl's `member` commands make (one path for membership; see
//! `coord::membership`), and leadership through Maintenance MoveLeader, as
//! `etcdctl move-leader`.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;

use coordlab::library::{Connection, CoordinatorError};
use coordlab::proto::etcdserverpb::cluster_client::ClusterClient;
use coordlab::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use coordlab::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MoveLeaderRequest,
};

#[derive(Subcommand, Debug)]
pub enum MemberAction {
    /// Add a node serving at ADDR (host:port); prints the id the cluster chose
    /// and the `coordd` command that starts the node.
    Add {
        addr: String,
        /// Add it as a learner (non-voting); `member promote` makes it a voter.
        #[arg(long)]
        learner: bool,
        /// The new node's data directory, for the printed `coordd` command.
        #[arg(long, default_value = "coordlab-data")]
        data_dir: String,
    },
    /// Remove node ID.
    Remove { id: u64 },
    /// Make learner ID a voter (once it has caught up with the leader).
    Promote { id: u64 },
    /// List members: `id=addr`, `(learner)` after learners.
    List,
}

/// `host:port` of a member's (one) peer URL.
fn addr_of(member: &Member) -> &str {
    member
        .peer_ur_ls
        .first()
        .map(|url| url.trim_start_matches("http://"))
        .unwrap_or("")
}

fn print_members(out: &mut impl Write, members: &[Member]) -> std::io::Result<()> {
    for m in members {
        let learner = if m.is_learner { " (learner)" } else { "" };
        writeln!(out, "{}={}{learner}", m.id, addr_of(m))?;
    }
    Ok(())
}

pub async fn run(conn: &Connection, action: MemberAction) -> Result<ExitCode, CoordinatorError> {
    let mut out = std::io::stdout().lock();
    match action {
        MemberAction::Add {
            addr,
            learner,
            data_dir,
        } => {
            let request = MemberAddRequest {
                peer_ur_ls: vec![format!("http://{addr}")],
                is_learner: learner,
            };
            let r = conn
                .call(|ch, c| {
                    let req = c.request(request.clone());
                    async move { ClusterClient::new(ch).member_add(req).await }
                })
                .await?
                .into_inner();
            let id = r.member.as_ref().map_or(0, |m| m.id);
            let kind = if learner { "learner" } else { "voter" };
            writeln!(out, "added node {id} ({kind}) at {addr}").expect("stdout");
            let peers: Vec<String> = r
                .members
                .iter()
                .map(|m| format!("{}={}", m.id, addr_of(m)))
                .collect();
            writeln!(
                out,
                "start it with: coordd --id {id} --listen {addr} --peers {} --data-dir {data_dir} --join",
                peers.join(",")
            )
            .expect("stdout");
        }
        MemberAction::Remove { id } => {
            let r = conn
                .call(|ch, c| {
                    let req = c.request(MemberRemoveRequest { id });
                    async move { ClusterClient::new(ch).member_remove(req).await }
                })
                .await?
                .into_inner();
            print_members(&mut out, &r.members).expect("stdout");
        }
        MemberAction::Promote { id } => {
            let r = conn
                .call(|ch, c| {
                    let req = c.request(MemberPromoteRequest { id });
                    async move { ClusterClient::new(ch).member_promote(req).await }
                })
                .await?
                .into_inner();
            print_members(&mut out, &r.members).expect("stdout");
        }
        MemberAction::List => {
            let r = conn
                .call(|ch, c| {
                    let req = c.request(MemberListRequest { linearizable: true });
                    async move { ClusterClient::new(ch).member_list(req).await }
                })
                .await?
                .into_inner();
            print_members(&mut out, &r.members).expect("stdout");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `transfer-leader ID`: etcd's Maintenance MoveLeader, which only the leader
/// takes ("not leader" moves the connection on) and answers once ID leads.
pub async fn move_leader(conn: &Connection, id: u64) -> Result<ExitCode, CoordinatorError> {
    conn.call(|ch, c| {
        let req = c.request(MoveLeaderRequest { target_id: id });
        async move { MaintenanceClient::new(ch).move_leader(req).await }
    })
    .await?;
    println!("leader: {id}");
    Ok(ExitCode::SUCCESS)
}
