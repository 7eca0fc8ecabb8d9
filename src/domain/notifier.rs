//! Wakes requests waiting for an operation to end (`OnPending=Synchronous`) the moment a worker
//! in this process ends it. Waiters also poll storage, since on Azure another instance may do the work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use super::operation::OperationId;

/// One `Notify` per operation someone is waiting on; entries die with their last waiter.
#[derive(Debug, Default)]
pub struct Notifier {
    waiting: Mutex<HashMap<OperationId, Weak<Notify>>>,
}

impl Notifier {
    /// The handle to wait on for `id`. Create the `notified()` future (and `enable` it) before
    /// reading the operation's state, so an ending in between is not missed.
    pub fn subscribe(&self, id: OperationId) -> Arc<Notify> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = waiting.get(&id).and_then(Weak::upgrade) {
            return n;
        }
        if waiting.len() >= 1024 {
            waiting.retain(|_, w| w.strong_count() > 0);
        }
        let n = Arc::new(Notify::new());
        waiting.insert(id, Arc::downgrade(&n));
        n
    }

    /// Wakes everyone waiting on `id`.
    pub fn notify(&self, id: OperationId) {
        let n = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            waiting.remove(&id).and_then(|w| w.upgrade())
        };
        if let Some(n) = n {
            n.notify_waiters();
        }
    }
}
