//! The use cases: submit work, read and cancel operations, wait for them, process a queue
//! message, and sweep expired operations. Both edges (HTTP and the host's invocation protocol)
//! and the standalone worker call these; the ports do the I/O.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::{Notify, Semaphore};
use tracing::{info, info_span, warn, Instrument};

use super::error::DomainError;
use super::message::{Payload, WorkMessage};
use super::notifier::Notifier;
use super::operation::{AlreadyEnded, Operation, OperationError, OperationId, Status};
use super::ports::{
    for_accepted_work, Clock, ETag, RecordStore, ResultBody, ResultStore, StoreError, WorkQueue,
};
use super::submission;
use super::work::{Work, WorkError, WorkInput};

mod poison;
pub use poison::PoisonCopy;

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
        }
    }
}

/// What a submission carries into the domain.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub record: Map<String, Value>,
    pub idempotency_key: Option<String>,
    pub traceparent: Option<String>,
}

/// A submission's answer: the operation, and whether it is a replay of an earlier submission.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub operation: Operation,
    pub replayed: bool,
}

/// What to do with a delivered message once `process` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handled for good (done, failed for good, or nothing to do): delete the message.
    Done,
    /// Not handled for good: let the message come back later, or, after the last allowed
    /// attempt, go to the poison queue (the operation was failed first where storage allowed).
    Retry,
}

/// The record behind an `Idempotency-Key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdempotencyEntry {
    operation_id: OperationId,
    body_hash: String,
    /// Set once the message is durably queued; until then a replay queues it itself.
    enqueued: bool,
    #[serde(with = "time::serde::rfc3339")]
    expiration_date_time: OffsetDateTime,
}

/// The outcome of a compare-and-swap update of an operation.
enum Update {
    /// Written: the operation as stored now, and its new version.
    Changed(Operation, ETag),
    AlreadyEnded(Operation),
}

/// How many times a compare-and-swap is retried when it keeps losing races.
const CAS_ATTEMPTS: usize = 8;

pub struct Service {
    records: Arc<dyn RecordStore>,
    results: Arc<dyn ResultStore>,
    queue: Arc<dyn WorkQueue>,
    work: Arc<dyn Work>,
    clock: Arc<dyn Clock>,
    settings: ServiceSettings,
    notifier: Notifier,
    wait_permits: Semaphore,
    enqueued: Notify,
    dead_lettered: Notify,
}

