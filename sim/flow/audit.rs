//! The end-of-run audit, with plain etcd calls once the cluster has healed and
//! every host has stopped: each member's own copy of the flow services'
//! replicated records (`/flow/proposals/`, `/flow/changes/`) at one revision — a
//! serializable Range answered by that member alone, asked again until it has
//! applied that revision.

use std::time::Duration;

use coordlab::client::Connection;
use coordlab::flow::cluster::{keys, sync};
use coordlab::proto::etcdserverpb::RangeRequest;

use super::context::Ctx;
use crate::sim::trace::{AuditedKey, FlowEvent};

const ATTEMPTS: usize = 5;
/// How long one member may take to answer at the audit's revision.
const MEMBER_PATIENCE: Duration = Duration::from_secs(5);

/// The prefixes audited: decided proposals and the state change log.
pub fn audited_prefixes() -> [String; 2] {
    [
        format!("{}proposals/", keys::ROOT),
        keys::CHANGES.to_string(),
    ]
}

/// Records every member's copy of each audited prefix at one revision (the
/// store's revision now, read linearizably).
pub async fn member_copies(ctx: &Ctx, conn: &Connection, members: &[(u64, String)]) {
    let revision = match current_revision(conn).await {
        Ok(r) => r,
        Err(e) => {
            for (member, _) in members {
                for prefix in audited_prefixes() {
                    record(ctx, *member, prefix, 0, Err(e.clone()));
                }
            }
            return;
        }
    };
    for (member, endpoint) in members {
        for prefix in audited_prefixes() {
            let copy = member_copy(conn, endpoint, &prefix, revision).await;
            record(ctx, *member, prefix, revision, copy);
        }
    }
}

fn record(
    ctx: &Ctx,
    member: u64,
    prefix: String,
    revision: i64,
    copy: Result<Vec<AuditedKey>, String>,
) {
    let (keys, error) = match copy {
        Ok(keys) => (keys, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    ctx.record(
        0,
        FlowEvent::MemberCopy {
            member,
            prefix,
            revision,
            keys,
            error,
        },
    );
}

async fn current_revision(conn: &Connection) -> Result<i64, String> {
    let mut error = String::new();
    for _ in 0..ATTEMPTS {
        let request = RangeRequest {
            key: keys::ROOT.as_bytes().to_vec(),
            limit: 1,
            ..Default::default()
        };
        match conn.range(request).await {
            Ok(r) => return Ok(r.header.map_or(0, |h| h.revision)),
            Err(e) => error = e.to_string(),
        }
        conn.rotate();
    }
    Err(error)
}

async fn member_copy(
    conn: &Connection,
    endpoint: &str,
    prefix: &str,
    revision: i64,
) -> Result<Vec<AuditedKey>, String> {
    let kvs = sync::member_copy(conn, endpoint, prefix, revision, MEMBER_PATIENCE)
        .await
        .map_err(|e| format!("not readable at revision {revision}: {e}"))?;
    Ok(kvs
        .into_iter()
        .map(|kv| AuditedKey {
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            value: String::from_utf8_lossy(&kv.value).into_owned(),
            version: kv.version,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        })
        .collect())
}
