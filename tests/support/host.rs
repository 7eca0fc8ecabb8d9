//! The real `handler` binary, started the way the Functions host starts it: with
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, probed on `GET /` until it answers.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Handler {
    pub child: Child,
    pub port: u16,
    pub base: String,
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Handler {
    /// Starts the binary as the host would and waits (bounded) until `GET /` answers.
    pub async fn start(env: &[(&str, &str)]) -> Handler {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_handler"));
        cmd.env_clear()
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_WORKER_RUNTIME", "custom")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the handler binary starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // As the host does: a refused connection means "not yet".
        loop {
            if let Ok(r) = client.get(format!("{base}/")).send().await {
                assert!(r.status().is_success(), "GET / answered {}", r.status());
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the handler did not answer GET / within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Handler { child, port, base }
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An invocation payload exactly as the Functions host posts it for a queue trigger: the
/// message text JSON-encoded inside a JSON string, metadata as strings, some in extra quotes.
pub fn invocation_payload(message_text: &str, dequeue_count: u32) -> serde_json::Value {
    let encoded = serde_json::to_string(message_text).expect("a string encodes");
    serde_json::json!({
        "Data": { "myQueueItem": encoded },
        "Metadata": {
            "DequeueCount": dequeue_count.to_string(),
            "ExpirationTime": "\"2026-12-01T10:00:00+00:00\"",
            "Id": "\"5f1c2f36-8f7b-4a2b-9d0e-3c1f6e1c2a10\"",
            "InsertionTime": "\"2026-11-24T10:00:00+00:00\"",
            "NextVisibleTime": "\"2026-11-24T10:10:00+00:00\"",
            "PopReceipt": "\"AgAAAAMAAAAAAAAA\"",
            "sys": {
                "MethodName": "AsyncProcessingBackgroundWorker",
                "UtcNow": "2026-11-24T10:00:00.1Z",
                "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e"
            }
        }
    })
}
