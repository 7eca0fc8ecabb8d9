//! Azure Storage adapters (the community `azure_storage_*` 0.21 crates): operation records as
//! JSON blobs with ETags, results as write-once blobs with SAS read links, and the work queue
//! with base64 message text. Every call is bounded by a timeout and a short retry policy, so an
//! outage surfaces as `StoreError::Unavailable` in seconds, not minutes; request-path calls also
//! wait for a slot under an adaptive in-flight limit (`transport`), so slow storage gets fewer
//! calls, not a pile of abandoned ones.

mod blobs;
mod connection;
mod queue;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use azure_core::error::ErrorKind;
use azure_core::{ExponentialRetryOptions, RetryOptions, StatusCode, TransportOptions};
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::ClientBuilder;
use azure_storage_queues::QueueServiceClientBuilder;

pub use connection::{ConnectionStringError, StorageConnection, EMULATOR_ACCOUNT, EMULATOR_KEY};

use crate::domain::ports::{RecordStore, ResultStore, StoreError, WorkQueue};

/// What the Azure adapters need to know.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub connection: StorageConnection,
    /// The work queue; the poison queue is `<queue_name>-poison`.
    pub queue_name: String,
    /// Results, as `<uuid>.blobdata`.
    pub results_container: String,
    /// Operation records (`operations/<uuid>.json`), idempotency keys and claim-checked payloads.
    pub records_container: String,
    /// The limit on each storage call.
    pub request_timeout: Duration,
    /// Retries of a failed call (with a short exponential backoff).
    pub max_retries: u32,
    /// The most calls in flight to storage at once; the limit adapts below it to storage's
    /// latency, and calls past it wait (at most `request_timeout`) for a slot.
    pub max_concurrent_calls: usize,
}

/// The three adapters, connected.
pub struct AzureStorage {
    pub records: Arc<dyn RecordStore>,
    pub results: Arc<dyn ResultStore>,
    pub queue: Arc<dyn WorkQueue>,
}

/// The Azure adapters, built but not yet checked against storage.
pub struct Unprepared {
    records: blobs::BlobRecordStore,
    results: blobs::BlobResultStore,
    queue: queue::StorageQueue,
}

impl AzureStorage {
    /// Builds the clients and creates the containers and both queues if they are missing.
    pub async fn connect(settings: &AzureSettings) -> Result<AzureStorage, StoreError> {
        let unprepared = Self::build(settings)?;
        unprepared.prepare().await?;
        Ok(unprepared.ready())
    }

    /// Builds the clients, without a call to storage.
    pub fn build(settings: &AzureSettings) -> Result<Unprepared, StoreError> {
        let conn = &settings.connection;
        let credentials =
            StorageCredentials::access_key(conn.account().to_string(), conn.key().to_string());
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|e| StoreError::Fatal(format!("cannot build an HTTP client: {e}")))?;
        let transport = TransportOptions::new(Arc::new(transport::LimitedTransport::new(
            http,
            settings.max_concurrent_calls,
            settings.request_timeout,
        )));
        let retry = RetryOptions::exponential(
            ExponentialRetryOptions::default()
                .max_retries(settings.max_retries)
                .initial_delay(Duration::from_millis(100))
                .max_delay(Duration::from_secs(1))
                .max_total_elapsed(settings.request_timeout * (settings.max_retries + 1)),
        );
        let blobs = ClientBuilder::with_location(
            CloudLocation::Custom {
                account: conn.account().to_string(),
                uri: conn.blob_endpoint().to_string(),
            },
            credentials.clone(),
        )
        .retry(retry.clone())
        .transport(transport.clone())
        .blob_service_client();
        let queues = QueueServiceClientBuilder::with_location(
            CloudLocation::Custom {
                account: conn.account().to_string(),
                uri: conn.queue_endpoint().to_string(),
            },
            credentials,
        )
        .retry(retry)
        .transport(transport)
        .build();

        let records =
            blobs::BlobRecordStore::new(blobs.container_client(&settings.records_container));
        let results =
            blobs::BlobResultStore::new(blobs.container_client(&settings.results_container), conn);
        let queue = queue::StorageQueue::new(
            queues.queue_client(&settings.queue_name),
            queues.queue_client(format!("{}-poison", settings.queue_name)),
        );
        Ok(Unprepared {
            records,
            results,
            queue,
        })
    }
}

impl Unprepared {
    /// Creates the containers and both queues if they are missing (and so proves that the
    /// account answers and the credentials are good).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.records.create_container().await?;
        self.results.create_container().await?;
        self.queue.create_queues().await
    }

    /// The adapters, to be used whether or not `prepare` finished: each heals a container or
    /// queue it finds missing, so storage that was unreachable at start-up is set up on first use.
    pub fn ready(self) -> AzureStorage {
        AzureStorage {
            records: Arc::new(self.records),
            results: Arc::new(self.results),
            queue: Arc::new(self.queue),
        }
    }
}

/// The HTTP status of a failed storage call, if it got that far.
fn status_of(e: &azure_core::Error) -> Option<StatusCode> {
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(*status),
        _ => None,
    }
}

/// Whether a failed call found its container or queue missing, rather than the blob.
fn is_missing_parent(e: &azure_core::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::HttpResponse { error_code: Some(code), .. }
            if code == "ContainerNotFound" || code == "QueueNotFound"
    )
}

/// Maps a storage error to the domain's terms. The message names the operation and the
/// storage error code, never a key or signature.
fn store_error(what: &str, e: &azure_core::Error) -> StoreError {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            let code = error_code.as_deref().unwrap_or("");
            let msg = format!("{what}: HTTP {} {code}", u16::from(*status));
            match u16::from(*status) {
                // The container or queue itself is gone (deleted by hand, or a storage reset):
                // not "no such record" but an outage, which the adapters heal by re-creating it.
                404 if is_missing_parent(e) => StoreError::Unavailable(msg),
                404 => StoreError::NotFound,
                // A pop receipt spent by a later delivery or update: that delivery is gone.
                400 if code == "PopReceiptMismatch" => StoreError::NotFound,
                409 => StoreError::AlreadyExists,
                412 => StoreError::PreconditionFailed,
                408 | 429 | 500..=599 => StoreError::Unavailable(msg),
                _ => StoreError::Fatal(msg),
            }
        }
        ErrorKind::Io | ErrorKind::Other => {
            StoreError::Unavailable(format!("{what}: storage did not answer"))
        }
        _ => StoreError::Fatal(format!("{what}: {}", e.kind())),
    }
}
