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

use std::sync::Arc;

use async_request_reply::adapters::azure::{
    AzureSettings, CredentialSource, StorageAccount, StorageConnection,
};
use azure_core::TransportOptions;
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{BlobServiceClient, ClientBuilder};
use azure_storage_queues::{QueueServiceClient, QueueServiceClientBuilder};

use super::free_port;
use super::identity::TokenServer;

/// The emulator's well-known account and key: the one copy the tests use.
pub use async_request_reply::adapters::azure::{EMULATOR_ACCOUNT as ACCOUNT, EMULATOR_KEY as KEY};

/// Where `scripts/test.sh` says its shared Azurite listens.
const SHARED_BLOB_PORT: &str = "AZURITE_SHARED_BLOB_PORT";
const SHARED_QUEUE_PORT: &str = "AZURITE_SHARED_QUEUE_PORT";
/// And where its OAuth twin listens, with the CA that signed its certificate.
const IDENTITY_BLOB_PORT: &str = "AZURITE_IDENTITY_BLOB_PORT";
const IDENTITY_QUEUE_PORT: &str = "AZURITE_IDENTITY_QUEUE_PORT";
const IDENTITY_CA: &str = "AZURITE_IDENTITY_CA";

/// How long the tokens of a test's identity endpoint live unless it says otherwise.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

pub struct Azurite {
    pub blob_port: u16,
    pub queue_port: u16,
    table_port: u16,
    /// On-disk data when persistent; `None` keeps everything in memory.
    location: Option<PathBuf>,
    /// `None` for the run's shared instance, which this process neither started nor stops.
    workdir: Option<PathBuf>,
    child: Option<Child>,
    /// OAuth over HTTPS (`--oauth basic`): the test CA, and this test's identity endpoint.
    identity: Option<Identity>,
}

struct Identity {
    /// The CA that signed Azurite's certificate (`ca.pem`; `leaf.pem`/`leaf.key` beside it when
    /// this test started its own Azurite).
    ca: PathBuf,
    tokens: TokenServer,
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
        let (account, extra_roots) = match &azurite.identity {
            None => (
                StorageConnection::parse(&azurite.connection_string())
                    .expect("a valid connection string")
                    .into(),
                Vec::new(),
            ),
            Some(id) => (
                StorageAccount::with_identity(
                    ACCOUNT.into(),
                    azurite.blob_endpoint(),
                    azurite.queue_endpoint(),
                    CredentialSource::ManagedIdentity {
                        endpoint: id.tokens.endpoint(),
                        header: azure_core::auth::Secret::new(id.tokens.header().to_string()),
                        client_id: None,
                    },
                ),
                vec![azurite.ca_certificate()],
            ),
        };
        AzureSettings {
            account,
            extra_roots,
            link_life: Duration::from_secs(600),
            queue_name: self.queue.clone(),
            results_container: self.results.clone(),
            records_container: self.records.clone(),
            request_timeout: Duration::from_millis(timeout_ms),
            max_retries: retries,
            max_concurrent_calls: 32,
            work_max_in_flight: 16,
        }
    }
}

