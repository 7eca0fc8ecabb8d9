//! The domain's ports: the small traits it needs from the outside world (a record store,
//! a result store, a work queue, a webhook sender, a clock). Adapters in `crate::adapters`
//! implement them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use time::OffsetDateTime;

use super::load::LoadLimit;

/// An opaque version tag for optimistic concurrency (an HTTP ETag on Azure Storage).
pub type ETag = String;

/// What can go wrong talking to storage, in the terms the domain decides on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// A create-only write found the item already there.
    #[error("already exists")]
    AlreadyExists,
    /// A conditional write lost a race: the item changed since it was read.
    #[error("changed since it was read")]
    PreconditionFailed,
    /// The item is not there.
    #[error("not found")]
    NotFound,
    /// Storage could not be reached or answered with a transient fault; worth retrying later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Storage refused the request for a reason retrying will not fix.
    #[error("storage error: {0}")]
    Fatal(String),
}

/// Small JSON documents keyed by name, with create-only and compare-and-swap writes.
/// Keys look like `operations/<uuid>` or `idempotency/<hex>`: ASCII, `/`-separated.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// Stores `doc` under `key` only if nothing is there yet (`AlreadyExists` otherwise).
    async fn insert(&self, key: &str, doc: Bytes) -> Result<ETag, StoreError>;
    /// The document and its current version, or `None`.
    async fn get(&self, key: &str) -> Result<Option<(Bytes, ETag)>, StoreError>;
    /// Whether the document is still at version `etag`, without reading it (a `HEAD` with
    /// `If-Match` on Azure Storage); `NotFound` if it is gone.
    async fn is_at(&self, key: &str, etag: &str) -> Result<bool, StoreError>;
    /// Replaces the document only if its version is still `etag`
    /// (`PreconditionFailed` if it changed, `NotFound` if it is gone).
    async fn replace(&self, key: &str, doc: Bytes, etag: &str) -> Result<ETag, StoreError>;
    /// Removes the document; removing a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// The keys that start with `prefix` whose document was last written before `cutoff`
    /// (the local retention sweep reads only documents old enough to have expired).
    async fn list_written_before(
        &self,
        prefix: &str,
        cutoff: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError>;
}

/// A stored result, opened for streaming.
pub struct ResultBody {
    pub content_type: String,
    pub content_length: u64,
    pub chunks: BoxStream<'static, Result<Bytes, StoreError>>,
}

/// Whether a write-once put created the result or found one already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    AlreadyExisted,
}

/// The results of operations (`data/<id>.blobdata` on Azure Storage), written once.
#[async_trait]
pub trait ResultStore: Send + Sync + 'static {
    /// Writes the result unless one is already there; never overwrites.
    async fn put_if_absent(
        &self,
        name: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<PutOutcome, StoreError>;
    /// Opens the result for streaming in bounded memory, or `None` when there is none.
    async fn open(&self, name: &str) -> Result<Option<ResultBody>, StoreError>;
    /// A URL that grants read access to this one result until `expires`, or `None` when the
    /// store has no URL of its own (in memory): then the service streams the result itself.
    /// Signing may need a key from storage first (a user-delegation key), hence async.
    async fn read_link(
        &self,
        name: &str,
        expires: OffsetDateTime,
    ) -> Result<Option<String>, StoreError>;
    /// Removes the result; removing a missing one is not an error.
    async fn delete(&self, name: &str) -> Result<(), StoreError>;
}

/// Identifies one delivery of a message so it can be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    pub pop_receipt: String,
}

/// One delivery of a queue message.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message text as it was sent (any transport encoding already removed).
    pub text: String,
    /// How many times this message has been delivered, this time included (1 on first delivery).
    pub dequeue_count: u32,
    pub receipt: Receipt,
}

/// The work queue, with real queue semantics: a received message is hidden for the
/// visibility timeout and comes back unless it is deleted.
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    /// Enqueues a message. On Azure Storage the text is base64-encoded on the wire, as the
    /// Functions queue trigger expects by default.
    async fn send(&self, text: &str) -> Result<(), StoreError>;
    /// Enqueues a message that stays invisible for `delay` first (a scheduled retry).
    async fn send_delayed(&self, text: &str, delay: Duration) -> Result<(), StoreError>;
    /// Receives up to `max` visible messages and hides them for `visibility`.
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError>;
    /// Keeps a delivered message hidden for `visibility` from now (Update Message), so a
    /// message still being worked on is not delivered again. Answers the new receipt; the old
    /// one is spent. `NotFound` when the receipt is stale (the message was received again).
    async fn extend(
        &self,
        receipt: &Receipt,
        text: &str,
        visibility: Duration,
    ) -> Result<Receipt, StoreError>;
    /// Deletes a delivered message (after its work is safely recorded).
    async fn delete(&self, receipt: &Receipt) -> Result<(), StoreError>;
    /// Moves a delivered message to the poison queue (`<queue>-poison`), as the Functions host does.
    async fn dead_letter(&self, delivery: &Delivery) -> Result<(), StoreError>;
    /// The poison queue beside this queue, if it has one (a poison queue has none of its own).
    fn poison(&self) -> Option<&dyn WorkQueue> {
        None
    }
}

/// Handles on the stores.
#[derive(Clone)]
pub struct Stores {
    pub records: Arc<dyn RecordStore>,
    pub results: Arc<dyn ResultStore>,
    pub queue: Arc<dyn WorkQueue>,
    /// The completion callbacks' delivery queue (`<work queue>-callbacks`).
    pub callbacks: Arc<dyn WorkQueue>,
}

/// The stores twice over: `requests`, whose calls an adapter may hold back while storage is
/// slow (so a burst of requests does not pile calls up in storage), and `work`, the same stores
/// for work already accepted, which nothing holds back (its calls are bounded by the worker's
/// concurrency or the host's batch size, and a promise made with a `202` must never wait behind
/// status polls). In memory the two are the same.
/// `work_load` is the limit the work side's answers move (a slow or throttling storage cuts
/// it): the standalone consumers take no more messages than it allows.
#[derive(Clone)]
pub struct Storage {
    pub requests: Stores,
    pub work: Stores,
    pub work_load: Arc<LoadLimit>,
}

impl Storage {
    /// One set of handles for both uses, with a limit nothing moves.
    pub fn same(stores: Stores) -> Self {
        Self {
            requests: stores.clone(),
            work: stores,
            work_load: Arc::new(LoadLimit::unlimited()),
        }
    }
}

/// One webhook delivery: a POST of `body` with `headers` to `url`.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// How a webhook delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAnswer {
    /// The receiver answered with `status` (redirects are not followed), and `Retry-After`
    /// when it sent one that could be read.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: a timeout, a refused or dropped connection, a name that does not resolve.
    Unreachable(String),
    /// The receiver's address is one the service must not call (private, loopback, ...).
    Refused(String),
}

/// Sends completion callbacks, connecting only to addresses the callback policy allows.
#[async_trait]
pub trait Webhooks: Send + Sync + 'static {
    /// Resolves the URL's host and checks every address (at submission). `Err` says why not.
    async fn check(&self, url: &str) -> Result<(), String>;
    /// Delivers one request, resolving and checking the host again and connecting to an
    /// address that passed the check.
    async fn post(&self, request: WebhookRequest) -> WebhookAnswer;
}

/// The wall clock, injectable so time-dependent rules are testable without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
