//! coordctl's kv / watch / lease / lock commands, on coordd's etcd v3 API.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use coordlab::client::etcd::EtcdClient;
use coordlab::client::ClientError;
use coordlab::coord::service::lock::prefix_end;
use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::lease_client::LeaseClient;
use coordlab::proto::etcdserverpb::watch_client::WatchClient;
use coordlab::proto::etcdserverpb::{
    watch_request, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
    WatchCreateRequest, WatchRequest,
};
use coordlab::proto::mvccpb::event::EventType;
use coordlab::proto::v3lockpb::lock_client::LockClient;
use coordlab::proto::v3lockpb::{LockRequest, UnlockRequest};

#[derive(Subcommand, Debug)]
pub enum EtcdCommand {
    /// Keys through the etcd v3 API (revisions, prefixes, leases).
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

pub async fn run(client: &mut EtcdClient, command: EtcdCommand) -> Result<ExitCode, ClientError> {
    match command {
        EtcdCommand::Kv { action } => kv(client, action).await,
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
        #[arg(long)]
        lease: Option<String>,
    },
    /// Print `key=value` lines (exit 1 if nothing matches).
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
    Revoke { id: String },
    /// Keep a lease alive, printing each refresh (COUNT times, or until interrupted).
    KeepAlive {
        id: String,
        #[arg(long)]
        count: Option<u64>,
    },
    /// Remaining TTL (and attached keys).
    Ttl {
        id: String,
        #[arg(long)]
        keys: bool,
    },
    /// All leases.
    List,
}

fn lease_id(hex: &str) -> Result<i64, ClientError> {
    i64::from_str_radix(hex, 16).map_err(|e| ClientError::Rejected {
        endpoint: String::new(),
        code: tonic::Code::InvalidArgument,
        message: format!("lease id {hex:?} is not hex: {e}"),
    })
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

pub async fn kv(client: &mut EtcdClient, action: KvAction) -> Result<ExitCode, ClientError> {
    let mut out = std::io::stdout().lock();
    match action {
        KvAction::Put { key, value, lease } => {
            let lease = lease.as_deref().map(lease_id).transpose()?.unwrap_or(0);
            let req = PutRequest {
                key: key.into_bytes(),
                value: value.into_bytes(),
                lease,
                ..Default::default()
            };
            let r = client
                .call(|ch, c| {
                    let req = c.request(req.clone());
                    async move { KvClient::new(ch).put(req).await }
                })
                .await?
                .into_inner();
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
                key: key.into_bytes(),
                revision: rev,
                serializable,
                ..Default::default()
            };
            let r = client
                .call(|ch, c| {
                    let req = c.request(req.clone());
                    async move { KvClient::new(ch).range(req).await }
                })
                .await?
                .into_inner();
            if r.kvs.is_empty() {
                eprintln!("coordctl: no key matches");
                return Ok(ExitCode::from(1));
            }
            for kv in r.kvs {
                writeln!(out, "{}={}", text(&kv.key), text(&kv.value)).expect("stdout");
            }
        }
        KvAction::Del { key, prefix } => {
            let req = DeleteRangeRequest {
                range_end: range_end(&key, prefix),
                key: key.into_bytes(),
                ..Default::default()
            };
            let r = client
                .call(|ch, c| {
                    let req = c.request(req.clone());
                    async move { KvClient::new(ch).delete_range(req).await }
                })
                .await?
                .into_inner();
            writeln!(out, "deleted {}", r.deleted).expect("stdout");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints events from `rev` on; a broken stream resumes after the last revision seen.
pub async fn watch(
    client: &mut EtcdClient,
    key: String,
    prefix: bool,
    rev: i64,
    count: Option<u64>,
) -> Result<ExitCode, ClientError> {
    let mut next_rev = rev;
    let mut printed = 0u64;
    loop {
        let create = WatchCreateRequest {
            key: key.clone().into_bytes(),
            range_end: range_end(&key, prefix),
            start_revision: next_rev,
            ..Default::default()
        };
        let requests = futures::stream::iter([WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        }])
        .chain(futures::stream::pending());
        let mut stream = match WatchClient::new(client.channel())
            .watch(client.request(requests))
            .await
        {
            Ok(s) => s.into_inner(),
            Err(e) => {
                eprintln!("coordctl: watch: {}; trying another member", e.message());
                client.rotate();
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Ok(Some(resp)) = stream.message().await {
            if resp.canceled {
                eprintln!("coordctl: watch cancelled: {}", resp.cancel_reason);
                return Ok(ExitCode::from(1));
            }
            let mut out = std::io::stdout().lock();
            for ev in resp.events {
                let kv = ev.kv.unwrap_or_default();
                let kind = if ev.r#type == EventType::Delete as i32 {
                    format!("DELETE {}", text(&kv.key))
                } else {
                    format!("PUT {}={}", text(&kv.key), text(&kv.value))
                };
                writeln!(out, "{kind} rev={}", kv.mod_revision).expect("stdout");
                out.flush().expect("stdout");
                next_rev = kv.mod_revision + 1;
                printed += 1;
                if count.is_some_and(|c| printed >= c) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            if next_rev == 0 {
                // Created at "now": resume after the revision the stream started at.
                next_rev = resp.header.map_or(0, |h| h.revision + 1);
            }
        }
        eprintln!("coordctl: watch stream broke; resuming at revision {next_rev}");
        client.rotate();
    }
}

use futures::StreamExt as _;

pub async fn lease(client: &mut EtcdClient, action: LeaseAction) -> Result<ExitCode, ClientError> {
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
            let id = lease_id(&id)?;
            client
                .call(|ch, c| {
                    let req = c.request(LeaseRevokeRequest { id });
                    async move { LeaseClient::new(ch).lease_revoke(req).await }
                })
                .await?;
            writeln!(out, "lease {id:x} revoked").expect("stdout");
        }
        LeaseAction::KeepAlive { id, count } => {
            let id = lease_id(&id)?;
            let mut refreshed = 0u64;
            loop {
                let ttl = keep_alive_once(client, id).await?;
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
            let id = lease_id(&id)?;
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

/// One keep-alive round trip; the TTL answered (0: the lease is gone).
async fn keep_alive_once(client: &mut EtcdClient, id: i64) -> Result<i64, ClientError> {
    client
        .call(|ch, c| {
            let req = c.request(futures::stream::iter([LeaseKeepAliveRequest { id }]));
            async move {
                let mut stream = LeaseClient::new(ch)
                    .lease_keep_alive(req)
                    .await?
                    .into_inner();
                match stream.message().await? {
                    Some(r) => Ok(r.ttl),
                    None => Err(tonic::Status::unavailable("keep-alive stream closed")),
                }
            }
        })
        .await
}

/// Takes lock NAME with a lease of `ttl` seconds kept alive meanwhile, prints the
/// key and its fencing token, runs `command` (or waits for Ctrl-C), then unlocks.
pub async fn lock(
    client: &mut EtcdClient,
    name: String,
    ttl: i64,
    command: Vec<String>,
) -> Result<ExitCode, ClientError> {
    let lease = client
        .call(|ch, c| {
            let req = c.request(LeaseGrantRequest { ttl, id: 0 });
            async move { LeaseClient::new(ch).lease_grant(req).await }
        })
        .await?
        .into_inner();
    let id = lease.id;
    let mut keeper_client = EtcdClient::connect(client.config().clone()).await?;
    let keeper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis((lease.ttl as u64 * 1000) / 3)).await;
            match keep_alive_once(&mut keeper_client, id).await {
                Ok(ttl) if ttl > 0 => {}
                other => {
                    eprintln!("coordctl: lost lease {id:x}: {other:?}");
                    return;
                }
            }
        }
    });
    let locked = client
        .call(|ch, c| {
            let req = c.request(LockRequest {
                name: name.clone().into_bytes(),
                lease: id,
            });
            async move { LockClient::new(ch).lock(req).await }
        })
        .await?
        .into_inner();
    let key = locked.key;
    let token = client
        .call(|ch, c| {
            let req = c.request(RangeRequest {
                key: key.clone(),
                ..Default::default()
            });
            async move { KvClient::new(ch).range(req).await }
        })
        .await?
        .into_inner()
        .kvs
        .first()
        .map_or(0, |kv| kv.create_revision);
    println!("locked key={} fencing_token={token}", text(&key));
    let code = if command.is_empty() {
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    } else {
        let status = std::process::Command::new(&command[0])
            .args(&command[1..])
            .status();
        match status {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(e) => {
                eprintln!("coordctl: running {:?}: {e}", command[0]);
                ExitCode::from(2)
            }
        }
    };
    keeper.abort();
    client
        .call(|ch, c| {
            let req = c.request(UnlockRequest { key: key.clone() });
            async move { LockClient::new(ch).unlock(req).await }
        })
        .await?;
    client
        .call(|ch, c| {
            let req = c.request(LeaseRevokeRequest { id });
            async move { LeaseClient::new(ch).lease_revoke(req).await }
        })
        .await?;
    println!("unlocked");
    Ok(code)
}
