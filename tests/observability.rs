//! Logs as an operator sees them: text or JSON lines, information on stdout and warnings and
//! errors on stderr (so the Functions host, which collects both, records each at its level),
//! the operation id on every line about an operation, and the submitter's W3C trace id
//! carried through the queue message into the worker's lines.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::app::client;
use support::free_port;
use support::host::{handler_command, wait_ready};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_operation_id_and_the_trace() {
    let port = free_port();
    let mut child = handler_command()
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    wait_ready(&base).await;
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
            l["span"]["trace_id"],
            TRACEPARENT.split('-').nth(1).unwrap(),
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
    use support::receiver::{Receiver, Reply};
    // A signed callback whose URL carries a token, failed once so its retry is logged too.
    const SIGNING_KEY: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let signing_secret = format!("whsec_{SIGNING_KEY}");
    let receiver = Receiver::start(vec![Reply::status(503)]).await;
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
            ("CALLBACK_SIGNING_SECRET", signing_secret.as_str()),
            ("CALLBACK_ALLOWED_HOSTS", "127.0.0.1"),
            ("CALLBACK_RETRY_DELAY_MS", "100"),
            // A storage call that times out is retried after the visibility timeout (for a
            // callback attempt, at least three attempts' time): short, on a loaded machine.
            ("CALLBACK_TIMEOUT_SECONDS", "2"),
            ("VISIBILITY_TIMEOUT_SECONDS", "2"),
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

    // With a 500 ms storage timeout and no retry, a loaded machine may answer the first
    // submission 503 (+ Retry-After): a client submits again, and so does this test.
    let r = support::eventually(
        "a 202 for the first submission",
        Duration::from_millis(200),
        Duration::from_secs(30),
        async || {
            let r = http
                .post(format!("{}/api/AsyncProcessingWorkAcceptor", handler.base))
                .header(
                    "Callback-Url",
                    format!("{}/hook?token=callback-token-123", receiver.base),
                )
                .json(&json!({"id": "1", "customername": "Contoso"}))
                .send()
                .await
                .unwrap();
            match r.status().as_u16() {
                202 => Some(r),
                503 => None,
                other => panic!(
                    "the first submission answered {other}: {}",
                    r.text().await.unwrap()
                ),
            }
        },
    )
    .await;
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = location.rsplit('/').next().unwrap().to_string();
    let deliveries = receiver.delivered(&id, Duration::from_secs(60)).await;
    let webhook_signature = deliveries[0]
        .header("webhook-signature")
        .trim_start_matches("v1,")
        .to_string();
    assert!(!webhook_signature.is_empty());
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
    assert!(
        logs.contains("callback failed; retrying later") && logs.contains("callback delivered"),
        "the callback's failed attempt and its delivery are in the scanned logs"
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
        assert!(
            !text.contains(SIGNING_KEY),
            "the signing secret is in {what}"
        );
        assert!(
            !text.contains("callback-token-123"),
            "the callback URL's token is in {what}"
        );
        assert!(
            !text.contains(&webhook_signature),
            "a webhook signature is in {what}"
        );
    }
    println!(
        "secrets scan: {} log lines and {} error bodies, no key, SAS signature, request signature, signing secret or callback token",
        logs.lines().count(),
        bodies.len()
    );
    let _ = std::fs::remove_file(&log);
}

/// Which pipe a line came out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipe {
    Stdout,
    Stderr,
}

/// The severity the Functions host records a line at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostLevel {
    Information,
    Warning,
    Error,
}

/// The host's rule (azure-functions-host `WorkerProcess`): stdout is Information; a stderr
/// line containing "warn" (any case) is a Warning, checked first; any other stderr line is an
/// Error when `errors_only` (`UseStdErrorStreamForErrorsOnly`, true for custom handlers), and
/// otherwise (the language workers' rule, and some older hosts') an Error only when it says
/// "error", "fail", "severe" or "unhandled exception", else Information.
fn host_level(pipe: Pipe, line: &str, errors_only: bool) -> HostLevel {
    let line = line.to_lowercase();
    let says_error = ["error", "fail", "severe", "unhandled exception"]
        .iter()
        .any(|w| line.contains(w));
    match pipe {
        Pipe::Stdout => HostLevel::Information,
        Pipe::Stderr if line.contains("warn") => HostLevel::Warning,
        Pipe::Stderr if errors_only || says_error => HostLevel::Error,
        Pipe::Stderr => HostLevel::Information,
    }
}

/// The handler binary with stdout and stderr piped apart, every line collected as it comes.
struct Piped {
    child: Child,
    base: String,
    incoming: mpsc::Receiver<(Pipe, String)>,
    lines: Vec<(Pipe, String)>,
}

