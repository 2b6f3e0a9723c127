//! A watch channel — one current value, any number of receivers told when it
//! changes — whose waiters wake in a fixed order.
//!
//! Why not `tokio::sync::watch`: it parks each `changed()` waiter on one of eight
//! notify shards chosen by tokio's thread-local RNG, which tokio seeds from a
//! process-wide counter. Which of two receivers woke first therefore depended on how
//! many threads had used tokio before in the process, and a simulation's trace
//! changed with what else ran beside it (README, "Determinism"). Here every waiter
//! parks on one [`Notify`], which wakes waiters in the order they began to wait.
//!
//! The API is the subset of tokio's that coordlab uses, with tokio's semantics: a
//! receiver remembers the version it saw last; `changed` completes once a newer
//! value is there (marking it seen) and fails once the sender is gone with nothing
//! new to see.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::Notify;

/// The sender is gone and there is no unseen value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("watch channel closed")]
pub struct RecvError;

/// Every receiver is gone; the value was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("watch channel has no receivers")]
pub struct SendError<T>(pub T);

struct Versioned<T> {
    value: T,
    version: u64,
}

struct Shared<T> {
    current: RwLock<Versioned<T>>,
    sender_alive: AtomicBool,
    receivers: AtomicUsize,
    changed: Notify,
}

impl<T> Shared<T> {
    fn read(&self) -> RwLockReadGuard<'_, Versioned<T>> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Versioned<T>> {
        self.current.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates a channel holding `init`.
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        current: RwLock::new(Versioned {
            value: init,
            version: 0,
        }),
        sender_alive: AtomicBool::new(true),
        receivers: AtomicUsize::new(1),
        changed: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared, seen: 0 },
    )
}

/// A read of the current value; holds a read lock, so do not keep it across `.await`.
pub struct Ref<'a, T> {
    guard: RwLockReadGuard<'a, Versioned<T>>,
}

impl<T> Deref for Ref<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard.value
    }
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Stores `value` and wakes the receivers; fails (returning it) if none is left.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.load(Ordering::SeqCst) == 0 {
            return Err(SendError(value));
        }
        self.send_replace(value);
        Ok(())
    }

    /// Stores `value` whether or not anyone listens; returns the old one.
    pub fn send_replace(&self, value: T) -> T {
        let old = {
            let mut current = self.shared.write();
            current.version += 1;
            std::mem::replace(&mut current.value, value)
        };
        self.shared.changed.notify_waiters();
        old
    }

    /// Lets `modify` change the value in place; receivers hear of it only if it
    /// returns true.
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        let modified = {
            let mut current = self.shared.write();
            let modified = modify(&mut current.value);
            if modified {
                current.version += 1;
            }
            modified
        };
        if modified {
            self.shared.changed.notify_waiters();
        }
        modified
    }

    pub fn borrow(&self) -> Ref<'_, T> {
        Ref {
            guard: self.shared.read(),
        }
    }

    /// A new receiver that has seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        self.shared.receivers.fetch_add(1, Ordering::SeqCst);
        Receiver {
            seen: self.shared.read().version,
            shared: self.shared.clone(),
        }
    }

    pub fn receiver_count(&self) -> usize {
        self.shared.receivers.load(Ordering::SeqCst)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.sender_alive.store(false, Ordering::SeqCst);
        self.shared.changed.notify_waiters();
    }
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver saw last.
    seen: u64,
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::SeqCst);
        Receiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("seen", &self.seen)
            .finish()
    }
}

impl<T> Receiver<T> {
    /// The current value, without marking it seen.
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref {
            guard: self.shared.read(),
        }
    }

    /// The current value, marked seen.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let guard = self.shared.read();
        self.seen = guard.version;
        Ref { guard }
    }

    /// Whether a value this receiver has not seen is there.
    pub fn has_changed(&self) -> Result<bool, RecvError> {
        let changed = self.shared.read().version != self.seen;
        if !changed && !self.shared.sender_alive.load(Ordering::SeqCst) {
            return Err(RecvError);
        }
        Ok(changed)
    }

    /// Completes once a value this receiver has not seen is there, and marks it seen.
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Registered before the check, so a send between the check and the
            // await still wakes this waiter.
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let version = self.shared.read().version;
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if !self.shared.sender_alive.load(Ordering::SeqCst) {
                return Err(RecvError);
            }
            notified.await;
        }
    }

    /// Completes with the first value (the current one included) that satisfies
    /// `accept`, marked seen.
    pub async fn wait_for(
        &mut self,
        mut accept: impl FnMut(&T) -> bool,
    ) -> Result<Ref<'_, T>, RecvError> {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let guard = self.shared.read();
                self.seen = guard.version;
                if accept(&guard.value) {
                    // Re-borrowed below: the guard cannot outlive this scope while
                    // `self` is borrowed mutably for the loop.
                    drop(guard);
                    return Ok(self.borrow());
                }
            }
            if !self.shared.sender_alive.load(Ordering::SeqCst) {
                return Err(RecvError);
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn changed_sees_each_new_value_and_marks_it_seen() {
        let (tx, mut rx) = channel(1);
        assert!(!rx.has_changed().unwrap());
        tx.send(2).unwrap();
        assert!(rx.has_changed().unwrap());
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 2);
        assert!(!rx.has_changed().unwrap());
        let waiter = tokio::spawn(async move {
            rx.changed().await.unwrap();
            *rx.borrow_and_update()
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send(3).unwrap();
        assert_eq!(waiter.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_dropped_sender_ends_changed_after_the_last_value() {
        let (tx, mut rx) = channel("a");
        tx.send("b").unwrap();
        drop(tx);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), "b");
        assert_eq!(rx.changed().await, Err(RecvError));
        assert_eq!(rx.has_changed(), Err(RecvError));
    }

    #[tokio::test]
    async fn send_fails_without_receivers_but_send_replace_stores() {
        let (tx, rx) = channel(0);
        drop(rx);
        assert_eq!(tx.send(1), Err(SendError(1)));
        assert_eq!(tx.send_replace(2), 0);
        let rx = tx.subscribe();
        assert_eq!(*rx.borrow(), 2);
        assert_eq!(tx.receiver_count(), 1);
    }

    #[tokio::test]
    async fn send_if_modified_wakes_only_on_change() {
        let (tx, mut rx) = channel(5);
        assert!(!tx.send_if_modified(|_| false));
        assert!(!rx.has_changed().unwrap());
        assert!(tx.send_if_modified(|v| {
            *v = 6;
            true
        }));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 6);
    }

    #[tokio::test]
    async fn wait_for_checks_the_current_value_first_then_waits() {
        let (tx, mut rx) = channel(false);
        let mut early = rx.clone();
        let waiter = tokio::spawn(async move { *early.wait_for(|v| *v).await.unwrap() });
        assert!(!*rx.wait_for(|v| !*v).await.unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send(true).unwrap();
        assert!(waiter.await.unwrap());
        drop(tx);
        assert!(rx.wait_for(|v| !*v).await.is_err());
    }

    /// The reason this type exists: receivers wake in the order they began to wait.
    #[tokio::test]
    async fn waiters_wake_in_the_order_they_began_to_wait() {
        let (tx, rx) = channel(0);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let mut rx = rx.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                rx.changed().await.unwrap();
                order.lock().unwrap().push(i);
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tx.send(1).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let woke = order.lock().unwrap().clone();
        assert_eq!(woke, (0..16).collect::<Vec<_>>());
    }
}
