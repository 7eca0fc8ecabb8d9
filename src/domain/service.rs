//! The service: the stores, the work and the settings every use case shares. The use cases
//! themselves live one to a file beside it (`submit`, `status`, `process`, `poison`,
//! `retention`, `callback::delivery`), each an `impl Service` block.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::callback::Callbacks;
use super::load::LoadLimit;
use super::notifier::Notifier;
use super::operations::Operations;
use super::ports::{Clock, ResultStore, Storage, Stores, WorkQueue};
use super::work::Work;

/// The knobs of the use cases (read from the environment by `config`).
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// How long operations and results are kept (announced as `expirationDateTime`).
    pub retention: Duration,
    /// Deliveries of one message before it is given up on (the host's `maxDequeueCount`).
    pub max_dequeue_count: u32,
    /// Lifetime of a result's read link (SAS).
    pub sas_expiry: Duration,
    /// Largest message text sent inline; larger records go by claim check.
    pub max_inline_message_bytes: usize,
    /// How often a synchronous wait re-reads storage when no in-process wake-up comes.
    pub sync_poll_interval: Duration,
    /// How many synchronous waits may run at once; past that, requests answer at once.
    pub max_sync_waits: usize,
    /// Work that ends sooner goes from `NotStarted` straight to its end, without a `Running`
    /// write; zero writes `Running` before every start (see `process`).
    pub running_after: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 3600),
            max_dequeue_count: 5,
            sas_expiry: Duration::from_secs(600),
            // 64 KiB queue messages, base64 on the wire: 48 KiB of text, less room for safety.
            max_inline_message_bytes: 46 * 1024,
            sync_poll_interval: Duration::from_millis(500),
            max_sync_waits: 256,
            running_after: Duration::from_secs(1),
        }
    }
}

/// One set of store handles, with the record store behind its typed repository.
pub(super) struct Side {
    pub(super) operations: Operations,
    pub(super) results: Arc<dyn ResultStore>,
    pub(super) queue: Arc<dyn WorkQueue>,
    pub(super) callbacks: Arc<dyn WorkQueue>,
}

impl Side {
    fn new(
        stores: Stores,
        clock: &Arc<dyn Clock>,
        notifier: &Arc<Notifier>,
        callback_queued: &Arc<Notify>,
    ) -> Self {
        Self {
            operations: Operations::new(stores.records, clock.clone(), notifier.clone())
                .announcing_to(stores.callbacks.clone(), callback_queued.clone()),
            results: stores.results,
            queue: stores.queue,
            callbacks: stores.callbacks,
        }
    }
}

pub struct Service {
    /// For requests (submit, status, cancel, waits, the sweep): may be held back by adapters.
    pub(super) requests: Side,
    /// For work already accepted (processing, the poison queue): never held back.
    pub(super) accepted: Side,
    pub(super) work: Arc<dyn Work>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: ServiceSettings,
    pub(super) notifier: Arc<Notifier>,
    pub(super) wait_permits: Semaphore,
    pub(super) enqueued: Notify,
    pub(super) dead_lettered: Notify,
    /// Cancelled when the process begins to stop: synchronous waits answer at once then.
    pub(super) shutdown: CancellationToken,
    /// Completion callbacks; without them a `Callback-Url` is refused.
    pub(super) callbacks: Option<Callbacks>,
    /// Signalled whenever this process queues a callback delivery.
    pub(super) callback_queued: Arc<Notify>,
    /// How many messages storage can take being worked on now (see `Storage::work_load`).
    pub(super) work_load: Arc<LoadLimit>,
}

impl Service {
    pub fn new(
        storage: Storage,
        work: Arc<dyn Work>,
        clock: Arc<dyn Clock>,
        settings: ServiceSettings,
        shutdown: CancellationToken,
    ) -> Self {
        let notifier = Arc::new(Notifier::default());
        let callback_queued = Arc::new(Notify::new());
        let work_load = storage.work_load.clone();
        Self {
            requests: Side::new(storage.requests, &clock, &notifier, &callback_queued),
            accepted: Side::new(storage.work, &clock, &notifier, &callback_queued),
            work,
            wait_permits: Semaphore::new(settings.max_sync_waits),
            clock,
            settings,
            notifier,
            enqueued: Notify::new(),
            dead_lettered: Notify::new(),
            shutdown,
            callbacks: None,
            callback_queued,
            work_load,
        }
    }

    /// Enables completion callbacks: submissions may name a `Callback-Url`.
    pub fn with_callbacks(mut self, callbacks: Callbacks) -> Self {
        self.callbacks = Some(callbacks);
        self
    }

    /// The callbacks queue, for work already accepted (the standalone worker's receives).
    pub fn callback_queue(&self) -> &Arc<dyn WorkQueue> {
        &self.accepted.callbacks
    }

    /// Signalled whenever this process queues a callback delivery.
    pub fn callback_queued(&self) -> &Notify {
        &self.callback_queued
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The work queue, for work already accepted (the standalone worker's receives and deletes).
    pub fn queue(&self) -> &Arc<dyn WorkQueue> {
        &self.accepted.queue
    }

    /// The limit storage's answers set on the messages worked on at once.
    pub fn work_load(&self) -> &Arc<LoadLimit> {
        &self.work_load
    }

    /// Signalled whenever this process queues work, so the standalone worker wakes at once.
    pub fn enqueued(&self) -> &Notify {
        &self.enqueued
    }

    /// Signalled when this process moves a message to the poison queue, so the standalone
    /// poison loop handles it at once.
    pub fn dead_lettered(&self) -> &Notify {
        &self.dead_lettered
    }

    pub(super) fn retention(&self) -> time::Duration {
        time::Duration::try_from(self.settings.retention).unwrap_or(time::Duration::MAX)
    }
}
