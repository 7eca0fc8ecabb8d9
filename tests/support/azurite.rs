//! Azurite, the official Azure Storage emulator. Tests that only need *a* storage account share
//! one instance per run (`Azurite::shared`, which `scripts/test.sh` starts) and keep apart by
//! their own queue and container names (`Names::unique`); tests that stop, restart or need
//! persistence start a private one on free ports. It must be installed
//! (`scripts/install-azurite.sh`, which the test command runs): a test that needs it fails,
//! never skips, when it is missing or cannot start.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_request_reply::adapters::azure::{AzureSettings, StorageConnection};
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{BlobServiceClient, ClientBuilder};
use azure_storage_queues::{QueueServiceClient, QueueServiceClientBuilder};

use super::free_port;

/// The emulator's well-known account and key: the one copy the tests use.
pub use async_request_reply::adapters::azure::{EMULATOR_ACCOUNT as ACCOUNT, EMULATOR_KEY as KEY};

/// Where `scripts/test.sh` says its shared Azurite listens.
const SHARED_BLOB_PORT: &str = "AZURITE_SHARED_BLOB_PORT";
const SHARED_QUEUE_PORT: &str = "AZURITE_SHARED_QUEUE_PORT";

pub struct Azurite {
    pub blob_port: u16,
    pub queue_port: u16,
    table_port: u16,
    /// On-disk data when persistent; `None` keeps everything in memory.
    location: Option<PathBuf>,
    /// `None` for the run's shared instance, which this process neither started nor stops.
    workdir: Option<PathBuf>,
    child: Option<Child>,
}

/// A test's own queue and containers, so tests sharing one Azurite never see each other's data.
#[derive(Debug, Clone)]
pub struct Names {
    /// `q-<8 hex>`; its poison queue is `<queue>-poison`.
    pub queue: String,
    /// `d-<8 hex>`, for results.
    pub results: String,
    /// `o-<8 hex>`, for operation records.
    pub records: String,
}

impl Names {
    pub fn unique() -> Names {
        let hex = || uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        Names {
            queue: format!("q-{}", hex()),
            results: format!("d-{}", hex()),
            records: format!("o-{}", hex()),
        }
    }

    /// The handler's settings naming them.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WORK_QUEUE_NAME", self.queue.clone()),
            ("RESULT_CONTAINER", self.results.clone()),
            ("RECORDS_CONTAINER", self.records.clone()),
        ]
    }

    /// Adapter settings for these names on `azurite`.
    pub fn azure_settings(
        &self,
        azurite: &Azurite,
        timeout_ms: u64,
        retries: u32,
    ) -> AzureSettings {
        AzureSettings {
            connection: StorageConnection::parse(&azurite.connection_string())
                .expect("a valid connection string"),
            queue_name: self.queue.clone(),
            results_container: self.results.clone(),
            records_container: self.records.clone(),
            request_timeout: Duration::from_millis(timeout_ms),
            max_retries: retries,
            max_concurrent_calls: 32,
        }
    }
}

fn binary() -> PathBuf {
    let path = std::env::var_os("AZURITE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/.bin/azurite")
        });
    assert!(
        path.exists(),
        "Azurite is not installed at {}: run `bash scripts/install-azurite.sh` (the test command does)",
        path.display()
    );
    path
}

