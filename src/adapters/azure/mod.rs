//! Azure Storage adapters (the community `azure_storage_*` 0.21 crates): operation records as
//! JSON blobs with ETags, results as write-once blobs with SAS read links, and the work queue
//! with base64 message text. Every call is bounded by a timeout and a short retry policy, so an
//! outage surfaces as `StoreError::Unavailable` in seconds, not minutes; request-path calls also
//! wait for a slot under an adaptive in-flight limit (`transport`), so slow storage gets fewer
//! calls, not a pile of abandoned ones. With export on, each call is a client span (`traced`).

mod account;
mod blobs;
mod connection;
mod credential;
mod delegation;
mod errors;
mod queue;
mod traced;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use azure_core::{ExponentialRetryOptions, HttpClient, RetryOptions, TransportOptions};
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::ClientBuilder;
use azure_storage_queues::QueueServiceClientBuilder;

pub use account::{StorageAccount, StorageAuth};
pub use connection::{ConnectionStringError, StorageConnection, EMULATOR_ACCOUNT, EMULATOR_KEY};
pub use credential::{CredentialSource, STORAGE_RESOURCE};
pub use delegation::MAX_LINK_LIFE;

use blobs::LinkSigner;
use credential::CachedCredential;
use delegation::DelegationKeys;

use crate::domain::load::LoadLimit;
use crate::domain::ports::{Storage, StoreError, Stores};

/// What the Azure adapters need to know.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub account: StorageAccount,
    /// Certificates trusted beside the built-in roots (`SSL_CERT_FILE`), for storage or an
    /// identity endpoint behind a private CA.
    pub extra_roots: Vec<reqwest::Certificate>,
    /// How long a result link lives: a user-delegation key must outlive it.
    pub link_life: Duration,
    /// The work queue; the poison queue is `<queue_name>-poison`, the callbacks queue
    /// `<queue_name>-callbacks` (see `callback_queue_name`).
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
    /// The most messages each standalone consumer works on at once (`WORKER_CONCURRENCY`): the
    /// top of the limit the work side's answers move.
    pub work_max_in_flight: usize,
}

impl AzureSettings {
    /// The completion callbacks' delivery queue (`callbacks.function.json` names it).
    pub fn callback_queue_name(&self) -> String {
        format!("{}-callbacks", self.queue_name)
    }
}

/// The adapters over one transport.
struct Side {
    records: blobs::BlobRecordStore,
    results: blobs::BlobResultStore,
    queue: queue::StorageQueue,
    callbacks: queue::StorageQueue,
}

impl Side {
    fn stores(self) -> Stores {
        Stores {
            records: Arc::new(self.records),
            results: Arc::new(self.results),
            queue: Arc::new(self.queue),
            callbacks: Arc::new(self.callbacks),
        }
    }
}

/// The Azure adapters, built but not yet checked against storage: the request side over a
/// transport that holds calls back while storage is slow (`transport`), the work side over one
/// that holds nothing back but reports how storage answers.
pub struct Unprepared {
    requests: Side,
    work: Side,
    /// Moved by the work side's answers; read by the standalone consumers.
    work_load: Arc<LoadLimit>,
    /// With identity-based storage: the keys that sign result links.
    delegation: Option<Arc<DelegationKeys>>,
}

/// Builds the clients and creates the containers and both queues if they are missing.
pub async fn connect(settings: &AzureSettings) -> Result<Storage, StoreError> {
    let unprepared = build(settings)?;
    unprepared.prepare().await?;
    Ok(unprepared.ready())
}

