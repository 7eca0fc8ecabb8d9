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
use crate::domain::ports::{RecordStore, ResultStore, SystemClock, WorkQueue};
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
        match config {
            StorageConfig::Memory => Ok(Self::memory()),
            StorageConfig::Azure(settings) => {
                let s = AzureStorage::connect(settings).await.map_err(|e| {
                    StartupError::Storage(format!(
                        "cannot use the storage account that AzureWebJobsStorage names ({}): {e}",
                        settings.connection.blob_endpoint()
                    ))
                })?;
                Ok(Self {
                    records: s.records,
                    results: s.results,
                    queue: s.queue,
                })
            }
        }
    }
}

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
    let storage = Storage::connect(&config.storage).await?;
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
            retry_after: config.retry_after,
            sync_wait_max: config.sync_wait_max,
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
