//! The standalone consumer of the callbacks queue: what the Functions host's queue trigger on
//! it (`AsyncProcessingCallbackWorker`) does, done in-process when there is no host. Each
//! message is one delivery attempt; a message is deleted once its attempt is recorded (the
//! next attempt, if any, is already queued with its delay), and comes back after the
//! visibility timeout only when this process could not reach storage or stopped.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::consumer::{consume, ConsumerGauges, ConsumerSettings, Handler};
use crate::domain::ports::{Delivery, WorkQueue};
use crate::domain::{Outcome, Service};

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct CallbackWorkerSettings {
    /// The most deliveries attempted at once; storage's answers may hold it lower.
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
    gauges: Arc<ConsumerGauges>,
    shutdown: CancellationToken,
) {
    let load = service.work_load().clone();
    let settings = ConsumerSettings {
        name: "callbacks",
        concurrency: settings.concurrency,
        visibility_timeout: settings.visibility_timeout,
        max_poll_interval: settings.max_poll_interval,
    };
    consume(
        Arc::new(Callbacks(service)),
        load,
        settings,
        gauges,
        shutdown,
    )
    .await
}

/// The callbacks queue's deliveries: one attempt each.
struct Callbacks(Arc<Service>);

#[async_trait]
impl Handler for Callbacks {
    fn queue(&self) -> &dyn WorkQueue {
        self.0.callback_queue().as_ref()
    }
    fn queued(&self) -> &Notify {
        self.0.callback_queued()
    }
    async fn handle(&self, delivery: Delivery) {
        if self.0.deliver_callback(&delivery.text).await == Outcome::Done {
            if let Err(e) = self.queue().delete(&delivery.receipt).await {
                // It comes back; the callback's state makes the rerun a no-op.
                warn!(error = %e, "could not delete a handled callback message");
            }
        }
    }
}
