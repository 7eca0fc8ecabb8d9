//! One standalone queue consumer: what the Functions host's queue trigger does for one queue,
//! done in-process when there is no host. It receives in batches, hands each delivery to its
//! handler as a task of its own, and keeps its storage calls within the work side's load limit
//! (`domain::load`): the limit shrinks while storage answers slowly, times out or throttles,
//! and grows back while it is quick, so a saturated storage is not sent more calls that time
//! out, are abandoned (storage still does them) and retried.
//! A handler that keeps its messages hidden while they wait (the work queue's, which renews)
//! gets batches as large as the consumer's concurrency and a `gate` that lets only the limit's
//! worth at storage at once: a receive is one call however many messages it brings, so slow
//! storage gets fewer calls, not smaller ones. Any other handler's consumer receives only what
//! the limit leaves free, and never holds back what it has in hand.
//! Like the host, it receives again only once the messages in hand have fallen to half the
//! batch (`newBatchThreshold`), so a busy consumer makes few large receives; it backs off
//! while the queue is empty or unreachable, and wakes at once when this process queues a
//! message.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::gate::Gate;
use crate::domain::load::LoadLimit;
use crate::domain::ports::{Delivery, WorkQueue};

/// The Queue service returns at most 32 messages a receive.
pub const MAX_BATCH: usize = 32;

/// What a consumer does with its queue's deliveries.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The queue it consumes.
    fn queue(&self) -> &dyn WorkQueue;
    /// Signalled when this process queues a message there.
    fn queued(&self) -> &Notify;
    /// Whether `handle` keeps its message hidden while it waits in `gate` (it renews it). Only
    /// then does the consumer hold more messages than the load limit lets at storage.
    fn renews(&self) -> bool {
        false
    }
    /// Handles one delivery, deleting its message when it is done with it. A handler that
    /// renews waits for a place in `gate` before its storage calls; any other ignores it.
    async fn handle(&self, delivery: Delivery, gate: &Gate);
}

/// How a consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Which queue, for logs.
    pub name: &'static str,
    /// The most deliveries handled at once; the load limit moves below it.
    pub concurrency: usize,
    /// How long a received message stays hidden.
    pub visibility_timeout: Duration,
    /// The longest wait between polls of an empty queue (host.json's `maxPollingInterval`).
    pub max_poll_interval: Duration,
}

/// What a consumer is doing, for metrics and tests (read each time round its loop): deliveries
/// at storage (past the gate), deliveries in hand (received, not yet done) and the limit.
#[derive(Debug, Default)]
pub struct ConsumerGauges {
    in_flight: AtomicUsize,
    held: AtomicUsize,
    limit: AtomicUsize,
}

impl ConsumerGauges {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }
}