impl Service {
    pub fn new(
        records: Arc<dyn RecordStore>,
        results: Arc<dyn ResultStore>,
        queue: Arc<dyn WorkQueue>,
        work: Arc<dyn Work>,
        clock: Arc<dyn Clock>,
        settings: ServiceSettings,
    ) -> Self {
        let wait_permits = Semaphore::new(settings.max_sync_waits);
        Self {
            records,
            results,
            queue,
            work,
            clock,
            settings,
            notifier: Notifier::default(),
            wait_permits,
            enqueued: Notify::new(),
            dead_lettered: Notify::new(),
        }
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    pub fn queue(&self) -> &Arc<dyn WorkQueue> {
        &self.queue
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

    fn retention(&self) -> time::Duration {
        time::Duration::try_from(self.settings.retention).unwrap_or(time::Duration::MAX)
    }

    // ----- submit -----

    /// Accepts work: records the operation, then queues its message. Answers only once the
    /// message is durably queued; on any failure nothing is accepted.
    pub async fn submit(
        &self,
        request: SubmitRequest,
        status_url: &(dyn Fn(OperationId) -> String + Sync),
    ) -> Result<Accepted, DomainError> {
        match request.idempotency_key.clone() {
            None => {
                let id = OperationId::new_random();
                let span = info_span!("submit", operation_id = %id);
                async {
                    let op = self
                        .accept(id, &request, status_url(id), false)
                        .await
                        .inspect_err(|e| warn!(error = %e, "submission not accepted"))?;
                    info!("accepted");
                    Ok(Accepted {
                        operation: op,
                        replayed: false,
                    })
                }
                .instrument(span)
                .await
            }
            Some(key) => self.submit_idempotent(&key, &request, status_url).await,
        }
    }

    async fn submit_idempotent(
        &self,
        key: &str,
        request: &SubmitRequest,
        status_url: &(dyn Fn(OperationId) -> String + Sync),
    ) -> Result<Accepted, DomainError> {
        let entry_key = format!("idempotency/{}", sha256_hex(key.as_bytes()));
        // serde_json's map is ordered by key, so this hash ignores key order and white space.
        let body_hash = sha256_hex(Value::Object(request.record.clone()).to_string().as_bytes());
        let now = self.clock.now();
        let fresh = IdempotencyEntry {
            operation_id: OperationId::new_random(),
            body_hash: body_hash.clone(),
            enqueued: false,
            expiration_date_time: now + self.retention(),
        };
        for _ in 0..CAS_ATTEMPTS {
            let (entry, etag) = match self.records.insert(&entry_key, to_json(&fresh)).await {
                Ok(etag) => (fresh.clone(), etag),
                Err(StoreError::AlreadyExists) => match self.records.get(&entry_key).await? {
                    Some((doc, etag)) => (from_json::<IdempotencyEntry>(&doc)?, etag),
                    None => continue,
                },
                Err(e) => return Err(e.into()),
            };
            if entry.expiration_date_time <= now {
                // A key reused after its retention is a new request.
                match self
                    .records
                    .replace(&entry_key, to_json(&fresh), &etag)
                    .await
                {
                    Ok(_) | Err(StoreError::PreconditionFailed) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if entry.body_hash != body_hash {
                return Err(DomainError::IdempotencyMismatch);
            }
            let id = entry.operation_id;
            let span = info_span!("submit", operation_id = %id);
            return async {
                if entry.enqueued {
                    let op = self.get(id).await?;
                    info!("replayed an idempotent submission");
                    return Ok(Accepted {
                        operation: op,
                        replayed: true,
                    });
                }
                // First time here, or an earlier attempt stopped before its message was queued.
                let replayed = entry.operation_id != fresh.operation_id;
                let op = self.accept(id, request, status_url(id), true).await?;
                let done = IdempotencyEntry {
                    enqueued: true,
                    ..entry
                };
                if let Err(e) = self
                    .records
                    .replace(&entry_key, to_json(&done), &etag)
                    .await
                {
                    // Harmless: a later replay queues a duplicate message, which processing ignores.
                    warn!(error = %e, "could not mark the idempotency key as queued");
                }
                info!(replayed, "accepted");
                Ok(Accepted {
                    operation: op,
                    replayed,
                })
            }
            .instrument(span)
            .await;
        }
        Err(DomainError::Unavailable(
            "too much contention on this Idempotency-Key".into(),
        ))
    }

    /// Writes the operation record (and the payload, when it needs a claim check), then queues
    /// the message. `tolerate_existing`: the record may already be there from an earlier attempt.
    async fn accept(
        &self,
        id: OperationId,
        request: &SubmitRequest,
        status_url: String,
        tolerate_existing: bool,
    ) -> Result<Operation, DomainError> {
        let now = self.clock.now();
        let mut operation = Operation::new(id, status_url.clone(), now, self.retention());
        let record_version = match self
            .records
            .insert(&id.record_key(), to_json(&operation))
            .await
        {
            Ok(etag) => Some(etag),
            Err(StoreError::AlreadyExists) if tolerate_existing => {
                if let Some((doc, _)) = self.records.get(&id.record_key()).await? {
                    operation = from_json(&doc)?;
                }
                None
            }
            Err(e) => return Err(e.into()),
        };
        let mut message = WorkMessage {
            id,
            submitted_at: now,
            status_url,
            payload: Payload::Inline(request.record.clone()),
            traceparent: request.traceparent.clone(),
            record_version,
        };
        if let Err(e) = self.send(&mut message, &request.record).await {
            if !tolerate_existing {
                // Nobody knows this id yet; leave no operation behind that would never run.
                let _ = self.records.delete(&id.record_key()).await;
                let _ = self.records.delete(&id.payload_key()).await;
            }
            return Err(e.into());
        }
        self.enqueued.notify_one();
        Ok(operation)
    }

    /// Queues the message, storing the record first and sending a reference instead when it
    /// is too large for one queue message (claim check).
    async fn send(
        &self,
        message: &mut WorkMessage,
        record: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        let mut text = message.encode();
        if text.len() > self.settings.max_inline_message_bytes {
            let key = message.id.payload_key();
            match self
                .records
                .insert(&key, to_json(&Value::Object(record.clone())))
                .await
            {
                Ok(_) | Err(StoreError::AlreadyExists) => {}
                Err(e) => return Err(e),
            }
            message.payload = Payload::Stored(key);
            text = message.encode();
        }
        self.queue.send(&text).await
    }

    // ----- read, cancel, wait -----

    async fn load(&self, id: OperationId) -> Result<Option<(Operation, ETag)>, DomainError> {
        match self.records.get(&id.record_key()).await? {
            Some((doc, etag)) => Ok(Some((from_json(&doc)?, etag))),
            None => Ok(None),
        }
    }

    /// The operation, unless it is unknown or past its retention.
    pub async fn get(&self, id: OperationId) -> Result<Operation, DomainError> {
        match self.load(id).await? {
            Some((op, _)) if !op.is_expired(self.clock.now()) => Ok(op),
            _ => Err(DomainError::NotFound),
        }
    }

    /// Applies `change` with compare-and-swap, re-reading on a lost race. `known` is the
    /// operation and version this process last wrote, if any: the first attempt starts from it
    /// instead of reading storage (a stale one only costs a lost race and a re-read).
    async fn update(
        &self,
        id: OperationId,
        mut known: Option<(Operation, ETag)>,
        change: impl Fn(&mut Operation, OffsetDateTime) -> Result<(), AlreadyEnded>,
    ) -> Result<Update, DomainError> {
        for _ in 0..CAS_ATTEMPTS {
            let now = self.clock.now();
            let (mut op, etag) = match known.take() {
                Some(k) => k,
                None => match self.load(id).await? {
                    Some(k) => k,
                    None => return Err(DomainError::NotFound),
                },
            };
            if op.is_expired(now) {
                return Err(DomainError::NotFound);
            }
            if change(&mut op, now).is_err() {
                return Ok(Update::AlreadyEnded(op));
            }
            match self
                .records
                .replace(&id.record_key(), to_json(&op), &etag)
                .await
            {
                Ok(etag) => {
                    if op.status.is_terminal() {
                        self.notifier.ended(&op);
                    }
                    return Ok(Update::Changed(op, etag));
                }
                Err(StoreError::PreconditionFailed) => continue,
                Err(StoreError::NotFound) => return Err(DomainError::NotFound),
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::Unavailable(
            "too much contention on this operation".into(),
        ))
    }

    /// Cancels a pending operation; one that already ended answers `AlreadyEnded`.
    pub async fn cancel(&self, id: OperationId) -> Result<Operation, DomainError> {
        let span = info_span!("cancel", operation_id = %id);
        async {
            match self
                .update(id, None, |op, now| {
                    op.transition(Status::Canceled, None, now)
                })
                .await?
            {
                Update::Changed(op, _) => {
                    info!("canceled");
                    Ok(op)
                }
                Update::AlreadyEnded(op) => Err(DomainError::AlreadyEnded(op.status)),
            }
        }
        .instrument(span)
        .await
    }

    /// Waits until the operation ends or `max` passes, woken at once when this process ends it
    /// and otherwise re-reading storage every `sync_poll_interval`. When too many waits are
    /// already running, answers at once with the current state.
    pub async fn wait(&self, id: OperationId, max: Duration) -> Result<Operation, DomainError> {
        let Ok(_permit) = self.wait_permits.try_acquire() else {
            return self.get(id).await;
        };
        let deadline = tokio::time::Instant::now() + max;
        let mut ended_here: Option<Operation> = None;
        loop {
            let waiter = self.notifier.subscribe(id);
            let notified = waiter.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let op = match ended_here.take() {
                Some(op) if !op.is_expired(self.clock.now()) => op,
                _ => self.get(id).await?,
            };
            let now = tokio::time::Instant::now();
            if op.status.is_terminal() || now >= deadline {
                return Ok(op);
            }
            let nap = self.settings.sync_poll_interval.min(deadline - now);
            tokio::select! {
                _ = &mut notified => ended_here = waiter.ended(),
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    // ----- results -----

    /// A short-lived read-only link to the result, or `None` when the store has no links
    /// of its own (then the HTTP edge streams the result itself).
    pub fn result_link(&self, op: &Operation) -> Result<Option<String>, DomainError> {
        let expiry =
            time::Duration::try_from(self.settings.sas_expiry).unwrap_or(time::Duration::MAX);
        let expires = (self.clock.now() + expiry).min(op.expiration_date_time);
        Ok(self.results.read_link(&op.id.result_name(), expires)?)
    }

    /// Opens the result of a succeeded operation for streaming.
    pub async fn open_result(&self, op: &Operation) -> Result<ResultBody, DomainError> {
        self.results
            .open(&op.id.result_name())
            .await?
            .ok_or(DomainError::NotFound)
    }

    // ----- processing -----

    /// Processes one delivery of a work message. `dequeue_count` is this delivery's number
    /// (1 on the first); on the last allowed one a transient failure fails the operation.
    pub async fn process(&self, text: &str, dequeue_count: u32) -> Outcome {
        for_accepted_work(self.process_delivery(text, dequeue_count)).await
    }

    async fn process_delivery(&self, text: &str, dequeue_count: u32) -> Outcome {
        let message = match WorkMessage::decode(text) {
            Ok(m) => m,
            Err(e) => {
                return match e.id {
                    Some(id) => {
                        let span = info_span!("process", operation_id = %id, dequeue_count);
                        async {
                            warn!(reason = %e.reason, "undecodable message; failing the operation");
                            let error = OperationError::new("InvalidMessage", e.reason.clone());
                            self.finish(id, None, Status::Failed, Some(error), dequeue_count)
                                .await
                        }
                        .instrument(span)
                        .await
                    }
                    None => {
                        warn!(reason = %e.reason, dequeue_count, "undecodable message names no operation; dropping it");
                        Outcome::Done
                    }
                };
            }
        };
        let span = info_span!(
            "process",
            operation_id = %message.id,
            dequeue_count,
            traceparent = message.traceparent.as_deref(),
        );
        self.process_message(message, dequeue_count)
            .instrument(span)
            .await
    }

    async fn process_message(&self, message: WorkMessage, dequeue_count: u32) -> Outcome {
        let id = message.id;
        // The record as submitted, rebuilt from the message, at the version the message names:
        // if it is still that version nothing has touched it, and the Running write needs no
        // read first; if anything did (a cancel, an earlier delivery), the write loses the ETag
        // race and `update` reads the record as usual. (The rebuilt expiry uses this instance's
        // retention setting, which all instances of an app share.)
        let as_submitted = message.record_version.clone().map(|version| {
            let op = Operation::new(
                id,
                message.status_url.clone(),
                message.submitted_at,
                self.retention(),
            );
            (op, version)
        });
        let (started, version) = match self
            .update(id, as_submitted, |op, now| {
                op.transition(Status::Running, None, now)
            })
            .await
        {
            Ok(Update::Changed(op, etag)) => (op, etag),
            Ok(Update::AlreadyEnded(op)) => {
                info!(status = %op.status, "already ended; nothing to do");
                return Outcome::Done;
            }
            Err(DomainError::NotFound) => {
                warn!("no such operation (expired, or never accepted); dropping the message");
                return Outcome::Done;
            }
            Err(e) => return self.transient(id, e.to_string(), dequeue_count).await,
        };
        let record = match message.payload {
            Payload::Inline(record) => record,
            Payload::Stored(key) => match self.records.get(&key).await {
                Ok(Some((doc, _))) => match serde_json::from_slice::<Value>(&doc) {
                    Ok(Value::Object(record)) => record,
                    _ => {
                        return self
                            .fail(
                                id,
                                "InvalidMessage",
                                "the stored payload is not a JSON object",
                                dequeue_count,
                            )
                            .await
                    }
                },
                Ok(None) => {
                    return self
                        .fail(
                            id,
                            "InvalidMessage",
                            "the stored payload is missing",
                            dequeue_count,
                        )
                        .await
                }
                Err(e) => return self.transient(id, e.to_string(), dequeue_count).await,
            },
        };
        if let Err(e) = submission::validate(&record) {
            return self
                .fail(id, "InvalidMessage", &e.detail, dequeue_count)
                .await;
        }
        info!("working");
        let input = WorkInput {
            operation_id: id,
            record,
            submitted_at: message.submitted_at,
            status_url: started.status_url.clone(),
            now: self.clock.now(),
        };
        match self.work.perform(input).await {
            Ok(output) => {
                let content_type = output.content_type;
                match self
                    .results
                    .put_if_absent(&id.result_name(), output.body, &content_type)
                    .await
                {
                    Ok(_) => {
                        let known = Some((started, version));
                        self.finish(id, known, Status::Succeeded, None, dequeue_count)
                            .await
                    }
                    Err(e) => self.transient(id, e.to_string(), dequeue_count).await,
                }
            }
            Err(WorkError::Permanent(m)) => self.fail(id, "WorkFailed", &m, dequeue_count).await,
            Err(WorkError::Transient(m)) => self.transient(id, m, dequeue_count).await,
        }
    }

    async fn fail(
        &self,
        id: OperationId,
        code: &str,
        message: &str,
        dequeue_count: u32,
    ) -> Outcome {
        warn!(code, message, "operation failed");
        let error = OperationError::new(code, message);
        self.finish(id, None, Status::Failed, Some(error), dequeue_count)
            .await
    }

    /// A failure that may pass: retried. On the last allowed attempt the operation is failed
    /// for good first, and the message still answers `Retry`, so it goes to the poison queue as
    /// the platform does with any message it gives up on (the poison function then finds the
    /// operation ended and keeps a copy of the message).
    async fn transient(&self, id: OperationId, reason: String, dequeue_count: u32) -> Outcome {
        if dequeue_count >= self.settings.max_dequeue_count {
            let message = format!("gave up after {dequeue_count} attempts; last error: {reason}");
            self.fail(id, "RetriesExhausted", &message, dequeue_count)
                .await;
            return Outcome::Retry;
        }
        warn!(%reason, "transient failure; the message will be retried");
        Outcome::Retry
    }

    /// Moves the operation to a terminal state (a no-op if it already ended). `known`: the
    /// state this process last wrote, saving a read (see [`Service::update`]).
    async fn finish(
        &self,
        id: OperationId,
        known: Option<(Operation, ETag)>,
        to: Status,
        error: Option<OperationError>,
        dequeue_count: u32,
    ) -> Outcome {
        match self
            .update(id, known, |op, now| op.transition(to, error.clone(), now))
            .await
        {
            Ok(Update::Changed(..)) => {
                info!(status = %to, "operation ended");
                Outcome::Done
            }
            Ok(Update::AlreadyEnded(op)) => {
                info!(status = %op.status, "operation had already ended");
                if op.status == Status::Canceled && to == Status::Succeeded {
                    let _ = self.results.delete(&id.result_name()).await;
                }
                Outcome::Done
            }
            Err(DomainError::NotFound) => Outcome::Done,
            Err(e) => {
                warn!(error = %e, dequeue_count, "could not record the outcome; the message will be retried");
                Outcome::Retry
            }
        }
    }

    // ----- retention -----

    /// Deletes operations, results, payloads, idempotency keys and the copies of poison
    /// messages past their retention.
    /// On Azure a storage lifecycle rule does this; locally the standalone service calls it.
    /// Only documents not written for a whole retention period are read: an operation expires
    /// a retention period after it was created, so a younger document cannot have expired, and
    /// a sweep over many live operations costs one listing instead of a read each. (Should
    /// `RETENTION_SECONDS` grow, documents written under the shorter one are removed a little
    /// later than they expire; reads answer 404 from their expiry on regardless.)
    pub async fn purge_expired(&self) -> Result<usize, DomainError> {
        let now = self.clock.now();
        let cutoff = now - self.retention();
        let mut purged = 0;
        for key in self
            .records
            .list_written_before("operations/", cutoff)
            .await?
        {
            let Some((doc, _)) = self.records.get(&key).await? else {
                continue;
            };
            let Ok(op) = from_json::<Operation>(&doc) else {
                warn!(key, "unreadable operation record left in place");
                continue;
            };
            if op.is_expired(now) {
                self.results.delete(&op.id.result_name()).await?;
                self.records.delete(&op.id.payload_key()).await?;
                self.records.delete(&key).await?;
                purged += 1;
            }
        }
        for key in self
            .records
            .list_written_before("idempotency/", cutoff)
            .await?
        {
            if let Some((doc, _)) = self.records.get(&key).await? {
                match from_json::<IdempotencyEntry>(&doc) {
                    Ok(e) if e.expiration_date_time > now => {}
                    _ => self.records.delete(&key).await?,
                }
            }
        }
        for key in self
            .records
            .list_written_before(poison::PREFIX, cutoff)
            .await?
        {
            if let Some((doc, _)) = self.records.get(&key).await? {
                match from_json::<PoisonCopy>(&doc) {
                    Ok(c) if c.expiration_date_time > now => {}
                    _ => self.records.delete(&key).await?,
                }
            }
        }
        Ok(purged)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn from_json<T: for<'de> Deserialize<'de>>(doc: &[u8]) -> Result<T, DomainError> {
    serde_json::from_slice(doc)
        .map_err(|e| DomainError::Internal(format!("unreadable record in storage: {e}")))
}
