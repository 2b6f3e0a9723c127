//! coordctl's kv / watch / lease / lock commands, on coordd's etcd v3 API.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use std::sync::Arc;

use coordlab::coord::service::lock::prefix_end;
use coordlab::library::{Connection, CoordinatorError, DistributedLock, ResumableWatch};
use coordlab::proto::etcdserverpb::lease_client::LeaseClient;
use coordlab::proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest,
};

#[derive(Subcommand, Debug)]
pub enum EtcdCommand {
    /// `put`, `get`, `del`: the one keyspace, the one etcdctl sees.
    #[command(flatten)]
    Key(KvAction),
    /// The same `put`, `get`, `del` (the spelling of earlier versions).
    Kv {
        #[command(subcommand)]
        action: KvAction,
    },
    /// Print changes to KEY (or every key starting with it) from revision REV on.
    Watch {
        key: String,
        #[arg(long)]
        prefix: bool,
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Leases: grant, revoke, keep-alive, ttl, list.
    Lease {
        #[command(subcommand)]
        action: LeaseAction,
    },
    /// Hold lock NAME while COMMAND runs (or until Ctrl-C); prints the fencing token.
    Lock {
        name: String,
        /// Seconds of the lock's lease (kept alive while held).
        #[arg(long, default_value_t = 10)]
        ttl: i64,
        #[arg(last = true)]
        command: Vec<String>,
    },
}

pub async fn run(
    client: &Arc<Connection>,
    command: EtcdCommand,
) -> Result<ExitCode, CoordinatorError> {
    match command {
        EtcdCommand::Key(action) | EtcdCommand::Kv { action } => kv(client, action).await,
        EtcdCommand::Watch {
            key,
            prefix,
            rev,
            count,
        } => watch(client, key, prefix, rev, count).await,
        EtcdCommand::Lease { action } => lease(client, action).await,
        EtcdCommand::Lock { name, ttl, command } => lock(client, name, ttl, command).await,
    }
}

#[derive(Subcommand, Debug)]
pub enum KvAction {
    /// Write KEY = VALUE; prints the new revision.
    Put {
        key: String,
        value: String,
        /// Attach to this lease (hex id, as `lease grant` prints it).
        #[arg(long, value_parser = lease_id)]
        lease: Option<i64>,
    },
    /// Print the value of KEY, or `key=value` lines with `--prefix` (exit 1 if
    /// nothing matches).
    Get {
        key: String,
        /// Every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// Read as of this revision.
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Serve from the contacted member without a ReadIndex round (may be stale).
        #[arg(long)]
        serializable: bool,
    },
    /// Delete KEY (or every key starting with it); prints how many.
    Del {
        key: String,
        #[arg(long)]
        prefix: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum LeaseAction {
    /// Grant a lease of TTL seconds; prints its hex id.
    Grant { ttl: i64 },
    /// Revoke a lease (its keys are deleted).
    Revoke {
        #[arg(value_parser = lease_id)]
        id: i64,
    },
    /// Keep a lease alive, printing each refresh (COUNT times, or until interrupted).
    KeepAlive {
        #[arg(value_parser = lease_id)]
        id: i64,
        #[arg(long)]
        count: Option<u64>,
    },
    /// Remaining TTL (and attached keys).
    Ttl {
        #[arg(value_parser = lease_id)]
        id: i64,
        #[arg(long)]
        keys: bool,
    },
    /// All leases.
    List,
}

/// A lease id as `lease grant` prints it (hex); a bad one is a usage error.
fn lease_id(hex: &str) -> Result<i64, String> {
    i64::from_str_radix(hex, 16).map_err(|e| format!("lease id {hex:?} is not hex: {e}"))
}

fn range_end(key: &str, prefix: bool) -> Vec<u8> {
    if prefix {
        prefix_end(key.as_bytes())
    } else {
        Vec::new()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub async fn kv(client: &Arc<Connection>, action: KvAction) -> Result<ExitCode, CoordinatorError> {
    let mut out = std::io::stdout().lock();
    match action {
        KvAction::Put { key, value, lease } => {
            let lease = lease.unwrap_or(0);
            let req = PutRequest {
                key: key.into_bytes(),
                value: value.into_bytes(),
                lease,
                ..Default::default()
            };
            let r = client.put(req).await?;
            let rev = r.header.map_or(0, |h| h.revision);
            writeln!(out, "OK revision={rev}").expect("stdout");
        }
        KvAction::Get {
            key,
            prefix,
            rev,
            serializable,
        } => {
            let req = RangeRequest {
                range_end: range_end(&key, prefix),
                key: key.clone().into_bytes(),
                revision: rev,
                serializable,
                ..Default::default()
            };
            let r = client.range(req).await?;
            if r.kvs.is_empty() {
                match prefix {
                    true => eprintln!("coordctl: no key matches"),
                    false => eprintln!("coordctl: key {key:?} not found"),
                }
                return Ok(ExitCode::from(1));
            }
            for kv in r.kvs {
                match prefix {
                    true => writeln!(out, "{}={}", text(&kv.key), text(&kv.value)),
                    false => writeln!(out, "{}", text(&kv.value)),
                }
                .expect("stdout");
            }
        }
        KvAction::Del { key, prefix } => {
            let req = DeleteRangeRequest {
                range_end: range_end(&key, prefix),
                key: key.into_bytes(),
                ..Default::default()
            };
            let r = client.delete_range(req).await?;
            writeln!(out, "deleted {}", r.deleted).expect("stdout");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints events from `rev` on (0: from now); survives broken streams and member
/// failures without missing or repeating an event.
pub async fn watch(
    client: &Arc<Connection>,
    key: String,
    prefix: bool,
    rev: i64,
    count: Option<u64>,
) -> Result<ExitCode, CoordinatorError> {
    let end = range_end(&key, prefix);
    let mut events = ResumableWatch::start(client.clone(), key.into_bytes(), end, rev);
    let mut printed = 0u64;
    while let Some(event) = events.next().await {
        let e = event?;
        let mut out = std::io::stdout().lock();
        if e.deleted {
            writeln!(out, "DELETE {} rev={}", text(&e.key), e.revision)
        } else {
            writeln!(
                out,
                "PUT {}={} rev={}",
                text(&e.key),
                text(&e.value),
                e.revision
            )
        }
        .and_then(|()| out.flush())
        .expect("stdout");
        printed += 1;
        if count.is_some_and(|c| printed >= c) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn lease(
    client: &Arc<Connection>,
    action: LeaseAction,
) -> Result<ExitCode, CoordinatorError> {
    let mut out = std::io::stdout().lock();
    match action {
        LeaseAction::Grant { ttl } => {
            let r = client
                .call(|ch, c| {
                    let req = c.request(LeaseGrantRequest { ttl, id: 0 });
                    async move { LeaseClient::new(ch).lease_grant(req).await }
                })
                .await?
                .into_inner();
            writeln!(out, "lease {:x} ttl={}", r.id, r.ttl).expect("stdout");
        }
        LeaseAction::Revoke { id } => {
            client
                .call(|ch, c| {
                    let req = c.request(LeaseRevokeRequest { id });
                    async move { LeaseClient::new(ch).lease_revoke(req).await }
                })
                .await?;
            writeln!(out, "lease {id:x} revoked").expect("stdout");
        }
        LeaseAction::KeepAlive { id, count } => {
            let mut refreshed = 0u64;
            loop {
                let ttl = coordlab::library::renew_once(client, id).await?;
                if ttl <= 0 {
                    eprintln!("coordctl: lease {id:x} expired or revoked");
                    return Ok(ExitCode::from(1));
                }
                writeln!(out, "lease {id:x} ttl={ttl}").expect("stdout");
                out.flush().expect("stdout");
                refreshed += 1;
                if count.is_some_and(|c| refreshed >= c) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis((ttl as u64 * 1000) / 3)).await;
            }
        }
        LeaseAction::Ttl { id, keys } => {
            let r = client
                .call(|ch, c| {
                    let req = c.request(LeaseTimeToLiveRequest { id, keys });
                    async move { LeaseClient::new(ch).lease_time_to_live(req).await }
                })
                .await?
                .into_inner();
            if r.ttl < 0 {
                eprintln!("coordctl: lease {id:x} not found");
                return Ok(ExitCode::from(1));
            }
            let keys: Vec<String> = r.keys.iter().map(|k| text(k)).collect();
            writeln!(
                out,
                "lease {id:x} ttl={} granted={} keys={}",
                r.ttl,
                r.granted_ttl,
                keys.join(",")
            )
            .expect("stdout");
        }
        LeaseAction::List => {
            let r = client
                .call(|ch, c| {
                    let req = c.request(LeaseLeasesRequest {});
                    async move { LeaseClient::new(ch).lease_leases(req).await }
                })
                .await?
                .into_inner();
            for l in r.leases {
                writeln!(out, "{:x}", l.id).expect("stdout");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Takes lock NAME (its lease kept alive meanwhile), prints the key and its
/// fencing token, runs `command` (or waits for Ctrl-C), then unlocks.
pub async fn lock(
    client: &Arc<Connection>,
    name: String,
    ttl: i64,
    command: Vec<String>,
) -> Result<ExitCode, CoordinatorError> {
    let guard = DistributedLock::new(client.clone())
        .acquire(&name, Duration::from_secs(ttl.max(1) as u64))
        .await?;
    println!(
        "locked key={} fencing_token={}",
        text(guard.owner_key()),
        guard.fencing_token()
    );
    let code = if command.is_empty() {
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    } else {
        match std::process::Command::new(&command[0])
            .args(&command[1..])
            .status()
        {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(e) => {
                eprintln!("coordctl: running {:?}: {e}", command[0]);
                ExitCode::from(2)
            }
        }
    };
    guard.unlock().await?;
    println!("unlocked");
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::lease_id;

    #[test]
    fn lease_ids_are_hex_and_a_bad_one_is_named() {
        assert_eq!(lease_id("1a"), Ok(26));
        let error = lease_id("xyz").unwrap_err();
        assert!(error.contains("\"xyz\" is not hex"), "{error}");
    }
}
