//! Logs as an operator sees them: JSON lines on stdout (where the Functions host collects
//! them), the operation id on every line about an operation, and the submitter's W3C
//! `traceparent` carried through the queue message into the worker's lines.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::app::client;
use support::host::free_port;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_operation_id_and_the_trace() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_handler"))
        .env_clear()
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "no answer on GET /");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let r = http
        .post(format!("{base}/api/AsyncProcessingWorkAcceptor"))
        .header("traceparent", TRACEPARENT)
        .json(&json!({"id": "1", "customername": "Contoso"}))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = location.rsplit('/').next().unwrap().to_string();
    let r = http
        .get(format!("{location}?OnPending=Synchronous"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);

    // SIGTERM: a graceful stop flushes and closes stdout.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success(), "exit 0 after SIGTERM");

    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let about_op: Vec<&Value> = lines
        .iter()
        .filter(|l| l.to_string().contains(&id))
        .collect();
    assert!(
        about_op.len() >= 3,
        "submit and worker lines name the operation: {out}"
    );
    let worker_lines: Vec<&&Value> = about_op
        .iter()
        .filter(|l| l["span"]["name"] == "process")
        .collect();
    assert!(!worker_lines.is_empty(), "worker lines: {out}");
    for l in worker_lines {
        assert_eq!(l["span"]["operation_id"], id.as_str(), "{l}");
        assert_eq!(
            l["span"]["traceparent"], TRACEPARENT,
            "the worker joins the submitter's trace: {l}"
        );
    }
    for l in &lines {
        assert!(l["level"].is_string() && l["timestamp"].is_string(), "{l}");
    }
}
