//! One standalone queue consumer: what the Functions host's queue trigger does for one queue,
//! done in-process when there is no host. It receives in batches, hands each delivery to its
//! handler as a task of its own, and lets no more of them at storage at once than the work
//! side's load limit allows (`gate`, `domain::load`): the limit shrinks while storage answers
//! slowly, times out or throttles, and grows back while it is quick, so a saturated storage is
//! not sent more calls that time out, are abandoned (storage still does them) and retried. The
//! batches stay as large as the consumer's concurrency (a receive is one call however many
//! messages it brings). Like the host, it receives again only once the messages in hand have
//! fallen to half the concurrency (`newBatchThreshold`), so a busy consumer makes few large
//! receives; it backs off while the queue is empty or unreachable, and wakes at once when this
//! process queues a message.

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
    /// Handles one delivery, deleting its message when it is done with it; its storage calls
    /// wait for a place in `gate` first (a handler that renews the message may renew meanwhile).
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
    let gate = Arc::new(Gate::new(load, settings.concurrency));
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
                "storage's answers moved the consumer's limit"
            );
            last_limit = limit;
        }
        let in_hand = in_flight.len();
        gauges.in_flight.store(gate.inside(), Ordering::Relaxed);
        gauges.held.store(in_hand, Ordering::Relaxed);
        gauges.limit.store(limit, Ordering::Relaxed);
        let most = settings.concurrency;
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
        gauges.in_flight.store(gate.inside(), Ordering::Relaxed);
        gauges.held.store(in_flight.len(), Ordering::Relaxed);
    }
    gauges.in_flight.store(0, Ordering::Relaxed);
    gauges.held.store(0, Ordering::Relaxed);
}
