//! The typed repository of what the service keeps in the record store: operation records
//! (changed only by compare-and-swap on their version), claim-checked payloads, idempotency
//! entries, the copies of poison messages and the state of completion callbacks. It alone
//! knows the key layout and the JSON. An operation's end is announced on the callbacks queue
//! before it is written, so no ended operation can miss its callback.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use tokio::sync::Notify;

use super::callback::message::CallbackMessage;
use super::callback::record::CallbackRecord;
use super::error::DomainError;
use super::notifier::Notifier;
use super::operation::{AlreadyEnded, Operation, OperationError, OperationId, Status};
use super::ports::{Clock, ETag, RecordStore, StoreError, WorkQueue};

/// How many times a compare-and-swap is retried when it keeps losing races.
const CAS_ATTEMPTS: usize = 8;

const IDEMPOTENCY_PREFIX: &str = "idempotency/";
const POISON_PREFIX: &str = "poison/";
const OPERATIONS_PREFIX: &str = "operations/";
const CALLBACKS_PREFIX: &str = "callbacks/";

impl OperationId {
    /// The key of this operation's record in the record store.
    pub fn record_key(&self) -> String {
        format!("{OPERATIONS_PREFIX}{self}")
    }

    /// The key of a claim-checked request payload in the record store.
    pub fn payload_key(&self) -> String {
        format!("payloads/{self}")
    }

    /// The key of the state of this operation's completion callback.
    pub fn callback_key(&self) -> String {
        format!("{CALLBACKS_PREFIX}{self}")
    }

    /// The name of the result in the result store (`data/{id}.blobdata` on Azure Storage).
    pub fn result_name(&self) -> String {
        format!("{self}.blobdata")
    }
}

/// The record behind an `Idempotency-Key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyEntry {
    pub operation_id: OperationId,
    pub body_hash: String,
    /// Set once the message is durably queued; until then a replay queues it itself.
    pub enqueued: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
}

/// The copy of a poison message kept in storage (`operations/poison/<hash>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoisonCopy {
    /// The operation the message was for, when it names one.
    pub operation_id: Option<OperationId>,
    /// The poison queue message's id, as the host reported it (for correlation only).
    pub message_id: String,
    /// The message text as it was queued.
    pub text: String,
    /// The operation's status once the poison function was done with it, when there is one.
    pub status: Option<Status>,
    /// Why the operation failed, or why the message could not be tied to one.
    pub last_error: OperationError,
    #[serde(with = "time::serde::rfc3339")]
    pub received_date_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
}

/// The outcome of a compare-and-swap update of an operation.
pub enum Update {
    /// Written: the operation as stored now, and its new version.
    Changed(Operation, ETag),
    AlreadyEnded(Operation),
}

/// What a stored claim-checked payload turned out to be.
pub enum Payload {
    Record(Map<String, Value>),
    NotAnObject,
    Missing,
}

/// The kinds of document the retention sweep looks at.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Operation,
    Idempotency,
    PoisonCopy,
    Callback,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Operation => OPERATIONS_PREFIX,
            Kind::Idempotency => IDEMPOTENCY_PREFIX,
            Kind::PoisonCopy => POISON_PREFIX,
            Kind::Callback => CALLBACKS_PREFIX,
        }
    }
}

pub struct Operations {
    records: Arc<dyn RecordStore>,
    clock: Arc<dyn Clock>,
    /// Told of every terminal state written here, so waiters in this process wake at once.
    notifier: Arc<Notifier>,
    /// Where an operation with a callback announces its end, and who to wake when it does.
    announce: Option<(Arc<dyn WorkQueue>, Arc<Notify>)>,
}

impl Operations {
    pub fn new(
        records: Arc<dyn RecordStore>,
        clock: Arc<dyn Clock>,
        notifier: Arc<Notifier>,
    ) -> Self {
        Self {
            records,
            clock,
            notifier,
            announce: None,
        }
    }

    /// Announces the end of every operation that has a callback on `queue` (before the end is
    /// written), waking `queued` each time.
    pub fn announcing_to(mut self, queue: Arc<dyn WorkQueue>, queued: Arc<Notify>) -> Self {
        self.announce = Some((queue, queued));
        self
    }

