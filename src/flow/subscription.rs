//! A subscriber's bounded queue that never loses an item silently.
//!
//! A publisher must not wait for its slowest subscriber, so a full queue refuses
//! the item; the refusal is returned to the publisher (who counts it as dropped)
//! and leaves a gap marker in the queue at the place of the lost items, so the
//! subscriber learns how many it missed, and where, before it sees what follows.
//! Gap markers do not take room in the queue; consecutive drops share one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::error::FlowError;

/// What became of one offered item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// The queue was full; the subscriber will see a `Lagged` gap here.
    Dropped,
    /// The subscriber is gone; drop this sender.
    Closed,
}

enum Slot<T> {
    Item(T),
    Missed(u64),
}

struct Queue<T> {
    slots: VecDeque<Slot<T>>,
    /// Items (not gap markers) in `slots`.
    items: usize,
    sender_alive: bool,
    subscriber_alive: bool,
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    /// One permit wakes the single receiver; stored if it is not waiting yet.
    ready: Notify,
    /// Wakes a publisher waiting in `SubscriptionSender::closed`.
    gone: Notify,
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates a queue holding at most `capacity` items (at least 1).
pub fn subscription<T>(capacity: usize) -> (SubscriptionSender<T>, Subscription<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            slots: VecDeque::new(),
            items: 0,
            sender_alive: true,
            subscriber_alive: true,
        }),
        ready: Notify::new(),
        gone: Notify::new(),
        capacity: capacity.max(1),
    });
    (
        SubscriptionSender {
            shared: shared.clone(),
        },
        Subscription { shared },
    )
}

/// The publisher's end of one subscription.
pub struct SubscriptionSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> SubscriptionSender<T> {
    /// Queues `item` without waiting.
    pub fn offer(&self, item: T) -> Offered {
        let mut queue = self.shared.lock();
        if !queue.subscriber_alive {
            return Offered::Closed;
        }
        let offered = if queue.items >= self.shared.capacity {
            match queue.slots.back_mut() {
                Some(Slot::Missed(n)) => *n += 1,
                _ => queue.slots.push_back(Slot::Missed(1)),
            }
            Offered::Dropped
        } else {
            queue.slots.push_back(Slot::Item(item));
            queue.items += 1;
            Offered::Queued
        };
        drop(queue);
        self.shared.ready.notify_one();
        offered
    }

    pub fn is_closed(&self) -> bool {
        !self.shared.lock().subscriber_alive
    }

    /// Completes once the subscriber is gone (for a publisher that holds resources
    /// for it, such as a watch).
    pub async fn closed(&self) {
        while !self.is_closed() {
            self.shared.gone.notified().await;
        }
    }
}

impl<T> Drop for SubscriptionSender<T> {
    fn drop(&mut self) {
        self.shared.lock().sender_alive = false;
        self.shared.ready.notify_one();
    }
}

/// The subscriber's end: items in the order they were queued.
pub struct Subscription<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Subscription<T> {
    /// The next item; `Lagged { missed }` once at the place of dropped items;
    /// `Closed` when the publisher is gone and everything queued was read. Cancel
    /// by dropping the future (nothing is lost).
    pub async fn recv(&mut self) -> Result<T, FlowError> {
        loop {
            if let Some(next) = self.try_recv() {
                return next;
            }
            self.shared.ready.notified().await;
        }
    }

    /// Like `recv`, but `None` at once when nothing is queued.
    pub fn try_recv(&mut self) -> Option<Result<T, FlowError>> {
        let mut queue = self.shared.lock();
        match queue.slots.pop_front() {
            Some(Slot::Item(item)) => {
                queue.items -= 1;
                Some(Ok(item))
            }
            Some(Slot::Missed(missed)) => Some(Err(FlowError::Lagged { missed })),
            None if !queue.sender_alive => Some(Err(FlowError::Closed)),
            None => None,
        }
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.subscriber_alive = false;
        queue.slots.clear();
        queue.items = 0;
        drop(queue);
        self.shared.gone.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_marks_the_gap_where_items_were_dropped() {
        let (tx, mut rx) = subscription(2);
        assert_eq!(tx.offer(1), Offered::Queued);
        assert_eq!(tx.offer(2), Offered::Queued);
        assert_eq!(tx.offer(3), Offered::Dropped);
        assert_eq!(tx.offer(4), Offered::Dropped);
        assert_eq!(rx.try_recv(), Some(Ok(1)));
        assert_eq!(tx.offer(5), Offered::Queued);
        assert_eq!(tx.offer(6), Offered::Dropped);
        assert_eq!(rx.try_recv(), Some(Ok(2)));
        assert_eq!(rx.try_recv(), Some(Err(FlowError::Lagged { missed: 2 })));
        assert_eq!(rx.try_recv(), Some(Ok(5)));
        assert_eq!(rx.try_recv(), Some(Err(FlowError::Lagged { missed: 1 })));
        assert_eq!(rx.try_recv(), None);
        drop(tx);
        assert_eq!(rx.try_recv(), Some(Err(FlowError::Closed)));
    }

    #[test]
    fn a_dropped_subscriber_closes_the_sender() {
        let (tx, rx) = subscription(4);
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.offer(1), Offered::Closed);
    }

    #[tokio::test]
    async fn closed_completes_when_the_subscriber_goes() {
        let (tx, rx) = subscription::<u8>(4);
        let waiter = tokio::spawn(async move { tx.closed().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(rx);
        waiter.await.unwrap();
    }

    #[tokio::test]
    async fn recv_waits_for_an_offer() {
        let (tx, mut rx) = subscription(4);
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        assert_eq!(tx.offer("x"), Offered::Queued);
        assert_eq!(waiter.await.unwrap(), Ok("x"));
    }
}
