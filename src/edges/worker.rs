//! The standalone queue worker: what the Functions host's queue trigger does, done in-process
//! when there is no host. Receives with a visibility timeout, deletes a message only once its
//! outcome is recorded (a crash loses nothing), retries transient failures after the timeout,
//! dead-letters on the last attempt, and wakes at once for this process's own submissions.
//! Like the host's queue trigger, it keeps a message hidden while working on it (renewing its
//! visibility), and it fetches a new batch only once the messages in hand have
//! fallen to half the concurrency (`newBatchThreshold`), so a busy worker makes few large
//! receive calls instead of one per finished message. A message delivered more often than
//! allowed (its last attempt crashed) goes to the poison queue unprocessed, as under the host;
//! and the poison queue has a loop of its own, the standalone twin of the host's poison function.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::domain::ports::{Delivery, StoreError};
use crate::domain::Outcome;
use crate::domain::Service;

/// Settings of the standalone queue worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Messages processed at once.
    pub concurrency: usize,
    /// How long a received message stays hidden; a transient failure is retried after it.
    pub visibility_timeout: Duration,
    /// The longest wait between polls of an empty queue (like host.json's `maxPollingInterval`).
    pub max_poll_interval: Duration,
}

/// Runs until `shutdown` is cancelled, then finishes the messages in hand.
pub async fn run(service: Arc<Service>, settings: WorkerSettings, shutdown: CancellationToken) {
    let poison = tokio::spawn(drain_poison(
        service.clone(),
        settings.clone(),
        shutdown.clone(),
    ));
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut in_flight = JoinSet::new();
    let min_poll = Duration::from_millis(50).min(settings.max_poll_interval);
    let mut idle = min_poll;
    info!(concurrency = settings.concurrency, "queue worker started");
    while !shutdown.is_cancelled() {
        while in_flight.try_join_next().is_some() {}
        let free = permits.available_permits();
        let in_hand = settings.concurrency - free;
        if free == 0 || in_hand > settings.concurrency / 2 {
            tokio::select! {
                _ = in_flight.join_next() => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        // The queue API returns at most 32 messages a call.
        let batch = free.min(32);
        let received = service
            .queue()
            .receive(batch, settings.visibility_timeout)
            .await;
        match received {
            Ok(deliveries) if !deliveries.is_empty() => {
                idle = min_poll;
                for delivery in deliveries {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let service = service.clone();
                    let visibility = settings.visibility_timeout;
                    in_flight.spawn(async move {
                        handle(&service, delivery, visibility).await;
                        drop(permit);
                    });
                }
            }
            Ok(_) => {
                tokio::select! {
                    _ = service.enqueued().notified() => idle = min_poll,
                    _ = tokio::time::sleep(idle) => idle = (idle * 2).min(settings.max_poll_interval),
                    _ = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "could not read the queue; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(settings.max_poll_interval) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
    info!(
        in_flight = in_flight.len(),
        "queue worker stopping; finishing messages in hand"
    );
    while in_flight.join_next().await.is_some() {}
    let _ = poison.await;
}

/// Ends the operations whose messages reached the poison queue (see `Service::poisoned`),
/// deleting each message once that is recorded; one that could not be recorded comes back
/// after the visibility timeout. Polls with the worker's back-off, and wakes at once when this
/// process dead-letters a message.
async fn drain_poison(
    service: Arc<Service>,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) {
    let Some(queue) = service.queue().poison() else {
        return;
    };
    let min_poll = Duration::from_millis(50).min(settings.max_poll_interval);
    let mut idle = min_poll;
    while !shutdown.is_cancelled() {
        let received = queue.receive(32, settings.visibility_timeout).await;
        let nap = match received {
            Ok(deliveries) if !deliveries.is_empty() => {
                for delivery in deliveries {
                    let outcome = service
                        .poisoned(&delivery.text, &delivery.receipt.message_id)
                        .await;
                    if outcome == Outcome::Done {
                        if let Err(e) = queue.delete(&delivery.receipt).await {
                            warn!(error = %e, "could not delete a handled poison message");
                        }
                    }
                }
                idle = min_poll;
                continue;
            }
            Ok(_) => {
                let nap = idle;
                idle = (idle * 2).min(settings.max_poll_interval);
                nap
            }
            Err(e) => {
                warn!(error = %e, "could not read the poison queue; backing off");
                settings.max_poll_interval
            }
        };
        tokio::select! {
            _ = service.dead_lettered().notified() => idle = min_poll,
            _ = tokio::time::sleep(nap) => {}
            _ = shutdown.cancelled() => {}
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
