//! coordctl's MQ commands: topics, brokers and consumer groups, through the coo's
//! gRPC API (any member; the coo client follows the leader).

use std::io::Write;

use clap::Subcommand;
use coordlab::client::ClientError;
use coordlab::mq::client::CooClient;
use coordlab::proto::{
    ConsumerAssignment, CreateTopicRequest, SyncConsumerAssignmentsRequest, TopicInfos,
};

#[derive(Subcommand, Debug)]
pub enum TopicAction {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 3)]
        partitions: u32,
        #[arg(long, default_value_t = 1)]
        replication: u32,
    },
    /// Delete a topic.
    Delete { name: String },
    /// Topics with their partition -> broker assignment.
    List,
}

#[derive(Subcommand, Debug)]
pub enum GroupAction {
    /// Join MEMBER to GROUP consuming TOPICS; prints its assignment.
    Join {
        group: String,
        member: String,
        topics: Vec<String>,
    },
    /// Remove MEMBER from GROUP.
    Leave { group: String, member: String },
    /// Groups and their assignments.
    List,
}

/// `topic create / delete / list`.
pub async fn run_topic(
    mut coo: CooClient,
    action: TopicAction,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match action {
        TopicAction::Create {
            name,
            partitions,
            replication,
        } => {
            let t = coo
                .create_topic(CreateTopicRequest {
                    name,
                    partitions,
                    replication,
                })
                .await?;
            print_topics(
                out,
                &TopicInfos {
                    version: 0,
                    topics: vec![t],
                },
            )
            .expect("stdout");
        }
        TopicAction::Delete { name } => {
            let existed = coo.delete_topic(&name).await?;
            writeln!(out, "deleted {}", u8::from(existed)).expect("stdout");
        }
        TopicAction::List => print_topics(out, &coo.list_topics().await?).expect("stdout"),
    }
    Ok(())
}

/// `brokers`: every registered broker with its load and hosted partitions.
pub async fn print_brokers(mut coo: CooClient, out: &mut impl Write) -> Result<(), ClientError> {
    for b in coo.list_brokers().await?.brokers {
        let hosted: Vec<String> = b
            .hosted
            .iter()
            .map(|p| format!("{}/{}", p.topic, p.partition))
            .collect();
        writeln!(
            out,
            "broker: {} addr={} load={} last_seq={} hosted={}",
            b.id,
            b.addr,
            b.load,
            b.last_seq,
            hosted.join(",")
        )
        .expect("stdout");
    }
    Ok(())
}

/// `group join / leave / list`.
pub async fn run_group(
    mut coo: CooClient,
    action: GroupAction,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    match action {
        GroupAction::Join {
            group,
            member,
            topics,
        } => {
            let a = coo
                .sync_consumer_assignments(SyncConsumerAssignmentsRequest {
                    group,
                    member,
                    topics,
                    leave: false,
                })
                .await?;
            print_assignment(out, &a);
        }
        GroupAction::Leave { group, member } => {
            coo.sync_consumer_assignments(SyncConsumerAssignmentsRequest {
                group,
                member,
                topics: vec![],
                leave: true,
            })
            .await?;
            writeln!(out, "left").expect("stdout");
        }
        GroupAction::List => {
            for g in coo.list_groups().await?.groups {
                for a in &g.members {
                    print_assignment(out, a);
                }
            }
        }
    }
    Ok(())
}

fn print_topics(out: &mut impl Write, infos: &TopicInfos) -> std::io::Result<()> {
    if infos.version > 0 {
        writeln!(out, "metadata_version: {}", infos.version)?;
    }
    for t in &infos.topics {
        let parts: Vec<String> = t
            .assignment
            .iter()
            .map(|a| {
                let replicas: Vec<String> = a.replicas.iter().map(u64::to_string).collect();
                format!("{}->[{}]", a.partition, replicas.join(","))
            })
            .collect();
        writeln!(
            out,
            "topic: {} partitions={} replication={} assignment={}",
            t.name,
            t.partitions,
            t.replication,
            parts.join(" ")
        )?;
    }
    Ok(())
}

fn print_assignment(out: &mut impl Write, a: &ConsumerAssignment) {
    let parts: Vec<String> = a
        .partitions
        .iter()
        .map(|p| format!("{}/{}", p.topic, p.partition))
        .collect();
    writeln!(
        out,
        "group: {} member={} generation={} partitions={}",
        a.group,
        a.member,
        a.generation,
        parts.join(",")
    )
    .expect("stdout");
}