impl Piped {
    fn start(env: &[(&str, &str)]) -> Piped {
        let port = free_port();
        let mut child = handler_command()
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, incoming) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (pipe, reader) in [
            (Pipe::Stdout, Box::new(out) as Box<dyn Read + Send>),
            (Pipe::Stderr, Box::new(err)),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    let _ = tx.send((pipe, line));
                }
            });
        }
        let mut piped = Piped {
            child,
            base: format!("http://127.0.0.1:{port}"),
            incoming,
            lines: Vec::new(),
        };
        // Logged once the port is bound: from then on connections are taken.
        piped.wait_for_line(|_, l| l.contains("listening on"));
        piped
    }

    /// Blocks (bounded) until a line matching `wanted` arrives.
    fn wait_for_line(&mut self, wanted: impl Fn(Pipe, &str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok((pipe, line)) => {
                    let found = wanted(pipe, &line);
                    self.lines.push((pipe, line));
                    if found {
                        return;
                    }
                }
                Err(e) => panic!("the awaited line did not come ({e}): {:#?}", self.lines),
            }
        }
    }

    /// SIGTERM, exit 0, and every line both pipes carried until they closed.
    fn stop(mut self) -> Vec<(Pipe, String)> {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        assert!(self.child.wait().unwrap().success(), "exit 0 after SIGTERM");
        // Both readers end at end of file, and with them the channel.
        self.lines.extend(self.incoming.iter());
        self.lines
    }
}

/// The level an event was logged at, as the line spells it, for either format.
fn level_word(json: bool, line: &str) -> String {
    if json {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        v["level"]
            .as_str()
            .unwrap_or_else(|| panic!("no level: {line}"))
            .to_string()
    } else {
        // `<timestamp> <LEVEL> <spans>: <target>: <message> <fields>`
        line.split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no level: {line}"))
            .to_string()
    }
}

/// Submits a record and returns its status URL and operation id.
async fn submit(http: &reqwest::Client, base: &str, record: Value) -> (String, String) {
    let r = http
        .post(format!("{base}/api/AsyncProcessingWorkAcceptor"))
        .json(&record)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = location.rsplit('/').next().unwrap().to_string();
    (location, id)
}

/// Two runs that log at every level the host tells apart, then the host's rule (both of its
/// variants) applied to every line: a failed operation's warning (`operation failed`, whose
/// text says "fail"), and a warning that says nothing of failure (the shutdown grace period
/// running out, with work still in flight). Both must come out as Warnings.
async fn every_line_is_classified_at_its_level(format: &str) {
    let json = format == "json";
    let http = client();
    let base_env = [("LOG_FORMAT", format), ("RUST_LOG", "info")];

    let run = Piped::start(&base_env);
    let (location, _) = submit(
        &http,
        &run.base,
        json!({"id": "1", "customername": "C", "simulateFailure": "permanent"}),
    )
    .await;
    let r = http
        .get(format!("{location}?OnPending=Synchronous"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "the work failed");
    let mut lines = run.stop();

    let mut run = Piped::start(
        &[
            &base_env[..],
            &[
                ("PROCESSING_DELAY_MS", "600000"),
                ("SHUTDOWN_GRACE_SECONDS", "0"),
            ],
        ]
        .concat(),
    );
    let (_, id) = submit(&http, &run.base, json!({"id": "2", "customername": "C"})).await;
    run.wait_for_line(|_, l| l.contains(&id) && l.contains("working"));
    lines.extend(run.stop());

    let mut seen = Vec::new();
    for (pipe, line) in &lines {
        let level = level_word(json, line);
        let host = host_level(*pipe, line, true);
        let expected = match level.as_str() {
            "TRACE" | "DEBUG" | "INFO" => HostLevel::Information,
            "WARN" => HostLevel::Warning,
            "ERROR" => HostLevel::Error,
            other => panic!("unknown level {other}: {line}"),
        };
        let pipe_expected = match expected {
            HostLevel::Information => Pipe::Stdout,
            _ => Pipe::Stderr,
        };
        assert_eq!(*pipe, pipe_expected, "{level} on the wrong pipe: {line}");
        assert_eq!(host, expected, "{line}");
        assert_eq!(
            host_level(*pipe, line, false),
            expected,
            "older hosts: {line}"
        );
        seen.push((level, host, line));
    }
    let any = |level: &str, host: HostLevel, text: &str| {
        seen.iter()
            .any(|(l, h, line)| l == level && *h == host && line.contains(text))
    };
    assert!(
        any("INFO", HostLevel::Information, "accepted"),
        "{lines:#?}"
    );
    assert!(
        any("WARN", HostLevel::Warning, "operation failed"),
        "a warning that says \"fail\" is still a warning: {lines:#?}"
    );
    assert!(
        any("WARN", HostLevel::Warning, "shutdown grace period over"),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_are_classified_by_the_host_at_their_level() {
    every_line_is_classified_at_its_level("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_are_classified_by_the_host_at_their_level() {
    every_line_is_classified_at_its_level("json").await;
}