/// A port the test command exported, if it did.
fn port(name: &str) -> Option<u16> {
    std::env::var(name).ok().map(|v| {
        v.parse::<u16>()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a port"))
    })
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
        match (port(SHARED_BLOB_PORT), port(SHARED_QUEUE_PORT)) {
            (Some(blob_port), Some(queue_port)) => Self::running(blob_port, queue_port, None),
            _ => Self::start(),
        }
    }

    /// A handle on an Azurite this process did not start and will not stop.
    fn running(blob_port: u16, queue_port: u16, identity: Option<Identity>) -> Azurite {
        Azurite {
            blob_port,
            queue_port,
            table_port: 0,
            location: None,
            workdir: None,
            child: None,
            identity,
        }
    }

    /// The run's shared OAuth Azurite over HTTPS (`AZURITE_IDENTITY_*`), else a private one,
    /// with an identity endpoint of this test's own whose tokens it accepts.
    pub fn shared_identity() -> Azurite {
        match (
            port(IDENTITY_BLOB_PORT),
            port(IDENTITY_QUEUE_PORT),
            std::env::var_os(IDENTITY_CA),
        ) {
            (Some(blob_port), Some(queue_port), Some(ca)) => Self::running(
                blob_port,
                queue_port,
                Some(Identity {
                    ca: PathBuf::from(ca),
                    tokens: TokenServer::start(TOKEN_LIFETIME),
                }),
            ),
            _ => Self::start_identity(),
        }
    }

    /// Starts a private OAuth Azurite over HTTPS, with a fresh test CA.
    pub fn start_identity() -> Azurite {
        Self::launch(None, true)
    }

    /// Starts a private in-memory Azurite on free ports and waits until it accepts connections.
    pub fn start() -> Azurite {
        Self::launch(None, false)
    }

    /// Starts an Azurite that keeps its data on disk, so it survives `stop` and `restart`.
    pub fn start_persistent() -> Azurite {
        let dir = std::env::temp_dir().join(format!("azurite-data-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a data folder");
        Self::launch(Some(dir), false)
    }

    fn launch(location: Option<PathBuf>, identity: bool) -> Azurite {
        let workdir = std::env::temp_dir().join(format!("azurite-work-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&workdir).expect("a work folder");
        let identity = identity.then(|| {
            let certs = workdir.join("certs");
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-ca.sh");
            let status = Command::new("bash")
                .arg(script)
                .arg(&certs)
                .status()
                .expect("bash runs");
            assert!(status.success(), "scripts/make-test-ca.sh failed");
            Identity {
                ca: certs.join("ca.pem"),
                tokens: TokenServer::start(TOKEN_LIFETIME),
            }
        });
        let mut a = Azurite {
            blob_port: free_port(),
            queue_port: free_port(),
            table_port: free_port(),
            location,
            workdir: Some(workdir),
            child: None,
            identity,
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
        if let Some(id) = &self.identity {
            let certs = id.ca.parent().expect("the CA's folder");
            cmd.args(["--oauth", "basic", "--cert"])
                .arg(certs.join("leaf.pem"))
                .arg("--key")
                .arg(certs.join("leaf.key"));
        }
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

    fn scheme(&self) -> &'static str {
        if self.identity.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn blob_endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}/{ACCOUNT}", self.scheme(), self.blob_port)
    }

    pub fn queue_endpoint(&self) -> String {
        format!(
            "{}://127.0.0.1:{}/{ACCOUNT}",
            self.scheme(),
            self.queue_port
        )
    }

    /// A connection string with explicit endpoints on this instance's ports (the tests' own
    /// look at storage uses the key even on the OAuth instance; the handler there never does).
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol={};AccountName={ACCOUNT};AccountKey={KEY};\
             BlobEndpoint={};QueueEndpoint={}",
            self.scheme(),
            self.blob_endpoint(),
            self.queue_endpoint()
        )
    }

    /// Whether this is the OAuth instance, reached by identity.
    pub fn is_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// The identity endpoint of the OAuth instance.
    pub fn tokens(&self) -> &TokenServer {
        &self.identity.as_ref().expect("an OAuth Azurite").tokens
    }

    /// `SSL_CERT_FILE` for the OAuth instance: the CA that signed its certificate.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.identity.as_ref().map(|id| id.ca.as_path())
    }

    fn ca_certificate(&self) -> reqwest::Certificate {
        let pem = std::fs::read(self.ca_file().expect("an OAuth Azurite")).expect("the test CA");
        reqwest::Certificate::from_pem(&pem).expect("a PEM certificate")
    }

    /// An HTTP client that trusts this instance (its test CA on the OAuth instance) and never
    /// follows redirects.
    pub fn http(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if self.identity.is_some() {
            b = b.add_root_certificate(self.ca_certificate());
        }
        b.build().expect("a reqwest client")
    }

    /// A plain SDK client for its queue service, as the Functions host reads the queue.
    pub fn queue_service(&self) -> QueueServiceClient {
        QueueServiceClientBuilder::with_location(
            self.location(self.queue_endpoint()),
            credentials(),
        )
        .transport(self.transport())
        .build()
    }

    /// A plain SDK client for its blob service.
    pub fn blob_service(&self) -> BlobServiceClient {
        ClientBuilder::with_location(self.location(self.blob_endpoint()), credentials())
            .transport(self.transport())
            .blob_service_client()
    }

    fn transport(&self) -> TransportOptions {
        TransportOptions::new(Arc::new(self.http()))
    }

    fn location(&self, uri: String) -> CloudLocation {
        CloudLocation::Custom {
            account: ACCOUNT.into(),
            uri,
        }
    }

    /// The handler's settings for this instance and `names`: a connection string, or on the
    /// OAuth instance identity settings with no key anywhere (the handler's managed identity
    /// is this test's identity endpoint, and it trusts the test CA through `SSL_CERT_FILE`).
    pub fn handler_settings(&self, names: &Names) -> Vec<(&'static str, String)> {
        let mut env = match &self.identity {
            None => vec![("AzureWebJobsStorage", self.connection_string())],
            Some(id) => {
                let mut env = vec![
                    ("AzureWebJobsStorage__blobServiceUri", self.blob_endpoint()),
                    (
                        "AzureWebJobsStorage__queueServiceUri",
                        self.queue_endpoint(),
                    ),
                    ("SSL_CERT_FILE", id.ca.display().to_string()),
                ];
                env.extend(id.tokens.managed_identity_settings());
                env
            }
        };
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
