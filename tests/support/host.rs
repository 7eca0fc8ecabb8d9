//! The real `handler` binary, started the way the Functions host starts it: with
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, probed on `GET /` until it answers.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port};

pub struct Handler {
    pub child: Child,
    pub port: u16,
    pub base: String,
    /// Standalone (`PORT`) or as under the host (`FUNCTIONS_CUSTOMHANDLER_PORT`).
    standalone: bool,
    env: Vec<(String, String)>,
    /// Where stdout/stderr go, when captured (appended across restarts).
    log: Option<std::path::PathBuf>,
}

/// The handler binary with an empty environment: a test says every setting it has.
pub fn handler_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_handler"));
    cmd.env_clear();
    cmd
}

/// Polls `GET {base}/` (bounded) as the host does: a refused connection means "not yet".
pub async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let status = eventually(
        format_args!("an answer on GET {base}/"),
        Duration::from_millis(25),
        Duration::from_secs(30),
        async || client.get(format!("{base}/")).send().await.ok(),
    )
    .await
    .status();
    assert!(status.is_success(), "GET / answered {status}");
}

impl Handler {
    /// Starts the binary as the host would and waits (bounded) until `GET /` answers.
    pub async fn start(env: &[(&str, &str)]) -> Handler {
        Self::launch(false, env, None).await
    }

    /// Starts the binary standalone (its own queue worker) on a free port.
    pub async fn start_standalone(env: &[(&str, &str)]) -> Handler {
        Self::launch(true, env, None).await
    }

    /// As `start_standalone`, with stdout and stderr appended to `log`.
    pub async fn start_standalone_logged(env: &[(&str, &str)], log: std::path::PathBuf) -> Handler {
        Self::launch(true, env, Some(log)).await
    }

    async fn launch(
        standalone: bool,
        env: &[(&str, &str)],
        log: Option<std::path::PathBuf>,
    ) -> Handler {
        let port = free_port();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = Self::spawn(standalone, port, &env, log.as_deref());
        let handler = Handler {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            standalone,
            env,
            log,
        };
        handler.wait_ready().await;
        handler
    }

    fn spawn(
        standalone: bool,
        port: u16,
        env: &Vec<(String, String)>,
        log: Option<&std::path::Path>,
    ) -> Child {
        let mut cmd = handler_command();
        cmd.env("RUST_LOG", "info");
        if standalone {
            cmd.env("PORT", port.to_string());
        } else {
            cmd.env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
                .env("FUNCTIONS_WORKER_RUNTIME", "custom");
        }
        match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("a log file");
                cmd.stdout(file.try_clone().expect("a log file"))
                    .stderr(file);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("the handler binary starts")
    }

    /// Polls `GET /` (bounded) as the host does: a refused connection means "not yet".
    pub async fn wait_ready(&self) {
        wait_ready(&self.base).await
    }

    /// `kill -9`: no chance to clean up, as in a crashed or evicted instance.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal (`TERM`, `INT`) by name.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code().unwrap_or(-1));
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the binary again on the same port with the same settings.
    pub async fn restart(&mut self) {
        self.kill9();
        self.child = Self::spawn(self.standalone, self.port, &self.env, self.log.as_deref());
        self.wait_ready().await;
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An invocation payload for the work queue's trigger, as the Functions host builds it.
pub fn invocation_payload(message_text: &str, dequeue_count: u32) -> serde_json::Value {
    queue_invocation(
        "AsyncProcessingBackgroundWorker",
        "myQueueItem",
        message_text,
        dequeue_count,
    )
}

/// A value in the host's binding data, by the .NET type it has there.
enum Bound {
    /// A string (`Id`, `PopReceipt`, and every merged scalar, which `ApplyBindingData` turns
    /// into a string).
    Text(String),
    /// `DequeueCount`, a `long`.
    Long(u64),
    /// `ExpirationTime`, `InsertionTime`, `NextVisibleTime`: `DateTimeOffset`s.
    Date(&'static str),
    /// `sys` and merged JSON objects.
    Object(serde_json::Value),
}

/// The invocation payload the Functions host posts for one queue message, built step by step
/// as its source does:
/// 1. the queue trigger's binding data (`QueueTriggerBinding.CreateBindingData`): `QueueTrigger`,
///    `DequeueCount`, `ExpirationTime`, `Id`, `InsertionTime`, `NextVisibleTime`, `PopReceipt`,
///    plus `sys` (`SystemBindingData`), in a case-insensitive dictionary;
/// 2. `Utility.ApplyBindingData`: when the message text is a JSON object, each top-level field
///    that is neither an array nor null is copied in, over the host's own keys (the key keeps the
///    host's casing); objects stay objects, every other value becomes a string (`1` -> `"1"`,
///    `true` -> `"True"`);
/// 3. `ToHttpScriptInvocationContext`: `Metadata` gets every entry but keys ending in `trigger`,
///    dates as plain ISO strings, objects as objects, anything else through
///    `JsonConvert.SerializeObject` (so strings gain a pair of quotes and numbers become
///    strings); `Data` holds the message string, serialized the same way (a JSON string holding
///    the JSON-encoded text).
pub fn queue_invocation(
    method: &str,
    binding: &str,
    message_text: &str,
    dequeue_count: u32,
) -> serde_json::Value {
    use serde_json::Value;
    let mut bound: Vec<(String, Bound)> = vec![
        ("QueueTrigger".into(), Bound::Text(message_text.into())),
        ("DequeueCount".into(), Bound::Long(dequeue_count.into())),
        (
            "ExpirationTime".into(),
            Bound::Date("2026-12-08T10:00:00+00:00"),
        ),
        (
            "Id".into(),
            Bound::Text("5f1c2f36-8f7b-4a2b-9d0e-3c1f6e1c2a10".into()),
        ),
        (
            "InsertionTime".into(),
            Bound::Date("2026-12-01T10:00:00+00:00"),
        ),
        (
            "NextVisibleTime".into(),
            Bound::Date("2026-12-01T10:10:00+00:00"),
        ),
        (
            "PopReceipt".into(),
            Bound::Text("AgAAAAMAAAAAAAAAzhL9Jqwc2wE=".into()),
        ),
        (
            "sys".into(),
            Bound::Object(serde_json::json!({
                "MethodName": method,
                "UtcNow": "2026-12-01T10:00:00.1Z",
                "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e"
            })),
        ),
    ];
    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(message_text) {
        for (name, value) in fields {
            let merged = match value {
                Value::Array(_) | Value::Null => continue,
                Value::Object(_) => Bound::Object(value),
                Value::String(s) => Bound::Text(s),
                Value::Bool(b) => Bound::Text(if b { "True" } else { "False" }.into()),
                Value::Number(n) => Bound::Text(n.to_string()),
            };
            match bound
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(&name))
            {
                Some(entry) => entry.1 = merged,
                None => bound.push((name, merged)),
            }
        }
    }
    let serialize = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let mut metadata = serde_json::Map::new();
    for (key, value) in bound {
        if key.to_ascii_lowercase().ends_with("trigger") {
            continue;
        }
        let value = match value {
            Bound::Text(s) => Value::String(serialize(&s)),
            Bound::Long(n) => Value::String(n.to_string()),
            Bound::Date(d) => Value::String(d.into()),
            Bound::Object(o) => o,
        };
        metadata.insert(key, value);
    }
    serde_json::json!({
        "Data": { binding: serialize(message_text) },
        "Metadata": metadata,
    })
}
