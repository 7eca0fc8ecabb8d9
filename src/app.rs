//! Wiring: builds the storage adapters and the service from `Config`, binds the listener,
//! and runs the HTTP server (plus, standalone, the queue worker and the retention sweep)
//! until shutdown, which finishes in-flight requests and messages within a grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::adapters::azure::AzureStorage;
use crate::adapters::memory::{MemoryRecordStore, MemoryResultStore, MemoryWorkQueue};
use crate::config::{Config, Mode, StorageConfig};
use crate::domain::ports::{RecordStore, ResultStore, StoreError, SystemClock, WorkQueue};
use crate::domain::work::{SampleWork, Work};
use crate::domain::Service;
use crate::edges::http::{self, public_url::UrlPolicy, HttpSettings, HttpState};
use crate::edges::worker;

/// The three stores the service runs on.
#[derive(Clone)]
pub struct Storage {
    pub records: Arc<dyn RecordStore>,
    pub results: Arc<dyn ResultStore>,
    pub queue: Arc<dyn WorkQueue>,
}

impl Storage {
    pub fn memory() -> Self {
        Self {
            records: Arc::new(MemoryRecordStore::new()),
            results: Arc::new(MemoryResultStore::new()),
            queue: Arc::new(MemoryWorkQueue::new()),
        }
    }

    /// Connects to what the configuration names, creating containers and queues if missing.
    pub async fn connect(config: &StorageConfig) -> Result<Self, StartupError> {
        Self::open(config, false).await
    }

    /// As `connect`, within [`STARTUP_STORAGE_DEADLINE`]. Storage that refuses (bad
    /// credentials, a bad name) always stops start-up. Storage that does not answer in time
    /// stops a standalone start too, but not one under the Functions host: the host waits only
    /// 30 s for `GET /` and then restarts the handler (and stops itself after three such
    /// failures), so there the handler serves instead, answering `503` while storage is away,
    /// and creates what is missing on first use.
    async fn open(config: &StorageConfig, host_mode: bool) -> Result<Self, StartupError> {
        let settings = match config {
            StorageConfig::Memory => return Ok(Self::memory()),
            StorageConfig::Azure(settings) => settings,
        };
        let failed = |e: &dyn std::fmt::Display| {
            StartupError::Storage(format!(
                "cannot use the storage account that AzureWebJobsStorage names ({}): {e}",
                settings.connection.blob_endpoint()
            ))
        };
        let unprepared = AzureStorage::build(settings).map_err(|e| failed(&e))?;
        match tokio::time::timeout(STARTUP_STORAGE_DEADLINE, unprepared.prepare()).await {
            Ok(Ok(())) => {}
            Ok(Err(e @ StoreError::Unavailable(_))) if host_mode => {
                warn!(error = %e, "storage is unavailable at start-up; serving anyway (503 until it answers)");
            }
            Err(_) if host_mode => {
                warn!(
                    deadline_seconds = STARTUP_STORAGE_DEADLINE.as_secs(),
                    "storage did not answer at start-up in time; serving anyway (503 until it answers)"
                );
            }
            Ok(Err(e)) => return Err(failed(&e)),
            Err(_) => {
                return Err(failed(&format_args!(
                    "no answer within {} s",
                    STARTUP_STORAGE_DEADLINE.as_secs()
                )))
            }
        }
        let s = unprepared.ready();
        Ok(Self {
            records: s.records,
            results: s.results,
            queue: s.queue,
        })
    }
}

/// How long start-up waits for storage: well inside the 30 s in which the Functions host
/// expects the handler to answer `GET /`.
pub const STARTUP_STORAGE_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Storage(String),
    #[error("cannot listen on {addr} (setting {setting}): {error}")]
    Bind {
        setting: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// A started service.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub service: Arc<Service>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    grace: Duration,
}

/// Starts the service as configured, with the sample's work.
pub async fn start(config: Config) -> Result<RunningApp, StartupError> {
    let host_mode = matches!(config.mode, Mode::FunctionsHost { .. });
    let storage = Storage::open(&config.storage, host_mode).await?;
    let work = Arc::new(SampleWork {
        delay: config.processing_delay,
    });
    start_with(config, storage, work).await
}

/// Starts the service on the given storage and work (tests use this to look inside).
pub async fn start_with(
    config: Config,
    storage: Storage,
    work: Arc<dyn Work>,
) -> Result<RunningApp, StartupError> {
    let service = Arc::new(Service::new(
        storage.records,
        storage.results,
        storage.queue,
        work,
        Arc::new(SystemClock),
        config.service.clone(),
    ));
    let (setting, addr, host_mode) = match config.mode {
        Mode::FunctionsHost { port } => (
            "FUNCTIONS_CUSTOMHANDLER_PORT",
            SocketAddr::from(([127, 0, 0, 1], port)),
            true,
        ),
        Mode::Standalone { bind, port } => ("PORT", SocketAddr::new(bind, port), false),
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| StartupError::Bind {
            setting,
            addr,
            error,
        })?;
    let addr = listener.local_addr().map_err(|error| StartupError::Bind {
        setting,
        addr,
        error,
    })?;
    let state = Arc::new(HttpState {
        service: service.clone(),
        settings: HttpSettings {
            urls: UrlPolicy {
                public_base_url: config.public_base_url.clone(),
                website_hostname: config.website_hostname.clone(),
                trust_forwarded_headers: config.trust_forwarded_headers,
            },
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.body_timeout,
            retry_after: config.retry_after,
            sync_wait_max: config.sync_wait_max,
            location_streams_result: config.location_streams_result,
            host_mode,
        },
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let server = tokio::spawn(http::server::serve(
        listener,
        http::routes(state),
        config.connection_limits,
        shutdown_rx.clone(),
    ));
    let mut background = Vec::new();
    if !host_mode {
        background.push(tokio::spawn(worker::run(
            service.clone(),
            config.worker.clone(),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(sweep(
            service.clone(),
            config.purge_interval,
            shutdown_rx.clone(),
        )));
    }
    let storage_kind = match &config.storage {
        StorageConfig::Memory => "in-memory".to_string(),
        StorageConfig::Azure(s) => format!("Azure Storage at {}", s.connection.blob_endpoint()),
    };
    let mode = if host_mode {
        "under the Functions host"
    } else {
        "standalone"
    };
    if host_mode && matches!(config.storage, StorageConfig::Memory) {
        warn!(
            setting = crate::config::IN_MEMORY_UNDER_HOST,
            "storage is in memory under the Functions host: for tests and demos only, the host \
             delivers no queue messages from it"
        );
    }
    info!(%addr, storage = %storage_kind, mode, "listening on http://{addr}");
    Ok(RunningApp {
        addr,
        service,
        shutdown,
        server,
        background,
        grace: config.shutdown_grace,
    })
}

/// Deletes what is past its retention, now and then (standalone only; on Azure a storage
/// lifecycle rule does it).
async fn sweep(service: Arc<Service>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match service.purge_expired().await {
            Ok(0) => {}
            Ok(n) => info!(purged = n, "removed expired operations"),
            Err(e) => warn!(error = %e, "retention sweep failed; will try again"),
        }
    }
}

impl RunningApp {
    /// Stops accepting, finishes in-flight requests and messages, within the grace period.
    pub async fn shutdown(self) {
        info!("shutting down");
        let _ = self.shutdown.send(true);
        let drain = async {
            let _ = self.server.await;
            for task in self.background {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(self.grace, drain).await.is_err() {
            warn!(
                grace_seconds = self.grace.as_secs(),
                "shutdown grace period over; stopping anyway"
            );
        } else {
            info!("stopped");
        }
    }
}
