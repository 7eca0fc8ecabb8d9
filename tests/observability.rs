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

/// A full run on Azurite with every log at debug level (ours and the libraries'): submit,
/// work, a SAS redirect, a failure, a cancel, a storage outage, shutdown. Neither the account
/// key, nor a SAS signature, nor a request signature may appear in any line, nor in any error
/// body a client got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line_or_error_body() {
    use support::azurite::{Azurite, KEY};
    use support::host::Handler;
    let mut azurite = Azurite::start_persistent();
    let log = std::env::temp_dir().join(format!("secrets-scan-{}.log", std::process::id()));
    let conn = azurite.connection_string();
    let mut handler = Handler::start_standalone_logged(
        &[
            ("AzureWebJobsStorage", conn.as_str()),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "debug"),
            ("PROCESSING_DELAY_MS", "200"),
            ("STORAGE_TIMEOUT_MS", "500"),
            ("STORAGE_MAX_RETRIES", "0"),
        ],
        log.clone(),
    )
    .await;
    let http = client();
    let submit = |body: Value| {
        let http = http.clone();
        let url = format!("{}/api/AsyncProcessingWorkAcceptor", handler.base);
        async move { http.post(url).json(&body).send().await.unwrap() }
    };
    let mut bodies = Vec::new();

    let r = submit(json!({"id": "1", "customername": "Contoso"})).await;
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let r = http
        .get(format!("{location}?OnPending=Synchronous"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let sas = r.headers()["location"].to_str().unwrap().to_string();
    let signature = sas
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("sig="))
        .expect("a SAS signature")
        .to_string();
    assert_eq!(http.get(&sas).send().await.unwrap().status(), 200);

    let r = submit(json!({"id": "2", "customername": "C", "simulateFailure": "permanent"})).await;
    let failed = r.headers()["location"].to_str().unwrap().to_string();
    let r = http
        .get(format!("{failed}?OnPending=Synchronous"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    bodies.push(r.text().await.unwrap());

    let r = submit(json!({"id": "3", "customername": "C"})).await;
    let canceled = r.headers()["location"].to_str().unwrap().to_string();
    http.delete(&canceled).send().await.unwrap();
    bodies.push(
        http.get(&canceled)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );

    azurite.stop();
    let r = submit(json!({"id": "4", "customername": "C"})).await;
    assert_eq!(r.status(), 503);
    bodies.push(r.text().await.unwrap());
    bodies.push(
        http.get(&location)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    azurite.restart();

    handler.signal("TERM");
    assert_eq!(handler.wait_exit(Duration::from_secs(30)).await, Some(0));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.lines().count() > 20,
        "expected a debug-level run: {logs}"
    );
    let decoded_key_hex: String = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(KEY)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    for (what, text) in
        std::iter::once(("logs", &logs)).chain(bodies.iter().map(|b| ("an error body", b)))
    {
        assert!(!text.contains(KEY), "the account key is in {what}");
        assert!(
            !text.contains(&KEY[..20]),
            "part of the account key is in {what}"
        );
        assert!(
            !text.to_lowercase().contains(&decoded_key_hex),
            "the decoded key is in {what}"
        );
        assert!(!text.contains(&signature), "a SAS signature is in {what}");
        assert!(!text.contains("sig="), "a SAS query is in {what}");
        assert!(
            !text.contains("SharedKey"),
            "a request signature is in {what}"
        );
    }
    println!(
        "secrets scan: {} log lines and {} error bodies, no key, SAS signature or request signature",
        logs.lines().count(),
        bodies.len()
    );
    let _ = std::fs::remove_file(&log);
}
