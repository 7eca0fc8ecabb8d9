//! The composition root: builds the storage adapters and the service from `Config` and the
//! work it is given, binds the listener, and runs the HTTP server (plus, standalone, the queue
//! worker, the callbacks' worker and the retention sweep) until shutdown, which one token
//! signals to all of them and which finishes in-flight requests and messages within a grace
//! period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::adapters::webhook::HttpWebhooks;
use crate::adapters::{azure, memory};
use crate::config::{Config, Mode, StorageConfig, IN_MEMORY_UNDER_HOST};
use crate::domain::callback::Callbacks;
use crate::domain::ports::{Storage, StoreError, SystemClock};
use crate::domain::work::Work;
use crate::domain::Service;
use crate::edges::callback_worker::{self, CallbackWorkerSettings};
use crate::edges::consumer::ConsumerGauges;
use crate::edges::http::public_url::UrlPolicy;
use crate::edges::http::state::{HttpSettings, HttpState};
use crate::edges::http::{self, server};
use crate::edges::worker;
use crate::telemetry::metrics;

/// How long start-up waits for storage: well inside the 30 s in which the Functions host
/// expects the handler to answer `GET /`.
pub const STARTUP_STORAGE_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Storage(String),
    #[error("{0}")]
    Callbacks(String),
    #[error("cannot listen on {addr} (setting {setting}): {error}")]
    Bind {
        setting: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// Connects to the storage the configuration names, creating containers and queues if missing.
pub async fn connect(config: &StorageConfig) -> Result<Storage, StartupError> {
    open(config, false).await
}

/// As `connect`, within [`STARTUP_STORAGE_DEADLINE`]. Storage that refuses (bad credentials,
/// a bad name) always stops start-up. Storage that does not answer in time stops a standalone
/// start too, but not one under the Functions host: the host waits only 30 s for `GET /` and
/// then restarts the handler (and stops itself after three such failures), so there the
/// handler serves instead, answering `503` while storage is away, and creates what is missing
/// on first use.
async fn open(config: &StorageConfig, host_mode: bool) -> Result<Storage, StartupError> {
    let settings = match config {
        StorageConfig::Memory => return Ok(memory::storage()),
        StorageConfig::Azure(settings) => settings,
    };
    let named_by = match settings.account.auth() {
        azure::StorageAuth::Key(_) => "AzureWebJobsStorage".to_string(),
        azure::StorageAuth::Identity(source) => {
            format!("AzureWebJobsStorage__* (by {})", source.describe())
        }
    };
    let failed = |e: &dyn std::fmt::Display| {
        StartupError::Storage(format!(
            "cannot use the storage account that {named_by} names ({}): {e}",
            settings.account.blob_endpoint()
        ))
    };
    let unprepared = azure::build(settings).map_err(|e| failed(&e))?;
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
    Ok(unprepared.ready())
}

/// A started service.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub service: Arc<Service>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    grace: Duration,
}

/// Starts the service as configured, doing `work` for each operation.
pub async fn start(config: Config, work: Arc<dyn Work>) -> Result<RunningApp, StartupError> {
    let host_mode = matches!(config.mode, Mode::FunctionsHost { .. });
    let storage = open(&config.storage, host_mode).await?;
    start_with(config, storage, work).await
}

