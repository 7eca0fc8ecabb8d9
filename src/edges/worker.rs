//! The standalone queue worker: what the Functions host's queue trigger does with the work
//! queue, done in-process when there is no host, on a queue consumer (`consumer`: batches, the
//! load limit, back-off, wake-ups). Deletes a message only once its outcome is recorded (a
//! crash loses nothing), retries transient failures after the visibility timeout, dead-letters
//! on the last attempt. Like the host's queue trigger, it keeps a message hidden while working
//! on it (renewing its visibility). A message delivered more often than allowed (its last
//! attempt crashed) goes to the poison queue unprocessed, as under the host; and the poison
//! queue has a consumer of its own, the standalone twin of the host's poison function.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::consumer::{consume, ConsumerGauges, ConsumerSettings, Handler};
use crate::domain::ports::{Delivery, StoreError, WorkQueue};
use crate::domain::Outcome;
use crate::domain::Service;

/// Settings of the standalone queue worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The most messages processed at once; storage's answers may hold it lower.
    pub concurrency: usize,
    /// How long a received message stays hidden; a transient failure is retried after it.
    pub visibility_timeout: Duration,
    /// The longest wait between polls of an empty queue (like host.json's `maxPollingInterval`).
    pub max_poll_interval: Duration,
}

impl WorkerSettings {
    fn consumer(&self, name: &'static str) -> ConsumerSettings {
        ConsumerSettings {
            name,
            concurrency: self.concurrency,
            visibility_timeout: self.visibility_timeout,
            max_poll_interval: self.max_poll_interval,
        }
    }
}

/// Runs until `shutdown` is cancelled, then finishes the messages in hand. `gauges` follows
/// the work queue's consumer.
pub async fn run(
    service: Arc<Service>,
    settings: WorkerSettings,
    gauges: Arc<ConsumerGauges>,
    shutdown: CancellationToken,
) {
    let load = service.work_load().clone();
    let poison = service.queue().poison().is_some().then(|| {
        tokio::spawn(consume(
            Arc::new(PoisonQueue(service.clone())),
            load.clone(),
            settings.consumer("poison"),
            Arc::default(),
            shutdown.clone(),
        ))
    });
    let work = WorkQueueHandler {
        service,
        visibility: settings.visibility_timeout,
    };
    consume(
        Arc::new(work),
        load,
        settings.consumer("work"),
        gauges,
        shutdown,
    )
    .await;
    if let Some(poison) = poison {
        let _ = poison.await;
    }
}

/// The work queue's deliveries: processed (see `handle`).
struct WorkQueueHandler {
    service: Arc<Service>,
    visibility: Duration,
}

#[async_trait]
impl Handler for WorkQueueHandler {
    fn queue(&self) -> &dyn WorkQueue {
        self.service.queue().as_ref()
    }
    fn queued(&self) -> &Notify {
        self.service.enqueued()
    }
    async fn handle(&self, delivery: Delivery) {
        handle(&self.service, delivery, self.visibility).await
    }
}

/// The poison queue's: the operations whose messages reached it are ended (see
/// `Service::poisoned`), each message deleted once that is recorded; one that could not be
/// recorded comes back after the visibility timeout. Wakes at once when this process
/// dead-letters a message.
struct PoisonQueue(Arc<Service>);

#[async_trait]
impl Handler for PoisonQueue {
    fn queue(&self) -> &dyn WorkQueue {
        self.0
            .queue()
            .poison()
            .expect("only started for a work queue with a poison queue (see `run`)")
    }
    fn queued(&self) -> &Notify {
        self.0.dead_lettered()
    }
    async fn handle(&self, delivery: Delivery) {
        let outcome = self
            .0
            .poisoned(&delivery.text, &delivery.receipt.message_id)
            .await;
        if outcome == Outcome::Done {
            if let Err(e) = self.queue().delete(&delivery.receipt).await {
                warn!(error = %e, "could not delete a handled poison message");
            }
        }
    }
}

/// Processes one delivery, keeping its message hidden meanwhile, then deletes it, leaves it
/// for a retry, or dead-letters it.
async fn handle(service: &Service, delivery: Delivery, visibility: Duration) {
    let queue = service.queue();
    if delivery.dequeue_count > service.settings().max_dequeue_count {
        // Its last allowed attempt never reported back (a crash, a kill): as the host does, it
        // goes to the poison queue without another attempt, and the poison loop ends it.
        warn!(
            dequeue_count = delivery.dequeue_count,
            "a message was delivered more often than allowed; moving it to the poison queue"
        );
        dead_letter(service, &delivery).await;
        return;
    }
    let (done_tx, mut done) = watch::channel(false);
    let work = async {
        let outcome = service
            .process(&delivery.text, delivery.dequeue_count)
            .await;
        let _ = done_tx.send(true);
        outcome
    };
    // As the host's queue trigger does: while the work runs, the message's visibility is
    // renewed halfway through each timeout, so slow storage never makes a message being worked
    // on visible to a second consumer. A renewal in progress finishes before the receipt is
    // used, because each renewal spends the receipt before it.
    let renew = async {
        let mut receipt = delivery.receipt.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(visibility / 2) => {}
                _ = done.changed() => return receipt,
            }
            match queue.extend(&receipt, &delivery.text, visibility).await {
                Ok(renewed) => receipt = renewed,
                Err(StoreError::NotFound) => {
                    warn!(
                        message_id = %receipt.message_id,
                        "a message being worked on was delivered again; no longer renewing it"
                    );
                    let _ = done.changed().await;
                    return receipt;
                }
                Err(e) => warn!(
                    message_id = %receipt.message_id,
                    error = %e,
                    "could not renew a message's visibility; retrying"
                ),
            }
        }
    };
    let (outcome, receipt) = tokio::join!(work, renew);
    let delivery = Delivery {
        receipt,
        ..delivery
    };
    match outcome {
        Outcome::Done => {
            if let Err(e) = queue.delete(&delivery.receipt).await {
                // The message comes back after its timeout; processing it again changes nothing.
                warn!(error = %e, "could not delete a processed message");
            }
        }
        Outcome::Retry if delivery.dequeue_count >= service.settings().max_dequeue_count => {
            warn!(
                dequeue_count = delivery.dequeue_count,
                "giving up on a message; moving it to the poison queue"
            );
            dead_letter(service, &delivery).await;
        }
        // Comes back once the last renewal's timeout is over.
        Outcome::Retry => {}
    }
}

/// Moves a delivery to the poison queue and wakes this process's poison loop. A failure leaves
/// the message where it is: it comes back, past its allowed count, and is moved then.
async fn dead_letter(service: &Service, delivery: &Delivery) {
    match service.queue().dead_letter(delivery).await {
        Ok(()) => service.dead_lettered().notify_one(),
        Err(e) => warn!(error = %e, "could not move a message to the poison queue"),
    }
}
