//! The distributed lock: exclusion, waiting, TTL expiry, fencing tokens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{eventually, During};
use super::{Conformance, ConformanceError, ConformanceOptions};
use crate::flow::container::ServiceContainer;
use crate::flow::error::FlowError;

/// `try_acquire` is `None` while the lock is held; `status` and `list_locks` show
/// the hold; dropping the guard frees the lock; the next token is larger.
pub async fn lock_try_acquire_is_none_while_held_and_drop_releases(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    let l = &c.distributed_lock;
    let resource = o.name("lock.try");
    let ttl = o.lock_ttl * 10;
    let guard = l.try_acquire(&resource, ttl).await.during("try_acquire")?;
    let Some(guard) = guard else {
        return Err(ConformanceError::Violation {
            check: "a free lock is taken",
            detail: format!("try_acquire({resource}) = None"),
        });
    };
    let second = l.try_acquire(&resource, ttl).await.during("try_acquire")?;
    ensure!(
        second.is_none(),
        "try_acquire is None while held",
        "got {second:?}"
    );
    drop(second);
    let info = l.status(&resource).await.during("status")?;
    ensure!(
        info.as_ref()
            .is_some_and(|i| i.token == guard.fencing_token()),
        "status shows the hold",
        "{info:?} for token {}",
        guard.fencing_token()
    );
    let listed = l.list_locks().await.during("list_locks")?;
    ensure!(
        listed.iter().any(|i| i.resource == resource),
        "list_locks shows the hold",
        "{listed:?}"
    );
    let token = guard.fencing_token();
    drop(guard);
    let freed = eventually(o.wait, || async {
        Ok(l.status(&resource).await.during("status")?.is_none())
    });
    ensure!(
        freed.await?,
        "dropping the guard releases",
        "still held after {:?}",
        o.wait
    );
    let again = l.try_acquire(&resource, ttl).await.during("try_acquire")?;
    let next = again.as_ref().map(|g| g.fencing_token());
    ensure!(
        next.is_some_and(|t| t > token),
        "tokens increase",
        "after token {token} the next hold got {next:?}"
    );
    if let Some(g) = again {
        l.release(g).await.during("release")?;
    }
    Ok(())
}

/// `acquire` of a held lock waits, and proceeds once the holder releases.
pub async fn lock_acquire_waits_for_release(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    let resource = o.name("lock.wait");
    let ttl = o.lock_ttl * 10;
    let first = c
        .distributed_lock
        .acquire(&resource, ttl)
        .await
        .during("acquire")?;
    let waiter = {
        let (c, resource) = (c.clone(), resource.clone());
        tokio::spawn(async move { c.distributed_lock.acquire(&resource, ttl).await })
    };
    tokio::time::sleep(o.settle).await;
    ensure!(
        !waiter.is_finished(),
        "acquire waits while held",
        "it returned at once"
    );
    let first_token = first.fencing_token();
    c.distributed_lock.release(first).await.during("release")?;
    let second = match tokio::time::timeout(o.wait, waiter).await {
        Ok(Ok(taken)) => taken.during("acquire")?,
        Ok(Err(e)) => panic!("the waiting task failed: {e}"),
        Err(_) => {
            return Err(ConformanceError::Violation {
                check: "a waiting acquire proceeds after release",
                detail: format!("still waiting after {:?}", o.wait),
            })
        }
    };
    ensure!(
        second.fencing_token() > first_token,
        "tokens increase",
        "{} after {first_token}",
        second.fencing_token()
    );
    c.distributed_lock.release(second).await.during("release")
}

/// Tasks contending for one lock never hold it together, and each holder's token
/// is larger than every earlier holder's (a fenced resource accepts them all).
pub async fn lock_is_mutually_exclusive_with_increasing_tokens(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    const TASKS: usize = 4;
    const ROUNDS: usize = 3;
    let resource = o.name("lock.mutex");
    let inside = Arc::new(AtomicU64::new(0));
    let fenced = Arc::new(Mutex::new(0u64));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (c, resource, inside, fenced) =
            (c.clone(), resource.clone(), inside.clone(), fenced.clone());
        let ttl = o.lock_ttl * 10;
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let guard = c
                    .distributed_lock
                    .acquire(&resource, ttl)
                    .await
                    .during("acquire")?;
                let others = inside.fetch_add(1, Ordering::SeqCst);
                let token = guard.fencing_token();
                let highest = {
                    let mut highest = fenced.lock().unwrap_or_else(|e| e.into_inner());
                    let before = *highest;
                    *highest = token.max(before);
                    before
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                c.distributed_lock.release(guard).await.during("release")?;
                ensure!(
                    others == 0,
                    "one holder at a time",
                    "{others} other holder(s) inside"
                );
                ensure!(
                    token > highest,
                    "a fenced resource accepts every holder",
                    "token {token} after {highest}"
                );
            }
            Ok(())
        }));
    }
    for task in tasks {
        match tokio::time::timeout(o.wait * 4, task).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => panic!("a contending task failed: {e}"),
            Err(_) => {
                return Err(ConformanceError::Violation {
                    check: "contending tasks all get the lock",
                    detail: format!("a task was still waiting after {:?}", o.wait * 4),
                })
            }
        }
    }
    Ok(())
}

/// A renewed hold outlives its first TTL; an unrenewed one ends at its TTL, the
/// lock can be taken by another, `renew` then fails with `LockLost`, and the old
/// guard's drop does not free the new holder's lock.
pub async fn lock_expires_after_ttl_unless_renewed(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    let l = &c.distributed_lock;
    let resource = o.name("lock.ttl");
    let ttl = o.lock_ttl;
    let guard = l.acquire(&resource, ttl).await.during("acquire")?;
    tokio::time::sleep(ttl / 2).await;
    l.renew(&guard, ttl).await.during("renew")?;
    tokio::time::sleep(ttl * 3 / 4).await;
    let info = l.status(&resource).await.during("status")?;
    ensure!(
        info.as_ref()
            .is_some_and(|i| i.token == guard.fencing_token()),
        "a renewed hold lasts its new TTL",
        "{info:?} at 1.25 TTL after a renewal at 0.5"
    );
    let expired = eventually(ttl * 2 + o.wait, || async {
        Ok(l.status(&resource).await.during("status")?.is_none())
    });
    ensure!(expired.await?, "a hold ends at its TTL", "still held");
    let next = l
        .try_acquire(&resource, ttl * 10)
        .await
        .during("try_acquire")?;
    let Some(next) = next else {
        return Err(ConformanceError::Violation {
            check: "an expired lock can be taken",
            detail: "try_acquire = None".into(),
        });
    };
    let renewed = l.renew(&guard, ttl).await;
    ensure!(
        matches!(renewed, Err(FlowError::LockLost { .. })),
        "renew of a lost lock fails",
        "{renewed:?}"
    );
    drop(guard);
    tokio::time::sleep(o.settle).await;
    let info = l.status(&resource).await.during("status")?;
    ensure!(
        info.as_ref()
            .is_some_and(|i| i.token == next.fencing_token()),
        "a stale guard does not release the next holder",
        "{info:?}"
    );
    l.release(next).await.during("release")
}
