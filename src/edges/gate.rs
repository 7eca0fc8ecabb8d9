//! The gate a standalone consumer's deliveries pass before they touch storage: at most as many
//! at once as the work side's load limit allows (`domain::load`). Messages are received in
//! batches as large as the consumer's concurrency, whatever the limit (a receive costs storage
//! one call however many messages it brings, and on a deep emulator queue a call costs the
//! same for one message as for sixteen); the limit decides how many of them are worked on at
//! once, the rest waiting here, kept hidden by their renewal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::domain::load::LoadLimit;

/// How often a waiting delivery looks again when nothing left the gate (the limit may have
/// grown).
const RECHECK: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Gate {
    load: Arc<LoadLimit>,
    max: usize,
    inside: AtomicUsize,
    left: Notify,
}

impl Gate {
    pub fn new(load: Arc<LoadLimit>, max: usize) -> Self {
        Self {
            load,
            max: max.max(1),
            inside: AtomicUsize::new(0),
            left: Notify::new(),
        }
    }

    /// How many may be inside now.
    pub fn limit(&self) -> usize {
        self.max.min(self.load.current()).max(1)
    }

    /// How many are inside.
    pub fn inside(&self) -> usize {
        self.inside.load(Ordering::SeqCst)
    }

    /// Waits for room, then holds a place until the pass is dropped.
    pub async fn enter(&self) -> Pass<'_> {
        loop {
            let left = self.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            let limit = self.limit();
            let entered = self
                .inside
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < limit).then_some(n + 1)
                })
                .is_ok();
            if entered {
                return Pass(self);
            }
            tokio::select! {
                _ = left => {}
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
    }
}

/// A place inside the gate.
pub struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
        self.0.left.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::load::Answer;

    #[tokio::test]
    async fn it_lets_in_as_many_as_the_limit_and_follows_it() {
        let load = Arc::new(LoadLimit::new(4, Duration::ZERO));
        let gate = Gate::new(load.clone(), 4);
        let passes: Vec<_> = futures::future::join_all((0..4).map(|_| gate.enter())).await;
        assert_eq!(gate.inside(), 4);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), gate.enter())
                .await
                .is_err(),
            "a fifth waits"
        );
        load.record(Answer::PushedBack); // 4 -> 3
        drop(passes);
        let _held: Vec<_> = futures::future::join_all((0..3).map(|_| gate.enter())).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), gate.enter())
                .await
                .is_err(),
            "the cut limit holds a fourth back"
        );
    }
}
