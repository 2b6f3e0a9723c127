//! Watch events into a subscriber's queue: the Raft services deliver cluster-wide
//! messages by watching the keys they are written to, one resumable watch per
//! subscription (exactly once, in revision order, across member failures).

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::flow::subscription::{Offered, SubscriptionSender};
use crate::library::{KeyEvent, ResumableWatch};

/// Hands each put that `decode` turns into an item to `deliver`, which offers it to
/// the sender (and may count the outcome in the same critical section, so a reader
/// of the counts who has received the item sees it counted), until the subscriber is gone or the watch ends
/// (it ends only when its history was compacted away: the subscriber then sees
/// the subscription close).
pub fn forward<T, D, C>(
    mut watch: ResumableWatch,
    sender: Arc<SubscriptionSender<T>>,
    mut decode: D,
    mut deliver: C,
) -> JoinHandle<()>
where
    T: Send + 'static,
    D: FnMut(&KeyEvent) -> Option<T> + Send + 'static,
    C: FnMut(&SubscriptionSender<T>, T) -> Offered + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                biased;
                _ = sender.closed() => return,
                next = watch.next() => next,
            };
            let event = match next {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "a flow subscription's watch ended");
                    return;
                }
                None => return,
            };
            if event.deleted {
                continue;
            }
            let Some(item) = decode(&event) else {
                continue;
            };
            let offered = deliver(&sender, item);
            if offered == Offered::Closed {
                return;
            }
        }
    })
}
