//! Azurite, the official Azure Storage emulator, on free loopback ports for one test. It must
//! be installed (`scripts/install-azurite.sh`, which the test command runs): a test that needs it
//! fails, never skips, when it is missing or cannot start.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    pub blob_port: u16,
    pub queue_port: u16,
    table_port: u16,
    /// On-disk data when persistent; `None` keeps everything in memory.
    location: Option<PathBuf>,
    workdir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
    /// Starts an in-memory Azurite on free ports and waits until it accepts connections.
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
            workdir,
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
            .current_dir(&self.workdir)
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

    /// Stops the emulator (an outage); `restart` brings it back on the same ports. SIGTERM
    /// first, so a persistent Azurite flushes its data as a real service would keep it; SIGKILL
    /// only if it has not exited within 10 s.
    pub fn stop(&mut self) {
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

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.workdir);
        if let Some(dir) = &self.location {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