/// Starts the service on the given storage and work (tests use this to look inside).
pub async fn start_with(
    config: Config,
    storage: Storage,
    work: Arc<dyn Work>,
) -> Result<RunningApp, StartupError> {
    let shutdown = CancellationToken::new();
    let settings = config.callbacks.clone();
    let webhooks = HttpWebhooks::new(settings.policy.clone(), settings.timeout)
        .map_err(StartupError::Callbacks)?;
    let service = Arc::new(
        Service::new(
            storage,
            work,
            Arc::new(SystemClock),
            config.service.clone(),
            shutdown.clone(),
        )
        .with_callbacks(Callbacks {
            settings,
            webhooks: Arc::new(webhooks),
        }),
    );
    let (setting, addr, host_mode) = match config.mode {
        Mode::FunctionsHost { port } => (
            "FUNCTIONS_CUSTOMHANDLER_PORT",
            SocketAddr::from(([127, 0, 0, 1], port)),
            true,
        ),
        Mode::Standalone { bind, port } => ("PORT", SocketAddr::new(bind, port), false),
    };
    let bind_error = |error| StartupError::Bind {
        setting,
        addr,
        error,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
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
    let server = tokio::spawn(server::serve(
        listener,
        http::routes(state),
        config.connection_limits,
        shutdown.clone(),
    ));
    let mut background = Vec::new();
    let work_gauges = Arc::new(ConsumerGauges::default());
    let callback_gauges = Arc::new(ConsumerGauges::default());
    if !host_mode {
        for (queue, gauges) in [("work", &work_gauges), ("callbacks", &callback_gauges)] {
            let gauges = gauges.clone();
            metrics::observe_worker(queue, move || {
                (gauges.in_flight() as u64, gauges.limit() as u64)
            });
        }
        background.push(tokio::spawn(worker::run(
            service.clone(),
            config.worker.clone(),
            work_gauges.clone(),
            shutdown.clone(),
        )));
        background.push(tokio::spawn(callback_worker::run(
            service.clone(),
            CallbackWorkerSettings {
                concurrency: config.worker.concurrency,
                // A message stays hidden well past the longest attempt, so no second consumer
                // takes it while its attempt is still under way.
                visibility_timeout: config
                    .worker
                    .visibility_timeout
                    .max(config.callbacks.timeout * 3),
                max_poll_interval: config.worker.max_poll_interval,
            },
            callback_gauges.clone(),
            shutdown.clone(),
        )));
        background.push(tokio::spawn(sweep(
            service.clone(),
            config.purge_interval,
            shutdown.clone(),
        )));
    }
    let storage_kind = match &config.storage {
        StorageConfig::Memory => "in-memory".to_string(),
        StorageConfig::Azure(s) => format!("Azure Storage at {}", s.account.blob_endpoint()),
    };
    let mode = if host_mode {
        "under the Functions host"
    } else {
        "standalone"
    };
    if host_mode && matches!(config.storage, StorageConfig::Memory) {
        warn!(
            setting = IN_MEMORY_UNDER_HOST,
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
/// lifecycle rule does it). Every instance sweeps: a sweep with nothing to remove is one
/// listing call per kind of document (`Service::purge_expired`), the same as the lease call
/// that would elect one sweeper, so N instances cost N listings a period and no more; each
/// waits a random 0.5x to 1.5x of the period, so their sweeps spread out instead of
/// listing (and racing to delete the same expired documents) at the same moment.
async fn sweep(service: Arc<Service>, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(jittered(every)) => {}
            _ = shutdown.cancelled() => return,
        }
        match service.purge_expired().await {
            Ok(0) => {}
            Ok(n) => info!(purged = n, "removed expired operations"),
            Err(e) => warn!(error = %e, "retention sweep failed; will try again"),
        }
    }
}

/// `every` scaled by a random factor in [0.5, 1.5).
fn jittered(every: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() & 0xffff) as f64 / 65536.0;
    every.mul_f64(0.5 + random)
}

impl RunningApp {
    /// Stops accepting, finishes in-flight requests and messages, within the grace period.
    pub async fn shutdown(self) {
        info!("shutting down");
        self.shutdown.cancel();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_wait_between_half_and_one_and_a_half_periods_and_vary() {
        let every = Duration::from_secs(60);
        let waits: Vec<_> = (0..200).map(|_| jittered(every)).collect();
        assert!(waits.iter().all(|w| *w >= every / 2 && *w < every * 3 / 2));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 100, "random, not one fixed wait");
    }
}
