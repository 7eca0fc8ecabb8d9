//! In-memory adapters: the zero-setup default (`cargo run` with no storage configured) and the
//! fast half of the storage contract tests. Same semantics as Azure Storage: create-only and
//! ETag-conditional writes, write-once results, and a queue with visibility timeouts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::domain::ports::{
    Clock, Delivery, ETag, PutOutcome, Receipt, RecordStore, ResultBody, ResultStore, Storage,
    StoreError, Stores, WorkQueue,
};

/// Fresh in-memory stores, one set for both sides (nothing here needs holding back).
pub fn storage() -> Storage {
    Storage::same(Stores {
        records: Arc::new(MemoryRecordStore::new()),
        results: Arc::new(MemoryResultStore::new()),
        queue: Arc::new(MemoryWorkQueue::new()),
        callbacks: Arc::new(MemoryWorkQueue::new()),
    })
}

/// Versions for ETags, unique across the process so a deleted and re-created item never
/// reuses an old ETag.
static VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    VERSION.fetch_add(1, Ordering::Relaxed)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
pub struct MemoryRecordStore {
    /// Document, version, and when it was last written.
    docs: Mutex<HashMap<String, (Bytes, ETag, OffsetDateTime)>>,
    clock: Option<Arc<dyn Clock>>,
}

impl MemoryRecordStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stamps writes with `clock` instead of the system clock (for tests that move time).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            docs: Mutex::default(),
            clock: Some(clock),
        }
    }

    fn now(&self) -> OffsetDateTime {
        match &self.clock {
            Some(c) => c.now(),
            None => OffsetDateTime::now_utc(),
        }
    }
}

impl std::fmt::Debug for MemoryRecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRecordStore")
            .field("docs", &lock(&self.docs).len())
            .finish()
    }
}

#[async_trait]
impl RecordStore for MemoryRecordStore {
    async fn insert(&self, key: &str, doc: Bytes) -> Result<ETag, StoreError> {
        let mut docs = lock(&self.docs);
        if docs.contains_key(key) {
            return Err(StoreError::AlreadyExists);
        }
        let etag = next_version().to_string();
        docs.insert(key.to_string(), (doc, etag.clone(), self.now()));
        Ok(etag)
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, ETag)>, StoreError> {
        Ok(lock(&self.docs)
            .get(key)
            .map(|(doc, etag, _)| (doc.clone(), etag.clone())))
    }

    async fn is_at(&self, key: &str, etag: &str) -> Result<bool, StoreError> {
        match lock(&self.docs).get(key) {
            None => Err(StoreError::NotFound),
            Some((_, current, _)) => Ok(current == etag),
        }
    }