    /// Queues the first delivery of `op`'s end. Queued before the end is written: a crash in
    /// between leaves a message whose operation has not ended, which delivery drops, never an
    /// ended operation without its message.
    async fn announce_end(&self, op: &Operation) -> Result<(), DomainError> {
        let Some((queue, queued)) = &self.announce else {
            tracing::warn!(operation_id = %op.id, "no callbacks queue; the callback is not sent");
            return Ok(());
        };
        let message = CallbackMessage::first(op.id, op.status, self.clock.now());
        let text = message
            .encode()
            .map_err(|e| DomainError::Internal(format!("cannot encode a callback message: {e}")))?;
        queue.send(&text).await?;
        queued.notify_one();
        Ok(())
    }

    /// Writes a new operation record; `AlreadyExists` if one is there.
    pub async fn create(&self, op: &Operation) -> Result<ETag, StoreError> {
        self.records.insert(&op.id.record_key(), to_json(op)?).await
    }

    /// The operation and its version, expired or not.
    pub async fn load(&self, id: OperationId) -> Result<Option<(Operation, ETag)>, DomainError> {
        match self.records.get(&id.record_key()).await? {
            Some((doc, etag)) => Ok(Some((from_json(&doc)?, etag))),
            None => Ok(None),
        }
    }

    /// Whether the operation's record is still at `version` (nothing changed it since), without
    /// reading it.
    pub async fn is_at(&self, id: OperationId, version: &str) -> Result<bool, DomainError> {
        match self.records.is_at(&id.record_key(), version).await {
            Ok(at) => Ok(at),
            Err(StoreError::NotFound) => Err(DomainError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies `change` with compare-and-swap, re-reading on a lost race. `known` is the
    /// operation and version this process last wrote, if any: the first attempt starts from it
    /// instead of reading storage (a stale one only costs a lost race and a re-read).
    pub async fn update(
        &self,
        id: OperationId,
        mut known: Option<(Operation, ETag)>,
        change: impl Fn(&mut Operation, OffsetDateTime) -> Result<(), AlreadyEnded>,
    ) -> Result<Update, DomainError> {
        let mut announced = false;
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
            // `change` ends only operations that had not ended, and always the same way: one
            // announcement covers every retry of a lost race.
            if op.status.is_terminal() && op.callback.is_some() && !announced {
                self.announce_end(&op).await?;
                announced = true;
            }
            match self
                .records
                .replace(&id.record_key(), to_json(&op)?, &etag)
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

    /// Removes an operation's record, payload and callback state.
    pub async fn remove(&self, id: OperationId) -> Result<(), StoreError> {
        self.records.delete(&id.payload_key()).await?;
        self.records.delete(&id.callback_key()).await?;
        self.records.delete(&id.record_key()).await
    }

    /// The state of an operation's callback and its version, once a delivery was tried.
    pub async fn load_callback(
        &self,
        id: OperationId,
    ) -> Result<Option<(CallbackRecord, ETag)>, DomainError> {
        match self.records.get(&id.callback_key()).await? {
            Some((doc, etag)) => Ok(Some((from_json(&doc)?, etag))),
            None => Ok(None),
        }
    }

    /// Writes a callback's state: created when `etag` is `None`, else replaced at that version
    /// (`AlreadyExists` or `PreconditionFailed` when another delivery got there first).
    pub async fn save_callback(
        &self,
        record: &CallbackRecord,
        etag: Option<&str>,
    ) -> Result<ETag, StoreError> {
        let key = record.operation_id.callback_key();
        let doc = to_json(record)?;
        match etag {
            None => self.records.insert(&key, doc).await,
            Some(etag) => self.records.replace(&key, doc, etag).await,
        }
    }

    /// Stores a record too large for a queue message (kept if already there).
    pub async fn store_payload(
        &self,
        id: OperationId,
        record: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        let doc = to_json(&Value::Object(record.clone()))?;
        match self.records.insert(&id.payload_key(), doc).await {
            Ok(_) | Err(StoreError::AlreadyExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A claim-checked payload, as stored.
    pub async fn load_payload(&self, id: OperationId) -> Result<Payload, StoreError> {
        Ok(match self.records.get(&id.payload_key()).await? {
            None => Payload::Missing,
            Some((doc, _)) => match serde_json::from_slice::<Value>(&doc) {
                Ok(Value::Object(record)) => Payload::Record(record),
                _ => Payload::NotAnObject,
            },
        })
    }

    /// The entry for an idempotency key: `fresh`, written now, or the one already there.
    pub async fn claim_idempotency_key(
        &self,
        key: &str,
        fresh: &IdempotencyEntry,
    ) -> Result<Option<(IdempotencyEntry, ETag)>, DomainError> {
        let key = idempotency_key(key);
        match self.records.insert(&key, to_json(fresh)?).await {
            Ok(etag) => Ok(Some((fresh.clone(), etag))),
            Err(StoreError::AlreadyExists) => match self.records.get(&key).await? {
                Some((doc, etag)) => Ok(Some((from_json(&doc)?, etag))),
                // Deleted in between (expired): the caller tries again.
                None => Ok(None),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an idempotency entry at the version read.
    pub async fn replace_idempotency_entry(
        &self,
        key: &str,
        entry: &IdempotencyEntry,
        etag: &str,
    ) -> Result<ETag, StoreError> {
        let doc = to_json(entry)?;
        self.records.replace(&idempotency_key(key), doc, etag).await
    }

    /// Keeps a copy of a poison message, once per message text.
    pub async fn keep_poison_copy(&self, copy: &PoisonCopy) -> Result<String, StoreError> {
        let key = format!("{POISON_PREFIX}{}", sha256_hex(copy.text.as_bytes()));
        let doc = to_json(copy)?;
        match self.records.insert(&key, doc).await {
            Ok(_) | Err(StoreError::AlreadyExists) => Ok(key),
            Err(e) => Err(e),
        }
    }

    /// Every poison message copy kept so far.
    pub async fn poison_copies(&self) -> Result<Vec<PoisonCopy>, DomainError> {
        let far_future = self.clock.now() + time::Duration::days(365 * 100);
        let mut copies = Vec::new();
        for key in self
            .records
            .list_written_before(POISON_PREFIX, far_future)
            .await?
        {
            if let Some((doc, _)) = self.records.get(&key).await? {
                copies.push(from_json(&doc)?);
            }
        }
        Ok(copies)
    }

    /// The keys of the documents of `kind` last written before `cutoff`.
    pub async fn written_before(
        &self,
        kind: Kind,
        cutoff: OffsetDateTime,
    ) -> Result<Vec<String>, DomainError> {
        Ok(self
            .records
            .list_written_before(kind.prefix(), cutoff)
            .await?)
    }

    /// When the document at `key` (of `kind`) expires; `None` when it is gone.
    pub async fn expiry_of(&self, kind: Kind, key: &str) -> Result<Option<Expiry>, DomainError> {
        let Some((doc, _)) = self.records.get(key).await? else {
            return Ok(None);
        };
        let parsed = match kind {
            Kind::Operation => {
                from_json::<Operation>(&doc).map(|o| (Some(o.id), o.expiration_date_time))
            }
            Kind::Idempotency => {
                from_json::<IdempotencyEntry>(&doc).map(|e| (None, e.expiration_date_time))
            }
            Kind::PoisonCopy => {
                from_json::<PoisonCopy>(&doc).map(|c| (None, c.expiration_date_time))
            }
            Kind::Callback => {
                from_json::<CallbackRecord>(&doc).map(|c| (None, c.expiration_date_time))
            }
        };
        Ok(Some(match parsed {
            Ok((operation, at)) => Expiry::At { operation, at },
            Err(_) => Expiry::Unreadable,
        }))
    }

    /// Deletes the document at `key`.
    pub async fn delete_key(&self, key: &str) -> Result<(), StoreError> {
        self.records.delete(key).await
    }
}

/// When a stored document expires.
pub enum Expiry {
    /// At `at`; `operation` names the operation of an operation record.
    At {
        operation: Option<OperationId>,
        at: OffsetDateTime,
    },
    Unreadable,
}

fn idempotency_key(key: &str) -> String {
    format!("{IDEMPOTENCY_PREFIX}{}", sha256_hex(key.as_bytes()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A document as stored. Serializing fails only for a value JSON cannot hold (a time past the
/// year 9999): an error then, never an empty document written to storage.
fn to_json<T: Serialize>(value: &T) -> Result<Bytes, StoreError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| StoreError::Fatal(format!("cannot serialize a record: {e}")))
}

fn from_json<T: for<'de> Deserialize<'de>>(doc: &[u8]) -> Result<T, DomainError> {
    serde_json::from_slice(doc)
        .map_err(|e| DomainError::Internal(format!("unreadable record in storage: {e}")))
}

#[cfg(test)]
mod tests;
