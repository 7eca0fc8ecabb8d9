//! The standalone queue worker: what the Functions host's queue trigger does, done in-process
//! when there is no host. Receives with a visibility timeout, deletes a message only once its
//! outcome is recorded (a crash loses nothing), retries transient failures after the timeout,
//! dead-letters on the last attempt, and wakes at once for this process's own submissions.
//! Like the host's queue trigger, it keeps a message hidden while working on it (renewing its
//! visibility), and it fetches a new batch only once the messages in hand have
//! fallen to half the concurrency (`newBatchThreshold`), so a busy worker makes few large
//! receive calls instead of one per finished message.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::WorkerSettings;
use crate::domain::ports::{for_accepted_work, Delivery, StoreError};
use crate::domain::service::Outcome;
use crate::domain::Service;

/// Runs until `shutdown` turns true, then finishes the messages in hand.
pub async fn run(
    service: Arc<Service>,
    settings: WorkerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut in_flight = JoinSet::new();
    let min_poll = Duration::from_millis(50).min(settings.max_poll_interval);
    let mut idle = min_poll;
    info!(concurrency = settings.concurrency, "queue worker started");
    while !*shutdown.borrow() {
        while in_flight.try_join_next().is_some() {}
        let free = permits.available_permits();
        let in_hand = settings.concurrency - free;
        if free == 0 || in_hand > settings.concurrency / 2 {
            tokio::select! {
                _ = in_flight.join_next() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        // The queue API returns at most 32 messages a call.
        let batch = free.min(32);
        let received =
            for_accepted_work(service.queue().receive(batch, settings.visibility_timeout)).await;
        match received {
            Ok(deliveries) if !deliveries.is_empty() => {
                idle = min_poll;
                for delivery in deliveries {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let service = service.clone();
                    let visibility = settings.visibility_timeout;
                    in_flight.spawn(for_accepted_work(async move {
                        handle(&service, delivery, visibility).await;
                        drop(permit);
                    }));
                }
            }
            Ok(_) => {
                tokio::select! {
                    _ = service.enqueued().notified() => idle = min_poll,
                    _ = tokio::time::sleep(idle) => idle = (idle * 2).min(settings.max_poll_interval),
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "could not read the queue; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(settings.max_poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    info!(
        in_flight = in_flight.len(),
        "queue worker stopping; finishing messages in hand"
    );
    while in_flight.join_next().await.is_some() {}
}

/// Processes one delivery, keeping its message hidden meanwhile, then deletes it, leaves it
/// for a retry, or dead-letters it.
async fn handle(service: &Service, delivery: Delivery, visibility: Duration) {
    let queue = service.queue();
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
            if let Err(e) = queue.dead_letter(&delivery).await {
                warn!(error = %e, "could not move a message to the poison queue");
            }
        }
        // Comes back once the last renewal's timeout is over.
        Outcome::Retry => {}
    }
}
