//! Wakes requests waiting for an operation to end (`OnPending=Synchronous`) the moment a worker
//! in this process ends it, handing them the ended operation so they need not read it back.
//! Waiters also poll storage, since on Azure another instance may do the work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::operation::{Operation, OperationId};

/// What the waiters on one operation share: a wake-up, and the operation once it ended here.
#[derive(Debug, Default)]
pub struct Waiter {
    notify: Notify,
    ended: Mutex<Option<Operation>>,
}

impl Waiter {
    /// Resolves when the operation ends in this process. Create (and `enable`) it before
    /// reading the operation's state, so an ending in between is not missed.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// The operation as this process ended it, once it has. A terminal state never changes,
    /// so this is as good as a fresh read.
    pub fn ended(&self) -> Option<Operation> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One [`Waiter`] per operation someone is waiting on; entries die with their last waiter.
#[derive(Debug, Default)]
pub struct Notifier {
    waiting: Mutex<HashMap<OperationId, Weak<Waiter>>>,
}

impl Notifier {
    /// The handle to wait on for `id`.
    pub fn subscribe(&self, id: OperationId) -> Arc<Waiter> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = waiting.get(&id).and_then(Weak::upgrade) {
            return w;
        }
        if waiting.len() >= 1024 {
            waiting.retain(|_, w| w.strong_count() > 0);
        }
        let w = Arc::new(Waiter::default());
        waiting.insert(id, Arc::downgrade(&w));
        w
    }

    /// Wakes everyone waiting on `op`, handing them the ended operation.
    pub fn ended(&self, op: &Operation) {
        let w = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            waiting.remove(&op.id).and_then(|w| w.upgrade())
        };
        if let Some(w) = w {
            *w.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(op.clone());
            w.notify.notify_waiters();
        }
    }
}