/// Runs until `shutdown` is cancelled, then finishes the deliveries in hand.
pub async fn consume<H: Handler>(
    handler: Arc<H>,
    load: Arc<LoadLimit>,
    settings: ConsumerSettings,
    gauges: Arc<ConsumerGauges>,
    shutdown: CancellationToken,
) {
    let mut in_flight = JoinSet::new();
    let gate = Arc::new(Gate::new(load.clone(), settings.concurrency));
    let renews = handler.renews();
    // Past the gate, or, where it is not used, all in hand.
    let working = |held: usize| if renews { gate.inside() } else { held };
    let min_poll = Duration::from_millis(50).min(settings.max_poll_interval);
    let mut idle = min_poll;
    let mut last_limit = settings.concurrency;
    info!(
        queue = settings.name,
        concurrency = settings.concurrency,
        "queue consumer started"
    );
    while !shutdown.is_cancelled() {
        while in_flight.try_join_next().is_some() {}
        let limit = gate.limit();
        if limit != last_limit {
            debug!(
                queue = settings.name,
                limit,
                was = last_limit,
                cuts = load.decreases(),
                "storage's answers moved the consumer's limit"
            );
            last_limit = limit;
        }
        let in_hand = in_flight.len();
        gauges.in_flight.store(working(in_hand), Ordering::Relaxed);
        gauges.held.store(in_hand, Ordering::Relaxed);
        gauges.limit.store(limit, Ordering::Relaxed);
        let most = if renews { settings.concurrency } else { limit };
        if in_hand >= most || (in_hand > 0 && in_hand > most / 2) {
            // Until one finishes, or the limit may have grown back.
            tokio::select! {
                _ = in_flight.join_next() => {}
                _ = tokio::time::sleep(settings.max_poll_interval) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        let batch = (most - in_hand).min(MAX_BATCH);
        let received = handler
            .queue()
            .receive(batch, settings.visibility_timeout)
            .await;
        match received {
            Ok(deliveries) if !deliveries.is_empty() => {
                idle = min_poll;
                for delivery in deliveries {
                    let (handler, gate) = (handler.clone(), gate.clone());
                    in_flight.spawn(async move { handler.handle(delivery, &gate).await });
                }
            }
            Ok(_) => {
                tokio::select! {
                    _ = handler.queued().notified() => idle = min_poll,
                    _ = tokio::time::sleep(idle) => idle = (idle * 2).min(settings.max_poll_interval),
                    _ = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                warn!(queue = settings.name, error = %e, "could not read the queue; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(settings.max_poll_interval) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
    info!(
        queue = settings.name,
        in_flight = in_flight.len(),
        "queue consumer stopping; finishing deliveries in hand"
    );
    while in_flight.join_next().await.is_some() {
        gauges
            .in_flight
            .store(working(in_flight.len()), Ordering::Relaxed);
        gauges.held.store(in_flight.len(), Ordering::Relaxed);
    }
    gauges.in_flight.store(0, Ordering::Relaxed);
    gauges.held.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::adapters::memory::MemoryWorkQueue;

    /// Holds every delivery until released; counts how many are at storage (past the gate, or
    /// all of them for a handler that does not renew).
    struct Holding {
        queue: MemoryWorkQueue,
        queued: Notify,
        renews: bool,
        at_storage: AtomicUsize,
        peak: AtomicUsize,
        released: AtomicBool,
        release: Notify,
    }

    impl Holding {
        async fn with(renews: bool, messages: usize) -> Arc<Self> {
            let queue = MemoryWorkQueue::new();
            for i in 0..messages {
                queue.send(&i.to_string()).await.unwrap();
            }
            Arc::new(Self {
                queue,
                queued: Notify::new(),
                renews,
                at_storage: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                released: AtomicBool::new(false),
                release: Notify::new(),
            })
        }
    }

    #[async_trait]
    impl Handler for Holding {
        fn queue(&self) -> &dyn WorkQueue {
            &self.queue
        }
        fn queued(&self) -> &Notify {
            &self.queued
        }
        fn renews(&self) -> bool {
            self.renews
        }
        async fn handle(&self, delivery: Delivery, gate: &Gate) {
            let _pass = if self.renews {
                Some(gate.enter().await)
            } else {
                None
            };
            let now = self.at_storage.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let released = self.release.notified();
            if !self.released.load(Ordering::SeqCst) {
                released.await;
            }
            self.at_storage.fetch_sub(1, Ordering::SeqCst);
            self.queue.delete(&delivery.receipt).await.unwrap();
        }
    }

    /// Runs a consumer of concurrency 16 under a limit of 4 until `held` deliveries are in
    /// hand; answers the most that were at storage at once, then lets everything finish.
    async fn run_until_held(handler: Arc<Holding>, held: usize) -> usize {
        let gauges = Arc::new(ConsumerGauges::default());
        let stop = CancellationToken::new();
        let settings = ConsumerSettings {
            name: "test",
            concurrency: 16,
            visibility_timeout: Duration::from_secs(60),
            max_poll_interval: Duration::from_millis(20),
        };
        let load = Arc::new(LoadLimit::new(4, Duration::MAX));
        let running = tokio::spawn(consume(
            handler.clone(),
            load,
            settings,
            gauges.clone(),
            stop.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while gauges.held() != held || gauges.in_flight() != 4 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "held {} (wanted {held}), at storage {}",
                gauges.held(),
                gauges.in_flight()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let peak = handler.peak.load(Ordering::SeqCst);
        handler.released.store(true, Ordering::SeqCst);
        handler.release.notify_waiters();
        stop.cancel();
        running.await.unwrap();
        peak
    }

    #[tokio::test]
    async fn a_renewing_handler_gets_whole_batches_and_the_gate_holds_the_limit() {
        let handler = Holding::with(true, 40).await;
        assert_eq!(run_until_held(handler, 16).await, 4);
    }

    #[tokio::test]
    async fn any_other_handler_gets_only_what_the_limit_leaves_free() {
        // Were more received, more would be held (and at storage: nothing holds them back).
        let handler = Holding::with(false, 40).await;
        assert_eq!(run_until_held(handler, 4).await, 4);
    }
}
