//! The standalone consumer of the callbacks queue: what the Functions host's queue trigger on
//! it (`AsyncProcessingCallbackWorker`) does, done in-process when there is no host. Each
//! message is one delivery attempt; a message is deleted once its attempt is recorded (the
//! next attempt, if any, is already queued with its delay), and comes back after the
//! visibility timeout only when this process could not reach storage or stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::domain::{Outcome, Service};

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct CallbackWorkerSettings {
    /// Deliveries attempted at once.
    pub concurrency: usize,
    /// How long a received message stays hidden: longer than one attempt can take.
    pub visibility_timeout: Duration,
    /// The longest wait between polls of an empty queue.
    pub max_poll_interval: Duration,
}

/// Runs until `shutdown` is cancelled, then finishes the attempts in hand.
pub async fn run(
    service: Arc<Service>,
    settings: CallbackWorkerSettings,
    shutdown: CancellationToken,
) {
    let queue = service.callback_queue().clone();
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut in_flight = JoinSet::new();
    let min_poll = Duration::from_millis(50).min(settings.max_poll_interval);
    let mut idle = min_poll;
    info!("callback worker started");
    while !shutdown.is_cancelled() {
        while in_flight.try_join_next().is_some() {}
        let free = permits.available_permits();
        if free == 0 {
            tokio::select! {
                _ = in_flight.join_next() => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        match queue
            .receive(free.min(32), settings.visibility_timeout)
            .await
        {
            Ok(deliveries) if !deliveries.is_empty() => {
                idle = min_poll;
                for delivery in deliveries {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let service = service.clone();
                    let queue = queue.clone();
                    in_flight.spawn(async move {
                        if service.deliver_callback(&delivery.text).await == Outcome::Done {
                            if let Err(e) = queue.delete(&delivery.receipt).await {
                                // It comes back; the callback's state makes the rerun a no-op.
                                warn!(error = %e, "could not delete a handled callback message");
                            }
                        }
                        drop(permit);
                    });
                }
            }
            Ok(_) => {
                tokio::select! {
                    _ = service.callback_queued().notified() => idle = min_poll,
                    _ = tokio::time::sleep(idle) => idle = (idle * 2).min(settings.max_poll_interval),
                    _ = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "could not read the callbacks queue; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(settings.max_poll_interval) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
    while in_flight.join_next().await.is_some() {}
}