    async fn replace(&self, key: &str, doc: Bytes, etag: &str) -> Result<ETag, StoreError> {
        let mut docs = lock(&self.docs);
        match docs.get_mut(key) {
            None => Err(StoreError::NotFound),
            Some((_, current, _)) if current != etag => Err(StoreError::PreconditionFailed),
            Some(entry) => {
                let etag = next_version().to_string();
                *entry = (doc, etag.clone(), self.now());
                Ok(etag)
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        lock(&self.docs).remove(key);
        Ok(())
    }

    async fn list_written_before(
        &self,
        prefix: &str,
        cutoff: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let mut keys: Vec<String> = lock(&self.docs)
            .iter()
            .filter(|(k, (_, _, written))| k.starts_with(prefix) && *written < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        Ok(keys)
    }
}

/// Results held in memory, streamed out in slices of the stored buffer (no copies).
#[derive(Debug, Default)]
pub struct MemoryResultStore {
    blobs: Mutex<HashMap<String, (Bytes, String)>>,
}

impl MemoryResultStore {
    pub fn new() -> Self {
        Self::default()
    }
}

const CHUNK: usize = 64 * 1024;

#[async_trait]
impl ResultStore for MemoryResultStore {
    async fn put_if_absent(
        &self,
        name: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<PutOutcome, StoreError> {
        let mut blobs = lock(&self.blobs);
        if blobs.contains_key(name) {
            return Ok(PutOutcome::AlreadyExisted);
        }
        blobs.insert(name.to_string(), (body, content_type.to_string()));
        Ok(PutOutcome::Created)
    }

    async fn open(&self, name: &str) -> Result<Option<ResultBody>, StoreError> {
        let Some((body, content_type)) = lock(&self.blobs).get(name).cloned() else {
            return Ok(None);
        };
        let len = body.len();
        let chunks =
            stream::iter((0..len).step_by(CHUNK).map(move |start| {
                Ok::<_, StoreError>(body.slice(start..(start + CHUNK).min(len)))
            }));
        Ok(Some(ResultBody {
            content_type,
            content_length: len as u64,
            chunks: chunks.boxed(),
        }))
    }

    async fn read_link(
        &self,
        _name: &str,
        _expires: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        lock(&self.blobs).remove(name);
        Ok(())
    }
}

#[derive(Debug)]
struct QueuedMessage {
    id: u64,
    text: String,
    dequeue_count: u32,
    visible_at: Instant,
    pop_receipt: u64,
}

impl QueuedMessage {
    /// Whether `receipt` is this message's current one (a later delivery or update spends it).
    fn held_by(&self, receipt: &Receipt) -> bool {
        self.id.to_string() == receipt.message_id
            && self.pop_receipt.to_string() == receipt.pop_receipt
    }
}

#[derive(Debug, Default)]
struct QueueState {
    messages: Vec<QueuedMessage>,
}

/// A queue with the semantics of an Azure Storage queue (at-least-once, visibility timeout,
/// pop receipts, dequeue count) and a poison queue beside it.
#[derive(Debug)]
pub struct MemoryWorkQueue {
    state: Mutex<QueueState>,
    poison: Option<Box<MemoryWorkQueue>>,
}

impl Default for MemoryWorkQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryWorkQueue {
    /// A work queue with its poison queue.
    pub fn new() -> Self {
        Self {
            state: Mutex::default(),
            poison: Some(Box::new(Self::without_poison())),
        }
    }

    fn without_poison() -> Self {
        Self {
            state: Mutex::default(),
            poison: None,
        }
    }

    /// Messages in the queue, visible or not.
    pub fn len(&self) -> usize {
        lock(&self.state).messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The texts in the poison queue, visible or not.
    pub fn poison_messages(&self) -> Vec<String> {
        self.poison
            .as_ref()
            .map(|p| {
                lock(&p.state)
                    .messages
                    .iter()
                    .map(|m| m.text.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[async_trait]
impl WorkQueue for MemoryWorkQueue {
    async fn send(&self, text: &str) -> Result<(), StoreError> {
        self.send_delayed(text, Duration::ZERO).await
    }

    async fn send_delayed(&self, text: &str, delay: Duration) -> Result<(), StoreError> {
        lock(&self.state).messages.push(QueuedMessage {
            id: next_version(),
            text: text.to_string(),
            dequeue_count: 0,
            visible_at: Instant::now() + delay,
            pop_receipt: 0,
        });
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let mut out = Vec::new();
        for m in state.messages.iter_mut() {
            if out.len() >= max {
                break;
            }
            if m.visible_at > now {
                continue;
            }
            m.dequeue_count += 1;
            m.pop_receipt = next_version();
            m.visible_at = now + visibility;
            out.push(Delivery {
                text: m.text.clone(),
                dequeue_count: m.dequeue_count,
                receipt: Receipt {
                    message_id: m.id.to_string(),
                    pop_receipt: m.pop_receipt.to_string(),
                },
            });
        }
        Ok(out)
    }

    async fn extend(
        &self,
        receipt: &Receipt,
        _text: &str,
        visibility: Duration,
    ) -> Result<Receipt, StoreError> {
        let mut state = lock(&self.state);
        let m = state
            .messages
            .iter_mut()
            .find(|m| m.held_by(receipt))
            .ok_or(StoreError::NotFound)?;
        m.pop_receipt = next_version();
        m.visible_at = Instant::now() + visibility;
        Ok(Receipt {
            message_id: receipt.message_id.clone(),
            pop_receipt: m.pop_receipt.to_string(),
        })
    }

    async fn delete(&self, receipt: &Receipt) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        let found = state.messages.iter().position(|m| m.held_by(receipt));
        match found {
            Some(i) => {
                state.messages.remove(i);
                Ok(())
            }
            // As on Azure: a stale pop receipt (the message was received again since) is refused.
            None => Err(StoreError::NotFound),
        }
    }

    async fn dead_letter(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let poison = self
            .poison
            .as_ref()
            .ok_or_else(|| StoreError::Fatal("a poison queue has no poison queue".into()))?;
        poison.send(&delivery.text).await?;
        self.delete(&delivery.receipt).await
    }

    fn poison(&self) -> Option<&dyn WorkQueue> {
        self.poison.as_deref().map(|p| p as &dyn WorkQueue)
    }
}