impl Azurite {
    /// The run's shared Azurite when `scripts/test.sh` started one (its ports in
    /// `AZURITE_SHARED_BLOB_PORT`/`AZURITE_SHARED_QUEUE_PORT`), else a private one for this
    /// test, so a plain `cargo nextest run` works too. Use with `Names::unique`.
    pub fn shared() -> Azurite {
        let port = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.parse::<u16>()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a port"))
            })
        };
        match (port(SHARED_BLOB_PORT), port(SHARED_QUEUE_PORT)) {
            (Some(blob_port), Some(queue_port)) => Azurite {
                blob_port,
                queue_port,
                table_port: 0,
                location: None,
                workdir: None,
                child: None,
            },
            _ => Self::start(),
        }
    }

    /// Starts a private in-memory Azurite on free ports and waits until it accepts connections.
    pub fn start() -> Azurite {
        Self::launch(None)
    }

    /// Starts an Azurite that keeps its data on disk, so it survives `stop` and `restart`.
    pub fn start_persistent() -> Azurite {
        let dir = std::env::temp_dir().join(format!("azurite-data-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a data folder");
        Self::launch(Some(dir))
    }

    fn launch(location: Option<PathBuf>) -> Azurite {
        let workdir = std::env::temp_dir().join(format!("azurite-work-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&workdir).expect("a work folder");
        let mut a = Azurite {
            blob_port: free_port(),
            queue_port: free_port(),
            table_port: free_port(),
            location,
            workdir: Some(workdir),
            child: None,
        };
        // A free port can be taken by another process between the probe and Azurite's bind
        // (tests run in parallel): on an early exit, try again on fresh ports.
        for _ in 0..4 {
            if a.try_spawn().is_ok() {
                return a;
            }
            a.blob_port = free_port();
            a.queue_port = free_port();
            a.table_port = free_port();
        }
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{e}");
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(binary());
        // Strict mode, as users run Azurite: a header it refuses must fail the tests too.
        cmd.args(["--silent", "--disableTelemetry", "--skipApiVersionCheck"])
            .args([
                "--blobHost",
                "127.0.0.1",
                "--queueHost",
                "127.0.0.1",
                "--tableHost",
                "127.0.0.1",
            ])
            .args(["--blobPort", &self.blob_port.to_string()])
            .args(["--queuePort", &self.queue_port.to_string()])
            .args(["--tablePort", &self.table_port.to_string()])
            .current_dir(self.workdir.as_ref().expect("a private Azurite"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        match &self.location {
            Some(dir) => {
                cmd.arg("--location").arg(dir);
            }
            None => {
                // In memory; anything Azurite still writes lands in the work folder (its cwd).
                cmd.arg("--inMemoryPersistence");
            }
        }
        let mut child = cmd.spawn().expect("Azurite starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.blob_port) && up(self.queue_port) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("Azurite exited at start-up ({status})"));
            }
            assert!(
                Instant::now() < deadline,
                "Azurite did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    /// A connection string with explicit endpoints on this instance's ports.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};\
             BlobEndpoint=http://127.0.0.1:{}/{ACCOUNT};QueueEndpoint=http://127.0.0.1:{}/{ACCOUNT}",
            self.blob_port, self.queue_port
        )
    }

    /// A plain SDK client for its queue service, as the Functions host reads the queue.
    pub fn queue_service(&self) -> QueueServiceClient {
        QueueServiceClientBuilder::with_location(self.location(self.queue_port), credentials())
            .build()
    }

    /// A plain SDK client for its blob service.
    pub fn blob_service(&self) -> BlobServiceClient {
        ClientBuilder::with_location(self.location(self.blob_port), credentials())
            .blob_service_client()
    }

    fn location(&self, port: u16) -> CloudLocation {
        CloudLocation::Custom {
            account: ACCOUNT.into(),
            uri: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
        }
    }

    /// The handler's settings for this instance and `names`.
    pub fn handler_settings(&self, names: &Names) -> Vec<(&'static str, String)> {
        let mut env = vec![("AzureWebJobsStorage", self.connection_string())];
        env.extend(names.settings());
        env
    }

    /// Stops the emulator (an outage); `restart` brings it back on the same ports. SIGTERM
    /// first, so a persistent Azurite flushes its data as a real service would keep it; SIGKILL
    /// only if it has not exited within 10 s.
    pub fn stop(&mut self) {
        assert!(
            self.workdir.is_some(),
            "the shared Azurite cannot be stopped: start a private one (Azurite::start)"
        );
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

fn credentials() -> StorageCredentials {
    StorageCredentials::access_key(ACCOUNT, KEY.to_string())
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let Some(workdir) = self.workdir.clone() else {
            return; // the shared instance: the test command stops it
        };
        self.stop();
        let _ = std::fs::remove_dir_all(&workdir);
        if let Some(dir) = &self.location {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
