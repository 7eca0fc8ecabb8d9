//! One standalone queue consumer: what the Functions host's queue trigger does for one queue,
//! done in-process when there is no host. It receives in batches, hands each delivery to its
//! handler as a task of its own, and takes no more messages than the work side's load limit
//! allows (`domain::load`): the limit shrinks while storage answers slowly, times out or
//! throttles, and grows back while it is quick, so a saturated storage is not sent more calls
//! that time out, are abandoned (storage still does them) and retried. Messages already in hand
//! are never held back by it: the limit only decides when to receive again and how many.
//! Like the host, it receives again only once the messages in hand have fallen to half the
//! limit (`newBatchThreshold`), so a busy consumer makes few large receives; it backs off
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
    /// Handles one delivery, deleting its message when it is done with it.
    async fn handle(&self, delivery: Delivery);
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

/// What a consumer is doing, for metrics and tests: deliveries in hand and the limit it obeys.
#[derive(Debug, Default)]
pub struct ConsumerGauges {
    in_flight: AtomicUsize,
    limit: AtomicUsize,
}

impl ConsumerGauges {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
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
        let limit = settings.concurrency.min(load.current()).max(1);
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
        gauges.in_flight.store(in_hand, Ordering::Relaxed);
        gauges.limit.store(limit, Ordering::Relaxed);
        if in_hand >= limit || (in_hand > 0 && in_hand > limit / 2) {
            // Until one finishes, or the limit may have grown back.
            tokio::select! {
                _ = in_flight.join_next() => {}
                _ = tokio::time::sleep(settings.max_poll_interval) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        let batch = (limit - in_hand).min(MAX_BATCH);
        let received = handler
            .queue()
            .receive(batch, settings.visibility_timeout)
            .await;
        match received {
            Ok(deliveries) if !deliveries.is_empty() => {
                idle = min_poll;
                for delivery in deliveries {
                    let handler = handler.clone();
                    in_flight.spawn(async move { handler.handle(delivery).await });
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
        gauges.in_flight.store(in_flight.len(), Ordering::Relaxed);
    }
    gauges.in_flight.store(0, Ordering::Relaxed);
}