/// Builds the clients, without a call to storage.
pub fn build(settings: &AzureSettings) -> Result<Unprepared, StoreError> {
    let http = http_client(settings, settings.request_timeout)?;
    // Identity endpoints may take a few seconds for a first token; storage calls may not.
    let token_http = http_client(settings, settings.request_timeout.max(TOKEN_TIMEOUT))?;
    let account = &settings.account;
    let (credentials, delegation) = match account.auth() {
        StorageAuth::Key(key) => (
            StorageCredentials::access_key(account.name().to_string(), key.secret().to_string()),
            None,
        ),
        StorageAuth::Identity(source) => {
            let credential = Arc::new(CachedCredential::new(source.clone(), token_http.clone()));
            let keys = Arc::new(DelegationKeys::new(
                Arc::clone(&credential),
                token_http,
                account.blob_endpoint(),
                settings.link_life,
            ));
            (StorageCredentials::token_credential(credential), Some(keys))
        }
    };
    let limited: Arc<dyn HttpClient> = Arc::new(transport::LimitedTransport::new(
        http.clone(),
        settings.max_concurrent_calls,
        settings.request_timeout,
    ));
    let work_load = Arc::new(LoadLimit::new(
        settings.work_max_in_flight,
        settings.request_timeout / 4,
    ));
    let observed: Arc<dyn HttpClient> =
        Arc::new(transport::ObservedTransport::new(http, work_load.clone()));
    let link_signer = || LinkSigner::for_account(account, delegation.clone());
    Ok(Unprepared {
        requests: side(settings, &credentials, link_signer(), limited),
        work: side(settings, &credentials, link_signer(), observed),
        work_load,
        delegation,
    })
}

/// How long a token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

fn http_client(settings: &AzureSettings, timeout: Duration) -> Result<reqwest::Client, StoreError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(settings.request_timeout.min(Duration::from_secs(2)))
        // Storage and token endpoints never redirect; a redirect would carry a token elsewhere.
        .redirect(reqwest::redirect::Policy::none());
    for root in &settings.extra_roots {
        builder = builder.add_root_certificate(root.clone());
    }
    builder
        .build()
        .map_err(|e| StoreError::Fatal(format!("cannot build an HTTP client: {e}")))
}

/// The three adapters over `transport`.
fn side(
    settings: &AzureSettings,
    credentials: &StorageCredentials,
    link_signer: LinkSigner,
    transport: Arc<dyn HttpClient>,
) -> Side {
    let traced = |service| {
        TransportOptions::new(Arc::new(traced::Traced {
            inner: transport.clone(),
            service,
        }))
    };
    let conn = &settings.account;
    let credentials = credentials.clone();
    let retry = RetryOptions::exponential(
        ExponentialRetryOptions::default()
            .max_retries(settings.max_retries)
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .max_total_elapsed(settings.request_timeout * (settings.max_retries + 1)),
    );
    let blobs = ClientBuilder::with_location(
        CloudLocation::Custom {
            account: conn.name().to_string(),
            uri: conn.blob_endpoint().to_string(),
        },
        credentials.clone(),
    )
    .retry(retry.clone())
    .transport(traced("blob"))
    .blob_service_client();
    let queues = QueueServiceClientBuilder::with_location(
        CloudLocation::Custom {
            account: conn.name().to_string(),
            uri: conn.queue_endpoint().to_string(),
        },
        credentials,
    )
    .retry(retry)
    .transport(traced("queue"))
    .build();
    Side {
        records: blobs::BlobRecordStore::new(blobs.container_client(&settings.records_container)),
        results: blobs::BlobResultStore::new(
            blobs.container_client(&settings.results_container),
            conn,
            link_signer,
        ),
        queue: queue::StorageQueue::new(
            queues.queue_client(&settings.queue_name),
            queues.queue_client(format!("{}-poison", settings.queue_name)),
        ),
        // The host gives a failing callback message a poison queue too; it is created here
        // so that it is there to look at.
        callbacks: queue::StorageQueue::new(
            queues.queue_client(settings.callback_queue_name()),
            queues.queue_client(format!("{}-poison", settings.callback_queue_name())),
        ),
    }
}

impl Unprepared {
    /// Creates the containers and the queues (work, callbacks, and their poison queues) if they
    /// are missing (and so proves that the account answers and the credentials are good).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.requests.records.create_container().await?;
        self.requests.results.create_container().await?;
        self.requests.queue.create_queues().await?;
        self.requests.callbacks.create_queues().await?;
        // Result links need a delegation key: a missing role shows now, not at the first 302.
        if let Some(keys) = &self.delegation {
            keys.fetch_once().await?;
        }
        Ok(())
    }

    /// The adapters, to be used whether or not `prepare` finished: each heals a container or
    /// queue it finds missing, so storage that was unreachable at start-up is set up on first use.
    pub fn ready(self) -> Storage {
        Storage {
            requests: self.requests.stores(),
            work: self.work.stores(),
            work_load: self.work_load,
        }
    }
}
